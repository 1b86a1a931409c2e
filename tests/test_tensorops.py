"""Tensor operations (transpose, permute, mean/sum/amax/amin, matmul): shapes by hand,
located errors, and both backends and the reference backward against torch."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec

from _gradcheck import check_autograd

OPS = """
model M(x: [N, 3, 4], y: [4, 5], v: [4]) {
    a = x | transpose 1 2 | permute (0, 2, 1)      : [N, 3, 4]
    b = matmul(a, y) | mean dim=-1 keepdim         : [N, 3, 1]
    c = x | amax 1                                 : [N, 4]
    d = x | amin (1, 2) keepdim                    : [N, 1, 1]
    e = matmul(x, v)                               : [N, 3]
    g = x | sum dim=(1,)                           : [N, 4]
    t = x | swapaxes -1 -2
    h = matmul(x, t) | max 2                       : [N, 3]
    concat(flatten(b), c, flatten(d), e, g, h, dim=1)
}
"""


def test_shapes_by_hand():
    spec = nnspec.loads(OPS, "ops.nn")
    out = {r.name: str(r.output) for r in spec.layers("M")}
    assert out["matmul_0"] == "[N, 3, 5]"
    assert out["matmul_2"] == "[N, 3, 3]"
    assert out["concat_0"] == "[N, 18]"  # 3 + 4 + 1 + 3 + 4 + 3


def test_reference_gradients_agree_with_torch_autograd():
    spec = nnspec.loads(OPS, "ops.nn")
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(s) for s in ((2, 3, 4), (4, 5), (4,))]
    check_autograd(spec, xs)


def test_amax_shares_the_gradient_of_ties_as_torch():
    spec = nnspec.loads("model M(x: [N, 4]) {\n    amax 1\n}", "m.nn")
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    got = check_autograd(spec, [x])
    assert np.any((got.inputs[0] != 0) & (got.inputs[0] != got.inputs[0].max()))


@pytest.mark.parametrize("line, message", [
    ("transpose 1 3", "transpose: axis 3 is out of range for a rank-3 input (axes -3 to 2)"),
    ("permute (0, 1)", "permute (0, 1) gives 2 axes for a rank-3 input [N, 3, 4]"),
    ("permute (0, 1, 1)", "permute: an axis is given twice in (0, 1, 1)"),
    ("mean dim=(1, -2)", "mean: an axis is given twice in (1, -2)"),
])
def test_errors_are_located(line, message):
    text = f"model M(x: [N, 3, 4]) {{\n    {line}\n}}"
    spec = nnspec.loads(text, "e.nn", strict=False)
    (d,) = spec.diagnostics
    assert d.message == message
    assert d.code in ("E360", "E361", "E362")
    assert d.span.line == 2 and d.span.col >= 5  # at the argument at fault


def test_matmul_errors_name_the_dims():
    text = "model M(x: [N, 3, 4], y: [5, 6], z: [2, 4, 6]) {\n    a = matmul(x, y)\n}"
    (d,) = nnspec.loads(text, "e.nn", strict=False).diagnostics
    assert d.message == "matmul: the inner dims differ: [N, 3, 4] @ [5, 6] contracts 4 with 5"
    assert d.code == "E365"
    text = "model M(x: [N, 3, 4], z: [2, 4, 6]) {\n    matmul(x, z)\n}"
    spec = nnspec.loads(text, "e.nn", strict=False)
    (d,) = spec.diagnostics
    assert d.code == "E363"
    assert "dim N against 2" in d.message


def test_matmul_broadcasts_a_batch_of_one():
    text = "model M(x: [N, 3, 4], z: [1, 4, 6]) {\n    matmul(x, z)\n}"
    spec = nnspec.loads(text, "m.nn")
    assert str(spec.output_type("M")) == "[N, 3, 6]"


INDEXING = """
model I(x: [N, T, 8], y: [N, 4, 6]) {
    a = x[:, 0]                       : [N, 8]
    b = x[..., 1:5:2] | dense 3       : [N, T, 3]
    c = x[:, -1, :]                   : [N, 8]
    e = y[:, 1:, -3:]                 : [N, 3, 3]
    f = y[..., :2]                    : [N, 4, 2]
    g = y[:, ::3, 5]                  : [N, 2]
    h = b[:, 1:]                      : [N, T - 1, 3]
    concat(a, flatten(h), c, flatten(e), flatten(f), g, dim=1)
}
"""


def test_indexing_shapes_and_both_backends():
    from nnspec.tools.crosscheck import crosscheck

    spec = nnspec.loads(INDEXING, "i.nn")
    assert str(spec.output_type("I")) == "[N, 3*T + 32]"  # 8 + 3(T-1) + 8 + 9 + 8 + 2
    report = crosscheck(spec, "I", "float64", seed=0, dims={"N": 2, "T": 3})
    assert report.ok, report.render()


def test_indexing_gradients_agree_with_torch_autograd():
    spec = nnspec.loads(INDEXING, "i.nn")
    rng = np.random.default_rng(3)
    check_autograd(spec, [rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 4, 6))], "I")


def test_indexing_reads_as_python_in_the_emitted_source():
    pytest.importorskip("torch")
    from nnspec.backends.torch import emit_source

    src = emit_source(nnspec.loads(INDEXING, "i.nn"))
    for text in ("x[:, 0]", "x[..., 1:5:2]", "y[:, 1:, -3:]", "y[:, ::3, 5]"):
        assert text in src, text


@pytest.mark.parametrize("line, code, message", [
    ("y[:, 4]", "E366", "index 4 is out of range for axis 1 of [N, 4, 6] (size 4)"),
    ("y[:, -5]", "E366", "index -5 is out of range for axis 1 of [N, 4, 6] (size 4)"),
    ("y[0, 0, 0, 0]", "E366", "too many indices for [N, 4, 6]: 4 for 3 axes"),
    ("y[:, 3:1]", "E367", "the slice 3:1 of axis 1 of [N, 4, 6] is empty"),
    ("y[:, ::-1]", "E367", "the step -1 on axis 1: torch takes steps of 1 or more"),
    ("z[:, 0]", "E048", "unknown name 'z': only named values can be indexed"),
    ("y[:, 1.5]", "E046", "an index or slice bound is an integer, got the number 1.5"),
])
def test_indexing_errors_are_located(line, code, message):
    text = f"model M(y: [N, 4, 6]) {{\n    a = {line}\n}}"
    spec = nnspec.loads(text, "e.nn", strict=False)
    d = spec.diagnostics[0]
    assert (d.code, d.message) == (code, message)
    assert d.span.line == 2


def test_an_index_after_a_pipe_would_drop_the_piped_value():
    text = "model M(y: [N, 4, 6]) {\n    y | relu | y[:, 0]\n}"
    (d,) = nnspec.loads(text, "e.nn", strict=False).diagnostics
    assert d.code == "E065"
