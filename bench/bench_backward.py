"""NumPy reference backward vs torch autograd backward, same batch and weights, float32.

Usage: python bench/bench_backward.py [--reps 7]

Networks: LeNet-5 (specs/lenet5.nn) at batch 64; the GRU classifier
(specs/gru_sentiment.nn) at batch 16, T=64; the 6-layer Transformer encoder of
bench_sequences.py at batch 8, T=64. Both sides compute the gradients of
L = sum(output * c) for one random cotangent c, in eval mode, 2 threads.

Timed: NumPy, ``NumpyModel.vjp`` (its forward with what the backward needs saved, then the
backward); torch, the forward under autograd and ``backward()``. Interleaved rounds, 0.3 s
pause before each timing, the minimum of --reps. Goal (the issue's): <= 3 each.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import fmt_s, interleaved, machine, result, wait_quiet  # noqa: E402
from bench_sequences import ENCODER_SPEC  # noqa: E402

import nnspec  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def case(name, spec, x, reps):
    import torch

    from nnspec.backends.numpy import NumpyModel
    from nnspec.backends.torch import build_module

    mod = build_module(spec, seed=0).eval()
    ref = NumpyModel(spec, params={k: v.detach().numpy().copy()
                                   for k, v in mod.state_dict().items()}, dtype=np.float32)
    out = ref(x)
    c = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    ct = torch.from_numpy(c)
    xt = torch.from_numpy(x)
    if xt.is_floating_point():
        xt.requires_grad_(True)

    def numpy_backward():
        ref.vjp(x, cotangent=c)

    def torch_backward():
        mod.zero_grad(set_to_none=True)
        (mod(xt) * ct).sum().backward()

    wait_quiet()
    t = interleaved({"numpy": numpy_backward, "torch": torch_backward}, reps, pause=0.3)
    a, b = min(t["numpy"]), min(t["torch"])
    print(f"{name}: NumPy vjp {fmt_s(a)}, torch forward+backward {fmt_s(b)}")
    result(f"backward_{name}", f"numpy/torch {a / b:.2f}", "<= 3", a / b <= 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    print(machine())
    rng = np.random.default_rng(0)
    case("lenet5_b64", nnspec.load(os.path.join(ROOT, "specs", "lenet5.nn")),
         rng.standard_normal((64, 1, 32, 32)).astype(np.float32), args.reps)
    case("gru_b16_t64", nnspec.load(os.path.join(ROOT, "specs", "gru_sentiment.nn")),
         rng.integers(0, 20000, (16, 64)), args.reps)
    case("encoder6_b8_t64", nnspec.loads(ENCODER_SPEC, "encoder.nn"),
         rng.standard_normal((8, 64, 512)).astype(np.float32), args.reps)


if __name__ == "__main__":
    main()
