"""Splitting one tensor into several named values along an axis: ``split`` (torch.split:
given piece sizes, or one size for equal pieces) and ``chunk`` (torch.chunk: a count).

``q, k, v = x | chunk 3 dim=-1``, ``a, b = x | split (64, 32) dim=1``. Both return a
TupleType, named with one name per piece (``item`` nodes). The axis defaults to 1, as
concat's does, so that ``split`` undoes ``concat`` with the same arguments.

What torch would do silently, nnspec refuses with a located error: ``torch.split`` with
sizes that do not sum to the axis (an error there too, but only when it runs), a single
size that does not divide the axis (torch gives a smaller last piece: write the sizes),
and ``torch.chunk`` giving another count of pieces than asked (``chunk 4`` of 5 gives
three pieces of 2, 2 and 1). A chunk count that does not divide the axis is allowed when
torch still gives that many pieces (``chunk 2`` of 5: 3 and 2, the last smaller); on a
symbolic axis the count must divide it in every term (``chunk 3`` of ``3*D``), since the
pieces' sizes must be known for every value of the symbols.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import BeforeValidator, field_validator

from ..core.dims import Dim
from ..core.limits import MAX_NODES
from .base import (
    In,
    Int,
    LayerKind,
    Params,
    ShapeError,
    TensorType,
    TorchCall,
    TorchPlan,
    TupleType,
    register,
)


def _show(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return f"the name {v}"
    return "a tensor" if type(v).__name__ == "Tensor" else str(v)  # a named value


def _sizes(v):
    """``(64, 32)`` or ``[64, 32]`` (a shape literal's dims are Dims: constant ones become
    ints) -> a tuple of ints; a single size stays an int."""
    if isinstance(v, (tuple, list)):
        out = []
        for x in v:
            if isinstance(x, Dim):
                if not x.is_const:
                    raise ValueError(f"split sizes must be integers, not the symbol {x}; "
                                     "chunk splits a symbolic axis into equal pieces")
                x = x.value
            if isinstance(x, bool) or not isinstance(x, int):
                raise ValueError(f"split sizes must be integers, not {_show(x)}")
            out.append(x)
        return tuple(out)
    if isinstance(v, Dim):
        if not v.is_const:
            raise ValueError(f"a split size must be an integer, not the symbol {v}; "
                             "chunk splits a symbolic axis into equal pieces")
        return v.value
    if isinstance(v, bool) or not isinstance(v, int):
        # one message, not one per member of the union
        raise ValueError(f"split takes a size or a tuple of sizes, not {_show(v)}")
    return v


Sizes = Annotated[Union[Int, tuple[Int, ...]], BeforeValidator(_sizes)]


def _axis(p, x: TensorType, name: str) -> int:
    r = x.rank
    if not -r <= p.dim < r:
        raise ShapeError(f"{name}: dim {p.dim} is out of range for a rank-{r} input {x} "
                         f"(axes {-r} to {r - 1})", arg="dim", code="E360")
    return p.dim % r


def _count_limit(n: int, what: str, arg: str) -> None:
    """Refuse more pieces than a model may have layers: each piece is a value of its own."""
    if n > MAX_NODES:
        raise ShapeError(f"{what} gives {n} pieces, more than the {MAX_NODES} a model may "
                         "have values", arg=arg, code="E376")


def _one_piece(what: str, arg: str):
    return ShapeError(f"{what} gives one piece, the input itself", arg=arg, code="E376",
                      hint="drop it, or ask for two or more pieces")


class _Split(LayerKind):
    """What split and chunk share: the pieces' types, the NumPy kernels and backward."""

    ranks = (1, None)
    synonyms = {"axis": "dim"}

    def pieces(self, p, x: TensorType, ax: int) -> list[Dim]:
        """The pieces' sizes along the axis (checked: they fill it, two or more)."""
        raise NotImplementedError

    def infer(self, p, ins):
        (x,) = ins
        ax = _axis(p, x, self.name)
        return TupleType(TensorType(x.shape[:ax] + (d,) + x.shape[ax + 1:], x.dtype)
                         for d in self.pieces(p, x, ax))

    def cuts(self, p, n: int) -> list[int]:
        """Where the pieces start after the first, on an axis of ``n`` (known at run time:
        a symbolic axis is bound by then)."""
        raise NotImplementedError

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = xs[0]
        return tuple(np.split(x, self.cuts(p, x.shape[p.dim]), axis=p.dim))

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        x = xs[0]
        if not np.issubdtype(x.dtype, np.floating):
            return [None], {}
        # a piece that no later layer reads gets no gradient: zeros in its place
        parts = [np.zeros_like(piece) if g is None else g for piece, g in zip(y, gy)]
        return [np.concatenate(parts, axis=p.dim)], {}


