"""Element-wise arithmetic of tensors: + - * / with NumPy's broadcasting, and with numbers
(``(x * 0.5)``, ``(1 - x)``); shapes, located errors naming the dims, both backends and the
reference backward against torch."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec

from _gradcheck import check_autograd

ARITH = """
model M(x: [N, 3, 4], b: [4], c: [N, 1, 4], k: [3, 1]) {
    a = (x * 0.5)
    d = (1 - a)
    e = (x / 2)
    f = (x - b)
    g = (x / c)
    h = (2 * x) + k
    m = mul(x, c, k)
    (f + g) + (h - d) + (e * m)
}
"""


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x, b, k = (rng.standard_normal(s) for s in ((2, 3, 4), (4,), (3, 1)))
    c = rng.uniform(0.5, 2.0, (2, 1, 4)) * rng.choice([-1, 1], (2, 1, 4))  # away from 0
    return [x, b, c, k]


def test_values_equal_numpy_arithmetic():
    from nnspec.backends.numpy import NumpyModel

    spec = nnspec.loads(ARITH, "a.nn")
    x, b, c, k = _inputs()
    a = x * 0.5
    want = ((x - b) + x / c) + ((2 * x + k) - (1 - a)) + (x / 2) * (x * c * k)
    got = NumpyModel(spec, dtype=np.float64)(x, b, c, k)
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_reference_gradients_agree_with_torch_autograd():
    check_autograd(nnspec.loads(ARITH, "a.nn"), _inputs(1))


def test_the_emitted_source_writes_the_operators():
    pytest.importorskip("torch")
    from nnspec.backends.torch import emit_source

    src = emit_source(nnspec.loads(ARITH, "a.nn"))
    assert "= x * 0.5" in src  # as written by hand
    assert "= 1.0 - " in src
    assert "torch.mul(" not in src


@pytest.mark.parametrize("expr, message", [
    ("(x - y)", "sub: the shapes [N, 3, 4] and [N, 5] do not broadcast: dim 4 against 5 "
                "(axis -1)"),
    ("(x * z)", "mul: the shapes [N, 3, 4] and [2, 4] do not broadcast: dim 3 against 2 "
                "(axis -2)"),
    ("(x % 2)", None),
])
def test_broadcast_errors_name_the_dims(expr, message):
    text = f"model M(x: [N, 3, 4], y: [N, 5], z: [2, 4]) {{\n    {expr}\n}}"
    spec = nnspec.loads(text, "e.nn", strict=False)
    assert spec.diagnostics
    d = spec.diagnostics[0]
    if message is None:
        assert d.code == "E100"  # not an operator of the language
        return
    assert d.message == message
    assert d.code == "E363"
    assert (d.span.line, d.span.col) == (2, 6)  # the expression in the parentheses
