"""Cold start of `python -m nnspec check specs/` vs importing nnspec's two dependencies.

Usage: python bench/bench_cold_check.py [--reps 7] [--importtime] [--cpu]
                                      [--vs-rev REV | --vs-dir DIR]

Each figure is a fresh interpreter (subprocess), interleaved check / import / bare python,
median of --reps. The commands run in a temporary copy of nnspec/, grammar/ and specs/
(so no .pyc file is ever written into the repository, and a stale __pycache__ there cannot
flatter the figure). Measured twice:
  as-is     the environment as given (PYTHONDONTWRITEBYTECODE may be set here: then nnspec's
            own modules are compiled from source on every start, as in a fresh checkout);
  pyc warm  PYTHONDONTWRITEBYTECODE unset, after `python -m compileall -q nnspec` (in the
            copy) and one warm-up run have written the .pyc files (what a user sees).
Goals (the project's): cold check <= 0.5 s; check specs/ <= 2.0x and check
specs/lenet5.nn <= 1.8x the import of lark and pydantic (medians of the same run).

--vs-rev REV also times the check of the tree at git revision REV (``git archive``), in the
same interleaved rounds, and prints the ratio now / REV per mode: a change's effect on the
cold start, measured side by side (``--vs-rev HEAD~1``). --vs-dir DIR does the same with the
nnspec/ and grammar/ of another working copy (a change not committed yet).
--cpu times each run by its CPU time (user + system, from the child's resource usage)
instead of the wall clock: on a machine shared with other processes, waiting for a core
then does not count.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

from _common import ROOT, fmt_s, machine, med, result, run_timed, wait_quiet

#: how one run is timed: run_timed (wall seconds) or run_cpu (--cpu)
run = run_timed


def run_cpu(cmd, env, cwd) -> float:
    """CPU seconds (user + system) of one subprocess run of ``cmd``, its output captured."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    out = p.stdout.read()
    p.stdout.close()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{out.decode()}")
    return usage.ru_utime + usage.ru_stime

GOAL = 0.5
GOAL_RATIO = 2.0
GOAL_RATIO_LENET = 1.8
CHECK = [sys.executable, "-m", "nnspec", "check", "specs/"]
LENET = [sys.executable, "-m", "nnspec", "check", "specs/lenet5.nn"]
IMPORT = [sys.executable, "-c", "import lark, pydantic"]
BARE = [sys.executable, "-c", "pass"]


def measure(env, reps: int, cwd, other=None) -> dict[str, list[float]]:
    """Interleaved runs of check, import and bare python in ``cwd`` (and of check in the
    tree ``other``, when given)."""
    cmds = {"check": (CHECK, cwd), "lenet": (LENET, cwd), "import": (IMPORT, cwd),
            "bare": (BARE, cwd)}
    if other is not None:
        cmds["check@rev"] = (CHECK, other)
        cmds["lenet@rev"] = (LENET, other)
    for cmd, where in cmds.values():  # warm-up: OS file cache, lark's grammar cache
        run(cmd, env, where)
    times = {k: [] for k in cmds}
    for _ in range(reps):
        for k, (cmd, where) in cmds.items():
            times[k].append(run(cmd, env, where))
    return times


