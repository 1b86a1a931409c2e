"""rope (rotary position embeddings) and sdpa (scaled dot-product attention of projected
heads): both backends against torch written by hand in float64 (HF LLaMA's rotate_half,
Meta's complex-number rotation, GPT-NeoX's partial rotary; F.scaled_dot_product_attention
with masks of each kind and shape, GQA, a scale, the bottom-right causal mask built by
hand), the reference backward against autograd, the located errors, and the emitted
source against build_module."""

from __future__ import annotations

import math

import numpy as np
import pytest

from _gradcheck import check_autograd
from _util import import_source
import nnspec
from nnspec.layers import REGISTRY
from nnspec.layers.base import NumpyCtx, TensorType

torch = pytest.importorskip("torch")
F = torch.nn.functional

from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module, emit_source  # noqa: E402

RTOL, ATOL = 1e-10, 1e-12


def _both(text: str, *xs, model: str | None = None, training: bool = False):
    """(NumPy output, torch output) of a spec without weights, float64."""
    spec = nnspec.loads(text, "t.nn")
    ref = NumpyModel(spec, model, params={}, dtype=np.float64)
    mod = build_module(spec, model, params={}, dtype=torch.float64).train(training)
    with torch.no_grad():
        got = mod(*[torch.from_numpy(x) for x in xs]).numpy()
    return ref(*xs), got


def _close(*arrays, want):
    for a in arrays:
        np.testing.assert_allclose(a, want, rtol=RTOL, atol=ATOL)


# ---- rope: hand-written references -------------------------------------------------------


def hf_rotate_half(x):
    """transformers' LlamaModel: rotate_half."""
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def hf_cos_sin(dim, position_ids, base):
    """transformers' LlamaRotaryEmbedding.forward (in float64): cos, sin [T, dim]."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).double() / dim))
    freqs = position_ids.double()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def hf_apply(q, cos, sin, unsqueeze_dim=1):
    """transformers' apply_rotary_pos_emb for one tensor, cos/sin [N, T, dim]."""
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (hf_rotate_half(q) * sin)


def meta_freqs_cis(dim, end, theta):
    """Meta's llama: precompute_freqs_cis (float64)."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: (dim // 2)].double() / dim))
    t = torch.arange(end, dtype=torch.float64)
    freqs = torch.outer(t, freqs)
    return torch.polar(torch.ones_like(freqs), freqs)


def meta_apply(x, freqs_cis):
    """Meta's llama: apply_rotary_emb on x [N, T, H, D]."""
    x_ = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
    freqs_cis = freqs_cis.view(1, x_.shape[1], 1, x_.shape[-1])
    return torch.view_as_real(x_ * freqs_cis).flatten(3)


def neox_partial(q, rot, base, offset=0):
    """GPT-NeoX / Phi: rotate the first ``rot`` features of [N, H, T, D], pass the rest."""
    t = q.shape[-2]
    cos, sin = hf_cos_sin(rot, torch.arange(offset, offset + t), base)
    q_rot, q_pass = q[..., :rot], q[..., rot:]
    q_embed = (q_rot * cos) + (hf_rotate_half(q_rot) * sin)
    return torch.cat((q_embed, q_pass), dim=-1)


def test_rope_is_hf_llamas_rotate_half():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 8))  # [N, H, T, D]
    a, b = _both("model M(x: [N, H, T, 8]) {\n    rope theta=500000\n}", x)
    cos, sin = hf_cos_sin(8, torch.arange(5)[None].expand(2, 5)[0], 500000.0)
    want = hf_apply(torch.from_numpy(x), cos[None].expand(2, 5, 8), sin[None].expand(2, 5, 8))
    _close(a, b, want=want.numpy())
    # the defaults: theta 10000, and [N, T, D] without heads
    y = np.random.default_rng(1).standard_normal((2, 6, 4))
    a, b = _both("model M(x: [N, T, 4]) {\n    rope\n}", y)
    cos, sin = hf_cos_sin(4, torch.arange(6), 10000.0)
    want = torch.from_numpy(y) * cos + hf_rotate_half(torch.from_numpy(y)) * sin
    _close(a, b, want=want.numpy())


