"""Tensors computed from sizes: ``arange``, comparisons, ``where``, ``log``, ``abs``,
``minimum``/``maximum`` and the casts ``to_float``/``to_int``.

With the element-wise arithmetic of int tensors (``(a - b)``, ``(a * 16)``), ``reshape``
and ``expand``, these write index maps and fixed masks inside a spec: T5's relative-position
buckets, Swin's relative-position index and shifted-window mask.

- ``arange(T)``, ``arange(start, end)``, ``arange(start, end, step)`` (``torch.arange``): an
  int tensor, no input. Its sizes may be symbols of the model's inputs, read at run time;
  an expression of symbols is written in brackets, ``arange(1, [T + 1])``.
- ``lt gt le ge eq ne`` (``lt(a, b)``, ``gt(x, 0)``): 1 where the comparison holds, else 0,
  as an int tensor (``torch.lt(a, b).long()``): the language's masks are int, nonzero true.
- ``where(cond, a, b)`` (``where(cond, a, 0.5)``): a where the int ``cond`` is nonzero, else b.
- ``log`` (float; an int input gives float32, as torch), ``abs`` (keeps the dtype).
- ``minimum(a, b)``, ``maximum(a, b)``; with a number, ``minimum(x, 15)`` is
  ``torch.clamp(x, max=15)``.
- ``to_float`` (``.float()``: float32) of an int tensor, ``to_int`` (``.long()``, towards zero)
  of a float one.

Such values are computed in forward, from the symbolic sizes, on the device of forward's
inputs (``torch.arange(T, device=x.device)``, never torch's default device): exact at every
size and nothing stored, so no state_dict key (as T5 computes its buckets). A value of
numbers only (Swin's window size) may be kept on the module instead, computed once:
``... | buffer persistent as relative_position_index`` (``buffer.py``), the state_dict key
torchvision's Swin has; ``buffer`` alone keeps it with no key. Int paths carry no gradient.
"""

from __future__ import annotations

from typing import Annotated, Optional, Union

from pydantic import BeforeValidator, field_validator

from ..core.dims import Dim
from .base import (
    FLOAT,
    INT,
    DimArg,
    In,
    InputDevice,
    Int,
    LayerKind,
    Params,
    Prev,
    ShapeError,
    SymDim,
    TensorType,
    TorchCall,
    TorchPlan,
    prod,
    register,
)
from .merge import _float_dtype, _need_tensor, broadcast_shapes

#: a number beside a tensor: an int keeps an int tensor int, as in torch
Number = Union[Int, float]


def _one_size(v):
    """``[T + 3]``: a size computed from symbols is written as a one-item shape, as
    ``size=[2*H, 2*W]`` elsewhere."""
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise ValueError(f"a size is one number or symbol, or one expression in brackets "
                             f"([T + 1]), got {len(v)}")
        return v[0]
    return v


Size = Annotated[DimArg, BeforeValidator(_one_size)]


def _arg(d: Dim):
    return d.value if d.is_const else SymDim(d)


def _show(p) -> str:
    parts = [p.start] if p.end is None else [p.start, p.end]
    return ", ".join(str(d) for d in parts) + (f", {p.step}" if p.step != 1 else "")


