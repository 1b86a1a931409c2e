"""Worker processes for fuzz runs: each case runs in a child with a memory limit, so that a
memory blow-up is a finding (MemoryError, or the child killed) rather than the machine's
problem, and a case that hangs past every limit is killed and reported.

Tasks are small tuples (``("mutant", seed, index)``), since every case is a pure function
of its seed and index; a result carries the input's bytes only when the case failed.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing as mp
import os
import time
from collections import deque
from dataclasses import asdict
from multiprocessing.connection import wait

from .runner import DEFAULT_LIMIT, Failure

MEMORY_LIMIT = 2 * 2**30  # bytes of address space per worker (torch alone takes ~0.7 GB)


def warm_up() -> None:
    """Import everything a case may need and build the parser once, outside any time limit
    (importing torch takes seconds; the parser's cache file is written on first use)."""
    import warnings

    import nnspec
    import nnspec.backends.numpy  # noqa: F401
    import nnspec.backends.torch  # noqa: F401
    import nnspec.tools.crosscheck  # noqa: F401
    from nnspec.tools.cli import main

    warnings.simplefilter("ignore")  # NumPy's overflow warnings on generated specs
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(["check", "--format", "json", os.devnull])
    nnspec.loads("model M(x: [N, 4]) {\n    relu\n}\n", strict=False)


def handle(task: tuple, limit: float) -> dict:
    """Run one task in this process; the result is plain data (picklable)."""
    what = task[0]
    start = time.perf_counter()
    if what == "mutant":
        from .mutate import commands, mutant
        from .runner import run_input

        m = mutant(task[1], task[2])
        _, failures = run_input(m.name, m.data, commands(m), limit)
        out = {"label": m.label, "kind": "mutant", "name": m.name, "source": m.source,
               "mutations": m.mutations}
        data = m.data
    elif what == "generated":
        from .generate import differential, generate

        g = generate(task[1], task[2])
        failures = differential(g, limit=max(10.0, 10 * limit))
        out = {"label": g.label, "kind": "generated", "name": "case.nn", "dims": g.dims,
               "features": g.features}
        data = g.text.encode()
    elif what == "minimise":
        from .minimise import minimise

        data = minimise(task[1], task[2], task[3], task[4], limit)
        return {"label": "minimise", "kind": "minimise", "data": data, "failures": [],
                "key": task[5]}
    else:
        raise ValueError(f"unknown task {what!r}")
    out["failures"] = [asdict(f) for f in failures]
    out["data"] = data if failures else None
    out["seconds"] = time.perf_counter() - start
    return out


def _worker(conn, memory: int | None, limit: float) -> None:
    if memory:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    try:
        warm_up()
        conn.send(("ready", None))
        while True:
            task = conn.recv()
            if task is None:
                break
            conn.send(("done", handle(task, limit)))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass
    finally:
        conn.close()
        os._exit(0)  # skip interpreter teardown: deep structures left by a case


class _Worker:
    def __init__(self, ctx, memory, limit):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, memory, limit), daemon=True)
        self.proc.start()
        child.close()
        self.task = None
        self.since = 0.0
        self.ready = False

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            with contextlib.suppress(OSError, BrokenPipeError):
                self.conn.send(None)
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _lost(task: tuple, kind: str, message: str) -> dict:
    label = f"{task[0]}:{task[1]}:{task[2]}" if len(task) > 2 else task[0]
    f = Failure(kind, f"{kind} (worker {message.split(':')[0]})", message)
    return {"label": label, "kind": task[0], "failures": [asdict(f)], "data": None,
            "task": task}


def run_tasks(tasks, jobs: int = 1, limit: float = DEFAULT_LIMIT,
              memory: int | None = MEMORY_LIMIT, hard_timeout: float = 120.0):
    """Yield the result of every task (not in order), running them in ``jobs`` workers.
    ``jobs=0`` runs them in this process, without a memory limit."""
    if jobs <= 0:
        warm_up()
        for t in tasks:
            yield handle(t, limit)
        return
    ctx = mp.get_context("spawn")
    todo = deque(tasks)
    workers = [_Worker(ctx, memory, limit) for _ in range(jobs)]
    try:
        while todo or any(w.task is not None for w in workers):
            for w in workers:
                if w.ready and w.task is None and todo:
                    w.task = todo.popleft()
                    w.since = time.monotonic()
                    w.conn.send(w.task)
            ready = wait([w.conn for w in workers], timeout=1.0)
            for i, w in enumerate(workers):
                died = False
                if w.conn in ready:
                    try:
                        tag, value = w.conn.recv()
                    except (EOFError, OSError):
                        died = True
                    else:
                        if tag == "ready":
                            w.ready = True
                        else:
                            w.task = None
                            yield value
                        continue
                hung = w.task is not None and time.monotonic() - w.since > hard_timeout
                if died or hung or not w.proc.is_alive():
                    task = w.task
                    w.stop(kill=True)
                    code = w.proc.exitcode
                    if task is not None:
                        if hung:
                            yield _lost(task, "timeout", f"killed: over {hard_timeout:g} s")
                        else:
                            yield _lost(task, "crash", f"died: exit code {code}")
                    elif not w.ready:
                        raise RuntimeError(f"a fuzz worker failed to start (exit {code})")
                    workers[i] = _Worker(ctx, memory, limit)
    finally:
        for w in workers:
            w.stop()
