"""Layers that join or split values: element-wise add and mul, concat along an axis,
and item (one value of a layer that returns several)."""

from __future__ import annotations

from .base import (
    In,
    Int,
    LayerKind,
    Params,
    Prev,
    ShapeError,
    TensorType,
    TorchCall,
    TorchPlan,
    TupleType,
    need_float,
    prod,
    register,
)


class _Elementwise(LayerKind):
    arity = None
    fn = ""
    sym = ""

    def infer(self, p, ins):
        first = ins[0]
        for other in ins[1:]:
            if other.shape != first.shape:
                raise ShapeError(f"cannot {self.name} tensors of shapes {first} and {other}",
                                 hint="both operands must have the same shape")
            need_float(other, self.name)
        need_float(first, self.name)
        return first

    def macs(self, p, ins, out):
        return prod(out.shape) * (len(ins) - 1)

    def torch(self, p, ins, out):
        calls = [TorchCall(self.fn, (In(0), In(1)))]
        calls += [TorchCall(self.fn, (Prev(), In(i))) for i in range(2, len(ins))]
        return TorchPlan(None, calls)

    def sample(self):
        return {}, [TensorType((2, 3)), TensorType((2, 3))]


@register
class Add(_Elementwise):
    """a + b (written `y + x` in a spec)"""
    name, fn, summary = "add", "torch.add", "element-wise sum: y + x, or add(a, b, ...)"

    def numpy(self, p, w, xs, ctx):
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out = out + x
        return out

    def backward(self, p, w, xs, y, gy, ctx):
        return [gy] * len(xs), {}


@register
class Mul(_Elementwise):
    """a * b (written `(y * x)` in a spec)"""
    name, fn, summary = "mul", "torch.mul", "element-wise product: (y * x), or mul(a, b, ...)"

    def numpy(self, p, w, xs, ctx):
        out = xs[0] * xs[1]
        for x in xs[2:]:
            out = out * x
        return out

    def backward(self, p, w, xs, y, gy, ctx):
        # d(x_0 * ... * x_n)/dx_i: the product of the others (not y / x_i: x_i may be 0)
        out = []
        for i in range(len(xs)):
            g = gy
            for j, x in enumerate(xs):
                if j != i:
                    g = g * x
            out.append(g)
        return out, {}


@register
class Concat(LayerKind):
    """Joins tensors along ``dim`` (default 1, the channel/feature axis)."""

    name = "concat"
    arity = None
    synonyms = {"axis": "dim"}
    summary = "concat(a, b, ..., dim=1)"
    ranks = (1, None)

    class Params(Params):
        dim: Int = 1

    def infer(self, p, ins):
        r = ins[0].rank
        if not -r <= p.dim < r:
            raise ShapeError(f"dim {p.dim} is out of range for rank-{r} inputs", arg="dim")
        ax = p.dim % r
        total = ins[0].shape[ax]
        for t in ins[1:]:
            if t.rank != r or any(a != b for i, (a, b) in enumerate(zip(t.shape, ins[0].shape))
                                  if i != ax):
                raise ShapeError(f"cannot concat {ins[0]} and {t} along dim {p.dim}: the other "
                                 "dims must match", arg="dim")
            if t.dtype != ins[0].dtype:
                raise ShapeError(f"cannot concat {ins[0]} and {t}: different dtypes")
            total = total + t.shape[ax]
        return TensorType(ins[0].shape[:ax] + (total,) + ins[0].shape[ax + 1:], ins[0].dtype)

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall("torch.cat", (tuple(In(i) for i in range(len(ins))),),
                                          {"dim": p.dim})])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        return np.concatenate(xs, axis=p.dim)

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        cuts = np.cumsum([x.shape[p.dim] for x in xs])[:-1]
        return list(np.split(gy, cuts, axis=p.dim)), {}

    def sample(self):
        return {"dim": 2}, [TensorType((2, 3, 4)), TensorType((2, 3, 4))]


@register
class Item(LayerKind):
    """The i-th value of a layer that returns several (written ``y, h = ...``)."""

    name = "item"
    positional = ("index",)
    summary = "one value of a multi-value layer: y, h = gru 64 state"

    class Params(Params):
        index: Int

    def infer(self, p, ins):
        t = ins[0]
        if not isinstance(t, TupleType):
            raise ShapeError("this layer returns one value; name it with a single name",
                             hint="drop the extra names on the left of =")
        if not 0 <= p.index < len(t.items):
            names = ", ".join(t.names) if t.names else f"{len(t.items)} values"
            raise ShapeError(f"the layer returns {len(t.items)} values ({names}), "
                             f"not {p.index + 1}", hint="give one name per value")
        return t.items[p.index]

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall("getitem", (In(0), p.index))])

    def numpy(self, p, w, xs, ctx):
        return xs[0][p.index]

    def backward(self, p, w, xs, y, gy, ctx):
        g = [None] * len(xs[0])
        g[p.index] = gy
        return [tuple(g)], {}

    def sample(self):
        return {"index": 1}, [TupleType((TensorType((2, 3)), TensorType((2, 4))))]
