"""Torch helper of the pooling layers: average pooling over padding PyTorch refuses.

The source emitter copies this definition into generated files: inside it only the names
torch, nn, F and math are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def avg_pool_real_cells(x, pad, kernel_size, stride, ceil_mode=False):
    """Average pooling of x zero-padded by ``pad`` (F.pad's order) that counts only x's own
    cells (count_include_pad=False with padding nn.AvgPool refuses): the average over the
    padded x divided by the average of a padded mask of ones, whose divisors cancel, is
    each window's sum over the count of x's cells in it. A window wholly in the padding
    has no cells and gives 0."""
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[len(kernel_size) - 1]
    total = pool(F.pad(x, pad), kernel_size, stride, ceil_mode=ceil_mode)
    ones = torch.ones_like(x[:1, :1])
    count = pool(F.pad(ones, pad), kernel_size, stride, ceil_mode=ceil_mode)
    return total / count.masked_fill(count == 0, 1)
