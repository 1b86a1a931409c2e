"""`nnspec lsp`: a Language Server over stdio (diagnostics, hover, definitions, completion).

The server is a thin pygls layer over the analysis below, which needs no LSP library: a
document is lowered and shape-checked as ``nnspec check`` does it (the same diagnostics),
with the unsaved text of every other open document preferred over the disk when a ``use``
reaches it. Positions here are nnspec's: lines and columns counted in code points, lines
split at "\\n" only (as the parser counts them); the server converts them to and from the
client's units (UTF-16 unless the client negotiated another encoding).

pygls is imported only when the server starts, so that the command line's parser (which
imports this module) stays as cheap as ``nnspec check`` needs it to be.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

EXIT_USAGE = 2
MISSING = "this needs the lsp extra: pip install 'nnspec[lsp]'"
#: Diagnostics published per document (``check --format json`` lists up to 10,000).
MAX_DIAGNOSTICS = 1000
#: Distinct expansions shown when hovering over a line of a block used several times.
MAX_EXPANSIONS = 8

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CALLED_AT = re.compile(r"^in block \S+, called at (.+):(\d+):(\d+)$")
_USE = re.compile(r'^\s*use\s+"([^"]*)"')
_ASSIGN = re.compile(r"^\s*[A-Za-z_]\w*(\s*,\s*[A-Za-z_]\w*)*\s*=(?!=)")
_TOP_KEYWORDS = ("model", "block", "const", "use", "check", "train")


def add_arguments(p) -> None:
    p.add_argument("--stdio", action="store_true",
                   help="talk LSP over standard input and output (the default and only "
                        "transport; accepted because editors pass it)")
    p.add_argument("--debounce", type=float, default=0.0, metavar="MS",
                   help="wait this many milliseconds after an edit before re-checking the "
                        "document (default 0: every edit is checked, a check of an older "
                        "version that is still waiting is dropped)")


def run(args) -> int:
    import sys

    if not (args.debounce >= 0 and args.debounce <= 60_000):  # also refuses NaN
        print("nnspec: error: --debounce takes milliseconds from 0 to 60000", file=sys.stderr)
        return EXIT_USAGE
    try:
        import lsprotocol.types  # noqa: F401
        import pygls.lsp.server  # noqa: F401
    except ImportError:
        print(f"nnspec: error: {MISSING}", file=sys.stderr)
        return EXIT_USAGE
    if not getattr(args, "debug", False):
        _one_line_logs()
    _build_server(args.debounce / 1000.0).start_io()
    return 0


def _one_line_logs() -> None:
    """pygls logs what it cannot handle (a message that is not JSON, say) with a traceback
    on stderr, the editor's log of the server: one line each instead (--debug keeps them)."""
    import logging
    import sys

    class OneLine(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            exc = record.exc_info[1] if record.exc_info else None
            why = f": {type(exc).__name__}: {exc}" if exc is not None else ""
            return f"nnspec lsp: {record.levelname.lower()}: {record.getMessage()}{why}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine())
    log = logging.getLogger("pygls")
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False


# ---- analysis (no LSP library) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Loc:
    """A region of a file in nnspec's units, 0-based, end exclusive."""

    file: str
    line: int
    char: int
    end_line: int
    end_char: int


@dataclass
class Problem:
    """A diagnostic placed in the analysed document, with where it really is if elsewhere."""

    loc: Loc
    code: str
    severity: str
    message: str
    related: Loc | None = None


@dataclass
class Item:
    """A completion item: ``kind`` is "layer", "block", "argument" or "keyword"."""

    label: str
    kind: str
    detail: str = ""
    doc: str = ""
    insert: str | None = None


def _loader_class():
    from ..frontends.nn.lower import Loader

    class OverlayLoader(Loader):
        """A Loader that reads the editor's unsaved text of a file before the disk's, and
        remembers where each file was imported (to place errors inside it)."""

        def __init__(self, overlays: dict[str, str]):
            super().__init__()
            self.overlays = overlays
            self.imported_at: dict[str, object] = {}

        def load_file(self, path, span=None):
            key = os.path.abspath(path)
            if span is not None:
                self.imported_at.setdefault(key, span)
            text = self.overlays.get(key)
            if text is None or key in self.scopes or not path.endswith(".nn"):
                return super().load_file(path, span)
            return self.load_text(text, path)

        def _resolve_use(self, use, here):
            if use.path.endswith(".nn") and not os.path.isabs(use.path):
                cand = os.path.join(os.path.dirname(here), use.path)
                if os.path.abspath(cand) in self.overlays:  # open, perhaps not saved yet
                    return os.path.relpath(cand)
            return super()._resolve_use(use, here)

    return OverlayLoader


_LOADER = None


@dataclass
class Analysis:
    """One document, lowered and shape-checked."""

    path: str
    text: str
    spec: object  # nnspec.api.Spec
    loader: object  # OverlayLoader
    scope: object | None  # the document's FileScope, None when nothing could be parsed
    lines: list[str] = field(default_factory=list)
    _abs: dict = field(default_factory=dict, repr=False)
    _groups: list | None = field(default=None, repr=False)

    def same_file(self, file: str) -> bool:
        got = self._abs.get(file)
        if got is None:
            got = self._abs[file] = os.path.abspath(file) == os.path.abspath(self.path)
        return got

    @property
    def files(self) -> set[str]:
        """Every file this analysis read (absolute paths): a change to one re-checks it."""
        return {os.path.abspath(p) for p in self.loader.sources}

    def file_lines(self, file: str) -> list[str]:
        if self.same_file(file):
            return self.lines
        src = self.loader.sources.get(file)
        if src is None:
            from ..core.source import read_source

            try:
                return read_source(file).split("\n")
            except Exception:  # gone since: positions are then taken as they are
                return []
        return src.lines


def analyze(text: str, path: str, overlays: dict[str, str] | None = None) -> Analysis:
    """Lower and shape-check ``text`` as the file ``path``; ``overlays`` maps absolute paths
    to the text of files open in the editor, read instead of the disk's."""
    global _LOADER
    from ..api import _finish
    from ..core.source import Source
    from ..core.util import gc_paused
    from ..frontends.nn.lower import lower_scope

    if _LOADER is None:
        _LOADER = _loader_class()
    loader = _LOADER({k: v for k, v in (overlays or {}).items()
                      if k != os.path.abspath(path)})
    with gc_paused():
        scope = loader.load_text(text, path)
        prog = lower_scope(loader, scope) if scope is not None else None
        spec = _finish(prog, loader)
    return Analysis(path, text, spec, loader, scope, Source(path, text).lines)


def _loc(span) -> Loc:
    return Loc(span.file, span.line - 1, span.col - 1, span.end_line - 1, span.end_col - 1)


def _line_end(an: Analysis, line0: int, char0: int) -> Loc:
    text = an.lines[line0] if 0 <= line0 < len(an.lines) else ""
    code = text.split("#", 1)[0].rstrip()
    return Loc(an.path, line0, char0, line0, max(len(code), char0 + 1))


def problems(an: Analysis) -> list[Problem]:
    """The document's diagnostics. One located in another file (a block of a used file that
    does not fit how it is called, a syntax error in a used file) is placed at the call in
    this document, or else at the ``use`` that brought that file in."""
    from ..core.source import Span

    out = []
    for d in an.spec.diagnostics[:MAX_DIAGNOSTICS]:
        message = d.message
        extra = list(d.notes) + ([f"hint: {d.hint}"] if d.hint else [])
        related = None
        if d.span is None:
            loc = Loc(an.path, 0, 0, 0, 0)
        elif an.same_file(d.span.file):
            loc = _loc(d.span)
        else:
            related = _loc(d.span)
            message = f"{os.path.basename(d.span.file)}:{d.span.line}:{d.span.col}: {message}"
            loc = None
            for note in reversed(d.notes):
                m = _CALLED_AT.match(note)
                if m and an.same_file(m.group(1)):
                    loc = _line_end(an, int(m.group(2)) - 1, int(m.group(3)) - 1)
                    break
            if loc is None:
                span = an.loader.imported_at.get(os.path.abspath(d.span.file))
                seen = set()
                while isinstance(span, Span) and not an.same_file(span.file) \
                        and span.file not in seen:
                    seen.add(span.file)
                    span = an.loader.imported_at.get(os.path.abspath(span.file))
                loc = _loc(span) if isinstance(span, Span) else Loc(an.path, 0, 0, 0, 0)
        if extra:
            message += "\n" + "\n".join(extra)
        out.append(Problem(loc, d.code, d.severity, message, related))
    return out


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
    from ..core.dims import Dim

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
                params = _n(an.spec.param_count(m.name))
            except KeyError:
                params = "?"
            return (f"**model {m.name}**({ins}) → `{t.output()}`\n\n"
                    f"{_n(len(m.nodes))} layers · {params} parameters")
    return None


def _word_at(text: str, char0: int) -> tuple[str, int] | None:
    for m in _WORD.finditer(text):
        if m.start() <= char0 <= m.end():
            return m.group(), m.start()
    return None


def _word_text(an: Analysis, line0: int, char0: int) -> str | None:
    from ..layers import REGISTRY

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
    from ..frontends.nn.syntax import Num, Ref

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


def completions(an: Analysis | None, before: str) -> list[Item]:
    """What may be typed at the end of ``before`` (the line up to the cursor): a layer kind
    or block where a stage starts, a layer's keyword arguments after its name, a block's
    parameters inside its call, the top-level keywords at the start of a line."""
    from ..layers import REGISTRY

    code, depth, opens, stage_at = _scan(before)
    if code is None:
        return []  # in a comment or a string
    scope = an.scope if an is not None else None
    if depth:  # inside a call: the called layer's or block's arguments
        head = _WORD.findall(code[:opens[-1]][-80:])
        called = head[-1] if head and code[:opens[-1]].endswith(head[-1]) else None
        if called in REGISTRY:
            return _argument_items(REGISTRY[called], code[opens[-1] + 1:])
        if scope is not None and called in scope.blocks:
            blk = scope.blocks[called]
            return [Item(p.name + "=", "argument", f"{called} parameter",
                         insert=p.name + "=") for p in blk.params[1:]]
        return []
    stage = code[stage_at:]
    if stage_at == 0:
        m = _ASSIGN.match(stage)
        if m:
            stage = stage[m.end():]
        stage = re.sub(r"^\s*return\b", "", stage)
    word = re.fullmatch(r"\s*([A-Za-z_]\w*)?", stage)
    if word is not None:
        if stage_at == 0 and not before[:1].isspace() and not _ASSIGN.match(code):
            return [Item(k, "keyword") for k in _TOP_KEYWORDS]
        items = []
        for key, kind in REGISTRY.items():
            same = f" (the same as {kind.name})" if key != kind.name else ""
            items.append(Item(key, "layer", kind.summary.split("\n")[0] + same))
        if scope is not None:
            for name, blk in scope.blocks.items():
                items.append(Item(name, "block", f"block {_signature(blk)}"))
        return items
    m = re.match(r"\s*([A-Za-z_]\w*)\s+(.*)$", stage, re.S)
    if m is None or m.group(1) not in REGISTRY:
        return []
    rest = m.group(2)
    if re.search(r"[=\w.]$", rest) and re.search(r"=\S*$", rest):
        return []  # a value is being typed
    return _argument_items(REGISTRY[m.group(1)], rest)


def _scan(before: str):
    """The line's code up to the cursor (None in a comment or string), the bracket depth
    there, where the open brackets are, and where the current stage starts."""
    depth, opens, stage_at, in_str = 0, [], 0, False
    for i, ch in enumerate(before):
        if in_str:
            in_str = ch != '"'
        elif ch == '"':
            in_str = True
        elif ch == "#":
            return None, 0, [], 0
        elif ch in "([":
            depth += 1
            opens.append(i)
        elif ch in ")]" and depth:
            depth -= 1
            opens.pop()
        elif ch == "|" and depth == 0:
            stage_at = i + 1
    if in_str:
        return None, 0, [], 0
    return before, depth, opens, stage_at


def _argument_items(kind, rest: str) -> list[Item]:
    """The kind's keyword arguments not given yet in ``rest``: each field as ``name=``
    (unless given already, by key or by position), its long names (``kernel_size=``), and a
    flag that is off by default also as its bare word (``ceil``). A field named with a
    trailing underscore (``global_``, a Python keyword) is offered by its language name."""
    from pydantic_core import PydanticUndefined

    atoms = _atoms(rest)
    keyed = {a.split("=", 1)[0].strip() for a in atoms if "=" in a}
    given = keyed | {kind.synonyms.get(k, k) for k in keyed}
    fields = kind.fields()
    flags = {w for w in atoms if _WORD.fullmatch(w)
             and fields.get(kind.synonyms.get(w, w)) is not None
             and fields[kind.synonyms.get(w, w)].annotation is bool}
    given |= {kind.synonyms.get(w, w) for w in flags}
    npos = sum(1 for a in atoms if "=" not in a and a not in flags)
    given |= set(kind.positional[:npos])
    longs: dict[str, list[str]] = {}
    for long, short in kind.synonyms.items():
        longs.setdefault(short, []).append(long)
    items = []
    for name, f in fields.items():
        if name in given:
            continue
        names = longs.get(name, [])
        shown = names[0] if name.endswith("_") and names else name
        names = [n for n in names if n != shown]
        default = f.default
        what = "required" if default is PydanticUndefined else f"default {_plain(default)}"
        if name in kind.tensor_args:
            what = "a named tensor"
        also = f"; also {', '.join(n + '=' for n in names)}" if names else ""
        items.append(Item(shown + "=", "argument", f"{kind.name}: {what}{also}",
                          kind.summary, shown + "="))
        for long in names:
            items.append(Item(long + "=", "argument", f"{kind.name}: the same as {shown}=",
                              kind.summary, long + "="))
        if f.annotation is bool and default is False:
            items.append(Item(shown, "argument", f"{kind.name}: flag ({shown}=true)",
                              kind.summary))
    return items


def _atoms(rest: str) -> list[str]:
    """The arguments written so far: runs of text separated by blanks outside brackets
    (``k=(3, 3)`` is one), without the one being typed at the end."""
    out, cur, depth = [], "", 0
    for ch in rest:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(depth - 1, 0)
        if ch.isspace() and depth == 0:
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
    return out


def _plain(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


# ---- the server --------------------------------------------------------------


def _build_server(debounce: float):
    import asyncio

    from lsprotocol import types as T
    from pygls.lsp.server import LanguageServer
    from pygls.uris import from_fs_path

    from .. import __version__

    server = LanguageServer("nnspec", __version__,
                            text_document_sync_kind=T.TextDocumentSyncKind.Incremental)
    analyses: dict[str, Analysis] = {}
    pending: dict[str, asyncio.TimerHandle] = {}
    severity = {"error": T.DiagnosticSeverity.Error, "warning": T.DiagnosticSeverity.Warning}
    item_kind = {"layer": T.CompletionItemKind.Function, "block": T.CompletionItemKind.Class,
                 "argument": T.CompletionItemKind.Property,
                 "keyword": T.CompletionItemKind.Keyword}

    def doc_path(doc) -> str:
        return doc.path if doc.uri.startswith("file:") else doc.uri

    def codec():
        return server.workspace.position_codec

    def to_pos(lines: list[str], line0: int, char0: int):
        text = lines[line0] if 0 <= line0 < len(lines) else ""
        return T.Position(line=max(line0, 0),
                          character=codec().client_num_units(text[:max(char0, 0)]))

    def to_range(an: Analysis, loc: Loc):
        lines = an.file_lines(loc.file)
        return T.Range(start=to_pos(lines, loc.line, loc.char),
                       end=to_pos(lines, loc.end_line, loc.end_char))

    def to_location(an: Analysis, loc: Loc, here: str):
        """``here`` is the analysed document's URI (which need not name a file)."""
        uri = here if an.same_file(loc.file) else (
            from_fs_path(os.path.abspath(loc.file)) or loc.file)
        return T.Location(uri=uri, range=to_range(an, loc))

    def from_pos(an: Analysis, pos) -> tuple[int, int]:
        if pos.line >= len(an.lines):
            return pos.line, 0
        got = codec().position_from_client_units(
            an.lines, T.Position(line=pos.line, character=pos.character))
        return got.line, got.character

    def check(uri: str) -> Analysis | None:
        pending.pop(uri, None)
        doc = server.workspace.text_documents.get(uri)
        if doc is None:
            return None
        here = os.path.abspath(doc_path(doc))
        overlays = {os.path.abspath(doc_path(d)): d.source
                    for u, d in server.workspace.text_documents.items() if u != uri}
        overlays.pop(here, None)
        try:
            an = analyze(doc.source, doc_path(doc), overlays)
            diags = []
            for p in problems(an):
                related = None
                if p.related is not None:
                    related = [T.DiagnosticRelatedInformation(
                        location=to_location(an, p.related, uri), message="the error is here")]
                diags.append(T.Diagnostic(
                    range=to_range(an, p.loc), message=p.message, code=p.code,
                    source="nnspec", severity=severity.get(p.severity,
                                                           T.DiagnosticSeverity.Information),
                    related_information=related))
        except Exception as e:  # never let a bug take the editor's server down
            an = None
            diags = [T.Diagnostic(
                range=T.Range(start=T.Position(line=0, character=0),
                              end=T.Position(line=0, character=0)),
                message=f"internal error: {type(e).__name__}: {e} (this is a bug in nnspec)",
                source="nnspec", severity=T.DiagnosticSeverity.Error)]
        if an is not None:
            analyses[uri] = an
        server.text_document_publish_diagnostics(T.PublishDiagnosticsParams(
            uri=uri, diagnostics=diags, version=doc.version))
        return an

    def schedule(uri: str, delay: float) -> None:
        old = pending.pop(uri, None)
        if old is not None:
            old.cancel()
        pending[uri] = asyncio.get_running_loop().call_later(delay, check, uri)

    def changed(uri: str, delay: float) -> None:
        """Re-check the document, and every open one that read it through ``use``."""
        schedule(uri, delay)
        doc = server.workspace.text_documents.get(uri)
        here = os.path.abspath(doc_path(doc)) if doc is not None else None
        for other, an in list(analyses.items()):
            if other != uri and here in an.files:
                schedule(other, delay)

    def current(uri: str) -> Analysis | None:
        """The analysis of the document's current text (checked now if an edit waits)."""
        if uri in pending or uri not in analyses:
            handle = pending.pop(uri, None)
            if handle is not None:
                handle.cancel()
            return check(uri) or analyses.get(uri)
        return analyses[uri]

    @server.feature(T.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls, params: T.DidOpenTextDocumentParams):
        changed(params.text_document.uri, 0.0)

    @server.feature(T.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls, params: T.DidChangeTextDocumentParams):
        changed(params.text_document.uri, debounce)

    @server.feature(T.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls, params: T.DidSaveTextDocumentParams):
        changed(params.text_document.uri, 0.0)

    @server.feature(T.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls, params: T.DidCloseTextDocumentParams):
        uri = params.text_document.uri
        handle = pending.pop(uri, None)
        if handle is not None:
            handle.cancel()
        an = analyses.pop(uri, None)
        server.text_document_publish_diagnostics(
            T.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        if an is not None:  # those that used it read the disk's text now
            here = os.path.abspath(an.path)
            for other, o in list(analyses.items()):
                if here in o.files:
                    schedule(other, 0.0)

    @server.feature(T.TEXT_DOCUMENT_HOVER)
    def on_hover(ls, params: T.HoverParams):
        an = current(params.text_document.uri)
        if an is None:
            return None
        text = hover(an, *from_pos(an, params.position))
        if text is None:
            return None
        return T.Hover(contents=T.MarkupContent(kind=T.MarkupKind.Markdown, value=text))

    @server.feature(T.TEXT_DOCUMENT_DEFINITION)
    def on_definition(ls, params: T.DefinitionParams):
        an = current(params.text_document.uri)
        if an is None:
            return None
        loc = definition(an, *from_pos(an, params.position))
        return [to_location(an, loc, params.text_document.uri)] if loc is not None else None

    @server.feature(T.TEXT_DOCUMENT_COMPLETION,
                    T.CompletionOptions(trigger_characters=[" ", "|", "("]))
    def on_completion(ls, params: T.CompletionParams):
        uri = params.text_document.uri
        doc = server.workspace.text_documents.get(uri)
        if doc is None:
            return None
        from ..core.source import Source

        lines = Source(doc_path(doc), doc.source).lines
        pos = params.position
        if pos.line >= len(lines):
            before = ""
        else:
            got = codec().position_from_client_units(
                lines, T.Position(line=pos.line, character=pos.character))
            before = lines[pos.line][:got.character]
        # the last analysis is enough to know the blocks; no re-check per keystroke
        items = completions(analyses.get(uri), before)
        return T.CompletionList(is_incomplete=False, items=[
            T.CompletionItem(label=i.label, kind=item_kind[i.kind], detail=i.detail or None,
                             documentation=i.doc or None, insert_text=i.insert)
            for i in items])

    return server
