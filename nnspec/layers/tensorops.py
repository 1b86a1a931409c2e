"""Tensor-level operations: transpose, permute, roll, the reductions (mean, sum, amax,
amin) and matmul with batch broadcasting, written as a person writes them in PyTorch
(``x.transpose(1, 2)``, ``x.mean(dim=1, keepdim=True)``, ``torch.matmul(q, k)``).

Axes follow Python: negative ones count from the end. The shape rules are symbolic; an
axis out of range, a repeated axis or shapes that do not broadcast are located errors
naming the dims (E360-E365).
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BeforeValidator

from ..core.dims import Dim
from .base import (
    Bool,
    In,
    Int,
    LayerKind,
    Params,
    ShapeError,
    TensorType,
    TorchCall,
    TorchPlan,
    need_float,
    prod,
    register,
)


def _axis(ax: int, rank: int, name: str, arg: str) -> int:
    if not -rank <= ax < rank:
        raise ShapeError(f"{name}: axis {ax} is out of range for a rank-{rank} input "
                         f"(axes {-rank} to {rank - 1})", arg=arg, code="E360")
    return ax % rank


def _axes(axes, rank: int, name: str, arg: str) -> tuple[int, ...]:
    out = tuple(_axis(a, rank, name, arg) for a in axes)
    if len(set(out)) != len(out):
        raise ShapeError(f"{name}: an axis is given twice in {tuple(axes)}", arg=arg,
                         code="E361")
    return out


def _tuple_of_ints(v):
    if isinstance(v, list):
        return tuple(v)
    return v


Axes = Annotated[Union[Int, tuple[Int, ...]], BeforeValidator(_tuple_of_ints)]


@register
class Transpose(LayerKind):
    """Swaps two axes (``x.transpose(a, b)``)."""

    name = "transpose"
    aliases = ("swapaxes",)
    positional = ("dim0", "dim1")
    synonyms = {"axis0": "dim0", "axis1": "dim1"}
    summary = "swap two axes: transpose <dim0> <dim1> (x.transpose(1, 2))"

    class Params(Params):
        dim0: Int
        dim1: Int

    def _pair(self, p, x):
        return (_axis(p.dim0, x.rank, self.name, "dim0"),
                _axis(p.dim1, x.rank, self.name, "dim1"))

    def infer(self, p, ins):
        (x,) = ins
        a, b = self._pair(p, x)
        shape = list(x.shape)
        shape[a], shape[b] = shape[b], shape[a]
        return TensorType(tuple(shape), x.dtype)

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall(".transpose", (In(0), p.dim0, p.dim1))])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        return np.swapaxes(xs[0], p.dim0, p.dim1)

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        return [np.swapaxes(gy, p.dim0, p.dim1)], {}

    def sample(self):
        return {"dim0": 1, "dim1": -1}, [TensorType((2, 3, 4))]


@register
class Permute(LayerKind):
    """Reorders every axis (``x.permute(0, 2, 1)``)."""

    name = "permute"
    positional = ("dims",)
    synonyms = {"axes": "dims", "order": "dims"}
    summary = "reorder the axes: permute (0, 2, 1)"

    class Params(Params):
        dims: tuple[Int, ...]

    def order(self, p, x) -> tuple[int, ...]:
        if len(p.dims) != x.rank:
            raise ShapeError(f"permute {tuple(p.dims)} gives {len(p.dims)} axes for a rank-"
                             f"{x.rank} input {x}", arg="dims", code="E362",
                             hint=f"name each of the {x.rank} axes once")
        return _axes(p.dims, x.rank, self.name, "dims")

    def infer(self, p, ins):
        (x,) = ins
        return TensorType(tuple(x.shape[a] for a in self.order(p, x)), x.dtype)

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall(".permute", (In(0),) + tuple(p.dims))])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        return np.transpose(xs[0], self.order(p, TensorType(xs[0].shape)))

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        order = self.order(p, TensorType(xs[0].shape))
        return [np.transpose(gy, np.argsort(order))], {}

    def sample(self):
        return {"dims": (2, 0, 1)}, [TensorType((2, 3, 4))]


def _ints(v):
    return (v,) if isinstance(v, int) and not isinstance(v, bool) else v


@register
class Roll(LayerKind):
    """Rolls elements along axes (``torch.roll(x, shifts, dims)``): those shifted past the
    end come back at the start; without ``dims``, over the flattened tensor."""

    name = "roll"
    positional = ("shifts", "dims")
    synonyms = {"shift": "shifts", "dim": "dims", "axis": "dims", "axes": "dims"}
    summary = ("roll elements along axes: roll <shifts> [dims=] "
               "(torch.roll; Swin's roll (-3, -3) dims=(1, 2))")

    class Params(Params):
        shifts: Axes
        dims: Optional[Axes] = None

    def pairs(self, p, rank: int) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        shifts = _ints(p.shifts)
        if p.dims is None:
            if len(shifts) != 1:
                raise ShapeError(f"roll without dims rolls the flattened tensor by one shift, "
                                 f"got {len(shifts)} shifts {tuple(shifts)}", arg="shifts",
                                 code="E362", hint="give one axis per shift: dims=(1, 2)")
            return shifts, None
        dims = _ints(p.dims)
        if len(dims) != len(shifts):
            raise ShapeError(f"roll gives {len(shifts)} shift{'s' if len(shifts) != 1 else ''} "
                             f"for {len(dims)} ax{'es' if len(dims) != 1 else 'is'}",
                             arg="dims", code="E362", hint="give one shift per axis")
        return shifts, tuple(_axis(a, rank, self.name, "dims") for a in dims)

    def infer(self, p, ins):
        (x,) = ins
        self.pairs(p, x.rank)
        return x

    def torch(self, p, ins, out):
        kw = {"shifts": p.shifts} if p.dims is None else {"shifts": p.shifts, "dims": p.dims}
        return TorchPlan(None, [TorchCall("torch.roll", (In(0),), kw)])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        shifts, dims = self.pairs(p, xs[0].ndim)
        return np.roll(xs[0], shifts[0] if dims is None else shifts, axis=dims)

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        shifts, dims = self.pairs(p, gy.ndim)
        back = tuple(-s for s in shifts)
        return [np.roll(gy, back[0] if dims is None else back, axis=dims)], {}

    def samples(self):
        return [({"shifts": (-1, 2), "dims": (1, -1)}, [TensorType((2, 3, 4))]),
                ({"shifts": 5}, [TensorType((2, 3))])]

    def sample(self):
        return self.samples()[0]


class _Reduce(LayerKind):
    """A reduction over ``dim`` (one axis, a tuple of axes, or every axis when omitted),
    ``keepdim`` keeping the reduced axes with size 1."""

    positional = ("dim",)
    synonyms = {"axis": "dim", "axes": "dim", "keepdims": "keepdim"}
    method = ""

    class Params(Params):
        dim: Optional[Axes] = None
        keepdim: Bool = False

    def reduced(self, p, x) -> tuple[int, ...]:
        if p.dim is None:
            return tuple(range(x.rank))
        dims = (p.dim,) if isinstance(p.dim, int) else p.dim
        return _axes(dims, x.rank, self.name, "dim")

    def infer(self, p, ins):
        (x,) = ins
        need_float(x, self.name)
        axes = self.reduced(p, x)
        if p.keepdim:
            shape = tuple(Dim.const(1) if i in axes else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return TensorType(shape, x.dtype)

    def macs(self, p, ins, out):
        return prod(ins[0].shape)

    def torch(self, p, ins, out):
        kw = {}
        if p.dim is not None:
            kw["dim"] = p.dim
        if p.keepdim:
            kw["keepdim"] = True
        return TorchPlan(None, [TorchCall(f".{self.method}", (In(0),), kw)])

    def _np_axes(self, p, x):
        return self.reduced(p, TensorType(x.shape))

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = xs[0]
        return np.asarray(getattr(np, self.method)(x, axis=self._np_axes(p, x),
                                                   keepdims=p.keepdim), dtype=x.dtype)

    def _kept(self, p, x, g):
        """g (shaped like the output) with the reduced axes back as size 1."""
        import numpy as np

        return g if p.keepdim else np.expand_dims(g, self._np_axes(p, x))

    def _spread(self, p, x, g):
        """g copied over the reduced axes, shaped like x."""
        import numpy as np

        return np.array(np.broadcast_to(self._kept(p, x, g), x.shape))

    def sample(self):
        return {"dim": (1, -1), "keepdim": True}, [TensorType((2, 3, 4))]

    def samples(self):
        return [self.sample(), ({"dim": 1}, [TensorType((2, 3, 4))]),
                ({}, [TensorType((3, 2))])]


@register
class Mean(_Reduce):
    """The mean over axes (``x.mean(dim=1)``)."""

    name, method = "mean", "mean"
    summary = "mean over axes: mean [dim=(1, 2)] [keepdim] (every axis when no dim)"

    def backward(self, p, w, xs, y, gy, ctx):
        x = xs[0]
        return [self._spread(p, x, gy) / prod([x.shape[a] for a in self._np_axes(p, x)])], {}


@register
class Sum(_Reduce):
    """The sum over axes (``x.sum(dim=1)``)."""

    name, method = "sum", "sum"
    summary = "sum over axes: sum [dim=(1, 2)] [keepdim] (every axis when no dim)"

    def backward(self, p, w, xs, y, gy, ctx):
        return [self._spread(p, xs[0], gy)], {}


class _Extreme(_Reduce):
    """torch's amax/amin: the gradient is shared evenly between equal extremes."""

    def backward(self, p, w, xs, y, gy, ctx):

        x = xs[0]
        axes = self._np_axes(p, x)
        hit = (x == self._kept(p, x, y)).astype(x.dtype)
        share = hit / hit.sum(axis=axes, keepdims=True)
        return [share * self._kept(p, x, gy)], {}


