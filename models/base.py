"""What all prompt-tuning models share: outputs, loss helpers, freezing, upstream loading."""

import warnings
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import upstream

GUIDED_MAIN_WEIGHT = 0.1  # weight of the main CE while the guidance terms are on


@dataclass
class ModelOutput:
    """``logits`` are the main (and inference) logits, [B, C].

    logits1: frozen image features against the learned text features (VLP, DPT).
    logits2: prompted image features against the hand-crafted text features (VLP, DPT).
    layer_logits: DPT's auxiliary CAVPT logits, one [K, B, C] tensor per CAVPT block.
    indices: DPT's zero-shot top-K classes per image, [B, K].
    """

    logits: torch.Tensor
    logits1: torch.Tensor | None = None
    logits2: torch.Tensor | None = None
    layer_logits: list[torch.Tensor] | None = None
    indices: torch.Tensor | None = None


def l2_normalize(features):
    return features / features.norm(dim=-1, keepdim=True)


def cross_entropy(logits, labels):
    """Mean cross-entropy computed in float32 whatever the logits' dtype."""
    return F.cross_entropy(logits.float(), labels)


def guided_loss(out, labels, epoch, pretrain_c):
    """VLP/DPT: the general-knowledge guidance terms while ``epoch < pretrain_c``, then CE."""
    terms = {"ce_main": cross_entropy(out.logits, labels)}
    if epoch < pretrain_c:
        terms["ce_frozen_image"] = cross_entropy(out.logits1, labels)
        terms["ce_frozen_text"] = cross_entropy(out.logits2, labels)
        loss = (
            terms["ce_frozen_image"]
            + terms["ce_frozen_text"]
            + GUIDED_MAIN_WEIGHT * terms["ce_main"]
        )
    else:
        loss = terms["ce_main"]
    return loss, terms


def _disagreement(ours, theirs):
    """Why a derived buffer from a checkpoint does not match ours, or None if it does."""
    if tuple(theirs.shape) != tuple(ours.shape):
        return f"shape {tuple(theirs.shape)}, expected {tuple(ours.shape)}"
    diff = (theirs.to(ours.device).float() - ours.float()).abs().max().item()
    scale = ours.float().abs().max().item()
    if diff > 1e-2 * scale + 1e-6:  # loose enough for a float16 checkpoint
        return f"differs by up to {diff:.3g} (values up to {scale:.3g})"
    return None


class PromptTuningModel(nn.Module):
    """A frozen CLIP plus learnable prompt modules.

    Subclasses build their learnable modules in float32 (cast to CLIP's dtype in forward),
    list them in ``learnable_modules`` and implement ``forward(images) -> ModelOutput``.
    Optional attributes used by the shared code: ``text`` (``LearnedTextFeatures``) and
    ``zeroshot`` (``ZeroShotCLIP``).
    """

    def __init__(self, clip_model):
        super().__init__()
        clip_model.requires_grad_(False)
        self.clip = clip_model
        self.text = None
        self.zeroshot = None

    def train(self, mode=True):
        """The frozen CLIP stays in eval mode (a ResNet's BatchNorm statistics must not
        move); the prompt modules and the wrappers follow ``mode`` (e.g. text features are
        cached and VLP skips its zero-shot branch in eval mode)."""
        super().train(mode)
        self.clip.eval()
        return self

    @property
    def dtype(self):
        return self.clip.dtype

    def logit_scale(self):
        return self.clip.logit_scale.exp()

    def learnable_modules(self):
        """Ordered name -> module holding all learnable parameters, one per optimiser."""
        raise NotImplementedError

    def learnable_state_dict(self):
        """All learnable parameters under our names ``<module>.<key>``."""
        return OrderedDict(
            (f"{name}.{key}", value)
            for name, module in self.learnable_modules().items()
            for key, value in module.state_dict().items()
        )

    def loss_terms(self, out, labels, epoch):
        """The training loss and its named terms (tensors)."""
        loss = cross_entropy(out.logits, labels)
        return loss, {"ce_main": loss}

    def compute_loss(self, out, labels, epoch=0):
        """The training loss and a dict of floats for logging."""
        loss, terms = self.loss_terms(out, labels, epoch)
        parts = {name: value for name, value in terms.items() if not torch.is_tensor(value)}
        tensors = {name: value for name, value in terms.items() if torch.is_tensor(value)}
        tensors["loss"] = loss
        values = torch.stack([value.detach().float() for value in tensors.values()]).tolist()
        parts.update(zip(tensors, values))  # one device sync for all terms
        return loss, parts

    def upstream_buffers(self):
        """Derived buffers the original code saves, as recomputed here."""
        buffers = {}
        if self.text is not None:
            token_embedding = self.clip.token_embedding
            for key, value in self.text.prompt_learner.upstream_buffers(token_embedding).items():
                buffers[f"prompt_learner.{key}"] = value
        if self.zeroshot is not None:
            buffers["text_features"] = self.zeroshot.text_features
        return buffers

    def load_upstream_state_dict(self, state_dict, strict=True):
        """Load learnable parameters saved by the original code (its names, fp16 or fp32).

        Derived buffers (``token_prefix``, ``token_suffix``, ``text_features``) are not
        loaded but compared with ours: a mismatch means other class names, template or CLIP
        weights. With ``strict`` such mismatches and missing or unexpected keys raise
        ``ValueError``; otherwise they warn. Shape mismatches always raise.
        """
        params, derived, unknown = upstream.upstream_to_ours(state_dict)
        ours = self.learnable_state_dict()
        problems = [f"unknown key {name!r}" for name in unknown]
        problems += [f"missing {name!r}" for name in ours if name not in params]
        problems += [f"unexpected {name!r}" for name in params if name not in ours]
        expected = self.upstream_buffers()
        for name, value in derived.items():
            if name not in expected:
                problems.append(f"unexpected {name!r}")
            elif (why := _disagreement(expected[name], value)) is not None:
                problems.append(f"{name} {why}: other class names, template or CLIP weights?")
        shape_errors = [
            f"{name}: checkpoint {tuple(value.shape)}, model {tuple(ours[name].shape)}"
            for name, value in params.items()
            if name in ours and value.shape != ours[name].shape
        ]
        if shape_errors:
            raise ValueError(
                "shape mismatch loading upstream state dict: " + "; ".join(shape_errors)
            )
        if problems:
            message = "upstream state dict: " + "; ".join(problems)
            if strict:
                raise ValueError(message)
            warnings.warn(message, stacklevel=2)
        with torch.no_grad():
            for name, value in params.items():
                if name in ours:
                    ours[name].copy_(value)
