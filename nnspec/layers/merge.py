"""Layers that join or split values: element-wise add and mul, concat along an axis,
and item (one value of a layer that returns several).

Element-wise arithmetic types its result as torch does: ``+ - *`` of int tensors (and int
numbers) is int, anything with a float tensor or a float number is float, and ``/`` is true
division, always float. A float result with no float tensor among the operands has torch's
default float dtype, float32, in both backends; otherwise the float tensors' dtype (the
wider of two, a 0-d tensor giving way to one with dims, as in torch's type promotion).
"""

from __future__ import annotations

from typing import Optional, Union

from pydantic import model_validator

from .base import (
    FLOAT,
    INT,
    Bool,
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
    prod,
    register,
)

#: a number in arithmetic with a tensor: an int keeps an int tensor int, as in torch
Number = Union[Int, float]


def _need_tensor(t, name: str) -> None:
    if not isinstance(t, TensorType) or t.dtype not in (FLOAT, INT):
        raise ShapeError(f"{name} needs a tensor, got {t}",
                         hint="name the values of a layer that returns several, then use one")


def broadcast_shapes(name: str, ins: list[TensorType], dtype: str = FLOAT) -> TensorType:
    """NumPy's broadcasting of the inputs' shapes (symbolically), typed ``dtype``."""
    from .tensorops import broadcast

    out = ins[0]
    _need_tensor(out, name)
    for other in ins[1:]:
        _need_tensor(other, name)
        out = TensorType(broadcast(out, other, name))
    return TensorType(out.shape, dtype)


def _float_dtype(arrays: list):
    """The NumPy dtype of a float result, as torch promotes: the float arrays' (those with
    dims first: a 0-d tensor gives way), else torch's default float dtype, float32."""
    import numpy as np

    floats = [a for a in arrays if np.issubdtype(a.dtype, np.floating)]
    shaped = [a for a in floats if a.ndim] or floats
    return np.result_type(*shaped) if shaped else np.dtype(np.float32)


def _reverse(p) -> bool:
    return getattr(p, "reverse", False)


class _NumberFirstParams(Params):
    """sub and div are not commutative: ``(1 - x)`` is other=1 with reverse."""

    other: Optional[Number] = None
    reverse: Bool = False

    @model_validator(mode="after")
    def _reverse_needs_a_number(self):
        if self.reverse and self.other is None:
            raise ValueError("reverse puts the number other= first: give other=")
        return self


class _Elementwise(LayerKind):
    """An element-wise operation of tensors that broadcast as NumPy's do, or of one tensor
    and a number (``other``; ``reverse``: the number comes first, as in ``(1 - x)``)."""

    arity = None
    most: int | None = None  # the most tensor inputs (None: any number)
    fn = ""

    class Params(Params):
        other: Optional[Number] = None

    def input_count_problem(self, p, n):
        if p.other is not None:
            return None if n == 1 else (f"{self.name} of a number takes one input tensor, "
                                        f"got {n}")
        if self.most is not None and n > self.most:
            return f"{self.name} takes {self.most} input tensors, got {n}"
        return super().input_count_problem(p, n)

    def check_inputs(self, p, ins):
        problem = self.input_count_problem(p, len(ins))
        if problem is not None:
            raise ShapeError(problem)
        if p.other is None:
            super().check_inputs(p, ins)

    def result_dtype(self, p, dtypes: list[str]) -> str:
        """int when every operand is an int (numbers included) and the operation keeps
        ints (``/`` does not), float otherwise."""
        ints = all(d == INT for d in dtypes) and not isinstance(p.other, float)
        return INT if ints and self.name != "div" else FLOAT

    def infer(self, p, ins):
        self.check_inputs(p, ins)  # a number, or tensors: never both nor neither
        if p.other is not None:
            _need_tensor(ins[0], self.name)
            return TensorType(ins[0].shape, self.result_dtype(p, [ins[0].dtype]))
        return broadcast_shapes(self.name, ins, self.result_dtype(p, [t.dtype for t in ins]))

    def macs(self, p, ins, out):
        return prod(out.shape) * max(len(ins) - 1, 1)

    def torch(self, p, ins, out):
        if p.other is not None:
            # a float tensor takes the number as a float: (1.0 - x), as written before ints
            other = float(p.other) if ins[0].dtype == FLOAT else p.other
            args = (other, In(0)) if _reverse(p) else (In(0), other)
            return TorchPlan(None, [TorchCall(self.fn, args)])
        calls = [TorchCall(self.fn, (In(0), In(1)))]
        calls += [TorchCall(self.fn, (Prev(), In(i))) for i in range(2, len(ins))]
        return TorchPlan(None, calls)

    def operands(self, p, xs):
        """The operands in order, each an array of the result's dtype (see the module's
        docstring), a number too."""
        import numpy as np

        arrays = [np.asarray(x) for x in xs]
        dtypes = [INT if np.issubdtype(a.dtype, np.integer) else FLOAT for a in arrays]
        if self.result_dtype(p, dtypes) == INT:
            dt = np.result_type(*arrays)
        else:
            dt = _float_dtype(arrays)
        ops = [a.astype(dt, copy=False) for a in arrays]
        if p.other is None:
            return ops
        c = np.asarray(p.other, dtype=dt)
        return [c, ops[0]] if _reverse(p) else [ops[0], c]

    def grads(self, p, xs, gs):
        """Per-operand gradients -> per-input ones, each summed back to its input's shape
        and dtype; an int input gets none."""
        import numpy as np

        from .tensorops import unbroadcast

        if p.other is not None:
            gs = gs[1:] if _reverse(p) else gs[:1]
        return [unbroadcast(g, np.shape(x)).astype(np.asarray(x).dtype, copy=False)
                if np.issubdtype(np.asarray(x).dtype, np.floating) else None
                for g, x in zip(gs, xs)]

    def sample(self):
        return {}, [TensorType((2, 3, 4)), TensorType((3, 1))]

    def samples(self):
        # `(x + 0.5)` and `(x * -2)` lower to other= with one tensor; ints stay ints
        return [self.sample(), ({"other": -2.0}, [TensorType((2, 3))]),
                ({}, [TensorType((2, 3), INT), TensorType((3,), INT)]),
                ({}, [TensorType((2, 3), INT), TensorType((2, 1))]),
                ({"other": 3}, [TensorType((2, 3), INT)])]


