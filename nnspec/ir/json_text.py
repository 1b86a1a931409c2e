"""The JSON text of an IR: decoding it within limits, and finding a value's place in it.

:func:`_decode` parses the text and turns every way it can fail (bad JSON, nesting past
:data:`MAX_JSON_DEPTH`, an integer past Python's int-string limit) into one E200
diagnostic at its line and column; :func:`_positions` finds, by a token scan, where the
values at given JSON paths are, so that the validator's diagnostics point into the file.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..core.diagnostics import Diagnostic
from ..core.limits import first_too_deep, line_col
from ..core.source import Span

#: JSON nesting the IR may have (it needs about eight levels: a per-side pad tuple).
MAX_JSON_DEPTH = 32

_LONG_INT = re.compile(r"\d{20,}")
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+', re.S)


def _decode(text: str, path: str) -> tuple[Any, Diagnostic | None]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return None, Diagnostic("E200", f"not valid JSON: {e.msg}",
                                Span(path, e.lineno, e.colno, e.lineno, e.colno + 1))
    except RecursionError:
        line, col = _deep_position(text)
        return None, Diagnostic("E200", f"the JSON nests more than {MAX_JSON_DEPTH} levels "
                                "deep", Span(path, line, col, line, col + 1))
    except ValueError as e:  # an integer longer than Python's int-string limit
        m = _LONG_INT.search(text)
        line, col = _line_col(text, m.start()) if m else (1, 1)
        what = "an integer too large for int64" if m else _first_line(e)
        return None, Diagnostic("E200", f"not valid JSON: {what}", Span(path, line, col, line,
                                                                        col + 1))
    if _too_deep(data):
        line, col = _deep_position(text)
        return None, Diagnostic("E200", f"the JSON nests more than {MAX_JSON_DEPTH} levels "
                                "deep", Span(path, line, col, line, col + 1))
    return data, None


def _too_deep(data) -> bool:
    stack = [(data, 1)]
    while stack:
        x, d = stack.pop()
        if d > MAX_JSON_DEPTH:
            return True
        if isinstance(x, dict):
            stack.extend((y, d + 1) for y in x.values())
        elif isinstance(x, list):
            stack.extend((y, d + 1) for y in x)
    return False


def _deep_position(text: str) -> tuple[int, int]:
    at = first_too_deep(_JSON_TOKEN, text, "[{", "]}", MAX_JSON_DEPTH)
    return (1, 1) if at is None else _line_col(text, at)


_line_col = line_col


def _positions(text: str, wanted: set[tuple]) -> dict[tuple, tuple[int, int]]:
    """(offset, length) in the JSON text of the values (or object keys) at the given paths.

    An object member is located at its key; an array element at its value. The text is
    known to be valid JSON, so a token scan with a stack of open containers is enough.
    """
    out: dict[tuple, tuple[int, int]] = {}
    if () in wanted:
        m = _JSON_TOKEN.search(text)
        out[()] = (m.start(), len(m.group())) if m else (0, 1)
    frames: list[list] = []  # [is object, current key or index, expecting a key]
    for m in _JSON_TOKEN.finditer(text):
        if len(out) == len(wanted):
            break
        tok = m.group()
        c = tok[0]
        if c == ",":
            top = frames[-1]
            if top[0]:
                top[2] = True
            else:
                top[1] += 1
            continue
        if c == ":":
            frames[-1][2] = False
            continue
        if c in "]}":
            frames.pop()
            continue
        if frames:
            top = frames[-1]
            if top[0] and top[2]:  # an object key
                try:
                    top[1] = json.loads(tok)
                except ValueError:
                    top[1] = None
                where: tuple | None = tuple(f[1] for f in frames)
            elif not top[0]:
                where = tuple(f[1] for f in frames)
            else:
                where = None
            if where is not None and where in wanted and where not in out:
                out[where] = (m.start(), len(tok))
        if c in "[{":
            frames.append([c == "{", None if c == "{" else 0, True])
    return out


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__
