"""Constant tensors on the inputs' device (build_module and the emitted source), the
comparison operators of expressions (< > <= >= == !=, below arithmetic as in Python), clamp
of int tensors, log and sqrt of numbers in constant expressions, and a bare ``param`` output
returned as a tensor, not the Parameter."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnspec
from nnspec.core.diagnostics import SpecError
from nnspec.layers import REGISTRY, TensorType

from _gradcheck import check_autograd, check_kind
from _util import import_source

torch = pytest.importorskip("torch")
from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module, emit_source  # noqa: E402

POSITIONS = """
model P(x: [N, T]) {
    pos = to_float(arange(T)) | reshape [1, T]
    (x + pos)
}
"""


def _emitted(spec, tmp_path, name):
    path = tmp_path / f"{name.lower()}_dev.py"
    path.write_text(emit_source(spec))
    return getattr(import_source(path, f"{name.lower()}_dev"), name)()


# ---- the device of a tensor made in forward ------------------------------------------------

def test_arange_is_made_on_the_inputs_device_in_both_torch_forms(tmp_path):
    spec = nnspec.loads(POSITIONS, "p.nn")
    src = emit_source(spec)
    assert "torch.arange(T, device=x.device)" in src
    net = build_module(spec, seed=0)
    emitted = _emitted(spec, tmp_path, "P")
    x = torch.zeros(2, 5, device="meta")  # torch's default device is the CPU
    for mod in (net, emitted):
        y = mod(x)
        assert y.device.type == "meta" and tuple(y.shape) == (2, 5)


def test_a_default_device_elsewhere_does_not_move_it(tmp_path):
    """With torch's default device set to another (meta), a CPU input still gets CPU
    positions: before, arange went to the default device and the sum failed."""
    spec = nnspec.loads(POSITIONS, "p.nn")
    net = build_module(spec, seed=0)
    emitted = _emitted(spec, tmp_path, "P")
    x = torch.ones(2, 4)
    want = x + torch.arange(4.0)
    torch.set_default_device("meta")
    try:
        got = [net(x), emitted(x)]
    finally:
        torch.set_default_device(None)
    for y in got:
        assert y.device.type == "cpu"
        torch.testing.assert_close(y, want)


def test_a_block_makes_it_on_its_own_argument_s_device(tmp_path):
    spec = nnspec.loads("""
