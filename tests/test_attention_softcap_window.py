"""Attention logit soft-capping (Gemma 2's attn_logit_softcapping) and sliding windows
(Mistral) on ``attention`` and ``sdpa``: both backends against an eager reference written
here from the formulas (HF's Gemma 2 / Mistral eager attention: repeat_kv, scores * scale,
c * tanh(s / c), the mask, softmax), backward against its autograd and finite differences,
the torch path (SDPA with a window mask, the explicit path with softcap), located errors
and the emitted source."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from _gradcheck import check_kind
from _util import import_source
from nnspec.layers import REGISTRY
from nnspec.layers.base import INT, TensorType

torch = pytest.importorskip("torch")
F = torch.nn.functional

from torch.profiler import ProfilerActivity, profile  # noqa: E402

from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module, emit_source  # noqa: E402
from nnspec.layers.torch.attention import SDPAttention  # noqa: E402

TOL = 1e-11


# ---- the reference ----------------------------------------------------------------------

def _visible(t, s, causal, window):
    """[T, S] bool from the definition: query i sits at position p = i + S - T; causal
    keeps j <= p; a window keeps p - j < window (causal) or |p - j| < window (not)."""
    out = torch.ones(t, s, dtype=torch.bool)
    for i in range(t):
        p = i + s - t
        for j in range(s):
            ok = j <= p if causal else True
            if window is not None:
                ok = ok and (p - j < window if causal else abs(p - j) < window)
            out[i, j] = ok
    return out


def _eager(q, k, v, scale, softcap=None, allowed=None, add=None):
    """Eager attention over [..., H, T, D]: k and v repeated to q's heads, the scaled scores
    soft-capped, a float mask added, hidden keys -inf, softmax (a row with no key: 0)."""
    groups = q.shape[-3] // k.shape[-3]
    k, v = k.repeat_interleave(groups, -3), v.repeat_interleave(groups, -3)
    w = q @ k.transpose(-1, -2) * scale
    if softcap is not None:
        w = torch.tanh(w / softcap) * softcap
    if add is not None:
        w = w + add
    if allowed is not None:
        w = w.masked_fill(~allowed, float("-inf"))
    empty = torch.isneginf(w).all(-1, keepdim=True)
    w = torch.softmax(w.masked_fill(empty, 0.0), -1).masked_fill(empty, 0.0)
    return w @ v


def _tensors(arrays):
    return [torch.tensor(a, requires_grad=np.issubdtype(a.dtype, np.floating)) for a in arrays]


def _check(spec, arrays, reference, params=None):
    """build_module and NumpyModel's forward against reference(tensors, params) in float64,
    and NumpyModel's vjp against the reference's autograd (inputs and weights)."""
    params = params or {}
    mod = build_module(spec, params=params or None, dtype=torch.float64).eval()
    ref = NumpyModel(spec, params={k: v.detach().numpy() for k, v in params.items()} or None,
                     dtype=np.float64)
    xs = _tensors(arrays)
    ws = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    want = reference(xs, ws)
    assert want.abs().max() > 0
    with torch.no_grad():
        got = mod(*[torch.from_numpy(a) for a in arrays]).numpy()
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(ref(*arrays), want.detach().numpy(), rtol=TOL, atol=TOL)
    c = np.random.default_rng(5).standard_normal(got.shape)
    (want * torch.from_numpy(c)).sum().backward()
    grads = ref.vjp(*arrays, cotangent=c)
    for x, g in zip(xs, grads.inputs):
        if x.requires_grad:
            np.testing.assert_allclose(g, x.grad.numpy(), rtol=1e-9, atol=1e-11)
        else:
            assert g is None
    for k, w in ws.items():
        np.testing.assert_allclose(grads.params[k], w.grad.numpy(), rtol=1e-9, atol=1e-11)
    return got


# ---- sdpa ---------------------------------------------------------------------------------

SDPA = {  # name: (arguments, T, S, k's heads, mask: None | "int" | "float")
    "causal_window_softcap_cache": ("causal, window=3, softcap=1.5", 5, 8, 2, None),
    "band_without_causal": ("window=2", 6, 6, 4, None),
    "fewer_keys_than_queries": ("causal, window=2, softcap=0.8", 6, 4, 2, None),
    "softcap_int_mask": ("softcap=0.5, mask=m", 5, 5, 4, "int"),
    "band_float_mask_more_keys": ("window=3, softcap=2.0, mask=m", 4, 7, 1, "float"),
    "window_wider_than_keys": ("causal, window=50", 3, 5, 2, None),
}


@pytest.mark.parametrize("case", sorted(SDPA))
def test_sdpa_matches_the_eager_reference_forward_and_backward(case):
    args, t, s, hk, mask = SDPA[case]
    extra = {None: "", "int": ", m: [N, 1, T, S] int", "float": ", m: [N, 1, T, S]"}[mask]
    spec = nnspec.loads(f"model M(q: [N, 4, T, 8], k: [N, {hk}, S, 8], v: [N, {hk}, S, 8]"
                        f"{extra}) {{\n    sdpa(q, k, v, {args})\n}}\n", "s.nn")
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(sh) * 1.5 for sh in ((2, 4, t, 8), (2, hk, s, 8),
                                                         (2, hk, s, 8))]
    if mask == "int":
        m = rng.integers(0, 2, (2, 1, t, s))
        m[0, 0, 1] = 0  # a query that sees no key
        arrays.append(m)
    elif mask == "float":
        arrays.append(rng.standard_normal((2, 1, t, s)))
    node = spec.model().nodes[-1]
    p = REGISTRY["sdpa"].Params.model_validate(node.params)

    def reference(xs, _ws):
        allowed = _visible(t, s, p.causal, p.window)
        add = None
        if mask == "int":
            allowed = allowed & (xs[3] != 0)
        elif mask == "float":
            add = xs[3]
        return _eager(*xs[:3], 8 ** -0.5, p.softcap, allowed, add)

    _check(spec, arrays, reference)


# ---- attention ----------------------------------------------------------------------------

ATTENTION = {  # name: (layer, inputs, shapes)
    "gemma2_gqa_causal_window": (
        "attention 4 kv_heads=2 qkv=separate causal window=3 softcap=2.0 scale=0.25",
        "x: [N, T, 8]", [(2, 6, 8)]),
    "band_cross_padding_softcap": (
        "attention 2 kv=m window=2 softcap=1.0 mask=pad", "x: [N, T, 8], m: [N, S, 8], "
        "pad: [N, S] int", [(2, 3, 8), (2, 6, 8), (2, 6)]),
    "window_fewer_keys_float_mask": (
        "attention 2 kv=m causal window=2 attn_mask=am", "x: [N, T, 8], m: [N, S, 8], "
        "am: [N, 2, T, S]", [(2, 5, 8), (2, 3, 8), (2, 2, 5, 3)]),
}


def _attention_reference(p, params):
    def reference(xs, w):
        x = xs[0]
        kv = xs[p.kv] if p.kv is not None else x
        n, t, e = x.shape
        s = kv.shape[1]
        h, hk = p.heads, p.kv_heads or p.heads
        d = e // h
        if "attn.in_proj_weight" in w:
            wq, wk, wv = w["attn.in_proj_weight"].chunk(3)
            bq, bk, bv = w["attn.in_proj_bias"].chunk(3)
            wo, bo = w["attn.out_proj.weight"], w["attn.out_proj.bias"]
        else:
            (wq, bq), (wk, bk), (wv, bv), (wo, bo) = (
                (w[f"attn.{a}.weight"], w[f"attn.{a}.bias"])
                for a in ("q_proj", "k_proj", "v_proj", "o_proj"))
        q = F.linear(x, wq, bq).view(n, t, h, d).transpose(1, 2)
        k = F.linear(kv, wk, bk).view(n, s, hk, d).transpose(1, 2)
        v = F.linear(kv, wv, bv).view(n, s, hk, d).transpose(1, 2)
        allowed = _visible(t, s, p.causal, p.window)[None, None]
        if p.mask is not None:
            allowed = allowed & (xs[p.mask] == 0)[:, None, None, :]
        add = xs[p.attn_mask] if p.attn_mask is not None else None
        scale = p.scale if p.scale is not None else d ** -0.5
        y = _eager(q, k, v, scale, p.softcap, allowed, add)
        return F.linear(y.transpose(1, 2).reshape(n, t, e), wo, bo)
    return reference


@pytest.mark.parametrize("case", sorted(ATTENTION))
def test_attention_matches_the_eager_reference_forward_and_backward(case):
    layer, inputs, shapes = ATTENTION[case]
    spec = nnspec.loads(f"model M({inputs}) {{\n    {layer} as attn\n}}\n", "a.nn")
    g = torch.Generator().manual_seed(2)
    params = {k: torch.randn(w.shape, generator=g, dtype=torch.float64) * 0.5
              for k, w in spec.state_shapes().items()}
    rng = np.random.default_rng(3)
    arrays = [rng.integers(0, 2, sh) if len(sh) == 2 else rng.standard_normal(sh)
              for sh in shapes]
    if case == "band_cross_padding_softcap":
        arrays[2][1, 1:] = 1  # only key 0 of the second sequence: its last queries see none
    node = spec.model().nodes[-1]
    assert node.inputs == [f"in_{i.name}" for i in spec.model().inputs]  # xs[p.kv] is m
    p = REGISTRY["attention"].Params.model_validate(node.params)
    got = _check(spec, arrays, _attention_reference(p, params), params)
    if case == "band_cross_padding_softcap":  # a query with no key: the output bias
        np.testing.assert_allclose(got[1, 2], params["attn.out_proj.bias"].numpy(), rtol=TOL)


def test_the_window_mask_follows_the_run_time_sizes():
    spec = nnspec.loads("model M(x: [N, T, 8], m: [N, S, 8]) {\n"
                        "    attention 2 kv=m causal window=2 softcap=3.0 as attn\n}\n", "a.nn")
    g = torch.Generator().manual_seed(4)
    params = {k: torch.randn(w.shape, generator=g, dtype=torch.float64)
              for k, w in spec.state_shapes().items()}
    p = REGISTRY["attention"].Params.model_validate(spec.model().nodes[-1].params)
    rng = np.random.default_rng(6)
    for t, s in ((3, 7), (6, 4), (1, 9)):
        arrays = [rng.standard_normal((2, t, 8)), rng.standard_normal((2, s, 8))]
        _check(spec, arrays, _attention_reference(p, params), params)


@pytest.mark.parametrize("kind, args, ins, training", [
    ("attention", {"heads": 2, "kv": 1, "causal": True, "window": 2, "softcap": 0.7,
                   "qkv": "separate", "kv_heads": 1},
     [TensorType((2, 3, 4)), TensorType((2, 5, 4))], False),
    ("attention", {"heads": 2, "window": 2, "softcap": 0.5, "attn_mask": 1, "dropout": 0.3},
     [TensorType((2, 4, 4)), TensorType((2, 4, 4))], True),
    ("sdpa", {"causal": True, "window": 3, "softcap": 0.6, "mask": 3},
     [TensorType((2, 2, 4, 3)), TensorType((2, 1, 6, 3)), TensorType((2, 1, 6, 2)),
      TensorType((1, 4, 6))], False),
    ("sdpa", {"window": 1, "softcap": 0.9, "dropout": 0.25},
     [TensorType((3, 4)), TensorType((5, 4)), TensorType((5, 2)), TensorType((1,), INT)],
     True),
])
def test_backward_against_finite_differences(kind, args, ins, training):
    if kind == "sdpa" and ins[-1].dtype == INT:
        ins = ins[:3]
    errors = check_kind(REGISTRY[kind], args, ins, training=training)
    assert errors and "x0" in errors and "x1" in errors


# ---- the torch path -------------------------------------------------------------------------

def _ops(mod, xs) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.no_grad():
        mod(*xs)
    return {e.name for e in prof.events()}


def test_a_window_is_an_sdpa_mask_and_softcap_the_explicit_path():
    x = torch.randn(2, 6, 8)
    windowed = build_module(nnspec.loads(
        "model M(x: [N, T, 8]) {\n    attention 2 causal window=2 as attn\n}\n", "a.nn"),
        seed=0).eval()
    assert isinstance(windowed.attn, SDPAttention) and windowed.attn.window == 2
    ops = _ops(windowed, [x])
    assert "aten::scaled_dot_product_attention" in ops and "aten::tanh" not in ops
    capped = build_module(nnspec.loads(
        "model M(x: [N, T, 8]) {\n    attention 2 causal attn_logit_softcapping=5.0 as attn\n}\n",
        "a.nn"), seed=0).eval()
    assert capped.attn.softcap == 5.0
    ops = _ops(capped, [x])
    assert "aten::scaled_dot_product_attention" not in ops and "aten::tanh" in ops
    sd = build_module(nnspec.loads(
        "model M(q: [N, 2, T, 4]) {\n    sdpa(q, q, q, sliding_window=2)\n}\n", "s.nn"))
    assert "aten::scaled_dot_product_attention" in _ops(sd, [torch.randn(1, 2, 5, 4)])


# ---- errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("line, at, needle", [
    ("attention 2 softcap=0.0", "softcap=0.0", "must be > 0"),
    ("attention 2 causal softcap=-50.0", "softcap=-50.0", "must be > 0"),
    ("attention 2 window=0", "window=0", "must be >= 1"),
    ("attention 2 causal window=-4", "window=-4", "must be >= 1"),
    ("y = sdpa(x, x, x, softcap=0)", "softcap=0", "must be > 0"),
    ("y = sdpa(x, x, x, causal, window=0)", "window=0", "must be >= 1"),
])
def test_bad_softcap_and_window_are_located_errors(line, at, needle):
    src = f"model M(x: [N, T, 8]) {{\n    {line}\n}}\n"
    diags = nnspec.loads(src, "bad.nn", strict=False).diagnostics
    assert diags, "expected an error"
    d = diags[0]
    assert needle in d.message, d.message
    col = 4 + line.index(at) + 1
    assert (d.span.line, d.span.col, d.span.end_col) == (2, col, col + len(at))


# ---- emitted source -----------------------------------------------------------------------

EMITTED = """
model Gemma(x: [N, T, 16]) {
    attention heads=4 kv_heads=2 qkv=separate bias=false causal window=3 softcap=2.0 rope
}
model Band(x: [N, T, 8], m: [N, S, 8], pad: [N, S] int) {
    attention 2 kv=m window=2 mask=pad
}
model Sd(q: [N, 4, T, 8], k: [N, 2, S, 8], m: [N, 1, T, S]) {
    a = sdpa(q, k, k, causal, window=2, softcap=1.0, mask=m, dropout=0.5)
    b = sdpa(q, k, k, window=3)
    c = sdpa(q, k, k, causal, softcap=0.5)
    a + b + c
}
"""


def test_emitted_source_matches_build_module(tmp_path):
    spec = nnspec.loads(EMITTED, "emitted.nn")
    text = emit_source(spec, all_models=True)
    assert "def softcapped_attention" in text and "def window_mask" in text
    assert "SoftcappedAttention(1.0, 0.5)" in text
    assert "softcap=2.0," in text and "SDPAttention(8, 2, window=2)" in text
    assert "attn_mask=window_mask(q, k, 3)" in text
    path = tmp_path / "softcap_window_gen.py"
    path.write_text(text)
    gen = import_source(path, "softcap_window_gen")
    rng = np.random.default_rng(8)
    pad = np.zeros((2, 6), np.int64)
    pad[1, 3:] = 1
    cases = {"Gemma": [rng.standard_normal((2, 5, 16))],
             "Band": [rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 6, 8)), pad],
             "Sd": [rng.standard_normal((2, 4, 3, 8)), rng.standard_normal((2, 2, 5, 8)),
                    rng.standard_normal((2, 1, 3, 5))]}
    for name, inputs in cases.items():
        ours = build_module(spec, name, seed=1, dtype=torch.float64)
        emitted = getattr(gen, name)().double()
        assert list(emitted.state_dict()) == list(ours.state_dict())
        emitted.load_state_dict(ours.state_dict())
        ts = [torch.from_numpy(v) for v in inputs]
        numpy_out = NumpyModel(spec, name, params={k: v.numpy() for k, v in
                                                   ours.state_dict().items()},
                               dtype=np.float64)(*inputs)
        for training in (False, True):
            ours.train(training)
            emitted.train(training)
            with torch.no_grad():
                torch.manual_seed(0)
                a = emitted(*ts)
                torch.manual_seed(0)
                b = ours(*ts)
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
            if not training:
                np.testing.assert_allclose(b.numpy(), numpy_out, rtol=1e-10, atol=1e-12)
