"""``nnspec import hf:config.json``: Hugging Face models through torch.export, round trips
against transformers' own models (tiny configs, float64, the original's state_dict loaded
strictly) in build_module, the NumPy interpreter and the compiled source."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import nnspec  # noqa: E402
from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module, emit_source  # noqa: E402
from nnspec.frontends.torch import import_model, parse_input, spec_of  # noqa: E402
from nnspec.tools.cli import main  # noqa: E402
from nnspec.tools.fmt import format_text  # noqa: E402

TOKENS = "input_ids: [N, T] int"


def _config(tmp_path, cfg, arch: str) -> str:
    d = cfg.to_dict()
    d["architectures"] = [arch]
    path = tmp_path / f"{arch}.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    return str(path)


def _outputs(y) -> list:
    if isinstance(y, dict):  # a ModelOutput: its tensors in order
        return [v for v in y.values() if isinstance(v, torch.Tensor)]
    return list(y) if isinstance(y, (tuple, list)) else [y]


def _round_trip(text: str, ref, xs: list, rel: float = 1e-12, drop=(), **kw):
    """The imported spec's module, NumPy model and compiled source, with ref's state_dict
    loaded strictly, give ref's outputs (float64) at the sizes of ``xs``."""
    assert format_text(text) == text
    spec = nnspec.loads(text)
    ref = ref.double().eval()
    state = {k: v for k, v in ref.state_dict().items() if k not in drop}
    m = build_module(spec).double().eval()
    m.load_state_dict(state, strict=True)
    ns: dict = {}
    exec(compile(emit_source(spec), "<emitted>", "exec"), ns)  # noqa: S102
    e = ns[spec.program.models[0].name]().double().eval()
    e.load_state_dict(state, strict=True)
    nm = NumpyModel(spec, params={k: v.numpy() for k, v in state.items()})
    for x in xs:
        with torch.no_grad():
            want = _outputs(ref(x, **kw))
            got, src = _outputs(m(x)), _outputs(e(x))
        npy = _outputs(nm(x.numpy()))
        assert len(got) == len(want) == len(src) == len(npy)
        for w, g, s, n in zip(want, got, src, npy):
            scale = w.abs().max().item()
            assert (g - w).abs().max().item() <= rel * scale
            assert (s - w).abs().max().item() <= rel * scale
            assert np.abs(n - w.numpy()).max() <= rel * scale
    return spec


def _tokens(n: int, t: int, vocab: int = 100):
    g = torch.Generator().manual_seed(n * 100 + t)
    return torch.randint(1, vocab, (n, t), generator=g)


def test_gpt2_lm_head_tied_conv1d_weights(tmp_path):
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100,
                                  n_positions=32)
    text = import_model("hf:" + _config(tmp_path, cfg, "GPT2LMHeadModel"), [TOKENS])
    # HF's Conv1D keeps its [in, out] weights; the head is tied to the token embedding;
    # the causal mask HF builds from positions is the plain causal one
    assert "dense 192 layout=in_out as c_attn" in text
    assert "weight=transformer.wte.weight as lm_head" in text
    assert "GPT2Block() * 2 as h" in text and "causal=true" in text
    torch.manual_seed(0)
    ref = transformers.GPT2LMHeadModel(cfg)
    spec = _round_trip(text, ref, [_tokens(2, 11), _tokens(3, 32)], use_cache=False)
    m = build_module(spec)
    assert m.lm_head.weight is m.transformer.wte.weight


def test_bert_with_pooler(tmp_path):
    cfg = transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                  intermediate_size=128, vocab_size=100,
                                  max_position_embeddings=64)
    text = import_model("hf:" + _config(tmp_path, cfg, "BertModel"), [TOKENS])
    # the position ids and token types HF keeps as buffers are computed from T
    assert "arange(T)" in text and "block BertPooler(x)" in text
    torch.manual_seed(0)
    ref = transformers.BertModel(cfg)
    _round_trip(text, ref, [_tokens(2, 9), _tokens(1, 64)])


def test_llama_gqa_rope(tmp_path):
    cfg = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=128,
                                   vocab_size=100, max_position_embeddings=64,
                                   rope_theta=500000.0)
    text = import_model("hf:" + _config(tmp_path, cfg, "LlamaForCausalLM"), [TOKENS])
    assert "| rope theta=500000" in text
    assert "dense 32 bias=false as k_proj" in text  # 2 key/value heads of 16
    assert "LlamaDecoderLayer() * 2 as layers" in text
    torch.manual_seed(0)
    ref = transformers.LlamaForCausalLM(cfg)
    # HF computes the rotary angles in float32 whatever the model's dtype; nnspec in
    # float64: the outputs agree to float32's rounding of the angles
    _round_trip(text, ref, [_tokens(2, 7), _tokens(1, 20)], rel=1e-6, use_cache=False)


