"""What all prompt-tuning models share: outputs, loss helpers, the frozen CLIP."""

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

GUIDED_MAIN_WEIGHT = 0.1  # weight of the main CE while the guidance terms are on


@dataclass
class ModelOutput:
    """``logits``: the main (and inference) logits, [B, C].

    image_features, text_features: the normalised features the logits are made of, [B, E]
        and [C, E], for the regularisers that compare them with frozen CLIP's (None where a
        model has no such pair).
    reference: frozen CLIP's outputs for the same images (a ``models.knowledge.Reference``),
        added in training by a regulariser that needs them.
    """

    logits: torch.Tensor
    image_features: torch.Tensor | None = None
    text_features: torch.Tensor | None = None
    reference: object = None


@dataclass
class GuidedOutput(ModelOutput):
    """VLP's and DPT's outputs: the main logits and the two general-knowledge guidance terms.

    frozen_image_logits: the frozen (zero-shot) image features against the learned text
        features; None at inference, where that branch is skipped (the original's logits1).
    frozen_text_logits: the prompted image features against the frozen hand-crafted text
        features (the original's logits2).
    """

    frozen_image_logits: torch.Tensor | None = None
    frozen_text_logits: torch.Tensor | None = None


def l2_normalize(features):
    return features / features.norm(dim=-1, keepdim=True)


def cross_entropy(logits, labels):
    """Mean cross-entropy computed in float32 whatever the logits' dtype."""
    return F.cross_entropy(logits.float(), labels)


def guided_loss(out, labels, epoch, guidance_epochs):
    """VLP/DPT: the general-knowledge guidance terms while ``epoch < guidance_epochs``
    (PRETRAIN.C), then the main cross-entropy alone."""
    terms = {"ce_main": cross_entropy(out.logits, labels)}
    if epoch < guidance_epochs:
        terms["ce_frozen_image"] = cross_entropy(out.frozen_image_logits, labels)
        terms["ce_frozen_text"] = cross_entropy(out.frozen_text_logits, labels)
        loss = (
            terms["ce_frozen_image"]
            + terms["ce_frozen_text"]
            + GUIDED_MAIN_WEIGHT * terms["ce_main"]
        )
    else:
        loss = terms["ce_main"]
    return loss, terms


class PromptTuningModel(nn.Module):
    """A frozen CLIP plus learnable prompt modules.

    Subclasses build their learnable modules in float32 (cast to CLIP's dtype in forward),
    list them in ``learnable_modules`` and implement ``forward(images) -> ModelOutput``.
    Optional attributes used by the shared code: ``text`` (``LearnedTextFeatures``),
    ``zeroshot`` (``ZeroShotCLIP``) and ``regularizer`` (``models.knowledge``).
    """

    def __init__(self, clip_model):
        super().__init__()
        clip_model.requires_grad_(False)
        self.clip = clip_model
        self.text = None
        self.zeroshot = None
        self.regularizer = None  # a models.knowledge.KnowledgeRegularizer, once attached

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

    def learns_per_class(self):
        """Whether a learned tensor is one per class (CoOp's class-specific context), so that
        the trained model classifies its training classes only."""
        return bool(getattr(getattr(self.text, "prompt_learner", None), "csc", False))

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
        if self.regularizer is not None:
            loss, terms = self.regularizer.add_terms(loss, terms, out)
        parts = {name: value for name, value in terms.items() if not torch.is_tensor(value)}
        tensors = {name: value for name, value in terms.items() if torch.is_tensor(value)}
        tensors["loss"] = loss
        values = torch.stack([value.detach().float() for value in tensors.values()]).tolist()
        parts.update(zip(tensors, values))  # one device sync for all terms
        return loss, parts
