"""Torch helpers of the positional layer: sinusoidal encodings added to x, and a learned
table (an nn.Embedding) whose first T rows are added.

The source emitter copies these definitions into generated files: inside them only the
names torch, nn, F and math are used.
"""

from __future__ import annotations

import math

import torch
from torch import nn


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
            raise ValueError(
                f"the sequence has {t} positions, more than max_len={self.num_embeddings}"
            )
        return x + self.weight[:t]
