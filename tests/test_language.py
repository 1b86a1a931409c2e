"""The language's rules, each decided once and tested here (see the README's tour)."""

from __future__ import annotations

import json

import pytest

import nnspec
from nnspec import ir


def shapes(text: str, model: str | None = None) -> list[tuple[str, str, str]]:
    spec = nnspec.loads(text, "t.nn")
    return [(r.name, r.kind, str(r.output)) for r in spec.layers(model)]


def test_pipeline_lines_and_bars_are_the_same():
    a = shapes("model M(x: [N, 4]) {\n    dense 8\n    relu\n    dense 2\n}\n")
    b = shapes("model M(x: [N, 4]) {\n    dense 8 | relu | dense 2\n}\n")
    c = shapes("model M(x: [N, 4]) {\n    dense 8\n        | relu   # comment\n"
               "        # a comment line between\n        | dense 2\n}\n")
    assert a == b == c == [("dense_0", "dense", "[N, 8]"), ("relu_0", "relu", "[N, 8]"),
                           ("dense_1", "dense", "[N, 2]")]


def test_dense_64_times_2_is_a_repetition():
    rep = shapes("model M(x: [N, 4]) {\n    dense 64 * 2\n}\n")
    assert rep == [("dense_0", "dense", "[N, 64]"), ("dense_1", "dense", "[N, 64]")]
    wide = shapes("model M(x: [N, 4]) {\n    dense (64 * 2)\n}\n")
    assert wide == [("dense_0", "dense", "[N, 128]")]


def test_call_with_tensor_argument_is_the_same_layer_as_a_bare_line():
    a = nnspec.loads("model M(x: [N, 4]) {\n    y = dense 4\n    return relu(y + x)\n}\n")
    b = nnspec.loads("model M(x: [N, 4]) {\n    y = dense 4\n    y + x\n    relu\n}\n")
    ops = lambda s: [(n.op, n.name, len(n.inputs)) for n in s.model().nodes]  # noqa: E731
    assert ops(a) == ops(b) == [("dense", "dense_0", 1), ("add", "add_0", 2),
                                ("relu", "relu_0", 1)]


def test_named_values_and_branches():
    spec = nnspec.loads("""
model M(x: [N, 3, 8, 8]) -> [N, 10, 8, 8] {
    a = conv 4 k=3 p=1
    b = x | conv 6 k=1
    concat(a, b, dim=1)      : [N, 10, 8, 8]
}
""")
    m = spec.model()
    cat = m.nodes[-1]
    assert cat.op == "concat" and cat.inputs == [m.nodes[0].id, m.nodes[1].id]
    assert m.nodes[0].inputs == m.nodes[1].inputs == ["in_x"]


def test_blocks_defaults_repetition_and_names():
    spec = nnspec.loads("""
block Basic(x, c, stride=1) {
    y = x | conv c k=3 s=stride p=1 bias=false as conv1 | batchnorm as bn1 | relu
          | conv c k=3 p=1 bias=false as conv2 | batchnorm as bn2
    return relu(y + x)
}
model R(x: [N, 8, 16, 16]) {
    Basic(8) * 2 as layer1
    Basic(c=8)
}
""")
    keys = list(spec.state_shapes())
    assert keys[:2] == ["layer1.0.conv1.weight", "layer1.0.bn1.weight"]
    assert "layer1.1.conv2.weight" in keys
    assert "basic_0.conv1.weight" in keys
    assert str(spec.output_type()) == "[N, 8, 16, 16]"


def test_constants_and_integer_arithmetic():
    spec = nnspec.loads("""
const d = 512
const heads = 8
const head = d / heads
const half = 7 // 2
const mixed = (d - 12) * 2 + 1
model M(x: [N, d]) {
    dense head | dense half | dense mixed
}
""")
    assert [str(r.output) for r in spec.layers()] == ["[N, 64]", "[N, 3]", "[N, 1001]"]


def test_flags_are_bare_words():
    spec = nnspec.loads("""
model M(x: [N, 3, 7, 7]) {
    maxpool k=2 ceil
    avgpool global
}
""")
    assert [str(r.output) for r in spec.layers()] == ["[N, 3, 4, 4]", "[N, 3, 1, 1]"]


def test_padding_same_and_asymmetric_pads():
    spec = nnspec.loads("""
model M(x: [N, 3, 9, 9]) {
    conv 4 k=4 p=same              : [N, 4, 9, 9]
    conv 4 k=3 p=((0, 1), (2, 0))  : [N, 4, 8, 9]
}
""")
    rows = spec.layers()
    assert "pads=((1, 2), (1, 2))" in rows[0].node.kind.detail(rows[0].node.p, rows[0].inputs)


def test_symbolic_dims_flow_through_and_simplify():
    spec = nnspec.loads("""
model M(x: [N, 3, H, W]) {
    conv 8 k=3 s=2 p=1     : [N, 8, floor((H - 1)/2) + 1, floor((W - 1)/2) + 1]
    maxpool k=2            : [N, 8, floor((floor((H - 1)/2) + 1 - 2)/2) + 1, _]
    avgpool global | flatten   : [N, 8]
    dense 10
}
""", strict=False)
    # the second annotation is written the long way round; the check compares values
    assert str(spec.types().types[spec.model().nodes[1].id].shape[2]) == "floor((H - 3)/4) + 1"
    assert [d.message for d in spec.diagnostics] == []
    assert str(spec.output_type()) == "[N, 10]"


