"""Cold `python -m nnspec compile SPEC -o model.py` vs cold `python -m nnspec check SPEC`.

Usage: python bench/bench_compile_cold.py [--reps 7] [SPEC ...]

Each figure is a fresh interpreter (subprocess), check / compile / the emitter through the
API interleaved, median of --reps, for each spec (default: LeNet-5, ResNet-18 and the
Transformer base, whose blocks come from the bundled library). The commands run in a
temporary copy of nnspec/, grammar/ and specs/ (no .pyc file is ever written into the
repository) with PYTHONDONTWRITEBYTECODE unset after `compileall` (what a user sees).
`api` is `nnspec.backends.emit.write_source` from `python -c`: the emitter alone, whatever the
command line imports. Goal (the project's): compile / check <= 1.5.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from _common import ROOT, fmt_s, machine, med, result, run_timed as run, wait_quiet

GOAL = 1.5
SPECS = ["specs/lenet5.nn", "specs/resnet18.nn", "specs/transformer_base.nn"]


def commands(spec: str, out: str) -> dict[str, list[str]]:
    api = ("import sys, nnspec; from nnspec.backends.emit import write_source; "
           "write_source(nnspec.load(sys.argv[1]), sys.argv[2])")
    return {"check": [sys.executable, "-m", "nnspec", "check", "-q", spec],
            "compile": [sys.executable, "-m", "nnspec", "compile", "-q", spec, "-o", out],
            "api": [sys.executable, "-c", api, spec, out]}


def torch_imported(cmd, env, cwd) -> bool:
    p = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], cwd=cwd, env=env,
                       capture_output=True, text=True)
    names = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines()
             if line.startswith("import time:")}
    return any(n == "torch" or n.startswith("torch.") for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("specs", nargs="*", default=SPECS)
    args = ap.parse_args()
    print(f"bench_compile_cold: {machine()}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="nnspec-compile-cold-") as tmp:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for d in ("nnspec", "grammar", "specs"):
            if (ROOT / d).is_dir():
                shutil.copytree(ROOT / d, os.path.join(tmp, d), ignore=ignore)
        subprocess.run([sys.executable, "-m", "compileall", "-q", "nnspec"], cwd=tmp, env=env,
                       check=True, stdout=subprocess.DEVNULL)
        worst = 0.0
        for spec in args.specs:
            cmds = commands(spec, os.path.join(tmp, "model.py"))
            for cmd in cmds.values():  # warm-up: OS file cache, .pyc files
                run(cmd, env, tmp)
            wait_quiet()
            times: dict[str, list[float]] = {k: [] for k in cmds}
            for r in range(args.reps):
                names = list(cmds)
                for k in names[r % len(names):] + names[:r % len(names)]:
                    times[k].append(run(cmds[k], env, tmp))
            c, k, a = (med(times[x]) for x in ("check", "compile", "api"))
            uses_torch = torch_imported(cmds["compile"], env, tmp)
            print(f"  {spec}: check {fmt_s(c)}, compile -o {fmt_s(k)} (imports torch: "
                  f"{'yes' if uses_torch else 'no'}), emitter via the API {fmt_s(a)}; "
                  f"compile/check {k / c:.2f}, api/check {a / c:.2f}")
            worst = max(worst, k / c)
        result("cold compile", f"compile -o / check, worst of {len(args.specs)} specs: "
               f"{worst:.2f}", f"<= {GOAL}", worst <= GOAL)


if __name__ == "__main__":
    main()