def import_profile(env, cwd, top: int = 12) -> None:
    """Largest cumulative import times of one check run (python -X importtime)."""
    p = subprocess.run([sys.executable, "-X", "importtime", *CHECK[1:]], cwd=cwd, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rows = []
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), (len(m.group(3)) - 1) // 2, m.group(4)))
    rows.sort(reverse=True)
    print("  imports by cumulative time, 3 levels deep (-X importtime, one run):")
    for cum, depth, name in [r for r in rows if r[1] <= 2][:top]:
        print(f"    {cum / 1e3:7.1f} ms  {'  ' * depth}{name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--importtime", action="store_true", help="also print -X importtime")
    ap.add_argument("--cpu", action="store_true",
                    help="time the runs by CPU time (user + system) instead of wall time")
    ap.add_argument("--vs-rev", metavar="REV",
                    help="also time the check of git revision REV, side by side")
    ap.add_argument("--vs-dir", metavar="DIR",
                    help="also time the check of another working copy's nnspec/, side by side")
    args = ap.parse_args()
    if args.vs_rev and args.vs_dir:
        ap.error("--vs-rev and --vs-dir exclude each other")
    args.vs_name = args.vs_rev or args.vs_dir
    if args.cpu:
        global run
        run = run_cpu
    print(f"bench_cold_check: {machine()}")

    as_is = dict(os.environ)
    warm = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if "PYTHONDONTWRITEBYTECODE" not in os.environ:
        print("  (PYTHONDONTWRITEBYTECODE is not set: both modes use the same environment)")
    with tempfile.TemporaryDirectory(prefix="nnspec-cold-") as tmp:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for d in ("nnspec", "grammar", "specs"):
            if (ROOT / d).is_dir():
                shutil.copytree(ROOT / d, os.path.join(tmp, d), ignore=ignore)
        other = None
        if args.vs_name:
            # the revision's nnspec/ and grammar/, beside this tree's specs/ (the same input)
            other = os.path.join(tmp, "rev")
            os.mkdir(other)
            if args.vs_rev:
                archive = subprocess.run(["git", "archive", args.vs_rev, "nnspec", "grammar"],
                                         cwd=ROOT, check=True, stdout=subprocess.PIPE).stdout
                subprocess.run(["tar", "-x", "-C", other], input=archive, check=True)
            else:
                for d in ("nnspec", "grammar"):
                    shutil.copytree(os.path.join(args.vs_dir, d), os.path.join(other, d),
                                    ignore=ignore)
            shutil.copytree(ROOT / "specs", os.path.join(other, "specs"))
        for label, env in (("as-is", as_is), ("pyc warm", warm)):
            if label == "pyc warm":
                for where in filter(None, (tmp, other)):
                    subprocess.run([sys.executable, "-m", "compileall", "-q", "nnspec"],
                                   cwd=where, env=warm, check=True, stdout=subprocess.DEVNULL)
            run_mode(label, env, tmp, args, other)


def run_mode(label, env, cwd, args, other=None) -> None:
    where = subprocess.run([sys.executable, "-c", "import nnspec; print(nnspec.__file__)"],
                           cwd=cwd, env=env, capture_output=True, text=True).stdout.strip()
    assert where.startswith(os.path.realpath(cwd)) or where.startswith(cwd), where
    wait_quiet()
    t = measure(env, args.reps, cwd, other)
    c, i, b = med(t["check"]), med(t["import"]), med(t["bare"])
    clock = "CPU time" if run is run_cpu else "wall time"
    print(f"  [{label}] {clock}, median of {args.reps}: check specs/ {fmt_s(c)} "
          f"(min {fmt_s(min(t['check']))}), import lark+pydantic {fmt_s(i)} "
          f"(min {fmt_s(min(t['import']))}), bare python {fmt_s(b)}")
    lenet = med(t["lenet"])
    print(f"  [{label}] ratio check/import {c / i:.2f}; nnspec's own share "
          f"(check - import) {fmt_s(c - i)}; check lenet5.nn {fmt_s(lenet)} "
          f"(min {fmt_s(min(t['lenet']))}), ratio {lenet / i:.2f}")
    result("cold check", f"check specs/ ({label}) {c:.2f} s (min {min(t['check']):.2f}), "
           f"import lark+pydantic {i:.2f} s, ratio {c / i:.1f}", f"median <= {GOAL} s",
           c <= GOAL)
    result("cold check ratio", f"check specs/ ({label}) / import lark+pydantic {c / i:.2f}",
           f"<= {GOAL_RATIO}", c / i <= GOAL_RATIO)
    result("cold check ratio", f"check lenet5.nn ({label}) / import lark+pydantic "
           f"{lenet / i:.2f}", f"<= {GOAL_RATIO_LENET}", lenet / i <= GOAL_RATIO_LENET)
    if other is not None:
        r = med(t["check@rev"])
        ratios = [a / b for a, b in zip(t["check"], t["check@rev"])]
        print(f"  [{label}] check specs/ at {args.vs_name}: {fmt_s(r)} (min "
              f"{fmt_s(min(t['check@rev']))}); now / {args.vs_name}, paired median "
              f"{med(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")
        r = med(t["lenet@rev"])
        ratios = [a / b for a, b in zip(t["lenet"], t["lenet@rev"])]
        print(f"  [{label}] check lenet5.nn at {args.vs_name}: {fmt_s(r)} (min "
              f"{fmt_s(min(t['lenet@rev']))}); now / {args.vs_name}, paired median "
              f"{med(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")
    if args.importtime:
        import_profile(env, cwd)


if __name__ == "__main__":
    main()