@register
class Amax(_Extreme):
    """The maximum over axes (``x.amax(dim=1)``; the values, not the indices)."""

    name, method = "amax", "amax"
    aliases = ("max",)
    summary = "maximum over axes: amax [dim=1] [keepdim] (also max; every axis when no dim)"


@register
class Amin(_Extreme):
    """The minimum over axes (``x.amin(dim=1)``)."""

    name, method = "amin", "amin"
    aliases = ("min",)
    summary = "minimum over axes: amin [dim=1] [keepdim] (also min; every axis when no dim)"


def broadcast(a: TensorType, b: TensorType, what: str) -> tuple:
    """NumPy's broadcasting of two shapes, symbolically: aligned from the last axis, a dim
    of 1 stretches, equal dims stay; anything else is E363 naming both dims."""
    out = []
    ra, rb = a.rank, b.rank
    for i in range(1, max(ra, rb) + 1):
        da = a.shape[ra - i] if i <= ra else None
        db = b.shape[rb - i] if i <= rb else None
        if da is None or (db is not None and db == da):
            out.append(db)
        elif db is None or (db.is_const and db.value == 1):
            out.append(da)
        elif da.is_const and da.value == 1:
            out.append(db)
        else:
            raise ShapeError(f"{what}: the shapes {a} and {b} do not broadcast: dim {da} "
                             f"against {db} (axis {-i})", code="E363",
                             hint="broadcast dims must be equal or 1")
    return tuple(reversed(out))


