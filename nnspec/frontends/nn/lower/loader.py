"""Reading specs: the Loader reads a file or a text, follows its ``use`` statements (next to
the file, else in the bundled library; import cycles and files not named .nn are refused),
collects each file's constants, blocks and models into a FileScope (a file's own definition
shadows an imported one), applies the ``--const`` overrides to the spec's own constants and
notes them in the errors they may cause, and keeps the sources for error excerpts.

The files that ``use`` imports are parsed once per process: their syntax tree (which
lowering only reads) and parse errors are kept by path and text, so that checking several
specs that use the same library, or re-checking an edited spec, parses the library once."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from pathlib import Path

from ....core.diagnostics import Diagnostic, Failure, suggest, unreadable
from ....core.limits import MAX_NESTING
from ....core.source import Source, Span, UnreadableSource, read_source
from ....layers import REGISTRY
from ....stdlib import STDLIB
from .. import syntax as S
from ..nesting import nesting_errors, tainted_items
from ..parse import parse_recover
from .evaluate import Evaluator
from .values import POISON, FileScope


class Loader:
    """Reads files, follows ``use``, and owns the sources for error excerpts."""

    def __init__(self, consts: dict | None = None):
        self.sources: dict[str, Source] = {}
        self.scopes: dict[str, FileScope] = {}
        self.diags: list[Diagnostic] = []
        self.reported: set = set()  # (code, message, span) of the errors in diags
        self.warnings: list[Diagnostic] = []
        self.warned: set = set()  # (span, name) of the values warned about
        self._loading: list[str] = []
        # constants set from outside (--const): they replace the `const` statements of the
        # first file loaded, the spec itself; the files it uses keep theirs, so that a
        # library means the same in every spec that uses it
        self.overrides: dict = {}
        if consts:
            from ..overrides import check_values

            self.overrides = check_values(consts)
        # the spec's consts computed from overridden ones: name -> (their names, value)
        self.derived: dict[str, tuple] = {}

    def error(self, code, msg, span, notes=(), hint=None):
        self.diags.append(Diagnostic(code, msg, span, list(notes), hint))

    def load_text(self, text: str, path: str, cached: bool = False) -> FileScope | None:
        """Parse and collect one file's text; ``cached``: take its parse from (and keep it
        in) the process's cache of imported files."""
        self.sources[path] = Source(path, text if text.endswith("\n") else text + "\n")
        module, errors, tainted, consts, deep = _parsed(text, path, cached)
        self.diags.extend(errors)
        if module is None:
            return None
        for i, span in deep:
            self.error("E029", f"this is nested more than {MAX_NESTING} levels deep "
                       "(operators, brackets and calls)", span,
                       hint="split it into named constants or several statements")
            tainted.add(i)
        scope = FileScope(path)
        for name in consts:
            scope.consts[name] = POISON
        self.scopes[os.path.abspath(path)] = scope
        self._loading.append(os.path.abspath(path))
        try:
            # the lines of the syntax errors (blanked to parse the rest) and deep statements
            cuts = [d.span.line for d in errors if d.span] + [sp.line for _, sp in deep]
            self._collect(module, scope, tainted, cuts)
        finally:
            self._loading.pop()
        return scope

    def load_file(self, path: str, span: Span | None = None) -> FileScope | None:
        """Read and collect one file; ``span`` is the ``use`` that imports it, if any.

        An imported file must be named ``*.nn`` (and so must a link's target): anything
        else is refused unread, so that ``use`` cannot show another file's contents in error
        excerpts. Files that are not regular, too large or not UTF-8 are located errors
        (see source.read_source); a file named on the command line is located at 1:1.
        """
        key = os.path.abspath(path)
        if key in self.scopes:
            return self.scopes[key]
        try:
            target = os.path.realpath(path)
        except ValueError:  # a NUL in the name: read_source reports it
            target = path
        if span is not None and not (path.endswith(".nn") and target.endswith(".nn")):
            self.error("E007", f"use imports .nn spec files only, not {path}", span,
                       hint="a spec file's name ends with .nn (a link's target's too)")
            return None
        try:
            text = read_source(path)
        except (OSError, ValueError, UnreadableSource) as e:  # ValueError: a NUL in the name
            diag, shown = unreadable(path, e, span)
            self.diags.append(diag)
            if shown is not None:
                self.sources[path] = shown
            return None
        return self.load_text(text, path, cached=span is not None)

    def _resolve_use(self, use: S.Use, here: str) -> str | None:
        """The file a ``use`` names: next to the importing file, else in the bundled
        library. Something there that cannot be read as a spec (a folder, a name too long
        for the OS, not ``.nn``) is still returned, for load_file to refuse at the line."""
        cand = Path(here).parent / use.path
        local = os.path.relpath(cand) if not os.path.isabs(use.path) else str(cand)
        if not use.path.endswith(".nn"):
            return local
        try:
            os.stat(cand)
            if not _same_file(cand, here):
                return local
            # specs/gpt2.nn's `use "gpt2.nn"`: not itself, the bundled library's file
        except (FileNotFoundError, NotADirectoryError):
            pass
        except (OSError, ValueError):  # ValueError: a NUL in the name
            return local
        std = STDLIB / use.path
        try:
            if std.is_file():
                return str(std)
        except (OSError, ValueError):
            pass
        return None

    def _collect(self, module: S.Module, scope: FileScope, tainted: set = frozenset(),
                 cuts: list[int] = ()):
        ev = Evaluator(self, scope)
        for index, item in enumerate(module.items):
            if index in tainted:
                if isinstance(item, S.Const):
                    self._define(scope, "consts", item.name, POISON, item.span, item.span)
                elif isinstance(item, (S.Block, S.Model)):
                    table = "blocks" if isinstance(item, S.Block) else "models"
                    self._define(scope, table, item.name, item, item.span)
                    scope.broken.add(item.name)
                    nxt = module.items[index + 1] if index + 1 < len(module.items) else None
                    cut = isinstance(item, S.Model) and _cut(item, cuts, nxt)
                    if cut:
                        scope.partial[item.name] = cut
                continue
            if isinstance(item, S.Use):
                path = self._resolve_use(item, module.path)
                if path is None:
                    self.error("E002", f"cannot find {item.path!r} (looked next to "
                               f"{module.path} and in the standard library)", item.span)
                    continue
                if os.path.abspath(path) in self._loading:
                    chain = " -> ".join(os.path.basename(p) for p in self._loading)
                    self.error("E003", f"import cycle: {chain} -> {os.path.basename(path)}",
                               item.span)
                    continue
                other = self.load_file(path, item.span)
                if other is None:
                    continue
                for table in ("consts", "blocks", "models"):
                    for name, value in getattr(other, table).items():
                        self._define(scope, table, name, value, item.span,
                                     other.const_spans.get(name) if table == "consts" else None,
                                     imported=True)
                scope.broken |= {n for n in other.broken if n in scope.imported}
            elif isinstance(item, S.Const):
                own = len(self._loading) == 1  # a const of the spec itself
                if own and item.name in self.overrides:
                    value = self.overrides[item.name]
                else:
                    try:
                        value = ev.const(item.expr)
                    except Failure as f:
                        self.diags.append(f.diag)
                        value = POISON
                    if own and self.overrides:
                        self._track(item, value)
                self._define(scope, "consts", item.name, value, item.span, item.span)
            elif isinstance(item, S.Block):
                self._define(scope, "blocks", item.name, item, item.span)
            elif isinstance(item, S.Model):
                self._define(scope, "models", item.name, item, item.span)
            elif isinstance(item, S.Check):
                scope.__dict__.setdefault("checks", []).append(item)
            elif isinstance(item, S.Train):
                scope.__dict__.setdefault("trainings", []).append(item)

    def _track(self, item: S.Const, value):
        """Record which overridden constants ``item`` is computed from (``const ff = d * 4``
        follows ``--const d=64``), so that errors where it is used can say so."""
        roots: set = set()
        todo = [item.expr]
        while todo:
            e = todo.pop()
            if isinstance(e, S.Ref):
                if e.name in self.overrides:
                    roots.add(e.name)
                roots |= self.derived.get(e.name, (set(), None))[0]
            elif isinstance(e, (list, tuple)):
                todo.extend(e)
            elif hasattr(e, "__dataclass_fields__"):
                todo.extend(getattr(e, f) for f in e.__dataclass_fields__)
        if roots and value is not POISON:
            self.derived[item.name] = (roots, value)

    def check_overrides(self, scope: FileScope | None) -> None:
        """Raise ConstError unless every overridden name is a ``const`` of the spec itself
        (a misspelt name would otherwise change nothing, silently)."""
        if scope is None or not self.overrides:
            return  # the spec did not parse: its errors say why
        from ..overrides import ConstError

        own = [n for n in scope.consts if n not in scope.imported]
        name = os.path.basename(scope.path)
        for key in self.overrides:
            if key in own:
                continue
            if key in scope.consts:
                where = scope.const_spans.get(key)
                other = os.path.basename(where.file) if where else "a file it uses"
                raise ConstError(f"--const {key}: {key} is defined in {other}, which {name} "
                                 f"uses; only the constants of {name} itself can be set")
            best = suggest(key, own)
            mean = f" (did you mean {best}?)" if best else ""
            shown = ", ".join(own[:20]) + (", ..." if len(own) > 20 else "")
            have = f"its constants: {shown}" if own else "it defines no constants"
            raise ConstError(f"--const {key}: {name} has no constant {key}{mean}; {have}")

    def note_overrides(self, diags: list[Diagnostic]) -> None:
        """Add to each diagnostic a note on the overridden constants it may come from: the
        ones its span mentions (or consts computed from them), else all of them."""
        if not self.overrides:
            return
        import re

        from ..overrides import show

        flags = ", ".join(f"--const {k}={show(v)}" for k, v in self.overrides.items())
        names = set(self.overrides) | set(self.derived)
        for d in diags:
            text = self._span_text(d.span) if d.span is not None else ""
            # a whole word, and not a keyword argument's name (`conv 6 d=2`)
            found = [n for n in sorted(names) if re.search(
                rf"(?<![A-Za-z0-9_.]){re.escape(n)}(?![A-Za-z0-9_])(?!\s*=(?!=))", text)]
            notes = []
            for n in found:
                if n in self.overrides:
                    notes.append(f"{n} is {show(self.overrides[n])} here, from --const "
                                 f"{n}={show(self.overrides[n])}")
                else:
                    roots, value = self.derived[n]
                    flag = ", ".join(f"--const {r}={show(self.overrides[r])}"
                                     for r in sorted(roots))
                    notes.append(f"{n} is {show(value)} here, computed from {flag}")
            d.notes.extend(notes or [f"the spec was loaded with {flags}"])

    def _span_text(self, span: Span) -> str:
        src = self.sources.get(span.file)
        if src is None:
            return ""
        lines = [src.line_text(i) for i in range(span.line, span.end_line + 1)]
        if not lines:
            return ""
        if len(lines) == 1:
            return lines[0][span.col - 1:span.end_col - 1]
        return "\n".join([lines[0][span.col - 1:], *lines[1:-1], lines[-1][:span.end_col - 1]])

    def _define(self, scope: FileScope, table: str, name: str, value, span: Span,
                vspan: Span | None = None, imported: bool = False):
        """Bind a top-level name. A file's own definition shadows an imported one (in
        either order); two definitions of the same name in one file are an error."""
        for other in ("consts", "blocks", "models"):
            prev = getattr(scope, other).get(name)
            if prev is not None and prev is not value:
                if imported and name not in scope.imported:
                    return  # the file's own definition wins
                if not imported and name in scope.imported:
                    del getattr(scope, other)[name]
                    scope.imported.discard(name)
                    continue
                where = getattr(prev, "span", None) or scope.const_spans.get(name)
                self.error("E010", f"{name!r} is defined twice", span,
                           [f"first defined at {where}"] if where else [])
                return
        if name in REGISTRY:
            self.error("E011", f"{name!r} is a layer kind; choose another name", span)
            return
        getattr(scope, table)[name] = value
        if imported:
            scope.imported.add(name)
        if vspan is not None:
            scope.const_spans[name] = vspan


