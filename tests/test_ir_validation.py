"""The JSON IR is an input like a spec's text: bad IR gives located diagnostics (the JSON
path and its line and column), never an exception; and shape rules never index past the
inputs or axes they get (rank-0 inputs, wrong arity)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
from pathlib import Path

import pytest

import nnspec
from nnspec.tools import cli
from nnspec import ir
from nnspec.core.dims import Dim
from nnspec.ir.validate import IRError, validate
from nnspec.layers import REGISTRY, ShapeError, TensorType
from nnspec.ir.shapes import check_composition, infer_model, infer_program

DATA = Path(__file__).resolve().parent / "data" / "repro" / "ir"  # the inputs found by fuzzing

SMALL = """\
model Net(x: [N, 3, 16, 16]) -> [N, 10] {
    a = x | conv 8 k=3 p=1 | relu | maxpool k=2 : [N, 8, 8, 8]
    b = x | conv 8 k=5 s=2 p=2
    concat(a, b) | batchnorm | flatten
    dense 10
}
"""

SEQ = """\
model Encoder(src: [N, S] int) -> [1, N, 16] {
    embedding 50 8 padding=0
    out, h = gru 16 state
    return h
}
model Decoder(tgt: [N, T] int, h0: [1, N, 16]) -> [N, T, 50] {
    embedding 50 8
    gru 16 h0=h0
    dense 50 | log_softmax
}
check Decoder(h0=Encoder)
"""

ATTN = """\
model Tagger(tokens: [N, T] int, mem: [N, S, 16], pad: [N, S] int) {
    e = tokens | embedding 100 16 | positional scale
    a = e | attention heads=4 causal
    b = a | attention heads=2 kv=mem mask=pad | layernorm
    y, h, c = b | lstm 8 state
    (y + y) | last | dropout 0.1 | reshape [N, 2, -1] | softmax 1
}
"""


def ir_text(spec_text: str, path: str = "t.nn") -> str:
    return nnspec.loads(spec_text, path).program.to_json()


def ir_data(spec_text: str) -> dict:
    return json.loads(ir_text(spec_text))


def run_cli(*args) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(list(args))
    return rc, out.getvalue() + err.getvalue()


def write(tmp_path, data, name="bad.json") -> str:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data, indent=1))
    return str(p)


def messages(data, path="bad.json") -> list[str]:
    """The rendered first line of each diagnostic of from_ir on the JSON text."""
    text = data if isinstance(data, str) else json.dumps(data, indent=1)
    spec = nnspec.from_ir(text, path)
    return [d.render().splitlines()[0] for d in spec.diagnostics]


def line_col(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based line and column of the nth occurrence of needle in text."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(needle, at + 1)
    line = text.count("\n", 0, at) + 1
    return line, at - (text.rfind("\n", 0, at) + 1) + 1


# ---- the reproducers found by fuzzing --------------------------------------------------------


@pytest.mark.parametrize("path", sorted(DATA.glob("*.json")), ids=lambda p: p.stem)
def test_fuzzed_ir_gives_diagnostics_never_an_internal_error(path):
    for command in ("check", "summary"):
        rc, out = run_cli(command, str(path))
        assert rc == 1, (command, out)
        assert "internal error" not in out and "Traceback" not in out
        assert f"{path}:" in out and ": error: " in out
    spec = nnspec.from_ir(path.read_text(), str(path))
    assert spec.diagnostics and all(d.span is not None for d in spec.diagnostics)


# ---- exact messages for hand-made bad IR -----------------------------------------------------


def test_unknown_value_is_located_by_json_path_line_and_column(tmp_path):
    data = ir_data(SMALL)
    data["models"][0]["nodes"][3]["inputs"][0] = "v9"
    path = write(tmp_path, data)
    text = Path(path).read_text()
    line, col = line_col(text, '"v9"')
    rc, out = run_cli("check", path)
    assert rc == 1
    assert out.splitlines()[0] == (f"{path}:{line}:{col}: error: models[0].nodes[3].inputs[0]: "
                                   "unknown value 'v9' [E206]")
    assert "checked 1 file, 0 models: 1 error" in out
    rc, out = run_cli("compile", path, "-o", str(tmp_path / "x.py"))
    assert rc == 1 and not (tmp_path / "x.py").exists()


def test_references_ids_and_outputs():
    data = ir_data(SMALL)
    nodes = data["models"][0]["nodes"]
    nodes[1]["inputs"] = [nodes[2]["id"]]  # a later node
    nodes[7]["id"] = nodes[6]["id"]  # defined twice
    data["models"][0]["output"] = "nowhere"
    data["models"][0]["asserts"][0]["value"] = "v77"
    got = [m.split(": error: ", 1)[1] for m in messages(data)]
    assert got == [
        "models[0].nodes[1].inputs[0]: the value 'v3' is used before it is defined "
        "(at nodes[2]) [E207]",
        "models[0].nodes[7].id: the value id 'v7' is already defined at models[0].nodes[6] "
        "[E205]",
        "models[0].output: the output is an unknown value 'nowhere' [E206]",
        "models[0].asserts[0].value: unknown value 'v77' [E206]",
        "models[0].asserts[1].value: unknown value 'v8' [E206]",
    ]


def test_kinds_arity_and_tensor_arguments():
    data = ir_data(SEQ)
    enc, dec = data["models"]
    enc["nodes"][0]["op"] = "embeding"
    dec["nodes"][2]["inputs"].append(dec["inputs"][0]["id"])  # dense of two tensors
    dec["nodes"][1]["params"]["h0"] = 0  # the gru's h0 is its first input
    got = [m.split(": error: ", 1)[1] for m in messages(data)]
    assert got == [
        "models[0].nodes[0].op: unknown layer kind 'embeding' [E208]",
        "models[1].nodes[1].params.h0: the tensor argument h0 is input 0, but its input is "
        "the extra one at index 1 [E211]",
        "models[1].nodes[2].inputs: dense takes 1 input tensor, got 2 inputs [E209]",
    ]
    spec = nnspec.from_ir(json.dumps(data), "bad.json")
    assert spec.diagnostics[0].hint == "did you mean 'embedding'?"
    assert spec.model_names == []  # both models have errors: neither is inferred
    dec["nodes"][1]["inputs"].pop()
    assert messages(data)[1].split(": error: ", 1)[1] == (
        "models[1].nodes[1].inputs: gru takes 1 input tensor plus one per tensor argument "
        "(h0), got 1 input [E209]")


def test_arguments_are_validated_by_the_kinds_schema():
    data = ir_data(SMALL)
    nodes = data["models"][0]["nodes"]
    nodes[0]["params"]["k"] = 0
    nodes[1]["params"]["slope"] = 0.5  # relu takes no arguments
    del nodes[-1]["params"]["out"]
    nodes[3]["params"]["out"] = 2**70
    nodes[3]["params"]["s"] = "2"
    got = [m.split(": error: ", 1)[1] for m in messages(data)]
    assert got == [
        "models[0].nodes[0].params.k: invalid argument for conv: k must be >= 1 [E210]",
        "models[0].nodes[1].params.slope: unknown argument 'slope' for relu [E210]",
        "models[0].nodes[3].params.out: integer beyond int64 [E210]",
        "models[0].nodes[7].params: dense needs the argument 'out' [E210]",
    ]
    nodes[3]["params"]["out"] = 8
    assert messages(data)[2].split(": error: ", 1)[1].startswith(
        "models[0].nodes[3].params.s.int: invalid argument for conv: input should be a valid "
        "integer")


def test_inputs_shapes_dtypes_and_annotations():
    data = ir_data(SMALL)
    m = data["models"][0]
    m["inputs"][0]["shape"] = ["N", "-3", "floor(H / 0)", "((" * 60 + "W" + "))" * 60]
    m["inputs"][0]["dtype"] = "complex"
    m["asserts"][0]["dims"] = ["N", "_", 8, "9" * 30]
    got = [x.split(": error: ", 1)[1] for x in messages(data)]
    assert got == [
        "models[0].inputs[0].dtype: unknown dtype 'complex' [E213]",
        "models[0].inputs[0].shape[1]: invalid dimension '-3': a size must be >= 0, got -3 "
        "[E212]",
        "models[0].inputs[0].shape[2]: invalid dimension 'floor(H / 0)': bad dimension "
        "expression 'floor(H / 0)': divisor must be a positive integer at '0' (column 11) "
        "[E212]",
        "models[0].inputs[0].shape[3]: invalid dimension '" + "(" * 55 + "...': nested more "
        "than 100 levels deep [E212]",
        "models[0].asserts[0].dims[2]: must be a string, got an integer [E201]",
    ]
    m["asserts"][0]["dims"] = ["N", "_", "9" * 30]
    assert messages(data)[-1].split(": error: ", 1)[1] == (
        "models[0].asserts[0].dims[2]: invalid dimension '999999999999999999999999999999': "
        "a number in it is beyond int64 [E212]")


def test_structure_version_and_fields():
    data = ir_data(SMALL)
    data["models"][0]["nodes"][0]["colour"] = "red"
    del data["models"][0]["nodes"][1]["op"]
    data["models"][0]["nodes"][2]["span"] = ["t.nn", 1]
    data["models"][0]["nodes"][3]["inputs"] = "v1"
    got = [x.split(": error: ", 1)[1] for x in messages(data)]
    assert got == [
        "models[0].nodes[0].colour: unknown field 'colour' [E203]",
        "models[0].nodes[1]: missing field 'op' [E202]",
        "models[0].nodes[2].span: a span is [file, line, column, end line, end column] or [], "
        "got ['t.nn', 1] [E214]",
        "models[0].nodes[3].inputs: must be a list, got a string [E201]",
    ]
    assert messages({"version": 7, "models": []}) == [
        "bad.json:2:2: error: version: IR version 7 is not supported (this nnspec reads "
        "version 1) [E204]"]
    assert messages([1, 2]) == ["bad.json:1:1: error: the IR: must be an object, got a list "
                                "[E201]"]


def test_text_that_is_not_json(tmp_path):
    assert messages('{"version": 1,\n "models": [}') == [
        "bad.json:2:13: error: not valid JSON: Expecting value [E200]"]
    deep = '{"version": 1, "models": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert messages(deep) == [
        "bad.json:1:57: error: the JSON nests more than 32 levels deep [E200]"]
    huge = '{"version": 1, "models": [], "x": ' + "7" * 5000 + "}"
    assert messages(huge) == ["bad.json:1:35: error: not valid JSON: an integer too large for "
                              "int64 [E200]"]
    rc, out = run_cli("summary", write(tmp_path, '{"version": 1,\n "models": [}'))
    assert rc == 1 and "not valid JSON" in out


def test_compositions_name_existing_models_and_the_rest_is_still_inferred():
    data = ir_data(SEQ + SMALL)
    data["models"][2]["asserts"][1]["dims"] = ["N", "11"]
    data["checks"][0]["chain"][1] = "Encodr"
    data["checks"].append({"chain": ["Decoder", "Encoder", "Net"], "inputs": ["h0"]})
    spec = nnspec.from_ir(json.dumps(data), "bad.json")
    got = [d.message for d in spec.diagnostics]
    assert got == [
        "checks[0].chain[1]: unknown model 'Encodr'",
        "checks[1].inputs: 1 input name for a chain of 3 models (one per model but the "
        "innermost, or [])",
        "declared output shape [N, 11] does not match the inferred shape [N, 10]",
    ]
    assert spec.diagnostics[0].hint == "did you mean 'Encoder'?"
    assert spec.model_names == ["Encoder", "Decoder", "Net"]
    assert spec.param_count("Encoder") == 50 * 8 + 3 * 16 * (8 + 16) + 2 * 3 * 16


def test_a_valid_ir_round_trips_and_validates_clean():
    for text in (SMALL, SEQ, ATTN):
        spec = nnspec.loads(text, "t.nn")
        data = spec.program.to_json()
        again = ir.Program.from_json(data)
        assert again == spec.program
        reloaded = nnspec.from_ir(data, "t.json")
        assert reloaded.ok, reloaded.diagnostics
        for name in spec.model_names:
            assert reloaded.param_count(name) == spec.param_count(name)
            assert str(reloaded.output_type(name)) == str(spec.output_type(name))
    assert nnspec.from_ir(spec.program).ok
    prog, diags = validate(ir_data(SMALL))  # already decoded JSON
    assert diags == [] and [n.op for n in prog.models[0].nodes][:3] == ["conv", "relu", "maxpool"]


def test_from_json_raises_a_value_error_with_the_diagnostics():
    data = ir_data(SMALL)
    data["models"][0]["nodes"][0]["op"] = "conv4d"
    data["models"][0]["nodes"][1]["op"] = "relu7"
    with pytest.raises(IRError, match=r"models\[0\].nodes\[0\].op: unknown layer kind "
                                      r"'conv4d' \(and 1 more error\)") as e:
        ir.Program.from_json(json.dumps(data))
    assert isinstance(e.value, ValueError) and len(e.value.diagnostics) == 2


def test_a_program_built_in_python_is_validated_too():
    data = ir_data(SMALL)
    prog = ir.Program.model_validate(data)
    prog.models[0].nodes[2].inputs = ["v1", "v2", "nope"]
    spec = nnspec.from_ir(prog)
    assert [d.message for d in spec.diagnostics] == [
        "models[0].nodes[2].inputs[2]: unknown value 'nope'",
        "models[0].nodes[2].inputs: maxpool takes 1 input tensor, got 3 inputs"]
    assert spec.diagnostics[0].span.file == "<ir>"
    # shape inference itself does not trust the program either
    types = infer_model(prog.models[0])
    assert [(d.code, d.message) for d in types.diags] == [
        ("E217", "layer maxpool_0 uses the value 'nope', which no input or earlier layer "
                 "defines")]
    prog.models[0].nodes[2].inputs = ["v1", "v2"]
    types = infer_model(prog.models[0])
    assert [(d.code, d.message) for d in types.diags] == [
        ("E300", "maxpool takes 1 input tensor, got 2")]
    results, _ = infer_program(ir.Program.model_validate(data))
    bad = ir.Check(chain=["Net", "Gone"])
    assert [d.message for d in check_composition(bad, results)] == [
        "check Net(Gone): there is no model 'Gone'"]
    bad = ir.Check(chain=["Net", "Net", "Net"], inputs=["x"])
    assert [d.code for d in check_composition(bad, results)] == ["E216"]


# ---- shape rules: arity and rank are checked before a rule runs ------------------------------


def test_rank_0_inputs_get_shape_errors_not_crashes():
    text = ("model M(x: []) {\n    dense 3\n}\n"
            "model R(x: []) {\n    relu | dropout 0.1 : []\n}\n"
            "model C(x: []) {\n    concat(x, x)\n}\n"
            "model S(x: []) {\n    softmax\n}\n"
            "model E(x: [] int) {\n    embedding 5 3\n}\n")
    spec = nnspec.loads(text, "t.nn", strict=False)
    assert [(d.span.line, d.message) for d in spec.diagnostics] == [
        (2, "dense expects an input of rank 1 or more ([*, features]), got [] (rank 0)"),
        (8, "concat expects an input of rank 1 or more, got [] (rank 0)"),
        (11, "softmax expects an input of rank 1 or more, got [] (rank 0)"),
    ]
    assert str(spec.output_type("R")) == "[]"
    assert str(spec.output_type("E")) == "[3]"


def test_an_input_whose_shape_failed_does_not_repeat_its_error():
    spec = nnspec.loads("model M(x: [N, 7 / 2]) {\n    dense 3\n    relu\n}\n", "t.nn",
                        strict=False)
    assert [d.code for d in spec.diagnostics] == ["E027"]


def test_check_inputs_counts_inputs_and_tensor_arguments():
    x = TensorType((Dim.sym("N"), 4, 8))
    dense, gru, add = REGISTRY["dense"], REGISTRY["gru"], REGISTRY["add"]
    with pytest.raises(ShapeError, match=r"^dense takes 1 input tensor, got 0$"):
        dense.check_inputs(dense.Params(out=3), [])
    with pytest.raises(ShapeError, match=r"^add takes two or more input tensors, got 1$"):
        add.check_inputs(add.Params(), [x])
    p = gru.Params(hidden=8, h0=1)
    with pytest.raises(ShapeError, match=r"^gru takes 1 input tensor \(and one per tensor "
                                         r"argument: h0\), got 1$"):
        gru.check_inputs(p, [x])
    p = gru.Params(hidden=8, h0=9)
    with pytest.raises(ShapeError, match="tensor argument h0 refers to input 9") as e:
        gru.check_inputs(p, [x, x])
    assert e.value.arg == "h0"
    gru.check_inputs(gru.Params(hidden=8, h0=1), [x, x])


# ---- mutants: no exception escapes, whatever the IR holds ------------------------------------

_VALUES = [None, True, False, 0, -1, 1, 2, 3, 2**31, 2**63, -2**63 - 1, 2**80, 0.5, -0.0, 1e308,
           float("nan"), float("inf"), "", "_", "N", "v1", "in_x", "-1", "N - 5", "floor(N / 2)",
           "((N)", "x" * 300, "((((" * 30 + "N" + "))))" * 30, [], [1], [[1, 2], [3, 4]],
           ["N", 3], {}, {"a": 1}, "dense", "item", "gru", "concat", "t.nn"]


def _paths(x, at=()):
    """Every (path, value) of a JSON value, iteratively."""
    out, stack = [], [(x, at)]
    while stack:
        v, p = stack.pop()
        out.append((p, v))
        if isinstance(v, dict):
            stack.extend((y, p + (k,)) for k, y in v.items())
        elif isinstance(v, list):
            stack.extend((y, p + (i,)) for i, y in enumerate(v))
    return out


def _ids(data) -> list[str]:
    return [x for p, x in _paths(data) if isinstance(x, str) and p and p[-1] in ("id", "output")]


def mutate(data: dict, rng: random.Random, rounds: int = 3) -> dict:
    """A copy of the IR with a few random edits: a value replaced (by an edge value, another
    value's id, another kind, a different type), a key dropped or added, list elements
    dropped, duplicated or swapped."""
    data = copy.deepcopy(data)
    ids = _ids(data)
    kinds = sorted(REGISTRY)
    for _ in range(rng.randint(1, rounds)):
        paths = [p for p, _ in _paths(data) if p]
        if not paths:
            break
        path = rng.choice(paths)
        parent = data
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        r = rng.random()
        if r < 0.4:
            pool = _VALUES + ids + kinds
            parent[key] = copy.deepcopy(rng.choice(pool))
        elif r < 0.55 and isinstance(parent, dict):
            del parent[key]
        elif r < 0.65 and isinstance(parent, dict):
            parent[rng.choice(["extra", "kv", "h0", "mask", "index", "dim"])] = rng.choice(
                [0, 1, 2, 5, -1, 2**62, "v1"])
        elif isinstance(parent, list) and parent:
            i, j = rng.randrange(len(parent)), rng.randrange(len(parent))
            op = rng.choice(["dup", "drop", "swap"])
            if op == "dup":
                parent.insert(i, copy.deepcopy(parent[j]))
            elif op == "drop":
                del parent[i]
            else:
                parent[i], parent[j] = parent[j], parent[i]
        elif isinstance(parent[key], int) and not isinstance(parent[key], bool):
            parent[key] = rng.choice([0, -1, parent[key] + 1, parent[key] * 2**40, 2**64])
        else:
            parent[key] = rng.choice(ids + kinds)
    return data


def exercise(text: str, path: str = "m.json") -> nnspec.Spec:
    """What check and summary do with an IR file, in-process."""
    spec = nnspec.from_ir(text, path)
    for d in spec.diagnostics:
        d.render()
        assert d.span is not None
    if spec.ok:
        for name in spec.model_names:
            for row in spec.layers(name):
                row.node.kind.detail(row.node.p, row.inputs)
            spec.param_count(name)
            spec.macs(name)
        assert nnspec.from_ir(spec.program.to_json(), path).ok
    return spec


def test_mutants_of_the_ir_never_raise():
    seeds = [ir_data(SMALL), ir_data(SEQ), ir_data(ATTN)]
    rng = random.Random(20240611)
    outcomes = {"ok": 0, "errors": 0}
    for i in range(300):
        mutant = mutate(seeds[i % len(seeds)], rng)
        text = json.dumps(mutant, indent=1 if i % 2 else None)
        try:
            spec = exercise(text)
        except Exception as e:  # pragma: no cover - the failure message names the mutant
            raise AssertionError(f"mutant {i} raised {type(e).__name__}: {e}\n{text}") from e
        outcomes["ok" if spec.ok else "errors"] += 1
    assert outcomes["errors"] > 150 and outcomes["ok"] > 10, outcomes


def test_truncated_and_corrupted_json_text_never_raises():
    text = ir_text(SEQ)
    rng = random.Random(7)
    for _ in range(60):
        i = rng.randrange(len(text))
        for bad in (text[:i], text[:i] + text[i + 1:], text[:i] + rng.choice('{}[]",:0x\\')
                    + text[i:]):
            spec = exercise(bad)
            assert all(d.span.file == "m.json" for d in spec.diagnostics)


def test_an_element_wise_op_with_a_number_reads_back():
    """``(x * 0.5)`` is mul of one tensor and a number: its IR is valid when read back."""
    spec = nnspec.loads("model M(x: [N, 4]) {\n    (x * 0.5) | relu\n}\n")
    program, diags = validate(spec.program.to_json())
    assert diags == [] and program.models[0].nodes[0].params["other"] == 0.5
