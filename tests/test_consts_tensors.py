"""Tensors computed from sizes (nnspec/layers/consts.py): T5's relative-position buckets
against transformers' T5Attention, Swin's relative_position_index against torchvision's
buffer and its shifted-window mask against torchvision's construction, in both backends and
the emitted source; gradients of the float paths; located errors."""

from __future__ import annotations

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

# T5's bidirectional bucketing, num_buckets=32 (16 a side), max_distance=128:
# log(128 / 8) = 2.772588722239781
T5_BUCKETS = """
model Buckets(q: [N, T, 8], k: [N, S, 8]) {
    context = arange(T) | reshape [T, 1]
    memory = arange(S) | reshape [1, S]
    rel = (memory - context)
    side = (gt(rel, 0) * 16)
    dist = abs(rel)
    large = (to_int(((log((to_float(dist) / 8)) / 2.772588722239781) * 8)) + 8)
    (side + where(lt(dist, 8), dist, minimum(large, 15)))
}
"""

SWIN_INDEX = """
const ws = 7
const L = ws * ws
model SwinIndex(unused: [1]) {
    h = arange(ws) | reshape [ws, 1] | expand [ws, ws] | reshape [L]
    w = arange(ws) | reshape [1, ws] | expand [ws, ws] | reshape [L]
    dh = (reshape(h, [L, 1]) - reshape(h, [1, L]))
    dw = (reshape(w, [L, 1]) - reshape(w, [1, L]))
    (((dh + (ws - 1)) * (2 * ws - 1)) + (dw + (ws - 1))) | reshape [L * L]
}
"""

# the regions of a shifted window (0 | 1 | 2 along each axis: before H - ws, before
# H - shift, the rest), one id per pixel, windows of ws x ws, -100 between regions
SWIN_MASK = """
const ws = 7
const shift = 3
const H = 14
const W = 21
const L = ws * ws
model SwinMask(unused: [1]) {
    hr = arange(H)
    hr = (ge(hr, (H - ws)) + ge(hr, (H - shift)))
    wr = arange(W)
    wr = (ge(wr, (W - ws)) + ge(wr, (W - shift)))
    id = ((reshape(hr, [H, 1]) * 3) + reshape(wr, [1, W]))
    win = id | reshape [H / ws, ws, W / ws, ws] | permute (0, 2, 1, 3)
             | reshape [H / ws * (W / ws), L]
    d = (reshape(win, [H / ws * (W / ws), 1, L]) - reshape(win, [H / ws * (W / ws), L, 1]))
    (to_float(ne(d, 0)) * -100.0)
}
"""


def _outputs(spec, *xs):
    """The NumPy interpreter's, build_module's and the emitted source's outputs."""
    ref = NumpyModel(spec, dtype=np.float64)(*xs)
    ts = [torch.from_numpy(np.asarray(x)) for x in xs]
    with torch.no_grad():
        got = build_module(spec, dtype=torch.float64)(*ts).numpy()
    return ref, got


def _emitted(spec, tmp_path, name, *xs):
    path = tmp_path / f"{name.lower()}.py"
    path.write_text(emit_source(spec))
    mod = getattr(import_source(path, f"consts_{name.lower()}"), name)()
    with torch.no_grad():
        return mod(*[torch.from_numpy(np.asarray(x)) for x in xs]).numpy()


def _t5_buckets(t: int, s: int) -> np.ndarray:
    """transformers' buckets: T5Attention.compute_bias with a one-head bias table whose
    row b holds b, so that the bias it returns is the bucket of each pair."""
    from transformers import T5Config
    from transformers.models.t5.modeling_t5 import T5Attention

    cfg = T5Config(d_model=8, d_kv=8, num_heads=1, relative_attention_num_buckets=32,
                   relative_attention_max_distance=128, is_decoder=False)
    attn = T5Attention(cfg, has_relative_attention_bias=True)
    with torch.no_grad():
        attn.relative_attention_bias.weight.copy_(torch.arange(32.0)[:, None])
        bias = attn.compute_bias(t, s)  # [1, heads, T, S]
    return bias[0, 0].round().long().numpy()


