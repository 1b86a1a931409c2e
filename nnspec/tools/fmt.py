"""`nnspec fmt`: rewrite specs in one canonical layout.

The layout is computed from the token stream, line by line: the language is line-based
(a statement is one line plus the lines that start with ``|``; brackets span lines only in
a model's, block's or train section's signature),
so a formatter that keeps every line break it is given needs no parse tree, and keeps
every comment where it was. The parser is used twice: to refuse a file with syntax errors
(it is left untouched, with the diagnostics ``nnspec check`` gives), and to prove that
the output is the same program (its syntax tree, spans aside) and is formatted already.

The canonical style, that of the bundled specs:

- 4 spaces of indentation in a body; a line that starts with ``|`` is put under the first
  ``|`` of its statement's first line (at the statement's indentation if it has none); a
  signature's later lines are indented 4 spaces, but a ``)`` that starts its last line;
- one space between words and around ``=`` (a statement's or a constant's), ``|``, ``+``,
  ``-``, ``*``, ``/``, ``//``, ``->``; none around a keyword argument's ``=`` (``k=5``,
  ``dim=1``, ``stride=2``), inside brackets, before ``,`` and ``:``, after a unary ``-``;
  inside a shape, ``*``, ``/`` and ``//`` are written tight (``[N, 3*H]``), as nnspec
  prints dims;
- a shape annotation inside a pipeline is written ``conv 8 : [N, 8, H, W] | relu``;
  those that end a line (``: [N, 6, 28, 28]``) in a body are aligned two spaces after the
  longest statement of each run of lines without a blank line; a statement more than
  ``OUTLIER_GAP`` columns longer than the run's median keeps its annotation three spaces
  after it instead of pushing the whole run to the right;
- trailing comments two spaces after the code; a comment line takes the indentation of
  the code line after it; comment text is kept as written;
- at most one blank line in a row, none at the start and end of a file or of a body; a
  block, model or train section (with the comment lines right above it) is set apart
  from its neighbours by one blank line.

Long lines are kept as they are: no line is ever broken or joined.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, fields, is_dataclass

#: How much longer than the median of its run a statement must be for its annotation not
#: to be aligned with the others.
OUTLIER_GAP = 20
INDENT = 4

# The grammar's terminals (grammar/nnspec.lark), in the order Lark tries them.
_TOKEN = re.compile(r"""
    (?P<ws>[\t \f]+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"[^"\n]*")
  | (?P<call>[A-Za-z_][A-Za-z0-9_]*\()
  | (?P<index>[A-Za-z_][A-Za-z0-9_]*\[)
  | (?P<path>[0-9]+(?:\.[0-9]+)*\.[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+))*)
  | (?P<float>[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+
              |\.[0-9]+(?:[eE][-+]?[0-9]+)?)
  | (?P<int>[0-9]+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+))*)
  | (?P<op>->|//|\.\.\.|<=|>=|==|!=|[<>=,:|+\-*/()\[\]{}])
""", re.X)

#: Words that start a line (and ``as``): a ``-`` after them is a sign.
_KEYWORDS = frozenset({"use", "const", "check", "block", "model", "train", "return", "loss",
                       "as"})
_TIGHT_IN_SHAPE = frozenset({"*", "/", "//"})


@dataclass(slots=True)
class _Tok:
    kind: str  # name call index int float string op
    text: str


@dataclass(slots=True)
class _Out:
    """One output line: code (with its annotation and comment kept apart), a comment line
    or a blank line."""

    kind: str  # code | comment | blank
    role: str = ""  # item open close stmt cont tstmt (code lines)
    indent: int = 0
    text: str = ""
    annot: str | None = None
    comment: str | None = None
    inner: bool = False  # a comment or blank line inside a body


class FormatError(Exception):
    """The formatter would change what a spec means, or is not stable on it: a bug in the
    formatter; the file is left as it was."""


def _tokens(line: str) -> tuple[list[_Tok], str | None]:
    """The tokens of one physical line and its comment (None without one)."""
    toks: list[_Tok] = []
    pos = 0
    while pos < len(line):
        m = _TOKEN.match(line, pos)
        if m is None:  # the parser accepted the file, so this cannot happen
            raise FormatError(f"unexpected character {line[pos]!r}")
        kind = "name" if m.lastgroup == "path" else m.lastgroup  # `as 0.conv`: a name
        if kind == "comment":
            return toks, m.group().rstrip()
        if kind != "ws":
            toks.append(_Tok(kind, m.group()))
        pos = m.end()
    return toks, None


def _is_op(t: _Tok | None, *texts: str) -> bool:
    return t is not None and t.kind == "op" and t.text in texts


def _ends_value(t: _Tok, first: bool) -> bool:
    """Whether a ``-`` after the token would be a difference (or a sign, if not)."""
    if t.kind == "name":
        return not (t.text == "as" or (first and t.text in _KEYWORDS))
    return t.kind in ("int", "float", "string") or _is_op(t, ")", "]")


def _spaced(toks: list[_Tok], ctx: str, depth: int = 0) -> tuple[str, list[int]]:
    """The tokens of one line joined with canonical spacing, and each token's column.

    ``ctx`` is what the line is: ``stmt`` (a body statement or a continuation line),
    ``tset`` (a train setting) and ``header`` take layer arguments at bracket depth 0, where
    ``-`` can only be a sign; ``const``, ``check``, ``tloss`` and ``use`` take expressions.
    ``depth`` parentheses are open before the line (a signature's later lines).
    """
    args_ctx = ctx in ("stmt", "tset", "header")
    stack: list[str] = ["("] * depth
    out: list[str] = []
    cols: list[int] = []
    width = 0
    prev: _Tok | None = None
    prev_unary = prev_tight = False
    seen_assign = False
    for i, t in enumerate(toks):
        depth = len(stack)
        unary = tight = False
        if t.kind == "op":
            if t.text == "-":
                unary = (prev is None or not _ends_value(prev, i == 1)
                         or (depth == 0 and args_ctx))
            elif t.text in _TIGHT_IN_SHAPE:
                tight = "[" in stack
            elif t.text == "=":
                assign = (depth == 0 and not seen_assign
                          and (ctx == "const" or (ctx == "stmt" and _targets(toks[:i]))))
                seen_assign = seen_assign or assign
                tight = not assign  # a keyword argument's
        in_index = bool(stack) and stack[-1] == "idx"
        if prev is None:
            gap = ""
        elif in_index and (_is_op(t, ":", "]") or _is_op(prev, ":")):
            gap = " " if _is_op(prev, ",") else ""  # Python's x[..., :k], x[1:3], x[::2]
        elif _is_op(t, ":") and depth == 0 and ctx == "stmt":
            gap = " "  # an annotation inside a pipeline: conv 8 : [N, 8] | relu
        elif (_is_op(t, ")", "]", ",", ":") or prev.kind in ("call", "index")
              or _is_op(prev, "(", "[")
              or prev_unary or prev_tight or tight):
            gap = ""
        else:
            gap = " "
        out.append(gap)
        width += len(gap)
        cols.append(width)
        out.append(t.text)
        width += len(t.text)
        if t.kind in ("call", "index") or _is_op(t, "(", "["):
            stack.append({"call": "(", "index": "idx"}.get(t.kind, t.text))
        elif _is_op(t, ")", "]") and stack:
            stack.pop()
        prev, prev_unary, prev_tight = t, unary, tight
    return "".join(out), cols


def _targets(toks: list[_Tok]) -> bool:
    """Whether the tokens are a statement's targets: ``y`` or ``y, h``."""
    return len(toks) % 2 == 1 and all(
        t.kind == "name" if i % 2 == 0 else _is_op(t, ",") for i, t in enumerate(toks))


def _depth0(toks: list[_Tok], text: str) -> int | None:
    """The index of the first token ``text`` outside brackets, or None."""
    depth = 0
    for i, t in enumerate(toks):
        if t.kind in ("call", "index") or _is_op(t, "(", "["):
            depth += 1
        elif _is_op(t, ")", "]"):
            depth -= 1
        elif depth == 0 and _is_op(t, text):
            return i
    return None


def _final_annot(toks: list[_Tok]) -> int | None:
    """The index of the ``:`` of a line's final annotation (outside brackets, no ``|``
    after it), or None: ``conv 8 : [N, 8] | relu`` keeps its inner annotation in the code."""
    depth = 0
    at = None
    for i, t in enumerate(toks):
        if t.kind in ("call", "index") or _is_op(t, "(", "["):
            depth += 1
        elif _is_op(t, ")", "]"):
            depth -= 1
        elif depth == 0 and _is_op(t, ":"):
            at = i
        elif depth == 0 and _is_op(t, "|"):
            at = None
    return at


def _open_parens(toks: list[_Tok]) -> int:
    """How many parentheses and brackets the tokens leave open (closing more counts less)."""
    return sum(1 if t.kind in ("call", "index") or _is_op(t, "(", "[") else
               -1 if _is_op(t, ")", "]") else 0 for t in toks)


def _header(toks: list[_Tok]) -> list[_Tok]:
    """``model Foo (x: ...)`` written as ``model Foo(x: ...)`` (the same header)."""
    if len(toks) > 2 and toks[1].kind == "name" and _is_op(toks[2], "("):
        return [toks[0], _Tok("call", toks[1].text + "("), *toks[3:]]
    return toks


def _lines(text: str) -> list[_Out]:
    """The output lines, before blank lines, comment indentation and alignment."""
    out: list[_Out] = []
    state = "top"  # top | body | train | sig (a signature's later lines)
    cont_col = INDENT
    item = ""  # the keyword of the item whose signature is open
    depth = 0  # the parentheses a signature leaves open
    for line in text.split("\n"):
        toks, comment = _tokens(line)
        inner = state != "top"
        if not toks:
            out.append(_Out("comment", comment=comment, inner=inner) if comment is not None
                       else _Out("blank", inner=inner))
            continue
        first = toks[0]
        if state == "sig":
            code, _ = _spaced(toks, "header", depth)
            depth += _open_parens(toks)
            indent = 0 if depth <= 0 and _is_op(first, ")") else INDENT
            if depth <= 0:
                state = "top" if not _is_op(toks[-1], "{") else \
                    "body" if item in ("model", "block") else "train"
            out.append(_Out("code", "sig", indent, code, comment=comment))
            continue
        if state == "top":
            opens = _is_op(toks[-1], "{")
            if opens:
                state = "body" if first.text in ("model", "block") else "train"
                toks = _header(toks)
            elif first.text in ("model", "block", "train") and _open_parens(toks) > 0:
                state, item, depth = "sig", first.text, _open_parens(toks)
                code, _ = _spaced(_header(toks), "header")
                out.append(_Out("code", "open", 0, code, comment=comment))
                continue
            ctx = {"use": "use", "const": "const", "check": "check"}.get(first.text, "header")
            code, _ = _spaced(toks, ctx)
            out.append(_Out("code", "open" if opens else "item", 0, code, comment=comment))
            continue
        if _is_op(first, "}"):
            state = "top"
            out.append(_Out("code", "close", 0, "}", comment=comment))
            continue
        if state == "train":
            ctx = "tloss" if first.kind == "name" and first.text == "loss" else "tset"
            code, _ = _spaced(toks, ctx)
            out.append(_Out("code", "tstmt", INDENT, code, comment=comment))
            continue
        annot = None
        at = _final_annot(toks)
        if at is not None:
            annot = ": " + _spaced(toks[at + 1:], "stmt")[0]
            toks = toks[:at]
        code, cols = _spaced(toks, "stmt")
        if _is_op(first, "|"):
            out.append(_Out("code", "cont", cont_col, code, annot, comment))
            continue
        bar = _depth0(toks, "|")
        cont_col = INDENT + (cols[bar] if bar is not None else 0)
        out.append(_Out("code", "stmt", INDENT, code, annot, comment))
    return out


def _blank_lines(lines: list[_Out]) -> list[_Out]:
    """At most one blank line in a row; none at the ends of the file or of a body, nor
    inside a statement; one around each block, model and train section."""
    kept: list[_Out] = []
    for i, ln in enumerate(lines):
        if ln.kind == "blank":
            nxt = next((x for x in lines[i + 1:] if x.kind != "blank"), None)
            if (not kept or kept[-1].kind == "blank" or nxt is None
                    or kept[-1].role in ("open", "sig") or nxt.role in ("close", "cont", "sig")
                    or (nxt.kind == "comment" and _next_code_role(lines, i) in ("cont", "sig"))):
                continue
        kept.append(ln)
    out: list[_Out] = []
    for ln in kept:
        if ln.role == "open" and out:
            # the comment lines right above a section belong to it
            j = len(out)
            while j > 0 and out[j - 1].kind == "comment" and not out[j - 1].inner:
                j -= 1
            if j > 0 and out[j - 1].kind != "blank":
                out.insert(j, _Out("blank"))
        elif out and out[-1].role == "close" and ln.kind != "blank":
            out.append(_Out("blank"))
        out.append(ln)
    return out


def _next_code_role(lines: list[_Out], i: int) -> str | None:
    nxt = next((x for x in lines[i + 1:] if x.kind == "code"), None)
    return nxt.role if nxt is not None else None


def _comment_indents(lines: list[_Out]) -> None:
    """A comment line is indented as the code line after it (a body's last comments as
    the body)."""
    indent = 0
    for ln in reversed(lines):
        if ln.kind == "code":
            indent = ln.indent if ln.role != "close" else INDENT
        elif ln.kind == "comment":
            ln.indent = indent if ln.inner else 0


def _align(widths: list[int]) -> int:
    """The column of a run's annotations (see OUTLIER_GAP)."""
    ws = sorted(widths)
    typical = ws[len(ws) // 2]
    return max(w for w in ws if w <= typical + OUTLIER_GAP) + 2


def _render(lines: list[_Out]) -> str:
    run: list[_Out] = []
    columns: dict[int, int] = {}

    def close_run() -> None:
        annotated = [x for x in run if x.annot is not None]
        if annotated:
            col = _align([x.indent + len(x.text) for x in annotated])
            for x in annotated:
                columns[id(x)] = col
        run.clear()

    for ln in lines:
        if ln.kind == "blank" or ln.role in ("open", "close"):
            close_run()
        elif ln.kind == "code":
            run.append(ln)
    close_run()
    out = []
    for ln in lines:
        if ln.kind == "blank":
            out.append("")
            continue
        s = " " * ln.indent + ln.text if ln.kind == "code" else " " * ln.indent
        if ln.annot is not None:
            col = columns[id(ln)]
            s = s.ljust(col) if len(s) + 2 <= col else s + "   "
            s += ln.annot
        if ln.comment is not None:
            s = s + "  " + ln.comment if ln.kind == "code" else s + ln.comment
        out.append(s)
    return "\n".join(out) + "\n" if out else ""


def layout(text: str) -> str:
    """The canonical layout of a spec that parses (no check that it does: see
    :func:`format_text`)."""
    text = text.replace("\r\n", "\n")
    lines = _blank_lines(_lines(text))
    _comment_indents(lines)
    return _render(lines)


_FIELDS: dict[type, tuple[str, ...]] = {}
_OPEN, _CLOSE = object(), object()  # a list's start, a list's or a node's end


def _shape(tree) -> list:
    """A syntax tree without its spans, flattened (pre-order, with a marker at the end of
    each node), for comparing two parses. Iterative: a chain of 5,000 ``+`` is a tree that
    deep."""
    out: list = []
    todo = [tree]
    while todo:
        x = todo.pop()
        t = type(x)
        if x is _CLOSE:
            out.append(_CLOSE)
        elif t in (list, tuple):
            out.append(_OPEN)
            todo.append(_CLOSE)
            todo.extend(reversed(x))
        else:
            names = _FIELDS.get(t)
            if names is None:
                names = _FIELDS[t] = (
                    tuple(f.name for f in fields(x) if f.name != "file")
                    if is_dataclass(x) and t.__name__ != "Span" else ())
            if names:
                out.append(t.__name__)
                todo.append(_CLOSE)
                todo.extend(getattr(x, n) for n in reversed(names))
            elif t.__name__ != "Span":
                out.append(x)
    return out


def format_text(text: str, path: str = "<string>") -> str:
    """The canonical layout of a spec's text.

    Raises SpecError with the syntax errors of a spec that does not parse, and FormatError
    if the result would not be the same program or not be stable under formatting again
    (a bug; never written anywhere)."""
    from ..core.diagnostics import Diagnostic, SpecError
    from ..core.source import Source, Span
    from ..frontends.nn.parse import parse_recover

    before, errors, _ = parse_recover(text, path)
    if errors or before is None:
        shown = text if text.endswith("\n") else text + "\n"
        raise SpecError(errors, {path: Source(path, shown)})
    out = layout(text)
    if out == text:
        return out
    after, errors, _ = parse_recover(out, path)
    limits = [d for d in errors if d.code == "E029"]
    if limits:  # spacing out a dense file can take it past the word limit
        raise SpecError([Diagnostic("E029", f"formatted, {limits[0].message}",
                                    Span(path, 1, 1, 1, 2))])
    if errors or after is None or _shape(after) != _shape(before):
        raise FormatError(f"{path}: formatting would change the program (a bug in nnspec "
                          "fmt); the file is left as it is")
    if layout(out) != out:
        raise FormatError(f"{path}: the layout is not stable (a bug in nnspec fmt); the "
                          "file is left as it is")
    return out


# ---- the command -----------------------------------------------------------------------

def add_arguments(p) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="spec files, folders (searched for .nn files) or - (stdin to stdout)")
    p.add_argument("--check", action="store_true",
                   help="change nothing; print a diff and exit 1 if a file would change")
    p.add_argument("--diff", action="store_true",
                   help="change nothing; print a diff of what would change")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")


def _diff(old: str, new: str, path: str) -> str:
    import difflib

    return "".join(difflib.unified_diff(old.splitlines(keepends=True),
                                        new.splitlines(keepends=True),
                                        f"{path}", f"{path} (formatted)"))


def run(args) -> int:
    from ..core.diagnostics import SpecError, render_all, unreadable
    from ..core.source import UnreadableSource, read_source
    from ..core.util import OutputError, write_atomic
    from .common import (
        EXIT_ERRORS,
        EXIT_INTERNAL,
        EXIT_OK,
        STDIN,
        STDIN_NAME,
        read_stdin,
        spec_files,
    )

    dry = args.check or args.diff
    status = EXIT_OK
    changed = same = failed = 0
    for path in spec_files(args.paths):
        name = STDIN_NAME if path == STDIN else path
        try:
            text = read_stdin() if path == STDIN else read_source(path)
        except (OSError, ValueError, UnreadableSource) as e:
            diag, shown = unreadable(name, e)
            print(render_all([diag], {name: shown} if shown else {}), file=sys.stderr)
            failed += 1
            status = max(status, EXIT_ERRORS)
            continue
        try:
            new = format_text(text, name)
        except SpecError as e:
            print(e.render(), file=sys.stderr)
            failed += 1
            status = max(status, EXIT_ERRORS)
            continue
        except FormatError as e:
            print(f"nnspec: internal error: {e}", file=sys.stderr)
            failed += 1
            status = EXIT_INTERNAL
            continue
        if new == text:
            same += 1
        else:
            changed += 1
        if dry:
            if new != text:
                sys.stdout.write(_diff(text, new, name))
                if args.check:
                    status = max(status, EXIT_ERRORS)
        elif path == STDIN:
            sys.stdout.write(new)
        elif new != text:
            try:
                write_atomic(path, new)
            except OutputError as e:
                print(f"nnspec: error: {e}", file=sys.stderr)
                failed += 1
                status = max(status, EXIT_ERRORS)
    if not args.quiet:
        verb = "would reformat" if dry else "reformatted"
        parts = [f"{verb} {changed} file{'s' if changed != 1 else ''}",
                 f"{same} unchanged"]
        if failed:
            parts.append(f"{failed} not formatted (errors)")
        print("nnspec fmt: " + ", ".join(parts), file=sys.stderr)
    return status
