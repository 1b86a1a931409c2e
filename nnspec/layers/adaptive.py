"""adaptive_avgpool / adaptive_maxpool (generic, 1d, 2d, 3d): pooling to a given output size
over [N, C, *spatial] (torch.nn.AdaptiveAvgPool{1,2,3}d / AdaptiveMaxPool{1,2,3}d).

Bin i of an axis of size F_in pooled to F_out covers the input positions

    [floor(i*F_in / F_out), ceil((i + 1)*F_in / F_out))

(PyTorch's rule): the bins tile the axis when F_out divides F_in, neighbours share one
position otherwise, and an output larger than the input repeats input positions, which
PyTorch allows for average and max pooling alike. ``size`` is one int for every spatial dim
or one value per dim, where ``None`` (or ``_``) keeps that dim as it is.
"""

from __future__ import annotations

import math
from typing import Annotated, Optional, Union

from pydantic import BeforeValidator

from ..core.dims import Dim
from ._window import LAYOUTS, SPATIAL_NAMES
from .base import (
    Int,
    LayerKind,
    Params,
    ShapeError,
    TensorType,
    TorchModule,
    TorchPlan,
    need_float,
    need_rank,
    prod,
    register,
)


def _keep_word(v):
    """``(7, None)`` and ``[7, _]`` keep the second dim: the words and shape literal
    entries become None; constant dims of a shape literal become ints."""
    if isinstance(v, str) and v in ("None", "_"):
        return None
    if isinstance(v, Dim):
        if v.is_const:
            return v.value
        if str(v) == "None":
            raise ValueError("None in a shape literal is a symbol, not a kept dim: keep "
                             "one with [7, _] or (7, None)")
        raise ValueError(f"an output size must be an integer (or None to keep the input's "
                         f"size), not the symbol {v}")
    return v


def _out_size(v):
    if isinstance(v, (tuple, list)):
        return tuple(_keep_word(x) for x in v)
    if isinstance(v, str) and v in ("None", "_"):
        raise ValueError("None keeps one dim; give the output size of the others, "
                         "e.g. (7, None)")
    return _keep_word(v)


OutSize = Annotated[Union[Int, tuple[Optional[Int], ...]], BeforeValidator(_out_size)]


