"""The frozen zero-shot CLIP branch: f0 and the hand-crafted template features T0."""

import torch
import torch.nn as nn

from models.base import ModelOutput, l2_normalize
from models.text import encode_template
from models.visual import frozen_image_encoder


class ZeroShotCLIP(nn.Module):
    """CLIP's own image encoder and the dataset's hand-crafted text features; never trained."""

    def __init__(self, clip_model, classnames, template):
        super().__init__()
        self.encoder = frozen_image_encoder(clip_model.visual)
        self.input_dtype = clip_model.visual.conv1.weight.dtype
        features = encode_template(clip_model, classnames, template)
        self.register_buffer("text_features", features, persistent=False)  # T0, normalised

    @torch.no_grad()
    def image_features(self, images):
        """f0: normalised features of the unprompted image encoder, [B, E].

        Without autograd: nothing in this branch learns, and its top-K and the guidance logits
        only need the values."""
        return l2_normalize(self.encoder(images.to(self.input_dtype)))

    @torch.no_grad()
    def top_classes(self, image_features, k, logit_scale):
        """The ``k`` classes with the highest zero-shot logits, best first, [B, k]."""
        logits = logit_scale * image_features @ self.text_features.t()
        return logits.sort(dim=-1, descending=True).indices[:, :k]


class ZeroShotClassifier(nn.Module):
    """Zero-shot CLIP as a model: logits against hand-crafted prompts, several averaged."""

    def __init__(self, clip_model, classnames, templates):
        super().__init__()
        self.branch = ZeroShotCLIP(clip_model, classnames, templates[0])
        if len(templates) > 1:
            features = [encode_template(clip_model, classnames, t) for t in templates]
            self.branch.text_features = l2_normalize(torch.stack(features).mean(0))
        self.logit_scale = clip_model.logit_scale.exp().item()

    def learnable_modules(self):
        return {}

    def learns_per_class(self):
        return False

    def forward(self, images):
        image_features = self.branch.image_features(images).float()
        text_features = self.branch.text_features.float()
        return ModelOutput(self.logit_scale * image_features @ text_features.t())
