"""Helpers shared by the benchmark scripts (timing, goal lines, the summary protocol).

Every benchmark prints human-readable lines and, for each goal, one machine-readable
line ``RESULT<TAB>benchmark<TAB>figure<TAB>goal<TAB>met`` that ``run_all.py`` collects.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def interleaved(fns: dict, reps: int, warmup: int = 1,
                pause: float = 0.0) -> dict[str, list[float]]:
    """Time each callable ``reps`` times, round-robin after ``warmup`` untimed rounds; the
    order rotates every round (a b c, b c a, c a b, ...) so that none is always first or
    always follows the same one. ``pause`` seconds of sleep before each timing let the
    previous callable's spinning thread pools (OpenBLAS, OpenMP) go idle.
    Returns {name: [seconds, ...]}."""
    names = list(fns)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(reps):
        for k in names[r % len(names):] + names[:r % len(names)]:
            if pause:
                time.sleep(pause)
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return times


def run_timed(cmd, env, cwd) -> float:
    """Wall seconds of one subprocess run of ``cmd`` (its output captured); a failure ends
    the benchmark with that output."""
    import subprocess

    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout.decode()}"
                         f"{p.stderr.decode()}")
    return t


def med(xs) -> float:
    return statistics.median(xs)


def fmt_s(t: float) -> str:
    if t >= 1:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.1f} ms"
    return f"{t * 1e6:.1f} us"


def result(bench: str, figure: str, goal: str, met: bool | None) -> None:
    """Print the goal line (human) and the RESULT line (for run_all)."""
    verdict = {True: "MET", False: "NOT MET", None: "(reference)"}[met]
    print(f"  => {figure}   goal: {goal}   {verdict}")
    print(f"RESULT\t{bench}\t{figure}\t{goal}\t{verdict}", flush=True)


def machine() -> str:
    env = {k: os.environ[k] for k in ("PYTHONDONTWRITEBYTECODE", "OPENBLAS_CORETYPE",
                                      "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS") if k in os.environ}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load avg {load}, "
            f"env {env or '{}'}")


# ---- generated models ------------------------------------------------------------------

MIXES = {
    # name: (input shape, cycle of layer lines)
    "mlp": ("[N, 64]", ["dense 64", "relu", "layernorm"]),
    "conv": ("[N, 16, 32, 32]", ["conv 16 k=3 p=1", "batchnorm", "relu"]),
}


def gen_model(n_layers: int, mix: str = "mlp") -> str:
    """A model of ``n_layers`` layers written one layer per line, cycling through ``mix``."""
    shape, cycle = MIXES[mix]
    lines = [f"model Gen(x: {shape}) {{"]
    lines += [f"    {cycle[i % len(cycle)]}" for i in range(n_layers)]
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---- is anything else running? -----------------------------------------------------------


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals[:8]), idle


def cpu_busy(interval: float = 0.5) -> float:
    """Fraction of all cores' time spent busy during ``interval`` seconds while this process
    sleeps, i.e. the load other processes put on the machine (0..1); -1 when unknown."""
    try:
        t0, i0 = _cpu_times()
        time.sleep(interval)
        t1, i1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return -1.0
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(timeout: float | None = None, threshold: float = 0.1) -> float:
    """Wait (up to ``timeout`` s; default $BENCH_QUIET_TIMEOUT or 120) until other processes
    use < ``threshold`` of the CPUs; print a warning when they still do. Returns the last
    busy fraction."""
    if timeout is None:
        timeout = float(os.environ.get("BENCH_QUIET_TIMEOUT", "120"))
    deadline = time.monotonic() + timeout
    busy = cpu_busy()
    waited = False
    while busy >= threshold and time.monotonic() < deadline:
        if not waited:
            print(f"  (other processes use {busy:.0%} of the CPUs; waiting up to "
                  f"{timeout:.0f} s for a quiet machine)", flush=True)
            waited = True
        time.sleep(2)
        busy = cpu_busy()
    if busy >= threshold:
        print(f"  WARNING: other processes use {busy:.0%} of the CPUs: the figures below are "
              "disturbed (torch's 2 threads suffer most)", flush=True)
    return busy


def import_emitted(spec, tmp: str):
    """An instance of the model class `nnspec compile` emits for the spec's model."""
    import importlib.util

    from nnspec.backends.torch import emit_source

    name = spec.model().name
    path = os.path.join(tmp, f"emitted_{name.lower()}.py")
    with open(path, "w") as f:
        f.write(emit_source(spec))
    mspec = importlib.util.spec_from_file_location(f"emitted_{name.lower()}", path)
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    return getattr(mod, name)()
