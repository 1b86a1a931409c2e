"""Source text and spans: offsets to line/column, excerpts with a caret."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file: 1-based line/column, end exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def to_json(self) -> list:
        return [self.file, self.line, self.col, self.end_line, self.end_col]

    @classmethod
    def from_json(cls, data: list) -> "Span":
        return cls(*data)


class Source:
    """The text of one spec file, with helpers to show a span of it."""

    __slots__ = ("path", "text", "_lines")

    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text
        self._lines: list[str] | None = None

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = self.text.splitlines()
        return self._lines

    def line_text(self, line: int) -> str:
        lines = self.lines
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def excerpt(self, span: Span) -> str:
        """The span's first line, indented, and a caret line underneath it."""
        text = self.line_text(span.line).expandtabs(4)
        if not text.strip():
            return ""
        end = span.end_col if span.end_line == span.line else len(text) + 1
        width = max(1, end - span.col)
        width = min(width, max(1, len(text) - span.col + 1))
        return f"    {text}\n    {' ' * (span.col - 1)}{'^' * width}"