def unbroadcast(g, shape):
    """The gradient of a broadcast operand: summed over the axes it was stretched along."""
    import numpy as np

    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, (n, m) in enumerate(zip(shape, g.shape)) if n == 1 and m != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return np.ascontiguousarray(g).reshape(shape)


@register
class Matmul(LayerKind):
    """``torch.matmul(a, b)``: [..., n, k] @ [..., k, m] -> [..., n, m], the batch axes
    broadcast; a 1-d operand is a vector (its axis is dropped from the result)."""

    name = "matmul"
    aliases = ("bmm",)
    arity = 2
    summary = "matrix product with batch broadcasting: matmul(a, b)"

    def infer(self, p, ins):
        a, b = ins
        need_float(a, self.name)
        need_float(b, self.name)
        if a.rank == 0 or b.rank == 0:
            raise ShapeError(f"matmul needs tensors of rank 1 or more, got {a} and {b}",
                             code="E364")
        ka = a.shape[-1]
        kb = b.shape[-2] if b.rank > 1 else b.shape[0]
        if ka != kb:
            raise ShapeError(f"matmul: the inner dims differ: {a} @ {b} contracts {ka} with "
                             f"{kb}", code="E365",
                             hint="a's last dim must equal b's second-to-last (or only) dim")
        batch = broadcast(TensorType(a.shape[:-2]), TensorType(b.shape[:-2]), "matmul")
        rows = a.shape[-2:-1] if a.rank > 1 else ()
        cols = b.shape[-1:] if b.rank > 1 else ()
        return TensorType(batch + rows + cols)

    def macs(self, p, ins, out):
        return prod(out.shape) * ins[0].shape[-1]

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall("torch.matmul", (In(0), In(1)))])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        return np.matmul(xs[0], xs[1])

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        a, b = xs
        # vectors as matrices: a [k] -> [1, k], b [k] -> [k, 1]; gy gets those axes back
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g = gy
        if a.ndim == 1:
            g = np.expand_dims(g, -2)
        if b.ndim == 1:
            g = np.expand_dims(g, -1)
        ga = np.matmul(g, np.swapaxes(b2, -1, -2))
        gb = np.matmul(np.swapaxes(a2, -1, -2), g)
        ga = unbroadcast(ga, a2.shape).reshape(a.shape)
        gb = unbroadcast(gb, b2.shape).reshape(b.shape)
        return [ga, gb], {}

    def sample(self):
        return {}, [TensorType((2, 1, 3, 4)), TensorType((3, 4, 5))]

    def samples(self):
        return [self.sample(), ({}, [TensorType((4,)), TensorType((2, 4, 3))]),
                ({}, [TensorType((2, 3, 4)), TensorType((4,))])]


