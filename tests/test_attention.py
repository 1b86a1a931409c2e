"""attention and positional, and the Transformer library blocks (stdlib transformer.nn):
both backends against torch.nn.MultiheadAttention / TransformerEncoderLayer /
TransformerDecoderLayer / Transformer with the same weights, the sinusoidal table, errors,
parameter counts, MACs, and the emitted source of the causal LM."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from _util import import_source
import nnspec
from nnspec.core.dims import Dim
from nnspec.layers.positional import sinusoidal_table

torch = pytest.importorskip("torch")
nn = torch.nn

from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module, emit_source  # noqa: E402
from nnspec.layers.torch import positional as positional_torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
RTOL = 1e-10

ATTN = """
model Self(x: [N, T, 8]) {
    attention heads=2 as attn
}
model Cross(x: [N, T, 8], m: [N, S, 8]) {
    attention 4 kv=m as attn
}
model Causal(x: [N, T, 8]) {
    attention heads=2 causal as attn
}
model Padded(x: [N, T, 8], k: [N, T] int) {
    attention heads=2 mask=k as attn
}
model CrossPadded(x: [N, T, 8], m: [N, S, 8], k: [N, S] int) {
    attention heads=4 kv=m mask=k bias=false as attn
}
model CausalPadded(x: [N, T, 8], k: [N, T] int) {
    attention heads=2 causal mask=k dropout=0.3 as attn
}
"""


def _mha(heads, bias=True, seed=0):
    torch.manual_seed(seed)
    m = nn.MultiheadAttention(8, heads, bias=bias, batch_first=True).double().eval()
    if bias:  # PyTorch initialises the biases to zero: make them visible
        with torch.no_grad():
            m.in_proj_bias.normal_()
            m.out_proj.bias.normal_()
    return m


def _run_both(spec, model, params, inputs):
    ours = build_module(spec, model, params=params, dtype=torch.float64).eval()
    ref = NumpyModel(spec, model, params={k: v.numpy() for k, v in params.items()},
                     dtype=np.float64)
    with torch.no_grad():
        a = ours(*[torch.from_numpy(x) for x in inputs]).numpy()
    b = ref(*inputs)
    return a, b


def _close(a, b, want):
    scale = np.abs(want).max()
    assert np.abs(a - want).max() <= RTOL * scale
    assert np.abs(b - want).max() <= RTOL * scale


@pytest.mark.parametrize("model, heads, bias", [
    ("Self", 2, True), ("Cross", 4, True), ("Causal", 2, True), ("Padded", 2, True),
    ("CrossPadded", 4, False), ("CausalPadded", 2, True)])
def test_attention_matches_multihead_attention(model, heads, bias):
    spec = nnspec.loads(ATTN, "attn.nn")
    mha = _mha(heads, bias)
    params = {f"attn.{k}": v for k, v in mha.state_dict().items()}
    assert list(params) == list(spec.state_shapes(model))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 8))
    m = rng.standard_normal((3, 7, 8))
    kt = np.zeros((3, 5), np.int64)
    kt[0, 3:] = 1
    kt[2, 1] = 4  # any nonzero value marks a padded position
    ks = np.zeros((3, 7), np.int64)
    ks[1, 2:] = 1
    ks[2, 0] = 1
    X, M = torch.from_numpy(x), torch.from_numpy(m)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    with torch.no_grad():
        if model == "Self":
            want, inputs = mha(X, X, X)[0], [x]
        elif model == "Cross":
            want, inputs = mha(X, M, M)[0], [x, m]
        elif model == "Causal":
            want, inputs = mha(X, X, X, attn_mask=causal)[0], [x]
        elif model == "Padded":
            want = mha(X, X, X, key_padding_mask=torch.from_numpy(kt != 0))[0]
            inputs = [x, kt]
        elif model == "CrossPadded":
            want = mha(X, M, M, key_padding_mask=torch.from_numpy(ks != 0))[0]
            inputs = [x, m, ks]
        else:
            want = mha(X, X, X, attn_mask=causal,
                       key_padding_mask=torch.from_numpy(kt != 0))[0]
            inputs = [x, kt]
    a, b = _run_both(spec, model, params, inputs)
    assert a.shape == (3, 5, 8)
    _close(a, b, want.numpy())


def test_a_fully_masked_query_attends_to_nothing():
    """All keys padded: zero attention weights (scaled_dot_product_attention's result), so
    the output is out_proj.bias; PyTorch's own slow path agrees."""
    spec = nnspec.loads(ATTN, "attn.nn")
    mha = _mha(2, True)
    params = {f"attn.{k}": v for k, v in mha.state_dict().items()}
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 8))
    k = np.zeros((2, 4), np.int64)
    k[0] = 1
    X = torch.from_numpy(x)
    with torch.enable_grad():  # not the eval-mode fast path (which gives NaN there)
        want = mha(X, X, X, key_padding_mask=torch.from_numpy(k != 0),
                   need_weights=False)[0].detach().numpy()
    b = NumpyModel(spec, "Padded", params={k_: v.numpy() for k_, v in params.items()},
                   dtype=np.float64)(x, k)
    assert not np.isnan(b).any()
    np.testing.assert_allclose(b[0], np.broadcast_to(mha.out_proj.bias.detach().numpy(),
                                                     (4, 8)), rtol=1e-12)
    np.testing.assert_allclose(b, want, rtol=1e-10, atol=1e-12)


