"""Resource limits of a spec, stated once, and the bracket scan that enforces nesting in text.

Every limit is far beyond what a real network needs and low enough that ``check``,
``summary`` and ``compile`` of hostile input answer in well under two seconds and a few
hundred megabytes, with a located error instead of a crash, a hang or a kill for memory.
"""

from __future__ import annotations

import re


#: Operators, brackets and calls nested inside one statement (or constant, or input shape).
MAX_NESTING = 100
#: Layers of one model once blocks and repetitions are expanded.
MAX_NODES = 5_000
#: Layer and block expansions of one model (a block that adds no layer still counts).
MAX_EXPANSIONS = 2 * MAX_NODES
#: Errors reported per model before its lowering stops.
MAX_MODEL_ERRORS = 50
#: Words (runs of non-blank characters) of one file: enough for specs at the layer limit.
MAX_WORDS = 15_000
#: Integers of a spec (literals, constants, sizes) are int64, as torch's sizes are.
MAX_INT = 2**63 - 1

def first_too_deep(tokens: re.Pattern, text: str, opening: str, closing: str,
                   limit: int) -> int | None:
    """The offset of the first bracket of ``text`` that opens more than ``limit`` levels deep,
    or None. ``tokens`` finds brackets (and whatever must be skipped: strings, comments);
    a match counts by its first character."""
    depth = 0
    for m in tokens.finditer(text):
        c = m.group()[0]
        if c in opening:
            depth += 1
            if depth > limit:
                return m.start()
        elif c in closing:
            depth = max(0, depth - 1)
    return None


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of an offset (lines split on newlines only, as Lark's)."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1
