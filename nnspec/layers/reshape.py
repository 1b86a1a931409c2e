"""flatten, unflatten and reshape: move elements between axes; no weights."""

from __future__ import annotations

from collections import Counter

from ..core.dims import Dim
from .base import (
    DimArg,
    In,
    Int,
    LayerKind,
    Params,
    ShapeError,
    SymDim,
    TensorType,
    TorchCall,
    TorchPlan,
    prod,
    register,
)


@register
class Flatten(LayerKind):
    """Merges dims start..end (default: all but the batch axis) into one."""

    name = "flatten"
    synonyms = {"start_dim": "start", "end_dim": "end"}
    summary = "flatten [start=1] [end=-1]"

    class Params(Params):
        start: Int = 1
        end: Int = -1

    def _axes(self, p, x):
        r = x.rank
        s, e = p.start, p.end
        if not -r <= s < r:
            raise ShapeError(f"start {s} is out of range for a rank-{r} input {x}", arg="start")
        if not -r <= e < r:
            raise ShapeError(f"end {e} is out of range for a rank-{r} input {x}", arg="end")
        s, e = s % r, e % r
        if s > e:
            raise ShapeError(f"start ({p.start}) comes after end ({p.end})", arg="start")
        return s, e

    def infer(self, p, ins):
        x = ins[0]
        s, e = self._axes(p, x)
        return TensorType(x.shape[:s] + (prod(x.shape[s:e + 1]),) + x.shape[e + 1:], x.dtype)

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall("torch.flatten", (In(0), p.start, p.end))])

    def numpy(self, p, w, xs, ctx):
        x = xs[0]
        s, e = self._axes(p, TensorType(x.shape))
        return x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1:])

    def backward(self, p, w, xs, y, gy, ctx):
        return [gy.reshape(xs[0].shape)], {}

    def sample(self):
        return {"start": 0, "end": 2}, [TensorType((2, 3, 4, 5))]


@register
class Reshape(LayerKind):
    """Reshapes to the given dims; one -1 is inferred, symbols are bound from the inputs."""

    name = "reshape"
    positional = ("shape",)
    summary = "reshape [N, 16, -1]"

    class Params(Params):
        shape: tuple[DimArg, ...]

    def _target(self, p, x):
        shape = list(p.shape)
        holes = [i for i, d in enumerate(shape) if d == -1]
        if len(holes) > 1:
            raise ShapeError("reshape can infer only one dim (-1)", arg="shape")
        for d in shape:
            if d.is_const and d.value < 1 and d != -1:
                raise ShapeError(f"reshape dims must be >= 1 (or one -1), got {d}", arg="shape")
        if holes:
            known = [d for i, d in enumerate(shape) if i != holes[0]]
            const = 1
            sym = []
            for d in known:
                if d.is_const:
                    const *= d.value
                else:
                    sym.append(d)
            rest = Counter(x.shape)
            for d in sym:
                if rest[d] <= 0:
                    raise ShapeError(f"cannot infer -1: {d} is not a dim of the input {x}",
                                     arg="shape")
                rest[d] -= 1
            remaining = prod(list(rest.elements()))
            remaining = remaining if isinstance(remaining, Dim) else Dim.const(remaining)
            try:
                shape[holes[0]] = remaining.exact_div(const)
            except ValueError:
                raise ShapeError(f"cannot reshape {x} to [{', '.join(map(str, p.shape))}]: "
                                 f"{remaining} elements do not divide by {const}",
                                 arg="shape") from None
        total_in = prod(x.shape)
        total_out = prod(shape)
        if total_in != total_out:
            raise ShapeError(f"cannot reshape {x} ({total_in} elements) to "
                             f"[{', '.join(map(str, shape))}] ({total_out} elements)",
                             arg="shape")
        return shape

    def infer(self, p, ins):
        x = ins[0]
        known_syms = set().union(*(d.symbols() for d in x.shape)) if x.shape else set()
        for d in p.shape:
            missing = d.symbols() - known_syms
            if missing:
                raise ShapeError(f"reshape uses the symbol {sorted(missing)[0]}, which is not "
                                 f"a dim of the input {x}", arg="shape")
        return TensorType(self._target(p, x), x.dtype)

    def torch(self, p, ins, out):
        dims = tuple(d.value if d.is_const else SymDim(d) for d in p.shape)
        # `reshape []` is a 0-d tensor (of one element): x.reshape(()), as x.reshape()
        # takes no empty argument list
        return TorchPlan(None, [TorchCall(".reshape", (In(0),) + (dims or ((),)))])

    def numpy(self, p, w, xs, ctx):
        return xs[0].reshape(tuple(d.evaluate(ctx.env) for d in p.shape))

    def backward(self, p, w, xs, y, gy, ctx):
        return [gy.reshape(xs[0].shape)], {}

    def sample(self):
        return {"shape": (Dim.const(2), Dim.const(-1), Dim.const(5))}, [TensorType((2, 3, 4, 5))]


@register
class Unflatten(LayerKind):
    """Splits one axis into several (torch's ``Tensor.unflatten``): ``unflatten 1 (2, -1)``
    makes [N, C, H, W] [N, 2, C/2, H, W] whatever H and W are (ShuffleNet's channel
    shuffle); one size may be -1 (inferred)."""

    name = "unflatten"
    positional = ("dim", "sizes")
    summary = "unflatten <dim> (<size>, ...): one axis split into several, one size may be -1"

    class Params(Params):
        dim: Int
        sizes: tuple[Int, ...]

    def _axis(self, p, x) -> int:
        r = x.rank
        if not -r <= p.dim < r:
            raise ShapeError(f"dim {p.dim} is out of range for a rank-{r} input {x}", arg="dim")
        return p.dim % r

    def infer(self, p, ins):
        x = ins[0]
        d = self._axis(p, x)
        if not p.sizes:
            raise ShapeError("unflatten needs at least one size", arg="sizes")
        holes = [i for i, v in enumerate(p.sizes) if v == -1]
        if len(holes) > 1 or any(v < 1 and v != -1 for v in p.sizes):
            raise ShapeError(f"unflatten sizes must be >= 1, one of them -1 at most, got "
                             f"{p.sizes}", arg="sizes")
        known = prod([v for v in p.sizes if v != -1])
        axis = x.shape[d]
        if holes:
            try:
                rest = axis.exact_div(known)
            except ValueError:
                raise ShapeError(f"unflatten: axis {d} of {x} ({axis}) does not divide by "
                                 f"{known}", arg="sizes") from None
            sizes = tuple(rest if v == -1 else Dim.const(v) for v in p.sizes)
        else:
            if axis != Dim.const(known):
                raise ShapeError(f"unflatten: axis {d} of {x} is {axis}, the sizes {p.sizes} "
                                 f"make {known}", arg="sizes")
            sizes = tuple(Dim.const(v) for v in p.sizes)
        return TensorType(x.shape[:d] + sizes + x.shape[d + 1:], x.dtype)

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall(".unflatten", (In(0), p.dim, tuple(p.sizes)))])

    def numpy(self, p, w, xs, ctx):
        x = xs[0]
        d = p.dim % x.ndim
        return x.reshape(x.shape[:d] + tuple(p.sizes) + x.shape[d + 1:])

    def backward(self, p, w, xs, y, gy, ctx):
        return [gy.reshape(xs[0].shape)], {}

    def sample(self):
        return {"dim": 1, "sizes": (2, -1)}, [TensorType((2, 6, 4, 5))]