def test_causal_attention_ignores_the_future():
    spec = nnspec.loads(ATTN, "attn.nn")
    ref = NumpyModel(spec, "Causal", seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 6, 8))
    y = ref(x)
    x2 = x.copy()
    x2[:, 4:] += 10.0
    y2 = ref(x2)
    np.testing.assert_allclose(y[:, :4], y2[:, :4], rtol=1e-12)
    assert not np.allclose(y[:, 4:], y2[:, 4:])


def test_attention_state_dict_and_init():
    spec = nnspec.loads(ATTN, "attn.nn")
    shapes = spec.state_shapes("Self")
    assert {k: w.shape for k, w in shapes.items()} == {
        "attn.in_proj_weight": (24, 8), "attn.in_proj_bias": (24,),
        "attn.out_proj.weight": (8, 8), "attn.out_proj.bias": (8,)}
    # xavier_uniform_ on the [3E, E] matrix; zero biases; nn.Linear's default for out_proj
    assert shapes["attn.in_proj_weight"].init == ("uniform", math.sqrt(6 / (8 + 24)))
    assert shapes["attn.in_proj_bias"].init == ("zeros",)
    assert shapes["attn.out_proj.weight"].init == ("uniform", 1 / math.sqrt(8))
    assert shapes["attn.out_proj.bias"].init == ("zeros",)
    assert list(spec.state_shapes("CrossPadded")) == ["attn.in_proj_weight",
                                                       "attn.out_proj.weight"]


def test_attention_dropout_only_in_training():
    spec = nnspec.loads(ATTN, "attn.nn")
    ref = NumpyModel(spec, "CausalPadded", seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 5, 8))
    k = np.zeros((2, 5), np.int64)
    ev = ref(x, k)
    tr = ref(x, k, training=True, rng=np.random.default_rng(0))
    assert not np.allclose(ev, tr)
    mod = build_module(spec, "CausalPadded", seed=0, dtype=torch.float64)
    assert mod.attn.dropout == 0.3
    with torch.no_grad():
        np.testing.assert_allclose(mod.eval()(torch.from_numpy(x), torch.from_numpy(k)).numpy(),
                                   ev, rtol=1e-10, atol=1e-12)


# ---- the Transformer blocks ------------------------------------------------------------

BLOCKS = """
use "transformer.nn"
model Enc(x: [N, T, 16]) {
    EncoderLayer(16, 4, 32, 0.1) as enc
}
model Dec(x: [N, T, 16], m: [N, S, 16]) {
    DecoderLayer(x, m, 16, 4, 32, 0.1) as dec
}
model Tr(src: [N, S, 16], tgt: [N, T, 16]) {
    Transformer(src, tgt, 16, 4, 2, 3, 32, 0.1) as transformer
}
"""