def test_rope_on_n_t_h_d_with_axis_1_is_hfs_unsqueeze_dim_2():
    x = np.random.default_rng(2).standard_normal((2, 5, 3, 6))  # [N, T, H, D]
    a, b = _both("model M(x: [N, T, H, 6]) {\n    rope base=100 axis=1\n}", x)
    cos, sin = hf_cos_sin(6, torch.arange(5), 100.0)
    want = hf_apply(torch.from_numpy(x), cos[None].expand(2, 5, 6), sin[None].expand(2, 5, 6),
                    unsqueeze_dim=2)
    _close(a, b, want=want.numpy())


def test_interleaved_is_metas_complex_rotation():
    x = np.random.default_rng(3).standard_normal((2, 7, 3, 8))  # [N, T, H, D]
    a, b = _both("model M(x: [N, T, H, 8]) {\n    rope layout=interleaved axis=1 theta=1000\n}",
                 x)
    want = meta_apply(torch.from_numpy(x), meta_freqs_cis(8, 7, 1000.0))
    _close(a, b, want=want.numpy())
    # not the half layout: the pairs differ
    assert not np.allclose(a, _both("model M(x: [N, T, H, 8]) {\n    rope axis=1 theta=1000\n}",
                                    x)[0])


def test_partial_rotary_is_gpt_neox():
    x = np.random.default_rng(4).standard_normal((2, 2, 5, 10))
    a, b = _both("model M(x: [N, H, T, 10]) {\n    rope rotary_dim=4\n}", x)
    want = neox_partial(torch.from_numpy(x), 4, 10000.0)
    _close(a, b, want=want.numpy())
    np.testing.assert_array_equal(a[..., 4:], x[..., 4:])  # the rest passes unchanged


def test_offset_is_the_position_of_the_first_step():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2, 3, 8))
    a, b = _both("model M(x: [N, H, T, 8]) {\n    rope offset=5\n}", x)
    cos, sin = hf_cos_sin(8, torch.arange(5, 8), 10000.0)
    want = torch.from_numpy(x) * cos + hf_rotate_half(torch.from_numpy(x)) * sin
    _close(a, b, want=want.numpy())
    # the same as the last 3 steps of a sequence of 8 from position 0
    full = np.concatenate([rng.standard_normal((2, 2, 5, 8)), x], axis=2)
    whole, _ = _both("model M(x: [N, H, T, 8]) {\n    rope\n}", full)
    _close(a, want=whole[:, :, 5:])
    # partial and interleaved with an offset: GPT-NeoX's and Meta's at those positions
    c, d = _both("model M(x: [N, H, T, 8]) {\n    rope offset=5 dim=6\n}", x)
    _close(c, d, want=neox_partial(torch.from_numpy(x), 6, 10000.0, offset=5).numpy())
    xt = np.ascontiguousarray(x.transpose(0, 2, 1, 3))  # [N, T, H, D]
    e, f = _both("model M(x: [N, T, H, 8]) {\n    rope layout=interleaved offset=5 axis=-3\n}",
                 xt)
    want = meta_apply(torch.from_numpy(xt), meta_freqs_cis(8, 8, 10000.0)[5:])
    _close(e, f, want=want.numpy())


def test_rope_float32_agrees_across_backends_at_long_positions():
    x = np.random.default_rng(6).standard_normal((1, 2, 4, 16)).astype(np.float32)
    spec = nnspec.loads("model M(x: [N, H, T, 16]) {\n    rope offset=100000\n}", "t.nn")
    a = NumpyModel(spec, params={}, dtype=np.float32)(x)
    b = build_module(spec, params={}, dtype=torch.float32)(torch.from_numpy(x)).detach()
    assert a.dtype == np.float32 and b.dtype == torch.float32
    np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-6)


