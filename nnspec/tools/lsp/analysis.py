"""The language server's analysis of one document, which needs no LSP library:
:func:`analyze` lowers and shape-checks the text as ``nnspec check`` does (reading the
editor's unsaved text of other open files before the disk's when a ``use`` reaches them)
into an :class:`Analysis`, and :func:`problems` places its diagnostics in the document,
those of another file at the call or ``use`` that reached it. Positions are nnspec's
(:class:`Loc`: 0-based lines and columns in code points).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

#: Diagnostics published per document (``check --format json`` lists up to 10,000).
MAX_DIAGNOSTICS = 1000
_CALLED_AT = re.compile(r"^in block \S+, called at (.+):(\d+):(\d+)$")


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
    signature: str = ""  # shown right after the label: a kind's arguments, a block's params


def _loader_class():
    from ...frontends.nn.lower import Loader

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
    _module: object = field(default=None, repr=False)  # syntax tree; False: does not parse
    _shapes: dict | None = field(default=None, repr=False)
    _usage: dict | None = field(default=None, repr=False)

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
            from ...core.source import read_source

            try:
                return read_source(file).split("\n")
            except Exception:  # gone since: positions are then taken as they are
                return []
        return src.lines


def analyze(text: str, path: str, overlays: dict[str, str] | None = None) -> Analysis:
    """Lower and shape-check ``text`` as the file ``path``; ``overlays`` maps absolute paths
    to the text of files open in the editor, read instead of the disk's."""
    global _LOADER
    from ...api import _finish
    from ...core.source import Source
    from ...core.util import gc_paused
    from ...frontends.nn.lower import lower_scope

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
    from ...core.source import Span

    out = []
    # warnings (a value never used) only where they are: this document's own
    mine = [w for w in an.spec.warnings if w.span is not None and an.same_file(w.span.file)]
    for d in [*an.spec.diagnostics, *mine][:MAX_DIAGNOSTICS]:
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