@register
class Add(_Elementwise):
    """a + b (written `y + x` in a spec)"""
    name, fn, summary = "add", "torch.add", "element-wise sum: y + x, (x + 1), or add(a, b, ...)"

    def numpy(self, p, w, xs, ctx):
        ops = self.operands(p, xs)
        out = ops[0] + ops[1]
        for x in ops[2:]:
            out = out + x
        return out

    def backward(self, p, w, xs, y, gy, ctx):
        return self.grads(p, xs, [gy] * max(len(xs), 2)), {}


@register
class Sub(_Elementwise):
    """a - b (written `(y - x)` in a spec)"""
    name, fn, summary = "sub", "torch.sub", "element-wise difference: (y - x), (1 - x), sub(a, b)"
    most = 2
    Params = _NumberFirstParams

    def samples(self):
        return [self.sample(), ({"other": 0.5, "reverse": True}, [TensorType((2, 3))]),
                ({"other": -2.0}, [TensorType((2, 3))]),
                ({}, [TensorType((2, 3), INT), TensorType((3,), INT)]),
                ({"other": 1, "reverse": True}, [TensorType((2, 3), INT)])]

    def numpy(self, p, w, xs, ctx):
        a, b = self.operands(p, xs)
        return a - b

    def backward(self, p, w, xs, y, gy, ctx):
        return self.grads(p, xs, [gy, -gy]), {}


@register
class Mul(_Elementwise):
    """a * b (written `(y * x)` in a spec)"""
    name, fn = "mul", "torch.mul"
    summary = "element-wise product: (y * x), (x * 0.5), mul(a, b, ...)"

    def numpy(self, p, w, xs, ctx):
        ops = self.operands(p, xs)
        out = ops[0] * ops[1]
        for x in ops[2:]:
            out = out * x
        return out

    def backward(self, p, w, xs, y, gy, ctx):
        # d(x_0 * ... * x_n)/dx_i: the product of the others (not y / x_i: x_i may be 0)
        ops = self.operands(p, xs)
        out = []
        for i in range(len(ops)):
            g = gy
            for j, x in enumerate(ops):
                if j != i:
                    g = g * x
            out.append(g)
        return self.grads(p, xs, out), {}


@register
class Div(_Elementwise):
    """a / b (written `(y / x)` in a spec)"""
    name, fn, summary = "div", "torch.div", "element-wise quotient: (y / x), (x / 2), div(a, b)"
    most = 2
    Params = _NumberFirstParams

    def numpy(self, p, w, xs, ctx):
        a, b = self.operands(p, xs)
        return a / b

    def backward(self, p, w, xs, y, gy, ctx):
        a, b = self.operands(p, xs)
        return self.grads(p, xs, [gy / b, -gy * a / (b * b)]), {}

    def samples(self):
        # a divisor away from 0, so that finite differences are well conditioned
        return [({"other": 0.5, "reverse": True}, [TensorType((2, 3))]),
                ({"other": -2.0}, [TensorType((2, 3))]),
                ({"other": 2}, [TensorType((2, 3), INT)])]



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
            names = f" ({', '.join(t.names)})" if t.names else ""
            raise ShapeError(f"the layer returns {len(t.items)} values{names}, "
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


@register
class Pack(LayerKind):
    """Several values as one: what a block or model returns with ``return a, b`` (named
    again with ``x, y = Block(...)``, which lowers to ``item`` nodes)."""

    name = "pack"
    arity = None
    summary = "several values as one: return a, b (in a block or model)"

    class Params(Params):
        pass

    def infer(self, p, ins):
        for t in ins:
            if isinstance(t, TupleType):
                raise ShapeError(f"a returned value is itself {len(t.items)} values {t}; "
                                 "name them and return each")
        return TupleType(ins)

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall("tuple", tuple(In(i) for i in range(len(ins))))])

    def numpy(self, p, w, xs, ctx):
        return tuple(xs)

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        return [None if not np.issubdtype(x.dtype, np.floating) else
                np.zeros_like(x) if g is None else g for x, g in zip(xs, gy)], {}

    def sample(self):
        return {}, [TensorType((2, 3)), TensorType((2, 4), "int")]
