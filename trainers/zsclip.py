"""Zero-shot CLIP: the dataset's hand-crafted template (or ImageNet's ensemble), no training."""

from yacs.config import CfgNode as CN

from engine.config import extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.templates import ensemble_templates
from models.zeroshot import ZeroShotClassifier
from trainers.method import Method


@extend_cfg
def zsclip_cfg(cfg):
    cfg.TRAINER.ZSCLIP = CN()
    # Average the text features of ImageNet's 7 selected templates and the dataset's own.
    cfg.TRAINER.ZSCLIP.ENSEMBLE = False


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(Method):
    trains = False
    config_folder = "CoOp"  # CoOp's config files set the data and backbone it evaluates

    @classmethod
    def run_setting(cls, cfg):
        return "zeroshot"

    def precision(self, device):
        # Nothing is trained; fp16 only pays off on a GPU.
        return super().precision(device) if device.type == "cuda" else "fp32"

    def zeroshot_templates(self, template):
        if self.cfg.TRAINER.ZSCLIP.ENSEMBLE:
            return ensemble_templates(template)
        return [template]

    def create_model(self, clip_model, classnames, template):
        templates = self.zeroshot_templates(template)
        print(f"Prompt templates: {templates}")
        return ZeroShotClassifier(clip_model, classnames, templates)
