"""Shrink a failing input while it still fails for the same cause (delta debugging over
lines, then over ever smaller chunks of characters), within a budget of runs and time."""

from __future__ import annotations

import time

from .runner import DEFAULT_LIMIT, Failure


def _oracle(name: str, kind: str, cause: str, commands, limit: float):
    """A function data -> bool: does this input still fail with the same cause?"""
    if kind == "generated":
        from .generate import Generated, differential

        def fails(data: bytes) -> bool:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                return False
            g = Generated(0, commands["index"], text, commands["dims"])
            return any(_same(f, cause) for f in differential(g, limit=max(10.0, 10 * limit)))
        return fails

    from .runner import run_input

    def fails(data: bytes) -> bool:
        _, failures = run_input(name, data, commands, limit, stop_after_error=False)
        return any(_same(f, cause) for f in failures)
    return fails


def _same(f: Failure, cause: str) -> bool:
    if f.cause == cause:
        return True
    # a timeout may stop in another function of the same slow path
    return cause.startswith("Timeout @") and f.kind == "timeout"


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def minimise(data: bytes, name: str, kind: str, cause_and_commands, limit: float = DEFAULT_LIMIT,
             max_runs: int = 300, max_seconds: float = 40.0) -> bytes:
    """The smallest input found that still fails with ``cause``.

    ``cause_and_commands`` is (cause, commands) for a mutant, or (cause, {"dims": ...,
    "index": ...}) for a generated spec (its dims, and the index that seeds its weights).
    """
    cause, commands = cause_and_commands
    fails = _oracle(name, kind, cause, commands, limit)
    start = time.monotonic()
    runs = 0

    def budget() -> bool:
        return runs < max_runs and time.monotonic() - start < max_seconds

    if not fails(data):
        return data  # flaky (a timeout near the limit): keep the original
    for unit in ("lines", "chars"):
        parts = data.splitlines(keepends=True) if unit == "lines" else _chunks(data, 1)
        if unit == "chars" and len(data) > 20000:
            parts = _chunks(data, 64)
        n = 2
        while len(parts) >= 2 and budget():
            size = max(1, len(parts) // n)
            removed = False
            for i in range(0, len(parts), size):
                if not budget():
                    break
                cand = parts[:i] + parts[i + size:]
                runs += 1
                if cand and fails(b"".join(cand)):
                    parts = cand
                    n = max(n - 1, 2)
                    removed = True
                    break
            if not removed:
                if size == 1:
                    break
                n = min(len(parts), n * 2)
        data = b"".join(parts)
    return data
