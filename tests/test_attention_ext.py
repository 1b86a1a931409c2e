"""attention's masks, bottom-right causal, grouped-query attention, separate projections,
scale and rotary embeddings: both backends against nn.MultiheadAttention and
F.scaled_dot_product_attention written by hand in float64 with the same weights, the
rotary math against HF's rotate_half and Meta's complex-number form, backward against
autograd and finite differences, located errors, MACs and the emitted source."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnspec
from _gradcheck import check_autograd, check_kind
from _util import import_source
from nnspec.core.dims import Dim
from nnspec.layers import REGISTRY
from nnspec.layers.attention import rope_numpy
from nnspec.layers.base import INT, TensorType

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module, emit_source  # noqa: E402
from nnspec.layers.torch import attention as attention_torch  # noqa: E402

RTOL = 1e-10
N, T, S, E = 2, 4, 6, 8


def _spec(body: str, inputs: str = "x: [N, T, 8]"):
    return nnspec.loads(f"model M({inputs}) {{\n    {body} as attn\n}}\n", "m.nn")


def _params(spec, seed=0):
    """Random weights (biases too: their default init is zero) for the spec's state_dict."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(w.shape, generator=g, dtype=torch.float64) * 0.5
            for k, w in spec.state_shapes().items()}


def _both(spec, params, inputs):
    """(torch, numpy) outputs of the spec with these weights in float64, in eval mode."""
    mod = build_module(spec, params=params, dtype=torch.float64).eval()
    ref = NumpyModel(spec, params={k: v.numpy() for k, v in params.items()}, dtype=np.float64)
    with torch.no_grad():
        a = mod(*[torch.from_numpy(np.asarray(v)) for v in inputs]).numpy()
    return a, ref(*inputs)


def _close(got, want):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    scale = np.abs(want).max()
    for g in got:
        assert g.shape == want.shape
        assert np.abs(g - want).max() <= RTOL * scale, np.abs(g - want).max()


def _hand(x, kv, w, heads, kv_heads=None, mask=None, scale=None, rope=None, gqa="repeat",
          prefix="attn."):
    """Attention written by hand on F.scaled_dot_product_attention with the weights w (either
    layout); mask is SDPA's (bool: True = attend, or float: added); rope(q, k) -> q, k."""
    x, kv = torch.as_tensor(x), torch.as_tensor(kv)
    n, t, e = x.shape
    s = kv.shape[1]
    hk = kv_heads or heads
    d = e // heads
    if f"{prefix}in_proj_weight" in w:
        wq, wk, wv = w[f"{prefix}in_proj_weight"].chunk(3)
        b = w.get(f"{prefix}in_proj_bias")
        bq, bk, bv = b.chunk(3) if b is not None else (None,) * 3
        wo, bo = w[f"{prefix}out_proj.weight"], w.get(f"{prefix}out_proj.bias")
    else:
        (wq, bq), (wk, bk), (wv, bv), (wo, bo) = (
            (w[f"{prefix}{p}.weight"], w.get(f"{prefix}{p}.bias"))
            for p in ("q_proj", "k_proj", "v_proj", "o_proj"))
    q = F.linear(x, wq, bq).view(n, t, heads, d).transpose(1, 2)
    k = F.linear(kv, wk, bk).view(n, s, hk, d).transpose(1, 2)
    v = F.linear(kv, wv, bv).view(n, s, hk, d).transpose(1, 2)
    if rope is not None:
        q, k = rope(q, k)
    extra = {}
    if hk != heads and gqa == "repeat":
        k, v = k.repeat_interleave(heads // hk, dim=1), v.repeat_interleave(heads // hk, dim=1)
    elif hk != heads:
        extra["enable_gqa"] = True
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, **extra)
    return F.linear(y.transpose(1, 2).reshape(n, t, e), wo, bo)


def _int_mask(rng, shape):
    """An int attn_mask (nonzero = attend, any nonzero value) where every query sees a key."""
    m = rng.integers(0, 3, shape)
    m[..., 0] = 7
    return m


def _float_mask(rng, shape):
    m = rng.standard_normal(shape) * 2.0
    m[..., 1] = -np.inf  # blocks that key; every row keeps others
    return m