def test_rope_has_no_state_and_counts_two_products_per_rotated_feature():
    spec = nnspec.loads("model M(x: [N, H, T, 10]) {\n    rope dim=4\n}", "t.nn")
    assert spec.state_shapes("M") == {}
    (row,) = spec.layers("M")
    assert str(row.macs) == "8*H*N*T"


@pytest.mark.parametrize("line", [
    "rope", "rope layout=interleaved offset=2 theta=300", "rope dim=4 offset=1",
    "rope axis=1 dim=2 layout=interleaved",
])
def test_rope_backward_matches_autograd(line):
    spec = nnspec.loads(f"model M(x: [N, T, H, 6]) {{\n    dense 6\n    {line}\n}}", "t.nn")
    got = check_autograd(spec, [np.random.default_rng(7).standard_normal((2, 4, 3, 6))])
    assert np.abs(got.inputs[0]).max() > 0


# ---- sdpa ---------------------------------------------------------------------------------


def _sdpa_both(args: str, shapes: dict, dtypes: dict | None = None, seed=0):
    """(NumPy, torch, the inputs as torch tensors) of sdpa(q, k, v, args) on random inputs;
    int inputs are 0/1 masks."""
    dtypes = dtypes or {}
    decl = ", ".join(f"{n}: [{', '.join(map(str, s))}]" + (" int" if dtypes.get(n) else "")
                     for n, s in shapes.items())
    text = f"model M({decl}) {{\n    sdpa(q, k, v{', ' + args if args else ''})\n}}"
    rng = np.random.default_rng(seed)
    xs = [rng.integers(0, 2, size=s) if dtypes.get(n) else rng.standard_normal(s)
          for n, s in shapes.items()]
    a, b = _both(text, *xs)
    return a, b, {n: torch.from_numpy(x) for n, x in zip(shapes, xs)}


BASE = {"q": (2, 3, 4, 5), "k": (2, 3, 6, 5), "v": (2, 3, 6, 7)}


def test_sdpa_is_torchs_with_a_scale_and_broadcast_leading_dims():
    a, b, t = _sdpa_both("", BASE)
    _close(a, b, want=F.scaled_dot_product_attention(t["q"], t["k"], t["v"]).numpy())
    a, b, t = _sdpa_both("scale=0.25", BASE)
    _close(a, b, want=F.scaled_dot_product_attention(t["q"], t["k"], t["v"], scale=0.25).numpy())
    shapes = {"q": (2, 1, 4, 5), "k": (1, 3, 6, 5), "v": (6, 7)}
    a, b, t = _sdpa_both("", shapes)
    assert a.shape == (2, 3, 4, 7)
    _close(a, b, want=F.scaled_dot_product_attention(t["q"], t["k"], t["v"]).numpy())
    a, b, t = _sdpa_both("", {"q": (4, 5), "k": (6, 5), "v": (6, 2)})  # rank 2
    _close(a, b, want=F.scaled_dot_product_attention(t["q"], t["k"], t["v"]).numpy())


@pytest.mark.parametrize("mask_shape", [(4, 6), (1, 6), (2, 1, 4, 6), (2, 3, 4, 6), (3, 1, 6)])
@pytest.mark.parametrize("kind", ["int", "float"])
def test_sdpa_masks_of_each_kind_and_shape(mask_shape, kind):
    shapes = {**BASE, "m": mask_shape}
    a, b, t = _sdpa_both("mask=m", shapes, {"m": kind == "int"}, seed=1)
    m = t["m"].bool() if kind == "int" else t["m"]  # int: nonzero = attend, as SDPA's bool
    want = F.scaled_dot_product_attention(t["q"], t["k"], t["v"], attn_mask=m)
    _close(a, b, want=want.numpy())