@register
class Split(_Split):
    """torch.split: pieces of the given sizes (summing to the axis), or equal pieces of
    one size (which must divide the axis)."""

    name = "split"
    positional = ("sizes",)
    synonyms = {"axis": "dim", "split_size_or_sections": "sizes", "split_size": "sizes",
                "sections": "sizes", "size": "sizes"}
    summary = "split into named pieces: a, b = x | split (64, 32) dim=1; split 64: equal pieces"

    class Params(Params):
        sizes: Sizes
        dim: Int = 1

        @field_validator("sizes")
        @classmethod
        def _positive(cls, v):
            for s in (v if isinstance(v, tuple) else (v,)):
                if s < 1:
                    raise ValueError(f"a piece size must be >= 1, got {s}")
            return v

    def pieces(self, p, x, ax):
        d = x.shape[ax]
        if isinstance(p.sizes, tuple):
            total = sum(p.sizes)
            if len(p.sizes) == 1:
                raise _one_piece(f"split {p.sizes}", "sizes")
            if d != total:
                sym = "" if d.is_const else " (symbolic: split needs it concrete)"
                raise ShapeError(f"split sizes {p.sizes} sum to {total}, but dim {p.dim} "
                                 f"of {x} is {d}{sym}", arg="sizes", code="E376",
                                 hint="the sizes must add up to the axis size")
            return [Dim.const(s) for s in p.sizes]
        if not d.is_const:
            syms = ", ".join(sorted(d.symbols()))
            raise ShapeError(f"split {p.sizes}: dim {p.dim} of {x} is {d}, so the count of "
                             f"pieces depends on {syms}", arg="sizes",
                             code="E377", hint="split a concrete axis, or use chunk with a "
                                               "count of pieces")
        n, rest = divmod(d.value, p.sizes)
        if rest:
            raise ShapeError(f"split {p.sizes}: dim {p.dim} of {x} is {d.value}, not a "
                             f"multiple of {p.sizes} (torch would give a last piece of "
                             f"{rest})", arg="sizes", code="E376",
                             hint="give every size: split (" + ", ".join(
                                 [str(p.sizes)] * min(n, 3) + (["..."] if n > 3 else [])
                                 + [str(rest)]) + ")")
        _count_limit(n, f"split {p.sizes}", "sizes")
        if n == 1:
            raise _one_piece(f"split {p.sizes} of {d.value}", "sizes")
        return [Dim.const(p.sizes)] * n

    def cuts(self, p, n):
        if isinstance(p.sizes, tuple):
            out, at = [], 0
            for s in p.sizes[:-1]:
                at += s
                out.append(at)
            return out
        return list(range(p.sizes, n, p.sizes))

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall("torch.split", (In(0), p.sizes), {"dim": p.dim})])

    def sample(self):
        return {"sizes": (2, 3, 1), "dim": -1}, [TensorType((2, 6, 6))]

    def samples(self):
        return [self.sample(), ({"sizes": 2, "dim": 2}, [TensorType((2, 3, 4))])]


@register
class Chunk(_Split):
    """torch.chunk: ``chunks`` pieces of ceil(size / chunks), the last smaller, where torch
    gives exactly that many; refused where it would give fewer."""

    name = "chunk"
    positional = ("chunks",)
    synonyms = {"axis": "dim", "n": "chunks", "count": "chunks"}
    summary = "split into n named pieces: q, k, v = x | chunk 3 dim=-1; dim=1 by default"

    class Params(Params):
        chunks: Int
        dim: Int = 1

        @field_validator("chunks")
        @classmethod
        def _at_least_two(cls, v):
            if v < 2:
                raise ValueError(f"chunk gives two or more pieces, not {v}")
            return v

    def pieces(self, p, x, ax):
        n = p.chunks
        d = x.shape[ax]
        what = f"chunk {n}"
        _count_limit(n, what, "chunks")
        if not d.is_const:
            try:
                return [d.exact_div(n)] * n
            except ValueError:
                syms = ", ".join(sorted(d.symbols()))
                raise ShapeError(f"{what}: dim {p.dim} of {x} is {d}, which is not a "
                                 f"multiple of {n} for every value of {syms}",
                                 arg="chunks", code="E377",
                                 hint=f"chunk needs that axis concrete, or a multiple of {n} "
                                      f"in every term (such as {n}*{sorted(d.symbols())[0]})"
                                 ) from None
        size = d.value
        each = -(-size // n)
        count = -(-size // each) if size else 0
        if count != n:
            got = (f"{count} piece{'s' if count != 1 else ''} of at most {each}" if count
                   else "no piece")
            raise ShapeError(f"{what}: dim {p.dim} of {x} is {size}, which torch.chunk "
                             f"splits into {got}, not {n}", arg="chunks", code="E376",
                             hint="choose a count that divides the axis, or give the sizes "
                                  "with split (...)")
        return [Dim.const(each)] * (n - 1) + [Dim.const(size - each * (n - 1))]

    def cuts(self, p, n):
        each = -(-n // p.chunks)
        return list(range(each, n, each))

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall("torch.chunk", (In(0), p.chunks), {"dim": p.dim})])

    def sample(self):
        return {"chunks": 3, "dim": -1}, [TensorType((2, 3, 6))]

    def samples(self):
        # 5 in two: torch gives 3 and 2
        return [self.sample(), ({"chunks": 2, "dim": 1}, [TensorType((2, 5, 3))])]
