"""Diagnostics: errors with a code, a span, notes and a hint, collected per run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .source import Source, Span


@dataclass
class Diagnostic:
    """One problem in a spec: ``file:line:col: error: message`` plus context."""

    code: str
    message: str
    span: Span | None = None
    notes: list[str] = field(default_factory=list)
    hint: str | None = None
    severity: str = "error"

    def render(self, sources: dict[str, Source] | None = None) -> str:
        where = f"{self.span}: " if self.span else ""
        out = [f"{where}{self.severity}: {self.message} [{self.code}]"]
        src = sources.get(self.span.file) if (sources and self.span) else None
        if src is not None:
            excerpt = src.excerpt(self.span)
            if excerpt:
                out.append(excerpt)
        out.extend(f"  {n}" for n in self.notes)
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)

    def to_dict(self) -> dict:
        d = {"code": self.code, "severity": self.severity, "message": self.message,
             "notes": self.notes, "hint": self.hint}
        if self.span:
            d.update(file=self.span.file, line=self.span.line, col=self.span.col,
                     end_line=self.span.end_line, end_col=self.span.end_col)
        return d

    def github(self) -> str:
        """A GitHub Actions workflow command that annotates the line."""
        msg = self.message
        if self.notes:
            msg += "\n" + "\n".join(self.notes)
        if self.hint:
            msg += f"\nhint: {self.hint}"
        msg = msg.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        if self.span:
            s = self.span
            return (f"::{self.severity} file={s.file},line={s.line},col={s.col},"
                    f"endLine={s.end_line},endColumn={s.end_col},title=nnspec {self.code}::{msg}")
        return f"::{self.severity} title=nnspec {self.code}::{msg}"


class SpecError(Exception):
    """Raised with one or more diagnostics when a spec is invalid."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic,
                 sources: dict[str, Source] | None = None):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = diagnostics
        self.sources = sources or {}
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(d.render(self.sources) for d in self.diagnostics)

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
