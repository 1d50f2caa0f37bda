"""Zero-shot CLIP: the dataset's hand-crafted template (or ImageNet's ensemble), no training."""

from yacs.config import CfgNode as CN

from engine.config import extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.templates import ensemble_templates
from models.zeroshot import ZeroShotClassifier
from trainers.base import ClipTrainer


@extend_cfg
def zsclip_cfg(cfg):
    cfg.TRAINER.ZSCLIP = CN()
    # Average the text features of ImageNet's 7 selected templates and the dataset's own.
    cfg.TRAINER.ZSCLIP.ENSEMBLE = False


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(ClipTrainer):
    def get_precision(self):
        # Nothing is trained; fp16 only pays off on a GPU.
        return self.cfg.TRAINER.COOP.PREC if self.device.type == "cuda" else "fp32"

    def create_model(self, clip_model, classnames):
        if self.cfg.TRAINER.ZSCLIP.ENSEMBLE:
            self.templates = ensemble_templates(self.template())
        else:
            self.templates = [self.template()]
        print(f"Prompt templates: {self.templates}")
        return ZeroShotClassifier(clip_model, classnames, self.templates)

    def test(self, split=None, write_results=True, inference=None, what=""):
        """The evaluation, reused from TEST.ZEROSHOT_CACHE when it holds the same one."""
        if split not in (None, self.cfg.TEST.SPLIT) or inference is not None:
            return super().test(split, write_results, inference, what)
        return self.evaluate_zeroshot(self.model_inference, self.templates, what, write_results)
