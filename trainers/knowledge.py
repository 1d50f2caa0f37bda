"""The knowledge-preserving regularisers (models/knowledge.py) as options of every method, in
one config block, ``TRAINER.REGULARIZER``: each is off at 0 and they compose.

    TEXT_CONSISTENCY   KgCoOp's W: 1 - mean cosine of learned and hand-crafted text features
    TEXT_AGREEMENT     PromptSRC's TEXT_LOSS_WEIGHT: L1 of the normalised text features
    IMAGE_AGREEMENT    PromptSRC's IMAGE_LOSS_WEIGHT: L1 of the normalised image features
    LOGITS_AGREEMENT   PromptSRC's 1: KL(zero-shot || learned logits) / number of logits
    PROJECTION         ProGrad's LOSS.LAMBDA: gradient projection against distilling zero-shot
    TEMPERATURE        ProGrad's LOSS.T
    GPA_MEAN, GPA_STD  PromptSRC's Gaussian aggregation of the learned parameters over epochs
    TEMPLATES          the hand-crafted text they compare with: "dataset" (its template) or
                       "imagenet" (the mean over PromptSRC's 60 ImageNet templates)

The paper methods (trainers/kgcoop.py, prograd.py, promptsrc.py) are these options on their
base method, read from their authors' keys instead.
"""

from engine.config import extend_cfg
from models.knowledge import GaussianAggregation, KnowledgeRegularizer, projected_backward
from models.settings import RegularizerCfg
from models.templates import IMAGENET_TEMPLATES
from trainers.settings import ConfigKeys

REGULARIZER_KEYS = ConfigKeys(
    RegularizerCfg,
    text_consistency="TRAINER.REGULARIZER.TEXT_CONSISTENCY",
    text_agreement="TRAINER.REGULARIZER.TEXT_AGREEMENT",
    image_agreement="TRAINER.REGULARIZER.IMAGE_AGREEMENT",
    logits_agreement="TRAINER.REGULARIZER.LOGITS_AGREEMENT",
    projection="TRAINER.REGULARIZER.PROJECTION",
    temperature="TRAINER.REGULARIZER.TEMPERATURE",
    gpa_mean="TRAINER.REGULARIZER.GPA_MEAN",
    gpa_std="TRAINER.REGULARIZER.GPA_STD",
)
ANCHORS = {"dataset": None, "imagenet": IMAGENET_TEMPLATES}


@extend_cfg
def regularizer_cfg(cfg):
    REGULARIZER_KEYS.declare(cfg)
    cfg.TRAINER.REGULARIZER.TEMPLATES = "dataset"


def anchor_templates(cfg, template):
    """The templates of TRAINER.REGULARIZER.TEMPLATES for a dataset whose own is ``template``."""
    name = cfg.TRAINER.REGULARIZER.TEMPLATES
    if name not in ANCHORS:
        raise ValueError(
            f"TRAINER.REGULARIZER.TEMPLATES must be one of {', '.join(ANCHORS)}, got {name!r}"
        )
    return ANCHORS[name] or [template]


def attach(model, settings, clip_model, classnames, templates):
    """``model`` with the regularisers of ``settings`` (none when all are off)."""
    if not settings.active:
        return model
    regularizer = KnowledgeRegularizer(clip_model, classnames, templates, settings)
    return regularizer.attach(model)


def projected_step(step, output, loss, strength):
    """ProGrad's step: the gradients of ``loss`` projected against those of distilling zero-shot
    CLIP (``models.knowledge.projected_backward``), through the step's grad scaler."""
    with step.autocast():
        guide = step.module.regularizer.distillation_loss(output)
    step.check_finite(loss)
    step.zero_grad()
    params = [
        p
        for module in step.optimisers
        for p in step.module.learnable_modules()[module].parameters()
    ]
    projected_backward(params, loss, guide, strength, backward=step.backward)
    step.step()


def aggregation(settings, n_epochs):
    """PromptSRC's aggregation over ``n_epochs``, or None when off."""
    if settings.gpa_std <= 0:
        return None
    return GaussianAggregation(n_epochs, settings.gpa_mean, settings.gpa_std)
