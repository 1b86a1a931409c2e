"""``nnspec explain CODE``: what an error code means, a spec that has it, and the fix (as
``rustc --explain`` and ``ruff rule``); without a code, every code and its title.

The table is ``error_codes.md`` beside this module, one section per code::

    ## E043 unknown layer kind
    what it means (one or more lines)
    example:
        the failing spec, indented 4 spaces (IR JSON when it starts with "{")
    fix: what to do
        the fixed spec, indented 4 spaces

``example: none: why`` marks a code that no single spec text can show (a file that cannot
be read, say). The tests run every example through ``nnspec check``: it must report
exactly its code, and the fixed spec must check clean. SARIF rules take their
descriptions from here too (:func:`sarif_rule`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

#: Where a SARIF rule's help points: the project's page (its README lists the commands).
HELP_URI = "https://pypi.org/project/nnspec/"

_INDENT = "    "
_CODE = re.compile(r"[EW]\d{3}")


@dataclass(frozen=True)
class Explanation:
    """One error code: its title, what it means, a failing spec, the fix and the fixed
    spec (``example`` and ``fixed`` are None where no spec text can show the code, and
    ``why_no_example`` says why)."""

    code: str
    title: str
    meaning: str
    example: str | None
    fix: str
    fixed: str | None
    why_no_example: str = ""


def _block(lines: list[str]) -> str:
    """An indented block, dedented, without the blank lines around it."""
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(line[len(_INDENT):] if line.startswith(_INDENT) else "" for line in lines) \
        + "\n"


def _section(head: str, body: list[str]) -> Explanation:
    code, _, title = head.partition(" ")
    if not _CODE.fullmatch(code) or not title.strip():
        raise ValueError(f"error_codes.md: a section starts '## CODE title', got {head!r}")
    parts: dict[str, list[str]] = {"meaning": [], "example": [], "fix": [], "fixed": []}
    labels = {"meaning": "", "example": "", "fix": ""}
    part = "meaning"
    for line in body:
        if line.startswith(("example:", "fix:")):
            part = line.split(":", 1)[0]
            labels[part] = line.split(":", 1)[1].strip()
            continue
        if part == "meaning":
            parts["meaning"].append(line.strip())
        elif line.startswith(_INDENT) or not line.strip():
            parts["example" if part == "example" else "fixed"].append(line)
        else:  # a fix's text goes on over unindented lines
            labels[part] += " " + line.strip()
    meaning = " ".join(t for t in parts["meaning"] if t)
    none = labels["example"].startswith("none")
    example = None if none else _block(parts["example"])
    fixed = _block(parts["fixed"]) if parts["fixed"] else None
    if not meaning or not labels["fix"] or (not none and (not example.strip() or not fixed)):
        raise ValueError(f"error_codes.md: {code} needs a meaning, an example, a fix and the "
                         "fixed spec")
    why = labels["example"].partition(":")[2].strip() if none else ""
    return Explanation(code, title.strip(), meaning, example, labels["fix"], fixed, why)


def parse(text: str) -> dict[str, Explanation]:
    """The sections of an error_codes.md text, by code (the text before the first section
    is its preamble)."""
    table: dict[str, Explanation] = {}
    head: str | None = None
    body: list[str] = []
    for line in [*text.splitlines(), "## end"]:
        if line.startswith("## "):
            if head is not None:
                e = _section(head, body)
                if e.code in table:
                    raise ValueError(f"error_codes.md: {e.code} is explained twice")
                table[e.code] = e
            head, body = line[3:].strip(), []
            if head == "end":
                break
        elif head is not None:
            body.append(line)
    return table


@lru_cache(maxsize=1)
def table() -> dict[str, Explanation]:
    """Every error code nnspec can report, by code."""
    from importlib.resources import files

    return parse((files("nnspec.tools") / "error_codes.md").read_text("utf-8"))


def normalise(text: str) -> str:
    """``E043``, ``e043``, ``e43`` and ``43`` all mean E043."""
    t = text.strip().upper()
    letter = t[0] if t[:1] in ("E", "W") else "E"
    digits = t[1:] if t[:1] in ("E", "W") else t
    return f"{letter}{int(digits):03d}" if digits.isdigit() and len(digits) <= 3 else t


def _indent(text: str) -> str:
    return "\n".join(_INDENT + line if line else "" for line in text.rstrip("\n").split("\n"))


def _wrap(text: str, width: int = 88) -> str:
    import textwrap

    return textwrap.fill(text, width)


def render(e: Explanation, color: bool = False) -> str:
    """The text ``nnspec explain CODE`` prints: title, meaning, the failing spec, the fix
    and the fixed spec (bold headings when ``color``)."""
    from ..core.diagnostics import style

    def head(text: str) -> str:
        return style(text, "1", color)

    out = [head(f"{e.code}: {e.title}"), "", _wrap(e.meaning), ""]
    if e.example is None:
        out += [f"{head('Example:')} none ({e.why_no_example})", "", _wrap(f"Fix: {e.fix}")]
        return "\n".join(out)
    out += [head("Example") + " (nnspec check reports " + e.code + "):", "",
            _indent(e.example), "", _wrap(f"Fix: {e.fix}") + ":", "", _indent(e.fixed or "")]
    return "\n".join(out)


def sarif_rule(code: str) -> dict:
    """The SARIF ``reportingDescriptor`` fields of a code: shortDescription (its title),
    fullDescription (its meaning), help (the fix) and helpUri."""
    e = table().get(code)
    if e is None:
        return {"shortDescription": {"text": f"nnspec error {code}"},
                "fullDescription": {"text": f"nnspec error {code}"}, "helpUri": HELP_URI}
    return {"shortDescription": {"text": e.title}, "fullDescription": {"text": e.meaning},
            "help": {"text": f"{e.fix} (nnspec explain {code} shows an example)"},
            "helpUri": HELP_URI}


def add_arguments(p) -> None:
    p.add_argument("code", nargs="?", metavar="CODE",
                   help="an error code (E043, e43 or 43); without one, every code and its "
                        "title")


def run(args) -> int:
    from .common import EXIT_OK, UsageError, use_color

    codes = table()
    if args.code is None:
        for e in codes.values():
            print(f"{e.code}  {e.title}")
        return EXIT_OK
    code = normalise(args.code)
    if code not in codes:
        from ..core.diagnostics import suggest

        best = suggest(code, codes)
        near = f" (did you mean {best}?)" if best else ""
        raise UsageError(f"no error code {args.code}{near}; nnspec explain lists them all")
    import sys

    print(render(codes[code], use_color(sys.stdout)))
    return EXIT_OK
