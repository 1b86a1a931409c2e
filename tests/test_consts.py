"""Constants set from outside a spec: ``--const NAME=VALUE`` and ``load(..., consts=)``."""

from __future__ import annotations

import json

import pytest

import nnspec
from nnspec.tools import cli
from nnspec import api
from nnspec.frontends.nn.overrides import ConstError, parse_flag, parse_value

STACK = """\
const layers = 3
const d = 32
const ff = d * 4
const half = d / 2

block Layer(x, w) {
    dense w | relu
}

model Stack(x: [N, 16]) {
    Layer(ff) * layers
    dense half
}
"""


def _dense(i: int, o: int) -> int:
    return i * o + o


@pytest.fixture
def stack(tmp_path, monkeypatch):
    """stack.nn in a fresh working folder (diagnostics name it relatively)."""
    (tmp_path / "stack.nn").write_text(STACK)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "stack.nn"


def _run(capsys, *argv):
    code = cli.main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


# ---- the values: shapes and parameter counts, derived constants --------------------------

def test_defaults_are_the_spec_s_own():
    spec = api.loads(STACK)
    assert spec.param_count() == _dense(16, 128) + 2 * _dense(128, 128) + _dense(128, 16)
    assert str(spec.output_type()) == "[N, 16]"


def test_override_changes_shapes_and_counts_and_derived_consts_follow():
    spec = api.loads(STACK, consts={"d": 8, "layers": 1})  # ff = 32, half = 4
    assert spec.param_count() == _dense(16, 32) + _dense(32, 4)
    assert [str(r.output) for r in spec.layers()] == ["[N, 32]", "[N, 32]", "[N, 4]"]
    spec = api.loads(STACK, consts={"layers": 5})
    assert spec.param_count() == _dense(16, 128) + 4 * _dense(128, 128) + _dense(128, 16)


def test_a_derived_constant_set_itself_takes_the_value_given():
    spec = api.loads(STACK, consts={"ff": 10})  # d stays 32: half is 16
    assert spec.param_count() == _dense(16, 10) + 2 * _dense(10, 10) + _dense(10, 16)


def test_load_from_a_file_takes_consts(stack):
    spec = nnspec.load(stack, consts={"d": 4, "layers": 2})
    assert spec.param_count() == _dense(16, 16) + _dense(16, 16) + _dense(16, 2)


def test_constants_of_used_files_keep_their_values(tmp_path, monkeypatch):
    (tmp_path / "lib.nn").write_text("const w = 8\nblock Wide(x) {\n    dense w\n}\n")
    (tmp_path / "main.nn").write_text(
        'use "lib.nn"\nconst c = 4\nmodel M(x: [N, 2]) {\n    dense c\n    Wide\n}\n')
    monkeypatch.chdir(tmp_path)
    spec = nnspec.load("main.nn", consts={"c": 6})
    assert spec.param_count() == _dense(2, 6) + _dense(6, 8)
    with pytest.raises(ConstError, match=r"--const w: w is defined in lib\.nn, which main\.nn "
                                         r"uses; only the constants of main\.nn"):
        nnspec.load("main.nn", consts={"w": 2})


def test_api_refuses_what_is_not_a_literal_whatever_strict_is():
    for bad in ({"d": [8]}, {"d": float("nan")}, {"d": 2**63}, {"d": None}, {"1d": 2},
                {"d": ((1, 2),)}, {"d": ()}):
        with pytest.raises(ConstError):
            api.loads(STACK, strict=False, consts=bad)
    with pytest.raises(ConstError, match=r"has no constant dd \(did you mean d\?\)"):
        api.loads(STACK, strict=False, consts={"dd": 2})
    with pytest.raises(ConstError, match="constants are resolved already"):
        api.from_ir(api.loads(STACK).program.to_json(), consts={"d": 2})
    assert isinstance(ConstError("x"), ValueError)


