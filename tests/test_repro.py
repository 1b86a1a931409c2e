"""Inputs found by fuzzing (tests/data/repro/, see its README): each once crashed nnspec,
hung it, inferred a shape torch does not produce, or made the backends disagree.

- syntax/, ir/, curated/: ``check`` (every format) and ``summary`` exit 0 or 1, never 3
  (internal error), within the time limit;
- shapes/: at the file's ``# dims:`` the inferred shape of every layer is torch's;
- crosscheck/: ``crosscheck --dtype float64`` at the file's dims passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fuzz.runner import run_command

DATA = Path(__file__).parent / "data" / "repro"
LIMIT = 2.0  # seconds per command: the 1 s with a margin for a slow CI machine


def _files(folder: str) -> list[Path]:
    return sorted((DATA / folder).iterdir())


def _dims(path: Path) -> dict[str, int]:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# dims:"):
            return json.loads(line[len("# dims:"):])
    raise AssertionError(f"{path.name} has no '# dims:' line")


def _ids(paths):
    return [f"{p.parent.name}/{p.name}" for p in paths]


def _run_ok(argv: list[str], allowed=(0, 1)):
    r = run_command(argv, LIMIT)
    assert r.failure is None, f"{' '.join(argv)}: {r.failure.line()}\n{r.failure.detail}"
    assert r.rc in allowed, f"{' '.join(argv)} exited {r.rc}:\n{r.stderr[-2000:]}"
    return r


def test_index_lists_every_file():
    listed = {line.split("\t")[0] for line in
              (DATA / "INDEX.tsv").read_text(encoding="utf-8").splitlines()[1:] if line}
    present = {f"{p.parent.name}/{p.name}"
               for folder in ("syntax", "ir", "shapes", "crosscheck") for p in _files(folder)}
    assert listed == present


ERROR_INPUTS = _files("syntax") + _files("ir") + _files("curated")


@pytest.mark.parametrize("path", ERROR_INPUTS, ids=_ids(ERROR_INPUTS))
def test_check_and_summary_answer_without_internal_error(path):
    first = _run_ok(["check", str(path)])
    for fmt in ("json", "github"):
        r = _run_ok(["check", "--format", fmt, str(path)])
        assert r.rc == first.rc
    if first.rc == 1:
        assert "error" in first.stdout + first.stderr
    _run_ok(["summary", str(path)])


def test_not_utf8_is_a_located_error():
    path = DATA / "curated" / "R22_not_utf8.nn"
    r = _run_ok(["check", str(path)], allowed=(1,))
    assert f"{path}:2:5: error:" in r.stdout, r.stdout
    assert "0xff" in r.stdout.lower(), r.stdout


def test_maxpool_padding_torch_rejects_is_lowered_with_an_explicit_pad():
    """torch's pooling bounds the padding by half the (undilated) kernel: k=3 p=2 d=2 is
    refused there; nnspec lowers it as F.pad (-inf) and the pool, and the backends agree."""
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError):
        torch.nn.functional.max_pool1d(torch.zeros(1, 1, 8), 3, 3, 2, 2)
    path = str(DATA / "curated" / "R10_maxpool_dilated_padding.nn")
    _run_ok(["check", path], allowed=(0,))
    _run_ok(["crosscheck", path], allowed=(0,))


CROSSCHECK_CURATED = ["R11_attention_fully_masked_row.nn", "R12a_crosscheck_both_minus_inf.nn",
                      "R12b_crosscheck_leaky_inf.nn", "R13_crosscheck_near_zero.nn",
                      "R18b_crosscheck_small.nn"]


@pytest.mark.parametrize("name", CROSSCHECK_CURATED)
def test_curated_crosscheck_agrees_or_refuses_the_spec(name):
    pytest.importorskip("torch")
    path = DATA / "curated" / name
    check = _run_ok(["check", str(path)])
    r = _run_ok(["crosscheck", "--dtype", "float64", str(path)], allowed=(check.rc,))
    assert "diverges" not in r.stdout and "FAILED" not in r.stdout, r.stdout


def test_crosscheck_refuses_a_huge_activation_up_front():
    pytest.importorskip("torch")
    r = _run_ok(["crosscheck", str(DATA / "curated" / "R18_crosscheck_huge_activation.nn")],
                allowed=(1,))
    assert "bytes" in r.stderr or "B" in r.stderr, r.stderr


@pytest.mark.parametrize("name", ["R06_as_training.nn", "R07_dunder_alias_name_mangling.nn",
                                  "R08a_model_named_math.nn", "R08b_model_named_super.nn",
                                  "R08c_model_named_ChoGRU.nn", "R08d_input_named_float.nn",
                                  "R08e_model_named_float.nn",
                                  "R08f_model_named_add_sinusoidal.nn",
                                  "R09_duplicate_class_names.nn"])
def test_names_that_clash_in_emitted_code_compile_or_are_errors(name, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "out.py"
    r = _run_ok(["compile", str(DATA / "curated" / name), "-o", str(out)])
    assert out.exists() == (r.rc == 0)


def _shape_cases():
    cases = [(p, _dims(p)) for p in _files("shapes")]
    r14 = DATA / "curated" / "R14_ceil_pool_symbolic.nn"
    cases += [(r14, {"N": 1, "H": h}) for h in range(1, 13)]
    return cases


SHAPE_CASES = _shape_cases()


@pytest.mark.parametrize("path,dims", SHAPE_CASES,
                         ids=[f"{p.name}-{'-'.join(f'{k}{v}' for k, v in d.items())}"
                              for p, d in SHAPE_CASES])
def test_inferred_shapes_are_torchs(path, dims):
    pytest.importorskip("torch")
    import nnspec
    from tests.fuzz.generate import shape_failures

    spec = nnspec.load(str(path))
    fails = shape_failures(spec, spec.model().name, dims)
    assert not fails, "\n".join(f.line() for f in fails)


CROSSCHECK_FILES = _files("crosscheck")


@pytest.mark.parametrize("path", CROSSCHECK_FILES, ids=_ids(CROSSCHECK_FILES))
def test_crosscheck_passes(path):
    pytest.importorskip("torch")
    argv = ["crosscheck", "--dtype", "float64", str(path)]
    for k, v in _dims(path).items():
        argv += ["--dim", f"{k}={v}"]
    seed = [ln for ln in path.read_text().splitlines() if ln.startswith("# seed:")]
    if seed:
        argv += ["--seed", seed[0][len("# seed:"):].strip()]
    r = _run_ok(argv, allowed=(0,))
    assert "ok: both backends agree" in r.stdout
