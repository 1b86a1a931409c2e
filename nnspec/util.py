"""Small shared helpers."""

from __future__ import annotations

import os
import re
import tempfile


def write_atomic(path: str, text: str) -> None:
    """Write text to path atomically: a temp file in the same folder, then os.replace.

    A failure leaves any previous file untouched and no partial file behind.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=".nnspec-", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fmt_count(d) -> str:
    """A Dim or int with thousands separators when it is a number."""
    if isinstance(d, int):
        return f"{d:,}"
    if d.is_const:
        return f"{d.value:,}"
    return re.sub(r"\d{4,}", lambda m: f"{int(m.group()):,}", str(d))