@register
class Arange(LayerKind):
    """``torch.arange``: the ints from start (0) up to end, by step; no input."""

    name = "arange"
    arity = 0
    positional = ("start", "end", "step")
    summary = ("ints 0 .. T-1 (no input): arange(T), arange(start, end), arange(0, T, 2), "
               "arange(1, [T + 1])")

    class Params(Params):
        start: Size
        end: Optional[Size] = None
        step: Int = 1

        @field_validator("step")
        @classmethod
        def _step(cls, v):
            if v < 1:
                raise ValueError("must be >= 1")
            return v

    def input_count_problem(self, p, n: int) -> str | None:
        if n:
            return (f"arange takes no input tensor, got {n}: its sizes are arguments, "
                    "arange(T) or arange(start, end)")
        return None

    def check_inputs(self, p, ins: list) -> None:
        if ins:
            raise ShapeError(f"arange takes no input tensor, got {len(ins)}")

    def bounds(self, p) -> tuple[Dim, Dim]:
        return (Dim.const(0), p.start) if p.end is None else (p.start, p.end)

    def infer(self, p, ins):
        start, end = self.bounds(p)
        n = (end - start).ceildiv(p.step)
        if n.is_const and n.value < 1:
            raise ShapeError(f"arange({_show(p)}) is empty: it gives {max(n.value, 0)} "
                             "values", arg="start" if p.end is None else "end",
                             hint="the end must be above the start")
        return TensorType((n,), INT)

    def torch(self, p, ins, out):
        start, end = self.bounds(p)
        args = (_arg(end),) if p.end is None and p.step == 1 else (_arg(start), _arg(end))
        if p.step != 1:
            args += (p.step,)
        # on the device of the tensors forward reads, never torch's default device
        return TorchPlan(None, [TorchCall("torch.arange", args, {"device": InputDevice()})])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        start, end = self.bounds(p)
        return np.arange(start.evaluate(ctx.env), end.evaluate(ctx.env), p.step,
                         dtype=np.int64)

    def backward(self, p, w, xs, y, gy, ctx):
        return [], {}  # no input, no weights: nothing to differentiate

    def detail(self, p, ins):
        return _show(p)

    def samples(self):
        c = Dim.const
        return [({"start": c(2), "end": c(9), "step": 3}, []), ({"start": c(5)}, [])]

    def sample(self):
        return self.samples()[0]


class _Binary(LayerKind):
    """Two tensors that broadcast as NumPy's, or a tensor and a number (``other``, second)."""

    arity = 2
    positional = ("other",)

    class Params(Params):
        other: Optional[Number] = None

    def input_count_problem(self, p, n):
        if p.other is not None and n != 1:
            return f"{self.name} of a tensor and a number takes one input tensor, got {n}"
        return None if p.other is not None else super().input_count_problem(p, n)

    def check_inputs(self, p, ins):
        problem = self.input_count_problem(p, len(ins))
        if problem is not None:
            raise ShapeError(problem)

    def operands(self, ins: list) -> list:
        return ins

    def shape(self, p, ins, dtype: str) -> TensorType:
        if p.other is not None:
            _need_tensor(ins[0], self.name)
            return TensorType(ins[0].shape, dtype)
        return broadcast_shapes(self.name, ins, dtype)

    def macs(self, p, ins, out):
        return prod(out.shape)

    def samples(self):
        return [({}, [TensorType((2, 3, 4), INT), TensorType((3, 1), INT)]),
                ({"other": 1}, [TensorType((3, 4), INT)]),
                ({}, [TensorType((2, 3)), TensorType((3,))])]

    def sample(self):
        return self.samples()[0]


def _numbers(p, xs):
    """The inputs as arrays, with ``other`` as the second when given."""
    import numpy as np

    arrays = [np.asarray(x) for x in xs]
    return arrays if p.other is None else arrays + [np.asarray(p.other)]


class _Compare(_Binary):
    """1 where the comparison holds, else 0 (int): ``torch.lt(a, b).long()``."""

    op = ""

    def infer(self, p, ins):
        self.check_inputs(p, ins)
        return self.shape(p, ins, INT)

    def torch(self, p, ins, out):
        b = In(1) if p.other is None else p.other
        return TorchPlan(None, [TorchCall(f"torch.{self.name}", (In(0), b)),
                                TorchCall(".long", (Prev(),))])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        a, b = _numbers(p, xs)
        return getattr(np, self.op)(a, b).astype(np.int64)

    def backward(self, p, w, xs, y, gy, ctx):
        return _no_gradient(xs), {}


def _no_gradient(xs) -> list:
    """An int output's inputs: a float input gets zeros (the step has no slope where it is
    defined; torch gives an int result no gradient), an int input none."""
    import numpy as np

    return [np.zeros(np.shape(x), dtype=np.asarray(x).dtype)
            if np.issubdtype(np.asarray(x).dtype, np.floating) else None for x in xs]


def _compare(name: str, op: str, text: str):
    cls = type(name.capitalize(), (_Compare,), {
        "name": name, "op": op, "__doc__": f"a {text} b, as 1 or 0",
        "summary": f"1 where a {text} b, else 0 (int): {name}(a, b), {name}(x, 0)"})
    return register(cls)


