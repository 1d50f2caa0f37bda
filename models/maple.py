"""MaPLe: multi-modal prompt learning (Khattak et al., CVPR 2023; github
muzairkhattak/multimodal-prompt-learning, trainers/maple.py).

IVLP's text prompts in the first ``depth`` text layers; the image tower's prompts of each of
those layers are not learned on their own but mapped from that layer's text prompts by a
learned linear coupling (text width -> image width), so the two towers' prompts are coupled.
"""

import copy
import re
from collections import OrderedDict

import torch.nn as nn

from models.ivlp import CarriedPromptModel, deep_text_features
from models.name_map import NameEntry, NameMap
from models.settings import MaPLeCfg, check_depth
from models.visual import CarriedPrompts, PromptedViT, require_vit


class VisionCoupling(nn.Module):
    """The couplings: ``input`` maps the input text context to the image tower's input
    prompts; ``blocks[j]`` maps the deep text prompts of text block j + 1 to those of image
    block j + 1. As in the authors' code, the block couplings start as copies of one layer."""

    def __init__(self, n_blocks, text_width, image_width, device=None):
        super().__init__()
        self.input = nn.Linear(text_width, image_width, device=device)
        block = nn.Linear(text_width, image_width, device=device)
        self.blocks = nn.ModuleList(copy.deepcopy(block) for _ in range(n_blocks))

    def forward(self, ctx, block_tokens):
        """Image-tower prompts: the input tokens and one set per prompted block after it."""
        return self.input(ctx), [coupling(t) for coupling, t in zip(self.blocks, block_tokens)]


class MaPLeModel(CarriedPromptModel):
    """MaPLe's prompts (``MaPLeCfg``). Learnable: ``prompt_learner`` (the input text context),
    ``text_prompt`` (the deep text prompts, with depth > 1) and ``coupling``."""

    def __init__(self, clip_model, classnames, *, maple_cfg=MaPLeCfg()):
        require_vit(clip_model, "MaPLe")
        n_layers = min(
            len(clip_model.transformer.resblocks), len(clip_model.visual.transformer.resblocks)
        )
        check_depth(maple_cfg, "depth", n_layers, "text and vision")
        super().__init__(clip_model)
        self.text = deep_text_features(
            clip_model, classnames, maple_cfg.n_ctx, maple_cfg.ctx_init, maple_cfg.depth
        )
        self.image_encoder = PromptedViT(clip_model.visual)
        self.coupling = VisionCoupling(
            maple_cfg.depth - 1,
            clip_model.ln_final.weight.shape[0],
            self.image_encoder.width,
            device=clip_model.logit_scale.device,
        )

    def learnable_modules(self):
        modules = OrderedDict(prompt_learner=self.text.prompt_learner)
        if self.text.deep_prompt is not None:
            modules["text_prompt"] = self.text.deep_prompt
        modules["coupling"] = self.coupling
        return modules

    def image_prompt_tokens(self):
        """The image tower's prompts, as the couplings map them from the text prompts."""
        deep = self.text.deep_prompt
        block_tokens = () if deep is None else deep.tokens.unbind(0)
        return self.coupling(self.text.prompt_learner.ctx, block_tokens)

    def visual_prompts(self):
        return CarriedPrompts(*self.image_prompt_tokens())

    def upstream_names(self):
        """Our learnable tensors under the names of the authors' ``CustomCLIP``."""
        return maple_names(1 + len(self.coupling.blocks))


_LEARNER = "prompt_learner"
_DEEP_TEXT = re.compile(rf"{_LEARNER}\.compound_prompts_text\.\d+$")


def maple_names(depth):
    """The ``NameMap`` of MaPLe's prompts and couplings to the authors' names."""
    entries = [NameEntry("prompt_learner.ctx", f"{_LEARNER}.ctx")]
    entries += [
        NameEntry(f"coupling.input.{key}", f"{_LEARNER}.proj.{key}") for key in ("weight", "bias")
    ]
    for j in range(depth - 1):
        entries.append(NameEntry("text_prompt.tokens", f"{_LEARNER}.compound_prompts_text.{j}", j))
        entries += [
            NameEntry(
                f"coupling.blocks.{j}.{key}", f"{_LEARNER}.compound_prompt_projections.{j}.{key}"
            )
            for key in ("weight", "bias")
        ]
    return NameMap(entries)


def maple_names_in(state_dict):
    """The ``NameMap`` for an authors' MaPLe ``CustomCLIP`` state dict (depth from its keys)."""
    return maple_names(1 + sum(1 for key in state_dict if _DEEP_TEXT.match(key)))
