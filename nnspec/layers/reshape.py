"""flatten and reshape: move elements between axes; no weights."""

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
