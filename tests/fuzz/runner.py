"""Run one fuzz case through the command line in-process, with a time limit, and classify
what happened.

A case is an input file (spec text or JSON IR, as bytes) and a list of ``nnspec`` command
lines. Each command runs through :func:`nnspec.tools.cli.main` with ``--debug``, so that an
internal error escapes as the exception itself (with its traceback) instead of the one-line
"internal error" message; exit status 3 without an exception counts as internal too.

A failure is one of:

- ``internal``: an exception escaped ``main`` (or it returned 3);
- ``timeout``: a command took longer than the limit (interrupted by ``setitimer``);
- ``write``: a command wrote, renamed or removed a file outside the case's own folder;
- ``shape`` / ``backend`` / ``invalid``: from the differential generator (generate.py).

Failures are grouped by :attr:`Failure.cause`: the exception type and the innermost frame
inside ``nnspec`` (for a timeout, the innermost ``nnspec`` function that was running).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field

DEFAULT_LIMIT = 1.0  # seconds per command; the bound


class CaseTimeout(BaseException):
    """Raised in the main thread when a command runs past its limit. A BaseException, so
    that ``except Exception`` inside nnspec (or the CLI's own handler) cannot swallow it."""


@dataclass
class Failure:
    """One failing command of a case."""

    kind: str  # internal | timeout | write | shape | backend | invalid
    cause: str  # grouping key: "ValueError @ nnspec/frontends/nn/parse.py:int:129"
    message: str
    command: list[str] = field(default_factory=list)
    detail: str = ""  # traceback, or the per-layer report

    def line(self) -> str:
        cmd = " ".join(self.command)
        return f"{self.kind}: {self.cause}: {self.message[:200]}" + (f"  [{cmd}]" if cmd else "")


def _rel(path: str) -> str:
    """``nnspec/frontends/nn/lower.py`` from an absolute file name (the part from nnspec on)."""
    parts = path.replace("\\", "/").split("/")
    if "nnspec" in parts:
        i = len(parts) - 1 - parts[::-1].index("nnspec")
        return "/".join(parts[i:])
    return os.path.basename(path)


def _is_nnspec(path: str) -> bool:
    parts = path.replace("\\", "/").split("/")
    return "nnspec" in parts[:-1] and "tests" not in parts


def innermost_frame(tb, with_line: bool = True) -> str:
    """``nnspec/file.py:function[:line]`` of the innermost traceback frame inside nnspec."""
    best = None
    for fs in traceback.extract_tb(tb):
        if _is_nnspec(fs.filename):
            best = fs
    if best is None:
        return "outside nnspec"
    where = f"{_rel(best.filename)}:{best.name}"
    return f"{where}:{best.lineno}" if with_line else where


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__} @ {innermost_frame(exc.__traceback__)}"


# ---- writes outside the case folder -----------------------------------------------------

