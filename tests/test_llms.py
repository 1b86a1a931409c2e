"""The transformer families people write (specs/gpt2.nn, bert_base.nn, llama2_7b.nn and the
shared-embedding transformer_base.nn): their published parameter counts, and at a tiny
config set with consts, equality in float64 with torch modules written by hand the way
nanoGPT and Hugging Face write them, loaded with nnspec's state_dict (strict). The full-size
models are only counted (no weight is drawn), so the file stays fast."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

import nnspec
from _util import import_source
from nnspec.backends.weights import TooLarge

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module, emit_source  # noqa: E402
from nnspec.tools.crosscheck import crosscheck, crosscheck_grad  # noqa: E402
from tests._nanogpt import NanoGPT  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"

# the same structures, small enough to run in milliseconds (kv_heads < heads: GQA)
TINY = {
    "gpt2.nn": {"layers": 2, "d": 32, "heads": 4, "vocab": 100, "context": 16},
    "bert_base.nn": {"layers": 2, "d": 32, "heads": 4, "ff": 64, "vocab": 100,
                     "positions": 16},
    "llama2_7b.nn": {"layers": 2, "d": 64, "heads": 4, "kv_heads": 2, "ff": 128,
                     "vocab": 100},
    "transformer_base.nn": {"d": 16, "heads": 2, "ff": 32, "vocab": 40},
}
MODEL = {"gpt2.nn": "GPT2Small", "bert_base.nn": "BertBase", "llama2_7b.nn": "Llama2"}


def load(name: str, tiny: bool = False) -> nnspec.Spec:
    if not tiny:
        return nnspec.load(str(SPECS / name))
    text = (SPECS / name).read_text()
    if name == "transformer_base.nn":  # its shape annotations state the sizes literally
        text = text.replace("512]", "16]").replace("32000]", "40]")
    return nnspec.loads(text, str(SPECS / name), consts=TINY[name])


def module(spec: nnspec.Spec, model: str | None = None) -> nn.Module:
    return build_module(spec, model, seed=0, dtype=torch.float64).eval()


def tokens(n: int, t: int, vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, vocab, size=(n, t)))


def load_into(ref: nn.Module, net: nn.Module) -> nn.Module:
    """The hand-written module with nnspec's weights; strict: every key on both sides."""
    ref.double().eval().load_state_dict(net.state_dict(), strict=True)
    return ref


def numpy_of(spec: nnspec.Spec, net: nn.Module, model: str | None = None) -> NumpyModel:
    return NumpyModel(spec, model, dtype=np.float64,
                      params={k: v.detach().numpy() for k, v in net.state_dict().items()})


# ---- published parameter counts (nothing allocated) --------------------------------------

@pytest.mark.parametrize("file, model, count", [
    ("gpt2.nn", "GPT2Small", 124_439_808),
    ("bert_base.nn", "BertBase", 109_482_240),
    ("llama2_7b.nn", "Llama2", 6_738_415_616),
])
def test_published_parameter_counts(file, model, count):
    assert load(file).param_count(model) == count


def test_llama2_7b_is_summarised_instantly_and_crosscheck_refuses_it():
    t0 = time.perf_counter()
    spec = load("llama2_7b.nn")
    rows = spec.layers("Llama2")
    shapes = spec.state_shapes("Llama2")
    assert time.perf_counter() - t0 < 2.0
    assert sum(r.params for r in rows) == 6_738_415_616
    assert shapes["model.layers.31.mlp.gate_proj.weight"].shape == (11008, 4096)
    assert shapes["model.layers.0.self_attn.k_proj.weight"].shape == (4096, 4096)
    assert shapes["lm_head.weight"].shape == (32000, 4096)
    with pytest.raises(TooLarge, match=r"needs about [\d,]+ bytes"):
        crosscheck(spec, "Llama2", "float64")


def _nn_transformer_count(d: int, ff: int, enc: int = 6, dec: int = 6) -> int:
    """nn.Transformer(d, nhead, enc, dec, ff): attention 4 d^2 + 4 d (packed in_proj and
    out_proj), feed-forward 2 d ff + ff + d, 2 d per layernorm, and the two final norms."""
    attn, mlp, norm = 4 * d * d + 4 * d, 2 * d * ff + ff + d, 2 * d
    return enc * (attn + mlp + 2 * norm) + dec * (2 * attn + mlp + 3 * norm) + 2 * norm