Lt = _compare("lt", "less", "<")
Gt = _compare("gt", "greater", ">")
Le = _compare("le", "less_equal", "<=")
Ge = _compare("ge", "greater_equal", ">=")
Eq = _compare("eq", "equal", "==")
Ne = _compare("ne", "not_equal", "!=")


def _result_dtype(p, dtypes: list[str]) -> str:
    ints = all(d == INT for d in dtypes) and not isinstance(p.other, float)
    return INT if ints else FLOAT


def _promote(p, xs: list) -> list:
    """The operands (``other`` last when given) in the result's dtype, as merge's arithmetic
    promotes: ints stay int, a float number or tensor makes the result float."""
    import numpy as np

    arrays = [np.asarray(x) for x in xs]
    ints = [INT if np.issubdtype(a.dtype, np.integer) else FLOAT for a in arrays]
    dt = np.dtype(np.int64) if _result_dtype(p, ints) == INT else _float_dtype(arrays)
    ops = [a.astype(dt, copy=False) for a in arrays]
    return ops if p.other is None else ops + [np.asarray(p.other, dtype=dt)]


def _grads(xs, gs):
    from .tensorops import unbroadcast

    import numpy as np

    return [unbroadcast(g, np.shape(x)).astype(np.asarray(x).dtype, copy=False)
            if np.issubdtype(np.asarray(x).dtype, np.floating) else None
            for g, x in zip(gs, xs)]


class _Extreme(_Binary):
    """``torch.minimum(a, b)``; with a number, ``torch.clamp(x, max=n)``."""

    bound = ""
    pick = ""

    def infer(self, p, ins):
        self.check_inputs(p, ins)
        return self.shape(p, ins, _result_dtype(p, [t.dtype for t in ins]))

    def torch(self, p, ins, out):
        if p.other is None:
            return TorchPlan(None, [TorchCall(f"torch.{self.name}", (In(0), In(1)))])
        other = float(p.other) if ins[0].dtype == FLOAT else p.other
        return TorchPlan(None, [TorchCall("torch.clamp", (In(0),), {self.bound: other})])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        a, b = _promote(p, xs)
        return getattr(np, self.name)(a, b)

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        a, b = _promote(p, xs)
        wins = np.less(a, b) if self.name == "minimum" else np.greater(a, b)
        if p.other is not None:  # torch.clamp: the bound itself passes the gradient
            return _grads(xs, [gy * (wins | (a == b))]), {}
        tie = (a == b) * 0.5  # torch.minimum splits a tie's gradient evenly
        return _grads(xs, [gy * (wins + tie), gy * (~wins & (a != b)) + gy * tie]), {}


@register
class Minimum(_Extreme):
    """the smaller of a and b, element-wise"""
    name, bound = "minimum", "max"
    summary = "element-wise smaller: minimum(a, b), minimum(x, 15) (torch.clamp(x, max=15))"


@register
class Maximum(_Extreme):
    """the larger of a and b, element-wise"""
    name, bound = "maximum", "min"
    summary = "element-wise larger: maximum(a, b), maximum(x, 0) (torch.clamp(x, min=0))"


