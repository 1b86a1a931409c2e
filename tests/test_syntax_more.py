"""The syntax people reach for: an annotation anywhere in a pipeline, indexing inside call
arguments, signatures across lines, the hint for a 1-d asymmetric pad, a model with a
syntax error still checked up to it, and W001, the warning for a value never used (with
``check --strict``, the JSON and SARIF formats and the language server)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.frontends.nn.parse import parse
from nnspec.tools import cli
from nnspec.tools.fmt import _shape, format_text

ROOT = Path(__file__).resolve().parent.parent


def load(text: str) -> nnspec.Spec:
    return nnspec.loads(text, "t.nn", strict=False)


def codes(spec) -> list[tuple[int, str]]:
    return [(d.span.line, d.code) for d in spec.diagnostics]


def warned(spec) -> list[tuple[int, str]]:
    return [(w.span.line, w.message) for w in spec.warnings]


# ---- an annotation anywhere in a pipeline --------------------------------------------

ISSUE = """\
model M(x: [N, 3, 32, 32]) -> [N, 8, 32, 32] {
    y = x | conv 8 k=3 p=1 : [N, 8, 32, 32]
          | relu
    return y
}
"""


def test_an_annotation_before_a_continued_line_keeps_the_statement_going():
    spec = load(ISSUE)
    assert spec.diagnostics == [] and spec.model_names == ["M"]
    assert [n.op for n in spec.program.model("M").nodes] == ["conv", "relu"]
    assert str(spec.output_type("M")) == "[N, 8, 32, 32]"


def test_an_annotation_inside_a_pipeline_is_checked_where_it_stands():
    line = "    conv 8 k=3 : [N, 8, 30, 30] | maxpool k=2 : [N, 8, 15, 15] | relu\n"
    assert load(f"model M(x: [N, 3, 32, 32]) {{\n{line}}}\n").diagnostics == []
    for bad, col in (("30, 30]", 18), ("15, 15]", 49)):
        spec = load(f"model M(x: [N, 3, 32, 32]) {{\n{line.replace(bad, '9, 9]', 1)}}}\n")
        (d,) = spec.diagnostics
        assert (d.code, d.span.line, d.span.col) == ("E311", 2, col)
        assert f"inferred shape [N, 8, {bad}" in d.message


def test_an_annotation_inside_a_pipeline_binds_names_for_later_stages():
    spec = load("model M(x: [N, 3, 8, 8]) {\n"
                "    conv 4 k=3 : [_, C, H, W] | flatten | dense (C * H * W // 2)\n}\n")
    assert spec.diagnostics == [] and str(spec.output_type("M")) == "[N, 72]"


def test_an_annotation_inside_a_pipeline_is_held_to_the_nesting_limit():
    deep = " + ".join(["1"] * 600)
    spec = load(f"model M(x: [N, 4]) {{\n    relu : [N, {deep}] | relu\n}}\n")
    assert [d.code for d in spec.diagnostics] == ["E029"]


def test_a_return_of_several_values_still_refuses_an_annotation():
    for line in ("return a, b : [N, 4]", "return a : [N, 4], b"):
        spec = load(f"model M(x: [N, 4]) {{\n    a = x | relu\n    b = x | tanh\n    {line}\n}}\n")
        assert codes(spec) == [(4, "E081")], line


# ---- indexing inside call arguments --------------------------------------------------

def test_a_subscript_inside_a_call_is_a_tensor_argument():
    text = ("model Roll(x: [N, 5]) -> [N, 5] {\n"
            "    h = x | relu\n"
            "    concat(h[:, 1:], h[:, :1], dim=1)\n}\n")
    spec = nnspec.loads(text, "t.nn")
    from nnspec.backends.numpy.interpreter import NumpyModel

    x = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    got = NumpyModel(spec)(x)
    np.testing.assert_allclose(got, np.roll(np.maximum(x, 0), -1, axis=1))


def test_a_subscript_in_an_expression_argument_and_outside_a_body():
    spec = load("model M(x: [N, 6]) {\n    (x[:, 0:3] * 2)\n}\n")
    assert spec.diagnostics == [] and str(spec.output_type("M")) == "[N, 3]"
    spec = load("const a = x[0]\nmodel M(x: [N, 6]) {\n    dense a\n}\n")
    assert [(d.span.line, d.span.col, d.code) for d in spec.diagnostics][:1] == [(1, 11, "E022")]


# ---- signatures across lines ---------------------------------------------------------

SIGNATURES = """\
block Mix(
    x,
    y,  # the second input
    scale=2,
) {
    x + y | dense scale
}

model Two(
    a: [N, 8],
    b: [N, 8]
) -> [N, 2] {
    Mix(a, b, scale=2)
}

