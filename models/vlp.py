"""VLP: CoOp's text prompt and VPT-deep together, with the general-knowledge guidance loss."""

from collections import OrderedDict

from models.base import ModelOutput, PromptTuningModel, guided_loss, l2_normalize
from models.text import LearnedTextFeatures, PromptLearner
from models.visual import DeepVisualPrompt, PromptedViT, require_vit
from models.zeroshot import ZeroShotCLIP


class VLPModel(PromptTuningModel):
    """Prompted image features against learned text features, guided by frozen CLIP.

    ``vpt_layers`` limits the deep visual prompt to the first blocks (all when None).
    ``pretrain_c`` is the number of epochs with the guidance terms (PRETRAIN.C).
    """

    def __init__(self, clip_model, classnames, template, n_ctx=16, ctx_init="", csc=False,
                 class_token_position="end", vpt_n_ctx=10, pretrain_c=30, *,
                 vpt_layers=None):  # fmt: skip
        require_vit(clip_model, type(self).__name__)
        super().__init__(clip_model)
        self.pretrain_c = pretrain_c
        prompt_learner = PromptLearner(
            clip_model, classnames, n_ctx, ctx_init, csc, class_token_position
        )
        self.text = LearnedTextFeatures(clip_model, prompt_learner)
        self.zeroshot = ZeroShotCLIP(clip_model, classnames, template)
        self.image_encoder = PromptedViT(clip_model.visual)
        n_blocks = self.image_encoder.n_layers
        vpt_layers = n_blocks if vpt_layers is None else vpt_layers
        if not 0 <= vpt_layers <= n_blocks:
            raise ValueError(f"vpt_layers must be in 0..{n_blocks}, got {vpt_layers}")
        self.visual_prompt = DeepVisualPrompt(
            vpt_layers, vpt_n_ctx, self.image_encoder.width, device=clip_model.logit_scale.device
        )

    def learnable_modules(self):
        return OrderedDict(
            visual_prompt=self.visual_prompt, prompt_learner=self.text.prompt_learner
        )

    def forward(self, images):
        text_features = self.text()
        image_features = self.image_encoder(images, self.visual_prompt)
        # the frozen image features only feed the guidance loss: skipped at inference
        zeroshot_features = self.zeroshot.image_features(images) if self.training else None
        return self._output(image_features, text_features, zeroshot_features)

    def _output(self, image_features, text_features, zeroshot_image_features):
        """Main logits, logits1 (f0 vs learned text, if f0 given), logits2 (f vs T0)."""
        scale = self.logit_scale()
        image_features = l2_normalize(image_features)
        text_features = l2_normalize(text_features)
        logits1 = None
        if zeroshot_image_features is not None:
            logits1 = scale * zeroshot_image_features @ text_features.t()
        return ModelOutput(
            logits=scale * image_features @ text_features.t(),
            logits1=logits1,
            logits2=scale * image_features @ self.zeroshot.text_features.t(),
        )

    def loss_terms(self, out, labels, epoch):
        return guided_loss(out, labels, epoch, self.pretrain_c)