#: Imported files parsed in this process, (path, text) -> what _parse_text made of them; the
#: least recently used go first. A file's text is part of the key, so an edit is a miss.
_PARSED: OrderedDict = OrderedDict()
_PARSED_FILES = 32
_PARSED_CHARS = 256 * 1024  # a larger file is parsed each time (its tree is not kept)
_parsed_lock = threading.Lock()


def _parse_text(text: str, path: str):
    """(module, syntax errors, tainted items, consts with a blanked line, (item, span) of
    each statement nested too deep); the module is None when nothing could be parsed."""
    module, errors, blanked = parse_recover(text, path)
    if module is None:
        return None, errors, set(), [], []
    tainted, consts = tainted_items(module, text, blanked)
    return module, errors, tainted, consts, nesting_errors(module)


def _parsed(text: str, path: str, cached: bool):
    """_parse_text's result, from the cache when ``cached``; what a Loader may change (the
    errors' notes, the tainted set) is a copy of the cached entry."""
    if not cached or len(text) > _PARSED_CHARS:
        return _parse_text(text, path)
    key = (path, text)
    with _parsed_lock:
        got = _PARSED.get(key)
        if got is not None:
            _PARSED.move_to_end(key)
    if got is None:
        got = _parse_text(text, path)
        with _parsed_lock:
            _PARSED[key] = got
            while len(_PARSED) > _PARSED_FILES:
                _PARSED.popitem(last=False)
    module, errors, tainted, consts, deep = got
    return (module, [dataclasses.replace(d, notes=list(d.notes)) for d in errors],
            set(tainted), list(consts), list(deep))


def _same_file(a, b) -> bool:
    """Whether path a is the file b (False when b is no file: a spec given as text)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _cut(model: S.Model, cuts, nxt) -> S.Model | None:
    """A model with a syntax error (or a statement nested too deep), cut before its first
    such line: the statements before it are still checked (those after may need what the
    broken one defined), its declared output shape is not (its end is missing). None when
    the line is in its signature or outside it (a broken line above every item, say)."""
    end = getattr(getattr(nxt, "span", None), "line", None)
    line = min((n for n in cuts if n >= model.span.line and (end is None or n < end)),
               default=None)
    header = max([model.span.end_line, *(i.span.end_line for i in model.inputs),
                  *([model.out_shape.span.end_line] if model.out_shape else [])])
    if line is None or line <= header:
        return None
    body = [st for st in model.body if st.span.end_line < line]
    return S.Model(model.name, model.inputs, None, body, model.span, model.file)