def _subscripts(v):
    """IR/JSON form of subscripts -> the schema's: lists are (start, stop, step) slices."""
    if isinstance(v, list):
        return tuple(tuple(x) if isinstance(x, list) else x for x in v)
    return v


Subscript = Union[Int, tuple[Optional[Int], Optional[Int], Optional[Int]], Literal["..."]]


def _slice_len(d: Dim, start, stop, step):
    """The length of d[start:stop:step] (step >= 1). On a concrete axis, Python's; on a
    symbolic one, bounds past the end are assumed inside it (``:k`` is k long)."""
    if d.is_const:
        return Dim.const(len(range(*slice(start, stop, step).indices(d.value))))
    lo = Dim.const(0) if start is None else (d + start if start < 0 else Dim.const(start))
    hi = d if stop is None else (d + stop if stop < 0 else Dim.const(stop))
    n = hi - lo
    return n if step == 1 else (n + (step - 1)) // step


@register
class Index(LayerKind):
    """Python's indexing of a named value, as torch's: ``x[:, 0]``, ``x[:, -1]``,
    ``x[..., :k]``, ``x[:, 1:5:2]``; an integer drops its axis, a slice keeps it (steps >= 1,
    as torch allows), ``...`` stands for the axes not written."""

    name = "index"
    aliases = ("getitem",)
    positional = ("items",)
    summary = "indexing of a named value: x[:, 0], x[..., :k], x[:, ::2]"

    class Params(Params):
        items: Annotated[tuple[Subscript, ...], BeforeValidator(_subscripts)]

    def _axes(self, p, x: TensorType):
        """(axis, subscript) for every axis the subscripts name, ellipsis expanded."""
        items = list(p.items)
        if items.count("...") > 1:
            raise ShapeError("an index can have one ... only", code="E366")
        named = len(items) - items.count("...")
        if named > x.rank:
            raise ShapeError(f"too many indices for {x}: {named} for {x.rank} axes",
                             code="E366")
        if "..." in items:
            i = items.index("...")
            items[i:i + 1] = [(None, None, None)] * (x.rank - named)
        items += [(None, None, None)] * (x.rank - len(items))
        return list(enumerate(items))

    def infer(self, p, ins):
        (x,) = ins
        shape = []
        for ax, it in self._axes(p, x):
            d = x.shape[ax]
            if isinstance(it, int):
                if d.is_const and not -d.value <= it < d.value:
                    raise ShapeError(f"index {it} is out of range for axis {ax} of {x} "
                                     f"(size {d.value})", code="E366",
                                     hint=f"indices run from {-d.value} to {d.value - 1}")
                continue
            start, stop, step = it
            step = 1 if step is None else step
            if step < 1:
                raise ShapeError(f"the step {step} on axis {ax}: torch takes steps of 1 or "
                                 "more", code="E367", hint="flip the axis instead")
            n = _slice_len(d, start, stop, step)
            if n.is_const and n.value < 1:
                raise ShapeError(f"the slice {_show_slice(it)} of axis {ax} of {x} is empty",
                                 code="E367")
            shape.append(n)
        return TensorType(tuple(shape), x.dtype)

    def _index(self, p):
        return tuple(Ellipsis if it == "..." else slice(*it) if isinstance(it, tuple) else it
                     for it in p.items)

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall("getitem", (In(0), self._index(p)))])

    def numpy(self, p, w, xs, ctx):
        return xs[0][self._index(p)]

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        gx = np.zeros_like(xs[0], dtype=np.asarray(gy).dtype)
        gx[self._index(p)] = gy  # basic indexing: every element once
        return [gx], {}

    def detail(self, p, ins):
        return "[" + ", ".join("..." if it == "..." else _show_slice(it)
                               if isinstance(it, tuple) else str(it) for it in p.items) + "]"

    def sample(self):
        return {"items": ((None, None, None), -1, (1, None, 2))}, [TensorType((2, 3, 5))]

    def samples(self):
        return [self.sample(), ({"items": ("...", 0)}, [TensorType((2, 3, 4))])]


def _show_slice(it) -> str:
    start, stop, step = it
    text = ("" if start is None else str(start)) + ":" + ("" if stop is None else str(stop))
    return text + (f":{step}" if step is not None else "")
