"""Torch helpers of the sdpa layer (scaled dot-product attention of projected tensors).

The source emitter copies these definitions into generated files: inside them only the
names torch, nn and F are used.
"""

from __future__ import annotations

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
