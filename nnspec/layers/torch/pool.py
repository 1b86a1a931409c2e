"""Torch helpers of the pooling layers: average pooling over padding PyTorch refuses, and
average pooling with dilation.

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


def avg_pool_dilated(x, pad, kernel_size, stride, dilation, ceil_mode=False,
                     count_include_pad=True):
    """Average pooling whose window taps lie ``dilation`` apart (F.avg_pool has no
    dilation) over x zero-padded by ``pad`` (F.pad's order): each window's sum over its
    counted taps, those inside the padded extent (count_include_pad) or inside x only, and
    0 for a window with none. The windows are max pooling's: PyTorch's output size, where
    in ceil mode a last window is kept if it starts inside x or the left padding, and its
    taps past the padding read zeros that do not count."""
    n = len(kernel_size)
    counted = F.pad(torch.ones_like(x[:1, :1]), pad, value=float(count_include_pad))
    x = F.pad(x, pad)
    spans, outs, extend = [], [], [0] * (2 * n)
    for j in range(n):
        size, after = x.shape[2 + j], pad[2 * (n - 1 - j) + 1]
        span = dilation[j] * (kernel_size[j] - 1) + 1
        if ceil_mode:
            out = -(-(size - span) // stride[j]) + 1
            if (out - 1) * stride[j] >= size - after:  # it would start in the right padding
                out -= 1
        else:
            out = (size - span) // stride[j] + 1
        spans.append(span)
        outs.append(out)
        extend[2 * (n - 1 - j) + 1] = max(0, (out - 1) * stride[j] + span - size)

    def window_sums(t):
        t = F.pad(t, extend)
        for j in range(n):  # each unfold appends the window's axis: [N, C, *outs, *spans]
            t = t.unfold(2 + j, spans[j], stride[j]).narrow(2 + j, 0, outs[j])
        taps = (Ellipsis,) + tuple(slice(None, None, d) for d in dilation)
        return t[taps].sum(dim=tuple(range(-n, 0)))

    count = window_sums(counted)
    return window_sums(x) / count.masked_fill(count == 0, 1)
