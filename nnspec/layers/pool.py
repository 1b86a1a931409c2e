"""maxpool / avgpool (generic, 1d, 2d, 3d) and global pooling over [N, C, *spatial].

F_out = floor((F_in + p_before + p_after - d*(k - 1) - 1) / s) + 1 per spatial dim (ceil
with ``ceil``, dropping a last window that would start in the right padding, as PyTorch
does). ``avgpool global`` / ``maxpool global`` reduce every spatial dim to 1.

PyTorch's pooling takes only symmetric padding of at most half the kernel. Other padding
(``p=((0, 1), (0, 1))``, ``p > k // 2``, ``p=same`` with an even kernel) is the same formula
on explicit (before, after) pads, lowered in torch as an explicit ``F.pad`` (-inf for max
pooling, zeros for average pooling) and the pool with padding 0. Its semantics are
PyTorch's own rule with the two pads put in: the ceil-mode windows are the ones PyTorch
keeps (a last window that would start in the right padding is dropped, which a pool over
the padded tensor would keep: that window is cropped off); with ``count_include_pad`` an
average divides by the window's cells inside the padded extent (the ceil-mode overhang
past the padding does not count), without it by the input cells in the window only. A
window wholly in the padding gives -inf for max pooling (as PyTorch does for a dilated
window) and 0 for average pooling without ``count_include_pad``.

Two inputs PyTorch's pooling mishandles take the explicit route too, whatever the padding:
a 3-d average pooling input not known to be at least k where there is padding or ceil mode
(nn.AvgPool3d refuses an input smaller than the kernel however padded; the helper
zero-extends a padded size below k and leaves the extension out of the counts), and a
dilated, padded max pooling input not known to have at least d cells (a window whose taps
all fall in the padding gets from torch an index outside the plane, where its backward
writes: the process aborts).

Average pooling takes a dilation ``d`` too, which torch's avg_pool lacks: its windows are
max pooling's (the same taps, output size and ceil-mode rule), and it is lowered to a torch
helper that sums each window's taps through ``unfold``. With ``count_include_pad`` a
window divides by its taps inside the padded extent (a ceil-mode tap past the padding does
not count), without it by its taps on input cells; a window with none gives 0.
"""

from __future__ import annotations

from typing import Optional

from ..core.dims import conv_out
from ._window import (
    IntOrTuple,
    PadSpec,
    WindowParams,
    pads,
    per_dim,
    show,
    spatial_out,
    spatial_rank,
)
from .base import (
    MODULE,
    Bool,
    In,
    LayerKind,
    Prev,
    ShapeError,
    TensorType,
    TorchCall,
    TorchModule,
    TorchPlan,
    need_float,
    npops,
    prod,
    register,
)

#: the torch helper that averages over the input's own cells (count_include_pad=False)
_REAL_CELLS = "nnspec.layers.torch.pool:avg_pool_real_cells"
#: the torch helper of average pooling with dilation
_DILATED = "nnspec.layers.torch.pool:avg_pool_dilated"


def show_ints(v: tuple[int, ...]) -> str:
    """A per-dim value as written: 2 when every dim has it, (2, 3) otherwise."""
    return str(v[0]) if len(set(v)) == 1 else "(" + ", ".join(map(str, v)) + ")"