def test_a_query_that_sees_no_key_gets_zeros_as_torchs():
    m = np.ones((4, 6), np.int64)
    m[1] = 0
    spec = nnspec.loads("model M(q: [2, 4, 5], k: [2, 6, 5], v: [2, 6, 3], m: [4, 6] int) {\n"
                        "    sdpa(q, k, v, mask=m)\n}", "t.nn")
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal(s) for s in ((2, 4, 5), (2, 6, 5), (2, 6, 3)))
    a = NumpyModel(spec, params={}, dtype=np.float64)(q, k, v, m)
    tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
    want = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.from_numpy(m).bool())
    assert np.all(a[:, 1] == 0) and torch.all(want[:, 1] == 0)
    _close(a, want=want.numpy())


def test_gqa_is_sdpas_enable_gqa():
    shapes = {"q": (2, 6, 4, 5), "k": (2, 2, 7, 5), "v": (2, 2, 7, 3)}
    a, b, t = _sdpa_both("", shapes)
    want = F.scaled_dot_product_attention(t["q"], t["k"], t["v"], enable_gqa=True)
    _close(a, b, want=want.numpy())
    # LLaMA's repeat_kv written by hand: kv head j serves query heads 3j, 3j+1, 3j+2
    k, v = (t[n].repeat_interleave(3, dim=1) for n in "kv")
    _close(a, want=F.scaled_dot_product_attention(t["q"], k, v).numpy())
    # with a mask per head and a one-head v
    shapes = {"q": (2, 4, 3, 5), "k": (2, 2, 3, 5), "v": (2, 1, 3, 2), "m": (2, 4, 3, 3)}
    a, b, t = _sdpa_both("mask=m, scale=0.5", shapes, {"m": True}, seed=3)
    want = F.scaled_dot_product_attention(t["q"], t["k"], t["v"], attn_mask=t["m"].bool(),
                                          scale=0.5, enable_gqa=True)
    _close(a, b, want=want.numpy())


def _bottom_right(t, s):
    """The causal mask built by hand: query i sees key j when j <= i + s - t."""
    i = torch.arange(t)[:, None]
    j = torch.arange(s)[None, :]
    return j <= i + (s - t)


@pytest.mark.parametrize("t_len, s_len", [(3, 7), (4, 4), (5, 3)])
def test_causal_is_aligned_bottom_right(t_len, s_len):
    shapes = {"q": (2, 2, t_len, 4), "k": (2, 2, s_len, 4), "v": (2, 2, s_len, 3)}
    a, b, t = _sdpa_both("causal", shapes)
    hand = _bottom_right(t_len, s_len)
    want = F.scaled_dot_product_attention(t["q"], t["k"], t["v"], attn_mask=hand)
    _close(a, b, want=want.numpy())
    if t_len == s_len:  # then it is torch's top-left is_causal too
        top_left = F.scaled_dot_product_attention(t["q"], t["k"], t["v"], is_causal=True)
        _close(a, want=top_left.numpy())
    else:
        top_left = F.scaled_dot_product_attention(t["q"], t["k"], t["v"], attn_mask=torch.ones(
            t_len, s_len, dtype=torch.bool).tril())
        assert not np.allclose(a, top_left.numpy())
    # with a mask of each kind, merged with the causal one
    for kind in ("int", "float"):
        a, b, t = _sdpa_both("causal, mask=m", {**shapes, "m": (2, 1, 1, s_len)},
                             {"m": kind == "int"}, seed=4)
        m = t["m"].bool() & hand if kind == "int" else t["m"].masked_fill(~hand, -math.inf)
        want = F.scaled_dot_product_attention(t["q"], t["k"], t["v"], attn_mask=m)
        _close(a, b, want=want.numpy())


def test_causal_with_symbolic_lengths_uses_is_causal_only_when_they_are_one():
    text = ("model M(q: [N, 2, T, 4], k: [N, 2, {s}, 4]) {{\n"
            "    sdpa(q, k, k, causal)\n}}")
    same = emit_source(nnspec.loads(text.format(s="T"), "t.nn"))
    assert "is_causal=True" in same and "causal_lower_right" not in same
    other = emit_source(nnspec.loads(text.format(s="S"), "t.nn"))
    assert "is_causal=" not in other and "attn_mask=causal_lower_right(q, k)" in other
    spec = nnspec.loads(text.format(s="S"), "t.nn")
    rng = np.random.default_rng(5)
    q, k = rng.standard_normal((2, 2, 3, 4)), rng.standard_normal((2, 2, 5, 4))
    a = NumpyModel(spec, params={}, dtype=np.float64)(q, k)
    tq, tk = torch.from_numpy(q), torch.from_numpy(k)
    want = F.scaled_dot_product_attention(tq, tk, tk, attn_mask=_bottom_right(3, 5))
    _close(a, want=want.numpy())


