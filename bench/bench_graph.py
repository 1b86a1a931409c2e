"""`nnspec graph` on the 10,000-layer bench model, end to end (a fresh process each time:
parse, lower, infer, build the DOT text, lay it out with Graphviz's dot, write the file).

A model holds at most 5,000 layers (nnspec's limit), so the 10,000-layer bench model is
two 5,000-layer models of the mlp mix (dense 64 / relu / layernorm on [N, 64]) in one
file, joined by ``check Second(First)``: 10,004 drawn nodes (the layers, an input and an
output per model) and one composition edge.

Usage: python bench/bench_graph.py [--reps 3] [--format svg]

Goal (the project's): <= 5 s for the SVG. The DOT text alone (no layout) is timed too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from _common import ROOT, fmt_s, gen_model, machine, med, result, wait_quiet

GOAL_S = 5.0
PER_MODEL = 5_000


def bench_spec() -> str:
    """Two 5,000-layer models, the second checked to take the first's output."""
    first = gen_model(PER_MODEL, "mlp").replace("model Gen(", "model First(", 1)
    second = gen_model(PER_MODEL, "mlp").replace("model Gen(", "model Second(", 1)
    return first + "\n" + second + "\ncheck Second(First)\n"


def time_graph(path: str, out: str, fmt: str) -> float:
    cmd = [sys.executable, "-m", "nnspec", "graph", path, "-o", out, "--format", fmt, "-q"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    t = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"nnspec graph failed ({proc.returncode}): {proc.stderr.strip()}")
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--format", choices=("svg", "html"), default="svg")
    args = ap.parse_args()
    print(f"bench_graph: {machine()}")
    if shutil.which("dot") is None:
        print("  Graphviz's dot is not installed (apt-get install graphviz): skipped")
        result("graph", "skipped (no dot)", f"<= {GOAL_S:.0f} s", None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench10k.nn")
        with open(path, "w") as f:
            f.write(bench_spec())
        wait_quiet()
        dot_times = [time_graph(path, os.path.join(tmp, "g.dot"), "dot")
                     for _ in range(args.reps)]
        times = [time_graph(path, os.path.join(tmp, f"g.{args.format}"), args.format)
                 for _ in range(args.reps)]
        size = os.path.getsize(os.path.join(tmp, f"g.{args.format}"))
        with open(os.path.join(tmp, f"g.{args.format}"), encoding="utf-8") as f:
            nodes = f.read().count('class="node')
    print(f"  DOT text only: median {fmt_s(med(dot_times))} (min {fmt_s(min(dot_times))})")
    print(f"  {args.format}: median {fmt_s(med(times))} (min {fmt_s(min(times))}), "
          f"{size / 2**20:.1f} MiB, {nodes:,} nodes drawn")
    t = med(times)
    result("graph", f"nnspec graph 10k layers -> {args.format} {fmt_s(t)}",
           f"<= {GOAL_S:.0f} s", t <= GOAL_S)


if __name__ == "__main__":
    main()
