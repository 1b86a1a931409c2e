"""`nnspec weights map` on GPT-2 small (124 M parameters, random weights): time and memory.

Usage: python bench/bench_weights_map.py [--reps 5]

The checkpoint: transformers' GPT2LMHeadModel(GPT2Config()) at its full size (vocabulary
50,257, 12 layers of 768), random initial weights, written with save_pretrained as
safetensors (498 MB of float32; the tied head stored once) into a temporary folder; the
same state_dict is also written with torch.save as pytorch_model.bin (both keys of the tied
head, one tensor). The spec is specs/gpt2.nn as it is.

Measured, each in a fresh subprocess (torch and nnspec imported, the spec loaded before the
clock starts; the median of --reps runs):

  map            map_weights(spec, folder): headers only, the alignment, the table
  map+load       the same, then build_module(spec, params=wm.state_dict()): every tensor
                 read and copied into the module's parameters

and three times `nnspec weights map specs/gpt2.nn FOLDER -q` as a user runs it (interpreter
start and imports included). Memory, sampled every 5 ms, less what the process held before
mapping: the peak of its anonymous memory (RssAnon: the checkpoint's mapped pages belong to
the page cache, reclaimable, not to the process) and of its RSS (the mapped pages
included), each over the weight bytes. Goals: map <= 1 s; map+load anonymous peak <= 1.25 x
the weights (reading lazily: the module's own parameters and little more, no second copy).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from _common import ROOT, fmt_s, machine, result, run_timed, wait_quiet

GOAL_MAP_S, GOAL_MEM = 1.0, 1.25

CHILD = """\
import json, sys, threading, time
sys.path.insert(0, {root!r})
import torch
import nnspec
from nnspec.backends.checkpoint import map_weights
from nnspec.backends.torch import build_module

def mem():
    out = {{}}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "VmRSS:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out["RssAnon"], out["VmRSS"]

peak = list(mem())
done = threading.Event()
def sample():
    while not done.wait(0.005):
        now = mem()
        peak[0], peak[1] = max(peak[0], now[0]), max(peak[1], now[1])
threading.Thread(target=sample, daemon=True).start()
spec = nnspec.load({spec!r})
base = mem()
peak[:] = base
t0 = time.perf_counter()
out = {{}}
if {what!r} != "baseline":
    wm = map_weights(spec, {ckpt!r})
    assert wm.ok, wm.problems()
    out["map_s"] = time.perf_counter() - t0
    if {what!r} == "load":
        net = build_module(spec, params=wm.state_dict())
        out["load_s"] = time.perf_counter() - t0
        out["params"] = sum(p.numel() for p in net.parameters())
done.set()
now = mem()
out["peak_anon"] = max(peak[0], now[0]) - base[0]
out["peak_rss"] = max(peak[1], now[1]) - base[1]
print(json.dumps(out))
"""


def child(what: str, ckpt: str) -> dict:
    code = CHILD.format(root=str(ROOT), spec=str(ROOT / "specs" / "gpt2.nn"), ckpt=ckpt,
                        what=what)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"the {what} run failed:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def make_checkpoint(folder: str) -> int:
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    model.save_pretrained(folder, safe_serialization=True)
    torch.save(model.state_dict(), os.path.join(folder, "pytorch_model.bin"))
    return sum(p.numel() for p in model.parameters()) * 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    print(f"bench_weights_map: {machine()}")
    sys.path.insert(0, str(ROOT / "tests"))
    from _torchvision import models  # transformers imports torchvision when it is there

    try:
        models()
    except BaseException:  # torchvision absent: transformers does without it
        pass
    with tempfile.TemporaryDirectory() as tmp:
        nbytes = make_checkpoint(tmp)
        st = os.path.join(tmp, "model.safetensors")
        pt = os.path.join(tmp, "pytorch_model.bin")
        print(f"  checkpoint: GPT-2 small, {nbytes / 1e6:,.0f} MB of float32 weights")
        wait_quiet()
        for name, path in (("safetensors", st), ("torch .bin", pt)):
            maps = [child("map", path)["map_s"] for _ in range(args.reps)]
            loads = [child("load", path) for _ in range(args.reps)]
            load_s = statistics.median(r["load_s"] for r in loads)
            anon = max(r["peak_anon"] for r in loads) / nbytes
            rss = max(r["peak_rss"] for r in loads) / nbytes
            print(f"  {name}: map {fmt_s(statistics.median(maps))} (min {fmt_s(min(maps))}), "
                  f"map+load {fmt_s(load_s)}; peak anonymous memory {anon:.2f} x the weights, "
                  f"peak RSS {rss:.2f} x")
            result(f"weights_map_{name.split()[-1].lstrip('.')}",
                   f"map {fmt_s(statistics.median(maps))}", f"<= {GOAL_MAP_S:.0f} s",
                   statistics.median(maps) <= GOAL_MAP_S)
            result(f"weights_map_{name.split()[-1].lstrip('.')}_memory",
                   f"map+load peak anon {anon:.2f}x weights", f"<= {GOAL_MEM}x",
                   anon <= GOAL_MEM)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        cli = [sys.executable, "-m", "nnspec", "weights", "map",
               str(ROOT / "specs" / "gpt2.nn"), tmp, "-q"]
        times = [run_timed(cli, env, str(ROOT)) for _ in range(3)]
        result("weights_map_cli", f"nnspec weights map {fmt_s(statistics.median(times))}",
               "(reference)", None)


if __name__ == "__main__":
    main()
