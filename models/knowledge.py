"""Knowledge-preserving regularisers: they keep a learned model near frozen zero-shot CLIP.

- text consistency (KgCoOp, Yao et al., CVPR 2023; github htyao89/KgCoOp): the learned text
  features stay near those of hand-crafted prompts;
- gradient projection (ProGrad, Zhu et al., ICCV 2023; github BeierZhu/Prompt-align): a step
  keeps no component against the gradient of distilling zero-shot CLIP's logits;
- agreement (PromptSRC, Khattak et al., ICCV 2023; github muzairkhattak/PromptSRC): L1 of the
  text and image features from frozen CLIP's, KL of the logits from its zero-shot logits;
  and its Gaussian aggregation of the learned parameters over the epochs.

They are options of any model whose ``ModelOutput`` carries its normalised features: a
``KnowledgeRegularizer`` attached to it adds frozen CLIP's outputs to the model's outputs in
training and its terms to the loss; ``projected_backward`` and ``GaussianAggregation`` are for
the step and the epoch loop. Frozen CLIP's text side, the anchor, is the mean over hand-crafted
templates of their (unnormalised) text features, normalised: one template for KgCoOp and
ProGrad, PromptSRC's 60.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.base import l2_normalize
from models.text import template_features
from models.visual import frozen_image_encoder

COSINE_EPS = 1e-7  # KgCoOp's torch.nn.CosineSimilarity(eps=1e-07)


@dataclass
class Reference:
    """Frozen CLIP on a batch: normalised image features [B, E], zero-shot logits [B, C]."""

    image_features: torch.Tensor
    logits: torch.Tensor


def anchor_text_features(clip_model, classnames, templates):
    """Normalised mean over ``templates`` of each class's text features, [C, E]."""
    features = [template_features(clip_model, classnames, t).float() for t in templates]
    return l2_normalize(torch.stack(features).mean(0))


class KnowledgeRegularizer(nn.Module):
    """The regularisers of ``settings`` (a ``RegularizerCfg``) for a model of ``classnames``
    on ``clip_model``, anchored on ``templates``. ``attach`` it to the model."""

    def __init__(self, clip_model, classnames, templates, settings):
        super().__init__()
        if not templates:
            raise ValueError("the regularisers' anchor needs at least one template")
        self.settings = settings
        self.encoder = frozen_image_encoder(clip_model.visual)
        self.input_dtype = clip_model.visual.conv1.weight.dtype
        anchor = anchor_text_features(clip_model, classnames, templates)
        self.register_buffer("text_features", anchor, persistent=False)

    @property
    def needs_reference(self):
        """Whether the terms need frozen CLIP's image features (not only the anchor)."""
        s = self.settings
        return bool(s.image_agreement or s.logits_agreement or s.projection)

    def attach(self, model):
        """``model`` (a ``PromptTuningModel``) with these regularisers: its outputs in
        training carry ``reference``, its ``compute_loss`` adds the terms."""
        model.regularizer = self
        model.register_forward_hook(self._add_reference)
        return model

    def _add_reference(self, model, args, out):
        if model.training and self.needs_reference:
            out.reference = self.reference(args[0], model.logit_scale())

    @torch.no_grad()
    def reference(self, images, logit_scale):
        image_features = l2_normalize(self.encoder(images.to(self.input_dtype)).float())
        logits = logit_scale.float() * image_features @ self.text_features.t()
        return Reference(image_features, logits)

    def terms(self, out):
        """The unweighted loss terms that are on, by name (tensors)."""
        s, terms = self.settings, {}
        if s.text_consistency:
            cosine = F.cosine_similarity(
                self._features(out, "text_features"), self.text_features, dim=1, eps=COSINE_EPS
            )
            terms["text_consistency"] = 1.0 - cosine.mean()
        if s.text_agreement:
            text_features = self._features(out, "text_features")
            terms["text_agreement"] = F.l1_loss(text_features, self.text_features)
        if s.image_agreement:
            image_features = self._features(out, "image_features")
            terms["image_agreement"] = F.l1_loss(image_features, out.reference.image_features)
        if s.logits_agreement:
            logits = out.logits.float()
            kl = F.kl_div(
                F.log_softmax(logits, dim=1),
                F.log_softmax(out.reference.logits, dim=1),
                reduction="sum",
                log_target=True,
            )
            terms["logits_agreement"] = kl / logits.numel()
        return terms

    def add_terms(self, loss, terms, out):
        """``loss`` with the weighted terms added, ``terms`` with them (unweighted) and, with
        the projection on, the distillation loss it projects against (not in the loss)."""
        weights = self.settings.loss_weights
        for name, value in self.terms(out).items():
            loss = loss + weights[name] * value
            terms[name] = value
        if self.settings.projection:
            terms["zeroshot_distillation"] = self.distillation_loss(out)
        return loss, terms

    def distillation_loss(self, out):
        """ProGrad's: cross-entropy of the learned logits against zero-shot CLIP's softmax, at
        temperature T, times T^2, averaged over the batch."""
        t = self.settings.temperature
        teacher = F.softmax(out.reference.logits / t, dim=-1)
        log_student = F.log_softmax(out.logits.float() / t, dim=-1)
        return (-teacher * log_student * t * t).sum(1).mean()

    @staticmethod
    def _features(out, name):
        features = getattr(out, name)
        if features is None:
            raise ValueError(
                f"this model's outputs carry no {name.replace('_', ' ')} (a model whose "
                "logits are not one set of normalised image features against one of text "
                "features): turn off the regularisers that compare them"
            )
        return features.float()


