"""A 6-layer GPT-2-style decoder (specs/gpt2.nn at a smaller config): the NumPy reference
interpreter vs torch, and the emitted module vs nanoGPT's GPT written by hand.

Usage: python bench/bench_gpt2.py [--reps 7]

The network is specs/gpt2.nn with --const layers=6 d=384 heads=6 vocab=8192 context=256
p=0.0 (nanoGPT's "baby GPT" shape, 6 heads of 64: 13.9 M parameters with the tied head;
the vocabulary is cut so that the blocks, not the head's matmul, dominate; no dropout, as
nanoGPT's default, since an sdpa with dropout > 0 is emitted as an explicit softmax, which
eval mode does not change), run on batch 4 of
256 tokens, float32, CPU, eval mode under torch.no_grad(), torch.set_num_threads(2). Four
modules share build_module(seed=0)'s weights, and their outputs are checked equal:

  numpy     NumpyModel(spec, params=<the state_dict as arrays>, dtype=float32)
  built     build_module(spec): the in-process module
  emitted   emit_source(spec) written to a temp file and imported
  hand      nanoGPT's GPT written by hand (F.scaled_dot_product_attention, is_causal=True;
            lm_head tied to wte), the state_dict loaded by name (strict)

Each round times one forward of each, interleaved in an order that rotates every round,
with a pause before each timing (see bench_numpy_vs_torch.py: the other library's
spinning threads). The ratios are paired: the median over rounds of the two modules' times
in the same round. Goals (the project's): numpy/built <= 1.5, emitted/hand <= 1.03.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch

from _common import ROOT, fmt_s, import_emitted, interleaved, machine, med, result, wait_quiet

import nnspec
from nnspec.backends.numpy import NumpyModel
from nnspec.backends.torch import build_module
from tests._nanogpt import NanoGPT

CONSTS = {"layers": 6, "d": 384, "heads": 6, "vocab": 8192, "context": 256, "p": 0.0}
BATCH, T = 4, 256
GOAL_NUMPY, GOAL_EMIT = 1.5, 1.03
PAUSE = 0.3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"bench_gpt2: {machine()}")
    spec = nnspec.load(str(ROOT / "specs" / "gpt2.nn"), consts=CONSTS)
    built = build_module(spec, seed=0).eval()
    state = built.state_dict()
    hand = NanoGPT(CONSTS["vocab"], CONSTS["context"], CONSTS["d"], CONSTS["heads"],
               CONSTS["layers"]).eval()
    hand.load_state_dict(state, strict=True)
    ref = NumpyModel(spec, params={k: v.numpy() for k, v in state.items()}, dtype="float32")
    idx = torch.from_numpy(np.random.default_rng(0).integers(0, CONSTS["vocab"], (BATCH, T)))
    x_np = idx.numpy()
    print(f"  GPT-2 style: {CONSTS}, {spec.param_count()} parameters, batch {BATCH}, "
          f"T {T}, float32")
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        emitted = import_emitted(spec, tmp).eval()
        emitted.load_state_dict(state, strict=True)
        want = hand(idx)
        for name, out in (("built", built(idx)), ("emitted", emitted(idx))):
            torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4, msg=name)
        np.testing.assert_allclose(ref(x_np), want.numpy(), rtol=1e-3, atol=1e-3)
        wait_quiet()
        times = interleaved({"numpy": lambda: ref(x_np), "built": lambda: built(idx),
                             "emitted": lambda: emitted(idx), "hand": lambda: hand(idx)},
                            args.reps, pause=PAUSE)
    for k, v in times.items():
        print(f"  {k:8s} min {fmt_s(min(v))}  median {fmt_s(med(v))}")
    r_np = med([a / b for a, b in zip(times["numpy"], times["built"])])
    r_emit = med([a / b for a, b in zip(times["emitted"], times["hand"])])
    result("gpt2 numpy/torch", f"numpy/torch {r_np:.3f} (paired median; mins "
           f"{fmt_s(min(times['numpy']))} / {fmt_s(min(times['built']))})",
           f"numpy/torch <= {GOAL_NUMPY}", r_np <= GOAL_NUMPY)
    result("gpt2 emitted/hand", f"emitted/hand {r_emit:.3f} (paired median; mins "
           f"{fmt_s(min(times['emitted']))} / {fmt_s(min(times['hand']))})",
           f"emitted/hand <= {GOAL_EMIT}", r_emit <= GOAL_EMIT)


if __name__ == "__main__":
    main()