def test_dropout_is_the_identity_in_eval_and_drops_weights_in_training():
    shapes = {"q": (2, 2, 4, 5), "k": (2, 2, 6, 5), "v": (2, 2, 6, 3)}
    a, b, t = _sdpa_both("causal, dropout=0.4", shapes)
    want = F.scaled_dot_product_attention(t["q"], t["k"], t["v"],
                                          attn_mask=_bottom_right(4, 6))
    _close(a, b, want=want.numpy())
    # torch, training: the same draw as dropout on the weights written by hand
    text = ("model M(q: [2, 2, 4, 5], k: [2, 2, 6, 5], v: [2, 2, 6, 3]) {\n"
            "    sdpa(q, k, v, causal, dropout=0.4)\n}")
    mod = build_module(nnspec.loads(text, "t.nn"), params={}, dtype=torch.float64).train()
    torch.manual_seed(0)
    got = mod(t["q"], t["k"], t["v"])
    scores = (t["q"] @ t["k"].transpose(-1, -2) / math.sqrt(5)).masked_fill(
        ~_bottom_right(4, 6), -math.inf)
    torch.manual_seed(0)
    hand = F.dropout(torch.softmax(scores, -1), 0.4, training=True) @ t["v"]
    torch.testing.assert_close(got, hand, rtol=RTOL, atol=ATOL)
    assert not torch.allclose(got, torch.from_numpy(a))
    # NumPy, training: inverted dropout of the weights (0 or 1/(1 - p)), kept for backward
    kind = REGISTRY["sdpa"]
    p = kind.Params.model_validate({"causal": True, "dropout": 0.4})
    xs = [x.numpy() for x in (t["q"], t["k"], t["v"])]
    saved: dict = {}
    y = kind.numpy(p, {}, xs, NumpyCtx(training=True, rng=np.random.default_rng(0),
                                       saved=saved))
    drop = saved["sdpa_drop"]
    assert set(np.unique(drop)) == {0.0, 1 / 0.6}
    np.testing.assert_allclose(y, (saved["sdpa_attn"] * drop) @ xs[2], rtol=RTOL)
    assert not np.allclose(y, a)


@pytest.mark.parametrize("args, shapes, ints", [
    ("", BASE, {}),
    ("causal, scale=0.7", {"q": (2, 3, 6, 5), "k": (2, 3, 4, 5), "v": (1, 3, 4, 2)}, {}),
    ("mask=m", {**BASE, "m": (2, 1, 4, 6)}, {}),  # a float mask gets its gradient
    ("mask=m, causal", {**BASE, "m": (4, 6)}, {"m": True}),
    ("causal", {"q": (2, 6, 4, 5), "k": (2, 2, 6, 5), "v": (2, 3, 6, 3)}, {}),  # GQA
    ("", {"q": (2, 1, 4, 5), "k": (1, 3, 6, 5), "v": (6, 7)}, {}),
])
def test_sdpa_backward_matches_autograd(args, shapes, ints):
    decl = ", ".join(f"{n}: [{', '.join(map(str, s))}]" + (" int" if ints.get(n) else "")
                     for n, s in shapes.items())
    text = f"model M({decl}) {{\n    sdpa(q, k, v{', ' + args if args else ''})\n}}"
    spec = nnspec.loads(text, "t.nn")
    rng = np.random.default_rng(6)
    xs = [rng.integers(0, 2, size=s) if ints.get(n) else rng.standard_normal(s)
          for n, s in shapes.items()]
    got = check_autograd(spec, xs)
    for g, x in zip(got.inputs, xs):
        assert g is None if np.issubdtype(x.dtype, np.integer) else np.abs(g).max() > 0


