"""How prompts enter CLIP's two transformers: one block loop, a hook around each block.

The prompt-learning methods differ in where their tokens go and what becomes of them block by
block; they do not differ in how a block runs. So both towers run ``run_blocks``: before block
i the hook may insert tokens or replace some (``enter``), after it drop what it inserted or
leave them to be carried on (``leave``); before the first block it may extend the tower's
input (``input``: the ViT's sequence before ``ln_pre``, the text's token embeddings). How a
block runs (SDPA, a shared text prefix, checkpointing, compilation) is the tower's ``step``,
below the hook.
"""

import torch
import torch.nn as nn

from models.settings import PROMPT_INIT_STD


class PromptHook:
    """What prompts do to a tower's token sequence; the base class leaves it unchanged."""

    def input(self, x):
        """The tower's input sequence with the prompts' input tokens."""
        return x

    def enter(self, block, x):
        """The sequence entering block ``block`` (0-based)."""
        return x

    def leave(self, block, x):
        """The sequence leaving block ``block``."""
        return x


NO_PROMPTS = PromptHook()


def run_blocks(blocks, x, step, prompts=NO_PROMPTS):
    """``step(block, x)`` for each block in turn, with ``prompts`` around each."""
    for i, block in enumerate(blocks):
        x = prompts.leave(i, step(block, prompts.enter(i, x)))
    return x


class DeepPrompt(nn.Module):
    """``n_tokens`` learnable tokens of width ``width`` for each of ``n_layers`` places in a
    tower (blocks, or the input and blocks): where they go is the hook's business."""

    def __init__(self, n_layers, n_tokens, width, device=None):
        super().__init__()
        self.tokens = nn.Parameter(torch.empty(n_layers, n_tokens, width, device=device))
        nn.init.normal_(self.tokens, std=PROMPT_INIT_STD)

    @property
    def n_layers(self):
        return self.tokens.shape[0]

    def forward(self, layer, sequence):
        """Layer ``layer``'s tokens for ``sequence`` [N, B, W], as [n_tokens, B, W] (float32),
        or None past the last layer."""
        if layer >= self.n_layers:
            return None
        return self.tokens[layer][:, None].expand(-1, sequence.shape[1], -1)
