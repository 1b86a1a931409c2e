"""Constants set from outside a spec: ``--const NAME=VALUE`` and ``load(path, consts=...)``.

One spec can then be checked at full size and run at a tiny config (``--const layers=2``).
A value is a literal of the spec language — an integer, a float, ``true``/``false``, a
``"string"`` or a flat tuple of those — read by the patterns of the grammar's own tokens and
never evaluated: an expression (``64*2``) or a name is refused, so nothing in a flag can run
or refer to anything. Which constants may be set, and how derived ones follow, is the
Loader's business (nnspec/frontends/nn/lower/loader.py).
"""

from __future__ import annotations

import math
import re

from ...core.diagnostics import ConstError
from ...core.limits import MAX_INT

#: The grammar's NAME, INT, FLOAT and STRING tokens (grammar/nnspec.lark), and the words
#: the spec language reads as booleans.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?(?:[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+"
                    r"|\.[0-9]+(?:[eE][-+]?[0-9]+)?)")
_STRING = re.compile(r'"[^"\n]*"')
_BOOLS = {"true": True, "false": False, "True": True, "False": False}
#: One item of a tuple: a string (which may hold commas) or a run of other characters.
_ITEM = re.compile(r'\s*("[^"\n]*"|[^,"]*)\s*(,|$)')
#: An integer of more digits is far beyond int64: refused before int() reads it.
_MAX_DIGITS = 30
#: What a flag shows of a value it refuses.
_SHOWN = 60

USAGE = 'NAME=VALUE, VALUE a number, true/false, a "string" or a tuple of them'


def _clip(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."


def parse_value(text: str):
    """A literal as the spec language reads it: int, float, bool, str or a flat tuple.
    Raises ConstError (its message is the reason) for anything else."""
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        inner = text[1:-1]
        parts, at = [], 0
        while True:
            m = _ITEM.match(inner, at)
            if m is None:
                raise ConstError("a tuple holds literals separated by commas")
            parts.append(m.group(1).strip())
            at = m.end()
            if at >= len(inner) or not m.group(2):
                break
        if len(parts) > 1 and not parts[-1]:
            parts.pop()  # (3,) and (3, 4,): a trailing comma
        if not all(parts):
            raise ConstError("a tuple holds literals separated by commas")
        if any("(" in x for x in parts):
            raise ConstError("tuples of tuples are written in the spec")
        if len(parts) == 1 and not inner.rstrip().endswith(","):
            return _scalar(parts[0])  # (64) is 64, as in the spec
        return tuple(_scalar(x) for x in parts)
    return _scalar(text)


def _scalar(text: str):
    if _INT.fullmatch(text):
        digits = len(text.lstrip("-").lstrip("0"))
        if digits > _MAX_DIGITS or abs(int(text)) > MAX_INT:
            raise ConstError("integers are int64 (at most 9,223,372,036,854,775,807)")
        return int(text)
    if _FLOAT.fullmatch(text):
        v = float(text)
        if not math.isfinite(v):
            raise ConstError(f"{text} is not a finite number")
        return v
    if text in _BOOLS:
        return _BOOLS[text]
    if _STRING.fullmatch(text):
        return text[1:-1]
    if _NAME.fullmatch(text):
        raise ConstError(f'{text} is a name, not a value (a string is written in quotes: '
                         f'"{text}")')
    if re.search(r"[-+*/%()]", text):
        raise ConstError("expressions are not evaluated: write the value itself")
    raise ConstError("not a literal")


def parse_flag(item: str) -> tuple[str, object]:
    """``NAME=VALUE`` as (name, value); ConstError with a one-line message otherwise."""
    name, eq, value = item.partition("=")
    name = name.strip()
    if not eq:
        raise ConstError(f"--const takes {USAGE}; got {_clip(item)!r} (no '=')")
    if not _NAME.fullmatch(name):
        raise ConstError(f"--const takes {USAGE}; {_clip(name)!r} is not a name")
    if not value.strip():
        raise ConstError(f"--const {name}: no value after '='")
    try:
        return name, parse_value(value)
    except ConstError as e:
        raise ConstError(f"--const {name}: {_clip(value.strip())!r} is not a value: {e}") \
            from None


def parse_flags(items) -> dict:
    """Every ``--const`` of a command line; a name given twice is an error."""
    out: dict = {}
    for item in items or []:
        name, value = parse_flag(item)
        if name in out:
            raise ConstError(f"--const {name} is given twice")
        out[name] = value
    return out


def check_values(consts: dict | None) -> dict:
    """Constants given to the Python API, held to what ``--const`` accepts: names, and
    values that are literals of the spec language (int, float, bool, str, a flat tuple)."""
    out = {}
    for name, value in (consts or {}).items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConstError(f"consts: {_clip(repr(name))} is not a name")
        if not _is_literal(value):
            raise ConstError(f"consts: {name}={_clip(repr(value))} is not a value (an int, "
                             "float, bool, str or a tuple of them)")
        out[name] = value
    return out


def _is_literal(value, nested: bool = False) -> bool:
    if isinstance(value, tuple) and not nested:
        return bool(value) and all(_is_literal(v, True) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) <= MAX_INT
    return isinstance(value, (bool, str))


def show(value) -> str:
    """A value as a spec (and a flag) writes it: ``64``, ``true``, ``"gelu"``, ``(3, 3)``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # a control character is shown escaped, never sent as it is
        return '"' + "".join(c if c.isprintable() else ascii(c)[1:-1] for c in value) + '"'
    if isinstance(value, tuple):
        return "(" + ", ".join(show(x) for x in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value) if isinstance(value, float) else str(value)
