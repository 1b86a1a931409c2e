"""Source text and spans: reading spec files safely, offsets to line/column, excerpts."""

from __future__ import annotations

import os
import stat
import unicodedata
from dataclasses import dataclass

from .record import FrozenRecord

#: Spec and IR files larger than this are refused unread (the bundled specs are a few KB).
MAX_FILE_BYTES = 16 * 2**20
#: An excerpt shows at most this many columns of a line, around the caret.
EXCERPT_WIDTH = 120


@dataclass(init=False, repr=False, eq=False)
class Span(FrozenRecord):
    """A region of a source file: 1-based line/column, end exclusive. (Frozen; a record
    class, see core/record.py.)"""

    __slots__ = ("file", "line", "col", "end_line", "end_col")
    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __init__(self, file: str, line: int, col: int, end_line: int, end_col: int):
        # each slot set through its descriptor (what set_field does, found without a
        # lookup by name: the parser makes a span or more per token)
        _set_file(self, file)
        _set_line(self, line)
        _set_col(self, col)
        _set_end_line(self, end_line)
        _set_end_col(self, end_col)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return ((self.file, self.line, self.col, self.end_line, self.end_col)
                == (other.file, other.line, other.col, other.end_line, other.end_col))

    def __hash__(self) -> int:
        return hash((self.file, self.line, self.col, self.end_line, self.end_col))

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def to_json(self) -> list:
        return [self.file, self.line, self.col, self.end_line, self.end_col]

    @classmethod
    def from_json(cls, data: list) -> "Span":
        return cls(*data)


_set_file, _set_line, _set_col, _set_end_line, _set_end_col = (
    Span.__dict__[name].__set__ for name in Span.__slots__)


class UnreadableSource(Exception):
    """A file nnspec will not read as a spec: its code, message and, when the problem is
    inside the file (bad UTF-8), the line and column and the text decoded for display."""

    def __init__(self, code: str, message: str, line: int | None = None,
                 col: int | None = None, shown: str | None = None):
        super().__init__(message)
        self.code, self.message, self.line, self.col, self.shown = code, message, line, col, shown


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _not_regular(path: str, mode: int) -> UnreadableSource:
    if stat.S_ISDIR(mode):
        return UnreadableSource("E004", f"{path} is a folder, not a file")
    what = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return UnreadableSource("E004", f"{path} is not a regular file ({what})")


def read_source(path: str, limit: int = MAX_FILE_BYTES) -> str:
    """The text of a spec (or IR) file, refusing what is not one without reading it whole.

    Only regular files are read (a FIFO would block, /dev/zero never ends), and none above
    ``limit`` bytes (a sparse 4 GiB file is refused from its size alone). The file is
    stat-ed before it is opened, so that opening a device never happens, and opened
    non-blocking and re-checked, in case it was swapped in between. A leading UTF-8 BOM is
    dropped; text that is not UTF-8 is refused at its first bad byte. Raises OSError when
    the OS refuses (missing file, permissions, a name too long) and UnreadableSource.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(path, st.st_mode)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path, st.st_mode)
        if st.st_size > limit:
            raise _too_large(path, st.st_size, limit)
        data = f.read(limit + 1)
    if len(data) > limit:  # it grew while we read it
        raise _too_large(path, len(data), limit)
    return decode_source(data)


def _too_large(path: str, size: int, limit: int) -> UnreadableSource:
    return UnreadableSource("E005", f"{path} is too large for a spec ({size:,} bytes; "
                            f"the limit is {limit // 2**20} MiB)")


def decode_source(data: bytes) -> str:
    """UTF-8 bytes -> text (a leading BOM dropped), or UnreadableSource at the first byte
    that is not UTF-8, with the line and column that Lark would give it."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, start) + 1
        col = len(data[start:e.start].decode("utf-8")) + 1
        end = data.find(b"\n", e.start)
        shown = data[start:end if end >= 0 else len(data)].decode("utf-8", "replace")
        raise UnreadableSource("E006", f"not UTF-8 text (byte 0x{data[e.start]:02x})",
                               line, col, shown) from None


class Source:
    """The text of one spec file, with helpers to show a span of it."""

    __slots__ = ("path", "text", "_lines")

    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text
        self._lines: list[str] | None = None

    @property
    def lines(self) -> list[str]:
        """The lines as Lark counts them: split at "\\n" only (str.splitlines would also
        split at form feeds, vertical tabs and other separators, and shift every later
        line), without a trailing "\\r"."""
        if self._lines is None:
            lines = self.text.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            self._lines = [s[:-1] if s.endswith("\r") else s for s in lines]
        return self._lines

    def line_text(self, line: int) -> str:
        lines = self.lines
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def excerpt(self, span: Span) -> str:
        """The span's first line, indented, and a caret line underneath it.

        Control characters are shown as their visible symbols (a spec must not send escape
        sequences to the terminal), tabs are expanded, and a line wider than
        EXCERPT_WIDTH columns is cut around the caret, with "..." where text is left out.
        """
        raw = self.line_text(span.line)
        if not raw.strip():
            return ""
        col = min(max(span.col, 1), len(raw) + 1)
        end = span.end_col if span.end_line == span.line else len(raw) + 1
        cut_left = cut_right = False
        if len(raw) > 4 * EXCERPT_WIDTH:  # look at the characters around the caret only
            lo, hi = max(0, col - 1 - 2 * EXCERPT_WIDTH), col - 1 + 2 * EXCERPT_WIDTH
            cut_left, cut_right = lo > 0, hi < len(raw)
            raw, col, end = raw[lo:hi], col - lo, end - lo
        cells = _cells(raw)
        starts = [0]  # the display column where each character starts, then the total
        for _, w in cells:
            starts.append(starts[-1] + w)
        total = starts[-1]
        end = min(max(end, col + 1), len(cells) + 1)
        c0 = starts[col - 1]
        c1 = max(starts[end - 1], c0 + 1)
        left, right = 0, total
        if total > EXCERPT_WIDTH:  # a window of EXCERPT_WIDTH columns, the caret in it
            right = min(total, max(0, c0 - EXCERPT_WIDTH // 3) + EXCERPT_WIDTH)
            left = right - EXCERPT_WIDTH
        shown = [(s, at) for (s, w), at in zip(cells, starts) if left <= at and at + w <= right]
        first = shown[0][1] if shown else left
        lead = "..." if first > 0 or cut_left else ""
        tail = "..." if right < total or cut_right else ""
        pad = len(lead) + c0 - first
        width = max(1, min(c1, right) - c0)
        text = "".join(s for s, _ in shown)
        return f"    {lead}{text}{tail}\n    {' ' * pad}{'^' * width}"


def _cells(line: str) -> list[tuple[str, int]]:
    """Each character of a line as (what to print, columns it takes)."""
    out: list[tuple[str, int]] = []
    col = 0
    for ch in line:
        o = ord(ch)
        if ch == "\t":
            s, w = " " * (4 - col % 4), 4 - col % 4
        elif o < 0x20:
            s, w = chr(0x2400 + o), 1  # the Control Pictures block: ␀ ␌ ␛ ...
        elif o == 0x7F:
            s, w = "\u2421", 1
        elif 0x80 <= o < 0xA0 or o in (0x2028, 0x2029) or 0x202A <= o <= 0x202E \
                or 0x2066 <= o <= 0x2069:
            s, w = "\ufffd", 1  # C1 controls, line separators, bidirectional overrides
        elif o < 0x300:
            s, w = ch, 1
        elif unicodedata.combining(ch):
            s, w = ch, 0
        else:
            s, w = ch, 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        out.append((s, w))
        col += w
    return out