def _randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return module


def _holder(name, layer):
    h = nn.Module()
    h.add_module(name, layer)
    return h.double().eval()


def _ours_with(spec, model, holder):
    """Our module with the torch module's state_dict loaded as is (keys must match)."""
    ours = build_module(spec, model, seed=0, dtype=torch.float64).eval()
    want = holder.state_dict()
    assert set(ours.state_dict()) == set(want)
    ours.load_state_dict(want, strict=True)
    ref = NumpyModel(spec, model, params={k: v.numpy() for k, v in want.items()},
                     dtype=np.float64)
    return ours, ref


def test_encoder_layer_matches_torch():
    spec = nnspec.loads(BLOCKS, "blocks.nn")
    layer = _randomise(nn.TransformerEncoderLayer(16, 4, 32, 0.1, batch_first=True))
    holder = _holder("enc", layer)
    ours, ref = _ours_with(spec, "Enc", holder)
    x = np.random.default_rng(0).standard_normal((3, 6, 16))
    with torch.no_grad():
        want = layer(torch.from_numpy(x)).numpy()
        a = ours(torch.from_numpy(x)).numpy()
    _close(a, ref(x), want)


def test_decoder_layer_matches_torch():
    spec = nnspec.loads(BLOCKS, "blocks.nn")
    layer = _randomise(nn.TransformerDecoderLayer(16, 4, 32, 0.1, batch_first=True), 1)
    holder = _holder("dec", layer)
    ours, ref = _ours_with(spec, "Dec", holder)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 16))
    m = rng.standard_normal((2, 7, 16))
    mask = nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
    with torch.no_grad():
        want = layer(torch.from_numpy(x), torch.from_numpy(m), tgt_mask=mask,
                     tgt_is_causal=True).numpy()
        a = ours(torch.from_numpy(x), torch.from_numpy(m)).numpy()
    _close(a, ref(x, m), want)


def test_transformer_block_matches_nn_transformer():
    spec = nnspec.loads(BLOCKS, "blocks.nn")
    tr = _randomise(nn.Transformer(16, 4, 2, 3, 32, 0.1, batch_first=True), 2)
    holder = _holder("transformer", tr)
    ours, ref = _ours_with(spec, "Tr", holder)
    rng = np.random.default_rng(2)
    src = rng.standard_normal((2, 7, 16))
    tgt = rng.standard_normal((2, 4, 16))
    mask = nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64)
    with torch.no_grad():
        want = tr(torch.from_numpy(src), torch.from_numpy(tgt), tgt_mask=mask,
                  tgt_is_causal=True).numpy()
        a = ours(torch.from_numpy(src), torch.from_numpy(tgt)).numpy()
    _close(a, ref(src, tgt), want)


# ---- parameter counts and MACs ---------------------------------------------------------

COUNTS = """
use "transformer.nn"
model Layer(x: [N, T, 512]) {
    EncoderLayer(512)
}
model Full(src: [N, S, 512], tgt: [N, T, 512]) {
    Transformer(src, tgt)
}
"""


def test_parameter_counts():
    spec = nnspec.loads(COUNTS, "counts.nn")
    assert spec.param_count("Layer") == 3_152_384
    assert spec.param_count("Full") == 44_140_544
    with torch.device("meta"):
        full = nn.Transformer(512, 8, 6, 6, 2048, batch_first=True)
    assert sum(p.numel() for p in full.parameters()) == 44_140_544
    assert {k.removeprefix("transformer_0.") for k in spec.state_shapes("Full")} \
        == set(full.state_dict())


