"""The fuzzers' CI budget: a fixed set of mutants of the bundled specs and their JSON IR
must never crash nnspec or take over the time limit, and a fixed set of generated valid
specs must check clean, infer exactly torch's shapes and agree across backends.

The longer offline run is ``python -m tests.fuzz`` (see README.md, "Fuzzing").
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from tests.fuzz import __main__ as offline  # noqa: E402
from tests.fuzz.generate import Generated, _out_size, differential, generate  # noqa: E402
from tests.fuzz.mutate import commands, mutant, tokenize  # noqa: E402
from tests.fuzz.pool import run_tasks  # noqa: E402
from tests.fuzz.runner import run_input  # noqa: E402

SEED = 20240601
MUTANTS = 2000
GENERATED = 200
# Seconds per command. The goal is 1 s, and the offline run (`python -m tests.fuzz`, on a
# quiet machine) holds cases to it; here the limit only catches hangs and blow-ups, with
# room for a CI machine that runs other work at the same time (the largest inputs, files
# at the word and layer limits, take up to about 1 s alone and 2-3 s under load).
LIMIT = 5.0


def _report(results: list[dict], total: int) -> str:
    lines = []
    for r in results:
        head = (r.get("data") or b"")[:600].decode("utf-8", "replace").splitlines()[:3]
        what = "; ".join(r.get("mutations") or []) or str(r.get("dims", ""))
        for f in r["failures"]:
            lines.append(f"{r['label']} [{what[:120]}]\n    {f['kind']}: {f['cause']}: "
                         f"{f['message'][:300]}\n" + "".join(f"    | {h[:110]}\n" for h in head))
    causes = sorted({(f["kind"], f["cause"]) for r in results for f in r["failures"]})
    return (f"{len(results)} of {total} cases failed, {len(causes)} causes:\n"
            + "".join(f"  {k}: {c}\n" for k, c in causes) + "\n" + "\n".join(lines[:60])
            + "\nreplay one with: python -m tests.fuzz --replay LABEL")


def test_fuzz_budget():
    """2,000 mutants and 200 generated specs, in one worker with a memory limit."""
    tasks = list(offline.tasks(SEED, MUTANTS, GENERATED))
    failed = [r for r in run_tasks(tasks, jobs=1, limit=LIMIT) if r["failures"]]
    assert not failed, _report(failed, len(tasks))


# ---- the fuzzers themselves -----------------------------------------------------------------


def test_cases_are_deterministic_by_seed():
    assert mutant(3, 17).data == mutant(3, 17).data
    assert mutant(3, 17).data != mutant(4, 17).data
    assert generate(3, 17).text == generate(3, 17).text
    assert generate(3, 17).text != generate(3, 18).text


def test_every_fourth_mutant_is_json_ir_and_mutants_differ_from_their_source():
    from tests.fuzz.mutate import seed_irs, seed_specs

    sources = {t.encode() for _, t in seed_specs()} | {t.encode() for _, t in seed_irs()}
    ms = [mutant(1, i) for i in range(40)]
    assert [m.name for m in ms[:4]] == ["case.nn", "case.nn", "case.nn", "case.json"]
    assert all(m.mutations for m in ms)
    assert sum(m.data in sources for m in ms) <= 2  # a swap of equal tokens is a no-op


def test_tokenizer_round_trips():
    text = 'model M(x: [N, 4]) -> [N, 2] {  # c\n    dense (64 * 2) | relu\n}\n"s" é'
    assert "".join(t for _, t in tokenize(text)) == text


def test_runner_reports_internal_errors_timeouts_and_foreign_writes(monkeypatch, tmp_path):
    import nnspec.tools.cli as cli

    real = cli.cmd_check

    def crash(args):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(cli, "cmd_check", crash)
    _, fails = run_input("case.nn", b"model M(x: [N, 4]) {\n relu\n}\n", [["check", "{}"]])
    assert [(f.kind, f.message) for f in fails] == [("internal", "ZeroDivisionError: boom")]
    assert fails[0].cause.startswith("ZeroDivisionError @ ")

    def hang(args):
        while True:
            pass

    monkeypatch.setattr(cli, "cmd_check", hang)
    _, fails = run_input("case.nn", b"", [["check", "{}"]], limit=0.2)
    assert [f.kind for f in fails] == ["timeout"]

    outside = tmp_path / "written.txt"

    def write_elsewhere(args):
        outside.write_text("x")
        return real(args)

    monkeypatch.setattr(cli, "cmd_check", write_elsewhere)
    results, fails = run_input("case.nn", b"model M(x: [N, 4]) {\n relu\n}\n",
                               [["check", "{}"]])
    assert results[0].rc == 0
    assert [f.kind for f in fails] == ["write"] and str(outside) in fails[0].message


def test_commands_stay_in_the_case_folder():
    m = mutant(1, 0)
    for cmd in commands(m):
        for a in cmd:
            assert not a.startswith("/") and ".." not in a


def test_ceil_size_rule_is_torchs():
    torch = pytest.importorskip("torch")
    for n in range(1, 12):
        for k in (1, 2, 3):
            for s in (1, 2, 3):
                for p in range(0, k // 2 + 1):
                    for ceil in (False, True):
                        want = _out_size(n, k, s, p, p, 1, ceil)
                        if want < 1:
                            continue
                        got = torch.nn.functional.max_pool1d(
                            torch.zeros(1, 1, n), k, s, p, ceil_mode=ceil).shape[-1]
                        assert want == got, (n, k, s, p, ceil)


def test_differential_flags_a_shape_that_differs_from_torch():
    """A ceil-mode pool whose last window would start in the padding: torch drops it."""
    g = Generated(0, 0, "model M(x: [N, 1, H, 4]) {\n    maxpool k=1 s=2 ceil\n}\n",
                  {"N": 1, "H": 10})
    import nnspec

    spec = nnspec.loads(g.text)
    want = spec.types().types[spec.model().output]
    fails = differential(g)
    if want.shape[2].evaluate({"H": 10, "N": 1}) == 5:  # nnspec has the rule right
        assert fails == []
    else:
        assert [f.kind for f in fails][:1] == ["shape"]
        assert "torch (1, 1, 5, 2)" in fails[0].message


def test_generator_covers_every_layer_kind():
    """A new layer kind needs a rule in tests/fuzz/generate.py: this lists the missing."""
    from nnspec.layers import REGISTRY

    kinds = {k.name for k in REGISTRY.values()}
    seen = set()
    for i in range(4000):  # text only: fast (rare kinds, 3-d adaptive pooling, need ~3,000)
        seen |= set(generate(SEED, i).features)
    assert kinds - seen == set()