def test_sdpa_macs_and_summary():
    spec = nnspec.loads("model M(q: [N, 8, T, 64], k: [N, 2, S, 64], v: [N, 2, S, 32]) {\n"
                        "    sdpa(q, k, v)\n}", "t.nn")
    (row,) = spec.layers("M")
    assert str(row.output) == "[N, 8, T, 32]"
    assert str(row.macs) == "768*N*S*T"  # 8 heads * T * S * (64 + 32)
    assert "gqa" in REGISTRY["sdpa"].detail(row.node.p, row.inputs)


# ---- the emitted source -------------------------------------------------------------------

BLOCK = """
model Llama(x: [N, T, 32], m: [N, 1, T, T] int) {
    q = x | dense 32 bias=false | reshape [N, T, 4, 8] | transpose 1 2 | rope theta=500000
    k = x | dense 16 bias=false | reshape [N, T, 2, 8] | rope axis=1 layout=interleaved
          | transpose 1 2
    v = x | dense 16 bias=false | reshape [N, T, 2, 8] | transpose 1 2
    y = sdpa(q, k, v, causal, mask=m)
    y | transpose 1 2 | reshape [N, T, 32] | dense 32 bias=false
}
model Cached(q: [N, 4, T, 8], k: [N, 2, S, 10], v: [N, 2, S, 8], b: [N, 1, T, S]) {
    qq = q | rope offset=3
    k8 = k | rope dim=8
    kk = k8[..., :8]
    sdpa(qq, kk, v, causal, mask=b, scale=0.3, dropout=0.1)
}
"""


def test_emitted_source_runs_and_matches_build_module(tmp_path):
    spec = nnspec.loads(BLOCK, "block.nn")
    src = emit_source(spec, all_models=True)
    file = tmp_path / "gen_block.py"
    file.write_text(src)
    gen = import_source(file, "gen_block")
    rng = np.random.default_rng(8)
    m = rng.integers(0, 2, size=(2, 1, 5, 5))
    m[..., 0] = 1
    inputs = {"Llama": [rng.standard_normal((2, 5, 32)), m],
              "Cached": [rng.standard_normal((2, 4, 3, 8)), rng.standard_normal((2, 2, 6, 10)),
                         rng.standard_normal((2, 2, 6, 8)), rng.standard_normal((2, 1, 3, 6))]}
    for name, xs in inputs.items():
        ref = build_module(spec, name, seed=0, dtype=torch.float64).eval()
        net = getattr(gen, name)().double().eval()
        net.load_state_dict(ref.state_dict())
        txs = [torch.from_numpy(x) for x in xs]
        with torch.no_grad():
            want, got = ref(*txs), net(*txs)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        np_out = NumpyModel(spec, name, params={k: v.numpy() for k, v in
                                                ref.state_dict().items()},
                            dtype=np.float64)(*xs)
        np.testing.assert_allclose(np_out, want.numpy(), rtol=RTOL, atol=ATOL)
    assert "apply_rope(q, theta=500000.0)" in src
    assert "F.scaled_dot_product_attention(" in src and "enable_gqa=True" in src


def test_the_helpers_are_copied_from_their_source_text():
    import importlib
    import inspect

    from nnspec.backends.emit import helpers as emit

    for mod_name in ("nnspec.layers.torch.rope", "nnspec.layers.torch.sdpa"):
        mod = importlib.import_module(mod_name)
        defs = emit._helper_module(mod_name)
        assert defs
        for name, (src, _) in defs.items():
            assert src == inspect.getsource(getattr(mod, name)).rstrip(), name
    _, _, deps = emit._helper_def("nnspec.layers.torch.rope:apply_rope")
    assert set(deps) == {"nnspec.layers.torch.rope:rotate_half",
                         "nnspec.layers.torch.rope:rotate_every_two"}
    _, _, deps = emit._helper_def("nnspec.layers.torch.sdpa:with_causal")
    assert deps == ("nnspec.layers.torch.sdpa:causal_lower_right",)


