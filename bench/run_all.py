"""Run every benchmark and print one summary table.

Usage: python bench/run_all.py [--markdown] [--only WORD ...]

Each benchmark runs in its own interpreter (its output is shown as it goes); the goal lines
it prints (``RESULT<TAB>benchmark<TAB>figure<TAB>goal<TAB>verdict``) are collected into the
table. bench_npops_conv.py is not run separately: bench_numpy_vs_torch.py runs its
measurement and reports the conv/matmul goal. Exit status 1 when a benchmark failed to run
(a goal not met is reported, not an error).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    "bench_cold_check.py",
    "bench_shapes.py",
    "bench_parse.py",
    "bench_torch_emit.py",
    "bench_numpy_vs_torch.py",
    "bench_generative.py",
    "bench_backward.py",
    "bench_sequences.py",
    "bench_macs.py",
    "bench_lsp.py",
    "bench_graph.py",
    "bench_compile_cold.py",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--only", nargs="*", help="run only benchmarks whose file name contains "
                                              "one of these words")
    args = ap.parse_args()
    benches = [b for b in BENCHES if not args.only or any(w in b for w in args.only)]
    rows, failed = [], []
    for b in benches:
        print(f"=== {b}", flush=True)
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, str(HERE / b)], cwd=HERE.parent,
                             stdout=subprocess.PIPE, text=True)
        for line in p.stdout:
            if line.startswith("RESULT\t"):
                rows.append(line.rstrip("\n").split("\t")[1:])
            else:
                print(line, end="", flush=True)
        if p.wait():
            failed.append(b)
            print(f"!!! {b} exited with status {p.returncode}")
        print(f"=== {b}: {time.perf_counter() - t0:.0f} s\n", flush=True)

    rows = [r + [""] * (4 - len(r)) for r in rows]
    head = ["benchmark", "figure", "goal", "met?"]
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *rows)]
        line = "  ".join("-" * w for w in widths)
        print(line)
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        print(line)
        for r in rows:
            print("  ".join(x.ljust(w) for x, w in zip(r, widths)))
        print(line)
    n_met = sum(r[3] == "MET" for r in rows)
    n_goal = sum(r[3] in ("MET", "NOT MET") for r in rows)
    print(f"{n_met} of {n_goal} goals met" + (f"; failed to run: {', '.join(failed)}"
                                               if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
