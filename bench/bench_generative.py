"""Generative and dense-prediction networks: the NumPy interpreter vs torch, and the emitted
module vs the DCGAN tutorial's hand-written generator.

Usage: python bench/bench_generative.py [--reps 7] [--rounds 35] [--unet-size 252]
                                        [--profile]

(a) NumpyModel (float32) vs build_module on the DCGAN generator (specs/dcgan.nn) at batch
    16 and the U-Net (specs/unet.nn) at batch 2; same weights (the module's state_dict),
    eval mode, torch.no_grad(), torch.set_num_threads(2); outputs checked equal;
    interleaved with a 0.3 s pause before each timing (see bench_numpy_vs_torch.PAUSE),
    min of --reps. Goal (the project's): numpy/torch <= 2.
    The U-Net runs at --unet-size (default 252, which gives a 68x68 map: 61 GFLOP a
    forward at batch 2, against 301 GFLOP at the paper's 572). At 572 one torch forward
    took 17-20 s here and a NumPy one 23-27 s, so min-of-7 rounds would take ~6 minutes;
    `--unet-size 572` measures it anyway. Valid sizes are 188 + 16k (572 = 188 + 16*24).
(b) The module emitted by emit_source (imported from a temp file) and build_module vs the
    tutorial's nn.Sequential Generator written by hand, the same weights loaded by position,
    batch 16; paired ratio: the median over --rounds rounds of (module time / hand time in
    the same round), as bench_torch_emit.py. Goal (the project's): <= 1.03.
With --profile: per-layer times of both backends for each (a) network, sorted by NumPy time.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time

import numpy as np
import torch
from torch import nn

from _common import (ROOT, fmt_s, import_emitted, interleaved, machine, med, result,
                     wait_quiet)
from bench_numpy_vs_torch import PAUSE, _numpy_layer_times, _torch_layer_times
from bench_torch_emit import load_by_position

import nnspec
from nnspec.backends.numpy import NumpyModel
from nnspec.backends.torch import build_module

GOAL_NUMPY = 2.0
GOAL_EMIT = 1.03


class TutorialGenerator(nn.Module):
    """The PyTorch DCGAN tutorial's Generator (nz=100, ngf=64, nc=3), as written there."""

    def __init__(self, nz=100, ngf=64, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, x):
        return self.main(x)


def dcgan() -> nnspec.Spec:
    """The generator alone, so that the spec's last model (what emit_source and
    import_emitted take) is the generator."""
    text = (ROOT / "specs" / "dcgan.nn").read_text()
    text = text[:text.index("model Discriminator")]
    return nnspec.loads(text, str(ROOT / "specs" / "dcgan.nn"))


def unet(size: int) -> nnspec.Spec:
    """specs/unet.nn with a size x size input (its annotations state the 572 sizes, so they
    are dropped for other sizes)."""
    text = (ROOT / "specs" / "unet.nn").read_text()
    if size != 572:
        text = text.replace("x: [N, 1, 572, 572]) -> [N, 2, 388, 388]",
                            f"x: [N, 1, {size}, {size}])")
        text = re.sub(r"[ \t]+: \[[^\]\n]*\][ \t]*$", "", text, flags=re.M)
    spec = nnspec.loads(text, str(ROOT / "specs" / "unet.nn"), strict=False)
    if not spec.ok:
        raise SystemExit(f"--unet-size {size} is not a valid U-Net input (188 + 16k): "
                         f"{spec.diagnostics[0].message}")
    return spec


def per_layer(spec, nm, module, x, xt, reps: int) -> None:
    time.sleep(PAUSE)
    tn = _numpy_layer_times(nm, x, reps)
    time.sleep(PAUSE)
    tt = _torch_layer_times(module, xt, reps)
    total_n, total_t = sum(tn.values()), sum(tt.values())
    kinds = {r.name: r.kind for r in spec.layers(nm.model.name)}
    by_kind: dict[str, list[float]] = {}
    for name in tn:
        acc = by_kind.setdefault(kinds[name], [0.0, 0.0])
        acc[0] += tn[name]
        acc[1] += tt[name]
    print(f"    per layer (min of {reps}); sums: numpy {fmt_s(total_n)}, torch "
          f"{fmt_s(total_t)}")
    print("    by kind: " + ", ".join(
        f"{k} numpy {fmt_s(a)} ({a / total_n:.0%}) torch {fmt_s(b)}"
        for k, (a, b) in sorted(by_kind.items(), key=lambda kv: -kv[1][0])))
    for name in sorted(tn, key=tn.get, reverse=True)[:8]:
        print(f"      {name:18s} {kinds[name]:14s} numpy {fmt_s(tn[name]):>9s} "
              f"({tn[name] / total_n:5.1%})  torch {fmt_s(tt[name]):>9s}  "
              f"ratio {tn[name] / tt[name]:5.1f}")