def test_whisper_encoder_module(tmp_path):
    cfg = transformers.WhisperConfig(encoder_layers=2, decoder_layers=1, d_model=64,
                                     encoder_attention_heads=4, decoder_attention_heads=4,
                                     encoder_ffn_dim=128, decoder_ffn_dim=128,
                                     num_mel_bins=16, max_source_positions=20,
                                     vocab_size=100, max_target_positions=16,
                                     pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                     decoder_start_token_id=1)
    # WhisperEncoder is not exported at transformers' top level: found by model_type
    text = import_model("hf:" + _config(tmp_path, cfg, "WhisperEncoder"),
                        ["input_features: [N, 16, 40]"])
    assert "model WhisperEncoder(input_features: [N, 16, 40])" in text
    assert "embedding 20 64 as embed_positions" in text
    torch.manual_seed(0)
    enc = transformers.WhisperModel(cfg).get_encoder()
    assert spec_of(enc, [parse_input("input_features: [N, 16, 40]")], None,
                   "WhisperEncoder", "hf:" + str(tmp_path / "WhisperEncoder.json")) == text
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(n, 16, 40, generator=g, dtype=torch.float64) for n in (2, 3)]
    _round_trip(text, enc, xs)


def _small(cls, **kw):
    return cls(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
               intermediate_size=128, vocab_size=100, max_position_embeddings=64, **kw)


@pytest.mark.parametrize("arch,make,words,rel", [
    # a sliding window past the traced sizes: evaluated at the config's window + 3
    ("MistralForCausalLM",
     lambda: _small(transformers.MistralConfig, num_key_value_heads=2, sliding_window=20),
     ["causal=true", "window=20"], 1e-6),
    # Qwen2RMSNorm: taken for rmsnorm only after computing as one on numbers
    ("Qwen2ForCausalLM", lambda: _small(transformers.Qwen2Config, num_key_value_heads=2),
     ["rmsnorm eps=1e-06 as input_layernorm"], 1e-6),
    # OPT's learned positions start at 2; its embedding subclass has its own forward
    ("OPTForCausalLM",
     lambda: transformers.OPTConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                    ffn_dim=128, vocab_size=100, max_position_embeddings=64,
                                    word_embed_proj_dim=64),
     ["(out + 2)", "embedding 66 64 as embed_positions"], 1e-12),
])
def test_more_decoders(tmp_path, arch, make, words, rel):
    cfg = make()
    text = import_model("hf:" + _config(tmp_path, cfg, arch), [TOKENS])
    for w in words:
        assert w in text
    torch.manual_seed(0)
    _round_trip(text, getattr(transformers, arch)(cfg), [_tokens(2, 23), _tokens(1, 9)],
                rel=rel, use_cache=False)


def test_vit_class_token_and_positions_in_their_scope(tmp_path):
    cfg = transformers.ViTConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                 intermediate_size=128, image_size=32, patch_size=8)
    text = import_model("hf:" + _config(tmp_path, cfg, "ViTModel"),
                        ["pixel_values: [N, 3, 32, 32]"])
    assert "param [1, 1, 64] as cls_token" in text  # inside the ViTEmbeddings block
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    _round_trip(text, transformers.ViTModel(cfg),
                [torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64)])


def test_published_count_on_meta(tmp_path):
    """GPT-2 small from its full config on the meta device: 124,439,808 parameters, the
    tied head counted once."""
    cfg = transformers.GPT2Config()
    text = import_model("hf:" + _config(tmp_path, cfg, "GPT2LMHeadModel"), [TOKENS])
    assert nnspec.loads(text).param_count() == 124_439_808


def test_errors_name_the_module_and_op(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"architectures": ["NoSuchModel"]}), encoding="utf-8")
    assert main(["import", f"hf:{bad}", "-o", str(tmp_path / "o.nn")]) == 2
    assert "NoSuchModel" in capsys.readouterr().err
    # a config transformers builds nothing from: one line, exit 1, nothing written
    cfg = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)
    d = cfg.to_dict()
    d.update(architectures=["GPT2LMHeadModel"], n_head=3)  # 32 is not a multiple of 3
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(d), encoding="utf-8")
    out = tmp_path / "odd.nn"
    code = main(["import", f"hf:{odd}", "-o", str(out), "--input", TOKENS])
    err = capsys.readouterr().err
    assert code in (1, 2) and "GPT2LMHeadModel" in err and "Traceback" not in err
    assert not out.exists()


def test_t5_encoder_relative_position_buckets(tmp_path):
    cfg = transformers.T5Config(num_layers=2, d_model=64, num_heads=4, d_kv=16, d_ff=128,
                                vocab_size=100, relative_attention_num_buckets=8,
                                relative_attention_max_distance=16)
    text = import_model("hf:" + _config(tmp_path, cfg, "T5EncoderModel"), [TOKENS])
    # the buckets are computed in the spec from T, as transformers computes them
    for piece in ("arange(T)", "abs(diff)", "log(", "minimum(", "where(", "mask="):
        assert piece in text
    torch.manual_seed(0)
    ref = transformers.T5EncoderModel(cfg)
    # `shared` is the embedding the encoder's embed_tokens shares, never called itself:
    # its key is the same tensor
    assert ref.shared.weight is ref.encoder.embed_tokens.weight
    # T5's RMSNorm takes the variance in float32 whatever the model's dtype
    _round_trip(text, ref, [_tokens(2, 11), _tokens(1, 30)], rel=1e-6, drop=("shared.weight",))
