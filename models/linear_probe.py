"""Linear-probe CLIP: a linear classifier on CLIP's frozen image features (CLIP's paper, section
3.2; CoOp's and the original DPT code's ``lpclip`` baseline). The head's weights are fitted in
closed form by ``trainers/linear_probe.py``, never by gradient steps."""

import hashlib
from collections import OrderedDict

import torch
import torch.nn as nn

from models.base import ModelOutput, PromptTuningModel
from models.visual import frozen_image_encoder


def class_keys(classnames):
    """A 64-bit digest of each class name: which class a row of a saved head belongs to."""
    digests = [hashlib.sha256(name.encode()).digest()[:8] for name in classnames]
    return torch.tensor([int.from_bytes(d, "big", signed=True) for d in digests])


class LinearHead(nn.Module):
    """One weight row and bias per class over the image features, [C, E] and [C]; the
    persistent buffer ``class_keys`` (saved with the weights) names the rows' classes."""

    def __init__(self, dim, classnames, device=None):
        super().__init__()
        self.classnames = list(classnames)
        self.weight = nn.Parameter(torch.zeros(len(classnames), dim, device=device))
        self.bias = nn.Parameter(torch.zeros(len(classnames), device=device))
        self.register_buffer("class_keys", class_keys(classnames).to(device))

    @torch.no_grad()
    def set_rows(self, weight, bias):
        """Set the fitted classifier (arrays or tensors of this head's shapes)."""
        self.weight.copy_(torch.as_tensor(weight, dtype=self.weight.dtype))
        self.bias.copy_(torch.as_tensor(bias, dtype=self.bias.dtype))

    def forward(self, features):
        return features.float() @ self.weight.t() + self.bias


class LinearProbeModel(PromptTuningModel):
    """Logits of a linear head on the unnormalised image features (``clip_model.visual``'s
    output, as lpclip's feature extractor takes them)."""

    def __init__(self, clip_model, classnames):
        super().__init__(clip_model)
        self.encoder = frozen_image_encoder(clip_model.visual)
        self.input_dtype = clip_model.visual.conv1.weight.dtype
        device = clip_model.logit_scale.device
        self.head = LinearHead(clip_model.visual.output_dim, classnames, device)

    def learnable_modules(self):
        return OrderedDict(linear_head=self.head)

    @torch.no_grad()
    def image_features(self, images):
        return self.encoder(images.to(self.input_dtype))

    def forward(self, images):
        return ModelOutput(self.head(self.image_features(images)))