class _Adaptive(LayerKind):
    rank: int | None = None  # spatial rank; None: taken from the input (1 to 3)
    mode: str = "avg"
    positional = ("size",)
    synonyms = {"output_size": "size", "output": "size", "out": "size"}

    class Params(Params):
        size: OutSize

    def _n(self, x: TensorType) -> int:
        if self.rank is not None:
            need_rank(x, {self.rank + 2}, self.name, LAYOUTS[self.rank])
            return self.rank
        need_rank(x, {3, 4, 5}, self.name, "[N, C, L], [N, C, H, W] or [N, C, D, H, W]")
        return x.rank - 2

    def sizes(self, p, x: TensorType) -> tuple[int | None, ...]:
        """The output size per spatial dim (None: kept), checked."""
        n = self._n(x)
        if isinstance(p.size, int):
            sizes: tuple = (p.size,) * n
        elif len(p.size) != n:
            raise ShapeError(f"size has {len(p.size)} value{'s' if len(p.size) != 1 else ''} "
                             f"but the input {x} has {n} spatial dim{'s' if n != 1 else ''}",
                             arg="size", hint=f"give one int for all, or {n} values",
                             code="E391")
        else:
            sizes = p.size
        for i, s in enumerate(sizes):
            if s is not None and s < 1:
                where = " size" if isinstance(p.size, int) else f" {SPATIAL_NAMES[n][i]}"
                raise ShapeError(f"{self.name} output{where} is {s}: an output size must "
                                 "be >= 1", arg="size",
                                 hint="use None (or _) to keep a dim as it is", code="E390")
        return sizes

    def infer(self, p, ins):
        (x,) = ins
        need_float(x, self.name)
        sizes = self.sizes(p, x)
        spatial = tuple(d if s is None else Dim.const(s) for d, s in zip(x.shape[2:], sizes))
        return TensorType(x.shape[:2] + spatial)

    def macs(self, p, ins, out):
        """Elements read: along each axis the bins' lengths add up to
        F_in + F_out - gcd(F_in, F_out) (bin i and i+1 share a position unless F_out divides
        (i + 1)*F_in); for a symbolic F_in, F_in + F_out - 1, exact when they are coprime."""
        x = ins[0]
        per_axis = []
        for d, s in zip(x.shape[2:], self.sizes(p, x)):
            if s is None:
                per_axis.append(d)
            elif d.is_const:
                per_axis.append(d.value + s - math.gcd(d.value, s))
            else:
                per_axis.append(d + (s - 1))
        return prod(x.shape[:2]) * prod(per_axis)

    def torch(self, p, ins, out):
        sizes = self.sizes(p, ins[0])
        if all(s is None for s in sizes):
            return TorchPlan(None, [])  # every dim kept: bins of one element
        cap = "Max" if self.mode == "max" else "Avg"
        # one int when every dim gets the same size, as written by hand: AdaptiveAvgPool2d(7)
        size = sizes[0] if len(set(sizes)) == 1 else sizes
        return TorchPlan(TorchModule(f"Adaptive{cap}Pool{len(sizes)}d", (size,)), [])

    def numpy(self, p, w, xs, ctx):
        x = xs[0]
        return adaptive_pool(x, self.sizes(p, TensorType(x.shape)), self.mode)

    def backward(self, p, w, xs, y, gy, ctx):
        x = xs[0]
        sizes = self.sizes(p, TensorType(x.shape))
        if self.mode == "max":
            return [adaptive_max_pool_backward(x, sizes, gy)], {}
        return [adaptive_avg_pool_backward(x, sizes, gy)], {}

    def sample(self):
        if self.rank == 1:
            return {"size": 3}, [TensorType((2, 3, 7))]
        if self.rank == 3:
            return {"size": (2, None, 4)}, [TensorType((2, 2, 5, 3, 6))]
        return {"size": (3, None)}, [TensorType((2, 3, 7, 5))]


def adaptive_pool(x, sizes, mode: str):
    """Adaptive pooling of the spatial axes of ``x`` (numpy), one axis after the other: a bin
    is a box, the product of one interval per axis, so its mean is the mean over the last
    axis of the means over the others, and the same holds for the max."""
    for i, out in enumerate(sizes):
        if out is not None:
            x = _pool_axis(x, 2 + i, out, mode)
    return x


