"""Layout of the generated source: lines of at most :data:`WIDTH` characters. A long
statement is broken after the opening bracket of its widest call (:func:`_fit`), a spec-line
comment goes after its statement or whole above it (:func:`_with_note`), a long comment is
wrapped (:func:`_comment_lines`), and a spec file's name is shown as the generated file shows it
(:func:`_display`). Pure text: it knows nothing of plans or classes.
"""

from __future__ import annotations

import os
import re
import textwrap

from ...stdlib import STDLIB


#: Generated lines are at most this long (a spec-line comment moves above its statement,
#: a long call is broken after its opening bracket).
WIDTH = 100


def _with_note(code: str, indent: int, note: str | None, shape: str | None) -> list[str]:
    """A statement with its spec-line comment: after it when the line stays within WIDTH,
    else on lines of its own above it (the spec text whole, wrapped at spaces)."""
    lines = _fit(code, indent)
    if note is None:
        return lines
    tail = f"  -> {shape}" if shape else ""
    comment = f"# {note}{tail}"
    if len(lines) == 1 and len(lines[0]) + 2 + len(comment) <= WIDTH:
        return [f"{lines[0]}  {comment}"]
    pad = " " * indent
    if indent + len(comment) <= WIDTH:
        return [pad + comment] + lines
    if tail and indent + 2 + len(note) <= WIDTH:  # the spec text on one line, the shape next
        return [f"{pad}# {note}", f"{pad}#   {tail.strip()}"] + lines
    # a word is never cut: a line of one word longer than WIDTH is not E501's concern
    wrapped = textwrap.wrap(f"{note}{tail}", WIDTH - indent - 4, break_long_words=False,
                            break_on_hyphens=False)
    return [f"{pad}# {wrapped[0]}"] + [f"{pad}#   {x}" for x in wrapped[1:]] + lines


def _fit(code: str, indent: int) -> list[str]:
    """``code`` indented, broken after the opening bracket of its widest call or list (and
    so on inside) when it is longer than WIDTH, as ruff format breaks it: the contents on
    one line if they fit there, else one item a line, each with a comma after it. No comma
    is added inside other brackets: it would change the meaning of ``(a + b)`` or of a
    comprehension."""
    pad = " " * indent
    code = _space_slices(code)
    if indent + len(code) <= WIDTH:
        return [pad + code]
    best = _widest_bracket(code)
    if best is None:
        return [pad + code]
    o, c = best
    head, body, tail = code[:o + 1], code[o + 1:c], code[c:]
    parts = _split_top(body)
    comma = True
    if len(parts) == 1 and code[o] == "(":  # (a * b + c if d else e): before its operators
        parts, comma = _split_operators(body), False
        # an operand too long for its line is split before its own * and / too, as ruff
        parts = [q for p in parts for q in (
            _split_operators(p, _PRODUCT) if indent + 4 + len(p) > WIDTH else [p])]
    if indent + len(head) > WIDTH or not parts:
        return [pad + code]
    inner = indent + 4
    magic = comma and body.rstrip().endswith(",")  # a one-tuple keeps its comma
    joined = (", " if comma else " ").join(parts)
    if not magic and (len(parts) == 1 or inner + len(joined) <= WIDTH):
        body_lines = _fit(joined, inner)
    else:
        body_lines = [line for p in parts for line in _fit(p + ("," if comma else ""), inner)]
    return [pad + head] + body_lines + [pad + tail]


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


def _subscript(code: str, o: int) -> bool:
    """Whether the bracket at ``code[o]`` opens a subscript (``x[...]``, not a list)."""
    return code[o] == "[" and o > 0 and (code[o - 1].isalnum() or code[o - 1] in "_)]'\"")


#: a slice bound written without spaces around its colon: a name or a number, signed
_SIMPLE = re.compile(r"[-+]?(\w*|\d+\.\d*)")


def _space_slices(code: str) -> str:
    """The slices of ``code`` spaced as PEP 8 and ruff format space them: ``x[1:-1]``, but
    ``x[a + 1 : b]`` and ``x[self.start :]`` (a colon by a complex bound is an operator)."""
    if ":" not in code or "[" not in code:
        return code
    out, last, opens = [], 0, []
    for i, ch, _ in _scan(code):
        if ch in "([{":
            opens.append(i)
        elif ch in ")]}" and opens:
            o = opens.pop()
            if opens:
                continue
            inner = _space_slices(code[o + 1:i])
            if _subscript(code, o):
                inner = ",".join(_space_slice(x) for x in _split_at(inner, ","))
            out += [code[last:o + 1], inner]
            last = i
    return "".join(out) + code[last:]


def _space_slice(item: str) -> str:
    parts = [p.strip() for p in _split_at(item, ":")]
    if len(parts) == 1 or all(_SIMPLE.fullmatch(p) for p in parts):
        return item
    text = parts[0]
    for before, x in zip(parts, parts[1:]):
        text += (" :" if before else ":") + (f" {x}" if x else "")
    return (" " if item.startswith(" ") else "") + text


def _split_at(body: str, sep: str) -> list[str]:
    """``body`` cut at each ``sep`` outside brackets and strings (empty parts kept)."""
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
        elif ch == sep and depth == 0:
            cuts.append(i)
    return [body[a + 1:b] for a, b in zip([-1] + cuts, cuts + [len(body)])]


def _widest_bracket(code: str) -> tuple[int, int] | None:
    """The widest top-level bracket pair to break; in an assignment, one right of ``=``
    where there is one (ruff splits the value before the target)."""
    eq = _assign_at(code)
    if eq is not None:
        got = _widest_bracket(code[eq:])
        if got is not None:
            return got[0] + eq, got[1] + eq
    opens: list[int] = []
    best = None
    for i, ch, depth in _scan(code):
        if ch in "([{":
            opens.append(i)
        elif ch in ")]}" and opens:
            o = opens.pop()
            # a subscript only with several indexes: breaking ``x[...]`` reads badly (and
            # ``d[k,]`` is a tuple)
            if depth == 0 and (not _subscript(code, o) or len(_split_top(code[o + 1:i])) > 1) \
                    and i - o > 1 and (
                    best is None or i - o > best[1] - best[0]):
                best = (o, i)
    return best


def _assign_at(code: str) -> int | None:
    """The index just after the top-level `` = `` of an assignment statement, or None."""
    depth, quote = 0, None
    for i, ch in enumerate(code):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and code.startswith(" = ", i):
            return i + 3
    return None


_SUM = (" + ", " - ", " if ", " else ")
_PRODUCT = (" * ", " / ", " // ", " @ ", " % ")


def fit_return(expr: str, indent: int) -> list[str]:
    """``return expr``, in parentheses broken before its operators where ruff format would
    not split the last call instead: two or more top-level ``+``/``-``, or one and the
    expression ends with an empty call (``(...).sum()``)."""
    line = f"return {expr}"
    ops = len(_split_operators(expr)) - 1
    if indent + len(line) > WIDTH and (ops > 1 or ops == 1 and expr.endswith("()")):
        return _fit(f"return ({expr})", indent)
    return _fit(line, indent)


def _split_operators(body: str, ops: tuple = _SUM) -> list[str]:
    """The parts of a bracketed expression before each top-level ``+``, ``-``, ``if`` and
    ``else`` (or ``ops``: a break there is valid inside the brackets)."""
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
        elif depth == 0 and ch == " " and any(body.startswith(w, i) for w in ops):
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
    lines = textwrap.wrap(text, WIDTH - 4, break_on_hyphens=False) or [""]
    return [f"# {lines[0]}"] + [f"#   {x}" for x in lines[1:]]
