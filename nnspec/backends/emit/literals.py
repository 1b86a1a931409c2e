"""Literals and expressions of the generated source: a plan value as a Python literal
(:func:`_lit`, never an arbitrary repr), a symbolic size as arithmetic
(:func:`_dim_src`), and one :class:`~nnspec.layers.base.TorchCall` of a layer plan as the
call a person would write (:func:`_call_src`: ``F.relu(x)``, ``y + x``, ``x[..., 4:68]``,
``self.conv(x)``). Comments made safe for one line (:func:`_comment`) are here too.
"""

from __future__ import annotations

import keyword
import math
import re

from ...core.dims import Dim
from ...layers.base import MODULE, In, Prev, SymDim, TorchCall
from ..plans import helper_parts as _helper_parts


def _comment(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in str(text))


def _str(s: str) -> str:
    """A string literal, double-quoted when that needs no escaping."""
    r = repr(s)
    if r[0] == "'" and '"' not in s and "'" not in s:
        return '"' + r[1:-1] + '"'
    return r


def _lit(v) -> str:
    """A Python literal for a plan value (never an arbitrary repr)."""
    if isinstance(v, str):
        return _str(v)
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, Dim):
        if not v.is_const:
            raise ValueError(f"symbolic size {v} where a constant is needed")
        return repr(v.value)
    if isinstance(v, int):
        return repr(int(v))
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else f'float("{v}")'
    if isinstance(v, tuple):
        inner = ", ".join(_lit(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, list):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_lit(k)}: {_lit(x)}" for k, x in v.items()) + "}"
    raise ValueError(f"cannot render {type(v).__name__} value {v!r} as a literal")


def _single_unit(p: Dim) -> bool:
    """p is one symbol with coefficient 1 (renders without parentheses)."""
    ((mono, c),) = p.terms.items()
    return c == 1 and len(mono) == 1 and isinstance(mono[0], str)


def _fold_floor(d: Dim):
    """(P + k*Q, k) for ``d = floor(P/k) + Q`` (Q symbolic, without divisions) when P + k*Q
    has fewer terms than P and Q together, else None."""
    floors = [m for m in d.terms if len(m) == 1 and not isinstance(m[0], str)]
    if len(floors) != 1 or d.terms[floors[0]] != 1 or floors[0][0]._kind != 1 or any(
            not isinstance(a, str) for m in d.terms if m != floors[0] for a in m):
        return None
    f = floors[0][0]
    rest = d - Dim._new({floors[0]: 1})
    whole = f.poly + rest * f.k
    if rest.is_const or len(whole.terms) >= len(f.poly.terms) + len(rest.terms):
        return None
    return whole, f.k


def _dim_src(d: Dim, atom=None) -> str:
    """Python arithmetic for a Dim (``//`` for floor, ``-(-a // k)`` for ceil), its constant
    term last; ``atom(symbol)`` writes a symbol (default: its name)."""
    if d.is_const:
        return repr(d.value)
    atom = atom or str
    folded = _fold_floor(d)
    if folded is not None:  # (a - b) // 2 rather than (a + b) // 2 - b
        inner = _dim_src(folded[0], atom)
        simple = len(folded[0].terms) == 1 and _single_unit(folded[0])
        return f"{inner if simple else f'({inner})'} // {folded[1]}"
    parts = []
    # a positive term first (``-a // 2`` is ``(-a) // 2``), the constant last
    for mono, c in sorted(d.terms.items(), key=lambda t: (not t[0], t[1] < 0)):
        atoms = []
        for a in mono:
            if isinstance(a, str):
                atoms.append(atom(a))
                continue
            inner = _dim_src(a.poly, atom)
            simple = len(a.poly.terms) == 1 and _single_unit(a.poly)
            if a._kind == 1:
                atoms.append(f"{inner if simple else f'({inner})'} // {a.k}")
            else:
                atoms.append(f"-(-{inner if simple else f'({inner})'} // {a.k})")
        if not atoms:
            parts.append((c < 0, str(abs(c))))
            continue
        if len(atoms) > 1 or abs(c) != 1:  # 2 * (H // 16): a product needs parentheses
            atoms = [f"({x})" if " " in x else x for x in atoms]
        body = " * ".join(atoms)
        parts.append((c < 0, body if abs(c) == 1 else f"{abs(c)} * {body}"))
    out = ""
    for i, (neg, body) in enumerate(parts):
        if i == 0:
            out = (f"-({body})" if "//" in body else f"-{body}") if neg else body
        else:
            out += f" - {body}" if neg else f" + {body}"
    return out


