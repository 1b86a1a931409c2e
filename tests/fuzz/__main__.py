"""The offline fuzz run::

    python -m tests.fuzz --mutants 100000 --generated 3000 --seed 1 --jobs 2 --out findings/

prints the figures (cases, internal errors, hangs, shape and backend disagreements) and
writes every failing input to the output folder, one subfolder per cause (exception type
and innermost nnspec frame), with a minimised reproducer of each cause.
``--replay mutant:SEED:INDEX`` (or ``generated:SEED:INDEX``) reruns one case and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict

from .pool import MEMORY_LIMIT, run_tasks
from .runner import DEFAULT_LIMIT

KINDS = ("internal", "timeout", "crash", "write", "shape", "backend", "invalid")


def tasks(seed: int, mutants: int, generated: int, start: int = 0):
    """Interleaved, so that a short run already sees both kinds."""
    g = 0
    step = max(1, mutants // max(generated, 1)) if generated else 0
    for i in range(start, start + mutants):
        yield ("mutant", seed, i)
        if step and (i - start) % step == 0 and g < generated:
            yield ("generated", seed, start + g)
            g += 1
    for j in range(g, generated):
        yield ("generated", seed, start + j)


class Findings:
    """Failures grouped by cause: counts, labels and the smallest input of each."""

    def __init__(self):
        self.cases = defaultdict(int)
        self.failed_cases = defaultdict(int)
        self.by_cause: dict[tuple[str, str], dict] = {}

    def add(self, result: dict) -> list[dict]:
        self.cases[result["kind"]] += 1
        fails = result["failures"]
        if fails:
            self.failed_cases[result["kind"]] += 1
        for f in fails:
            key = (f["kind"], f["cause"])
            entry = self.by_cause.setdefault(key, {"count": 0, "labels": [], "example": None})
            entry["count"] += 1
            if len(entry["labels"]) < 20:
                entry["labels"].append(result["label"])
            data = result.get("data")
            ex = entry["example"]
            if data is not None and (ex is None or len(data) < len(ex["data"])):
                entry["example"] = {**{k: v for k, v in result.items() if k != "failures"},
                                    "failure": f}
        return fails

    def figures(self) -> dict:
        per_kind = defaultdict(int)
        for (kind, _), e in self.by_cause.items():
            per_kind[kind] += e["count"]
        return {"cases": dict(self.cases), "failing cases": dict(self.failed_cases),
                **{k: per_kind.get(k, 0) for k in KINDS},
                "distinct causes": len(self.by_cause)}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80]


def _ext(example: dict) -> str:
    return ".json" if example.get("name", "").endswith(".json") else ".nn"


def write_findings(findings: Findings, out: str, minimise: bool, jobs: int, limit: float,
                   memory: int | None) -> None:
    """One folder per cause: the smallest failing input, its minimised form, a note."""
    os.makedirs(out, exist_ok=True)
    ordered = sorted(findings.by_cause.items(), key=lambda kv: (KINDS.index(kv[0][0])
                                                                if kv[0][0] in KINDS else 99,
                                                                -kv[1]["count"]))
    mini_tasks = []
    folders = {}
    for n, ((kind, cause), entry) in enumerate(ordered):
        folder = os.path.join(out, kind, f"{n:03d}_{_slug(cause)}")
        os.makedirs(folder, exist_ok=True)
        folders[(kind, cause)] = folder
        ex = entry["example"]
        note = {"kind": kind, "cause": cause, "count": entry["count"], "labels": entry["labels"]}
        if ex is not None:
            f = ex["failure"]
            note.update(message=f["message"], command=f["command"], label=ex["label"],
                        mutations=ex.get("mutations"), source=ex.get("source"),
                        dims=ex.get("dims"), detail=f["detail"])
            with open(os.path.join(folder, "input" + _ext(ex)), "wb") as fh:
                fh.write(ex["data"])
            if minimise and kind not in ("crash", "write"):
                if ex["kind"] == "generated":
                    extra = {"dims": ex["dims"], "index": int(ex["label"].split(":")[2])}
                else:
                    from .mutate import commands, mutant

                    s, i = map(int, ex["label"].split(":")[1:])
                    extra = commands(mutant(s, i))
                mini_tasks.append(("minimise", ex["data"], ex["name"], ex["kind"],
                                   (cause, extra), (kind, cause)))
        with open(os.path.join(folder, "cause.json"), "w") as fh:
            json.dump(note, fh, indent=1, default=str)
    if mini_tasks:
        print(f"minimising {len(mini_tasks)} causes...", file=sys.stderr)
        for r in run_tasks(mini_tasks, jobs=jobs, limit=limit, memory=memory, hard_timeout=300):
            key = tuple(r.get("key") or ())
            if r.get("data") and key in folders:
                ex = findings.by_cause[key]["example"]
                with open(os.path.join(folders[key], "min" + _ext(ex)), "wb") as fh:
                    fh.write(r["data"])
    with open(os.path.join(out, "SUMMARY.tsv"), "w") as fh:
        fh.write("kind\tcause\tcount\tfolder\texample\tmessage\n")
        for (kind, cause), entry in ordered:
            ex = entry["example"] or {}
            msg = (ex.get("failure") or {}).get("message", "").replace("\t", " ")
            fh.write(f"{kind}\t{cause}\t{entry['count']}\t"
                     f"{os.path.relpath(folders[(kind, cause)], out)}\t{ex.get('label', '')}\t"
                     f"{msg.splitlines()[0][:200] if msg else ''}\n")


def replay(label: str, limit: float) -> int:
    from .pool import handle, warm_up

    kind, seed, index = label.split(":")
    warm_up()
    r = handle((kind, int(seed), int(index)), limit)
    if kind == "mutant":
        from .mutate import mutant

        m = mutant(int(seed), int(index))
        print(f"# {label} from {m.source}: {'; '.join(m.mutations)}")
        sys.stdout.write(m.data.decode("utf-8", "replace")[:5000] + "\n")
    else:
        from .generate import generate

        g = generate(int(seed), int(index))
        print(f"# {label} dims {g.dims}")
        sys.stdout.write(g.text)
    for f in r["failures"]:
        print(f"{f['kind']}: {f['cause']}: {f['message']}")
        if f["detail"]:
            print(f["detail"])
    return 1 if r["failures"] else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mutants", type=int, default=10000)
    ap.add_argument("--generated", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", type=int, default=0, help="index of the first case")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (0: in-process)")
    ap.add_argument("--limit", type=float, default=DEFAULT_LIMIT,
                    help="seconds per command before it counts as a hang (default 1)")
    ap.add_argument("--memory", type=int, default=MEMORY_LIMIT // 2**20,
                    help="MiB of address space per worker (0: no limit)")
    ap.add_argument("--out", default="findings", help="folder for the failing inputs")
    ap.add_argument("--no-minimise", action="store_true")
    ap.add_argument("--replay", metavar="LABEL", help="rerun one case, e.g. mutant:1:42")
    args = ap.parse_args(argv)
    if args.replay:
        return replay(args.replay, args.limit)
    memory = args.memory * 2**20 if args.memory else None
    findings = Findings()
    start = time.monotonic()
    total = args.mutants + args.generated
    done = 0
    for r in run_tasks(tasks(args.seed, args.mutants, args.generated, args.start), args.jobs,
                       args.limit, memory):
        if r.get("data") is None and r.get("task"):
            r["data"], r["name"] = _regenerate(r["task"])
        findings.add(r)
        done += 1
        if done % 1000 == 0 or done == total:
            fig = findings.figures()
            print(f"[{time.monotonic() - start:7.0f} s] {done}/{total} cases: "
                  + ", ".join(f"{k} {fig[k]}" for k in KINDS if fig[k]), file=sys.stderr)
    write_findings(findings, args.out, not args.no_minimise, max(args.jobs, 1), args.limit,
                   memory)
    fig = findings.figures()
    fig["seconds"] = round(time.monotonic() - start, 1)
    print(json.dumps(fig, indent=1))
    for (kind, cause), e in sorted(findings.by_cause.items(), key=lambda kv: -kv[1]["count"]):
        print(f"{e['count']:6d}  {kind:<9} {cause}")
    print(f"failing inputs in {args.out}/ (SUMMARY.tsv)")
    return 1 if findings.by_cause else 0


def _regenerate(task: tuple) -> tuple[bytes, str]:
    """The input of a case whose worker died: cases are pure functions of seed and index."""
    kind, seed, index = task
    if kind == "mutant":
        from .mutate import mutant

        m = mutant(seed, index)
        return m.data, m.name
    from .generate import generate

    return generate(seed, index).text.encode(), "case.nn"


if __name__ == "__main__":
    sys.exit(main())
