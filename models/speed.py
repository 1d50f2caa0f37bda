"""Switches for the exact speed-ups of the models (each one leaves the results unchanged).

Modules that honour them hold a ``speed`` attribute (a ``Speed``); ``apply_speed`` sets it on
every such module of a model. The defaults are the fast path; ``PLAIN`` computes what the
original code computes (full 77-token prompts for every use, ``nn.MultiheadAttention``).
"""

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Speed:
    """sdpa: attention through ``F.scaled_dot_product_attention`` (both towers).
    truncate_text: run the text encoder on the tokens up to the last EOS, not all 77.
    shared_text_prefix: the leading prompt tokens that every class shares (SOS and a shared
    context before the class name) go through the text encoder once (needs ``sdpa``).
    cache_text: learned text features computed once per evaluation, not per batch.
    checkpoint_text: recompute the text tower's activations in the backward pass (less
    memory for many classes, about one more text forward in time).
    compile: a ``torch.compile`` backend for the transformer blocks ("" = off).
    """

    sdpa: bool = True
    truncate_text: bool = True
    shared_text_prefix: bool = True
    cache_text: bool = True
    checkpoint_text: bool = False
    compile: str = ""

    def __post_init__(self):
        if self.shared_text_prefix and not self.sdpa:
            raise ValueError("shared_text_prefix needs sdpa (its attention is written with it)")


PLAIN = Speed(sdpa=False, truncate_text=False, shared_text_prefix=False, cache_text=False)


def apply_speed(model, speed):
    """Set ``speed`` on every module of ``model`` that has speed switches."""
    for module in model.modules():
        if isinstance(getattr(module, "speed", None), Speed):
            module.speed = speed
    return model


@functools.cache
def _compiled(fn, backend):
    return torch.compile(fn, backend=backend)


def block_function(fn, speed):
    """``fn`` (a block runner of ``models.attention``), compiled when ``speed.compile``."""
    return _compiled(fn, speed.compile) if speed.compile else fn