train Two(
    t: [N, 2],
) {
    loss mse(output, t)
}
"""


def test_signatures_continue_inside_their_parentheses_with_a_trailing_comma():
    spec = load(SIGNATURES)
    assert spec.diagnostics == [] and str(spec.output_type("Two")) == "[N, 2]"
    assert [i.name for i in spec.program.model("Two").inputs] == ["a", "b"]
    assert spec.program.trainings[0].model == "Two"


def test_a_signature_line_break_outside_its_parentheses_is_a_syntax_error():
    spec = load("model M(x: [N, 8])\n-> [N, 8] {\n    relu\n}\n")
    assert [d.code for d in spec.diagnostics] == ["E100"]


# ---- the formatter on the new forms --------------------------------------------------

def test_fmt_keeps_every_new_form_the_same_program_and_stable():
    messy = ("block Mix(\n        x,\n\n  y,   # the second input\n    scale = 2,\n  ) {\n"
             "    x + y | dense scale\n}\n"
             "model Two(a: [N, 8],\n b: [N, 8 - 0]) -> [N, 2] {\n"
             "    h = Mix(a, b, scale=2)   :   [N, 2]\n"
             "      | relu\n"
             "    concat(h[:,1:],h[:, :1], dim=1) : [N, 2]|relu : [N,2]\n}\n")
    out = format_text(messy, "t.nn")
    assert out == ("block Mix(\n    x,\n    y,  # the second input\n    scale=2,\n) {\n"
                   "    x + y | dense scale\n}\n\n"
                   "model Two(a: [N, 8],\n    b: [N, 8 - 0]) -> [N, 2] {\n"
                   "    h = Mix(a, b, scale=2)                             : [N, 2]\n"
                   "    | relu\n"
                   "    concat(h[:, 1:], h[:, :1], dim=1) : [N, 2] | relu  : [N, 2]\n}\n")
    assert _shape(parse(out, "t.nn")) == _shape(parse(messy, "t.nn"))
    assert format_text(out, "t.nn") == out
    assert load(out).diagnostics == []
    train = "model M(x: [N, 2]) {\n    relu\n}\n\ntrain M(\n    t: [N, 2],\n) {\n" \
            "    loss mse(output, t)\n}\n"
    assert format_text(train, "t.nn") == train


# ---- the 1-d asymmetric pad ----------------------------------------------------------

def test_a_pair_in_double_parentheses_for_a_1d_layer_hints_at_the_1_tuple():
    spec = load("model M(x: [N, 3, 32]) {\n    conv1d 8 k=3 p=((4, 0))\n}\n")
    (d,) = spec.diagnostics
    assert d.code == "E300" and "p=((4, 0),)" in d.hint
    assert load("model M(x: [N, 3, 32]) {\n    conv1d 8 k=3 p=((4, 0),)\n}\n").diagnostics == []


# ---- a syntax error does not hide the rest of its model ------------------------------

def test_a_model_with_a_syntax_error_is_checked_up_to_it():
    text = ("model M(x: [N, 3, 32, 32]) -> [N, 10] {\n"
            "    conv 8 k=40\n"
            "    relu ))\n"
            "    undefined_layer 3\n}\n"
            "model Fine(x: [N, 4]) {\n    dense 2\n}\n")
    spec = load(text)
    assert codes(spec) == [(2, "E301"), (3, "E100")]  # no follow-on error, no -> check
    assert spec.model_names == ["M", "Fine"]
    assert [n.op for n in spec.program.model("M").nodes] == ["conv"]
    assert spec.warnings == []


def test_a_broken_continuation_line_still_counts_its_model(tmp_path, capsys):
    path = tmp_path / "broken.nn"
    path.write_text("model M(x: [N, 3, 8, 8]) {\n    conv 8 k=3\n    | | relu\n}\n")
    assert cli.main(["check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert ":3:" in out and "[E100]" in out and err.endswith("1 file, 1 model: 1 error\n")


# ---- W001: a value computed and never used -------------------------------------------

def test_a_named_value_never_used_is_a_warning_at_its_statement():
    spec = load("model M(x: [N, 8]) {\n    y = x | dense 4\n    x | dense 2\n}\n")
    assert spec.diagnostics == []
    (w,) = spec.warnings
    assert (w.code, w.severity, w.span.line, w.span.col) == ("W001", "warning", 2, 5)
    assert "'y'" in w.message


def test_an_unnamed_value_dropped_before_a_return_is_a_warning():
    spec = load("model M(x: [N, 8]) {\n    dense 4\n    return x | relu\n}\n")
    assert warned(spec) == [(2, "this value is computed but never used")]


def test_the_last_residual_of_an_unrolled_stack_is_caught():
    text = ("block Res(x) {\n    h = x | conv 8 k=3 p=1\n    return x + h, h | conv 8 k=1\n}\n"
            "model WaveNet(x: [N, 8, 64]) {\n"
            "    x1, s1 = Res(x)\n    x2, s2 = Res(x1)\n    x3, s3 = Res(x2)\n"
            "    return s1 + s2 + s3\n}\n")
    assert warned(load(text)) == [(8, "the value 'x3' is computed but never used")]
    assert load(text.replace("x3, s3", "_x3, s3")).warnings == []


def test_no_warning_for_what_is_used_shared_tied_or_returned():
    text = ("model Used(x: [N, 8]) {\n    a = x | dense 4\n    b = x | dense 4\n"
            "    a + b | relu\n}\n"
            "model Tied(x: [N, 8]) {\n    x | dense 8 as fc\n"
            "    return x | dense 8 weight=fc.weight\n}\n"
            "model Shared(x: [N, 8]) {\n    x | dense 8 as fc\n    return x | relu | fc\n}\n"
            "model Both(x: [N, 8]) {\n    a = x | relu\n    b = x | tanh\n    return a, b\n}\n"
            "model Chain(x: [N, 3, 8, 8]) {\n    conv 4 k=3\n    relu\n    flatten\n}\n")
    spec = load(text)
    assert spec.diagnostics == [] and spec.warnings == []


def test_a_block_expanded_many_times_warns_once_in_the_block():
    text = ("block B(x) {\n    unused = x | relu\n    x | tanh\n}\n"
            "model M(x: [N, 8]) {\n    B * 3\n}\n")
    assert warned(load(text)) == [(2, "the value 'unused' is computed but never used")]


def test_a_model_with_errors_gets_no_warnings():
    spec = load("model M(x: [N, 8]) {\n    y = x | dense 4\n    x | nosuchlayer 2\n}\n")
    assert spec.diagnostics and spec.warnings == []


def test_the_bundled_specs_warn_about_nothing():
    files = sorted((ROOT / "specs").glob("*.nn"))
    assert len(files) > 20
    for f in files:
        spec = nnspec.load(str(f), strict=False)
        assert spec.warnings == [], f


# ---- warnings on the command line and in the editor ----------------------------------

UNUSED = "model M(x: [N, 8]) {\n    y = x | dense 4\n    x | dense 2\n}\n"


@pytest.fixture
def unused(tmp_path) -> str:
    path = tmp_path / "unused.nn"
    path.write_text(UNUSED)
    return str(path)


def test_check_prints_warnings_without_failing_and_strict_fails(unused, capsys):
    assert cli.main(["check", unused]) == 0
    out, err = capsys.readouterr()
    assert f"{unused}:2:5: warning: the value 'y' is computed but never used [W001]" in out
    assert err.endswith("1 model: no errors, 1 warning\n")
    assert cli.main(["check", "--strict", unused]) == 1
    out, err = capsys.readouterr()
    assert f"{unused}:2:5: error: the value 'y'" in out and err.endswith("1 model: 1 error\n")


def test_check_json_and_sarif_carry_the_severity(unused, capsys):
    assert cli.main(["check", "--format", "json", unused]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["error_count"], data["errors"], data["warning_count"]) == (0, [], 1)
    assert (data["warnings"][0]["code"], data["warnings"][0]["severity"]) == ("W001", "warning")
    assert cli.main(["check", "--format", "json", "--strict", unused]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [(d["code"], d["severity"]) for d in data["errors"]] == [("W001", "error")]
    assert data["warnings"] == []
    assert cli.main(["check", "--format", "sarif", unused]) == 0
    (result,) = json.loads(capsys.readouterr().out)["runs"][0]["results"]
    assert (result["ruleId"], result["level"]) == ("W001", "warning")


def test_the_language_server_shows_warnings(tmp_path):
    from nnspec.tools.lsp.analysis import analyze, problems

    path = str(tmp_path / "unused.nn")
    got = problems(analyze(UNUSED, path))
    assert [(p.code, p.severity, p.loc.line) for p in got] == [("W001", "warning", 1)]


def test_a_model_that_returns_a_number_is_an_error():
    spec = nnspec.loads("model M(x: [N, 4]) {\n    return (2)\n}\n", strict=False)
    assert [(d.code, d.span.line) for d in spec.diagnostics] == [("E083", 2)]
    assert "returns the number 2, not a tensor" in spec.diagnostics[0].message


def test_a_chain_that_never_reaches_an_output_is_caught_at_each_statement():
    """A value read only by values that are never used does not reach an output either."""
    text = ("model M(x: [N, 4]) {\n    a = x | dense 3\n    b = a | relu\n"
            "    return x | dense 2\n}\n")
    assert warned(load(text)) == [
        (2, "the value 'a' is computed but never reaches an output (only values that are "
            "never used read it)"),
        (3, "the value 'b' is computed but never used")]
    assert load(text.replace("return x | dense 2", "return b | dense 2")).warnings == []