# ---- attn_mask: every shape and kind ----------------------------------------------------

MASK_SHAPES = {"[T, S]": (T, S), "[N, T, S]": (N, T, S), "[N, heads, T, S]": (N, 2, T, S),
               "[N, 1, T, S]": (N, 1, T, S), "[1, heads, T, S]": (1, 2, T, S)}
MASK_DIMS = {"[T, S]": "T, S", "[N, T, S]": "N, T, S", "[N, heads, T, S]": "N, 2, T, S",
             "[N, 1, T, S]": "N, 1, T, S", "[1, heads, T, S]": "1, 2, T, S"}


def _as_mha_mask(m, heads):
    """Our attn_mask in nn.MultiheadAttention's form: [T, S] or [N * heads, T, S], bool
    True = blocked, or float added."""
    m = torch.from_numpy(m)
    if m.dim() == 2:
        return m == 0 if not m.is_floating_point() else m
    m4 = m[:, None] if m.dim() == 3 else m
    m4 = m4.expand(N, heads, T, S).reshape(N * heads, T, S)
    return m4 == 0 if not m4.is_floating_point() else m4


@pytest.mark.parametrize("kind", ["int", "float"])
@pytest.mark.parametrize("form", sorted(MASK_SHAPES))
def test_attn_mask_matches_multihead_attention(form, kind):
    spec = _spec("attention heads=2 kv=m attn_mask=am",
                 f"x: [N, T, 8], m: [N, S, 8], am: [{MASK_DIMS[form]}]"
                 + (" int" if kind == "int" else ""))
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(E, 2, batch_first=True).double().eval()
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    params = {f"attn.{k}": v for k, v in mha.state_dict().items()}
    assert list(params) == list(spec.state_shapes())  # the packed layout stays the default
    rng = np.random.default_rng(1)
    x, m = rng.standard_normal((N, T, E)), rng.standard_normal((N, S, E))
    am = (_int_mask if kind == "int" else _float_mask)(rng, MASK_SHAPES[form])
    X, M = torch.from_numpy(x), torch.from_numpy(m)
    with torch.no_grad():
        want = mha(X, M, M, attn_mask=_as_mha_mask(am, 2), need_weights=False)[0]
        sdpa_mask = torch.from_numpy(am)
        sdpa_mask = sdpa_mask != 0 if kind == "int" else sdpa_mask
        if sdpa_mask.dim() == 3:
            sdpa_mask = sdpa_mask[:, None]
        by_hand = _hand(x, m, params, 2, mask=sdpa_mask)
    torch.testing.assert_close(by_hand, want, rtol=1e-12, atol=1e-12)
    _close(_both(spec, params, [x, m, am]), want)


def test_masks_combine_with_causal_and_key_padding():
    """causal, the key-padding mask (nonzero = padded) and an int attn_mask (nonzero =
    attend) all apply; a float attn_mask adds to what the others let through."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((N, T, E))
    pad = np.zeros((N, T), np.int64)
    pad[0, 2] = 1
    pad[1, 3] = 9
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    keep = torch.from_numpy(pad == 0)[:, None, None, :]
    for kind in ("int", "float"):
        spec = _spec("attention 2 causal mask=pad attn_mask=am",
                     "x: [N, T, 8], pad: [N, T] int, am: [N, T, T]" + (" int" * (kind == "int")))
        params = _params(spec)
        am = rng.integers(0, 2, (N, T, T)) if kind == "int" else rng.standard_normal((N, T, T))
        if kind == "int":
            am[:, :, 0] = 1  # every query sees key 0 (never padded here)
            allowed = causal & keep & torch.from_numpy(am != 0)[:, None]
            want = _hand(x, x, params, 2, mask=allowed)
        else:
            blocked = ~(causal & keep)
            add = torch.from_numpy(am)[:, None].masked_fill(blocked, -math.inf)
            want = _hand(x, x, params, 2, mask=add)
        _close(_both(spec, params, [x, pad, am]), want)


@pytest.mark.parametrize("kind", ["int", "float"])
def test_a_query_that_the_attn_mask_blocks_entirely_attends_to_nothing(kind):
    """Its output is the output projection's bias in both backends, in every mode."""
    spec = _spec("attention 2 qkv=separate attn_mask=am",
                 "x: [N, T, 8], am: [T, T]" + (" int" * (kind == "int")))
    params = _params(spec)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, T, E))
    am = _int_mask(rng, (T, T)) if kind == "int" else _float_mask(rng, (T, T))
    am[2] = 0 if kind == "int" else -np.inf
    a, b = _both(spec, params, [x, am])
    bias = params["attn.o_proj.bias"].numpy()
    for out in (a, b):
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out[:, 2], np.broadcast_to(bias, (N, E)), rtol=1e-12)
    m = torch.from_numpy(am)
    m = m != 0 if kind == "int" else m
    want = _hand(x, x, params, 2, mask=m)
    # recent torch versions give such a row zero weights too (older ones NaN)
    rows = [0, 1, 3] if torch.isnan(want[:, 2]).any() else [0, 1, 2, 3]
    _close((a[:, rows], b[:, rows]), want[:, rows])