def test_transformer_base_spec():
    spec = nnspec.load(str(SPECS / "transformer_base.nn"))
    assert [str(d) for d in spec.output_type().shape] == ["N", "T", "32000"]
    shapes = spec.state_shapes("TransformerBaseUntied")
    stack = sum(math.prod(w.shape) for k, w in shapes.items()
                if k.startswith(("encoder.", "decoder.")))
    assert stack == 44_140_544
    assert spec.param_count("TransformerBaseUntied") == \
        44_140_544 + 2 * 32000 * 512 + 512 * 32000 + 32000
    with torch.device("meta"):
        full = nn.Transformer(512, 8, 6, 6, 2048, batch_first=True)
    assert {k for k in shapes if k.startswith(("encoder.", "decoder."))} \
        == set(full.state_dict())


def _macs(spec, model, layer):
    (row,) = [r for r in spec.layers(model) if r.name == layer]
    return row.macs


def test_attention_macs_count_projections_and_both_products():
    spec = nnspec.loads(ATTN, "attn.nn")
    N, T, S = Dim.sym("N"), Dim.sym("T"), Dim.sym("S")
    E = 8
    proj_self = N * T * (4 * E * E)
    qk = N * T * T * E  # Q Kᵀ: T x S scores, E multiply-adds each (over all heads)
    av = N * T * T * E  # weights times V
    assert _macs(spec, "Self", "attn") == proj_self + qk + av
    assert _macs(spec, "Self", "attn") - proj_self == 2 * N * T * T * E
    cross = N * T * (2 * E * E) + N * S * (2 * E * E) + 2 * N * T * S * E
    assert _macs(spec, "Cross", "attn") == cross
    # by hand, N=2, T=5, S=7, E=8: 2*(5*128 + 7*128 + 2*5*7*8) = 4,192
    assert _macs(spec, "Cross", "attn").subs({"N": 2, "T": 5, "S": 7}).value == 4_192
    # d=512, T=10: 4*10*512^2 + 2*10*10*512 = 10,588,160 per sample
    spec2 = nnspec.loads("model M(x: [N, 10, 512]) {\n    attention 8\n}\n", "m.nn")
    assert spec2.layers()[0].macs.subs({"N": 1}).value == 10_588_160


def test_positional_macs_and_weights():
    spec = nnspec.loads("model M(x: [N, T, 6]) {\n    positional learned max_len=9 scale as pe"
                        "\n    positional\n}\n", "m.nn")
    rows = spec.layers()
    N, T = Dim.sym("N"), Dim.sym("T")
    assert rows[0].macs == N * T * 12 and rows[1].macs == N * T * 6
    assert {k: (w.shape, w.init) for k, w in spec.state_shapes().items()} == {
        "pe.weight": ((9, 6), ("normal", 1.0))}


# ---- positional encodings --------------------------------------------------------------

def test_sinusoidal_table_by_hand():
    pe = sinusoidal_table(8, 4)
    # E=4: the frequencies are 1 / 10000^(0/4) = 1 and 1 / 10000^(2/4) = 1/100
    assert pe[1] == pytest.approx([math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)],
                                  abs=1e-15)
    assert pe[5] == pytest.approx([math.sin(5), math.cos(5), math.sin(0.05), math.cos(0.05)],
                                  abs=1e-15)
    assert pe[0] == pytest.approx([0, 1, 0, 1])
    # odd widths: the last column is a sine
    pe5 = sinusoidal_table(3, 5)
    assert pe5[2, 4] == pytest.approx(math.sin(2 / 10000 ** (4 / 5)), abs=1e-15)
    x = torch.zeros(1, 8, 4, dtype=torch.float64)
    np.testing.assert_allclose(positional_torch.add_sinusoidal(x)[0].numpy(), pe,
                               rtol=0, atol=1e-13)


