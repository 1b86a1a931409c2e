"""Small shared helpers."""

from __future__ import annotations

import errno
import gc
import os
import re
import stat
import tempfile
from contextlib import contextmanager

try:
    import fcntl
except ImportError:  # not on Windows: no locks, and no stale temp files are removed
    fcntl = None  # type: ignore[assignment]


class OutputError(OSError):
    """An output path nnspec will not or cannot write, with a one-line message for the user
    (an OSError, as the failures it stands for are)."""


#: Names that mean standard output, as ``-`` does (opening them would follow the
#: process's own descriptor, possibly to a file a rename would then replace).
STDOUT_NAMES = frozenset({"-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"})


def write_atomic(path: str, text: str | bytes) -> None:
    """Write text (UTF-8) or bytes to path, never leaving a half-written file.

    A regular file (or a new one) is written to a temp file in the same folder, then
    os.replace, so a failure leaves any previous file untouched. The temp file has no name
    while it is written where the system allows (O_TMPFILE), and is locked while it lives:
    a run killed in between leaves at most a ``.<name>.nnspec-*.tmp`` that nobody holds,
    which the next write of the same target removes. A symlink is followed: its target is
    replaced that way and the link stays. A file the user may not write (``chmod 444``) is
    refused, as compilers refuse it. A character device or a FIFO (``/dev/null``, a pipe) is
    written to directly, because replacing it would turn a device into a plain file; a FIFO
    nobody reads is refused rather than waited on. Anything else (a folder, a block device,
    a socket, a missing folder, a name ending in "/") is refused.
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
    if st is not None and _read_only(target, st):
        raise OutputError(f"cannot write {path}: it is read-only (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}); make it writable or remove it "
                          "first")
    mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
    prefix = _temp_prefix(target)
    _remove_stale(folder, prefix)
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    fd, tmp = None, None
    try:
        try:
            fd, tmp = _new_temp(folder, prefix, mode)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror or e} "
                              f"(creating a file in {os.path.dirname(path) or '.'})") from None
        _write_all(fd, data)
        if tmp is None:
            tmp = _link_temp(fd, folder, prefix)
            if tmp is None:  # this system cannot name an unnamed file: write a named one
                os.close(fd)
                fd, tmp = _new_temp(folder, prefix, mode)
                _write_all(fd, data)
        os.replace(tmp, target)
    except BaseException as e:
        if tmp is not None:
            _unlink_quietly(tmp)
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        raise
    finally:
        if fd is not None:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def _read_only(target: str, st: os.stat_result) -> bool:
    """Whether the user may not write the file: no write bit at all (root included, as
    ``gcc -o`` and ``ld`` refuse it), or no write permission for this user."""
    if not st.st_mode & 0o222:
        return True
    return not os.access(target, os.W_OK)


def _temp_prefix(target: str) -> str:
    """The start of the temp files' names of a target: ``.model.py.nnspec-`` (the name cut
    to 100 bytes, so that the temp's fits a file name's 255)."""
    base = os.fsdecode(os.fsencode(os.path.basename(target))[:100])
    return f".{base}.nnspec-"


def _lock(fd: int) -> None:
    """Hold the temp file while it lives (a file system without locks: unheld, and a
    cleaner cannot lock it either, so it is never taken for a stale one)."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass


#: Whether an unnamed temp file (O_TMPFILE) can be given a name here: unknown until tried;
#: some kernels and sandboxes open one but cannot link it.
_unnamed_ok: bool | None = None


def _new_temp(folder: str, prefix: str, mode: int) -> tuple[int, str | None]:
    """An open temp file in folder, locked, with the given mode: unnamed (O_TMPFILE; the
    name is None) where the system has it, else a fresh ``<prefix>XXXXXXXX.tmp``."""
    flag = getattr(os, "O_TMPFILE", 0)
    if flag and _unnamed_ok is not False and os.path.isdir("/proc/self/fd"):
        try:
            fd = os.open(folder, flag | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), mode)
        except OSError:
            pass  # a file system without unnamed files: a named one below
        else:
            try:
                os.fchmod(fd, mode)
                _lock(fd)
            except BaseException:
                os.close(fd)
                raise
            return fd, None
    for _ in range(100):
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
        try:
            _lock(fd)
            if os.fstat(fd).st_nlink:  # not taken for a stale one between create and lock
                os.chmod(tmp, mode)
                return fd, tmp
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        os.close(fd)
    raise OSError(errno.EEXIST, "no temp file could be kept")


def _link_temp(fd: int, folder: str, prefix: str) -> str | None:
    """Give the unnamed temp file a name in folder (just before it replaces the target),
    or None where this system cannot."""
    global _unnamed_ok
    for _ in range(100):
        name = os.path.join(folder, f"{prefix}{os.urandom(4).hex()}.tmp")
        try:
            os.link(f"/proc/self/fd/{fd}", name)
        except FileExistsError:
            continue
        except OSError:
            _unnamed_ok = False
            return None
        _unnamed_ok = True
        return name
    raise OSError(errno.EEXIST, "no temp file name was free")


def _remove_stale(folder: str, prefix: str) -> None:
    """Remove the temp files of this target that no live writer holds (left by a killed
    run); a file some run is writing is locked, and is left alone."""
    if fcntl is None:
        return
    try:
        names = [e.name for e in os.scandir(folder)
                 if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        tmp = os.path.join(folder, name)
        try:
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != _euid():
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer's
            now = os.stat(tmp, follow_symlinks=False)
            if (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
                _unlink_quietly(tmp)
        except OSError:
            pass
        finally:
            os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _euid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else -1


def _write_special(path: str, text: str | bytes) -> None:
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
        data = text if isinstance(text, bytes) else text.encode("utf-8")
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


def wrap_pipeline(line: str, indent: int, width: int = 96) -> list[str]:
    """A long .nn pipeline over lines, each continuation's ``|`` under the first one (the
    layout the writers of .nn text, the importers, give a statement longer than ``width``
    with its ``indent``); a line that fits, or has no ``|``, stays one line."""
    if indent + len(line) <= width or " | " not in line:
        return [line]
    head, *stages = line.split(" | ")
    bar = len(head) + 1
    out, cur = [], head
    for st in stages:
        if indent + len(cur) + 3 + len(st) > width and cur.strip():
            out.append(cur)
            cur = " " * bar + "| " + st
        else:
            cur += " | " + st
    out.append(cur)
    return out
