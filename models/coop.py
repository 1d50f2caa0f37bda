"""CoOp: learnable text context, frozen CLIP image encoder."""

import warnings
from collections import OrderedDict

import torch

from models.base import ModelOutput, PromptTuningModel, l2_normalize
from models.settings import TextPromptCfg
from models.text import PLACEHOLDER, LearnedTextFeatures, PromptLearner, display_name
from models.visual import frozen_image_encoder

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import clip


TEMPLATE_TAIL = " {}."


def template_context(clip_model, n_ctx, template):
    """ProGrad's initial context (its ``TRAINER.COOP.CTX_INIT`` true), for ``PromptLearner``'s
    ``context``: the template's text before " {}." (k words) ends the n_ctx context vectors,
    which the embeddings of its first k tokens initialise; the n_ctx - k before it start at
    zero. The prompt text is "X ... X <that text> <name>." (a text with more tokens than
    words keeps the others fixed after the context)."""
    if not template.endswith(TEMPLATE_TAIL):
        raise ValueError(f"a template ending in {TEMPLATE_TAIL!r} is needed, got {template!r}")
    phrase = display_name(template[: -len(TEMPLATE_TAIL)])
    n_words = len(phrase.split(" "))
    if n_ctx < n_words:
        raise ValueError(
            f"{n_ctx} context tokens cannot hold the {n_words} words of {phrase!r}: use at "
            f"least {n_words}"
        )
    token_embedding = clip_model.token_embedding
    ids = clip.tokenize(phrase).to(token_embedding.weight.device)
    ctx = torch.zeros(n_ctx, token_embedding.weight.shape[1], device=ids.device)
    with torch.no_grad():
        ctx[n_ctx - n_words :] = token_embedding(ids)[0, 1 : 1 + n_words].float()
    return ctx, " ".join([PLACEHOLDER] * (n_ctx - n_words) + [phrase])


class CoOpModel(PromptTuningModel):
    """Logits of CLIP's image features against the learned prompts' text features."""

    def __init__(self, clip_model, classnames, *, text_cfg=TextPromptCfg(), context=None):
        super().__init__(clip_model)
        prompt_learner = PromptLearner(clip_model, classnames, settings=text_cfg, context=context)
        self.text = LearnedTextFeatures(clip_model, prompt_learner)
        self.image_encoder = frozen_image_encoder(clip_model.visual)

    def learnable_modules(self):
        return OrderedDict(prompt_learner=self.text.prompt_learner)

    def encode(self, images):
        """Image and text features, [B, E] and [C, E], not normalised."""
        with torch.no_grad():  # nothing learnable on the image side
            image_features = self.image_encoder(images.to(self.dtype))
        return image_features, self.text()

    def forward(self, images):
        image_features, text_features = self.encode(images)
        image_features, text_features = l2_normalize(image_features), l2_normalize(text_features)
        logits = self.logit_scale() * image_features @ text_features.t()
        return ModelOutput(logits, image_features, text_features)