class _Code(str):
    """Source text that stands as it is in a call (another layer's parameter)."""


def _arg_src(a, ins: list[str], prev: str | None, size=_dim_src) -> str:
    if isinstance(a, _Code):
        return str(a)
    if isinstance(a, In):
        return ins[a.index]
    if isinstance(a, Prev):
        if prev is None:
            raise ValueError("Prev() in the first call of a layer")
        return prev
    if isinstance(a, SymDim):
        return size(a.dim)
    if isinstance(a, Dim):
        return size(a)
    if isinstance(a, tuple):
        inner = ", ".join(_arg_src(x, ins, prev, size) for x in a)
        return f"({inner},)" if len(a) == 1 else f"({inner})"
    if isinstance(a, list):
        return "[" + ", ".join(_arg_src(x, ins, prev, size) for x in a) + "]"
    return _lit(a)


def _index_src(a, ins: list[str], prev: str | None, size=_dim_src) -> str:
    """A subscript as written by hand: ``x[..., 4:68, a:a + w]`` (slices and ``...`` are
    rendered only here, where they are valid Python)."""
    if isinstance(a, tuple) and a:
        inner = ", ".join(_index_src(x, ins, prev, size) for x in a)
        return inner + ("," if len(a) == 1 else "")
    if a is Ellipsis:
        return "..."
    if isinstance(a, slice):
        text = ":".join("" if x is None else _arg_src(x, ins, prev, size)
                        for x in (a.start, a.stop))
        return text + ("" if a.step is None else f":{_arg_src(a.step, ins, prev, size)}")
    return _arg_src(a, ins, prev, size)


def _fn_name(fn: str) -> str:
    """The name a call is written with: ``F.relu``, ``torch.cat``, a helper's own name.
    Layer plans come from nnspec's code, never from a spec; this still refuses anything that
    is not a plain public name (the in-process backend looks each one up in torch)."""
    if fn.startswith("nnspec."):
        return _helper_parts(fn)[1]
    for ns in ("F.", "torch."):
        if fn.startswith(ns):
            name = fn[len(ns):]
            if name.isidentifier() and not name.startswith("_") and not keyword.iskeyword(name):
                return fn
            raise ValueError(f"unknown torch function {fn!r}")
    raise ValueError(f"unknown torch call {fn!r}")


# element-wise arithmetic of two operands, written with its operator as by hand: y + x
_INFIX = {"torch.add": "+", "torch.sub": "-", "torch.mul": "*", "torch.div": "/"}
_OPERAND = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*|-?[0-9]+(\.[0-9]*)?(e[-+]?[0-9]+)?")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]*)?(e[-+]?[0-9]+)?")


def _call_src(call: TorchCall, mod_ref: str | None, ins: list[str], prev: str | None,
              size=_dim_src) -> str:
    """The call as written by hand; ``size(dim)`` writes a symbolic size."""
    if call.fn == "getitem":
        index = _index_src(call.args[1], ins, prev, size)
        return f"{_arg_src(call.args[0], ins, prev, size)}[{index}]"
    if call.fn == "tuple":  # several values returned as one: (a, b)
        return "(" + ", ".join(_arg_src(a, ins, prev, size) for a in call.args) + ")"
    args = [_arg_src(a, ins, prev, size) for a in call.args]
    number_over = call.fn == "torch.div" and args and _NUMBER.fullmatch(args[0])
    if call.fn in _INFIX and len(args) == 2 and not call.kwargs and not number_over:
        # (a number / x is kept a call: Python's 7.0 / x is torch's 7 * reciprocal(x),
        # an ulp away from the quotient torch.div and NumPy compute)
        a, b = (x if _OPERAND.fullmatch(x) else f"({x})" for x in args)
        return f"{a} {_INFIX[call.fn]} {b}"
    for k in call.kwargs:
        if not (k.isidentifier() and not keyword.iskeyword(k)):
            raise ValueError(f"invalid keyword argument {k!r}")
    kws = [f"{k}={_arg_src(v, ins, prev, size)}" for k, v in call.kwargs.items()]
    if call.fn == MODULE:
        return f"{mod_ref}({', '.join(args + kws)})"
    if call.fn.startswith("."):
        name = call.fn[1:]
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"invalid method name in torch call {call.fn!r}")
        if not args:
            raise ValueError(f"method call {call.fn!r} needs a first argument")
        first = args[0]
        if not (first.isidentifier() or first.endswith(")")):
            first = f"({first})"
        return f"{first}{call.fn}({', '.join(args[1:] + kws)})"
    return f"{_fn_name(call.fn)}({', '.join(args + kws)})"
