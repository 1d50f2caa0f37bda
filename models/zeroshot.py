"""The frozen zero-shot CLIP branch: f0 and the hand-crafted template features T0."""

import torch
import torch.nn as nn

from models.base import l2_normalize
from models.text import encode_template


class ZeroShotCLIP(nn.Module):
    """CLIP's own image encoder and the dataset's hand-crafted text features; never trained."""

    def __init__(self, clip_model, classnames, template):
        super().__init__()
        self.visual = clip_model.visual
        features = encode_template(clip_model, classnames, template)
        self.register_buffer("text_features", features, persistent=False)  # T0, normalised

    @torch.no_grad()
    def image_features(self, images):
        """f0: normalised features of the unprompted image encoder, [B, E]."""
        return l2_normalize(self.visual(images.to(self.visual.conv1.weight.dtype)))

    @torch.no_grad()
    def top_classes(self, image_features, k, logit_scale):
        """The ``k`` classes with the highest zero-shot logits, best first, [B, k]."""
        logits = logit_scale * image_features @ self.text_features.t()
        return logits.sort(dim=-1, descending=True).indices[:, :k]
