"""Torch helper of the pooling layers: average pooling over padding PyTorch refuses.

The source emitter copies this definition into generated files: inside it only the names
torch, nn, F and math are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def avg_pool_real_cells(x, pad, kernel_size, stride, ceil_mode=False,
                        count_include_pad=False):
    """Average pooling of x zero-padded by ``pad`` (F.pad's order) that counts only x's own
    cells (count_include_pad=False with padding nn.AvgPool refuses), or with
    ``count_include_pad`` the cells of the padded extent: the average over the padded x
    divided by the average of a padded mask of the counted cells, whose divisors cancel, is
    each window's sum over its count. A window with no counted cell gives 0. A padded size
    below the kernel (ceil mode) is zero-extended to it, uncounted: avg_pool3d refuses it."""
    n = len(kernel_size)
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[n - 1]
    full = list(pad)
    for j in range(n):  # pad[2 * j: 2 * j + 2] pads the j-th dim from the last
        size = x.shape[-1 - j] + pad[2 * j] + pad[2 * j + 1]
        full[2 * j + 1] += max(0, kernel_size[n - 1 - j] - size)
    total = pool(F.pad(x, full), kernel_size, stride, ceil_mode=ceil_mode)
    counted = F.pad(torch.ones_like(x[:1, :1]), pad, value=float(count_include_pad))
    counted = F.pad(counted, [b - a for a, b in zip(pad, full)])
    count = pool(counted, kernel_size, stride, ceil_mode=ceil_mode)
    return total / count.masked_fill(count == 0, 1)
