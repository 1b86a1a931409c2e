"""The document's outline and inline types: :func:`symbols` (its models, blocks, constants
and train sections, with their inputs, parameters and named values) and
:func:`inlay_hints` (each body line's inferred shape at its end, as a type hint, on lines
whose shape was inferred and that carry no error and no written annotation). Positions
are nnspec's (:class:`~nnspec.tools.lsp.analysis.Loc`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .analysis import Analysis, Loc, _loc

#: Distinct shapes written in one hint (a block's line has one per call).
MAX_HINT_SHAPES = 2

_HEAD = re.compile(r"^\s*(model|block|const|train)\s+([A-Za-z_]\w*)")


@dataclass
class Symbol:
    """An outline entry: ``kind`` is "model", "block", "const", "train", "input",
    "parameter" or "value"; ``loc`` its whole extent, ``name_loc`` its name."""

    name: str
    kind: str
    detail: str
    loc: Loc
    name_loc: Loc
    children: list[Symbol] = field(default_factory=list)


@dataclass
class Hint:
    """An inline type: ``label`` shown after the position, ``tooltip`` when hovered."""

    line: int
    char: int
    label: str
    tooltip: str = ""


def _module(an: Analysis):
    """The document's syntax tree (parsed once per analysis), None when it does not parse."""
    if an._module is None:
        from ...frontends.nn.parse import parse_recover

        try:
            an._module = parse_recover(an.text, an.path)[0] or False
        except Exception:  # a parser bug must not take the outline down
            an._module = False
    return an._module or None


def _code(text: str) -> str:
    """A line without its comment and trailing blanks (no string holds a ``#`` here)."""
    out, in_str = [], False
    for ch in text:
        if ch == '"':
            in_str = not in_str
        elif ch == "#" and not in_str:
            break
        out.append(ch)
    return "".join(out).rstrip()


def _extent(an: Analysis, head0: int, last0: int) -> Loc:
    """From the header line ``head0`` to the ``}`` that closes the body whose last
    statement ends on ``last0`` (the header line itself when none is found)."""
    lines = an.lines
    start = len(lines[head0]) - len(lines[head0].lstrip()) if head0 < len(lines) else 0
    for i in range(max(last0, head0), len(lines)):
        code = _code(lines[i])
        if "}" in code and (i > head0 or code.rstrip().endswith("}")):
            return Loc(an.path, head0, start, i, code.rindex("}") + 1)
    end = len(_code(lines[head0])) if head0 < len(lines) else 0
    return Loc(an.path, head0, start, head0, end)


def _header_detail(an: Analysis, name_span) -> str:
    text = _code(an.lines[name_span.line - 1]) if name_span.line <= len(an.lines) else ""
    rest = text[name_span.end_col - 1:]
    return rest.split("{", 1)[0].strip()


def _body_children(an: Analysis, body) -> list[Symbol]:
    from .lookup import _name_loc as name_at

    out: list[Symbol] = []
    seen: set[str] = set()
    for st in body:
        if st.kind != "assign":
            continue
        targets = st.target if isinstance(st.target, list) else [st.target]
        for t in targets:
            if t in seen or t == "_":
                continue
            seen.add(t)
            out.append(Symbol(t, "value", "", _loc(st.span), name_at(an, st.span, t)))
    return out


def symbols(an: Analysis) -> list[Symbol]:
    """The document's models, blocks, constants and train sections, in the order written:
    a model with its inputs and named values, a block with its parameters and named values.
    When the text does not parse at all, the lines that start one of them."""
    from ...frontends.nn import syntax as S

    module = _module(an)
    if module is None:
        return _symbols_by_line(an)
    out = []
    for it in module.items:
        if isinstance(it, (S.Model, S.Block)):
            last = max([st.span.end_line for st in it.body] + [it.span.line]) - 1
            loc = _extent(an, it.span.line - 1, last)
            if isinstance(it, S.Model):
                kids = [Symbol(i.name, "input", _span_text(an, i.span).split(":", 1)[-1].strip(),
                               _loc(i.span), _name_loc(i.span, i.name)) for i in it.inputs]
            else:
                kids = [Symbol(p.name, "parameter", "", _loc(p.span), _name_loc(p.span, p.name))
                        for p in it.params]
            kind = "model" if isinstance(it, S.Model) else "block"
            out.append(Symbol(it.name, kind, _header_detail(an, it.span), loc, _loc(it.span),
                              kids + _body_children(an, it.body)))
        elif isinstance(it, S.Const):
            line = it.span.line - 1
            code = _code(an.lines[line]) if line < len(an.lines) else ""
            detail = code.split("=", 1)[1].strip() if "=" in code else ""
            start = len(code) - len(code.lstrip())
            out.append(Symbol(it.name, "const", detail,
                              Loc(an.path, line, start, line, max(len(code), start + 1)),
                              _loc(it.span)))
        elif isinstance(it, S.Train):
            last = max([s.span.end_line for s in it.settings] +
                       [sp.end_line for _, sp in it.loss] + [it.span.line]) - 1
            out.append(Symbol(it.model, "train", _header_detail(an, it.name_span) or "",
                              _extent(an, it.span.line - 1, last), _loc(it.name_span)))
    return out