def test_transformer_base_shares_one_table_three_ways():
    spec = load("transformer_base.nn")
    stack = _nn_transformer_count(512, 2048)
    assert stack == 44_140_544
    # one 32,000 x 512 table: source tokens, target tokens and the pre-softmax projection
    assert spec.param_count("TransformerBase") == stack + 32000 * 512 == 60_524_544
    assert spec.param_count("TransformerBaseUntied") == \
        stack + 2 * 32000 * 512 + 512 * 32000 + 32000 == 93_324_544
    # the same at the tiny config, where it runs: the generator is the embedding's table
    tiny = load("transformer_base.nn", tiny=True)
    assert tiny.param_count("TransformerBase") == _nn_transformer_count(16, 32) + 40 * 16
    net = module(tiny, "TransformerBase")
    assert net.get_parameter("generator.weight") is net.get_parameter("embed.weight")
    assert "generator.weight" in net.state_dict()
    src, tgt = tokens(2, 5, 40), tokens(2, 4, 40, seed=1)
    with torch.no_grad():
        want = net(src, tgt)
        got = numpy_of(tiny, net, "TransformerBase")(src.numpy(), tgt.numpy())
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)


# ---- GPT-2 against nanoGPT's GPT (tests/_nanogpt.py) -----------------------------------

def test_gpt2_keys_are_nanogpts_and_the_full_model_is_gpt2_small():
    spec = load("gpt2.nn")
    with torch.device("meta"):
        ref = NanoGPT(50257, 1024, 768, 12, 12)
    assert sum(p.numel() for p in ref.parameters()) == 124_439_808
    shapes = spec.state_shapes("GPT2Small")
    assert list(shapes) == list(ref.state_dict())
    assert [w.shape for w in shapes.values()] == [tuple(v.shape)
                                                  for v in ref.state_dict().values()]


def test_gpt2_equals_nanogpt_in_float64():
    spec = load("gpt2.nn", tiny=True)
    net = module(spec)
    ref = load_into(NanoGPT(100, 16, 32, 4, 2), net)
    x = tokens(2, 7, 100)
    with torch.no_grad():
        want = ref(x)
        torch.testing.assert_close(net(x), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(numpy_of(spec, net)(x.numpy()), want.numpy(), rtol=1e-10,
                               atol=1e-12)


def test_gpt2_head_is_really_tied_to_wte():
    spec = load("gpt2.nn", tiny=True)
    net = module(spec)
    wte = net.get_parameter("transformer.wte.weight")
    assert net.get_parameter("lm_head.weight") is wte
    names = [k for k, _ in net.named_parameters()]
    assert len(names) == len(set(map(id, net.parameters())))
    assert sum(k in ("transformer.wte.weight", "lm_head.weight") for k in names) == 1
    assert sum(p.numel() for p in net.parameters()) == spec.param_count("GPT2Small")
    state = net.state_dict()
    assert "transformer.wte.weight" in state and "lm_head.weight" in state
    x = tokens(1, 3, 100)
    with torch.no_grad():
        before = net(x)
        wte[:, 0] += 1.0  # the embedding's table, read back through the head
        after = net(x)
    assert not torch.equal(before, after)
    assert torch.equal(net.state_dict()["lm_head.weight"], wte)
    # NumPy takes either key, or both
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    want = after.numpy()
    for drop in ("lm_head.weight", "transformer.wte.weight"):
        part = {k: v for k, v in sd.items() if k != drop}
        got = NumpyModel(spec, params=part, dtype=np.float64)(x.numpy())
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


# ---- LLaMA: Hugging Face's LlamaForCausalLM, written out ----------------------------------

def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(x, n_rep: int):
    """transformers' repeat_kv: [N, kv, T, D] -> [N, kv * n_rep, T, D]."""
    b, kv, t, dh = x.shape
    return x[:, :, None].expand(b, kv, n_rep, t, dh).reshape(b, kv * n_rep, t, dh)


class HFRMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


class HFAttention(nn.Module):
    """LlamaAttention (eager): RoPE with rotate_half, repeat_kv, causal softmax."""

    def __init__(self, d: int, heads: int, kv_heads: int, theta: float = 10000.0):
        super().__init__()
        self.h, self.kv, self.dh, self.theta = heads, kv_heads, d // heads, theta
        self.q_proj = nn.Linear(d, heads * self.dh, bias=False)
        self.k_proj = nn.Linear(d, kv_heads * self.dh, bias=False)
        self.v_proj = nn.Linear(d, kv_heads * self.dh, bias=False)
        self.o_proj = nn.Linear(heads * self.dh, d, bias=False)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.h, self.dh).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv, self.dh).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv, self.dh).transpose(1, 2)
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, self.dh, 2).double() / self.dh))
        freqs = torch.arange(t).double()[:, None] * inv_freq[None]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, self.h // self.kv), repeat_kv(v, self.h // self.kv)
        scores = q @ k.transpose(2, 3) / math.sqrt(self.dh)
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))


