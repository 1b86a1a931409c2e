"""Edits the server offers: :func:`fixes` (a quick fix per "did you mean" suggestion of
a diagnostic: the misspelt word replaced by the suggestion) and :func:`formatted` (the
text as ``nnspec fmt`` writes it, or None when it has syntax errors or is formatted
already). Positions are nnspec's (:class:`~nnspec.tools.lsp.analysis.Loc`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .analysis import Analysis, Loc, Problem, problems

_MEAN = re.compile(r"did you mean (?:the initialiser )?(.+?)\?")
_QUOTED = re.compile(r"'([A-Za-z_][\w.]*)'")
_CALLED = re.compile(r"^([A-Za-z_]\w*)\(\.\.\.\)$")
_IDENT = re.compile(r"[A-Za-z_]\w*")


@dataclass
class Fix:
    """Replace the text at ``loc`` (the misspelt word) by ``new``, for ``problem``."""

    title: str
    loc: Loc
    new: str
    problem: Problem
    preferred: bool = False


def _suggestions(message: str) -> list[str]:
    """The names a diagnostic suggests: ``did you mean 'k'?``, ``did you mean
    'kernel_size' / 'k'?``, ``did you mean normal(...)?``."""
    out: list[str] = []
    for m in _MEAN.finditer(message):
        said = m.group(1).strip()
        quoted = _QUOTED.findall(said)
        if quoted:
            out.extend(quoted)
            continue
        called = _CALLED.match(said)
        if called is not None:
            out.append(called.group(1))
        elif _IDENT.fullmatch(said):
            out.append(said)
    return list(dict.fromkeys(out))


def _misspelt(an: Analysis, p: Problem) -> tuple[str, Loc] | None:
    """The word the diagnostic is about (the first quoted name of its first line), where
    it is written inside the diagnostic's range."""
    head = p.message.split("\n", 1)[0].split("did you mean", 1)[0]
    names = [n.split(".")[0] for n in _QUOTED.findall(head)]
    if not names:
        return None
    loc = p.loc
    for line in range(loc.line, loc.end_line + 1):
        if not 0 <= line < len(an.lines):
            continue
        text = an.lines[line]
        lo = loc.char if line == loc.line else 0
        hi = loc.end_char if line == loc.end_line else len(text)
        for name in names:
            for m in _IDENT.finditer(text, lo, max(hi, lo)):
                if m.group() == name:
                    return name, Loc(loc.file, line, m.start(), line, m.end())
    return None


def _overlaps(loc: Loc, line: int, char: int, end_line: int, end_char: int) -> bool:
    return (loc.line, loc.char) <= (end_line, end_char) and \
        (line, char) <= (loc.end_line, loc.end_char)


def fixes(an: Analysis, line: int, char: int, end_line: int, end_char: int) -> list[Fix]:
    """A quick fix for each suggestion of each diagnostic of the document that meets the
    range (0-based, inclusive) and names a misspelt word written in its own range."""
    out = []
    for p in problems(an):
        if p.related is not None or not _overlaps(p.loc, line, char, end_line, end_char):
            continue
        names = _suggestions(p.message)
        got = _misspelt(an, p) if names else None
        if got is None:
            continue
        word, where = got
        names = [n for n in names if n != word]
        for i, name in enumerate(names):
            out.append(Fix(f"Replace '{word}' with '{name}'", where, name, p, i == 0))
    return out


def formatted(text: str, path: str) -> str | None:
    """The text in ``nnspec fmt``'s layout; None when it does not parse (it is then left
    alone), when formatting fails, or when it is formatted already."""
    from ...core.diagnostics import SpecError
    from ..fmt import FormatError, format_text

    try:
        out = format_text(text, path)
    except (SpecError, FormatError):
        return None
    return None if out == text else out
