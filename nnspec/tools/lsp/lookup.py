"""What the editor asks about a position of an analysed document: :func:`hover` (the
inferred shape and parameters of the layer or block call there, a model's signature, a
layer kind's usage) and :func:`definition` (where the name there is defined, or the file
a ``use`` imports); with the word and block-signature helpers completion uses too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from .analysis import Analysis, Loc, _loc

#: Distinct expansions shown when hovering over a line of a block used several times.
MAX_EXPANSIONS = 8

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_USE = re.compile(r'^\s*use\s+"([^"]*)"')


@dataclass
class _Group:
    """Layers that one stretch of the document stands for: a layer, or a block call."""

    span: tuple  # (line, col, end_line, end_col), 1-based as nnspec's spans
    block: str | None  # the block called there, None for a layer
    rows: list = field(default_factory=list)


def _groups(an: Analysis) -> list[_Group]:
    """Every layer and block call of the document, with its rows (computed once)."""
    if an._groups is None:
        an._groups = _collect_groups(an)
    return an._groups


def _collect_groups(an: Analysis) -> list[_Group]:
    if an.spec.program is None:
        return []
    groups: dict = {}
    for m in an.spec.program.models:
        try:
            rows = an.spec.layers(m.name)
        except KeyError:  # the model was not inferred
            continue
        for r in rows:
            spans = [(None, r.node.span)] + [(c[0], c[1:]) for c in r.node.called_from]
            for block, s in spans:
                if s and an.same_file(s[0]):
                    key = (m.name if block else None, block, tuple(s[1:]))
                    g = groups.get(key)
                    if g is None:
                        g = groups[key] = _Group(tuple(s[1:]), block)
                    g.rows.append(r)
    return list(groups.values())


def _contains(span: tuple, line: int, col: int) -> bool:
    (l0, c0, l1, c1) = span
    return (l0, c0) <= (line, col) <= (l1, c1)


def hover(an: Analysis, line0: int, char0: int) -> str | None:
    """Markdown for the position: the inferred shape and parameters of the layer or block
    call there (every expansion of a line inside a block), a model's signature on its
    header, or a layer kind's usage."""
    line, col = line0 + 1, char0 + 1
    groups = _groups(an)
    inside = [g for g in groups if _contains(g.span, line, col)]
    if not inside:  # on an annotation, say: the line's last stage before the position
        on_line = [g for g in groups if g.span[0] <= line <= g.span[2]]
        before = [g for g in on_line if (g.span[2], g.span[3]) <= (line, col)]
        inside = [max(before, key=lambda g: (g.span[2], g.span[3]))] if before else on_line[:1]
    if inside:
        g = min(inside, key=lambda g: (g.span[2] - g.span[0], g.span[3] - g.span[1],
                                       g.block is None))
        return _group_text(g)
    return _header_text(an, line) or _word_text(an, line0, char0)


def _n(v: int) -> str:
    return f"{v:,}"


def _group_text(g: _Group) -> str:
    from ...core.dims import Dim

    rows = g.rows
    if g.block is not None:  # one call: its layers, repetitions included
        names = [r.name for r in rows]
        prefix = os.path.commonprefix([n + "." for n in names]).rsplit(".", 1)[0]
        params = sum(r.params for r in rows)
        macs = Dim.const(0)
        for r in rows:
            macs = macs + r.macs
        head = f"**{prefix}**: " if prefix else ""
        out = [f"{head}block `{g.block}` · {len(rows)} layers · {_n(params)} parameters",
               f"`{rows[0].inputs[0] if rows[0].inputs else '?'}` → `{rows[-1].output}`"]
        if str(macs) != "0":
            out.append(f"MACs: `{macs}`")
        return "\n\n".join(out)
    if len(rows) == 1:
        r = rows[0]
        ins = ", ".join(f"`{t}`" for t in r.inputs) or "none"
        detail = r.node.kind.detail(r.node.p, r.inputs)
        out = [f"**{r.name}**: `{r.kind}`{' ' + detail if detail else ''}",
               f"`{r.output}` · {_n(r.params)} parameters", f"input: {ins}"]
        if str(r.macs) != "0":
            out.append(f"MACs: `{r.macs}`")
        return "\n\n".join(out)
    seen: dict = {}
    for r in rows:
        key = (tuple(str(t) for t in r.inputs), str(r.output), r.params)
        seen.setdefault(key, []).append(r.name)
    lines = [f"`{rows[0].kind}` in {len(rows)} expansions:", ""]
    for (ins, out, params), names in list(seen.items())[:MAX_EXPANSIONS]:
        more = f" (+{len(names) - 1})" if len(names) > 1 else ""
        lines.append(f"- `{', '.join(ins)}` → `{out}` · {_n(params)} parameters · "
                     f"{names[0]}{more}")
    if len(seen) > MAX_EXPANSIONS:
        lines.append(f"- ... and {len(seen) - MAX_EXPANSIONS} more")
    return "\n".join(lines)


def _header_text(an: Analysis, line: int) -> str | None:
    prog = an.spec.program
    if prog is None:
        return None
    for m in prog.models:
        if m.span and an.same_file(m.span[0]) and m.span[1] == line and m.name in an.spec.results:
            t = an.spec.results[m.name]
            ins = ", ".join(f"{i.name}: {ty}" for i, ty in zip(m.inputs, t.inputs()))
            try:
                rows = an.spec.layers(m.name)
            except KeyError:
                rows = []
            params = _n(sum(r.params for r in rows))
            if t.output() is not None:
                return (f"**model {m.name}**({ins}) → `{t.output()}`\n\n"
                        f"{_n(len(m.nodes))} layers · {params} parameters")
            return _partial_text(an, m.name, ins, rows, len(m.nodes), params)
    return None