class HFMLP(nn.Module):
    def __init__(self, d: int, ff: int):
        super().__init__()
        self.gate_proj = nn.Linear(d, ff, bias=False)
        self.up_proj = nn.Linear(d, ff, bias=False)
        self.down_proj = nn.Linear(ff, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class HFLayer(nn.Module):
    def __init__(self, d: int, heads: int, kv_heads: int, ff: int):
        super().__init__()
        self.self_attn, self.mlp = HFAttention(d, heads, kv_heads), HFMLP(d, ff)
        self.input_layernorm, self.post_attention_layernorm = HFRMSNorm(d), HFRMSNorm(d)

    def forward(self, x):
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class HFLlama(nn.Module):
    """LlamaForCausalLM: model.embed_tokens, model.layers, model.norm, an untied lm_head."""

    def __init__(self, vocab: int, d: int, layers: int, heads: int, kv_heads: int, ff: int):
        super().__init__()
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(vocab, d)
        self.model.layers = nn.ModuleList([HFLayer(d, heads, kv_heads, ff)
                                           for _ in range(layers)])
        self.model.norm = HFRMSNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        x = self.model.embed_tokens(idx)
        for layer in self.model.layers:
            x = layer(x)
        return self.lm_head(self.model.norm(x))


def test_llama_keys_are_hfs():
    with torch.device("meta"):
        ref = HFLlama(32000, 4096, 32, 32, 32, 11008)
    assert sum(p.numel() for p in ref.parameters()) == 6_738_415_616
    shapes = load("llama2_7b.nn").state_shapes("Llama2")
    assert set(shapes) == set(ref.state_dict())
    assert all(shapes[k].shape == tuple(v.shape) for k, v in ref.state_dict().items())


@pytest.mark.parametrize("kv_heads", [2, 4], ids=["gqa", "mha"])
def test_llama_equals_hf_llama_with_rope_and_gqa_in_float64(kv_heads):
    spec = nnspec.load(str(SPECS / "llama2_7b.nn"),
                       consts={**TINY["llama2_7b.nn"], "kv_heads": kv_heads})
    net = module(spec)
    assert net.get_parameter("model.layers.0.self_attn.k_proj.weight").shape == \
        (kv_heads * 16, 64)
    ref = load_into(HFLlama(100, 64, 2, 4, kv_heads, 128), net)
    x = tokens(2, 6, 100)
    with torch.no_grad():
        want = ref(x)
        torch.testing.assert_close(net(x), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(numpy_of(spec, net)(x.numpy()), want.numpy(), rtol=1e-10,
                               atol=1e-12)


# ---- BERT: Hugging Face's BertModel, written out -----------------------------------------

class HFBertSelf(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.h = heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, ext):
        b, t, d = x.shape
        q, k, v = (m(x).view(b, t, self.h, d // self.h).transpose(1, 2)
                   for m in (self.query, self.key, self.value))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.h) + ext
        return (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, d)


class HFBertOut(nn.Module):
    """BertSelfOutput / BertOutput: dense, then LayerNorm(h + residual)."""

    def __init__(self, d_in: int, d: int):
        super().__init__()
        self.dense, self.LayerNorm = nn.Linear(d_in, d), nn.LayerNorm(d, eps=1e-12)

    def forward(self, h, x):
        return self.LayerNorm(self.dense(h) + x)


class HFBertLayer(nn.Module):
    def __init__(self, d: int, heads: int, ff: int):
        super().__init__()
        self.attention = nn.Module()
        self.attention.self = HFBertSelf(d, heads)
        self.attention.output = HFBertOut(d, d)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(d, ff)
        self.output = HFBertOut(ff, d)

    def forward(self, x, ext):
        a = self.attention.output(self.attention.self(x, ext), x)
        return self.output(F.gelu(self.intermediate.dense(a)), a)


class HFBert(nn.Module):
    """BertModel: embeddings, encoder.layer, pooler on the first token; HF's extended
    attention mask (1 - mask) * finfo.min added to the scores."""

    def __init__(self, vocab: int, positions: int, d: int, heads: int, layers: int, ff: int):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(vocab, d)
        self.embeddings.position_embeddings = nn.Embedding(positions, d)
        self.embeddings.token_type_embeddings = nn.Embedding(2, d)
        self.embeddings.LayerNorm = nn.LayerNorm(d, eps=1e-12)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList([HFBertLayer(d, heads, ff) for _ in range(layers)])
        self.pooler = nn.Module()
        self.pooler.dense = nn.Linear(d, d)

    def forward(self, ids, types, mask):
        e = self.embeddings
        x = e.word_embeddings(ids) + e.position_embeddings(torch.arange(ids.shape[1])) \
            + e.token_type_embeddings(types)
        x = e.LayerNorm(x)
        ext = (1.0 - mask[:, None, None, :].double()) * torch.finfo(torch.float64).min
        for layer in self.encoder.layer:
            x = layer(x, ext)
        return x, torch.tanh(self.pooler.dense(x[:, 0]))


def test_bert_keys_are_hfs_bertmodel():
    with torch.device("meta"):
        ref = HFBert(30522, 512, 768, 12, 12, 3072)
    assert sum(p.numel() for p in ref.parameters()) == 109_482_240
    spec = load("bert_base.nn")
    assert list(spec.state_shapes("BertBase")) == list(ref.state_dict())
    assert [str(t) for t in spec.output_type("BertBase").items] == ["[N, T, 768]", "[N, 768]"]


def test_bert_equals_hf_bertmodel_with_a_padding_mask_in_float64():
    spec = load("bert_base.nn", tiny=True)
    net = module(spec)
    ref = load_into(HFBert(100, 16, 32, 4, 2, 64), net)
    ids, types = tokens(3, 6, 100), tokens(3, 6, 2, seed=1)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] + [0] * 5])  # padding at the end
    with torch.no_grad():
        want = ref(ids, types, mask)
        got = net(ids, types, mask)
    got_np = numpy_of(spec, net)(ids.numpy(), types.numpy(), mask.numpy())
    for w, g, n in zip(want, got, got_np):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(n, w.numpy(), rtol=1e-10, atol=1e-12)