def _pool_axis(x, axis: int, out: int, mode: str):
    import numpy as np

    n = x.shape[axis]
    if n == out:
        return x
    if n % out == 0:  # equal bins that tile the axis: a plain pooling
        y = x.reshape(x.shape[:axis] + (out, n // out) + x.shape[axis + 1:])
        return y.max(axis=axis + 1) if mode == "max" else y.mean(axis=axis + 1)
    i = np.arange(out)
    start = i * n // out
    length = -(-(i + 1) * n // out) - start
    j = np.arange(int(length.max()))
    # every bin gathered as `width` positions, a short one repeating its last position
    idx = start[:, None] + np.minimum(j, length[:, None] - 1)
    tail = x.shape[axis + 1:]
    g = np.take(x, idx.ravel(), axis=axis).reshape(x.shape[:axis] + idx.shape + tail)
    if mode == "max":
        return g.max(axis=axis + 1)
    pad = (1,) * len(tail)
    keep = (j < length[:, None]).reshape(idx.shape + pad)
    # where, not a 0/1 product: an infinite input outside the bin must not give 0*inf = nan
    total = np.where(keep, g, 0).sum(axis=axis + 1)
    return total / length.astype(x.dtype).reshape((out,) + pad)


def _bins(n: int, out: int):
    """Per bin of an axis of length n pooled to out: (start, length) arrays."""
    import numpy as np

    i = np.arange(out)
    start = i * n // out
    return start, -(-(i + 1) * n // out) - start


def adaptive_avg_pool_backward(x, sizes, gy):
    """Gradient of adaptive average pooling: linear and separable, so axis by axis gy is
    multiplied by the transpose of the [F_out, F_in] averaging matrix (1/length on each
    bin's positions)."""
    import numpy as np

    g = np.asarray(gy, dtype=x.dtype)
    for i, out in enumerate(sizes):
        n = x.shape[2 + i]
        if out is None or n == out:
            continue
        start, length = _bins(n, out)
        pos = np.arange(n)
        inside = (pos >= start[:, None]) & (pos < (start + length)[:, None])
        a = np.where(inside, 1.0 / length[:, None], 0.0).astype(x.dtype)  # [out, n]
        g = np.moveaxis(np.tensordot(g, a, axes=([2 + i], [0])), -1, 2 + i)
    return np.ascontiguousarray(g)


def adaptive_max_pool_backward(x, sizes, gy):
    """Gradient of adaptive max pooling: each bin's gradient goes to its maximum over the
    whole box, the first one in row-major order when several are equal (as PyTorch, which
    scans a bin row by row); the box is gathered with one index array per axis, a short bin
    repeating its last position after its real ones so that a repeat is never first."""
    import numpy as np

    r = len(sizes)
    sp = x.shape[2:]
    idx = []
    for i, out in enumerate(sizes):
        n = sp[i]
        if out is None or n == out:
            idx.append(np.arange(n)[:, None])
            continue
        start, length = _bins(n, out)
        j = np.arange(int(length.max()))
        idx.append(start[:, None] + np.minimum(j, length[:, None] - 1))
    outs = tuple(a.shape[0] for a in idx)
    lens = tuple(a.shape[1] for a in idx)
    # index grids of shape [*outs, *lens], one per axis
    grids = []
    for i, a in enumerate(idx):
        shape = [1] * (2 * r)
        shape[i], shape[r + i] = a.shape
        grids.append(a.reshape(shape))
    box = x[(slice(None), slice(None)) + tuple(grids)]  # [N, C, *outs, *lens]
    lead = x.shape[:2] + outs
    first = box.reshape(lead + (-1,)).argmax(axis=-1)  # row-major over the box
    at = np.unravel_index(first, lens)
    flat = np.zeros(lead, dtype=np.int64)
    for i in range(r):
        o = np.arange(outs[i]).reshape((1, 1) + tuple(outs[i] if k == i else 1
                                                     for k in range(r)))
        flat = flat * sp[i] + np.broadcast_to(idx[i], idx[i].shape)[o, at[i]]
    nc = x.shape[0] * x.shape[1]
    base = (np.arange(nc) * math.prod(sp)).reshape(x.shape[:2] + (1,) * r)
    gx = np.bincount((flat + base).ravel(), weights=np.asarray(gy).ravel(),
                     minlength=nc * math.prod(sp))
    return gx.reshape(x.shape).astype(x.dtype, copy=False)


_ALIASES = {"avg": ("adaptiveavgpool", "adaptive_avg_pool", "adaptive_average_pool"),
            "max": ("adaptivemaxpool", "adaptive_max_pool")}

for _mode in ("avg", "max"):
    for _rank in (None, 1, 2, 3):
        _suffix = f"{_rank}d" if _rank else ""
        _name = f"adaptive_{_mode}pool{_suffix}"
        _what = "average" if _mode == "avg" else "max"
        register(type(f"Adaptive{_mode.capitalize()}Pool{_suffix}", (_Adaptive,), {
            "name": _name, "rank": _rank, "mode": _mode,
            "aliases": tuple(a + _suffix for a in _ALIASES[_mode]),
            "summary": f"adaptive {_what} pooling to an output size"
                       + (f" over {_rank}-d inputs" if _rank else
                          ": <size> (an int, or one per dim; None keeps a dim)"),
            "__doc__": f"adaptive {_what} pooling" + (f" ({_rank}-d)" if _rank else "")}))
