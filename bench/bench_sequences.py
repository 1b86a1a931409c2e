"""Sequence models: the emitted PyTorch module vs the same network written by hand, and the
NumPy interpreter vs torch, on a GRU classifier and a 6-layer Transformer encoder.

Usage: python bench/bench_sequences.py [--reps 35] [--enc-reps 25] [--np-reps 9] [--profile]

Networks (float32, CPU, torch.no_grad(), eval mode, torch.set_num_threads(2)):

  GRUClassifier  specs/gru_sentiment.nn: embedding 20000 128 -> gru 256 layers=2
                 bidirectional -> last -> dense 2; token ids [16, 64] (batch 16, T=64).
                 Hand-written: nn.Embedding + nn.GRU(batch_first=True, bidirectional=True)
                 + out[:, -1] + nn.Linear.
  Encoder6       ENCODER_SPEC below: the stdlib block `EncoderLayer(512, 8, 2048, 0.1) * 6`
                 (d=512, 8 heads, ff 2048, post-norm, ReLU); x [8, 64, 512].
                 Hand-written: nn.TransformerEncoder(nn.TransformerEncoderLayer(512, 8, 2048,
                 0.1, batch_first=True), 6), with the default enable_nested_tensor=True
                 ("hand") and with enable_nested_tensor=False ("hand_nonest").

In eval mode without autograd, PyTorch's Transformer code takes "fast paths": each
nn.TransformerEncoderLayer runs as one fused op (aten::_transformer_encoder_layer_fwd),
nn.MultiheadAttention alone runs as aten::_native_multi_head_attention (the emitted
module's attention layers get this one), and nn.TransformerEncoder converts the batch to a
nested tensor (the "sparsity fast path", aten::_nested_tensor_from_mask) -- the last only
when a src_key_padding_mask is given. The script logs the aten ops of one forward of each
module to say which fast path ran, and times the encoders twice: as they come (fast paths
on) and with torch.backends.mha.set_fastpath_enabled(False) ("*_plain"; set around each
timed call), where both sides run the plain Python path (linear + scaled_dot_product_attention).

All modules share the weights of build_module(spec, seed=0) (loaded by name; the stdlib
block uses PyTorch's names) and their outputs are checked equal.

(a) emitted / build_module vs hand: each round times one forward of every module,
    interleaved, in an order that rotates every round; the judged figure is the paired
    ratio, the median over rounds of (module time / hand time in the same round), as in
    bench_torch_emit.py. Goal (the project's): <= 1.03.
(b) NumpyModel(float32) vs build_module: interleaved with a 0.3 s pause before each timing
    (thread pools, see bench_numpy_vs_torch.py), min of --np-reps.
    Goals (the project's): GRU classifier numpy/torch <= 1.2, encoder <= 2.
--profile: torch.profiler self-time per op for the encoder modules and a cProfile of one
NumPy forward of each network.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from _common import (ROOT, fmt_s, import_emitted, interleaved, machine, med, result,
                     wait_quiet)

import nnspec
from nnspec.backends.numpy import NumpyModel
from nnspec.backends.torch import build_module

GOAL_EMIT = 1.03
GOAL_NP_GRU = 1.2
GOAL_NP_ENC = 2.0
PAUSE = 0.3

ENCODER_SPEC = """\
use "transformer.nn"