# ---- both backends, gradients and the emitted source, at the tiny configs ----------------

@pytest.mark.parametrize("file", sorted(TINY), ids=str)
def test_tiny_configs_crosscheck_and_gradients(file):
    """Both backends layer by layer, and the reference backward against autograd (the
    untied Transformer is test_crosscheck.py's, at full size)."""
    spec = load(file, tiny=True)
    name = MODEL.get(file, "TransformerBase")
    syms = {str(d) for i in spec.model(name).inputs for d in i.dims() if not d.is_const}
    dims = {k: v for k, v in {"N": 2, "T": 5, "S": 4}.items() if k in syms}
    report = crosscheck(spec, name, "float64", seed=0, dims=dims)
    assert report.ok, report.render()
    grads = crosscheck_grad(spec, name, "float64", seed=0, dims={**dims, "T": 3})
    assert grads.ok, grads.render()
    trainable = {k for k, w in spec.state_shapes(name).items() if w.trainable}
    assert {r.name for r in grads.params if r.kind == "param"} <= trainable


@pytest.mark.parametrize("file", sorted(TINY), ids=str)
def test_tiny_configs_emitted_source_equals_build_module(file, tmp_path):
    spec = load(file, tiny=True)
    path = tmp_path / f"gen_{Path(file).stem}.py"
    path.write_text(emit_source(spec, all_models=True))
    gen = import_source(path, path.stem)
    for name in spec.model_names:
        net = module(spec, name)
        emitted = getattr(gen, name)().double().eval()
        emitted.load_state_dict(net.state_dict(), strict=True)
        assert [k for k, _ in emitted.named_parameters()] == \
            [k for k, _ in net.named_parameters()]
        m = spec.model(name)
        xs = []
        for i, inp in enumerate(m.inputs):
            shape = [d.evaluate({"N": 2, "T": 5, "S": 4}) for d in inp.dims()]
            hi = 2 if inp.name in ("token_type_ids", "attention_mask") else 16
            xs.append(torch.from_numpy(
                np.random.default_rng(i).integers(0, hi, size=shape)))
        with torch.no_grad():
            want, got = net(*xs), emitted(*xs)
        for a, b in zip(*(v if isinstance(v, tuple) else (v,) for v in (want, got))):
            torch.testing.assert_close(b, a, rtol=0, atol=0)
