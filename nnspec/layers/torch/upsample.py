"""Torch helper of the upsampling layers: a scale that gives the input's own size copies.

The source emitter copies this definition into generated files: inside it only the names
torch, nn, F and math are used.
"""

from __future__ import annotations

import math

import torch.nn.functional as F


def interpolate_copying(x, scale_factor, mode, align_corners=None):
    """F.interpolate by ``scale_factor``, except that a dim whose output size equals its
    input's (nearest: or is twice it) is scaled by exactly 1 (2). There torch's backward of
    nearest and bicubic copies (doubles) each pixel while its forward steps by 1/scale; with
    1 (2) both copy, as nnspec's NumPy backend does. For sizes known only at run time."""
    n = x.dim() - 2
    scales = list(scale_factor) if isinstance(scale_factor, (tuple, list)) \
        else [scale_factor] * n
    fixed = []
    for size, s in zip(x.shape[2:], scales):
        out = math.floor(size * s)
        if out == size or (mode == "nearest" and out == 2 * size):
            s = float(out // size)
        fixed.append(s)
    return F.interpolate(x, scale_factor=fixed, mode=mode, align_corners=align_corners)
