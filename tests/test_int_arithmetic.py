"""Int tensors in element-wise arithmetic, typed as torch types them: + - * of ints is
int, an int with a float tensor or a float number is float, / is true division (float).
The inferred types, both backends' values and dtypes against torch's own operators, the
emitted source, the gradients of the float operands, and what stays refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nnspec

from _gradcheck import check_autograd
from _util import import_source

torch = pytest.importorskip("torch")
from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module, emit_source  # noqa: E402

INPUTS = "a: [N, 3] int, b: [3] int, x: [N, 3]"
# each expression of a, b (int) and x (float64), with its inferred type and torch's value
CASES = [
    ("(a + b)", "[N, 3] int", lambda a, b, x: a + b),
    ("((a - b) * a)", "[N, 3] int", lambda a, b, x: (a - b) * a),
    ("(a + 1)", "[N, 3] int", lambda a, b, x: a + 1),
    ("(2 - a)", "[N, 3] int", lambda a, b, x: 2 - a),
    ("(a * -3)", "[N, 3] int", lambda a, b, x: a * -3),
    ("mul(a, b, a)", "[N, 3] int", lambda a, b, x: a * b * a),
    ("(a + 0.1)", "[N, 3]", lambda a, b, x: a + 0.1),
    ("(0.3 * a)", "[N, 3]", lambda a, b, x: 0.3 * a),
    ("(a / 3)", "[N, 3]", lambda a, b, x: a / 3),
    # torch's `7 / a` multiplies by a's reciprocal; the backends divide (torch.div)
    ("(7 / a)", "[N, 3]", lambda a, b, x: torch.div(7, a)),
    ("(a / b)", "[N, 3]", lambda a, b, x: a / b),
    ("(a * x)", "[N, 3]", lambda a, b, x: a * x),
    ("(x - b)", "[N, 3]", lambda a, b, x: x - b),
    ("(b / x)", "[N, 3]", lambda a, b, x: b / x),
    ("((a / b) + x)", "[N, 3]", lambda a, b, x: a / b + x),
]


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(-50, 50, (4, 3))
    b = np.array([3, -7, 11])  # a divisor away from 0
    x = rng.standard_normal((4, 3)) + 3.0
    return a, b, x


def _spec(expr: str):
    return nnspec.loads(f"model M({INPUTS}) {{\n    {expr}\n}}\n", "m.nn")


@pytest.mark.parametrize("expr, typ, fn", CASES, ids=[c[0] for c in CASES])
def test_types_and_values_are_torchs(expr, typ, fn):
    spec = _spec(expr)
    assert str(spec.output_type()) == typ
    a, b, x = _inputs()
    ta, tb, tx = (torch.from_numpy(v) for v in (a, b, x))
    want = fn(ta, tb, tx)  # torch's own operators and type promotion
    assert (want.dtype == torch.int64) == typ.endswith("int")
    ref = NumpyModel(spec, dtype=np.float64)(a, b, x)
    with torch.no_grad():
        got = build_module(spec, dtype=torch.float64)(ta, tb, tx)
    assert got.dtype == want.dtype
    assert ref.dtype == want.numpy().dtype  # float32 when no float tensor takes part
    np.testing.assert_array_equal(ref, want.numpy())
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_the_emitted_source_keeps_int_numbers_int(tmp_path):
    spec = nnspec.loads(f"""
model M({INPUTS}) {{
    c = ((a + 1) * b)
    d = (c / 2)
    e = (1 - x)
    (d + e) + (a * 0.5)
}}
""", "m.nn")
    src = emit_source(spec)
    assert "c = a + 1" in src and "c = c * b" in src and "d = c / 2\n" in src.replace("  #", "\n")
    assert "= 1.0 - x" in src  # a float tensor's number as before
    assert "a * 0.5" in src
    file = tmp_path / "gen_int_arith.py"
    file.write_text(src)
    net = import_source(file, "gen_int_arith").M()
    a, b, x = (torch.from_numpy(v) for v in _inputs(1))
    want = ((a + 1) * b) / 2 + (1 - x) + a * 0.5
    torch.testing.assert_close(net(a, b, x), want, rtol=0, atol=0)


def test_the_float_operands_get_gradients_and_the_ints_none():
    spec = nnspec.loads(f"""
model G({INPUTS}) {{
    h = x | dense 3 | tanh
    p = ((h * a) - (b / h))
    ((p + (a / b)) * (2 - b))
}}
""", "g.nn")
    got = check_autograd(spec, list(_inputs(2)))
    assert got.inputs[0] is None and got.inputs[1] is None
    assert got.inputs[2] is not None and np.abs(got.inputs[2]).sum() > 0


def test_an_int_number_stays_int_in_the_ir():
    from nnspec.core.dims import Dim
    from nnspec.layers import REGISTRY, TensorType

    for expr, other, typ in (("(a + 1)", 1, "[N, 3] int"), ("(a + 1.0)", 1.0, "[N, 3]")):
        (node,) = json.loads(_spec(expr).program.to_json())["models"][0]["nodes"]
        assert node["params"] == {"other": other}
        assert type(node["params"]["other"]) is type(other)
        kind = REGISTRY["add"]
        p = kind.Params.model_validate(node["params"])
        assert str(kind.infer(p, [TensorType((Dim.parse("N"), 3), "int")])) == typ


@pytest.mark.parametrize("expr, code, message", [
    ("(a + c)", "E363", "add: the shapes [N, 3] int and [4] int do not broadcast: dim 3 "
                        "against 4 (axis -1)"),
    ("(a + 1) | dense 4", "E300", "dense needs a float input, got [N, 3] int"),
    ("(a * 2) | mean dim=1", "E300", "mean needs a float input, got [N, 3] int"),
])
def test_what_torch_refuses_stays_refused(expr, code, message):
    text = f"model M({INPUTS}, c: [4] int) {{\n    {expr}\n}}\n"
    spec = nnspec.loads(text, "e.nn", strict=False)
    d = spec.diagnostics[0]
    assert (d.code, d.message) == (code, message)