# ---- the literal syntax ----------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("64", 64), ("-3", -3), ("1e-4", 1e-4), (".5", 0.5), ("2.", 2.0), ("true", True),
    ("false", False), ('"gelu"', "gelu"), ('""', ""), ("(3, 3)", (3, 3)), ("(3,)", (3,)),
    ("(64)", 64), ('("a,b", 2, )', ("a,b", 2)), ("  7 ", 7),
])
def test_literals_are_read_as_the_spec_language_writes_them(text, value):
    got = parse_value(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text, reason", [
    ("64*2", "expressions are not evaluated"), ("(d - 1)", "expressions are not evaluated"),
    ("gelu", 'gelu is a name, not a value (a string is written in quotes: "gelu")'),
    ("9" * 25, "integers are int64"), ("1e999", "not a finite number"),
    ("(3,,4)", "separated by commas"), ("()", "separated by commas"),
    ("((1, 2), 3)", "tuples of tuples"), ('"open', "not a literal"),
])
def test_what_is_not_a_literal_is_refused_with_the_reason(text, reason):
    with pytest.raises(ConstError) as e:
        parse_value(text)
    assert reason in str(e.value)


def test_notes_show_a_string_s_control_characters_escaped():
    spec = api.loads(STACK, strict=False, consts={"d": "a\x1b[2Jb"})
    assert spec.diagnostics
    assert all("\x1b" not in n and "a\\x1b[2Jb" in n
               for d in spec.diagnostics for n in d.notes)


def test_flag_parts():
    assert parse_flag("d=64") == ("d", 64)
    assert parse_flag('s="a=b"') == ("s", "a=b")  # the name ends at the first '='
    with pytest.raises(ConstError, match="no '='"):
        parse_flag("d")
    with pytest.raises(ConstError, match="'3d' is not a name"):
        parse_flag("3d=4")
    with pytest.raises(ConstError, match="no value after '='"):
        parse_flag("d= ")


# ---- the command line ------------------------------------------------------------------

def test_check_with_overrides_passes_and_a_bad_value_fails_at_its_use(stack, capsys):
    code, out, err = _run(capsys, "check", "stack.nn", "--const", "d=8", "--const", "layers=1")
    assert (code, out) == (0, "") and "no errors" in err
    code, out, err = _run(capsys, "check", "stack.nn", "--const", "d=7")
    assert code == 1
    assert out.startswith("stack.nn:4:14: error: 7 / 2 is not exact (= 3.5) [E027]\n")
    assert "\n  d is 7 here, from --const d=7\n" in out


def test_a_value_of_the_wrong_kind_is_the_error_at_its_use_with_a_note(stack, capsys):
    code, out, _ = _run(capsys, "check", "stack.nn", "--const", "layers=2.5")
    assert code == 1
    assert out.startswith("stack.nn:11:17: error: a repeat count must be an integer")
    assert "  layers is 2.5 here, from --const layers=2.5" in out
    # a constant computed from the one set says where its value came from
    code, out, _ = _run(capsys, "check", "stack.nn", "--const", 'd="x"')
    assert code == 1 and 'd is "x" here, from --const d="x"' in out
    spec = api.loads(STACK.replace("dense half", "dense (half - 20)"), strict=False,
                     consts={"d": 8})
    (diag,) = spec.diagnostics
    assert diag.span.line == 12 and diag.notes == ["half is 4 here, computed from --const d=8"]


def test_an_error_whose_line_names_no_set_constant_lists_the_flags(capsys):
    spec = api.loads("const c = 4\nblock B(x) {\n    conv 8 k=9\n}\n"
                     "model M(x: [N, 1, c, c]) {\n    B\n}\n", strict=False, consts={"c": 5})
    (diag,) = spec.diagnostics
    assert diag.code == "E301" and diag.span.line == 3
    assert diag.notes[-1] == "the spec was loaded with --const c=5"


def test_summary_json_reflects_the_overrides(stack, capsys):
    code, out, _ = _run(capsys, "summary", "stack.nn", "--json", "--const", "d=8",
                        "--const", "layers=1")
    assert code == 0
    (model,) = json.loads(out)["models"]
    assert model["params"] == _dense(16, 32) + _dense(32, 4)
    assert model["output"] == ["N", 4]