# six nn.TransformerEncoderLayer(512, 8, 2048, 0.1, batch_first=True), no final norm
model Encoder6(x: [N, T, 512]) -> [N, T, 512] {
    EncoderLayer(512, 8, 2048, 0.1) * 6 as layers
}
"""
GRU_SPEC = "specs/gru_sentiment.nn"
GRU_BATCH, GRU_T = 16, 64
ENC_BATCH, ENC_T = 8, 64

# aten ops that show which of torch's Transformer fast paths ran
FAST_OPS = {
    "aten._transformer_encoder_layer_fwd": "fused encoder-layer fast path",
    "aten._native_multi_head_attention": "MultiheadAttention fast path",
    "aten._nested_tensor_from_mask": "sparsity (nested-tensor) fast path",
    "aten._scaled_dot_product_flash_attention_for_cpu": "plain path (SDPA)",
}


# ---- hand-written networks ---------------------------------------------------------------


class GRUClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20000, 128, padding_idx=0)
        self.gru = nn.GRU(128, 256, num_layers=2, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(512, 2)

    def forward(self, tokens):
        y, _ = self.gru(self.embed(tokens))
        return self.classifier(y[:, -1])


def hand_encoder(nested: bool = True) -> nn.Module:
    layer = nn.TransformerEncoderLayer(512, 8, 2048, 0.1, batch_first=True)
    return nn.TransformerEncoder(layer, 6, enable_nested_tensor=nested)


# ---- helpers -----------------------------------------------------------------------------


class OpLog(TorchDispatchMode):
    """Counts the aten ops that reach the dispatcher (after composite ops decompose)."""

    def __init__(self):
        super().__init__()
        self.ops: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        k = str(func.overloadpacket)
        self.ops[k] = self.ops.get(k, 0) + 1
        return func(*args, **(kwargs or {}))


def ops_of(module, *xs) -> dict[str, int]:
    with OpLog() as log:
        module(*xs)
    return log.ops


def load_encoder_spec():
    return nnspec.loads(ENCODER_SPEC, path="<bench_sequences:Encoder6>")


def call(module, x, fastpath: bool = True):
    if fastpath:
        return lambda: module(x)

    def run():
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            module(x)
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
    return run


def check_equal(mods: dict, x, ref, fastpath: dict | None = None) -> None:
    for label, m in mods.items():
        fp = (fastpath or {}).get(label, True)
        torch.backends.mha.set_fastpath_enabled(fp)
        try:
            err = (m(x) - ref).abs().max().item()
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
        assert err <= 1e-4 * max(1.0, ref.abs().max().item()), (label, err)


def paired(times, a, b) -> float:
    return med([x / y for x, y in zip(times[a], times[b])])


# ---- (a) emitted vs hand -----------------------------------------------------------------


def bench_gru(tmp, reps):
    spec = nnspec.load(str(ROOT / GRU_SPEC))
    built = build_module(spec, seed=0).eval()
    state = built.state_dict()
    emitted = import_emitted(spec, tmp).eval()
    emitted.load_state_dict(state)
    hand = GRUClassifier().eval()
    hand.load_state_dict(state)
    x = torch.randint(1, 20000, (GRU_BATCH, GRU_T), generator=torch.Generator().manual_seed(0))
    mods = {"emitted": emitted, "built": built, "hand": hand}
    ref = hand(x)
    check_equal(mods, x, ref)
    wait_quiet()
    times = interleaved({k: call(m, x) for k, m in mods.items()}, reps, warmup=2)
    t = {k: min(v) for k, v in times.items()}
    tag = f"GRUClassifier b{GRU_BATCH} T{GRU_T}"
    print(f"  [{tag}] per forward, min of {reps}: " + ", ".join(
        f"{k} {fmt_s(v)}" for k, v in t.items()) + "  (median: " + ", ".join(
        fmt_s(med(v)) for v in times.values()) + ")")
    for k, what in (("emitted", "emitted"), ("built", "build_module")):
        r = paired(times, k, "hand")
        result("sequences emit", f"[{tag}] {what} {fmt_s(t[k])}, hand {fmt_s(t['hand'])} (min); "
               f"paired ratio {r:.3f} (of minima {t[k] / t['hand']:.3f})",
               f"{k}/hand <= {GOAL_EMIT}", r <= GOAL_EMIT)
    return spec, built, x


def fast_path_report(mods, x) -> None:
    print("  [Encoder6] which fast path ran (aten ops of one forward):")
    for label, m in mods.items():
        for fp in (True, False):
            torch.backends.mha.set_fastpath_enabled(fp)
            try:
                ops = ops_of(m, x)
            finally:
                torch.backends.mha.set_fastpath_enabled(True)
            seen = [f"{FAST_OPS[o]} ({o.split('.', 1)[1]} x{ops[o]})" for o in FAST_OPS
                    if o in ops]
            print(f"    {label:12s} fastpath {'on ' if fp else 'off'}: "
                  + ("; ".join(seen) or "none") + f"  [{sum(ops.values())} aten calls]")
    for label, m in mods.items():
        if isinstance(m, nn.TransformerEncoder):
            print(f"    {label}: use_nested_tensor={m.use_nested_tensor}; the sparsity fast "
                  "path also needs a src_key_padding_mask, and none is given here, so it is "
                  "not taken either way (nn.TransformerEncoder: 'src_key_padding_mask was "
                  "None')")


def bench_encoder(tmp, reps, do_profile):
    spec = load_encoder_spec()
    built = build_module(spec, seed=0).eval()
    state = built.state_dict()
    emitted = import_emitted(spec, tmp).eval()
    emitted.load_state_dict(state)
    hand = hand_encoder(True).eval()
    hand.load_state_dict(state)
    hand_nonest = hand_encoder(False).eval()
    hand_nonest.load_state_dict(state)
    x = torch.randn(ENC_BATCH, ENC_T, 512, generator=torch.Generator().manual_seed(0))
    mods = {"emitted": emitted, "built": built, "hand": hand, "hand_nonest": hand_nonest}
    fast_path_report({"emitted": emitted, "hand": hand, "hand_nonest": hand_nonest}, x)
    ref = hand(x)
    check_equal({**mods, "emitted_plain": emitted, "hand_plain": hand}, x, ref,
                {"emitted_plain": False, "hand_plain": False})
    fns = {k: call(m, x) for k, m in mods.items()}
    fns["emitted_plain"] = call(emitted, x, fastpath=False)
    fns["hand_plain"] = call(hand, x, fastpath=False)
    wait_quiet()
    times = interleaved(fns, reps, warmup=1)
    t = {k: min(v) for k, v in times.items()}
    tag = f"Encoder6 b{ENC_BATCH} T{ENC_T}"
    print(f"  [{tag}] per forward, min of {reps}: " + ", ".join(
        f"{k} {fmt_s(v)}" for k, v in t.items()))
    print(f"  [{tag}] median: " + ", ".join(f"{k} {fmt_s(med(v))}" for k, v in times.items()))
    print(f"  [{tag}] paired ratios: hand_nonest/hand {paired(times, 'hand_nonest', 'hand'):.3f}"
          f", hand/hand_plain {paired(times, 'hand', 'hand_plain'):.3f} (what the fused "
          f"fast path gains), emitted/hand_plain {paired(times, 'emitted', 'hand_plain'):.3f}"
          f", emitted/emitted_plain {paired(times, 'emitted', 'emitted_plain'):.3f}")
    rows = [("emitted", "hand", "emitted vs hand (fast paths on: fused layer vs MHA only)"),
            ("built", "hand", "build_module vs hand (fast paths on)"),
            ("emitted", "hand_nonest", "emitted vs hand enable_nested_tensor=False"),
            ("emitted_plain", "hand_plain", "emitted vs hand, fast path off (both plain)")]
    for a, b, what in rows:
        r = paired(times, a, b)
        result("sequences emit", f"[{tag}] {what}: {fmt_s(t[a])} vs {fmt_s(t[b])} (min); "
               f"paired ratio {r:.3f} (of minima {t[a] / t[b]:.3f})",
               f"{a}/{b} <= {GOAL_EMIT}", r <= GOAL_EMIT)
    if do_profile:
        for label, m in (("emitted", emitted), ("hand", hand)):
            torch_profile(label, m, x)
    return spec, built, x


def torch_profile(label, module, x, rows=10) -> None:
    from torch.profiler import ProfilerActivity, profile
    module(x)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        module(x)
    ev = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ev)
    print(f"    torch.profiler, {label}: self CPU time per op (total {total / 1e3:.1f} ms)")
    for e in ev[:rows]:
        print(f"      {e.key:50s} {e.self_cpu_time_total / 1e3:8.2f} ms "
              f"({e.self_cpu_time_total / total:5.1%})  {e.count:4d} calls")


# ---- (b) numpy vs torch ------------------------------------------------------------------


def bench_numpy(name, spec, module, xt, reps, goal, do_profile):
    params = {k: v.numpy() for k, v in module.state_dict().items()}
    nm = NumpyModel(spec, params=params, dtype=np.float32)
    x = xt.numpy()
    ref = module(xt).numpy()
    got = nm(x)
    assert got.dtype == np.float32, got.dtype
    err = float(np.abs(got - ref).max())
    assert err <= 1e-3 * max(1.0, float(np.abs(ref).max())), err
    wait_quiet()
    times = interleaved({"numpy": lambda: nm(x), "torch": lambda: module(xt)}, reps,
                        warmup=1, pause=PAUSE)
    tn, tt = min(times["numpy"]), min(times["torch"])
    print(f"  [{name}] numpy vs build_module, per forward, min of {reps}: numpy {fmt_s(tn)}, "
          f"torch {fmt_s(tt)}  (median: {fmt_s(med(times['numpy']))}, "
          f"{fmt_s(med(times['torch']))}); max abs diff {err:.1e}")
    result("sequences numpy", f"[{name}] numpy {fmt_s(tn)}, torch {fmt_s(tt)}, ratio "
           f"{tn / tt:.2f}", f"numpy/torch <= {goal:g}", tn / tt <= goal)
    if do_profile:
        import cProfile
        import pstats
        pr = cProfile.Profile()
        pr.enable()
        nm(x)
        pr.disable()
        print(f"    cProfile of one NumPy forward of {name} (top 8 by internal time):")
        st = pstats.Stats(pr)
        for (file, line, fn), (cc, nc, tt_, ct, _) in sorted(
                st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:8]:
            print(f"      {tt_ * 1e3:8.2f} ms self {ct * 1e3:8.2f} ms cum  {nc:5d} calls  "
                  f"{os.path.basename(file)}:{line}({fn})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=35, help="rounds for the GRU, part (a)")
    ap.add_argument("--enc-reps", type=int, default=25, help="rounds for the encoder, part (a)")
    ap.add_argument("--np-reps", type=int, default=9, help="rounds for part (b)")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"bench_sequences: {machine()}, torch {torch.__version__}, numpy {np.__version__}, "
          f"{torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        gspec, gbuilt, gx = bench_gru(tmp, args.reps)
        espec, ebuilt, ex = bench_encoder(tmp, args.enc_reps, args.profile)
        time.sleep(PAUSE)
        bench_numpy(f"GRUClassifier b{GRU_BATCH} T{GRU_T}", gspec, gbuilt, gx, args.np_reps,
                    GOAL_NP_GRU, args.profile)
        bench_numpy(f"Encoder6 b{ENC_BATCH} T{ENC_T}", espec, ebuilt, ex, args.np_reps,
                    GOAL_NP_ENC, args.profile)


if __name__ == "__main__":
    main()
