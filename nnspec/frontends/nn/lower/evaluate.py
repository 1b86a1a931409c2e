"""Constant expressions: the Evaluator turns a syntax expression of numbers, strings,
constants, symbols and shapes into a Python value (int, float, Dim, a shape's list of dims,
an initialiser) in a file's scope and a block's environment. Its arithmetic keeps integers
within int64 and ``/`` exact (E018-E028); has_tensor_syntax tells the expressions that may
be tensors to build rather than values to compute."""

from __future__ import annotations

import math

from ....core.diagnostics import Failure, suggest
from ....core.dims import Dim, DimTooComplex
from ....core.limits import MAX_INT
from ....core.source import Span
from ....layers import initializers as _inits
from .. import syntax as S
from .values import POISON, FileScope, Tensor, Word, describe

_BOOLS = {"true": True, "false": False, "True": True, "False": False}


class Evaluator:
    """Evaluates expressions of constants and integer arithmetic in a file's scope."""

    def __init__(self, loader, scope: FileScope):  # loader: the Loader (loader.py)
        self.loader = loader
        self.scope = scope

    def const(self, e):
        v = self.value(e, {})
        if isinstance(v, (Tensor, Word)):
            raise Failure("E020", "a constant must be a number, string or tuple", e.span)
        return v

    def lookup(self, name: str, env: dict, span: Span):
        if name in env:
            return env[name]
        if name in self.scope.consts:
            return self.scope.consts[name]
        if name in _BOOLS:
            return _BOOLS[name]
        return Word(name)

    def value(self, e, env: dict, shape_ctx: bool = False):
        """Evaluate a syntax expression to a Python value (int, float, str, bool, tuple,
        Dim, list of Dims for a shape literal, Tensor or Word)."""
        if isinstance(e, S.Num):
            v = e.value
            if isinstance(v, S.BigInt) or (isinstance(v, int) and abs(v) > MAX_INT):
                digits = v.digits if isinstance(v, S.BigInt) else len(str(abs(v)))
                raise Failure("E019", f"integer literal too large ({digits:,} digits); sizes "
                              "and counts are int64 (at most 9,223,372,036,854,775,807)",
                              e.span)
            return v
        if isinstance(e, S.Str):
            return e.value
        if isinstance(e, S.Ref):
            v = self.lookup(e.name, env, e.span)
            if shape_ctx and isinstance(v, Word):
                if e.name in ("floor", "ceil"):
                    raise Failure("E023", f"{e.name} is a function, not a dimension", e.span,
                                  hint=f"write {e.name}(a / b)")
                return Dim.sym(e.name)
            return v
        if isinstance(e, S.Neg):
            v = self.value(e.operand, env, shape_ctx)
            if isinstance(v, (int, float, Dim)) and not isinstance(v, bool):
                return -v
            raise Failure("E021", f"cannot negate {describe(v)}", e.span)
        if isinstance(e, S.BinOp):
            a = self.value(e.left, env, shape_ctx)
            b = self.value(e.right, env, shape_ctx)
            return self.arith(e, a, b)
        if isinstance(e, S.TupleLit):
            return tuple(self.value(x, env, shape_ctx) for x in e.items)
        if isinstance(e, S.ShapeLit):
            return self.shape(e, env)
        if isinstance(e, S.CallExpr) and e.name in ("floor", "ceil"):
            return self.rounding(e, env, shape_ctx)
        if isinstance(e, S.CallExpr) and e.name in SCALAR_FUNCTIONS and not shape_ctx:
            return self.scalar_call(e, env)
        if isinstance(e, S.CallExpr) and e.name in _inits.NAMES and not shape_ctx:
            return self.initializer(e, env)
        if isinstance(e, S.CallExpr):
            best = suggest(e.name, _inits.NAMES)
            if best is not None:
                raise Failure("E022", f"{e.name}(...) is not allowed here", e.name_span,
                              hint=f"did you mean the initialiser {best}(...)?")
            raise Failure("E022", f"{e.name}(...) is not allowed here", e.span,
                          hint="calls of layers and blocks belong in a model or block body")
        if isinstance(e, S.Dotted):
            return e  # ``wte.weight``: a layer's parameter, resolved where a layer uses it
        if isinstance(e, S.Index):
            raise Failure("E022", f"{e.name}[...] is not allowed here", e.span,
                          hint="index a named tensor inside a model or block body")
        raise Failure("E999", f"unsupported expression {type(e).__name__}", e.span)

    def scalar_call(self, e: S.CallExpr, env: dict) -> float:
        """``log(128 / 8)``, ``sqrt(d)``: the function of one number, a float."""
        if len(e.args) != 1 or e.args[0].key is not None:
            raise Failure("E024", f"{e.name} takes one number: {e.name}(x)", e.span)
        v = self.value(e.args[0].value, env)
        if v is POISON:
            return POISON
        if isinstance(v, Dim) and v.is_const:
            v = v.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Failure("E024", f"cannot compute {e.name} of {describe(v)}", e.span,
                          hint=f"{e.name} of a tensor is a layer: write it inside a model "
                               "or block body" if not isinstance(v, Dim) else
                          "a size of the input is known only at run time")
        fn, low = SCALAR_FUNCTIONS[e.name]
        if not v > low if e.name == "log" else v < low:
            raise Failure("E084", f"{e.name}({v}) is not a real number", e.span,
                          hint=f"{e.name} takes a number "
                               f"{'above' if e.name == 'log' else 'at least'} {low}")
        return fn(v)

    def initializer(self, e: S.CallExpr, env: dict) -> _inits.Init:
        """``normal(0, 0.02)``, ``kaiming_normal(mode=fan_out)``: an initialiser value."""
        args, kwargs = [], {}
        for a in e.args:
            v = self.value(a.value, env)
            if isinstance(v, Word):
                v = v.name  # kaiming_normal(mode=fan_out)
            if isinstance(v, (Tensor, tuple, list, _inits.Init)) or v is POISON:
                raise Failure("E073", f"{e.name}'s arguments are numbers, got {describe(v)}",
                              a.span)
            if a.key is None:
                if kwargs:
                    raise Failure("E073", "a positional argument after a keyword argument",
                                  a.span)
                args.append(v)
            elif a.key in kwargs:
                raise Failure("E050", f"argument {a.key!r} given twice", a.span)
            else:
                kwargs[a.key] = v
        try:
            return _inits.Init.make(e.name, tuple(args), kwargs)
        except _inits.InitError as x:
            raise Failure("E073", str(x), e.span,
                          hint="the initialisers and their arguments are those of "
                               "torch.nn.init: normal(mean, std), uniform(a, b), "
                               "kaiming_normal(a, mode=fan_out), ...") from None

    def rounding(self, e: S.CallExpr, env: dict, shape_ctx: bool):
        """floor(a / b) and ceil(a / b): integer division rounded down or up."""
        arg = e.args[0].value if len(e.args) == 1 and e.args[0].key is None else None
        if not (isinstance(arg, S.BinOp) and arg.op == "/"):
            raise Failure("E028", f"{e.name} takes one division: {e.name}(a / b)", e.span)
        a = self.value(arg.left, env, shape_ctx)
        b = self.value(arg.right, env, shape_ctx)
        if isinstance(b, Dim) and b.is_const:
            b = b.value
        if isinstance(b, bool) or not isinstance(b, int) or b <= 0:
            raise Failure("E028", f"{e.name}(a / b) needs a positive integer b", arg.span)
        if isinstance(a, int) and not isinstance(a, bool):
            return a // b if e.name == "floor" else -(-a // b)
        if isinstance(a, Dim):
            return a.floordiv(b) if e.name == "floor" else a.ceildiv(b)
        raise Failure("E028", f"cannot round {describe(a)}", arg.span)

    def shape(self, e: S.ShapeLit, env: dict) -> list:
        dims = []
        for d in e.dims:
            if isinstance(d, S.Ref) and d.name == "_":
                dims.append("_")
                continue
            v = self.value(d, env, shape_ctx=True)
            if isinstance(v, bool) or not isinstance(v, (int, Dim)):
                raise Failure("E023", f"a dimension must be an integer or a symbol, "
                              f"got {describe(v)}", d.span)
            dims.append(Dim.const(v) if isinstance(v, int) else v)
        return dims

    def arith(self, e: S.BinOp, a, b):
        if a is POISON or b is POISON:
            return POISON
        nums = (int, float, Dim)
        if (isinstance(a, nums) and isinstance(b, nums) and not isinstance(a, bool)
                and not isinstance(b, bool)):
            return _arith(e, a, b)
        raise Failure("E024", f"cannot compute {describe(a)} {e.op} {describe(b)}", e.span)