@register
class Where(LayerKind):
    """``torch.where(cond.bool(), a, b)``: a where the int cond is nonzero, else b."""

    name = "where"
    arity = 3
    positional = ("other",)
    summary = "a where the int cond is nonzero, else b: where(cond, a, b), where(cond, a, 0.5)"

    class Params(Params):
        other: Optional[Number] = None

    def input_count_problem(self, p, n):
        want = 3 if p.other is None else 2
        if n != want:
            return (f"where takes {want} input tensors (cond, a"
                    f"{', b' if p.other is None else ''}), got {n}")
        return None

    def check_inputs(self, p, ins):
        problem = self.input_count_problem(p, len(ins))
        if problem is not None:
            raise ShapeError(problem)

    def infer(self, p, ins):
        self.check_inputs(p, ins)
        cond = ins[0]
        _need_tensor(cond, self.name)
        if cond.dtype != INT:
            raise ShapeError(f"where takes an int condition (nonzero: true), got {cond}",
                             hint="compare to make one: where(lt(a, 8), a, b)")
        values = ins[1:]
        dtype = _result_dtype(p, [t.dtype for t in values])
        return broadcast_shapes(self.name, ins, dtype)

    def torch(self, p, ins, out):
        b = In(2) if p.other is None else (
            float(p.other) if out.dtype == FLOAT else p.other)
        return TorchPlan(None, [TorchCall(".bool", (In(0),)),
                                TorchCall("torch.where", (Prev(), In(1), b))])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        a, b = _promote(p, xs[1:])
        return np.where(np.asarray(xs[0]) != 0, a, b)

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        on = np.asarray(xs[0]) != 0
        gs = _grads(xs[1:], [np.where(on, gy, 0), np.where(on, 0, gy)])
        return [None] + gs, {}

    def samples(self):
        return [({}, [TensorType((3, 4), INT), TensorType((3, 4)), TensorType((4,))]),
                ({"other": -0.5}, [TensorType((3, 4), INT), TensorType((3, 4))]),
                ({"other": 2}, [TensorType((3, 1), INT), TensorType((3, 4), INT)])]

    def sample(self):
        return self.samples()[0]


class _Unary(LayerKind):
    """One tensor, element-wise."""

    def macs(self, p, ins, out):
        return prod(out.shape)

    class Params(Params):
        pass


@register
class Log(_Unary):
    """natural logarithm (``torch.log``); an int input gives float32, as torch"""
    name = "log"
    summary = "natural logarithm, element-wise: log(x) (an int input gives float32)"

    def infer(self, p, ins):
        _need_tensor(ins[0], self.name)
        return TensorType(ins[0].shape, FLOAT)

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall("torch.log", (In(0),))])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = np.asarray(xs[0])
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):  # log 0 = -inf, as torch
            return np.log(x)

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        x = np.asarray(xs[0])
        return [gy / x if np.issubdtype(x.dtype, np.floating) else None], {}

    def samples(self):
        return [({}, [TensorType((3, 4), INT)]), ({}, [TensorType((2, 5))])]

    def sample(self):
        return self.samples()[0]


@register
class Abs(_Unary):
    """absolute value (``torch.abs``), of the input's dtype"""
    name = "abs"
    summary = "absolute value, element-wise: abs(x) (int stays int)"

    def infer(self, p, ins):
        _need_tensor(ins[0], self.name)
        return ins[0]

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall("torch.abs", (In(0),))])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        return np.abs(xs[0])

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        x = np.asarray(xs[0])
        return [gy * np.sign(x) if np.issubdtype(x.dtype, np.floating) else None], {}

    def samples(self):
        return [({}, [TensorType((3, 4), INT)]), ({}, [TensorType((2, 5))])]

    def sample(self):
        return self.samples()[0]


class _Cast(_Unary):
    source = ""
    target = ""
    method = ""

    def infer(self, p, ins):
        x = ins[0]
        _need_tensor(x, self.name)
        if x.dtype != self.source:
            raise ShapeError(f"{self.name} casts {'an int' if self.source == INT else 'a float'}"
                             f" tensor, got {x}, which is {self.target} already",
                             hint=f"drop the {self.name}")
        return TensorType(x.shape, self.target)

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall(self.method, (In(0),))])

    def sample(self):
        return {}, [TensorType((3, 4), self.source)]


@register
class ToFloat(_Cast):
    """an int tensor as float32 (``x.float()``)"""
    name, source, target, method = "to_float", INT, FLOAT, ".float"
    summary = "an int tensor as float32: to_float(x) (x.float())"

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        return np.asarray(xs[0]).astype(np.float32)

    def backward(self, p, w, xs, y, gy, ctx):
        return [None], {}


@register
class ToInt(_Cast):
    """a float tensor as int64, rounded towards zero (``x.long()``)"""
    name, source, target, method = "to_int", FLOAT, INT, ".long"
    aliases = ("long",)
    summary = "a float tensor as int64, towards zero: to_int(x) (x.long())"

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = np.asarray(xs[0])
        with np.errstate(invalid="ignore"):  # -inf (log 0) as torch's: the least int64
            return np.trunc(x).astype(np.int64)

    def backward(self, p, w, xs, y, gy, ctx):
        return _no_gradient(xs), {}