class _Pool(LayerKind):
    rank: int | None = None  # spatial rank; None: taken from the input
    max_spatial = 3
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
        d = per_dim(getattr(p, "d", 1), n, "d")
        if p.p == "same" and any(x_ != 1 for x_ in s):
            given = "" if p.s is not None else " (a pooling stride defaults to the kernel size)"
            raise ShapeError(f"{self.name} p=same needs stride 1, but the stride is "
                             f"{show_ints(s)}{given}", arg="p", code="E331",
                             hint="write s=1 for a size-preserving pool, or give the padding "
                                  "explicitly")
        return n, k, s, pads(p.p, n, k, d, s), d

    def native(self, k, pd, x) -> bool:
        """PyTorch's pooling takes these pads itself: symmetric, at most half the kernel as
        written (whatever the dilation)."""
        return all(a == b and a <= kk // 2 for (a, b), kk in zip(pd, k))

    def torch_takes(self, k, pd, d, x, ceil: bool) -> bool:
        """PyTorch's pooling computes this input right with these pads: nn.AvgPool3d
        refuses an input smaller than the kernel (however padded; without padding and ceil
        mode the output size already needs one >= k), and a max pooling window of taps
        ``d`` apart that starts in the padding has a tap in an input of at least ``d``
        cells (else its index lies outside the plane)."""
        known = [f.value if f.is_const else 1 for f in x.shape[2:]]
        if self.mode == "avg" and len(k) == 3:
            return all(f >= kk or (a == 0 and not ceil)
                       for f, kk, (a, _) in zip(known, k, pd))
        if self.mode == "max":
            return all(a == 0 or dd == 1 or f >= dd for f, dd, (a, _) in zip(known, d, pd))
        return True

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
        if self.mode == "avg" and any(dd != 1 for dd in d):
            return TorchPlan(None, [self._dilated(p, k, s, pd, d)])
        native = self.native(k, pd, x) and self.torch_takes(k, pd, d, x, p.ceil)
        kw = {"kernel_size": k, "stride": s, "padding": tuple(a for a, _ in pd) if native
              else (0,) * n, "ceil_mode": p.ceil}
        if self.mode == "max":
            kw["dilation"] = d
        elif native:
            kw["count_include_pad"] = p.count_include_pad
        if native:
            return TorchPlan(TorchModule(f"{cap}Pool{n}d", (), kw), [])
        flat = []
        for a, b in reversed(pd):  # F.pad lists the last dim first
            flat += [a, b]
        flat = tuple(flat)
        # a padded size that may be below the kernel: nn.AvgPool3d would refuse it
        short = self.mode == "avg" and n == 3 and p.ceil and any(
            not (f.is_const and f.value + a + b >= kk) for f, kk, (a, b) in zip(x.shape[2:], k, pd))
        if self.mode == "avg" and (short or not p.count_include_pad):
            mod = None
            args = {"kernel_size": k, "stride": s}
            if p.ceil:
                args["ceil_mode"] = True
            if p.count_include_pad and any(flat):
                args["count_include_pad"] = True
            calls = [TorchCall(_REAL_CELLS, (In(0), flat), args)]
        else:
            mod = TorchModule(f"{cap}Pool{n}d", (), kw)
            fill = {"value": float("-inf")} if self.mode == "max" else {}
            calls = [TorchCall("F.pad", (In(0), flat), fill), TorchCall(MODULE, (Prev(),))]
        # a pool over the padded tensor keeps a last ceil-mode window that starts in the
        # right padding, which PyTorch's rule (and so nnspec's) drops: crop it off
        spatial = x.shape[2:]
        over = [conv_out(f + (a + b), kk, ss, 0, dd, p.ceil) != o
                for f, kk, ss, (a, b), dd, o in zip(spatial, k, s, pd, d, out.shape[2:])]
        if any(over):
            index = (Ellipsis,) + tuple(slice(None, o) if c else slice(None)
                                        for c, o in zip(over, out.shape[2:]))
            calls.append(TorchCall("getitem", (Prev(), index)))
        return TorchPlan(mod, calls)

    def _dilated(self, p, k, s, pd, d) -> TorchCall:
        """Average pooling with dilation, which torch's avg_pool lacks: the helper sums
        each window's taps (through unfold) over its counted ones."""
        flat = []
        for a, b in reversed(pd):  # F.pad lists the last dim first
            flat += [a, b]
        args = {"kernel_size": k, "stride": s, "dilation": d}
        if p.ceil:
            args["ceil_mode"] = True
        if not p.count_include_pad:
            args["count_include_pad"] = False
        return TorchCall(_DILATED, (In(0), tuple(flat)), args)

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
        return npops.avg_pool_nd(x, k, s, pd, p.ceil, p.count_include_pad, dilation=d)

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        x = xs[0]
        t = TensorType(x.shape)
        if p.global_:
            if self.mode == "avg":
                return [np.broadcast_to(gy / np.prod(x.shape[2:]), x.shape).copy()], {}
            # the first maximum of each channel, in scan order, as torch
            flat = x.reshape(x.shape[:2] + (-1,))
            first = flat.argmax(axis=-1)
            g = np.zeros_like(flat)
            np.put_along_axis(g, first[..., None], gy.reshape(gy.shape[:2] + (1,)), axis=-1)
            return [g.reshape(x.shape)], {}
        n, k, s, pd, d = self.geometry(p, t)
        if self.mode == "max":
            return [npops.max_pool_nd_backward(x, gy, k, s, pd, d, p.ceil)], {}
        return [npops.avg_pool_nd_backward(x, gy, k, s, pd, p.ceil, p.count_include_pad,
                                           d)], {}

    def sample(self):
        shape = {1: (2, 3, 10), 3: (2, 3, 7, 6, 5)}.get(self.rank, (2, 3, 9, 8))
        args = {"k": 3, "s": 2, "p": 1, "ceil": True, "d": 2}
        if self.mode == "avg":
            args["count_include_pad"] = False
        return args, [TensorType(shape)]

    def samples(self):
        """Also padding PyTorch's pooling refuses (asymmetric, more than k // 2), in ceil
        mode where the lowering crops a window off."""
        args, ins = self.sample()
        n = ins[0].rank - 2
        return [(args, ins), ({**args, "p": ((0, 2),) + ((2, 1),) * (n - 1)}, ins)]


class MaxParams(WindowParams):
    k: Optional[IntOrTuple] = None
    s: Optional[IntOrTuple] = None
    p: PadSpec = 0
    d: IntOrTuple = 1
    ceil: Bool = False
    global_: Bool = False

    model_config = {"populate_by_name": True}


class AvgParams(WindowParams):
    k: Optional[IntOrTuple] = None
    s: Optional[IntOrTuple] = None
    p: PadSpec = 0
    d: IntOrTuple = 1
    ceil: Bool = False
    count_include_pad: Bool = True
    global_: Bool = False

    model_config = {"populate_by_name": True}


def _flags(self):
    return ("ceil", "count_include_pad", "global") if self.mode == "avg" else ("ceil", "global")


_Pool.flags = _flags

for _mode, _P in (("max", MaxParams), ("avg", AvgParams)):
    for _rank in (None, 1, 2, 3):
        _suffix = f"{_rank}d" if _rank else ""
        _name = f"{_mode}pool{_suffix}"
        _cls = type(_name.capitalize(), (_Pool,), {
            "name": _name, "rank": _rank, "mode": _mode, "Params": _P,
            "aliases": (f"{_mode}_pool{_suffix}",)
                       + ((f"average_pool{_suffix}",) if _mode == "avg" else ()),
            "synonyms": {**_Pool.synonyms, "global": "global_"},
            "summary": f"{'max' if _mode == 'max' else 'average'} pooling"
                       + (f" over {_rank}-d inputs" if _rank else
                          ": k=<k> [s=k] [p=0] [ceil] or global"),
            "__doc__": f"{_mode} pooling" + (f" ({_rank}-d)" if _rank else "")})
        register(_cls)