block Pos(x) {
    (x + to_float(arange(T)))
}
model B(tokens: [N, T] int) {
    e = to_float(tokens)
    Pos as pos
}
""", "b.nn")
    src = emit_source(spec)
    assert src.count("torch.arange(") == 1 and ".device)" in src
    x = torch.zeros(2, 3, dtype=torch.long, device="meta")
    assert _emitted(spec, tmp_path, "B")(x).device.type == "meta"
    assert build_module(spec, seed=0)(x).device.type == "meta"


# ---- comparison operators ----------------------------------------------------------------

COMPARE = """
model C(a: [3, 4], b: [4]) {
    lt_ = (a < b)
    gt_ = (0 < a)
    le_ = (a - 0.5 <= b * 2)
    ge_ = (a >= b)
    eq_ = (a == b)
    ne_ = (1.0 != a)
    where(a > b, a, 0.25) + to_float(lt_ + gt_ + le_ + ge_ + eq_ + ne_)
}
"""


def test_comparisons_are_the_kinds_in_both_backends_and_the_source(tmp_path):
    spec = nnspec.loads(COMPARE, "c.nn")
    src = emit_source(spec)
    for text in ("torch.lt(a, b).long()", "torch.gt(a, 0).long()", "torch.ge(a, b).long()",
                 "torch.eq(a, b).long()", "torch.ne(a, 1.0).long()", "torch.le("):
        assert text in src, text
    rng = np.random.default_rng(0)
    a = rng.integers(-2, 3, size=(3, 4)).astype(np.float64)
    b = rng.integers(-2, 3, size=4).astype(np.float64)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    count = ((ta < tb).long() + (ta > 0).long() + (ta - 0.5 <= tb * 2).long()
             + (ta >= tb).long() + (ta == tb).long() + (ta != 1.0).long())
    want = torch.where(ta > tb, ta, 0.25) + count.float()
    assert (ta == tb).any() and (ta != tb).any()
    ref = NumpyModel(spec, dtype=np.float64)(a, b)
    with torch.no_grad():
        got = build_module(spec, seed=0, dtype=torch.float64)(ta, tb)
        emitted = _emitted(spec, tmp_path, "C").double()(ta, tb)
    for y in (ref, got.numpy(), emitted.numpy()):
        np.testing.assert_allclose(y, want.numpy(), rtol=1e-12)
    check_autograd(spec, [a + 0.1, b])  # the where's float path; comparisons pass none


def test_comparison_binds_below_arithmetic_and_does_not_chain():
    spec = nnspec.loads("model M(x: [4]) {\n    (x - 1 < x * 0)\n}\n", "m.nn")
    (_, _, cmp_) = [n.op for n in spec.model().nodes]
    assert cmp_ == "lt"  # (x - 1) < (x * 0)
    x = np.array([0.0, 0.5, 1.0, 2.0])
    np.testing.assert_array_equal(NumpyModel(spec)(x), [1, 1, 0, 0])
    with pytest.raises(SpecError) as e:
        nnspec.loads("model M(x: [4]) {\n    (x < 1 < 2)\n}\n", "m.nn")
    assert "m.nn:2:12:" in str(e.value) and "[E100]" in str(e.value)


def test_numbers_compare_to_booleans_and_sizes_do_not():
    spec = nnspec.loads("const big = 3 > 2\nconst d = 8\n"
                        "model M(x: [N, 4]) {\n    dense d bias=(d >= 16)\n}\n", "m.nn")
    assert spec.state_shapes() .keys() == {"dense_0.weight"}
    assert nnspec.loads("const b = 2 == 2\nmodel M(x: [N, 4]) {\n    dense 2 bias=b\n}\n",
                        "m.nn").param_count() == 10
    with pytest.raises(SpecError) as e:
        nnspec.loads("model M(x: [N, 4]) {\n    dense (N > 2)\n}\n", "m.nn")
    assert "[E024]" in str(e.value) and "m.nn:2:11:" in str(e.value)


def test_fmt_keeps_comparisons():
    from nnspec.tools.fmt import format_text

    text = "model M(x: [4], y: [4]) {\n    (x - 1 >= y)\n    (x != y)\n}\n"
    assert format_text(text) == text


# ---- T5's bucketing, as transformers writes it -------------------------------------------

T5_AS_WRITTEN = """
const num_buckets = 16
const max_exact = num_buckets / 2
const max_distance = 128
model Buckets(q: [N, T, 8], k: [N, S, 8]) {
    rel = (reshape(arange(S), [1, S]) - reshape(arange(T), [T, 1]))
    buckets = ((rel > 0) * num_buckets)
    n = abs(rel)
    large = (max_exact + to_int(log(to_float(n) / max_exact) / log(max_distance / max_exact) * (num_buckets - max_exact)))
    large = clamp(large, max=(num_buckets - 1))
    (buckets + where(n < max_exact, n, large))
}
"""


@pytest.mark.parametrize("t,s", [(7, 200), (150, 5)])
def test_t5_buckets_read_as_transformers_writes_them(t, s, tmp_path):
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(s)[None, :] - torch.arange(t)[:, None]
    want = T5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets=32,
                                                 max_distance=128).numpy()
    spec = nnspec.loads(T5_AS_WRITTEN, "t5.nn")
    src = emit_source(spec)
    assert "2.772588722239781" in src and "torch.clamp(large, max=15)" in src
    q, k = np.zeros((1, t, 8)), np.zeros((1, s, 8))
    np.testing.assert_array_equal(NumpyModel(spec)(q, k), want)
    with torch.no_grad():
        got = build_module(spec, seed=0)(torch.from_numpy(q), torch.from_numpy(k))
        emitted = _emitted(spec, tmp_path, "Buckets")(torch.from_numpy(q), torch.from_numpy(k))
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(emitted.numpy(), want)


def test_log_and_sqrt_of_numbers():
    spec = nnspec.loads("const k = log(128 / 8)\nconst d = 16\n"
                        "model M(x: [3]) {\n    ((x * sqrt(d)) + k)\n}\n", "m.nn")
    x = np.array([0.0, 1.0, -2.0])
    np.testing.assert_allclose(NumpyModel(spec, dtype=np.float64)(x),
                               x * 4.0 + math.log(16), rtol=1e-15)
    assert "x * 4.0" in emit_source(spec)


@pytest.mark.parametrize("src,where,code", [
    ("const k = log(0)\nmodel M(x: [4]) {\n    (x * k)\n}\n", "1:11", "E084"),
    ("model M(x: [4]) {\n    (x * sqrt(-1))\n}\n", "2:10", "E084"),
    ('const k = sqrt("a")\nmodel M(x: [4]) {\n    (x * k)\n}\n', "1:11", "E024"),
    ("model M(x: [4] int) {\n    clamp(x, max=2.5)\n}\n", "2:14", "E368"),
])
def test_bad_uses_are_located_errors(src, where, code):
    with pytest.raises(SpecError) as e:
        nnspec.loads(src, "m.nn")
    assert f"m.nn:{where}:" in str(e.value) and f"[{code}]" in str(e.value), str(e.value)


# ---- clamp of an int tensor ----------------------------------------------------------------

def test_clamp_keeps_an_int_tensor_int(tmp_path):
    spec = nnspec.loads("model M(x: [6] int) {\n    clamp(x, min=-1, max=3)\n}\n", "m.nn")
    assert str(spec.output_type()) == "[6] int"
    assert "torch.clamp(x, min=-1, max=3)" in emit_source(spec)
    x = np.array([-5, -1, 0, 2, 3, 9])
    want = torch.clamp(torch.from_numpy(x), min=-1, max=3)
    assert want.dtype == torch.int64
    got = build_module(spec, seed=0)(torch.from_numpy(x))
    assert got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_array_equal(NumpyModel(spec)(x), want.numpy())


def test_clamp_backward_still_matches_finite_differences():
    check_kind(REGISTRY["clamp"], {"min": -0.5, "max": 0.75}, [TensorType((3, 4))])


# ---- a param returned as it is ---------------------------------------------------------------

def test_a_returned_param_is_a_tensor_not_the_parameter(tmp_path):
    spec = nnspec.loads("model P(x: [N, 3]) {\n    y = x | dense 2\n"
                        "    w = param [2, 3] init=normal(0, 1) as w\n    return y, w\n}\n",
                        "p.nn")
    net = build_module(spec, seed=0)
    emitted = _emitted(spec, tmp_path, "P")
    emitted.load_state_dict(net.state_dict())
    x = torch.zeros(1, 3)
    for mod in (net, emitted):
        with torch.no_grad():
            _, w = mod(x)
        assert type(w) is torch.Tensor and not w.requires_grad
        torch.testing.assert_close(w, mod.w.detach())
        _, w = mod(x)
        assert type(w) is torch.Tensor and w.grad_fn is not None
        w.sum().backward()
        torch.testing.assert_close(mod.w.grad, torch.ones(2, 3))
    bare = nnspec.loads("model B(x: [N, 3]) {\n    param [2, 3] as w\n}\n", "b.nn")
    with torch.no_grad():
        out = build_module(bare, seed=0)(x)
    assert type(out) is torch.Tensor and not out.requires_grad
