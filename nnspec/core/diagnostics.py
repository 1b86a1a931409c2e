"""Diagnostics: errors with a code, a span, notes and a hint, collected per run."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from .record import Record
from .source import Source, Span, UnreadableSource

_NEW: list = object()  # type: ignore[assignment]  (a list field's default: a new list)


@dataclass(init=False, repr=False, eq=False)
class Diagnostic(Record):
    """One problem in a spec: ``file:line:col: error: message`` plus context. (A record
    class, see core/record.py.)"""

    code: str
    message: str
    span: Span | None = None
    notes: list[str] = field(default_factory=list)
    hint: str | None = None
    severity: str = "error"

    def __init__(self, code: str, message: str, span: Span | None = None,
                 notes: list[str] = _NEW, hint: str | None = None, severity: str = "error"):
        self.code = code
        self.message = message
        self.span = span
        self.notes = [] if notes is _NEW else notes
        self.hint = hint
        self.severity = severity

    def render(self, sources: dict[str, Source] | None = None, color: bool = False) -> str:
        """``file:line:col: error: message [CODE]``, the source line with a caret line, the
        notes and the hint; with ``color``, ANSI styles as ruff and rustc use them."""
        c = _SEVERITY_STYLE.get(self.severity, _SEVERITY_STYLE["error"])
        where = style(f"{self.span}:", "1", color) + " " if self.span else ""
        out = [f"{where}{style(self.severity + ':', c, color)} "
               f"{style(_clip(self.message), '1', color)} {style(f'[{self.code}]', c, color)}"]
        src = sources.get(self.span.file) if (sources and self.span) else None
        if src is not None:
            excerpt = src.excerpt(self.span)
            if excerpt and color:
                text, _, carets = excerpt.rpartition("\n")
                bare = carets.rstrip("^")
                excerpt = f"{text}\n{bare}{style(carets[len(bare):], c, color)}"
            if excerpt:
                out.append(excerpt)
        out.extend(f"  {_clip(n)}" for n in self.notes)
        if self.hint:
            out.append(f"  {style('hint:', _HINT_STYLE, color)} {_clip(self.hint)}")
        return "\n".join(out)

    def to_dict(self) -> dict:
        d = {"code": self.code, "severity": self.severity, "message": self.message,
             "notes": self.notes, "hint": self.hint}
        if self.span:
            d.update(file=self.span.file, line=self.span.line, col=self.span.col,
                     end_line=self.span.end_line, end_col=self.span.end_col)
        return d

    def github(self) -> str:
        """A GitHub Actions workflow command that annotates the line.

        The message and every property are escaped as the runner unescapes them, so a file
        name holding a newline, "::" or "," cannot end the command or start another one.
        """
        msg = self.message
        if self.notes:
            msg += "\n" + "\n".join(self.notes)
        if self.hint:
            msg += f"\nhint: {self.hint}"
        msg = _gh_data(msg)
        title = _gh_property(f"nnspec {self.code}")
        if self.span:
            s = self.span
            return (f"::{self.severity} file={_gh_property(s.file)},line={s.line},col={s.col},"
                    f"endLine={s.end_line},endColumn={s.end_col},title={title}::{msg}")
        return f"::{self.severity} title={title}::{msg}"


#: ANSI styles (SGR parameters) of the coloured text output: an error red and bold, a
#: warning yellow and bold, a note cyan; the hint's label bold cyan, as rustc's help.
_SEVERITY_STYLE = {"error": "1;31", "warning": "1;33", "note": "1;36", "info": "1;36"}
_HINT_STYLE = "1;36"


def style(text: str, sgr: str, color: bool = True) -> str:
    """``text`` in the ANSI style ``sgr`` (``"1;31"``: bold red) when ``color``, else as
    it is."""
    return f"\x1b[{sgr}m{text}\x1b[0m" if color and text else text


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C").replace(";", "%3B")


#: Diagnostics rendered in one run (text and github formats); the rest are counted.
MAX_RENDERED = 100


MAX_MESSAGE = 1000


def _clip(text: str) -> str:
    """A message line of at most MAX_MESSAGE characters: a name or shape written 50,000
    characters long is shown by its ends."""
    if len(text) <= MAX_MESSAGE:
        return text
    half = MAX_MESSAGE // 2 - 3
    return f"{text[:half]} ... {text[-half:]}"


def render_all(diagnostics: list[Diagnostic], sources: dict[str, Source] | None = None,
               limit: int | None = MAX_RENDERED, color: bool = False) -> str:
    """Diagnostics as text, at most ``limit`` of them, then "... and N more errors"
    (100,000 errors would otherwise print tens of megabytes); ANSI colours when ``color``."""
    shown = diagnostics if limit is None else diagnostics[:limit]
    out = [d.render(sources, color) for d in shown]
    if len(diagnostics) > len(shown):
        out.append(more_line(len(diagnostics) - len(shown)))
    return "\n".join(out)


def more_line(n: int) -> str:
    return f"... and {n:,} more error{'s' if n != 1 else ''}"


def unreadable(path: str, exc: Exception, use: Span | None = None
               ) -> tuple[Diagnostic, Source | None]:
    """The diagnostic for a file that could not be read (source.read_source's errors), and
    the Source to show with it, if any. ``use`` is where the file was imported; otherwise the
    file itself is the location (1:1, or the bad byte of text that is not UTF-8)."""
    where = use or Span(path, 1, 1, 1, 1)
    if isinstance(exc, UnreadableSource):
        if exc.line is None:
            return Diagnostic(exc.code, exc.message, where), None
        # the problem is inside the file: point at it, and show only that line
        span = Span(path, exc.line, exc.col, exc.line, exc.col + 1)
        notes = [f"imported at {use}"] if use else []
        src = Source(path, "\n" * (exc.line - 1) + (exc.shown or "") + "\n")
        return Diagnostic(exc.code, exc.message, span, notes), src
    if isinstance(exc, OSError):
        return Diagnostic("E001", f"cannot read {path}: {exc.strerror or exc}", where), None
    return Diagnostic("E001", f"cannot read {path!r}: {exc}", where), None


class SpecError(Exception):
    """Raised with one or more diagnostics when a spec is invalid."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic,
                 sources: dict[str, Source] | None = None):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = diagnostics
        self.sources = sources or {}
        super().__init__(self.render())

    def render(self, limit: int | None = MAX_RENDERED) -> str:
        return render_all(self.diagnostics, self.sources, limit)

    def to_json(self) -> str:
        return json.dumps([d.to_dict() for d in self.diagnostics], indent=2)


