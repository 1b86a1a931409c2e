"""The IR validator's vocabulary: reporting at a JSON path, and fields of the right type.

:class:`_FieldChecks` collects errors by JSON path (``models[0].nodes[3].inputs[1]``, see
:func:`show_path`) and turns them into diagnostics at the value's line and column; it
checks that an object has the fields it must and no others, that each is of its type
(int64 integers, lists of strings), spans, and dim expressions that parse within the
limits (:data:`MAX_DIM_TEXT`, :func:`_dim_problem`). The checks of models and of the
program build on it (:mod:`.validate_models`, :mod:`.validate`).
"""

from __future__ import annotations

from pydantic import ValidationError

from ..core.diagnostics import Diagnostic, suggest
from ..core.dims import Dim
from ..core.limits import MAX_INT, MAX_NESTING
from ..core.source import Span
from .json_text import _LONG_INT, _first_line, _line_col, _positions

#: Characters of one dim expression (an input size, an annotation, a reshape target).
MAX_DIM_TEXT = 1000

_BAD = object()  # a field that is missing or of the wrong type (already reported)


def _type_name(x) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, int):
        return "an integer"
    if isinstance(x, float):
        return "a number"
    if isinstance(x, str):
        return "a string"
    if isinstance(x, list):
        return "a list"
    if isinstance(x, dict):
        return "an object"
    return type(x).__name__


_KINDS = {str: "a string", int: "an integer", list: "a list", dict: "an object",
          bool: "a boolean"}


def _is(x, t) -> bool:
    if t is int:
        return isinstance(x, int) and not isinstance(x, bool)
    return isinstance(x, t)