@pytest.mark.parametrize("t,s", [(7, 200), (150, 5), (1, 1)])
def test_t5_relative_position_buckets_are_transformers(t, s, tmp_path):
    spec = nnspec.loads(T5_BUCKETS, "t5.nn")
    assert str(spec.output_type()) == "[T, S] int"
    q, k = np.zeros((2, t, 8)), np.zeros((2, s, 8))
    want = _t5_buckets(t, s)
    assert len(np.unique(want)) > 1 or t == s == 1
    ref, got = _outputs(spec, q, k)
    assert ref.dtype == got.dtype == np.int64
    np.testing.assert_array_equal(ref, want)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_emitted(spec, tmp_path, "Buckets", q, k), want)


def test_the_buckets_are_computed_in_forward_from_the_input_sizes():
    spec = nnspec.loads(T5_BUCKETS, "t5.nn")
    assert spec.state_shapes() == {}  # nothing stored: no state_dict key
    src = emit_source(spec)
    assert src.count("torch.arange(") == 2 and "dist.float()" in src
    assert "torch.gt(rel, 0).long()" in src and "torch.clamp(large, max=15)" in src
    assert "torch.where(" in src and ".bool()" in src and ".float()" in src


def test_swin_relative_position_index_is_torchvision_s_buffer(tmp_path):
    from _torchvision import models

    models()
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    want = ShiftedWindowAttention(8, [7, 7], [3, 3], 1).relative_position_index.numpy()
    spec = nnspec.loads(SWIN_INDEX, "swin.nn")
    assert str(spec.output_type()) == "[2401] int"
    x = np.zeros(1)
    ref, got = _outputs(spec, x)
    np.testing.assert_array_equal(ref, want)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_emitted(spec, tmp_path, "SwinIndex", x), want)


def _torchvision_shift_mask(h: int, w: int, ws: int, shift: int) -> np.ndarray:
    """The mask torchvision's shifted_window_attention builds (its code, for a padded
    input of h x w, one window size and shift for both axes)."""
    attn_mask = torch.zeros((h, w))
    h_slices = ((0, -ws), (-ws, -shift), (-shift, None))
    w_slices = ((0, -ws), (-ws, -shift), (-shift, None))
    count = 0
    for hs in h_slices:
        for wsl in w_slices:
            attn_mask[hs[0]:hs[1], wsl[0]:wsl[1]] = count
            count += 1
    attn_mask = attn_mask.view(h // ws, ws, w // ws, ws)
    attn_mask = attn_mask.permute(0, 2, 1, 3).reshape((h // ws) * (w // ws), ws * ws)
    attn_mask = attn_mask.unsqueeze(1) - attn_mask.unsqueeze(2)
    attn_mask = attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)
    return attn_mask.numpy()


def test_swin_shifted_window_mask_is_torchvision_s(tmp_path):
    want = _torchvision_shift_mask(14, 21, 7, 3)
    spec = nnspec.loads(SWIN_MASK, "mask.nn")
    assert str(spec.output_type()) == "[6, 49, 49]"
    x = np.zeros(1)
    ref, got = _outputs(spec, x)
    assert (want == -100.0).any() and (want == 0.0).any()
    np.testing.assert_array_equal(ref, want)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_emitted(spec, tmp_path, "SwinMask", x), want)


def test_arange_forms_are_torch_s():
    spec = nnspec.loads("""
model A(x: [N, T]) {
    a = arange(T)
    b = arange(2, [T + 3])
    c = arange(1, T, 3)
    concat(a, b, c, dim=0)
}
""", "a.nn")
    assert str(spec.output_type()) == "[2*T + ceil((T - 1)/3) + 1] int"
    for t in (1, 4, 8):
        want = np.concatenate([np.arange(t), np.arange(2, t + 3), np.arange(1, t, 3)])
        ref, got = _outputs(spec, np.zeros((2, t)))
        np.testing.assert_array_equal(ref, want)
        np.testing.assert_array_equal(got, want)


def test_comparisons_where_and_extremes_on_floats_match_torch():
    spec = nnspec.loads("""
model F(a: [3, 4], b: [4]) {
    lo = minimum(a, b)
    hi = maximum(a, 0.25)
    m = ge(a, b)
    where(m, lo, (hi * 2))
}
""", "f.nn")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal(4)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    want = torch.where(ta >= tb, torch.minimum(ta, tb), torch.clamp(ta, min=0.25) * 2)
    ref, got = _outputs(spec, a, b)
    np.testing.assert_allclose(ref, want.numpy(), rtol=1e-12)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12)
    check_autograd(spec, [a, b])


