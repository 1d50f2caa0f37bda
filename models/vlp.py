"""VLP: CoOp's text prompt and VPT-deep together, with the general-knowledge guidance loss."""

from collections import OrderedDict

from models.base import GuidedOutput, PromptTuningModel, guided_loss, l2_normalize
from models.prompting import DeepPrompt
from models.settings import GuidanceCfg, TextPromptCfg, VisualPromptCfg
from models.text import LearnedTextFeatures, PromptLearner
from models.visual import AppendedPrompts, PromptedViT, require_vit
from models.zeroshot import ZeroShotCLIP


class VLPModel(PromptTuningModel):
    """Prompted image features against learned text features, guided by frozen CLIP.

    ``vpt_blocks`` limits the deep visual prompt to the first blocks (all when None; DPT
    gives the others to CAVPT).
    """

    def __init__(self, clip_model, classnames, template, *, text_cfg=TextPromptCfg(),
                 vpt_cfg=VisualPromptCfg(), guidance_cfg=GuidanceCfg(),
                 vpt_blocks=None):  # fmt: skip
        require_vit(clip_model, type(self).__name__)
        super().__init__(clip_model)
        self.guidance_epochs = guidance_cfg.epochs
        prompt_learner = PromptLearner(clip_model, classnames, settings=text_cfg)
        self.text = LearnedTextFeatures(clip_model, prompt_learner)
        self.zeroshot = ZeroShotCLIP(clip_model, classnames, template)
        self.image_encoder = PromptedViT(clip_model.visual)
        n_blocks = self.image_encoder.n_layers
        vpt_blocks = n_blocks if vpt_blocks is None else vpt_blocks
        if not 0 <= vpt_blocks <= n_blocks:
            raise ValueError(f"vpt_blocks must be in 0..{n_blocks}, got {vpt_blocks}")
        self.visual_prompt = DeepPrompt(
            vpt_blocks,
            vpt_cfg.n_ctx,
            self.image_encoder.width,
            device=clip_model.logit_scale.device,
        )

    def learnable_modules(self):
        return OrderedDict(
            visual_prompt=self.visual_prompt, prompt_learner=self.text.prompt_learner
        )

    def forward(self, images):
        text_features = self.text()
        image_features = self.image_encoder(images, AppendedPrompts(self.visual_prompt))
        # the frozen image features only feed the guidance loss: skipped at inference
        zeroshot_features = self.zeroshot.image_features(images) if self.training else None
        return self._output(GuidedOutput, image_features, text_features, zeroshot_features)

    def _output(self, output_type, image_features, text_features, zeroshot_image_features,
                **extra):  # fmt: skip
        """An ``output_type`` with the main logits and the guidance logits (the frozen-image
        ones only when the zero-shot image features are given)."""
        scale = self.logit_scale()
        image_features = l2_normalize(image_features)
        text_features = l2_normalize(text_features)
        frozen_image_logits = None
        if zeroshot_image_features is not None:
            frozen_image_logits = scale * zeroshot_image_features @ text_features.t()
        return output_type(
            logits=scale * image_features @ text_features.t(),
            image_features=image_features,
            text_features=text_features,
            frozen_image_logits=frozen_image_logits,
            frozen_text_logits=scale * image_features @ self.zeroshot.text_features.t(),
            **extra,
        )

    def loss_terms(self, out, labels, epoch):
        return guided_loss(out, labels, epoch, self.guidance_epochs)
