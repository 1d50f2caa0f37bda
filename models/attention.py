"""CLIP's transformer blocks, run with CLIP's own weights in one of two ways.

``nn.MultiheadAttention`` (as CLIP's code does) or ``F.scaled_dot_product_attention`` on the
same projection weights, which lets the kernel skip the masked half of causal attention and
keep no attention matrix for the backward pass. Both give the same numbers up to rounding.
Sequences are [L, N, D] (CLIP's layout) or [N, L, D] with ``batch_first``.
"""

import torch
import torch.nn.functional as F


def causal_mask(n, dtype, device):
    """CLIP's additive causal mask: -inf above the diagonal."""
    return torch.full((n, n), float("-inf"), device=device).triu_(1).to(dtype)


def qkv_heads(attn, x, batch_first=False):
    """Queries, keys and values of ``attn`` for ``x``, each [N, heads, L, head_dim]."""
    heads = attn.num_heads
    width = x.shape[-1]
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    if batch_first:
        n, length = x.shape[:2]
        return qkv.view(n, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
    length, n = x.shape[:2]
    return qkv.view(length, n, 3, heads, width // heads).permute(2, 1, 3, 0, 4).unbind(0)


def merge_heads(attn, out, batch_first=False):
    """[N, heads, L, head_dim] attention output -> output projection in ``x``'s layout."""
    n, heads, length, head_dim = out.shape
    if batch_first:
        out = out.permute(0, 2, 1, 3).reshape(n, length, heads * head_dim)
    else:
        out = out.permute(2, 0, 1, 3).reshape(length, n, heads * head_dim)
    return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)


def self_attention(attn, x, *, causal=False, sdpa=True, batch_first=False):
    """Self-attention of CLIP's ``attn`` (an ``nn.MultiheadAttention``) over ``x``."""
    if sdpa:
        q, k, v = qkv_heads(attn, x, batch_first)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return merge_heads(attn, out, batch_first)
    if batch_first:
        x = x.transpose(0, 1)
    mask = causal_mask(x.shape[0], x.dtype, x.device) if causal else None
    out = attn(x, x, x, need_weights=False, attn_mask=mask)[0]
    return out.transpose(0, 1) if batch_first else out


def run_block(block, x, *, causal=False, sdpa=True, batch_first=False):
    """One ``ResidualAttentionBlock`` of CLIP on ``x`` (its own ``attn_mask`` is not used)."""
    attended = self_attention(
        block.attn, block.ln_1(x), causal=causal, sdpa=sdpa, batch_first=batch_first
    )
    x = x + attended
    return x + block.mlp(block.ln_2(x))


def run_block_shared_prefix(block, prefix, suffix):
    """A causal block over sequences that all begin with the same ``prefix`` tokens.

    ``prefix`` [1, P, D] is run once; ``suffix`` [C, S, D] holds each sequence's remaining
    tokens, which attend to the prefix and causally to themselves. Equals running the C full
    sequences [C, P + S, D] (a causal model's prefix does not depend on what follows it).
    """
    attn = block.attn
    n_prefix, n_suffix = prefix.shape[1], suffix.shape[1]
    q_p, k_p, v_p = qkv_heads(attn, block.ln_1(prefix), batch_first=True)
    q_s, k_s, v_s = qkv_heads(attn, block.ln_1(suffix), batch_first=True)
    out_p = F.scaled_dot_product_attention(q_p, k_p, v_p, is_causal=True)
    n_seq = suffix.shape[0]
    k = torch.cat([k_p.expand(n_seq, -1, -1, -1), k_s], dim=2)
    v = torch.cat([v_p.expand(n_seq, -1, -1, -1), v_s], dim=2)
    sees = torch.ones(n_suffix, n_prefix + n_suffix, dtype=torch.bool, device=suffix.device)
    sees = sees.tril(diagonal=n_prefix)  # suffix token i sees the prefix and suffix 0..i
    out_s = F.scaled_dot_product_attention(q_s, k, v, attn_mask=sees)
    prefix = prefix + merge_heads(attn, out_p, batch_first=True)
    suffix = suffix + merge_heads(attn, out_s, batch_first=True)
    prefix = prefix + block.mlp(block.ln_2(prefix))
    suffix = suffix + block.mlp(block.ln_2(suffix))
    return prefix, suffix
