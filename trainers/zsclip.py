"""Zero-shot CLIP: the dataset's hand-crafted template (or ImageNet's ensemble), no training."""

import torch
from yacs.config import CfgNode as CN

from engine.config import extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.base import ModelOutput, l2_normalize
from models.templates import ensemble_templates
from models.text import encode_template
from models.zeroshot import ZeroShotCLIP
from trainers.base import ClipTrainer


@extend_cfg
def zsclip_cfg(cfg):
    cfg.TRAINER.ZSCLIP = CN()
    # Average the text features of ImageNet's 7 selected templates and the dataset's own.
    cfg.TRAINER.ZSCLIP.ENSEMBLE = False


class ZeroShotClassifier(torch.nn.Module):
    """CLIP's logits against hand-crafted prompts; several templates are averaged."""

    def __init__(self, clip_model, classnames, templates):
        super().__init__()
        self.branch = ZeroShotCLIP(clip_model, classnames, templates[0])
        if len(templates) > 1:
            features = [encode_template(clip_model, classnames, t) for t in templates]
            self.branch.text_features = l2_normalize(torch.stack(features).mean(0))
        self.logit_scale = clip_model.logit_scale.exp().item()

    def learnable_modules(self):
        return {}

    def forward(self, images):
        image_features = self.branch.image_features(images).float()
        return ModelOutput(
            self.logit_scale * image_features @ self.branch.text_features.float().t()
        )


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(ClipTrainer):
    def get_precision(self):
        # Nothing is trained; fp16 only pays off on a GPU.
        return self.cfg.TRAINER.COOP.PREC if self.device.type == "cuda" else "fp32"

    def create_model(self, clip_model, classnames):
        if self.cfg.TRAINER.ZSCLIP.ENSEMBLE:
            templates = ensemble_templates(self.template())
        else:
            templates = [self.template()]
        print(f"Prompt templates: {templates}")
        return ZeroShotClassifier(clip_model, classnames, templates)
