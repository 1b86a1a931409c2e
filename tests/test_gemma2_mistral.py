"""specs/mistral.nn and specs/gemma2.nn against Hugging Face's own MistralForCausalLM and
Gemma2ForCausalLM, built offline from a config of the spec's sizes (eager attention),
loaded with nnspec's state_dict by key (strict), in float64, in both backends.

Hugging Face keeps float32 islands in a float64 model: the softmax of the attention
(``softmax(..., dtype=float32)``), the rotary frequencies (``inv_freq`` and its product with
the positions in float32) and the RMSNorms (``x.float()``). The outputs are compared
at a tolerance that those bound (logits of order 1: 2e-5), and again with those islands
computed in float64 (the same formulas, patched here), at 1e-10."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nnspec

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"


def _mistral_config():
    from transformers import MistralConfig

    return MistralConfig(vocab_size=1000, hidden_size=64, intermediate_size=160,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                         sliding_window=4, rms_norm_eps=1e-5, rope_theta=10000.0,
                         max_position_embeddings=64, tie_word_embeddings=False,
                         attn_implementation="eager")


def _gemma2_config():
    from transformers import Gemma2Config

    return Gemma2Config(vocab_size=1000, hidden_size=64, intermediate_size=128,
                        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                        head_dim=24, query_pre_attn_scalar=24, sliding_window=4,
                        attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                        rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=8192,
                        hidden_activation="gelu_pytorch_tanh", attn_implementation="eager")


def _hf(name: str):
    if name == "mistral":
        from transformers import MistralForCausalLM

        model = MistralForCausalLM(_mistral_config())
    else:
        from transformers import Gemma2ForCausalLM

        model = Gemma2ForCausalLM(_gemma2_config())
    return model.double().eval()


def _float64_islands(monkeypatch, hf) -> None:
    """HF's float32 islands computed in float64: the attention softmax, the rotary
    frequencies and Gemma 2's RMSNorm (the same formulas)."""
    softmax = torch.nn.functional.softmax

    def softmax64(x, dim=None, dtype=None, **kw):
        return softmax(x, dim=dim, **kw) if x.dtype == torch.float64 else \
            softmax(x, dim=dim, dtype=dtype, **kw)

    monkeypatch.setattr(torch.nn.functional, "softmax", softmax64)
    rot = hf.model.rotary_emb
    cfg = hf.config
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    theta = cfg.rope_parameters["rope_theta"]
    inv = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)

    def rotary(x, position_ids):
        freqs = position_ids[:, :, None].double() * inv[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    monkeypatch.setattr(rot, "forward", rotary)
    if cfg.model_type == "gemma2":
        from transformers.models.gemma2 import modeling_gemma2

        def norm(self, x):
            return self._norm(x) * (1.0 + self.weight)

        monkeypatch.setattr(modeling_gemma2.Gemma2RMSNorm, "forward", norm)
    else:
        from transformers.models.mistral import modeling_mistral

        def norm(self, x):
            rms = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
            return self.weight * (x * rms)

        monkeypatch.setattr(modeling_mistral.MistralRMSNorm, "forward", norm)


def _setup(name: str, seed: int = 0):
    spec = nnspec.load(str(SPECS / f"{name}.nn"))
    net = build_module(spec, seed=seed, dtype=torch.float64).eval()
    with torch.no_grad():  # Gemma's norm weights start at zero: draw them away from it
        for k, t in net.named_parameters():
            if k.endswith("layernorm.weight") or k.endswith("norm.weight"):
                t.copy_(torch.linspace(-0.5, 0.5, t.numel(), dtype=t.dtype))
    hf = _hf(name)
    state = net.state_dict()
    assert set(state) == set(hf.state_dict()), set(state) ^ set(hf.state_dict())
    hf.load_state_dict(state, strict=True)
    return spec, net, hf


def _tokens(n: int, t: int, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 1000, size=(n, t)))


@pytest.mark.parametrize("name", ["mistral", "gemma2"])
@pytest.mark.parametrize("exact", [False, True], ids=["as_is", "float64_islands"])
def test_equals_hugging_face(name, exact, monkeypatch):
    spec, net, hf = _setup(name)
    if exact:
        _float64_islands(monkeypatch, hf)
    x = _tokens(2, 11)  # longer than the window of 4: the window matters
    with torch.no_grad():
        want = hf(input_ids=x).logits
        got = net(x)
    ref = NumpyModel(spec, dtype=np.float64,
                     params={k: v.numpy() for k, v in net.state_dict().items()})(x.numpy())
    tol = 1e-10 if exact else 2e-5
    assert want.abs().max() > 0.1
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(ref, want.numpy(), rtol=tol, atol=tol)


def test_the_window_and_the_softcaps_are_what_makes_them_equal(monkeypatch):
    """Without its window (or Gemma's final softcap) HF's model gives other logits: the
    comparison above sees them."""
    spec, net, hf = _setup("gemma2")
    _float64_islands(monkeypatch, hf)
    x = _tokens(1, 11)
    with torch.no_grad():
        want = hf(input_ids=x).logits
        hf.config.final_logit_softcapping = None
        uncapped = hf(input_ids=x).logits
        got = net(x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert (uncapped - want).abs().max() > 1e-6
    _, mnet, mhf = _setup("mistral")
    with torch.no_grad():
        for layer in mhf.model.layers:
            layer.self_attn.sliding_window = None
        mhf.config.sliding_window = None
        assert (mhf(input_ids=x).logits - mnet(x)).abs().max() > 1e-6


def test_full_size_counts():
    mistral = nnspec.load(str(SPECS / "mistral.nn"), consts=dict(
        vocab=32000, d=4096, layers=32, heads=32, kv_heads=8, ff=14336, window=4096))
    assert mistral.param_count() == 7_241_732_096  # Mistral-7B-v0.1
    assert nnspec.load(str(SPECS / "gemma2.nn")).param_count() == sum(
        p.numel() for p in _hf("gemma2").parameters())
