"""CoCoOp: CoOp's context plus a per-image bias from a small meta-net (Zhou et al., CVPR 2022)."""

from collections import OrderedDict

import torch
import torch.nn as nn

from models.base import ModelOutput, PromptTuningModel, l2_normalize
from models.settings import CoCoOpCfg, TextPromptCfg
from models.speed import Speed
from models.text import ContextPrompts, PromptLearner, TextEncoder
from models.visual import frozen_image_encoder


class ConditionalPromptLearner(PromptLearner):
    """CoOp's shared context with the class name at the end, plus CoCoOp's meta-net:
    Linear(E, E // 16) -> ReLU -> Linear(E // 16, D) maps an image's normalised feature to a
    bias that is added to every context vector.

    The state dict (``ctx``, ``meta_net.linear1.*``, ``meta_net.linear2.*``) has the keys of
    CoCoOp's own prompt learner, so its checkpoints load.
    """

    def __init__(self, clip_model, classnames, *, n_ctx=16, ctx_init=""):
        settings = TextPromptCfg(n_ctx=n_ctx, ctx_init=ctx_init)
        super().__init__(clip_model, classnames, settings=settings)
        vis_dim = clip_model.visual.output_dim
        hidden = max(vis_dim // 16, 1)
        self.meta_net = nn.Sequential(
            OrderedDict(
                linear1=nn.Linear(vis_dim, hidden),
                relu=nn.ReLU(inplace=True),
                linear2=nn.Linear(hidden, self.ctx.shape[-1]),
            )
        ).to(self.ctx.device)

    def conditional_context(self, image_features):
        """Each image's context, [B, n_ctx, D]: ``ctx`` plus ``meta_net(image feature)``."""
        bias = self.meta_net(image_features.float())  # [B, D]
        return self.ctx[None] + bias[:, None]


class CoCoOpModel(PromptTuningModel):
    """Logits of each image against its own conditioned prompts' text features.

    ``cocoop_cfg.images_per_text_pass``: how many images' prompts (each C sequences) go
    through the text encoder together (see ``CoCoOpCfg``).
    """

    def __init__(self, clip_model, classnames, *, cocoop_cfg=CoCoOpCfg()):
        super().__init__(clip_model)
        self.prompt_learner = ConditionalPromptLearner(
            clip_model, classnames, n_ctx=cocoop_cfg.n_ctx, ctx_init=cocoop_cfg.ctx_init
        )
        self.encoder = TextEncoder(clip_model)
        self.image_encoder = frozen_image_encoder(clip_model.visual)
        self.images_per_text_pass = cocoop_cfg.images_per_text_pass
        self.speed = Speed()

    def learnable_modules(self):
        return OrderedDict(prompt_learner=self.prompt_learner)

    def forward(self, images):
        with torch.no_grad():  # the image encoder is frozen; the meta-net learns from f
            image_features = l2_normalize(self.image_encoder(images.to(self.dtype)))
        per_pass = self.images_per_text_pass or len(image_features)
        logits = [self._logits(part) for part in image_features.split(per_pass)]
        return ModelOutput(torch.cat(logits))

    def _logits(self, image_features):
        """[b, C] logits of b images whose b x C prompts are encoded in one pass."""
        learner = self.prompt_learner
        frozen, eos_positions = learner.frozen_prompts(full_length=not self.speed.truncate_text)
        ctx = learner.conditional_context(image_features)
        n_images, n_cls = ctx.shape[0], learner.n_cls
        # the C prompts of image b hold its context: sequence b * C + c
        prompts = ContextPrompts(
            ctx[:, None].expand(-1, n_cls, -1, -1).flatten(0, 1),
            learner.ctx_slots.repeat(n_images, 1),
        )
        # One image's prompts share their leading tokens (SOS and its conditioned context).
        shared = learner.shared_prefix_length if self.speed.shared_text_prefix else 0
        features = self.encoder(
            frozen.repeat(n_images, 1, 1),
            eos_positions.repeat(n_images),
            shared if n_images == 1 else 0,
            prompts,
        )
        text = l2_normalize(features).view(n_images, n_cls, -1)
        scores = torch.einsum("be,bce->bc", image_features.to(text.dtype), text)
        return self.logit_scale() * scores
