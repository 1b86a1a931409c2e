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