def test_annotation_symbol_binds_like_a_pattern():
    spec = nnspec.loads("""
model M(x: [N, T, 16]) {
    dense 8      : [N, T, K]
    dense 8      : [N, T, K]
}
""", strict=False)
    assert spec.ok
    bad = nnspec.loads("model M(x: [N, T, 16]) {\n    dense 8 : [N, N, 8]\n}\n", strict=False)
    assert [d.code for d in bad.diagnostics] == ["E311"]


def test_reshape_infers_minus_one_with_a_symbolic_batch():
    assert shapes("model M(x: [N, 400]) {\n    reshape [N, 16, -1, 5]\n}\n") == [
        ("reshape_0", "reshape", "[N, 16, 5, 5]")]


def test_use_imports_blocks_and_constants(tmp_path):
    (tmp_path / "lib.nn").write_text("const width = 32\nblock MLP(x, h) {\n    dense h | relu\n}\n")
    (tmp_path / "net.nn").write_text('use "lib.nn"\nmodel M(x: [N, 4]) {\n'
                                     "    MLP(width) | dense 2\n}\n")
    spec = nnspec.load(str(tmp_path / "net.nn"))
    assert [str(r.output) for r in spec.layers()] == ["[N, 32]", "[N, 32]", "[N, 2]"]
    assert spec.model_names == ["M"]


def test_several_models_and_a_composition_check():
    spec = nnspec.loads("""
model G(z: [N, 16]) -> [N, 32] {
    dense 32 | tanh
}
model D(img: [B, 32]) -> [B, 1] {
    dense 1 | sigmoid
}
check D(G)
""")
    assert spec.model_names == ["G", "D"]
    assert spec.program.checks[0].chain == ["D", "G"]


def test_ir_round_trips_through_json():
    text = open("specs/lenet5.nn").read()
    spec = nnspec.loads(text, "specs/lenet5.nn")
    data = spec.program.to_json()
    again = ir.Program.from_json(data)
    assert again == spec.program
    assert again.model_dump() == json.loads(data)
    # the reloaded IR re-validates every layer's arguments
    raw = json.loads(data)
    raw["models"][0]["nodes"][0]["params"]["k"] = 0
    with pytest.raises(ValueError, match="k must be >= 1"):
        ir.Program.model_validate(raw)
    assert nnspec.from_ir(again).param_count("LeNet5") == 61706


def test_json_schema_is_exported():
    schema = ir.json_schema()
    assert schema["title"] == "Program"
    assert "Node" in schema["$defs"]


def test_spans_are_kept_on_every_node():
    spec = nnspec.loads("model M(x: [N, 4]) {\n    dense 8 | relu\n}\n", "s.nn")
    relu = spec.model().nodes[1]
    assert relu.span == ["s.nn", 2, 15, 2, 19]
    assert relu.text == "relu"
    assert spec.model().nodes[0].arg_spans == {"out": ["s.nn", 2, 11, 2, 12]}


def test_no_python_is_ever_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    text = ('model M(x: [N, 4]) {\n    dense __import__("os").system("touch %s")\n}\n'
            % marker)
    spec = nnspec.loads(text, strict=False)
    assert not spec.ok and not marker.exists()


def test_a_files_own_definitions_shadow_imported_ones(tmp_path):
    (tmp_path / "lib.nn").write_text("block Head(x) {\n    dense 3\n}\n"
                                     "block Body(x) {\n    dense 7\n}\n")
    (tmp_path / "net.nn").write_text(
        "model Head(x: [N, 4]) {\n    dense 5\n}\n"  # defined before the use
        'use "lib.nn"\n'
        "block Body(x) {\n    dense 9\n}\n"  # defined after the use
        "model M(x: [N, 4]) {\n    Body()\n}\n")
    spec = nnspec.load(str(tmp_path / "net.nn"))
    assert spec.model_names == ["Head", "M"]
    assert str(spec.output_type("M")) == "[N, 9]"
    twice = nnspec.loads("const a = 1\nconst a = 2\n", strict=False)
    assert [d.message for d in twice.diagnostics] == ["'a' is defined twice"]


def test_the_readme_examples_are_valid_specs():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    examples = [b for b in re.findall(r"```\n(.*?)```", readme, re.S)
                if re.search(r"^model \w+\(", b, re.M)]
    assert len(examples) >= 2
    for text in examples:
        spec = nnspec.loads(text, "readme.nn", strict=False)
        assert spec.ok, [d.message for d in spec.diagnostics]


def test_crlf_line_endings_and_a_byte_order_mark(tmp_path):
    path = tmp_path / "windows.nn"
    path.write_bytes(b"\xef\xbb\xbf# saved on Windows\r\nmodel M(x: [N, 4]) -> [N, 2] {\r\n"
                     b"    dense 8\r\n        | relu   # comment\r\n    dense 2 : [N, 2]\r\n}\r\n")
    spec = nnspec.load(str(path))
    assert [r.kind for r in spec.layers()] == ["dense", "relu", "dense"]