def numpy_vs_torch(label: str, spec, batch: int, calls: int, reps: int,
                   profile: bool) -> None:
    module = build_module(spec, seed=0).eval()
    nm = NumpyModel(spec, params={k: v.numpy() for k, v in module.state_dict().items()},
                    dtype=np.float32)
    shape = (batch, *(d.value for d in spec.model().inputs[0].dims()[1:]))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    xt = torch.from_numpy(x)
    ref = module(xt).numpy()
    got = nm(x)
    assert got.dtype == np.float32 and got.shape == ref.shape, (got.dtype, got.shape)
    err = float(np.abs(got - ref).max())
    assert err <= 1e-3 * max(1.0, float(np.abs(ref).max())), err
    gflop = 2 * spec.macs().subs({"N": batch}).value / 1e9

    def run_np():
        for _ in range(calls):
            nm(x)

    def run_t():
        for _ in range(calls):
            module(xt)

    wait_quiet()
    times = interleaved({"numpy": run_np, "torch": run_t}, reps, warmup=1, pause=PAUSE)
    times = {k: [t / calls for t in v] for k, v in times.items()}
    tn, tt = min(times["numpy"]), min(times["torch"])
    print(f"  {label} batch {batch} ({gflop:.1f} GFLOP), per forward, min of {reps}: "
          f"numpy {fmt_s(tn)} ({gflop / tn:.0f} GFLOP/s), torch {fmt_s(tt)} "
          f"({gflop / tt:.0f} GFLOP/s)  (median: {fmt_s(med(times['numpy']))}, "
          f"{fmt_s(med(times['torch']))}); max abs diff {err:.1e}")
    result("numpy vs torch", f"{label} b{batch}: numpy {fmt_s(tn)}, torch {fmt_s(tt)}, "
           f"ratio {tn / tt:.2f}", f"numpy/torch <= {GOAL_NUMPY:g}", tn / tt <= GOAL_NUMPY)
    if profile:
        per_layer(spec, nm, module, x, xt, min(reps, 3))


def emitted_vs_hand(rounds: int, batch: int = 16, calls: int = 3) -> None:
    spec = dcgan()
    hand = TutorialGenerator().eval()
    built = build_module(spec, seed=0).eval()
    load_by_position(hand, built.state_dict())
    with tempfile.TemporaryDirectory() as tmp:
        emitted = import_emitted(spec, tmp).eval()
    emitted.load_state_dict(built.state_dict())
    mods = {"emitted": emitted, "built": built, "hand": hand}
    x = torch.randn(batch, 100, 1, 1, generator=torch.Generator().manual_seed(0))
    ref = hand(x)
    for label, m in mods.items():
        err = (m(x) - ref).abs().max().item()
        assert err <= 1e-5, (label, err)

    def block(m):
        def run():
            for _ in range(calls):
                m(x)
        return run

    wait_quiet()
    times = interleaved({k: block(m) for k, m in mods.items()}, rounds, warmup=2)
    t = {k: min(v) / calls for k, v in times.items()}
    paired = {k: med([a / b for a, b in zip(v, times["hand"])]) for k, v in times.items()}
    print(f"  [DCGAN generator batch {batch}] per forward, min of {rounds}: emitted "
          f"{fmt_s(t['emitted'])}, build_module {fmt_s(t['built'])}, tutorial Sequential "
          f"{fmt_s(t['hand'])}; paired ratios: emitted {paired['emitted']:.3f}, build_module "
          f"{paired['built']:.3f}")
    for k, what in (("emitted", "emitted"), ("built", "build_module")):
        result("generative emit", f"[DCGAN G b{batch}] {what} {fmt_s(t[k])}, tutorial "
               f"{fmt_s(t['hand'])} (min); paired ratio {paired[k]:.3f}",
               f"{k}/hand <= {GOAL_EMIT}", paired[k] <= GOAL_EMIT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=35)
    ap.add_argument("--unet-size", type=int, default=252)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"bench_generative: {machine()}; numpy {np.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    with torch.no_grad():
        numpy_vs_torch("DCGAN generator", dcgan(), 16, 3, args.reps, args.profile)
        numpy_vs_torch(f"U-Net {args.unet_size}x{args.unet_size}", unet(args.unet_size), 2,
                       1, args.reps, args.profile)
        emitted_vs_hand(args.rounds)


if __name__ == "__main__":
    main()