def test_compile_and_graph_take_the_overrides(stack, capsys):
    code, out, _ = _run(capsys, "compile", "stack.nn", "--const", "d=2", "--const", "ff=6")
    assert code == 0
    assert "193 parameters" in out  # 16*6+6 + 2 * (6*6+6) + 6*1+1
    assert "nn.Linear(6, 1)" in out and "128" not in out
    code, out, _ = _run(capsys, "compile", "stack.nn", "--target", "json", "--const",
                        "layers=1")
    assert code == 0 and len(json.loads(out)["models"][0]["nodes"]) == 3
    code, out, _ = _run(capsys, "graph", "stack.nn", "--format", "dot", "--const", "d=2")
    assert code == 0 and "[N, 1]" in out


def test_stdin_takes_the_overrides(capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(STACK.encode())))
    code, out, _ = _run(capsys, "summary", "-", "--json", "--const", "layers=1")
    assert code == 0
    assert json.loads(out)["models"][0]["params"] == _dense(16, 128) + _dense(128, 16)


def test_crosscheck_runs_at_the_small_config(stack, capsys):
    pytest.importorskip("torch")
    code, out, _ = _run(capsys, "crosscheck", "stack.nn", "--const", "d=4", "--const",
                        "layers=2")
    assert code == 0, out
    assert "layer_1.dense_0" in out and "[2, 16]" in out and "[2, 2]" in out
    assert "ok: both backends agree" in out


@pytest.mark.parametrize("flag, message", [
    ("d", "--const takes NAME=VALUE, VALUE a number, true/false, a \"string\" or a tuple of "
          "them; got 'd' (no '=')"),
    ("=4", "--const takes NAME=VALUE, VALUE a number, true/false, a \"string\" or a tuple of "
           "them; '' is not a name"),
    ("d-x=4", "'d-x' is not a name"),
    ("d=", "--const d: no value after '='"),
    ("d=64*2", "--const d: '64*2' is not a value: expressions are not evaluated"),
    ("d=__import__('os')", "--const d: \"__import__('os')\" is not a value"),
    ("d=gelu", "--const d: 'gelu' is not a value: gelu is a name"),
    ("d=" + "9" * 40, "integers are int64"),
    ("dd=8", "--const dd: stack.nn has no constant dd (did you mean d?); its constants: "
             "layers, d, ff, half"),
    ("N=8", "--const N: stack.nn has no constant N; its constants: layers, d, ff, half"),
])
def test_bad_flags_are_one_line_usage_errors(stack, capsys, flag, message):
    for command in (["check"], ["summary"], ["compile"], ["graph", "--format", "dot"]):
        code, out, err = _run(capsys, command[0], "stack.nn", *command[1:], "--const", flag)
        assert code == 2, (command, err)
        assert out == ""
        assert err.startswith("nnspec: error: ") and err.count("\n") == 1, err
        assert message in err


def test_a_name_given_twice_and_ir_input_are_usage_errors(stack, capsys):
    code, _, err = _run(capsys, "check", "stack.nn", "--const", "d=1", "--const", "d=2")
    assert (code, err) == (2, "nnspec: error: --const d is given twice\n")
    code, out, _ = _run(capsys, "compile", "stack.nn", "-o", "stack.json", "-q")
    assert code == 0
    code, _, err = _run(capsys, "summary", "stack.json", "--const", "d=2")
    assert code == 2 and "stack.json is IR, whose constants are resolved already" in err
    code, _, _ = _run(capsys, "summary", "stack.json")
    assert code == 0


def test_check_of_several_files_needs_each_to_define_the_names(stack, tmp_path, capsys):
    (tmp_path / "other.nn").write_text("const d = 4\nmodel O(x: [N, 2]) {\n    dense d\n}\n")
    code, _, err = _run(capsys, "check", "stack.nn", "other.nn", "--const", "d=2")
    assert code == 0 and "checked 2 files" in err
    code, _, err = _run(capsys, "check", "stack.nn", "other.nn", "--const", "layers=3")
    assert code == 2 and "other.nn has no constant layers" in err


def test_every_command_that_loads_a_spec_has_the_option():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    have = {name for name, p in sub.choices.items()
            if any("--const" in a.option_strings for a in p._actions)}
    assert have == {"check", "summary", "compile", "crosscheck", "train", "graph", "weights",
                    "export"} & set(sub.choices)
