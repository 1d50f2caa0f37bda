"""VPT-deep: learnable tokens in every ViT block, frozen hand-crafted text features."""

from collections import OrderedDict

from models.base import ModelOutput, PromptTuningModel, l2_normalize
from models.prompting import DeepPrompt
from models.settings import VisualPromptCfg
from models.visual import AppendedPrompts, PromptedViT, require_vit
from models.zeroshot import ZeroShotCLIP


class VPTModel(PromptTuningModel):
    """Logits of the prompted image features against the template's text features T0."""

    def __init__(self, clip_model, classnames, template, *, vpt_cfg=VisualPromptCfg()):
        require_vit(clip_model, "VPT")
        super().__init__(clip_model)
        self.zeroshot = ZeroShotCLIP(clip_model, classnames, template)
        self.image_encoder = PromptedViT(clip_model.visual)
        self.visual_prompt = DeepPrompt(
            self.image_encoder.n_layers,
            vpt_cfg.n_ctx,
            self.image_encoder.width,
            device=clip_model.logit_scale.device,
        )

    def learnable_modules(self):
        return OrderedDict(visual_prompt=self.visual_prompt)

    def forward(self, images):
        image_features = l2_normalize(
            self.image_encoder(images, AppendedPrompts(self.visual_prompt))
        )
        logits = self.logit_scale() * image_features @ self.zeroshot.text_features.t()
        return ModelOutput(logits, image_features)
