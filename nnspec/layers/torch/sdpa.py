"""Torch helpers of the sdpa layer (scaled dot-product attention of projected tensors).

The source emitter copies these definitions into generated files: inside them only the
names torch, nn, F and math are used.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


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


def visible(t, s, device, causal=False, window=None):
    """[T, S] bool mask, True where query i may see key j, for T queries at the end of S
    keys (query i sits at position p = i + S - T): causal keeps j <= p; window keeps
    p - window < j (with causal: the window most recent keys, itself included), and without
    causal also j < p + window (a band of keys nearer than window on either side)."""
    p = torch.arange(t, device=device)[:, None] + (s - t)
    j = torch.arange(s, device=device)[None, :]
    allowed = j <= p if causal else torch.ones(t, s, dtype=torch.bool, device=device)
    if window is not None:
        allowed = allowed & (j > p - window)
        if not causal:
            allowed = allowed & (j < p + window)
    return allowed


def window_mask(q, k, window, causal=False, mask=None):
    """The sliding-window (and causal) mask of q [..., T, D] and k [..., S, D], sizes taken
    at run time, as :func:`visible`; merged with an attn_mask (bool, True = attend, or
    additive float) if one is given."""
    allowed = visible(q.shape[-2], k.shape[-2], q.device, causal, window)
    if mask is None:
        return allowed
    if mask.dtype == torch.bool:
        return mask & allowed
    return torch.where(allowed, mask, float("-inf"))


def softcapped_attention(
    query, key, value, attn_mask=None, dropout_p=0.0, scale=None, enable_gqa=False, softcap=1.0
):
    """F.scaled_dot_product_attention with the scores soft-capped (Gemma 2's attention
    logit soft-capping): s -> softcap * tanh(s / softcap) after the scale, before the mask
    is added or applied and the softmax. It needs the scores, so no fused kernel: written
    out. A query that sees no key gets zero weights (its output is zero), as SDPA gives."""
    if enable_gqa:
        key = key.repeat_interleave(query.shape[-3] // key.shape[-3], dim=-3)
        value = value.repeat_interleave(query.shape[-3] // value.shape[-3], dim=-3)
    c = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = torch.matmul(query, key.transpose(-1, -2)) * c
    scores = torch.tanh(scores / softcap) * softcap
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, -math.inf)
        else:
            scores = scores + attn_mask.to(scores.dtype)
    # rows with no key are computed on zeros, so that no NaN arises, then zeroed
    empty = torch.isneginf(scores).all(-1, keepdim=True)
    attn = torch.softmax(scores.masked_fill(empty, 0.0), dim=-1).masked_fill(empty, 0.0)
    if dropout_p > 0:
        attn = F.dropout(attn, dropout_p)
    return torch.matmul(attn, value)


class ScaledDotProductAttention(nn.Module):
    """F.scaled_dot_product_attention with dropout of probability p on the attention
    weights in training mode only (as nn.Dropout), none in eval mode."""

    def __init__(self, p=0.0):
        super().__init__()
        self.p = p

    def forward(
        self, query, key, value, attn_mask=None, is_causal=False, scale=None, enable_gqa=False
    ):
        return F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attn_mask,
            dropout_p=self.p if self.training else 0.0,
            is_causal=is_causal,
            scale=scale,
            enable_gqa=enable_gqa,
        )


class SoftcappedAttention(nn.Module):
    """:func:`softcapped_attention` with dropout of probability p on the attention weights
    in training mode only (as nn.Dropout), none in eval mode."""

    def __init__(self, softcap, p=0.0):
        super().__init__()
        self.softcap = softcap
        self.p = p

    def forward(self, query, key, value, attn_mask=None, scale=None, enable_gqa=False):
        p = self.p if self.training else 0.0
        return softcapped_attention(
            query, key, value, attn_mask, p, scale, enable_gqa, softcap=self.softcap
        )
