"""Image side: CLIP's ViT with a prompt hook, the visual prompt hooks, CAVPT."""

import contextlib
import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    from clip.model import VisionTransformer

from models.attention import run_block
from models.prompting import NO_PROMPTS, PromptHook, run_blocks
from models.settings import PROMPT_INIT_STD
from models.speed import Speed, block_function


def require_vit(clip_model, model_name):
    """Visual prompts are tokens in a transformer's sequence: a ResNet CLIP has none."""
    if not isinstance(clip_model.visual, VisionTransformer):
        raise TypeError(
            f"{model_name} needs a ViT CLIP backbone (e.g. ViT-B/32 or ViT-B/16): its visual "
            "prompts are tokens appended to the image transformer's sequence; got a "
            f"{type(clip_model.visual).__name__} image encoder (a ResNet backbone)"
        )


def _linear(layer, x):
    """``layer`` applied with its float32 weights cast to the activations' dtype."""
    bias = None if layer.bias is None else layer.bias.to(x.dtype)
    return F.linear(x, layer.weight.to(x.dtype), bias)


def _layer_norm(norm, x):
    """LayerNorm in float32, returned in the input's dtype (as CLIP's LayerNorm does)."""
    out = F.layer_norm(x.float(), norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    return out.to(x.dtype)


class PromptedViT(nn.Module):
    """CLIP's ViT image encoder with a prompt hook (``models.prompting``) around its blocks."""

    def __init__(self, visual):
        super().__init__()
        self.visual = visual
        self.speed = Speed()

    @property
    def n_layers(self):
        return len(self.visual.transformer.resblocks)

    @property
    def width(self):
        return self.visual.conv1.out_channels

    def forward(self, images, prompts=NO_PROMPTS):
        """Image features [B, E] (projected CLS token, not normalised).

        ``prompts.input`` sees the embedded patches [B, 1 + grid ** 2, W] (CLS first) before
        ``ln_pre``; ``enter`` and ``leave`` see the sequence [N, B, W] around each block.
        """
        visual = self.visual
        x = visual.conv1(images.to(visual.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)  # [B, grid ** 2, W]
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.ln_pre(prompts.input(x)).permute(1, 0, 2)  # NLD -> LND
        run = block_function(run_block, self.speed)
        sdpa = self.speed.sdpa

        def step(block, x):
            return run(block, x, causal=False, sdpa=sdpa)

        x = run_blocks(visual.transformer.resblocks, x, step, prompts)
        return visual.ln_post(x[0]) @ visual.proj


def frozen_image_encoder(visual):
    """CLIP's image encoder as a module ``encoder(images)``: a ``PromptedViT`` (which honours
    the speed switches) for a ViT, CLIP's own module for a ResNet."""
    return PromptedViT(visual) if isinstance(visual, VisionTransformer) else visual


class AppendedPrompts(PromptHook):
    """Tokens appended to the sequence entering a block and dropped after it (VPT-deep,
    CAVPT). ``tokens_for(block, x)`` gives them, [n, B, W] for x [N, B, W], or None."""

    def __init__(self, tokens_for):
        self.tokens_for = tokens_for
        self.n_appended = 0

    def enter(self, block, x):
        extra = self.tokens_for(block, x)
        self.n_appended = 0 if extra is None else extra.shape[0]
        return x if extra is None else torch.cat([x, extra.to(x.dtype)])

    def leave(self, block, x):
        return x[: x.shape[0] - self.n_appended]


class CarriedPrompts(PromptHook):
    """Tokens appended to the ViT's input (before ``ln_pre``) and carried through the blocks;
    before block i (1 <= i <= len(block_tokens)) they are replaced by ``block_tokens[i - 1]``
    (IVLP, MaPLe). All tokens are [n, W], shared by the images."""

    def __init__(self, input_tokens, block_tokens=()):
        self.input_tokens = input_tokens
        self.block_tokens = list(block_tokens)

    def input(self, x):
        tokens = self.input_tokens.to(x.dtype).expand(x.shape[0], -1, -1)
        return torch.cat([x, tokens], dim=1)

    def enter(self, block, x):
        if not 1 <= block <= len(self.block_tokens):
            return x
        tokens = self.block_tokens[block - 1]
        kept = x[: x.shape[0] - tokens.shape[0]]
        return torch.cat([kept, tokens.to(x.dtype)[:, None].expand(-1, x.shape[1], -1)])


class ClassAwarePromptBlock(nn.Module):
    """One CAVPT block: class-aware visual prompts for the K selected classes.

    The query of each prompt is the selected class's text feature mapped to the image width;
    it attends over the block's input tokens (detached) and ``n_kv`` learnable tokens. The
    attended output feeds an auxiliary classifier and, added to the query, gives the prompt.
    """

    def __init__(self, text_dim, width, n_classes, n_kv, attn_dim, device=None):
        super().__init__()
        self.kv_tokens = nn.Parameter(torch.empty(n_kv, width, device=device))
        nn.init.normal_(self.kv_tokens, std=PROMPT_INIT_STD)
        self.meta_net = nn.Linear(text_dim, width, device=device)
        self.q_proj = nn.Linear(width, attn_dim, bias=False, device=device)
        self.k_proj = nn.Linear(width, attn_dim, bias=False, device=device)
        self.v_proj = nn.Linear(width, width, bias=False, device=device)
        self.logit_norm = nn.LayerNorm(width, device=device)
        self.classifier = nn.Linear(width, n_classes, bias=False, device=device)
        self.prompt_norm = nn.LayerNorm(width, device=device)
        self.attention_log = None  # a list while CAVPT.recording_attention() is active

    def forward(self, tokens, class_text):
        """tokens [N, B, W], class_text [B, K, E] -> prompts [K, B, W], logits [K, B, C]."""
        dtype = tokens.dtype
        query = _linear(self.meta_net, class_text.to(dtype))  # [B, K, W]
        kv_tokens = self.kv_tokens.to(dtype).expand(tokens.shape[1], -1, -1)
        kv = torch.cat([tokens.detach().transpose(0, 1), kv_tokens], dim=1)  # [B, N + n_kv, W]
        scores = _linear(self.q_proj, query) @ _linear(self.k_proj, kv).transpose(1, 2)
        attn = torch.softmax(scores.float() / math.sqrt(self.q_proj.out_features), dim=-1)
        if self.attention_log is not None:
            self.attention_log.append(attn.detach())
        attended = _linear(self.v_proj, attn.to(dtype) @ kv)
        logits = _linear(self.classifier, _layer_norm(self.logit_norm, attended))
        prompts = _layer_norm(self.prompt_norm, attended + query)
        return prompts.transpose(0, 1), logits.transpose(0, 1)


class CAVPT(nn.Module):
    """Class-aware visual prompt tuning: one ``ClassAwarePromptBlock`` per prompted block
    (``settings`` is a ``CAVPTCfg``: the ViT block it starts in, ``first_block`` (1-based),
    key/value tokens and attention width)."""

    def __init__(self, n_blocks, settings, *, text_dim, width, n_classes, device=None):
        super().__init__()
        self.first_block = settings.first_block
        self.blocks = nn.ModuleList(
            ClassAwarePromptBlock(
                text_dim, width, n_classes, settings.n_kv, settings.attn_dim, device=device
            )
            for _ in range(n_blocks)
        )

    def forward(self, block, tokens, class_text):
        return self.blocks[block](tokens, class_text)

    @contextlib.contextmanager
    def recording_attention(self):
        """Yields a list that collects, in call order, the attention weights that the blocks
        compute in the forward passes run inside: one float32 [B, K, N + n_kv] tensor per
        block call, over the keys of that block (its N input tokens, CLS first and then the
        patches, followed by its n_kv learnable tokens)."""
        log = []
        for block in self.blocks:
            block.attention_log = log
        try:
            yield log
        finally:
            for block in self.blocks:
                block.attention_log = None
