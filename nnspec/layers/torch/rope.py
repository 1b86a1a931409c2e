"""Torch helpers of the rope layer (rotary position embeddings).

The source emitter copies these definitions into generated files: inside them only the
names torch, nn, F and math are used.
"""

from __future__ import annotations

import torch


def rotate_half(x):
    """(x1, x2) -> (-x2, x1), the halves of the last axis (HF LLaMA's rotate_half)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotate_every_two(x):
    """(x[2i], x[2i + 1]) -> (-x[2i + 1], x[2i]) (RoFormer's and GPT-J's pairs)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def apply_rope(x, theta=10000.0, layout="half", offset=0, dim=None, axis=-2):
    """Rotary position embeddings of x [..., T, ..., D]: the first ``dim`` features (all D
    by default) of position ``offset + t`` along ``axis`` are rotated in pairs by the angles
    (offset + t) * theta^(-2i/dim); the rest pass unchanged (partial rotary, GPT-NeoX).
    ``half`` pairs feature i with i + dim/2 (HF LLaMA), ``interleaved`` 2i with 2i + 1
    (RoFormer, Meta's llama). The angles are computed in float64 and cast to x's dtype,
    as the NumPy backend does, so that both agree at any position."""
    d = x.shape[-1] if dim is None else dim
    axis = axis % x.dim()
    t = x.shape[axis]
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d)
    pos = torch.arange(offset, offset + t, dtype=torch.float64, device=x.device)
    freqs = torch.outer(pos, inv_freq)  # [T, d/2]
    if layout == "half":
        emb, rotate = torch.cat((freqs, freqs), dim=-1), rotate_half
    else:
        emb, rotate = freqs.repeat_interleave(2, dim=-1), rotate_every_two
    # [T, 1, ..., 1, d]: one 1 per axis between the positions and the features
    shape = (t,) + (1,) * (x.dim() - 2 - axis) + (d,)
    cos = emb.cos().to(x.dtype).reshape(shape)
    sin = emb.sin().to(x.dtype).reshape(shape)
    if d == x.shape[-1]:
        return x * cos + rotate(x) * sin
    x_rot, x_pass = x[..., :d], x[..., d:]
    return torch.cat((x_rot * cos + rotate(x_rot) * sin, x_pass), dim=-1)
