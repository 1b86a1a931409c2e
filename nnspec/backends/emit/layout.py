"""Layout of the generated source: lines of at most :data:`WIDTH` characters. A long
statement is broken after the opening bracket of its widest call (:func:`_fit`), a spec-line
comment goes after its statement or above it (:func:`_with_note`), a long comment is wrapped
(:func:`_comment_lines`), and a spec file's name is shown as the generated file shows it
(:func:`_display`). Pure text: it knows nothing of plans or classes.
"""

from __future__ import annotations

import os

from ...stdlib import STDLIB


#: Generated lines are at most this long (a spec-line comment moves above its statement,
#: a long call is broken after its opening bracket).
WIDTH = 100


def _with_note(code: str, indent: int, note: str | None, shape: str | None) -> list[str]:
    """A statement with its spec-line comment: after it when the line stays within WIDTH,
    else on a line of its own above it (the spec text cut short if need be, the shape
    kept)."""
    lines = _fit(code, indent)
    if note is None:
        return lines
    tail = f"  -> {shape}" if shape else ""
    comment = f"# {note}{tail}"
    if len(lines) == 1 and len(lines[0]) + 2 + len(comment) <= WIDTH:
        return [f"{lines[0]}  {comment}"]
    room = WIDTH - indent - len(tail)
    if len(comment) - len(tail) > room:
        comment = f"# {note}"[:max(room - 3, 8)].rstrip() + "..." + tail
    return [" " * indent + comment] + lines


def _fit(code: str, indent: int) -> list[str]:
    """``code`` indented, broken after the opening bracket of its widest call or list (and
    so on inside) when it is longer than WIDTH. No comma is added: a trailing comma would
    change the meaning of ``(a + b)`` or of a comprehension."""
    pad = " " * indent
    if indent + len(code) <= WIDTH:
        return [pad + code]
    best = _widest_bracket(code)
    if best is None:
        return [pad + code]
    o, c = best
    head, body, tail = code[:o + 1], code[o + 1:c], code[c:]
    parts = _split_top(body)
    sep = ","
    if len(parts) == 1 and code[o] == "(":  # (a * b + c if d else e): before its operators
        parts, sep = _split_operators(body), ""
    if indent + len(head) > WIDTH or not parts:
        return [pad + code]
    out = [pad + head]
    width = WIDTH - indent - 4
    line = ""
    for i, p in enumerate(parts):
        piece = p + (sep if i < len(parts) - 1 else "")
        if line and len(line) + 1 + len(piece) > width:
            out += _fit(line, indent + 4)
            line = piece
        else:
            line = f"{line} {piece}" if line else piece
    out += _fit(line, indent + 4)
    out.append(pad + tail)
    return out


def _scan(code: str):
    """(index, char, depth before it) of the brackets outside string literals."""
    depth = 0
    quote = None
    i = 0
    while i < len(code):
        ch = code[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            yield i, ch, depth
            depth += 1
        elif ch in ")]}":
            depth -= 1
            yield i, ch, depth
        elif ch == ",":
            yield i, ch, depth
        i += 1


def _widest_bracket(code: str) -> tuple[int, int] | None:
    opens: list[int] = []
    best = None
    for i, ch, depth in _scan(code):
        if ch in "([{":
            opens.append(i)
        elif ch in ")]}" and opens:
            o = opens.pop()
            # not a subscript: breaking ``x[...]`` reads badly (and ``d[k,]`` is a tuple)
            subscript = code[o] == "[" and o and (code[o - 1].isalnum() or code[o - 1] in
                                                  "_)]'\"")
            if depth == 0 and not subscript and i - o > 1 and (
                    best is None or i - o > best[1] - best[0]):
                best = (o, i)
    return best


def _split_operators(body: str) -> list[str]:
    """The parts of a bracketed expression before each top-level ``+``, ``-``, ``if`` and
    ``else`` (a break there is valid inside the brackets)."""
    depth, quote, cuts = 0, None, []
    for i, ch in enumerate(body):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and ch == " " and any(body.startswith(w, i) for w in
                                              (" + ", " - ", " if ", " else ")):
            cuts.append(i)
    parts = [body[a:b].strip() for a, b in zip([0] + cuts, cuts + [len(body)])]
    return [p for p in parts if p]


def _split_top(body: str) -> list[str]:
    parts, start = [], 0
    for i, ch, depth in _scan(body):
        if ch == "," and depth == 0:
            parts.append(body[start:i].strip())
            start = i + 1
    rest = body[start:].strip()
    if rest:
        parts.append(rest)
    return [p for p in parts if p]


def _display(file: str, main: str) -> str:
    """A spec file's name as the generated file shows it: never an absolute path (generated
    files get committed). The main spec as given when relative; a file of nnspec's library
    by its name; another absolute path relative to the working folder when below it, else
    by its name."""
    file = str(file)
    if not os.path.isabs(file):
        return file

    try:
        if os.path.commonpath([file, str(STDLIB)]) == str(STDLIB):
            return os.path.basename(file)
    except ValueError:
        pass
    try:
        rel = os.path.relpath(file)
    except ValueError:
        rel = ""
    if rel and not rel.startswith(".."):
        return rel
    return os.path.basename(file)


def _comment_lines(text: str) -> list[str]:
    """``# text`` over as many lines as WIDTH needs (a word longer than a line is cut)."""
    import textwrap

    lines = textwrap.wrap(text, WIDTH - 4, break_on_hyphens=False) or [""]
    return [f"# {lines[0]}"] + [f"#   {x}" for x in lines[1:]]
