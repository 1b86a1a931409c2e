"""A 6-layer GPT-2-style decoder (specs/gpt2.nn at a smaller config): the NumPy reference
interpreter vs torch, and the emitted module vs nanoGPT's GPT written by hand.

Usage: python bench/bench_gpt2.py [--reps 7]

The network is specs/gpt2.nn with --const layers=6 d=384 heads=6 vocab=8192 context=256
p=0.0 (nanoGPT's "baby GPT" shape, 6 heads of 64: 13.9 M parameters with the tied head;
the vocabulary is cut so that the blocks, not the head's matmul, dominate; no dropout, as
nanoGPT's default), run on batch 4 of 256 tokens, float32, CPU, eval mode under
torch.no_grad(), torch.set_num_threads(2). Four modules share build_module(seed=0)'s
weights, and their outputs are checked equal:

  numpy     NumpyModel(spec, params=<the state_dict as arrays>, dtype=float32)
  built     build_module(spec): the in-process module
  emitted   emit_source(spec) written to a temp file and imported
  hand      nanoGPT's GPT written by hand (F.scaled_dot_product_attention, is_causal=True;
            lm_head tied to wte), the state_dict loaded by name (strict)

Each round times one forward of each, interleaved in an order that rotates every round,
with a pause before each timing (see bench_numpy_vs_torch.py: the other library's
spinning threads). The ratios are paired: the median over rounds of the two modules' times
in the same round. Goals (the project's): numpy/built <= 1.5, emitted/hand <= 1.03.

Training (``--mode train``): the same decoder with p=0.1, in training mode, one forward and
backward (cross-entropy on next tokens, gradients set to None before each step) of the
emitted module and of nanoGPT's GPT with its dropouts (embedding, the attention weights
through SDPA's dropout_p, residual, MLP), the same weights; the paired median of emitted /
hand, goal <= 1.03. On the CPU, SDPA computes a dropout with its math kernel in both.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from _common import ROOT, fmt_s, import_emitted, interleaved, machine, med, result, wait_quiet

import nnspec
from nnspec.backends.numpy import NumpyModel
from nnspec.backends.torch import build_module
from tests._nanogpt import NanoAttention, NanoGPT, NanoMLP

CONSTS = {"layers": 6, "d": 384, "heads": 6, "vocab": 8192, "context": 256, "p": 0.0}
BATCH, T = 4, 256
GOAL_NUMPY, GOAL_EMIT = 1.5, 1.03
PAUSE = 0.3


class DropAttention(NanoAttention):
    """nanoGPT's CausalSelfAttention with dropout: SDPA's dropout_p, then resid_dropout."""

    def __init__(self, d: int, heads: int, p: float):
        super().__init__(d, heads)
        self.p, self.resid_dropout = p, nn.Dropout(p)

    def forward(self, x):
        b, t, c = x.size()
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
                   for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0,
                                           is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c)))


class DropMLP(NanoMLP):
    def __init__(self, d: int, p: float):
        super().__init__(d)
        self.dropout = nn.Dropout(p)

    def forward(self, x):
        return self.dropout(super().forward(x))


class DropGPT(NanoGPT):
    """nanoGPT's GPT with its dropouts (the same state_dict keys as NanoGPT)."""

    def __init__(self, vocab: int, context: int, d: int, heads: int, layers: int, p: float):
        super().__init__(vocab, context, d, heads, layers)
        self.drop = nn.Dropout(p)
        for block in self.transformer.h:
            block.attn, block.mlp = DropAttention(d, heads, p), DropMLP(d, p)

    def forward(self, idx):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def train(reps: int) -> None:
    """emitted / hand, forward and backward in training mode with dropout 0.1."""
    consts = {**CONSTS, "p": 0.1}
    spec = nnspec.load(str(ROOT / "specs" / "gpt2.nn"), consts=consts)
    state = build_module(spec, seed=0).state_dict()
    hand = DropGPT(consts["vocab"], consts["context"], consts["d"], consts["heads"],
                   consts["layers"], consts["p"]).train()
    hand.load_state_dict(state, strict=True)
    rng = np.random.default_rng(0)
    idx = torch.from_numpy(rng.integers(0, consts["vocab"], (BATCH, T)))
    nxt = torch.from_numpy(rng.integers(0, consts["vocab"], (BATCH, T)))
    print(f"  training: p={consts['p']}, forward + backward, batch {BATCH}, T {T}")
    with tempfile.TemporaryDirectory() as tmp:
        emitted = import_emitted(spec, tmp).train()
        emitted.load_state_dict(state, strict=True)

        def step(mod):
            def run():
                mod.zero_grad(set_to_none=True)
                logits = mod(idx)
                F.cross_entropy(logits.flatten(0, 1), nxt.flatten()).backward()
            return run

        # the same draws give the same loss: the dropouts are the same, in the same order
        losses = []
        for mod in (emitted, hand):
            torch.manual_seed(0)
            losses.append(F.cross_entropy(mod(idx).flatten(0, 1), nxt.flatten()).item())
        assert abs(losses[0] - losses[1]) <= 1e-4 * abs(losses[1]), losses
        wait_quiet()
        times = interleaved({"emitted": step(emitted), "hand": step(hand)}, reps, pause=PAUSE)
    for k, v in times.items():
        print(f"  {k:8s} min {fmt_s(min(v))}  median {fmt_s(med(v))}")
    r = med([a / b for a, b in zip(times["emitted"], times["hand"])])
    result("gpt2 train emitted/hand", f"emitted/hand {r:.3f} (p=0.1, forward + backward, "
           f"paired median; mins {fmt_s(min(times['emitted']))} / "
           f"{fmt_s(min(times['hand']))})", f"emitted/hand <= {GOAL_EMIT}", r <= GOAL_EMIT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--mode", choices=("eval", "train", "both"), default="both")
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"bench_gpt2: {machine()}")
    if args.mode != "eval":
        train(args.reps)
    if args.mode == "train":
        return
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
