"""maxpool / avgpool (generic, 1d, 2d) and global pooling over [N, C, *spatial].

F_out = floor((F_in + 2p - d*(k - 1) - 1) / s) + 1 per spatial dim (ceil with ``ceil``,
dropping a last window that would start in the right padding, as PyTorch does).
``avgpool global`` / ``maxpool global`` reduce every spatial dim to 1.
"""

from __future__ import annotations

from typing import Optional, Union

from ._window import (
    SPATIAL_NAMES,
    IntOrTuple,
    WindowParams,
    per_dim,
    show,
    spatial_out,
    spatial_rank,
)
from .base import (
    Bool,
    Int,
    LayerKind,
    ShapeError,
    TensorType,
    TorchModule,
    TorchPlan,
    need_float,
    npops,
    prod,
    register,
)


class _Pool(LayerKind):
    rank: int | None = None
    mode: str = "max"
    positional = ("k",)
    synonyms = {"kernel_size": "k", "stride": "s", "padding": "p", "dilation": "d",
                "ceil_mode": "ceil", "pool_size": "k", "strides": "s"}

    def _n(self, x):
        return spatial_rank(self, x)

    def geometry(self, p, x):
        n = self._n(x)
        if p.k is None:
            raise ShapeError(f"{self.name} needs a window size k (or the word global)",
                             arg="k")
        k = per_dim(p.k, n, "k")
        s = per_dim(p.s if p.s is not None else p.k, n, "s")
        pp = per_dim(p.p, n, "p")
        d = per_dim(getattr(p, "d", 1), n, "d")
        for i in range(n):
            # PyTorch's rule, for max and average pooling alike: the padding is at most
            # half the kernel size as written, p <= k // 2, whatever the dilation
            if pp[i] > k[i] // 2:
                per_axis = n > 1 and (len(set(pp)) > 1 or len(set(k)) > 1)
                where = f" along the {SPATIAL_NAMES[n][i]}" if per_axis else ""
                raise ShapeError(f"{self.name} padding {pp[i]}{where} is more than half the "
                                 f"kernel size {k[i]}: PyTorch needs p <= k // 2 = "
                                 f"{k[i] // 2} (the dilation does not count)", arg="p",
                                 hint=f"use p <= {k[i] // 2}, or a larger kernel",
                                 code="E330")
        return n, k, s, [(x_, x_) for x_ in pp], d

    def infer(self, p, ins):
        (x,) = ins
        need_float(x, self.name)
        if p.global_:
            n = self._n(x)
            if p.k is not None or p.s is not None or p.p != 0:
                raise ShapeError("global pooling takes no window arguments", arg="k")
            return TensorType(x.shape[:2] + (1,) * n)
        n, k, s, pd, d = self.geometry(p, x)
        return TensorType(x.shape[:2] + spatial_out(self.name, x, k, s, pd, d, p.ceil))

    def detail(self, p, ins):
        if p.global_:
            return "global"
        n, k, s, pd, d = self.geometry(p, ins[0])
        out = f"k={k} s={s} pads={show(pd)}"
        if any(x != 1 for x in d):
            out += f" d={d}"
        if p.ceil:
            out += " ceil"
        if self.mode == "avg" and not p.count_include_pad:
            out += " count_include_pad=false"
        return out

    def macs(self, p, ins, out):
        if p.global_:
            return prod(ins[0].shape)
        n, k, *_ = self.geometry(p, ins[0])
        return prod(out.shape) * prod(k)

    def torch(self, p, ins, out):
        x = ins[0]
        cap = "Max" if self.mode == "max" else "Avg"
        if p.global_:
            n = self._n(x)
            return TorchPlan(TorchModule(f"Adaptive{cap}Pool{n}d", (1,)), [])
        n, k, s, pd, d = self.geometry(p, x)
        kw = {"kernel_size": k, "stride": s, "padding": tuple(a for a, _ in pd),
              "ceil_mode": p.ceil}
        if self.mode == "max":
            kw["dilation"] = d
        else:
            kw["count_include_pad"] = p.count_include_pad
        return TorchPlan(TorchModule(f"{cap}Pool{n}d", (), kw), [])

    def numpy(self, p, w, xs, ctx):
        x = xs[0]
        t = TensorType(x.shape)
        if p.global_:
            n = self._n(t)
            axes = tuple(range(2, 2 + n))
            if self.mode == "max":
                return x.max(axis=axes, keepdims=True)
            return npops.adaptive_avg_pool_global(x, n)
        n, k, s, pd, d = self.geometry(p, t)
        if self.mode == "max":
            return npops.max_pool_nd(x, k, s, pd, d, p.ceil)
        return npops.avg_pool_nd(x, k, s, pd, p.ceil, p.count_include_pad)

    def sample(self):
        shape = (2, 3, 9, 8) if self.rank != 1 else (2, 3, 10)
        args = {"k": 3, "s": 2, "p": 1, "ceil": True}
        if self.mode == "max":
            args["d"] = 2
        else:
            args["count_include_pad"] = False
        return args, [TensorType(shape)]


class MaxParams(WindowParams):
    k: Optional[IntOrTuple] = None
    s: Optional[IntOrTuple] = None
    p: Union[Int, tuple[Int, ...]] = 0
    d: IntOrTuple = 1
    ceil: Bool = False
    global_: Bool = False

    model_config = {"populate_by_name": True}


class AvgParams(WindowParams):
    k: Optional[IntOrTuple] = None
    s: Optional[IntOrTuple] = None
    p: Union[Int, tuple[Int, ...]] = 0
    ceil: Bool = False
    count_include_pad: Bool = True
    global_: Bool = False

    model_config = {"populate_by_name": True}


def _flags(self):
    return ("ceil", "count_include_pad", "global") if self.mode == "avg" else ("ceil", "global")


_Pool.flags = _flags

for _mode, _P in (("max", MaxParams), ("avg", AvgParams)):
    for _rank in (None, 1, 2):
        _name = f"{_mode}pool" + (f"{_rank}d" if _rank else "")
        _cls = type(_name.capitalize(), (_Pool,), {
            "name": _name, "rank": _rank, "mode": _mode, "Params": _P,
            "synonyms": {**_Pool.synonyms, "global": "global_"},
            "summary": f"{'max' if _mode == 'max' else 'average'} pooling"
                       + (f" over {_rank}-d inputs" if _rank else
                          ": k=<k> [s=k] [p=0] [ceil] or global"),
            "__doc__": f"{_mode} pooling" + (f" ({_rank}-d)" if _rank else "")})
        register(_cls)
