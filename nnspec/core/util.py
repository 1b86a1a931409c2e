"""Small shared helpers."""

from __future__ import annotations

import errno
import gc
import os
import re
import stat
import tempfile
from contextlib import contextmanager


class OutputError(OSError):
    """An output path nnspec will not or cannot write, with a one-line message for the user
    (an OSError, as the failures it stands for are)."""


#: Names that mean standard output, as ``-`` does (opening them would follow the
#: process's own descriptor, possibly to a file a rename would then replace).
STDOUT_NAMES = frozenset({"-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"})


def write_atomic(path: str, text: str) -> None:
    """Write text to path, never leaving a half-written file.

    A regular file (or a new one) gets a temp file in the same folder, then os.replace,
    so a failure leaves any previous file untouched. A symlink is followed: its target is
    replaced that way and the link stays. A character device or a FIFO (``/dev/null``, a
    pipe) is written to directly, because replacing it would turn a device into a plain
    file; a FIFO nobody reads is refused rather than waited on. Anything else (a folder,
    a block device, a socket, a missing folder, a name ending in "/") is refused.
    Raises OutputError with a one-line reason; nothing is written then.
    """
    if path.endswith(("/", os.sep)):
        raise OutputError(f"cannot write {path}: the name ends with '/' (a folder)")
    try:
        st = os.stat(path)  # through links (and /dev/fd/N's, which realpath cannot follow)
    except FileNotFoundError:
        st = None  # a new file, or a dangling link whose target is created
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            _write_special(path, text)
            return
        what = ("a folder" if stat.S_ISDIR(st.st_mode) else "a block device"
                if stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "not a regular file")
        raise OutputError(f"cannot write {path}: it is {what}")
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise OutputError(f"cannot write {path}: no such folder {os.path.dirname(path) or '.'}")
    mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(prefix=".nnspec-", suffix=".tmp", dir=folder)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e} "
                          f"(creating a file in {os.path.dirname(path) or '.'})") from None
    try:
        os.chmod(tmp, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def _write_special(path: str, text: str) -> None:
    """Write to a character device or FIFO as it is (no create, no truncate, no rename)."""
    flags = os.O_WRONLY | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        if e.errno == errno.ENXIO:
            raise OutputError(f"cannot write {path}: it is a FIFO that nobody reads") from None
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        os.set_blocking(fd, True)
        data = text.encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)


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


@contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while building many small acyclic objects
    (it would otherwise rescan them over and over: parsing 10,000 lines is 1.5x faster)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def lazy_attributes(package: str, parts: dict[str, tuple[str, ...]]):
    """A package's ``__getattr__`` (PEP 562) for names that live in its submodules, which
    are imported on first use: ``parts`` maps a submodule to the names it holds, so
    ``package.name`` works while importing the package itself stays cheap."""
    owner = {name: part for part, names in parts.items() for name in names}

    def __getattr__(name: str):
        part = owner.get(name)
        if part is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        from importlib import import_module

        return getattr(import_module(f"{package}.{part}"), name)

    return __getattr__
