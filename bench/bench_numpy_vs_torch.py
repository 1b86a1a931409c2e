"""The NumPy reference interpreter (float32) vs PyTorch on CPU, same weights.

Usage: python bench/bench_numpy_vs_torch.py [--reps 9] [--profile]

  LeNet-5 (specs/lenet5.nn) at batch 64, AlexNet (specs/alexnet.nn) at batch 8:
  NumpyModel(spec, params=<the torch module's state_dict as arrays>) vs
  build_module(spec, seed=0) in eval mode under torch.no_grad(), torch.set_num_threads(2);
  outputs checked equal; interleaved with a 0.3 s pause before each timing (see PAUSE),
  min of --reps (median printed too).
  Goal (the project's): numpy/torch <= 2.

  numpy conv GFLOP/s as a fraction of numpy matmul GFLOP/s, measured by
  bench_npops_conv.measure() (AlexNet's five convolutions together).
  Goal (the project's): >= 0.5.

Some machines set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which can slow NumPy's OpenBLAS:
when either is set, every figure is measured twice, each in a fresh subprocess: as-is and
with both unset (`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`). The BLAS kernel in use
is printed (threadpoolctl when importable, else OpenBLAS's own get_corename via ctypes).
With --profile: per-layer times of both backends and a cProfile of one NumPy forward.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import time

from _common import ROOT, fmt_s, interleaved, machine, med, result, wait_quiet

BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
GOAL_RATIO = 2.0
GOAL_CONV = 0.5
# Seconds of sleep before each timing: OpenBLAS's and torch's OpenMP worker threads keep
# spinning for a while after a call; switching straight from one library to the other makes
# the second compete with the first one's spinning threads for the 2 cores (measured here:
# torch LeNet-5 5.4 ms right after NumPy calls, 2.4 ms after a 0.3 s pause).
PAUSE = 0.3
CASES = [("specs/lenet5.nn", 64, 20), ("specs/alexnet.nn", 8, 1)]  # spec, batch, calls/timing


def blas_info() -> str:
    import numpy as np
    try:
        from threadpoolctl import threadpool_info
        rows = [f"{i.get('internal_api')} {i.get('version')} core={i.get('architecture')} "
                f"threads={i.get('num_threads')}" for i in threadpool_info()
                if i.get("user_api") == "blas"]
        return "threadpoolctl: " + ("; ".join(rows) or "no BLAS found")
    except ImportError:
        pass
    libs = []
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "openblas" in os.path.basename(path).lower() and path not in libs:
                libs.append(path)
    for path in libs:
        lib = ctypes.CDLL(path)
        for suffix in ("", "64_"):
            for pre in ("scipy_openblas", "openblas"):
                try:
                    core = getattr(lib, f"{pre}_get_corename{suffix}")
                    nthr = getattr(lib, f"{pre}_get_num_threads{suffix}")
                except AttributeError:
                    continue
                core.restype = ctypes.c_char_p
                return (f"threadpoolctl not importable; OpenBLAS via ctypes "
                        f"({os.path.basename(path)}): core={core().decode()} "
                        f"threads={nthr()}")
    cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return f"threadpoolctl not importable; numpy BLAS {cfg.get('name')} {cfg.get('version')}"


def _numpy_layer_times(nm, x, reps):
    """Per-layer seconds of NumpyModel (min of reps), walking its plan like __call__."""
    import numpy as np
    from nnspec.backends.numpy import bind_dims
    from nnspec.layers.base import NumpyCtx
    best = {}
    for _ in range(reps):
        ctx = NumpyCtx(env=bind_dims(nm.model, [x]), rng=np.random.default_rng(0))
        values = {nm.model.inputs[0].id: x}
        for kind, node, keys, free in nm._plan:
            w = {k: nm.params[f] for k, f in keys.items()}
            t0 = time.perf_counter()
            values[node.id] = kind.numpy(node.p, w, [values[v] for v in node.inputs], ctx)
            t = time.perf_counter() - t0
            best[node.name] = min(best.get(node.name, t), t)
    return best


def _torch_layer_times(module, x, reps):
    """Per-layer seconds of the SpecModule (min of reps), walking its compiled steps."""
    env = module._bind((x,))
    names = [loc[3] for loc in module.locations]
    best = {}
    for _ in range(reps):
        vals = [x] + [None] * (module._n_slots - 1)
        for name, (run, mod, ins, out, free) in zip(names, module._steps):
            t0 = time.perf_counter()
            vals[out] = run(mod, [vals[j] for j in ins], env)
            t = time.perf_counter() - t0
            best[name] = min(best.get(name, t), t)
    return best


def profile(spec, nm, module, x, xt, reps) -> None:
    import cProfile
    import pstats
    try:
        time.sleep(PAUSE)
        tn = _numpy_layer_times(nm, x, reps)
        time.sleep(PAUSE)
        tt = _torch_layer_times(module, xt, reps)
    except Exception as e:  # the walkers use internals; never fail the benchmark on them
        print(f"    (per-layer timing unavailable: {e!r})")
    else:
        total_n, total_t = sum(tn.values()), sum(tt.values())
        kinds = {r.name: r.kind for r in spec.layers()}
        print(f"    per layer (min of {reps}), sorted by NumPy time; sums: numpy "
              f"{fmt_s(total_n)}, torch {fmt_s(total_t)}")
        for name in sorted(tn, key=tn.get, reverse=True)[:8]:
            print(f"      {name:12s} {kinds[name]:10s} numpy {fmt_s(tn[name]):>9s} "
                  f"({tn[name] / total_n:5.1%})  torch {fmt_s(tt[name]):>9s}  "
                  f"ratio {tn[name] / tt[name]:5.1f}")
    pr = cProfile.Profile()
    pr.enable()
    nm(x)
    pr.disable()
    print("    cProfile of one NumPy forward (top 8 by internal time):")
    st = pstats.Stats(pr)
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:8]
    for (file, line, fn), (cc, nc, tt_, ct, _) in rows:
        print(f"      {tt_ * 1e3:8.2f} ms self {ct * 1e3:8.2f} ms cum  {nc:5d} calls  "
              f"{os.path.basename(file)}:{line}({fn})")


def child(label: str, reps: int, do_profile: bool) -> None:
    import numpy as np
    import torch
    import nnspec
    from nnspec.backends.numpy import NumpyModel
    from nnspec.backends.torch import build_module
    import bench_npops_conv

    torch.set_num_threads(2)
    blas = {k: os.environ.get(k, "(unset)") for k in BLAS_VARS}
    print(f"  [{label}] {machine()}; numpy {np.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"  [{label}] {', '.join(f'{k}={v}' for k, v in blas.items())}; {blas_info()}")
    with torch.no_grad():
        for path, batch, calls in CASES:
            spec = nnspec.load(str(ROOT / path))
            module = build_module(spec, seed=0).eval()
            params = {k: v.numpy() for k, v in module.state_dict().items()}
            nm = NumpyModel(spec, params=params, dtype=np.float32)
            shape = (batch, *(d.value for d in spec.model().inputs[0].dims()[1:]))
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            xt = torch.from_numpy(x)
            ref = module(xt).numpy()
            got = nm(x)
            assert got.dtype == np.float32, got.dtype
            err = float(np.abs(got - ref).max())
            assert err <= 1e-3 * max(1.0, float(np.abs(ref).max())), err

            def run_np():
                for _ in range(calls):
                    nm(x)

            def run_t():
                for _ in range(calls):
                    module(xt)

            wait_quiet()
            times = interleaved({"numpy": run_np, "torch": run_t}, reps, warmup=1,
                                pause=PAUSE)
            times = {k: [t / calls for t in v] for k, v in times.items()}
            tn, tt = min(times["numpy"]), min(times["torch"])
            name = spec.model().name
            print(f"  [{label}] {name} batch {batch}, per forward, min of {reps}: numpy "
                  f"{fmt_s(tn)}, torch {fmt_s(tt)}  (median: {fmt_s(med(times['numpy']))}, "
                  f"{fmt_s(med(times['torch']))}); max abs diff {err:.1e}")
            result("numpy vs torch", f"[{label}] {name} b{batch}: numpy {fmt_s(tn)}, torch "
                   f"{fmt_s(tt)}, ratio {tn / tt:.2f}", f"numpy/torch <= {GOAL_RATIO:g}",
                   tn / tt <= GOAL_RATIO)
            if do_profile:
                profile(spec, nm, module, x, xt, reps)
    wait_quiet()
    r = bench_npops_conv.measure(reps)
    bench_npops_conv.print_measure(r, indent=f"  [{label}] ")
    frac = r["alexnet"] / r["matmul"]
    result("numpy vs torch", f"[{label}] numpy conv (AlexNet conv1-5) {r['alexnet']:.0f} "
           f"GFLOP/s / matmul {r['matmul']:.0f} GFLOP/s = {frac:.2f}",
           f"conv/matmul >= {GOAL_CONV}", frac >= GOAL_CONV)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--child", metavar="LABEL", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.reps, args.profile)
        return
    print("bench_numpy_vs_torch:")
    variants = [("as-is", dict(os.environ))]
    if any(k in os.environ for k in BLAS_VARS):
        variants.append(("OPENBLAS_* unset",
                         {k: v for k, v in os.environ.items() if k not in BLAS_VARS}))
    else:
        print(f"  ({' and '.join(BLAS_VARS)} are not set here: the as-is figures are the "
              "unset figures)")
    extra = ["--profile"] if args.profile else []
    for label, env in variants:
        p = subprocess.run([sys.executable, __file__, "--child", label, "--reps",
                            str(args.reps), *extra], env=env, cwd=ROOT)
        if p.returncode:
            raise SystemExit(p.returncode)


if __name__ == "__main__":
    main()
