"""CapsNet (specs/capsnet.nn): the NumPy interpreter vs torch, forward.

Usage: python bench/bench_capsnet.py [--reps 7] [--batch 16] [--profile]

NumpyModel (float32) vs build_module on the paper's MNIST CapsNet (conv1, PrimaryCaps,
DigitCaps with r = 3 routing iterations, the reconstruction decoder) at batch 16, in eval
mode (the decoder sees the longest capsule), torch.no_grad(), torch.set_num_threads(2);
the same weights (the module's state_dict), outputs checked equal; interleaved with a
0.3 s pause before each timing (see bench_numpy_vs_torch.PAUSE), min of --reps.
Goal (the issue's): numpy/torch <= 2.
With --profile: per-layer times of both backends, sorted by NumPy time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import ROOT, fmt_s, interleaved, machine, med, result, wait_quiet
from bench_numpy_vs_torch import PAUSE

import nnspec
from nnspec.backends.numpy import NumpyModel, bind_dims
from nnspec.backends.torch import build_module
from nnspec.layers.base import NumpyCtx

GOAL = 2.0


def _numpy_layer_times(nm, xs, reps: int) -> dict[str, float]:
    """Per-layer seconds of NumpyModel (min of reps), walking its plan like __call__, for
    a model of several inputs."""
    best: dict[str, float] = {}
    for _ in range(reps):
        ctx = NumpyCtx(env=bind_dims(nm.model, xs), rng=np.random.default_rng(0))
        values = {inp.id: x for inp, x in zip(nm.model.inputs, xs)}
        for kind, node, keys, _free in nm._plan:
            w = {k: nm.params[f] for k, f in keys.items()}
            t0 = time.perf_counter()
            values[node.id] = kind.numpy(node.p, w, [values[v] for v in node.inputs], ctx)
            t = time.perf_counter() - t0
            best[node.name] = min(best.get(node.name, t), t)
    return best


def _torch_layer_times(module, xs, reps: int) -> dict[str, float]:
    """Per-layer seconds of the SpecModule (min of reps), walking its compiled steps."""
    env = module._bind(tuple(xs))
    names = [loc[3] for loc in module.locations]
    best: dict[str, float] = {}
    for _ in range(reps):
        vals = list(xs) + [None] * (module._n_slots - len(xs))
        for name, (run, mod, ins, out, _free) in zip(names, module._steps):
            t0 = time.perf_counter()
            vals[out] = run(mod, [vals[j] for j in ins], env)
            t = time.perf_counter() - t0
            best[name] = min(best.get(name, t), t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"bench_capsnet: {machine()}; numpy {np.__version__}, torch {torch.__version__}")
    spec = nnspec.load(str(ROOT / "specs" / "capsnet.nn"))
    module = build_module(spec, seed=0).eval()
    nm = NumpyModel(spec, params={k: v.numpy() for k, v in module.state_dict().items()},
                    dtype=np.float32)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 1, 28, 28), dtype=np.float32)  # pixels in [0, 1]
    label = rng.integers(0, 10, size=args.batch)
    xt, lt = torch.from_numpy(x), torch.from_numpy(label)
    with torch.no_grad():
        ref = module(xt, lt)
        got = nm(x, label)
        err = max(float(np.abs(a - b.numpy()).max()) for a, b in zip(got, ref))
        assert all(a.dtype == np.float32 and a.shape == tuple(b.shape)
                   for a, b in zip(got, ref))
        assert err <= 1e-4, err
        gflop = 2 * spec.macs().subs({"N": args.batch}).value / 1e9

        def run_np():
            nm(x, label)

        def run_t():
            module(xt, lt)

        wait_quiet()
        times = interleaved({"numpy": run_np, "torch": run_t}, args.reps, warmup=1,
                            pause=PAUSE)
        tn, tt = min(times["numpy"]), min(times["torch"])
        print(f"  CapsNet batch {args.batch} ({gflop:.1f} GFLOP), per forward, min of "
              f"{args.reps}: numpy {fmt_s(tn)}, torch {fmt_s(tt)}  (median: "
              f"{fmt_s(med(times['numpy']))}, {fmt_s(med(times['torch']))}); max abs diff "
              f"{err:.1e}")
        result("capsnet numpy vs torch", f"CapsNet b{args.batch} r=3: numpy {fmt_s(tn)}, "
               f"torch {fmt_s(tt)}, ratio {tn / tt:.2f}", f"numpy/torch <= {GOAL:g}",
               tn / tt <= GOAL)
        if args.profile:
            reps = min(args.reps, 3)
            time.sleep(PAUSE)
            pn = _numpy_layer_times(nm, [x, label], reps)
            time.sleep(PAUSE)
            pt = _torch_layer_times(module, [xt, lt], reps)
            kinds = {r.name: r.kind for r in spec.layers()}
            print(f"    per layer (min of {reps}); sums: numpy {fmt_s(sum(pn.values()))}, "
                  f"torch {fmt_s(sum(pt.values()))}")
            for name in sorted(pn, key=pn.get, reverse=True)[:8]:
                print(f"      {name:18s} {kinds.get(name, '?'):14s} numpy "
                      f"{fmt_s(pn[name]):>9s}  torch {fmt_s(pt.get(name, 0.0)):>9s}")


if __name__ == "__main__":
    main()