def show_path(path: tuple) -> str:
    """``models[0].nodes[3].inputs[1]``."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "the IR"



class _FieldChecks:
    """Errors by JSON path, and the checks of fields, spans and dims every part uses."""

    def __init__(self, path: str, text: str | None):
        self.path = path
        self.text = text
        self.errors: list[tuple[tuple, str, str, str | None]] = []

    # ---- reporting ---------------------------------------------------------------------

    def err(self, where: tuple, code: str, message: str, hint: str | None = None) -> None:
        self.errors.append((where, code, message, hint))

    def diagnostics(self) -> list[Diagnostic]:
        found: dict[tuple, tuple[int, int]] = {}
        if self.text is not None and self.errors:
            wanted = {w[:i] for w, *_ in self.errors for i in range(len(w) + 1)}
            found = _positions(self.text, wanted)
        out = []
        for where, code, message, hint in self.errors:
            span = Span(self.path, 1, 1, 1, 2)
            for i in range(len(where), -1, -1):  # the value, or the nearest thing holding it
                if where[:i] in found:
                    offset, length = found[where[:i]]
                    line, col = _line_col(self.text, offset)
                    span = Span(self.path, line, col, line, col + max(1, length))
                    break
            out.append(Diagnostic(code, f"{show_path(where)}: {message}", span, hint=hint))
        return out

    # ---- fields ------------------------------------------------------------------------

    def fields(self, obj, where: tuple, required: tuple, optional: tuple) -> bool:
        """obj is an object with the required keys and no others."""
        if not isinstance(obj, dict):
            self.err(where, "E201", f"must be an object, got {_type_name(obj)}")
            return False
        ok = True
        for k in required:
            if k not in obj:
                self.err(where, "E202", f"missing field {k!r}")
                ok = False
        known = required + optional
        for k in obj:
            if k not in known:
                best = suggest(str(k), known)
                self.err(where + (k,), "E203", f"unknown field {k!r}",
                         f"did you mean {best!r}?" if best else f"the fields are "
                         f"{', '.join(known)}")
                ok = False
        return ok

    def get(self, obj: dict, key: str, where: tuple, t, default=_BAD):
        if key not in obj:
            return default
        x = obj[key]
        if not _is(x, t):
            self.err(where + (key,), "E201", f"must be {_KINDS[t]}, got {_type_name(x)}")
            return _BAD
        if t is int and abs(x) > MAX_INT:
            self.err(where + (key,), "E201", "integer beyond int64")
            return _BAD
        return x

    def strings(self, obj: dict, key: str, where: tuple, default=_BAD, nullable=False):
        xs = self.get(obj, key, where, list, default)
        if xs is _BAD or xs is default:
            return xs
        ok = True
        for i, x in enumerate(xs):
            if not (isinstance(x, str) or (nullable and x is None)):
                want = "a string or null" if nullable else "a string"
                self.err(where + (key, i), "E201", f"must be {want}, got {_type_name(x)}")
                ok = False
        return xs if ok else _BAD

    def span(self, x, where: tuple, empty_ok: bool = True) -> bool:
        if isinstance(x, list) and not x and empty_ok:
            return True
        if (isinstance(x, list) and len(x) == 5 and isinstance(x[0], str)
                and all(_is(v, int) and 0 <= v <= MAX_INT for v in x[1:])):
            return True
        self.err(where, "E214", "a span is [file, line, column, end line, end column]"
                 + (" or []" if empty_ok else "") + f", got {_short(x)}")
        return False

    def opt_span(self, obj: dict, where: tuple) -> bool:
        return "span" not in obj or self.span(obj["span"], where + ("span",))

    def dim_text(self, s: str, where: tuple, wildcard: bool, size: bool) -> bool:
        """s parses as a dim expression within the limits (size: a declared input size,
        whose constant must be >= 0)."""
        if s == "_":
            if wildcard:
                return True
            self.err(where, "E212", "an input shape cannot use the wildcard _")
            return False
        problem = _dim_problem(s)
        if problem is None:
            try:
                d = Dim.parse(s)
            except (ValueError, TypeError, ArithmeticError, RecursionError) as e:
                problem = _first_line(e)
            else:
                if d.max_abs_coeff() > MAX_INT:
                    problem = "a number in it is beyond int64"
                elif size and d.is_const and d.value < 0:
                    problem = f"a size must be >= 0, got {d.value}"
        if problem is not None:
            self.err(where, "E212", f"invalid dimension {_short(s)}: {problem}")
            return False
        return True

    def dims(self, obj: dict, key: str, where: tuple, wildcard: bool, size: bool) -> bool:
        xs = self.strings(obj, key, where)
        if xs is _BAD:
            return False
        ok = True
        for i, s in enumerate(xs):
            ok &= self.dim_text(s, where + (key, i), wildcard, size)
        return ok

    def pydantic_errors(self, e: BaseException, where: tuple) -> None:
        if isinstance(e, ValidationError):
            for er in e.errors():
                self.err(where + tuple(er["loc"]), "E201", _lower(er["msg"]))
        else:
            self.err(where, "E201", _first_line(e))


def _dim_problem(s: str) -> str | None:
    """Why the text is not worth parsing as a dim expression, or None."""
    if len(s) > MAX_DIM_TEXT:
        return f"longer than {MAX_DIM_TEXT} characters"
    if _LONG_INT.search(s):
        return "a number in it is beyond int64"
    depth = top = 0
    for ch in s:
        if ch == "(":
            depth += 1
            top = max(top, depth)
        elif ch == ")":
            depth -= 1
    if top > MAX_NESTING:
        return f"nested more than {MAX_NESTING} levels deep"
    return None


def _short(x, limit: int = 60) -> str:
    """repr(x), cut to about limit characters (a string keeps its closing quote)."""
    s = repr(x)
    if len(s) <= limit:
        return s
    return s[:limit - 4] + "..." + (s[0] if isinstance(x, str) else "")


def _lower(msg: str) -> str:
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if len(msg) > 1 and msg[1].isupper():  # an acronym
        return msg
    return msg[:1].lower() + msg[1:]
