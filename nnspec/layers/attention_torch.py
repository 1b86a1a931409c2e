"""Torch helpers of the attention layers (masks, positional encodings).

The source emitter copies these definitions into generated files: inside them only the
names torch, nn, F and math are used.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def causal_mask(q, kv):
    """[T, S] bool mask, True where a query would see a later key (masked out)."""
    return torch.ones(q.shape[1], kv.shape[1], dtype=torch.bool, device=q.device).triu(1)


def causal_padding_mask(q, kv, mask, heads):
    """The causal mask and a key-padding mask [N, S] (nonzero = padded) merged as
    nn.MultiheadAttention merges them: a [N * heads, T, S] bool attn_mask."""
    n, t, s = q.shape[0], q.shape[1], kv.shape[1]
    future = torch.ones(t, s, dtype=torch.bool, device=q.device).triu(1)
    merged = future[None, None] | (mask != 0)[:, None, None, :]
    return merged.expand(n, heads, t, s).reshape(n * heads, t, s)


def add_sinusoidal(x, scale=False, max_len=None):
    """x [N, T, E] (times sqrt(E) with scale) plus the sinusoidal positional encodings
    PE[pos, 2i] = sin(pos / 10000^(2i/E)), PE[pos, 2i+1] = cos(pos / 10000^(2i/E))."""
    t, e = x.shape[1], x.shape[2]
    if max_len is not None and t > max_len:
        raise ValueError(f"the sequence has {t} positions, more than max_len={max_len}")
    pos = torch.arange(t, dtype=torch.float64, device=x.device)[:, None]
    j = torch.arange(e, device=x.device)
    angle = pos / torch.pow(10000.0, (j - j % 2).to(torch.float64) / e)
    pe = torch.where(j % 2 == 0, torch.sin(angle), torch.cos(angle)).to(x.dtype)
    if scale:
        x = x * math.sqrt(e)
    return x + pe


class LearnedPositions(nn.Embedding):
    """Learned positional encodings: an nn.Embedding(max_len, E) table (state_dict key
    ``weight``) whose first T rows are added to x [N, T, E]."""

    def forward(self, x):
        t = x.shape[1]
        if t > self.num_embeddings:
            raise ValueError(f"the sequence has {t} positions, more than max_len="
                             f"{self.num_embeddings}")
        return x + self.weight[:t]


class MaskedAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention (the same arguments and state_dict) for a layer with a
    key-padding mask: a query whose keys are all masked attends to nothing, so its output
    is the output projection's bias (zeros before the projection), in every mode.

    That is what nn.MultiheadAttention's regular path gives; its inference fast path (eval
    mode without grad) gives NaN instead. Such rows are computed unmasked, so that no NaN
    arises anywhere (not in a backward pass either), and then replaced.
    """

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        empty = None
        if key_padding_mask is not None:  # [N, S] bool
            rows = key_padding_mask.all(-1)
            key_padding_mask = key_padding_mask & ~rows[:, None]
            empty = rows[:, None, None]
        elif attn_mask is not None and attn_mask.dim() == 3:  # [N * heads, T, S] bool
            rows = attn_mask.all(-1)
            attn_mask = attn_mask & ~rows[..., None]
            empty = rows.reshape(query.shape[0], -1, rows.shape[-1])[:, 0, :, None]
        out, weights = super().forward(query, key, value, key_padding_mask=key_padding_mask,
                                       need_weights=need_weights, attn_mask=attn_mask,
                                       average_attn_weights=average_attn_weights,
                                       is_causal=is_causal)
        if empty is not None:
            bias = self.out_proj.bias
            fill = bias if bias is not None else out.new_zeros(())
            out = torch.where(empty, fill, out)
        return out, weights