def _partial_text(an: Analysis, name: str, ins: str, rows: list, n_nodes: int,
                  params: str) -> str:
    """A model whose output was not inferred: its inputs, the output it declares, the
    layers inferred before the first error, and where its errors are."""
    syn = an.scope.models.get(name) if an.scope is not None else None
    declared = ""
    if syn is not None and syn.out_shape is not None:
        s = syn.out_shape.span
        if s.line == s.end_line and 0 < s.line <= len(an.lines):
            declared = f" (declared `{an.lines[s.line - 1][s.col - 1:s.end_col - 1]}`)"
    out = [f"**model {name}**({ins}) → output not inferred{declared}"]
    if rows:
        out.append(f"{_n(len(rows))} of {_n(n_nodes)} layers inferred · {params} parameters "
                   f"in them · the last, **{rows[-1].name}**: `{rows[-1].output}`")
    else:
        out.append("no layer inferred")
    if syn is not None and syn.body:
        first, last = syn.span.line, max(st.span.end_line for st in syn.body) + 1
        lines = sorted({d.span.line for d in an.spec.diagnostics
                        if d.severity == "error" and d.span is not None
                        and an.same_file(d.span.file) and first <= d.span.line <= last})
        if lines:
            out.append("errors on line" + ("s " if len(lines) > 1 else " ") +
                       ", ".join(str(n) for n in lines[:10]) + (", ..." if len(lines) > 10
                                                               else ""))
    return "\n\n".join(out)


def _word_at(text: str, char0: int) -> tuple[str, int] | None:
    for m in _WORD.finditer(text):
        if m.start() <= char0 <= m.end():
            return m.group(), m.start()
    return None


def _word_text(an: Analysis, line0: int, char0: int) -> str | None:
    from ...layers import REGISTRY

    got = _word_at(an.lines[line0] if 0 <= line0 < len(an.lines) else "", char0)
    if got is None:
        return None
    kind = REGISTRY.get(got[0])
    if kind is not None:
        return f"`{kind.name}`: {kind.summary}" if kind.summary else f"`{kind.name}`"
    blk = an.scope.blocks.get(got[0]) if an.scope is not None else None
    if blk is not None:
        return f"`block {_signature(blk)}` ({blk.span})"
    return None


def _signature(blk) -> str:
    from ...frontends.nn.syntax import Num, Ref

    def show(p) -> str:
        if p.default is None:
            return p.name
        d = p.default
        v = d.value if isinstance(d, Num) else d.name if isinstance(d, Ref) else "..."
        return f"{p.name}={v}"

    return f"{blk.name}({', '.join(show(p) for p in blk.params)})"


def definition(an: Analysis, line0: int, char0: int) -> Loc | None:
    """Where the name at the position is defined: a block, constant or model (in this file,
    a used one or the bundled library), a block's parameter, a value named earlier in the
    body; on a ``use`` line, the file it imports."""
    text = an.lines[line0] if 0 <= line0 < len(an.lines) else ""
    m = _USE.match(text)
    if m and m.start(1) <= char0 <= m.end(1):
        for key, span in an.loader.imported_at.items():
            if an.same_file(span.file) and span.line == line0 + 1:
                return Loc(_source_key(an, key), 0, 0, 0, 0)
        return None
    got = _word_at(text, char0)
    if got is None or an.scope is None:
        return None
    name = got[0]
    local = _local_definition(an, name, line0 + 1)
    if local is not None:
        return local
    scope = an.scope
    span = None
    for table in (scope.blocks, scope.models):
        if name in table:
            span = table[name].span
            break
    else:
        span = scope.const_spans.get(name)
    if span is None:
        return None
    return _name_loc(an, span, name)


def _source_key(an: Analysis, absolute: str) -> str:
    for p in an.loader.sources:
        if os.path.abspath(p) == absolute:
            return p
    return absolute


def _name_loc(an: Analysis, span, name: str) -> Loc:
    """The name's occurrence on the span's first line, else the span's start."""
    lines = an.file_lines(span.file)
    text = lines[span.line - 1] if 0 < span.line <= len(lines) else ""
    for m in _WORD.finditer(text):
        if m.group() == name and m.start() >= span.col - 1 - len(name):
            return Loc(span.file, span.line - 1, m.start(), span.line - 1, m.end())
    return Loc(span.file, span.line - 1, span.col - 1, span.line - 1, span.col - 1)


def _local_definition(an: Analysis, name: str, line: int) -> Loc | None:
    """A block's parameter or a value named before ``line`` in the block or model that
    encloses it."""
    scope = an.scope
    for item in list(scope.blocks.values()) + list(scope.models.values()):
        if not an.same_file(item.span.file) or not item.body:
            continue
        last = max(st.span.end_line for st in item.body)
        if not item.span.line <= line <= last + 1:
            continue
        found = None
        for st in item.body:
            targets = st.target if isinstance(st.target, list) else [st.target]
            if st.kind == "assign" and name in targets and st.span.line < line:
                found = _name_loc(an, st.span, name)
        if found is not None:
            return found
        for p in getattr(item, "params", None) or getattr(item, "inputs", []):
            if p.name == name:
                return _loc(p.span)
    return None