# ---- causal, bottom-right ---------------------------------------------------------------

@pytest.mark.parametrize("inputs", ["x: [N, T, 8], m: [N, S, 8]", "x: [N, 3, 8], m: [N, 7, 8]"])
def test_causal_with_more_keys_aligns_bottom_right(inputs):
    from torch.nn.attention.bias import causal_lower_right

    spec = _spec("attention heads=2 kv=m causal", inputs)
    assert not spec.diagnostics
    params = _params(spec)
    rng = np.random.default_rng(4)
    x, m = rng.standard_normal((N, 3, E)), rng.standard_normal((N, 7, E))
    with torch.no_grad():
        want = _hand(x, m, params, 2, mask=causal_lower_right(3, 7))
        explicit = _hand(x, m, params, 2, mask=torch.ones(3, 7, dtype=torch.bool).tril(4))
    torch.testing.assert_close(want, explicit, rtol=1e-12, atol=1e-12)
    a, b = _both(spec, params, [x, m])
    _close((a, b), want)
    # query i sees keys j <= i + 4: changing key 6 only changes the last query
    m2 = m.copy()
    m2[:, 6] += 3.0
    a2, b2 = _both(spec, params, [x, m2])
    for one, two in ((a, a2), (b, b2)):
        np.testing.assert_allclose(one[:, :2], two[:, :2], rtol=1e-12)
        assert not np.allclose(one[:, 2], two[:, 2])


def test_causal_with_fewer_keys_than_queries():
    """S < T: the first T - S queries see no key and give the output bias."""
    spec = _spec("attention heads=2 kv=m causal", "x: [N, T, 8], m: [N, S, 8]")
    params = _params(spec)
    rng = np.random.default_rng(5)
    x, m = rng.standard_normal((N, 5, E)), rng.standard_normal((N, 3, E))
    a, b = _both(spec, params, [x, m])
    bias = params["attn.out_proj.bias"].numpy()
    for out in (a, b):
        np.testing.assert_allclose(out[:, :2], np.broadcast_to(bias, (N, 2, E)), rtol=1e-12)
    want = _hand(x, m, params, 2, mask=torch.ones(5, 3, dtype=torch.bool).tril(-2))
    _close((a[:, 2:], b[:, 2:]), want[:, 2:])


def test_causal_self_attention_keeps_its_plan_and_agrees_with_sdpa():
    """S = T keeps nn.MultiheadAttention (the plans and state_dicts specs always had)."""
    spec = _spec("attention 2 causal")
    mod = build_module(spec, seed=0, dtype=torch.float64)
    assert type(mod.attn) is nn.MultiheadAttention
    spec2 = _spec("attention 2 kv=m causal", "x: [N, T, 8], m: [N, T, 8]")
    assert type(build_module(spec2, seed=0).attn) is nn.MultiheadAttention
    params = _params(spec)
    x = np.random.default_rng(6).standard_normal((N, T, E))
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    _close(_both(spec, params, [x]), _hand(x, x, params, 2, mask=causal))


# ---- grouped-query attention and separate projections -----------------------------------

