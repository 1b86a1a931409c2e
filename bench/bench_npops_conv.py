"""Benchmark nnspec.npops.conv_nd against plain NumPy matmul throughput.

Usage: python bench/bench_npops_conv.py [--reps N]

Prints float32 GFLOP/s of a 1024x1024x1024 matmul, of conv_nd on a few
AlexNet/LeNet layers, and the ratio conv/matmul (target: >= 0.5 on the
large layers).
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

from nnspec.npops import conv_nd

# name: (N, C_in, C_out, H, W, k, stride, pad)
LAYERS = {
    "alexnet.conv2": (8, 64, 192, 27, 27, 5, 1, 2),
    "alexnet.conv1": (8, 3, 64, 224, 224, 11, 4, 2),
    "alexnet.conv3": (8, 192, 384, 13, 13, 3, 1, 1),
    "lenet.conv1": (64, 1, 6, 28, 28, 5, 1, 2),
    "lenet.conv2": (64, 6, 16, 14, 14, 5, 1, 0),
}


def best_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    dt = np.float32

    n = 1024
    a = rng.standard_normal((n, n)).astype(dt)
    b = rng.standard_normal((n, n)).astype(dt)
    t = best_time(lambda: a @ b, args.reps)
    mm = 2 * n**3 / t / 1e9
    print(f"numpy {np.__version__} matmul float32 {n}x{n}x{n}: {mm:8.1f} GFLOP/s")

    for name, (bn, c, o, h, w, k, s, p) in LAYERS.items():
        x = rng.standard_normal((bn, c, h, w)).astype(dt)
        wt = rng.standard_normal((o, c, k, k)).astype(dt)
        bias = rng.standard_normal(o).astype(dt)
        run = functools.partial(conv_nd, x, wt, bias, (s, s), [(p, p), (p, p)], (1, 1), 1)
        out = run()
        assert out.dtype == dt
        flops = 2 * bn * o * c * k * k * math.prod(out.shape[2:])
        tc = best_time(run, args.reps)
        g = flops / tc / 1e9
        print(
            f"conv_nd {name:14s} N={bn} {c}->{o} {h}x{w} k={k} s={s} p={p}: "
            f"{tc * 1e3:7.2f} ms {g:8.1f} GFLOP/s  ratio conv/matmul {g / mm:5.2f}"
        )


if __name__ == "__main__":
    main()