def test_positional_in_both_backends():
    src = """
model Sin(x: [N, T, 6]) {
    positional scale
}
model Learned(x: [N, T, 6]) {
    positional learned max_len=9 scale as pe
}
"""
    spec = nnspec.loads(src, "pos.nn")
    x = np.random.default_rng(0).standard_normal((2, 7, 6))
    for model in ("Sin", "Learned"):
        ours = build_module(spec, model, seed=3, dtype=torch.float64)
        ref = NumpyModel(spec, model, seed=3, dtype=np.float64)
        with torch.no_grad():
            a = ours(torch.from_numpy(x)).numpy()
        b = ref(x)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        table = (sinusoidal_table(7, 6) if model == "Sin"
                 else ours.state_dict()["pe.weight"].numpy()[:7])
        np.testing.assert_allclose(b, x * math.sqrt(6) + table, rtol=1e-12, atol=1e-12)
    ours = build_module(spec, "Learned", seed=3, dtype=torch.float64)
    assert isinstance(ours.pe, nn.Embedding) and ours.pe.weight.shape == (9, 6)
    with pytest.raises(ValueError, match="more than max_len=9"):
        ours(torch.zeros(1, 10, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="more than max_len=9"):
        NumpyModel(spec, "Learned", seed=0)(np.zeros((1, 10, 6)))


# ---- errors --------------------------------------------------------------------------

def _diags(src):
    spec = nnspec.loads(src, "bad.nn", strict=False)
    return spec.diagnostics


def test_heads_must_divide_the_width():
    (d,) = _diags("model M(x: [N, T, 512]) {\n    dense 512\n    attention heads=3 causal\n}\n")
    assert d.message == "heads must divide the width, but 3 does not divide 512"
    assert (d.span.line, d.span.col) == (3, 15)  # at `heads=3`
    assert d.span.end_col == 22


def test_cross_attention_width_mismatch():
    (d,) = _diags("model M(x: [N, T, 16], m: [N, S, 24]) {\n    attention 4 kv=m\n}\n")
    assert "[N, T, 16]" in d.message and "[N, S, 24]" in d.message
    assert "width 16" in d.message and "width 24" in d.message
    assert (d.span.line, d.span.col) == (2, 17)  # at `kv=m`


@pytest.mark.parametrize("body, needle", [
    ("attention 4 mask=k", "key-padding mask must be [N, T] int"),
    ("attention 4 kv=m mask=j", "key-padding mask must be [N, S] int"),
    ("attention 4 kv=m mask=f", "key-padding mask must be [N, S] int"),
    ("attention 0", "must be >= 1"),
    ("attention 4 dropout=1.0", "must be in [0, 1)"),
    ("positional learned", "learned positions need a table size"),
    ("attention 4 kv=k", "attention's kv must be [N, S, E]"),
])
def test_attention_errors(body, needle):
    src = (f"model M(x: [N, T, 16], m: [N, S, 16], k: [N, S] int, j: [N, T] int, f: [N, S]) "
           f"{{\n    {body}\n}}\n")
    diags = _diags(src)
    assert diags and needle in diags[0].message, [d.message for d in diags]


def test_positional_longer_than_max_len():
    (d,) = _diags("model M(x: [N, 12, 8]) {\n    positional learned max_len=10\n}\n")
    assert d.message == "the sequence has 12 positions, more than max_len=10"


# ---- the causal LM and its emitted source ------------------------------------------------

def test_causal_lm_emitted_source(tmp_path):
    spec = nnspec.load(str(SPECS / "causal_lm.nn"))
    assert [str(d) for d in spec.output_type().shape] == ["N", "T", "16384"]
    ours = build_module(spec, seed=0).eval()
    path = tmp_path / "causal_lm_gen.py"
    text = emit_source(spec)
    assert "import nnspec" not in text and "from nnspec" not in text
    path.write_text(text)
    emitted = import_source(path, "causal_lm_gen").CausalLM().eval()
    assert list(emitted.state_dict()) == list(ours.state_dict())
    emitted.load_state_dict(ours.state_dict())
    tokens = torch.from_numpy(np.random.default_rng(0).integers(0, 16384, (2, 6)))
    with torch.no_grad():
        a = ours(tokens)
        b = emitted(tokens)
    assert a.shape == (2, 6, 16384)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # causal: a later token does not change earlier logits
    t2 = tokens.clone()
    t2[:, 4:] = 7
    with torch.no_grad():
        c = emitted(t2)
    torch.testing.assert_close(a[:, :4], c[:, :4], rtol=1e-4, atol=1e-4)