_RING = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def _arith(e: S.BinOp, a, b):
    """Integer (and float) arithmetic of constants and dims; `/` must be exact on ints.
    Integers stay within int64 (checked on every result, so nothing ever grows large)."""
    try:
        v = _arith_raw(e, a, b)
    except DimTooComplex as x:
        raise Failure("E018", str(x), e.span) from None
    _check_int64(v, e.span)
    return v


def _check_int64(v, span: Span) -> None:
    if isinstance(v, int) and not isinstance(v, bool):
        if abs(v) > MAX_INT:
            raise Failure("E019", f"this evaluates to {_magnitude(v)}, beyond int64", span,
                          hint="sizes and counts are int64 (at most 9,223,372,036,854,775,807)")
    elif isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise Failure("E019", f"this evaluates to {v}, not a finite number", span)
    elif isinstance(v, Dim):
        big = v.max_abs_coeff()
        if big > MAX_INT:
            raise Failure("E019", f"a coefficient of this dimension is {_magnitude(big)}, "
                          "beyond int64", span,
                          hint="sizes and counts are int64 (at most 9,223,372,036,854,775,807)")


def _magnitude(v: int) -> str:
    """A huge integer by its size, without converting it to decimal text."""
    bits = abs(v).bit_length()
    if bits <= 64:
        return f"{v:,}"
    digits = int(bits * 0.30103) + 1
    return f"{'-' if v < 0 else ''}about 10^{digits - 1}"


