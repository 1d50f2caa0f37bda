"""IVLP: independent deep prompts in both towers (the baseline of Khattak et al., MaPLe,
CVPR 2023; github muzairkhattak/multimodal-prompt-learning, trainers/independentVL.py).

Also here, as IVLP, MaPLe and PromptSRC share them: the authors' initial text context
(``phrase_context``), text features with deep prompts, and the model shape they all have
(``CarriedPromptModel``).
"""

import re
import warnings
from collections import OrderedDict

import torch

from models.base import ModelOutput, PromptTuningModel, l2_normalize
from models.name_map import NameEntry, NameMap
from models.prompting import NO_PROMPTS, DeepPrompt
from models.settings import (
    PHRASE_INIT_MAX_CTX,
    PROMPT_INIT_STD,
    IVLPCfg,
    TextPromptCfg,
    check_depth,
)
from models.text import PLACEHOLDER, LearnedTextFeatures, PromptLearner, display_name
from models.visual import CarriedPrompts, PromptedViT, require_vit

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import clip


def phrase_context(clip_model, n_ctx, ctx_init):
    """The initial text context (float32 [n_ctx, D]) and the text that precedes the class name
    in the prompt, by the rule of IVLP, MaPLe and PromptSRC: ``ctx_init`` only when
    n_ctx <= 4; then the WHOLE phrase precedes the name and the context is initialised from
    its first n_ctx token embeddings (a longer phrase's other tokens stay fixed in the
    prompt); otherwise n_ctx random vectors, standing for "X X ...".
    """
    token_embedding = clip_model.token_embedding
    if ctx_init and n_ctx <= PHRASE_INIT_MAX_CTX:
        phrase = display_name(ctx_init)
        ids = clip.tokenize(phrase).to(token_embedding.weight.device)
        with torch.no_grad():
            return token_embedding(ids)[0, 1 : 1 + n_ctx].float(), phrase
    width = token_embedding.weight.shape[1]
    ctx = torch.empty(n_ctx, width, device=token_embedding.weight.device)
    return ctx.normal_(std=PROMPT_INIT_STD), " ".join([PLACEHOLDER] * n_ctx)


def deep_text_features(clip_model, classnames, n_ctx, ctx_init, depth):
    """Text features of prompts "<phrase or X...> <name>." whose context is learned at the
    input and replaced by fresh learnable tokens before text blocks 1..depth-1."""
    context = phrase_context(clip_model, n_ctx, ctx_init)
    learner = PromptLearner(clip_model, classnames, settings=TextPromptCfg(), context=context)
    deep = None
    if depth > 1:
        device = clip_model.logit_scale.device
        deep = DeepPrompt(depth - 1, n_ctx, clip_model.ln_final.weight.shape[0], device=device)
    return LearnedTextFeatures(clip_model, learner, deep)


class CarriedPromptModel(PromptTuningModel):
    """Learned text context at the input and per text block, prompts carried through the
    image tower (``visual_prompts``); logits of the normalised image features against the
    normalised text features, trained with cross-entropy."""

    def visual_prompts(self):
        """The image tower's prompt hook."""
        raise NotImplementedError

    def encode(self, images):
        """Image and text features, [B, E] and [C, E], not normalised."""
        prompts = self.visual_prompts()
        with torch.set_grad_enabled(torch.is_grad_enabled() and prompts is not NO_PROMPTS):
            image_features = self.image_encoder(images, prompts)
        return image_features, self.text()

    def forward(self, images):
        image_features, text_features = self.encode(images)
        image_features, text_features = l2_normalize(image_features), l2_normalize(text_features)
        logits = self.logit_scale() * image_features @ text_features.t()
        return ModelOutput(logits, image_features, text_features)


class IVLPModel(CarriedPromptModel):
    """IVLP's prompts (``IVLPCfg``): text context learned at the input and replaced before text
    blocks 1..depth_text-1; vision tokens appended before ``ln_pre`` and replaced before
    vision blocks 1..depth_vision-1. Learnable: ``prompt_learner`` (the input context),
    ``text_prompt`` and ``visual_prompt`` (those with tokens)."""

    def __init__(self, clip_model, classnames, *, ivlp_cfg=IVLPCfg()):
        require_vit(clip_model, "IVLP")
        check_depth(ivlp_cfg, "depth_text", len(clip_model.transformer.resblocks), "text")
        check_depth(
            ivlp_cfg, "depth_vision", len(clip_model.visual.transformer.resblocks), "vision"
        )
        super().__init__(clip_model)
        self.text = deep_text_features(
            clip_model, classnames, ivlp_cfg.n_ctx_text, ivlp_cfg.ctx_init, ivlp_cfg.depth_text
        )
        self.image_encoder = PromptedViT(clip_model.visual)
        self.visual_prompt = None
        if ivlp_cfg.depth_vision:
            self.visual_prompt = DeepPrompt(
                ivlp_cfg.depth_vision,
                ivlp_cfg.n_ctx_vision,
                self.image_encoder.width,
                device=clip_model.logit_scale.device,
            )

    def learnable_modules(self):
        modules = OrderedDict(prompt_learner=self.text.prompt_learner)
        if self.text.deep_prompt is not None:
            modules["text_prompt"] = self.text.deep_prompt
        if self.visual_prompt is not None:
            modules["visual_prompt"] = self.visual_prompt
        return modules

    def visual_prompts(self):
        if self.visual_prompt is None:
            return NO_PROMPTS
        tokens = self.visual_prompt.tokens
        return CarriedPrompts(tokens[0], tokens[1:])

    def upstream_names(self):
        """Our learnable tensors under the names of the authors' ``CustomCLIP``."""
        deep = self.text.deep_prompt
        depth_text = 1 + (0 if deep is None else deep.n_layers)
        depth_vision = 0 if self.visual_prompt is None else self.visual_prompt.n_layers
        return ivlp_names(depth_text, depth_vision)


def ivlp_names(depth_text, depth_vision):
    """The ``NameMap`` of IVLP's prompts to the authors' names, for these depths."""
    entries = [NameEntry("prompt_learner.ctx", "prompt_learner.ctx")]
    if depth_vision:
        entries.append(NameEntry("visual_prompt.tokens", "image_encoder.VPT", 0))
        entries += [
            NameEntry("visual_prompt.tokens", _block_prompt("image_encoder", i), i)
            for i in range(1, depth_vision)
        ]
    entries += [
        NameEntry("text_prompt.tokens", _block_prompt("text_encoder", i), i - 1)
        for i in range(1, depth_text)
    ]
    return NameMap(entries)


def ivlp_names_in(state_dict):
    """The ``NameMap`` for the prompts an IVLP ``CustomCLIP`` state dict of the authors holds
    (its depths read off its keys)."""
    n_deep = {
        encoder: sum(1 for key in state_dict if _BLOCK_PROMPT[encoder].match(key))
        for encoder in _BLOCK_PROMPT
    }
    depth_vision = 1 + n_deep["image_encoder"] if "image_encoder.VPT" in state_dict else 0
    return ivlp_names(1 + n_deep["text_encoder"], depth_vision)


_BLOCK_PROMPT = {
    encoder: re.compile(rf"{encoder}\.transformer\.resblocks\.\d+\.VPT_shallow$")
    for encoder in ("image_encoder", "text_encoder")
}


def _block_prompt(encoder, block):
    return f"{encoder}.transformer.resblocks.{block}.VPT_shallow"