class Failure(Exception):
    """Internal: one diagnostic raised from deep inside a pass, caught by the pass."""

    def __init__(self, code: str, message: str, span: Span | None = None,
                 notes: list[str] | None = None, hint: str | None = None):
        super().__init__(message)
        self.diag = Diagnostic(code, message, span, list(notes or []), hint)


def suggest(word: str, choices) -> str | None:
    """'did you mean' helper: the closest choice, if any is close."""
    import difflib

    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _spelling_key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _typos(a: str, b: str, limit: int) -> int:
    """The typos between a and b (letters dropped, added, mistyped or swapped with their
    neighbour: the optimal string alignment distance), or limit + 1 when more."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        if min(row) > limit:
            return limit + 1
        prev2, prev = prev, row
    return prev[-1]


def misspelt(word: str, choices, different=()) -> str | None:
    """The choice ``word`` is a plausible misspelling of, or None (a 'did you mean' that
    keeps the meaning): the same name up to case, ``_`` and ``-`` (``LeakyReLU``,
    ``max-pool``), else the nearest a typo away (two for names of 8 letters or more) with
    the same numbers (``relu6`` is not ``relu``, ``conv1d`` not ``conv2d``) and, in a name
    of 4 letters or fewer, the same first letter. ``different`` lists names known to mean
    something else (``selu`` is no typo of ``elu``): they, with any rank suffix
    (``minpool2d``), get no suggestion."""
    import difflib
    import re

    key = _spelling_key(word)
    rankless = re.sub(r"\d+d?$", "", key)  # minpool2d is a minpool
    if not key or rankless in {_spelling_key(d) for d in different}:
        return None
    limit = 1 if len(key) < 8 else 2
    digits = re.findall(r"\d+", key)
    best: list[tuple[int, float, str]] = []
    for c in choices:
        other = _spelling_key(c)
        if re.findall(r"\d+", other) != digits:
            continue
        if len(key) <= 4 and other[:1] != key[:1] and other[:2] != key[1::-1]:
            continue
        n = 0 if other == key else _typos(key, other, limit)
        if n <= limit:  # nearest first, then the spelling closest to the word as written
            best.append((n, -difflib.SequenceMatcher(None, word, c).ratio(), c))
    return min(best)[2] if best else None


#: The SARIF version ``check --format sarif`` writes, and its schema's address.
SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVELS = {"error": "error", "warning": "warning", "note": "note", "info": "note"}


def _sarif_uri(path: str) -> str:
    """A file name as a SARIF ``uri`` (a URI reference, relative as given: generated reports
    get committed and uploaded, so no absolute path is added)."""
    from urllib.parse import quote

    return quote(path.replace("\\", "/"), safe="/:._-~")


def sarif(diagnostics: list[Diagnostic], tool_version: str,
          error_count: int | None = None, describe: Callable[[str], dict] | None = None
          ) -> dict:
    """A SARIF 2.1.0 log of one ``check`` run, for code-scanning uploads (GitHub, GitLab,
    Azure DevOps): one result per diagnostic, its notes and hint in the message text, the
    span as a region in code points (columns 1-based, the end exclusive, as nnspec's are).
    ``error_count`` is the total when ``diagnostics`` is a prefix of them; ``describe``
    gives a code's rule fields (shortDescription, fullDescription, help, helpUri)."""
    rules: dict[str, dict] = {}
    results = []
    for d in diagnostics:
        rules.setdefault(d.code, {"id": d.code, "name": f"nnspec{d.code}",
                                  **(describe(d.code) if describe else {}),
                                  "defaultConfiguration": {
                                      "level": _SARIF_LEVELS.get(d.severity, "error")}})
        text = d.message
        if d.notes:
            text += "\n" + "\n".join(d.notes)
        if d.hint:
            text += f"\nhint: {d.hint}"
        result: dict = {"ruleId": d.code, "ruleIndex": list(rules).index(d.code),
                        "level": _SARIF_LEVELS.get(d.severity, "error"),
                        "message": {"text": text}}
        if d.span:
            s = d.span
            result["locations"] = [{"physicalLocation": {
                "artifactLocation": {"uri": _sarif_uri(s.file)},
                "region": {"startLine": s.line, "startColumn": s.col,
                           "endLine": max(s.end_line, s.line),
                           "endColumn": max(s.end_col, s.col + (s.end_line <= s.line))}}}]
        results.append(result)
    run: dict = {
        "tool": {"driver": {"name": "nnspec", "version": tool_version,
                            "informationUri": "https://pypi.org/project/nnspec/",
                            "rules": list(rules.values())}},
        "columnKind": "unicodeCodePoints",
        "results": results}
    if error_count is not None and error_count > len(results):
        run["properties"] = {"error_count": error_count}
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


class ConstError(ValueError):
    """A constant set from outside that cannot be: a malformed ``NAME=VALUE``, a name the
    spec does not define, or a constant of a file the spec uses. A usage error of the
    caller (the command line exits 2), not an error in the spec."""
