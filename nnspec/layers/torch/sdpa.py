"""Torch helpers of the sdpa layer (scaled dot-product attention of projected tensors).

The source emitter copies these definitions into generated files: inside them only the
names torch, nn, F and math are used.
"""

from __future__ import annotations

import math

import torch


def causal_lower_right(q, k):
    """[T, S] bool mask, True where query i may see key j: j <= i + S - T. The causal mask
    aligned to the bottom-right corner (a query block at the end of a longer key sequence);
    SDPA's is_causal aligns it top-left, the same only when S == T."""
    t, s = q.shape[-2], k.shape[-2]
    return torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)


def with_causal(mask, q, k):
    """An attn_mask (bool, True = attend, or additive float) merged with the bottom-right
    causal mask: SDPA refuses attn_mask together with is_causal."""
    causal = causal_lower_right(q, k)
    if mask.dtype == torch.bool:
        return mask & causal
    return torch.where(causal, mask, float("-inf"))


def attention_weights(q, k, attn_mask=None, scale=None, enable_gqa=False):
    """softmax(q kᵀ * scale + mask) [..., T, S] as SDPA computes it (scale 1/sqrt(D) by
    default; k's heads repeated for grouped-query attention). A query that sees no key
    gets zero weights, as SDPA gives, not NaN (in the backward pass either)."""
    if enable_gqa:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        scores = torch.where(attn_mask, scores, float("-inf"))
    elif attn_mask is not None:
        scores = scores + attn_mask
    empty = torch.isneginf(scores).all(dim=-1, keepdim=True)
    weights = torch.softmax(scores.masked_fill(empty, 0.0), dim=-1)
    return weights.masked_fill(empty, 0.0)


def attend(weights, v, enable_gqa=False):
    """The attention weights [..., T, S] applied to v [..., S, Dv] (v's heads repeated for
    grouped-query attention)."""
    if enable_gqa:
        v = v.repeat_interleave(weights.shape[-3] // v.shape[-3], dim=-3)
    return weights @ v