def _backward(loss, retain_graph=False):
    loss.backward(retain_graph=retain_graph)


def projected_backward(parameters, loss, guide, strength, backward=_backward):
    """ProGrad's backward: gradients of ``loss`` in ``.grad`` (which must be zero or None),
    where a parameter's gradient points against that of ``guide`` (negative cosine) it loses
    ``strength`` times its component along it. Per parameter tensor, as in ProGrad's
    ``prograd_backward_and_update``. ``backward(loss, retain_graph)`` runs the backward
    passes (e.g. through a grad scaler: scaling both losses by one factor scales the result
    by it)."""
    params = [p for p in parameters if p.requires_grad]
    backward(guide, retain_graph=True)
    guide_grads = [None if p.grad is None else p.grad.clone() for p in params]
    for param in params:
        param.grad = None
    backward(loss)
    for param, guide_grad in zip(params, guide_grads):
        if param.grad is None or guide_grad is None:
            continue
        grad = param.grad
        guide_unit = guide_grad / torch.linalg.norm(guide_grad)
        cosine = torch.dot((grad / torch.linalg.norm(grad)).flatten(), guide_unit.flatten())
        if cosine < 0:
            param.grad = grad - strength * torch.dot(grad.flatten(), guide_unit.flatten()) * (
                guide_unit
            )


def gpa_weights(n_epochs, mean, std):
    """PromptSRC's epoch weights: the normal density at epochs 1..n_epochs, normalised."""
    density = [
        math.exp(-0.5 * ((epoch - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
        for epoch in range(1, n_epochs + 1)
    ]
    total = sum(density)
    return [value / total for value in density]


class GaussianAggregation:
    """PromptSRC's Gaussian prompt aggregation over ``n_epochs`` epochs: ``after_epoch``
    adds the learnable parameters, weighted, to a running sum (float32, in epoch order), and
    after the last epoch writes the sum into them. PromptSRC's code sums its whole
    ``state_dict``; the frozen weights come back equal up to rounding, so only the learned
    parameters are summed here."""

    def __init__(self, n_epochs, mean, std):
        self.n_epochs = n_epochs
        self.weights = gpa_weights(n_epochs, mean, std)
        self.running = None

    def after_epoch(self, epoch, params):
        """``params``: ``{name: tensor}`` of the learnable parameters after epoch ``epoch``
        (0-based); after the last epoch they are overwritten in place with the average."""
        weight = self.weights[epoch]
        weighted = {name: value.detach().float() * weight for name, value in params.items()}
        if self.running is None:
            self.running = weighted
        else:
            running = {
                name: value.to(weighted[name].device) for name, value in self.running.items()
            }
            self.running = {name: running[name] + weighted[name] for name in weighted}
        if epoch == self.n_epochs - 1:
            with torch.no_grad():
                for name, value in params.items():
                    value.copy_(self.running[name])

    def state_dict(self):
        """The running sum (None before the first epoch): what a resumed run needs."""
        return {"running": self.running}

    def load_state_dict(self, state):
        self.running = state["running"]