#: functions of one number in constant expressions: (function, the least argument, which
#: log excludes and sqrt includes)
SCALAR_FUNCTIONS = {"log": (math.log, 0), "sqrt": (math.sqrt, 0)}

_COMPARE = {"<": lambda a, b: a < b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
            ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


def _arith_raw(e: S.BinOp, a, b):
    op = e.op
    if op in _COMPARE:  # numbers compare to true or false; a symbol is known at run time
        if isinstance(a, Dim) and a.is_const:
            a = a.value
        if isinstance(b, Dim) and b.is_const:
            b = b.value
        if isinstance(a, Dim) or isinstance(b, Dim):
            raise Failure("E024", f"cannot compare {a} {op} {b}: a size of the input is "
                          "known only at run time", e.span,
                          hint="compare tensors instead: (arange(T) < 8)")
        return _COMPARE[op](a, b)
    symbolic = isinstance(a, Dim) or isinstance(b, Dim)
    if symbolic and (isinstance(a, float) or isinstance(b, float)):
        raise Failure("E025", "dimensions are integers; got a float", e.span)
    if op in _RING:
        return _RING[op](a, b)
    if symbolic and not isinstance(b, int) and not (isinstance(b, Dim) and b.is_const):
        raise Failure("E025", f"can only divide a dimension by an integer, not {b}", e.span)
    k = b.value if isinstance(b, Dim) else b
    if k == 0:
        raise Failure("E026", "division by zero", e.span)
    if symbolic:
        a = a if isinstance(a, Dim) else Dim.const(a)
        if op == "//":
            return a.floordiv(k)
        try:
            return a.exact_div(k)
        except ValueError:
            raise Failure("E027", f"{a} / {k} is not exact", e.span,
                          hint="use // for floor division") from None
    if op == "//":
        return a // k
    if isinstance(a, int) and isinstance(k, int):
        if a % k:
            raise Failure("E027", f"{a} / {k} is not exact (= {a / k:g})", e.span,
                          hint=f"use {a} // {k} for floor division")
        return a // k
    return a / k


def has_tensor_syntax(e) -> bool:
    """True if the expression may produce a tensor (it contains a reference or a call)."""
    if isinstance(e, (S.Ref, S.CallExpr, S.Index)):
        return True
    if isinstance(e, S.BinOp):
        return has_tensor_syntax(e.left) or has_tensor_syntax(e.right)
    return False