def _span_text(an: Analysis, span) -> str:
    if span.line != span.end_line or span.line > len(an.lines):
        return ""
    return an.lines[span.line - 1][span.col - 1:span.end_col - 1]


def _name_loc(span, name: str) -> Loc:
    return Loc(span.file, span.line - 1, span.col - 1, span.line - 1, span.col - 1 + len(name))


def _symbols_by_line(an: Analysis) -> list[Symbol]:
    out = []
    for i, text in enumerate(an.lines):
        m = _HEAD.match(text)
        if m is None:
            continue
        name = Loc(an.path, i, m.start(2), i, m.end(2))
        out.append(Symbol(m.group(2), m.group(1), "", Loc(an.path, i, m.start(1), i,
                                                          len(_code(text))), name))
    return out


# ---- inlay hints ---------------------------------------------------------------------

def _instance_value(model, rows: list):
    """The row whose output is the value of one application of a stage (a layer, its
    repetitions, or a block call with every layer it expanded to): the one no other row of
    the application reads; among several, the one read after it (or the model's output)."""
    if len(rows) == 1:
        return rows[0]
    ids = {r.node.id for r in rows}
    read = {i for r in rows for i in r.node.inputs}
    last = [r for r in rows if r.node.id not in read]
    if len(last) > 1:
        outside = {model.output}
        outside.update(i for n in model.nodes if n.id not in ids for i in n.inputs)
        used = [r for r in last if r.node.id in outside]
        if len(used) == 1:
            return used[0]
    return (last or rows)[-1]


def _stage_shapes(an: Analysis) -> dict[tuple, list[str]]:
    """Every stage of the document that was inferred (its span, 1-based) -> the distinct
    shapes of its value, one per application (a line of a block has one per call)."""
    if an._shapes is not None:
        return an._shapes
    out: dict[tuple, list[str]] = {}
    prog = an.spec.program
    for m in prog.models if prog is not None else []:
        try:
            rows = an.spec.layers(m.name)
        except KeyError:
            continue
        apps: dict[tuple, list] = {}
        for r in rows:
            node = r.node
            chain = tuple(tuple(c) for c in node.called_from)
            if node.span and an.same_file(node.span[0]):
                apps.setdefault((tuple(node.span[1:]), chain), []).append(r)
            for j, c in enumerate(chain):
                if an.same_file(c[1]):
                    apps.setdefault((tuple(c[2:]), chain[j:]), []).append(r)
        for (span, _), got in apps.items():
            shown = str(_instance_value(m, got).output)
            have = out.setdefault(span, [])
            if shown not in have:
                have.append(shown)
    an._shapes = out
    return out


def _error_lines(an: Analysis) -> set[int]:
    from .analysis import problems

    bad: set[int] = set()
    for p in problems(an):
        if p.severity == "error":
            bad.update(range(p.loc.line, p.loc.end_line + 1))
    return bad


def inlay_hints(an: Analysis, first: int = 0, last: int | None = None) -> list[Hint]:
    """``: shape`` at the end of each line of a body between lines ``first`` and ``last``
    (0-based, inclusive): the value of the line's last stage. None on a line whose last
    stage was not inferred, a line with an error, or a line with its shape annotation."""
    if an.scope is None or an.spec.program is None:
        return []
    last = len(an.lines) if last is None else last
    shapes = _stage_shapes(an)
    if not shapes:
        return []
    bad = _error_lines(an)
    out = []
    items = list(an.scope.blocks.values()) + list(an.scope.models.values())
    for item in items:
        if not item.body or not an.same_file(item.span.file) or item.name in an.scope.broken:
            continue
        for st in item.body:
            if st.span.end_line - 1 < first or st.span.line - 1 > last or st.more:
                continue
            ends: dict[int, object] = {}
            for s in st.pipeline.stages:
                cur = ends.get(s.span.end_line)
                if cur is None or s.span.end_col > cur.span.end_col:
                    ends[s.span.end_line] = s
            annot = st.annot.span.line if st.annot is not None else None
            for line, s in sorted(ends.items()):
                got = shapes.get((s.span.line, s.span.col, s.span.end_line, s.span.end_col))
                if not got or line == annot or line - 1 in bad or not first <= line - 1 <= last:
                    continue
                label = " | ".join(got[:MAX_HINT_SHAPES]) + (
                    " | …" if len(got) > MAX_HINT_SHAPES else "")
                tip = "" if len(got) == 1 else f"{len(got)} shapes, one per call:\n" + "\n".join(
                    f"- {g}" for g in got)
                out.append(Hint(line - 1, s.span.end_col - 1, f": {label}", tip))
    out.sort(key=lambda h: (h.line, h.char))
    return out
