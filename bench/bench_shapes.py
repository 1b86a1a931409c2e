"""Shape inference alone (parse and lowering excluded) on generated 500- and 5,000-layer
models, for two realistic layer mixes:

  mlp   dense 64 / relu / layernorm on [N, 64]
  conv  conv 16 k=3 p=1 / batchnorm / relu on [N, 16, 32, 32]

Usage: python bench/bench_shapes.py [--reps 9]

`nnspec.frontends.nn.lower.lower_text` builds the IR program once per size; then
`nnspec.ir.shapes.infer_model(program.models[0])` is timed, 500 and 5k interleaved, median of
--reps (the first, cold call is printed too).
Goals (the project's): >= 50,000 layers/s, and time(5k)/time(500) ~ 10 (linear; 8..12.5 is
counted as met).
"""

from __future__ import annotations

import argparse
import time

from _common import fmt_s, gen_model, interleaved, machine, med, result, wait_quiet

from nnspec.frontends.nn.lower import lower_text
from nnspec.ir.shapes import infer_model

GOAL_RATE = 50_000
SIZES = (500, 5_000)  # 5,000 layers is nnspec's limit per model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    print(f"bench_shapes: {machine()}")
    for mix in ("mlp", "conv"):
        wait_quiet()
        models = {}
        first = {}
        for n in SIZES:
            prog, loader = lower_text(gen_model(n, mix), f"gen{n}.nn")
            assert not loader.diags, loader.diags[:3]
            m = prog.models[0]
            assert len(m.nodes) == n, len(m.nodes)
            t0 = time.perf_counter()
            res = infer_model(m)
            first[n] = time.perf_counter() - t0
            assert res.ok and res.output() is not None, res.diags[:3]
            models[n] = m
        times = interleaved({n: (lambda m=m: infer_model(m)) for n, m in models.items()},
                            args.reps, warmup=0)
        t1, t10 = med(times[500]), med(times[5_000])
        for n in SIZES:
            t = med(times[n])
            print(f"  [{mix}] {n:6,d} layers: median {fmt_s(t)} (min {fmt_s(min(times[n]))}, "
                  f"first call {fmt_s(first[n])}) = {n / t:,.0f} layers/s")
        rate = 5_000 / t10
        ratio = t10 / t1
        result("shapes", f"[{mix}] infer 5k layers {fmt_s(t10)} = {rate:,.0f} layers/s",
               f">= {GOAL_RATE:,} layers/s", rate >= GOAL_RATE)
        result("shapes", f"[{mix}] time(5k)/time(500) = {ratio:.1f}",
               "~10 (linear)", 8 <= ratio <= 12.5)


if __name__ == "__main__":
    main()