_WRITE_EVENTS = {"os.rename": (0, 1), "os.replace": (0, 1), "os.remove": (0,),
                 "os.rmdir": (0,), "os.mkdir": (0,), "os.symlink": (1,), "os.link": (1,),
                 "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,),
                 "shutil.rmtree": (0,), "shutil.move": (1,), "shutil.copyfile": (1,)}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class _WriteGuard:
    """An audit hook (installed once; audit hooks cannot be removed) that records every
    file a command writes, renames, removes or creates outside the allowed folder."""

    def __init__(self):
        self.root: str | None = None
        self.bad: list[str] = []
        self.installed = False

    def install(self) -> None:
        if not self.installed:
            sys.addaudithook(self._hook)
            self.installed = True

    def _outside(self, path) -> bool:
        if isinstance(path, int):
            return False
        try:
            p = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        if p.endswith((".pyc", ".pyc.tmp")) or "__pycache__" in p:
            return False  # Python's own byte-code cache (a lazy import of the torch backend)
        return not (p == self.root or p.startswith(self.root + os.sep))

    def _hook(self, event: str, args) -> None:
        if self.root is None:
            return
        if event == "open":
            path, mode, flags = args
            writes = (mode is not None and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writes and self._outside(path):
                self.bad.append(f"open {os.fsdecode(path)!r} mode={mode} flags={flags}")
            return
        idx = _WRITE_EVENTS.get(event)
        if idx is not None:
            for i in idx:
                if i < len(args) and self._outside(args[i]):
                    self.bad.append(f"{event} {args[i]!r}")


GUARD = _WriteGuard()


# ---- running commands ---------------------------------------------------------------------


def _alarm(signum, frame):
    raise CaseTimeout()


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise CaseTimeout after ``seconds`` (main thread only; elsewhere no limit)."""
    usable = (seconds and hasattr(signal, "setitimer")
              and threading_is_main())
    if not usable:
        yield
        return
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


@dataclass
class CommandResult:
    argv: list[str]
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    failure: Failure | None = None


def run_command(argv: list[str], limit: float | None = DEFAULT_LIMIT,
                retries: int = 1) -> CommandResult:
    """``nnspec --debug <argv>`` in-process; stdout and stderr captured.

    A command over the limit is run again up to ``retries`` times before it counts as a
    timeout: on a shared machine one slow run can be another process's fault.
    """
    from nnspec.tools.cli import main

    attempt = 0
    while True:
        out, err = io.StringIO(), io.StringIO()
        failure = None
        rc = None
        start = time.perf_counter()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                with time_limit(limit):
                    rc = main(["--debug", *argv])
        except CaseTimeout as e:
            where = innermost_frame(e.__traceback__, with_line=False)
            failure = Failure("timeout", f"Timeout @ {where}",
                              f"over {limit:g} s", argv)
        except RecursionError as e:
            failure = Failure("internal", _cause(e), str(e)[:300], argv,
                              "".join(traceback.format_exception(e))[-4000:])
        except MemoryError as e:
            failure = Failure("internal", _cause(e), "out of memory", argv,
                              "".join(traceback.format_exception(e))[-4000:])
        except BaseException as e:  # noqa: B036  # anything at all escaping main is a bug
            if isinstance(e, KeyboardInterrupt):
                raise
            failure = Failure("internal", _cause(e), f"{type(e).__name__}: {e}"[:300], argv,
                              "".join(traceback.format_exception(e))[-4000:])
        seconds = time.perf_counter() - start
        if failure is None and rc == 3:
            failure = Failure("internal", "exit 3 @ cli", err.getvalue().strip()[:300], argv)
        if failure is not None and failure.kind == "timeout" and attempt < retries:
            attempt += 1
            continue
        return CommandResult(argv, rc, out.getvalue(), err.getvalue(), seconds, failure)


@contextlib.contextmanager
def case_folder(parent: str | None = None):
    """A fresh folder to run one case in (the current directory meanwhile); writes
    anywhere else are recorded by :data:`GUARD`."""
    GUARD.install()
    folder = os.path.realpath(tempfile.mkdtemp(prefix="nnfuzz-", dir=parent))
    cwd = os.getcwd()
    os.chdir(folder)
    GUARD.root, GUARD.bad = folder, []
    try:
        yield folder
    finally:
        GUARD.root = None
        os.chdir(cwd)
        shutil.rmtree(folder, ignore_errors=True)


def run_input(name: str, data: bytes, commands: list[list[str]],
              limit: float | None = DEFAULT_LIMIT, stop_after_error: bool = True,
              parent: str | None = None) -> tuple[list[CommandResult], list[Failure]]:
    """Write ``data`` as ``name`` in a fresh folder and run each command on it (``{}`` in a
    command stands for the file). With ``stop_after_error``, commands after the first
    that exits non-zero are skipped: ``summary`` and ``compile`` of a spec with errors only
    print those errors again."""
    results, failures = [], []
    with case_folder(parent) as folder:
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
        for cmd in commands:
            argv = [a.replace("{}", name) for a in cmd]
            GUARD.bad = []
            r = run_command(argv, limit)
            results.append(r)
            if GUARD.bad:
                failures.append(Failure("write", "write outside the case folder",
                                        "; ".join(GUARD.bad[:3]), argv))
            if r.failure is not None:
                failures.append(r.failure)
                break
            if stop_after_error and r.rc != 0:
                break
    return results, failures