# ---- errors -------------------------------------------------------------------------------


def _diag(text: str):
    spec = nnspec.loads(text, "e.nn", strict=False)
    assert len(spec.diagnostics) == 1, spec.diagnostics
    return spec.diagnostics[0]


@pytest.mark.parametrize("decl, line, code, message, at", [
    ("x: [N, T, 7]", "rope", "E351",
     "rope rotates features in pairs, but the head dim 7 of [N, T, 7] is odd", "rope"),
    ("x: [N, T, 8]", "rope dim=5", "E351",
     "rope rotates features in pairs, but dim=5 is odd", "dim=5"),
    ("x: [N, T, 8]", "rope dim=10", "E351",
     "rope: dim=10 rotates more features than the head dim 8 of [N, T, 8] has", "dim=10"),
    ("x: [N, T, 8]", "rope axis=3", "E360",
     "rope: axis 3 is out of range for a rank-3 input [N, T, 8] (axes -3 to 1; the last is "
     "the head dim)", "axis=3"),
    ("x: [N, T, 8]", "rope axis=-1", "E352",
     "rope: the positions axis -1 of [N, T, 8] is its last axis, the head dim that is "
     "rotated", "axis=-1"),
    ("x: [N, T, D]", "rope", "E300",
     "rope's head dim (the last dim) must be a concrete size, but it is D (depends on "
     "symbol D)", "rope"),
    ("x: [8]", "rope", "E300",
     "rope expects an input of rank 2 or more ([..., T, D]), got [8] (rank 1)", "rope"),
    ("x: [N, T, 8] int", "rope", "E300",
     "rope needs a float input, got [N, T, 8] int", "rope"),
])
def test_rope_errors_are_located(decl, line, code, message, at):
    d = _diag(f"model M({decl}) {{\n    {line}\n}}")
    assert (d.code, d.message) == (code, message)
    assert d.span.line == 2 and d.span.col == 5 + line.index(at)


@pytest.mark.parametrize("line, fragment", [
    ("rope theta=0", "invalid theta for rope: must be > 0"),
    ("rope offset=-1", "invalid offset for rope: must be >= 0"),
    ("rope dim=0", "invalid dim for rope: must be >= 2"),
    ("rope layout=spiral", "invalid layout for rope"),
    ("rope theta=true", "invalid theta for rope"),
    ("rope thetaa=3.0", "unknown argument 'thetaa' for rope"),
])
def test_rope_bad_arguments_are_located(line, fragment):
    d = _diag(f"model M(x: [N, T, 8]) {{\n    {line}\n}}")
    assert fragment in d.message
    assert d.span.line == 2


SDPA_DECL = "q: [N, 8, T, 64], k: [N, 2, S, 64], v: [N, 2, S, 32]"


