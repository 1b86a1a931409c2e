"""Benchmark nnspec.layers.kernels.conv_nd against plain NumPy matmul throughput.

Usage: python bench/bench_npops_conv.py [--reps N]

Prints float32 GFLOP/s of a 1024x1024x1024 matmul, of conv_nd on the AlexNet (batch 8)
and LeNet-5 (batch 64) convolutions, and the ratio conv/matmul. The matmul and the
convolutions are timed interleaved (one round = the matmul, then every layer), min of
--reps. Target: >= 0.5 on the large layers, i.e. over AlexNet's five convolutions taken
together (total FLOPs / total time); LeNet's tiny layers are printed for reference.

bench_numpy_vs_torch.py reuses :func:`measure` (and reports its figures as goals).
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nnspec.layers.kernels import conv_nd

# name: (N, C_in, C_out, H, W, k, stride, pad)
LAYERS = {
    "alexnet.conv1": (8, 3, 64, 224, 224, 11, 4, 2),
    "alexnet.conv2": (8, 64, 192, 27, 27, 5, 1, 2),
    "alexnet.conv3": (8, 192, 384, 13, 13, 3, 1, 1),
    "alexnet.conv4": (8, 384, 256, 13, 13, 3, 1, 1),
    "alexnet.conv5": (8, 256, 256, 13, 13, 3, 1, 1),
    "lenet.conv1": (64, 1, 6, 32, 32, 5, 1, 0),
    "lenet.conv2": (64, 6, 16, 14, 14, 5, 1, 0),
}
MM_N = 1024


def best_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(reps: int = 7) -> dict:
    """{"matmul": GFLOP/s, "layers": {name: (seconds, GFLOP/s)}, "alexnet": GFLOP/s of
    AlexNet's convolutions together}; min of ``reps`` interleaved rounds."""
    rng = np.random.default_rng(0)
    dt = np.float32
    a = rng.standard_normal((MM_N, MM_N)).astype(dt)
    b = rng.standard_normal((MM_N, MM_N)).astype(dt)
    runs = {"matmul": lambda: a @ b}
    flops = {"matmul": 2 * MM_N**3}
    for name, (bn, c, o, h, w, k, s, p) in LAYERS.items():
        x = rng.standard_normal((bn, c, h, w)).astype(dt)
        wt = rng.standard_normal((o, c, k, k)).astype(dt)
        bias = rng.standard_normal(o).astype(dt)
        run = functools.partial(conv_nd, x, wt, bias, (s, s), [(p, p), (p, p)], (1, 1), 1)
        out = run()  # warm-up
        assert out.dtype == dt
        runs[name] = run
        flops[name] = 2 * bn * o * c * k * k * math.prod(out.shape[2:])
    best = {k: math.inf for k in runs}
    runs["matmul"]()
    for _ in range(reps):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    alex = [k for k in LAYERS if k.startswith("alexnet")]
    return {
        "matmul": flops["matmul"] / best["matmul"] / 1e9,
        "layers": {k: (best[k], flops[k] / best[k] / 1e9) for k in LAYERS},
        "alexnet": sum(flops[k] for k in alex) / sum(best[k] for k in alex) / 1e9,
    }


def print_measure(r: dict, indent: str = "") -> None:
    mm = r["matmul"]
    print(f"{indent}numpy {np.__version__} matmul float32 {MM_N}x{MM_N}x{MM_N}: "
          f"{mm:8.1f} GFLOP/s")
    for name, (tc, g) in r["layers"].items():
        bn, c, o, h, w, k, s, p = LAYERS[name]
        print(f"{indent}conv_nd {name:14s} N={bn} {c}->{o} {h}x{w} k={k} s={s} p={p}: "
              f"{tc * 1e3:7.2f} ms {g:8.1f} GFLOP/s  ratio conv/matmul {g / mm:5.2f}")
    print(f"{indent}conv_nd AlexNet conv1-5 together: {r['alexnet']:8.1f} GFLOP/s  "
          f"ratio conv/matmul {r['alexnet'] / mm:5.2f}  (target >= 0.5)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    print_measure(measure(args.reps))


if __name__ == "__main__":
    main()
