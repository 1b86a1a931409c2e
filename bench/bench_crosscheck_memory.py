"""Peak memory of `nnspec crosscheck` on a GPT-2-small-sized model, over its float64 weights.

Usage: python bench/bench_crosscheck_memory.py [--t T]

The model (inline below): GPT-2 small's sizes with an untied output layer — embedding
50257 x 768, learned positions (1024), 12 x the stdlib EncoderLayer(768, 12 heads, ff 3072),
a final layernorm and a dense 50257 head: 163 M parameters, 1.3 GB in float64. Each
measurement runs in a fresh subprocess (the maximum RSS of a process only grows): once
`crosscheck` in float64 at N=1, T=2, and once a baseline that imports torch and nnspec and
loads the spec, doing nothing else. The figure is the crosscheck's peak RSS over the float64
weight bytes (the baseline, ~0.4 GB of libraries, is included in the peak, as a user sees
it). Goal: <= 3x. The same run prints crosscheck's own estimate of its peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import ROOT, machine, result, wait_quiet

SPEC = """\
use "transformer.nn"
model GPT2Small(tokens: [N, T] int) -> [N, T, 50257] {
    embedding 50257 768 as wte
    positional learned max_len=1024 as wpe
    EncoderLayer(768, heads=12, ff=3072, p=0.1) * 12 as h
    layernorm as ln_f
    dense 50257 as lm_head
}
"""

CHILD = """\
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch, numpy
import nnspec
from nnspec.tools.crosscheck import crosscheck, estimate_memory, bind_dims
spec = nnspec.loads({spec!r}, path={path!r})
out = {{}}
if {run!r}:
    env = bind_dims(spec, "GPT2Small", {{"N": 1, "T": {t}}})
    out["estimate"] = estimate_memory(spec, "GPT2Small", env, "float64").peak
    t0 = time.perf_counter()
    report = crosscheck(spec, "GPT2Small", "float64", seed=0, dims={{"N": 1, "T": {t}}})
    out["seconds"] = time.perf_counter() - t0
    out["ok"] = report.ok
    out["max_rel"] = report.max_rel
from nnspec.backends.weights import nbytes
out["weights"] = nbytes(spec.state_shapes("GPT2Small"), "float64")
out["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(out))
"""


def measure(run: bool, t: int) -> dict:
    code = CHILD.format(root=str(ROOT), spec=SPEC, path=str(ROOT / "bench" / "gpt2.nn"),
                        run=run, t=t)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        sys.exit(f"the measurement failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--t", type=int, default=2, help="sequence length (default 2)")
    args = ap.parse_args()
    print(machine())
    wait_quiet()
    base = measure(False, args.t)
    run = measure(True, args.t)
    w = run["weights"]
    gb = 1e9
    print(f"GPT-2 small (untied), float64 weights: {w / gb:.2f} GB")
    print(f"baseline (import torch + nnspec, load the spec): peak RSS {base['maxrss'] / gb:.2f} GB")
    print(f"crosscheck N=1 T={args.t}: peak RSS {run['maxrss'] / gb:.2f} GB, "
          f"{run['seconds']:.1f} s, ok={run['ok']} (max rel {run['max_rel']:.1e})")
    print(f"crosscheck's own estimate of its peak: {run['estimate'] / gb:.2f} GB "
          f"(+ the baseline)")
    ratio = run["maxrss"] / w
    print(f"peak RSS / float64 weights = {ratio:.2f}x (without the baseline: "
          f"{(run['maxrss'] - base['maxrss']) / w:.2f}x); goal <= 3x: "
          f"{'MET' if ratio <= 3 else 'NOT MET'}")
    result("crosscheck_memory", f"{ratio:.2f}x float64 weights", "<= 3x", ratio <= 3)


if __name__ == "__main__":
    main()
