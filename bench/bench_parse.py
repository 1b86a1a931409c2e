"""Parsing a generated model written one layer per line, and the whole front end.

Usage: python bench/bench_parse.py [--reps 5] [--vs-dir DIR [--rounds 7]]

  parse            nnspec.frontends.nn.parse.parse(text)                        (syntax tree only)
  parse+lower      nnspec.frontends.nn.lower.lower_text(text)       (IR, names, validation;
                   GC paused as in nnspec.loads, and also as a bare call)
  parse+...+infer  nnspec.loads(text)                              (+ shape inference)

on the 5,000-layer models of bench_shapes (mixes mlp and conv), interleaved, median of
--reps, after one warm-up (the LALR parser is built once per process).
Goals (the project's): parse <= 50 us per line, and parse+lower+infer <= 50 us per layer.
For reference, a peer DSL does ~455 layers/s parse + shape-check, i.e. ~2.2 ms per layer.

--vs-dir DIR compares this tree with another working copy (its nnspec/ and grammar/, a change
not committed yet): --rounds rounds, each a fresh process per tree in turn (the order
alternating), which times parse and parse+lower+infer by CPU time (the best of --reps);
it prints the paired median of the ratios now / DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _common import ROOT, gen_model, interleaved, machine, med, result, wait_quiet

import nnspec
from nnspec.frontends.nn.lower import lower_text
from nnspec.core.util import gc_paused
from nnspec.frontends.nn.parse import parse

GOAL_US = 50.0
PEER_MS = 1e3 / 455
N = 5_000  # nnspec's limit of layers per model


def _paused(fn, *a):
    with gc_paused():
        return fn(*a)


def child(n: int, reps: int) -> None:
    """One process's figures for --vs-dir: CPU seconds, best of ``reps``, per mix."""
    out = {}
    for mix in ("mlp", "conv"):
        text = gen_model(n, mix)
        nnspec.loads(text, "gen.nn")
        for name, fn in (("parse", lambda: parse(text, "gen.nn")),
                         ("load", lambda: nnspec.loads(text, "gen.nn"))):
            best = float("inf")
            for _ in range(reps):
                t = time.process_time()
                fn()
                best = min(best, time.process_time() - t)
            out[f"{mix} {name}"] = best
    print(json.dumps({"file": nnspec.__file__, "times": out}))


def versus(other: str, n: int, reps: int, rounds: int) -> None:
    """Paired CPU-time ratios of this tree and ``other``, a fresh process each."""
    trees = {"now": str(ROOT), "dir": os.path.abspath(other)}
    got = {k: [] for k in trees}
    wait_quiet()
    for r in range(rounds):
        for k in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
            # _common puts this tree first on sys.path: the tree timed goes before it
            code = (f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import _common; "
                    f"sys.path.insert(0, {trees[k]!r}); import bench_parse; "
                    f"bench_parse.child({n}, {reps})")
            p = subprocess.run([sys.executable, "-c", code], cwd=trees[k], capture_output=True,
                               text=True, check=True)
            res = json.loads(p.stdout.strip().splitlines()[-1])
            assert res["file"].startswith(trees[k]), res["file"]
            got[k].append(res["times"])
    for key in got["now"][0]:
        now = [t[key] for t in got["now"]]
        then = [t[key] for t in got["dir"]]
        ratios = [a / b for a, b in zip(now, then)]
        per = "line" if key.endswith("parse") else "layer"
        print(f"  [{key}] CPU time, median of {rounds}: now {med(now) / n * 1e6:.1f} us/{per}, "
              f"{other} {med(then) / n * 1e6:.1f} us/{per}; now / {other}, paired median "
              f"{med(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--layers", type=int, default=N)
    ap.add_argument("--vs-dir", metavar="DIR",
                    help="compare with another working copy, a fresh process each round")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    n = args.layers
    if args.vs_dir:
        print(f"bench_parse: {machine()}")
        return versus(args.vs_dir, n, args.reps, args.rounds)
    print(f"bench_parse: {machine()}")
    for mix in ("mlp", "conv"):
        text = gen_model(n, mix)
        lines = text.count("\n")
        spec = nnspec.loads(text, "gen.nn")  # also a warm-up; raises on errors
        assert len(spec.model().nodes) == n
        wait_quiet()
        times = interleaved({
            "parse": lambda: parse(text, "gen.nn"),
            "lower": lambda: lower_text(text, "gen.nn"),
            "lower_nogc": lambda: _paused(lower_text, text, "gen.nn"),
            "load": lambda: nnspec.loads(text, "gen.nn"),
        }, args.reps, warmup=0)
        tp, tl, tall = med(times["parse"]), med(times["lower_nogc"]), med(times["load"])
        tl_gc = med(times["lower"])
        us_line = tp / lines * 1e6
        print(f"  [{mix}] {n:,} layers, {lines:,} lines: parse {tp:.3f} s "
              f"({us_line:.1f} us/line), parse+lower {tl:.3f} s ({tl / n * 1e6:.1f} us/layer), "
              f"parse+lower+infer {tall:.3f} s ({tall / n * 1e6:.1f} us/layer, "
              f"{n / tall:,.0f} layers/s)")
        print(f"  [{mix}] (parse+lower is timed with the cyclic GC paused, as nnspec.loads "
              f"does; a bare lower_text call with the GC on takes {tl_gc:.3f} s, "
              f"{tl_gc / tl:.2f}x)")
        result("parse", f"[{mix}] parse {us_line:.1f} us/line", f"<= {GOAL_US:.0f} us/line",
               us_line <= GOAL_US)
        us_layer = tall / n * 1e6
        result("parse", f"[{mix}] parse+lower+infer {us_layer:.0f} us/layer, "
               f"{PEER_MS * 1e3 / us_layer:.0f}x faster than peer DSL (~{PEER_MS * 1e3:.0f} "
               f"us/layer)", f"<= {GOAL_US:.0f} us/layer", us_layer <= GOAL_US)


if __name__ == "__main__":
    main()