@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_grouped_query_attention(kv_heads):
    spec = _spec(f"attention heads=4 kv_heads={kv_heads} qkv=separate kv=m",
                 "x: [N, T, 8], m: [N, S, 8]")
    shapes = {k: w.shape for k, w in spec.state_shapes().items()}
    kvd = kv_heads * 2
    assert shapes == {"attn.q_proj.weight": (8, 8), "attn.q_proj.bias": (8,),
                      "attn.k_proj.weight": (kvd, 8), "attn.k_proj.bias": (kvd,),
                      "attn.v_proj.weight": (kvd, 8), "attn.v_proj.bias": (kvd,),
                      "attn.o_proj.weight": (8, 8), "attn.o_proj.bias": (8,)}
    params = _params(spec)
    rng = np.random.default_rng(7)
    x, m = rng.standard_normal((N, T, E)), rng.standard_normal((N, S, E))
    want = _hand(x, m, params, 4, kv_heads)
    torch.testing.assert_close(_hand(x, m, params, 4, kv_heads, gqa="sdpa"), want,
                               rtol=1e-12, atol=1e-12)
    _close(_both(spec, params, [x, m]), want)
    mod = build_module(spec, params=params, dtype=torch.float64)
    assert all(isinstance(getattr(mod.attn, n), nn.Linear)
               for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
    # MACs: k and v projections are kv_heads * head_dim wide
    n, t, s = (Dim.sym(c) for c in "NTS")
    (row,) = spec.layers()
    assert row.macs == n * t * (2 * 64) + n * s * (2 * 8 * kvd) + n * t * s * (2 * 8)


def test_separate_projections_are_hf_llama_linears():
    """q_proj k_proj v_proj o_proj (HF LLaMA's names), nn.Linear's default init; a
    hand-written module with those children loads the state_dict as it is."""
    spec = _spec("attention heads=2 qkv=separate bias=false")
    shapes = spec.state_shapes()
    assert list(shapes) == ["attn.q_proj.weight", "attn.k_proj.weight", "attn.v_proj.weight",
                            "attn.o_proj.weight"]
    assert all(w.init == ("uniform", 1 / math.sqrt(8)) for w in shapes.values())
    with_bias = _spec("attention heads=2 qkv=separate").state_shapes()
    assert with_bias["attn.q_proj.bias"].init == ("uniform", 1 / math.sqrt(8))

    class Hand(nn.Module):
        def __init__(self):
            super().__init__()
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                setattr(self, name, nn.Linear(8, 8, bias=False))

        def forward(self, x):
            n, t, _ = x.shape
            q, k, v = (getattr(self, p)(x).view(n, t, 2, 4).transpose(1, 2)
                       for p in ("q_proj", "k_proj", "v_proj"))
            y = F.scaled_dot_product_attention(q, k, v)
            return self.o_proj(y.transpose(1, 2).reshape(n, t, 8))

    hand = nn.Module()
    hand.attn = Hand().double()
    ours = build_module(spec, seed=3, dtype=torch.float64)
    assert set(ours.state_dict()) == set(hand.state_dict())
    hand.load_state_dict(ours.state_dict(), strict=True)
    # the module's own initialisation is nn.Linear's too (the emitted source relies on it)
    fresh = attention_torch.SDPAttention(8, 2, qkv="separate")
    bound = 1 / math.sqrt(8)
    assert all(p.abs().max() <= bound for p in fresh.parameters())
    assert fresh.q_proj.bias.abs().max() > 0
    x = np.random.default_rng(8).standard_normal((N, T, E))
    with torch.no_grad():
        want = hand.attn(torch.from_numpy(x))
    params = {k: v.detach() for k, v in ours.state_dict().items()}
    _close(_both(spec, params, [x]), want)


def test_packed_sdpa_layer_has_multihead_attentions_state_and_init():
    """A packed layer that needs SDPAttention (here for scale=) keeps nn.MultiheadAttention's
    state_dict keys, shapes and initialisation."""
    spec = _spec("attention heads=2 scale=0.25")
    plain = _spec("attention heads=2")
    assert {k: (w.shape, w.init) for k, w in spec.state_shapes().items()} == \
        {k: (w.shape, w.init) for k, w in plain.state_shapes().items()}
    fresh = attention_torch.SDPAttention(8, 2)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    assert list(fresh.state_dict()) == list(mha.state_dict())
    assert not fresh.in_proj_bias.any() and not fresh.out_proj.bias.any()
    assert fresh.in_proj_weight.abs().max() <= math.sqrt(6 / 32)


# ---- scale ------------------------------------------------------------------------------

def test_scale_overrides_one_over_sqrt_head_dim():
    rng = np.random.default_rng(9)
    x, m = rng.standard_normal((N, T, E)), rng.standard_normal((N, S, E))
    inputs = "x: [N, T, 8], m: [N, S, 8]"
    spec = _spec("attention heads=2 kv=m scale=0.1", inputs)
    params = _params(spec)
    want = _hand(x, m, params, 2, scale=0.1)
    got = _both(spec, params, [x, m])
    _close(got, want)
    default = _hand(x, m, params, 2)
    assert not np.allclose(got[0], default.numpy())
    # the default written out is the default
    same = _spec("attention heads=2 kv=m qkv=packed scale=0.5", inputs)
    _close(_both(same, params, [x, m]), default)


# ---- rotary embeddings ------------------------------------------------------------------

def _hf_rope(q, k, theta, q_offset=0):
    """HF transformers' LLaMA: rotate_half with cos/sin of cat(freqs, freqs)."""
    def rotate_half(x):
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return torch.cat((-x2, x1), dim=-1)

    def table(length, offset, dim):
        inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).double() / dim))
        pos = torch.arange(length, dtype=torch.float64) + offset
        freqs = torch.outer(pos, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    d = q.shape[-1]
    cq, sq = table(q.shape[-2], q_offset, d)
    ck, sk = table(k.shape[-2], 0, d)
    return q * cq + rotate_half(q) * sq, k * ck + rotate_half(k) * sk


def _meta_rope(q, k, theta, q_offset=0):
    """Meta's llama: pairs (2i, 2i+1) as complex numbers times e^(i m θ_i), on [N, T, h, d]."""
    def freqs_cis(length, offset, dim):
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: (dim // 2)].double() / dim))
        t = torch.arange(length, dtype=torch.float64) + offset
        return torch.polar(torch.ones(length, dim // 2, dtype=torch.float64),
                           torch.outer(t, freqs))

    def apply(x, cis):
        x = x.transpose(1, 2)  # Meta's layout [N, T, h, d]
        xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
        out = torch.view_as_real(xc * cis[None, :, None, :]).flatten(3)
        return out.transpose(1, 2)

    d = q.shape[-1]
    return (apply(q, freqs_cis(q.shape[-2], q_offset, d)),
            apply(k, freqs_cis(k.shape[-2], 0, d)))


@pytest.mark.parametrize("theta", [10000.0, 500000.0, 7.0])
@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_rope_math_matches_hf_and_meta(layout, theta):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 5, 8, generator=g, dtype=torch.float64)
    k = torch.randn(2, 3, 9, 8, generator=g, dtype=torch.float64)
    ref = _hf_rope if layout == "half" else _meta_rope
    want_q, want_k = ref(q, k, theta, q_offset=4)
    torch.testing.assert_close(attention_torch.apply_rope(q, theta, layout, offset=4), want_q,
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(attention_torch.apply_rope(k, theta, layout), want_k,
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rope_numpy(q.numpy(), 2, theta, layout, offset=4),
                               want_q.numpy(), rtol=1e-12, atol=1e-12)
    # positions on another axis ([N, T, h, d]), and the inverse undoes the rotation
    qt = q.transpose(1, 2).numpy()
    rot = rope_numpy(qt, 1, theta, layout, offset=4)
    np.testing.assert_allclose(rot, want_q.transpose(1, 2).numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rope_numpy(rot, 1, theta, layout, offset=4, inverse=True), qt,
                               rtol=1e-12, atol=1e-12)
    # a rotation: norms of each pair are kept, position 0 is unchanged
    np.testing.assert_allclose(np.linalg.norm(rot, axis=-1), np.linalg.norm(qt, axis=-1))
    np.testing.assert_allclose(rope_numpy(k.numpy(), 2, theta, layout)[:, :, 0],
                               k.numpy()[:, :, 0], rtol=0, atol=0)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_llama_style_attention_with_rope_gqa_and_causal(layout):
    """LLaMA's attention: separate bias-free projections, rotary q and k per head, grouped
    key/value heads, causal; against HF's (half) or Meta's (interleaved) rotary by hand."""
    spec = _spec(f"attention heads=4 kv_heads=2 qkv=separate bias=false causal rope "
                 f"rope_theta=500000.0 rope_layout={layout}", "x: [N, T, 16]")
    params = _params(spec)
    x = np.random.default_rng(10).standard_normal((N, 5, 16))
    ref = _hf_rope if layout == "half" else _meta_rope
    want = _hand(x, x, params, 4, 2, mask=torch.ones(5, 5, dtype=torch.bool).tril(),
                 rope=lambda q, k: ref(q, k, 500000.0))
    _close(_both(spec, params, [x]), want)
    assert not np.allclose(_both(_spec("attention heads=4 kv_heads=2 qkv=separate bias=false "
                                       "causal", "x: [N, T, 16]"), params, [x])[1],
                           want.numpy())


def test_rope_queries_sit_at_the_end_of_the_keys():
    """With S > T the queries have positions S-T..S-1 (a block at the end of the keys, as
    bottom-right causal): the same as the last T rows of self-attention over all S."""
    spec = _spec("attention heads=2 qkv=separate causal rope kv=m", "x: [N, T, 8], m: [N, S, 8]")
    params = _params(spec)
    rng = np.random.default_rng(11)
    m = rng.standard_normal((N, 6, E))
    x = m[:, 4:]
    a, b = _both(spec, params, [x, m])
    want = _hand(m, m, params, 2, mask=torch.ones(6, 6, dtype=torch.bool).tril(),
                 rope=lambda q, k: _hf_rope(q, k, 10000.0))[:, 4:]
    _close((a, b), want)


# ---- backward ---------------------------------------------------------------------------

AUTOGRAD = {
    "float_mask_causal_padding": (
        "model M(x: [N, T, 8], pad: [N, T] int, am: [N, 1, T, T]) {\n"
        "    attention 2 causal mask=pad attn_mask=am\n}\n",
        [(2, 4, 8), (2, 4), (2, 1, 4, 4)]),
    "float_mask_ts_cross_scale": (
        "model M(x: [N, T, 8], m: [N, S, 8], am: [T, S]) {\n"
        "    attention 2 kv=m attn_mask=am scale=0.7 bias=false\n}\n",
        [(2, 3, 8), (2, 5, 8), (3, 5)]),
    "int_mask_gqa_rope_bottom_right": (
        "model M(x: [N, T, 8], m: [N, S, 8], am: [N, 4, T, S] int) {\n"
        "    attention 4 kv=m kv_heads=2 qkv=separate causal rope rope_layout=interleaved"
        " attn_mask=am\n}\n",
        [(2, 3, 8), (2, 5, 8), (2, 4, 3, 5)]),
    "mqa_rope_half_self": (
        "model M(x: [N, T, 8]) {\n"
        "    attention 2 kv_heads=1 qkv=separate causal rope rope_theta=50.0\n}\n",
        [(2, 5, 8)]),
    "fewer_keys_causal": (
        "model M(x: [N, T, 8], m: [N, S, 8]) {\n    attention 2 kv=m causal scale=0.3\n}\n",
        [(2, 5, 8), (2, 3, 8)]),
}


@pytest.mark.parametrize("case", sorted(AUTOGRAD))
def test_backward_against_autograd(case):
    text, shapes = AUTOGRAD[case]
    spec = nnspec.loads(text, "t.nn")
    rng = np.random.default_rng(12)
    inputs = []
    for inp, shape in zip(spec.model("M").inputs, shapes):
        if inp.dtype == "int":
            inputs.append(rng.integers(0, 2, shape))
        else:
            inputs.append(rng.standard_normal(shape))
    if case == "float_mask_causal_padding":
        inputs[1][1] = 1  # a sequence whose keys are all padded
        inputs[2][0, 0, 2, 1] = -np.inf
    if case == "int_mask_gqa_rope_bottom_right":
        inputs[2][0, 1, 0] = 0  # a query that sees no key
    got = check_autograd(spec, inputs, model="M", rtol=1e-9, atol=1e-11)
    assert got.params and all(np.isfinite(g).all() for g in got.params.values())
    for inp, g in zip(spec.model("M").inputs, got.inputs):
        assert (g is None) == (inp.dtype == "int")
        if g is not None:
            assert np.isfinite(g).all() and np.abs(g).max() > 0


@pytest.mark.parametrize("args, ins", [
    ({"heads": 2, "attn_mask": 1, "causal": True, "scale": 0.5},
     [TensorType((2, 3, 4)), TensorType((1, 2, 3, 3))]),
    ({"heads": 4, "kv_heads": 1, "qkv": "separate", "rope": True, "kv": 1, "mask": 2,
      "dropout": 0.3}, [TensorType((2, 3, 8)), TensorType((2, 4, 8)), TensorType((2, 4), INT)]),
])
@pytest.mark.parametrize("training", [False, True])
def test_backward_against_finite_differences(args, ins, training):
    errors = check_kind(REGISTRY["attention"], args, ins, training=training)
    assert errors and "x1" in errors


# ---- errors -----------------------------------------------------------------------------

def _diag(src):
    diags = nnspec.loads(src, "bad.nn", strict=False).diagnostics
    assert diags, "expected an error"
    return diags[0]


@pytest.mark.parametrize("mask, needle", [
    ("[N, T]", "attn_mask must be [T, S] (float, added to the scores), got [N, T]: dim 0 is "
               "N, not T"),
    ("[N, S, T]", "attn_mask must be [N, T, S] (float, added to the scores), got [N, S, T]: "
                  "dim 1 is S, not T"),
    ("[N, 3, T, S] int", "attn_mask must be [N, 2, T, S] (int, nonzero = attend), got "
                         "[N, 3, T, S] int: dim 1 is 3, not 2"),
    ("[2, T, S]", "dim 0 is 2, not N"),
    ("[N, 2, 2, T, S]", "attn_mask must be [T, S], [N, T, S] or [N, 2, T, S], got "
                        "[N, 2, 2, T, S] (rank 5)"),
])
def test_bad_attn_mask_shapes_are_located_errors(mask, needle):
    src = (f"model M(x: [N, T, 8], m: [N, S, 8], am: {mask}) {{\n"
           f"    attention 2 kv=m attn_mask=am\n}}\n")
    d = _diag(src)
    assert needle in d.message, d.message
    assert (d.span.line, d.span.col, d.span.end_col) == (2, 22, 34)  # at `attn_mask=am`


@pytest.mark.parametrize("body, needle, at", [
    ("attention 4 kv_heads=3 qkv=separate", "kv_heads must divide heads, but 3 does not "
                                            "divide 4", "kv_heads=3"),
    ("attention 4 kv_heads=8 qkv=separate", "kv_heads must divide heads", "kv_heads=8"),
    ("attention 4 kv_heads=2", "grouped-query attention (kv_heads=2 < heads=4) needs separate "
                               "projections", "kv_heads=2"),
    ("attention 4 kv_heads=0 qkv=separate", "must be >= 1", "kv_heads=0"),
    ("attention 8 rope", "head width 1 (8 / 8 heads) is odd", "rope"),
    ("attention 4 rope_theta=500000.0", "rope_theta=500000.0 sets the rotary embeddings",
     "rope_theta=500000.0"),
    ("attention 4 rope_layout=interleaved", "rope_layout=interleaved sets the rotary",
     "rope_layout=interleaved"),
    ("attention 4 rope rope_theta=0", "must be > 0", "rope_theta=0"),
    ("attention 4 scale=-1.0", "must be > 0", "scale=-1.0"),
    ("attention 4 qkv=split", "'packed' or 'separate'", "qkv=split"),
    ("attention 4 rope rope_layout=pairs", "'half' or 'interleaved'", "rope_layout=pairs"),
])
def test_option_errors_are_located(body, needle, at):
    line = f"    {body}"
    d = _diag(f"model M(x: [N, T, 8]) {{\n{line}\n}}\n")
    assert needle in d.message, d.message
    col = line.index(at) + 1
    assert (d.span.line, d.span.col, d.span.end_col) == (2, col, col + len(at))


def test_the_hint_for_packed_gqa_names_the_fix():
    d = _diag("model M(x: [N, T, 8]) {\n    attention 4 kv_heads=1\n}\n")
    assert d.hint and "qkv=separate" in d.hint


# ---- defaults, summary, emitted source ----------------------------------------------------

def test_plain_options_keep_nn_multihead_attention():
    for body in ("attention 2", "attention 2 kv_heads=2", "attention 2 qkv=packed causal",
                 "attention 2 bias=false dropout=0.1"):
        mod = build_module(_spec(body), seed=0)
        assert type(mod.attn) is nn.MultiheadAttention, body
    for body in ("attention 2 scale=0.5", "attention 2 qkv=separate", "attention 2 rope"):
        assert isinstance(build_module(_spec(body), seed=0).attn,
                          attention_torch.SDPAttention), body


def test_macs_of_rope_and_separate_self_attention():
    spec = _spec("attention heads=4 kv_heads=1 qkv=separate rope", "x: [N, T, 16]")
    n, t = Dim.sym("N"), Dim.sym("T")
    (row,) = spec.layers()
    # q, o: 16*16 each; k, v: 16*4 each; QKᵀ and AV: T*T*16 each; rotary: 2 per feature of q
    # (16) and k (4)
    assert row.macs == n * t * (2 * 256 + 2 * 64 + 2 * 20) + n * t * t * 32
    assert spec.param_count() == 2 * (256 + 16) + 2 * (64 + 4)


def test_training_mode_dropout_in_the_sdpa_layer():
    spec = _spec("attention heads=2 qkv=separate dropout=0.5")
    mod = build_module(spec, seed=0, dtype=torch.float64)
    x = torch.from_numpy(np.random.default_rng(13).standard_normal((N, T, E)))
    with torch.no_grad():
        ev = mod.eval()(x)
        torch.manual_seed(0)
        tr = mod.train()(x)
    assert not torch.allclose(ev, tr)
    ref = NumpyModel(spec, params={k: v.numpy() for k, v in mod.state_dict().items()},
                     dtype=np.float64)
    np.testing.assert_allclose(ref(x.numpy()), ev.numpy(), rtol=1e-10, atol=1e-12)


EMITTED = """
model Llama(x: [N, T, 16]) {
    attention heads=4 kv_heads=2 qkv=separate bias=false causal rope as attn
}
model Masked(x: [N, T, 8], m: [N, S, 8], am: [N, T, S], pad: [N, S] int) {
    attention 2 kv=m causal mask=pad attn_mask=am scale=0.4 as attn
}
"""


def test_emitted_source_matches_build_module(tmp_path):
    spec = nnspec.loads(EMITTED, "emitted.nn")
    path = tmp_path / "emitted_gen.py"
    text = emit_source(spec, all_models=True)
    assert "import nnspec" not in text and "from nnspec" not in text
    assert "F.scaled_dot_product_attention" in text and "def apply_rope" in text
    path.write_text(text)
    gen = import_source(path, "emitted_gen")
    rng = np.random.default_rng(14)
    x16 = rng.standard_normal((N, 5, 16))
    x, m = rng.standard_normal((N, 3, E)), rng.standard_normal((N, 6, E))
    am = rng.standard_normal((N, 3, 6))
    pad = np.zeros((N, 6), np.int64)
    pad[1, :2] = 1
    for name, inputs in (("Llama", [x16]), ("Masked", [x, m, am, pad])):
        ours = build_module(spec, name, seed=1, dtype=torch.float64).eval()
        emitted = getattr(gen, name)().double().eval()
        assert list(emitted.state_dict()) == list(ours.state_dict())
        emitted.load_state_dict(ours.state_dict())
        ts = [torch.from_numpy(v) for v in inputs]
        with torch.no_grad():
            torch.testing.assert_close(emitted(*ts), ours(*ts), rtol=1e-12, atol=1e-12)