@pytest.mark.parametrize("name,args,ins", [
    ("minimum", {}, [TensorType((3, 4)), TensorType((4,))]),
    ("maximum", {"other": 0.1}, [TensorType((3, 4))]),
    ("where", {}, [TensorType((3, 4), "int"), TensorType((3, 4)), TensorType((1, 4))]),
    ("where", {"other": 1.5}, [TensorType((3, 4), "int"), TensorType((3, 4))]),
    ("abs", {}, [TensorType((3, 4))]),
])
def test_float_backward_matches_finite_differences(name, args, ins):
    check_kind(REGISTRY[name], args, ins)


def test_log_backward_matches_finite_differences_on_positive_inputs():
    def positive(xs, w):
        xs[0] = np.abs(xs[0]) + 0.5
    check_kind(REGISTRY["log"], {}, [TensorType((3, 4))], prepare=positive)


def test_ties_split_the_gradient_as_torch():
    spec = nnspec.loads("model T(a: [3], b: [3]) {\n    minimum(a, b)\n}\n", "t.nn")
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 5.0])
    check_autograd(spec, [a, b])


@pytest.mark.parametrize("src,where,message", [
    ("model M(x: [4]) {\n    arange(5, 2)\n}\n", "2:15", "arange(5, 2) is empty"),
    ("model M(x: [4]) {\n    arange(0, 3, 0)\n}\n", "2:18", "invalid step for arange"),
    ("model M(x: [4]) {\n    x | arange(3)\n}\n", "2:9", "ignores the value piped"),
    ("model M(x: [4]) {\n    arange(K)\n}\n", "2:12", "not a dim of the model's inputs"),
    ("model M(x: [4]) {\n    where(x, x, x)\n}\n", "2:5", "int condition"),
    ("model M(x: [4]) {\n    to_float(x)\n}\n", "2:5", "to_float casts an int tensor"),
    ("model M(x: [4] int) {\n    to_int(x)\n}\n", "2:5", "to_int casts a float tensor"),
    ("model M(x: [4], y: [3]) {\n    lt(x, y)\n}\n", "2:5", "broadcast"),
    ("model M(x: [4]) {\n    minimum(x)\n}\n", "2:5", "minimum takes 2 input tensors"),
])
def test_bad_input_is_a_located_error(src, where, message):
    with pytest.raises(SpecError) as e:
        nnspec.loads(src, "m.nn")
    text = str(e.value)
    assert f"m.nn:{where}:" in text and message in text, text


def test_a_float32_path_in_a_float64_crosscheck_is_judged_at_its_precision():
    """`to_float` gives torch's default float32 in any run: its path is compared at float32's
    tolerance, the float64 layers elsewhere at float64's (fuzzing, seed 20261209)."""
    from nnspec.tools.crosscheck import crosscheck

    spec = nnspec.loads("model R(x: [N, 3]) {\n    v2 = arange(8)\n    v3 = abs((v2 - 1))\n"
                        "    v4 = log((to_float(v3) + 1))\n    y = x | dense 4\n"
                        "    return y\n}\n", "r.nn")
    report = crosscheck(spec, "R", "float64", dims={"N": 3})
    assert report.ok
    tol = {r.kind: r.path_tolerance for r in report.rows}
    assert tol["log"] == 1e-4 and tol["dense"] == 0.0