@pytest.mark.parametrize("decl, call, code, message, at", [
    ("q: [N, H, T, 64], k: [N, H, S, 32], v: [N, H, S, 32]", "sdpa(q, k, v)", "E353",
     "sdpa: q and k must have the same head dim (the last): q [N, H, T, 64] has 64, k "
     "[N, H, S, 32] has 32", "sdpa"),
    ("q: [N, H, T, 64], k: [N, H, S, 64], v: [N, H, T, 64]", "sdpa(q, k, v)", "E354",
     "sdpa: k and v must have as many positions (axis -2): k [N, H, S, 64] has S, v "
     "[N, H, T, 64] has T", "sdpa"),
    ("q: [N, 8, T, 64], k: [M, 8, S, 64], v: [M, 8, S, 64]", "sdpa(q, k, v)", "E363",
     "sdpa: the leading dims of q [N, 8, T, 64] and k [M, 8, S, 64] do not broadcast: dim N "
     "against M (axis -4)", "sdpa"),
    ("q: [N, 8, T, 64], k: [N, 3, S, 64], v: [N, 3, S, 64]", "sdpa(q, k, v)", "E363",
     "sdpa: the leading dims of q [N, 8, T, 64] and k [N, 3, S, 64] do not broadcast: dim 8 "
     "against 3 (axis -3)", "sdpa"),
    ("q: [N, 8, T, 64], k: [N, 2, S, 64], v: [N, 3, S, 64]", "sdpa(q, k, v)", "E355",
     "sdpa: grouped-query attention shares each key/value head among query heads, but v "
     "[N, 3, S, 64] has 3 heads, which do not divide the 8 of q [N, 8, T, 64]", "sdpa"),
    (SDPA_DECL + ", m: [N, 1, T, T] int", "sdpa(q, k, v, mask=m)", "E356",
     "sdpa's mask [N, 1, T, T] int does not broadcast to the scores [N, 8, T, S] "
     "(queries by keys): dim T against S (axis -1)", "mask=m"),
    (SDPA_DECL + ", m: [2, N, 8, T, S]", "sdpa(q, k, v, mask=m)", "E356",
     "sdpa's mask [2, N, 8, T, S] has more axes than the scores [N, 8, T, S] (queries by "
     "keys)",
     "mask=m"),
    (SDPA_DECL + ", m: [S] int", "sdpa(q, k, v, mask=m)", "E356",
     "sdpa's mask [S] int must be [..., T, S] (rank 2 or more)", "mask=m"),
    ("q: [64], k: [S, 64], v: [S, 64]", "sdpa(q, k, v)", "E300",
     "sdpa expects an input of rank 2 or more ([..., T, D]), got [64] (rank 1)", "sdpa"),
    ("q: [T, 64], k: [64], v: [S, 64]", "sdpa(q, k, v)", "E357",
     "sdpa's k must be [..., S, D] (rank 2 or more), got [64] (rank 1)", "sdpa"),
    ("q: [T, 64], k: [S, 64] int, v: [S, 64]", "sdpa(q, k, v)", "E300",
     "sdpa's k needs a float input, got [S, 64] int", "sdpa"),
])
def test_sdpa_errors_are_located(decl, call, code, message, at):
    d = _diag(f"model M({decl}) {{\n    {call}\n}}")
    assert (d.code, d.message) == (code, message)
    assert d.span.line == 2 and d.span.col == 5 + call.index(at)


def test_sdpa_heads_that_do_not_broadcast_hint_at_grouped_query_attention():
    d = _diag(f"model M({SDPA_DECL.replace('2, S', '3, S')}) {{\n    sdpa(q, k, v)\n}}")
    assert "divide q's" in d.hint


@pytest.mark.parametrize("call, fragment", [
    ("sdpa(q, k)", "sdpa takes three tensors, sdpa(q, k, v), got 2"),
    ("sdpa(q, k, v, dropout=1.5)", "invalid dropout for sdpa: must be in [0, 1)"),
    ("sdpa(q, k, v, scale=true)", "invalid scale for sdpa"),
    ("sdpa(q, k, v, mask=2)", "mask takes a tensor (a named value), got"),
    ("sdpa(q, k, v, causall)", "unknown name 'causall' in sdpa; did you mean 'causal'?"),
])
def test_sdpa_bad_arguments_are_located(call, fragment):
    d = _diag(f"model M({SDPA_DECL}) {{\n    {call}\n}}")
    assert fragment in d.message
    assert d.span.line == 2


def test_check_never_imports_torch_or_numpy_for_these_kinds():
    import subprocess
    import sys

    code = ("import sys, nnspec\n"
            f"nnspec.loads({BLOCK.split('model Cached')[0]!r}, 'b.nn')\n"
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, "
            "sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy'))\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_kinds_are_registered_with_samples():
    for name in ("rope", "rotary", "sdpa", "scaled_dot_product_attention"):
        assert name in REGISTRY
    for _args, ins in REGISTRY["sdpa"].samples():
        assert all(isinstance(t, TensorType) for t in ins)
