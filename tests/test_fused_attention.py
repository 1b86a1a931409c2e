"""Attention runs on F.scaled_dot_product_attention's fused kernels, in build_module and in
the emitted source alike: GPT-2, LLaMA and BERT at tiny sizes, training and eval mode; a
query that sees no key keeps nnspec's result; GPT-2's module exports with the legacy ONNX
exporter (the dynamo one: tests/test_export.py)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.backends.emit.emitter import emit_source
from nnspec.backends.numpy import NumpyModel

torch = pytest.importorskip("torch")
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from nnspec.backends.torch import build_module  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FUSED = {"aten::_scaled_dot_product_flash_attention_for_cpu",
         "aten::_scaled_dot_product_efficient_attention"}
# p=0: on the CPU, SDPA's fused kernels take no dropout (with p > 0 it computes the same
# call with its math kernel)
TINY = {
    "gpt2": ("gpt2.nn", {"layers": 1, "d": 32, "heads": 4, "vocab": 50, "context": 16,
                         "p": 0.0}),
    "llama": ("llama2_7b.nn", {"layers": 1, "d": 32, "heads": 4, "kv_heads": 2, "ff": 64,
                               "vocab": 50}),
    "bert": ("bert_base.nn", {"layers": 1, "d": 32, "heads": 4, "ff": 64, "vocab": 50,
                              "positions": 16, "p": 0.0}),
}


def _load(name: str, **consts):
    file, base = TINY[name]
    return nnspec.load(str(ROOT / "specs" / file), consts={**base, **consts})


def _emitted(spec, tag: str):
    """The emitted class of the spec's model, with build_module's weights, and that one."""
    ref = build_module(spec, seed=0)
    ns: dict = {}
    exec(compile(emit_source(spec), f"<{tag}>", "exec"), ns)
    net = ns[spec.model().name]()
    net.load_state_dict(ref.state_dict())
    return net, ref


def _tokens(spec, seed=0) -> list:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 2 if inp.name == "token_type_ids" else 50, (2, 8), generator=g)
            for inp in spec.model().inputs]


def _ops(mod, xs, training: bool) -> set[str]:
    mod.train(training)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        if training:
            out = mod(*xs)
            (out[0] if isinstance(out, tuple) else out).sum().backward()
        else:
            with torch.no_grad():
                mod(*xs)
    return {e.name for e in prof.events()}


@pytest.mark.parametrize("name", sorted(TINY))
def test_the_fused_kernel_runs_in_both_modes_and_both_backends(name):
    spec = _load(name)
    xs = _tokens(spec)
    for mod in _emitted(spec, name):
        for training in (True, False):
            ops = _ops(mod, xs, training)
            assert ops & FUSED, (name, type(mod).__name__, training)
            # nothing computes softmax outside the kernel
            assert not {"aten::softmax", "aten::_softmax", "aten::_safe_softmax"} & ops
            if training:
                assert any(op.startswith("aten::_scaled_dot_product") and
                           op.endswith("_backward") for op in ops)


def test_the_emitted_call_is_sdpas_own():
    gpt2 = emit_source(_load("gpt2", p=0.1))
    assert "dropout_p=self.p if self.training else 0.0" in gpt2
    assert "self.attention = ScaledDotProductAttention(p)" in gpt2
    assert "y = self.attention(q, k, v, is_causal=True)" in gpt2
    assert "isneginf" not in gpt2 and "softmax" not in gpt2
    bert = emit_source(_load("bert", p=0.1))
    assert "self.attention(q, k, v, attn_mask=m.bool())" in bert
    llama = emit_source(_load("llama"))
    assert "F.scaled_dot_product_attention(" in llama and "enable_gqa=" in llama
    assert "dropout_p=self.dropout if self.training else 0.0" in llama
    # sdpa without dropout is the plain call
    src = emit_source(nnspec.loads(
        "model M(q: [N, 2, T, 4], k: [N, 2, T, 4], v: [N, 2, T, 4]) {\n"
        "    sdpa(q, k, v, causal)\n}\n", "s.nn"))
    assert "F.scaled_dot_product_attention(q, k, v, is_causal=True)" in src


def test_dropout_applies_in_training_only_with_the_same_draws():
    spec = _load("gpt2", p=0.5)
    net, ref = _emitted(spec, "gpt2")
    xs = _tokens(spec)
    out = {}
    for mod in (net, ref):
        for training in (True, False):
            mod.train(training)
            with torch.no_grad():
                torch.manual_seed(3)
                out[id(mod), training] = mod(*xs)
    torch.testing.assert_close(out[id(net), True], out[id(ref), True], rtol=0, atol=0)
    torch.testing.assert_close(out[id(net), False], out[id(ref), False], rtol=0, atol=0)
    assert not torch.allclose(out[id(ref), True], out[id(ref), False])


NO_KEY = """
model A(x: [N, T, 8], pad: [N, T] int) {
    attention 2 qkv=separate mask=pad as attn
}
model B(x: [N, T, 8], m: [N, 1, T, T] int) {
    q = x | reshape [N, T, 2, 4] | transpose 1 2
    sdpa(q, q, q, mask=m, dropout=0.2) | transpose 1 2 | reshape [N, T, 8] as y
}
model C(x: [N, 3, 8], kv: [N, 2, 8]) {
    attention 2 kv=kv causal as attn
}
"""


@pytest.mark.parametrize("name", ["A", "B", "C"])
def test_a_query_that_sees_no_key_keeps_nnspecs_result(name):
    """A: every key of sample 0 padded; B: query 1 of sample 1 masked out; C: causal with
    fewer keys than queries, so that query 0 sees none. The output is the NumPy backend's
    (the output projection's bias, or zeros) and the gradients are finite."""
    spec = nnspec.loads(NO_KEY, "nokey.nn")
    ref = build_module(spec, name, seed=0, dtype=torch.float64)
    ns: dict = {}
    exec(compile(emit_source(spec, name), "<nokey>", "exec"), ns)
    net = ns[name]().double()
    net.load_state_dict(ref.state_dict())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8))
    other = {"A": np.array([[1, 1, 1], [0, 0, 1]]),
             "B": np.ones((2, 1, 3, 3), np.int64),
             "C": rng.standard_normal((2, 2, 8))}[name]
    if name == "B":
        other[1, 0, 1] = 0
    numpy = NumpyModel(spec, name, params={k: v.numpy() for k, v in ref.state_dict().items()},
                       dtype=np.float64)
    want = numpy(x, other)
    for mod in (ref, net):
        for training in (False, True):
            mod.train(training and name != "B")
            xt = torch.tensor(x, requires_grad=True)
            y = mod(xt, torch.from_numpy(other))
            np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-12, atol=1e-12)
            y.sum().backward()
            assert torch.isfinite(xt.grad).all()


def test_gpt2_exports_with_the_legacy_onnx_exporter():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    spec = _load("gpt2", p=0.1)
    mod = build_module(spec, seed=0).eval()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(mod, (_tokens(spec)[0],), f, dynamo=False, input_names=["tokens"],
                          dynamic_axes={"tokens": {0: "N", 1: "T"}})
    tokens = torch.randint(0, 50, (3, 5), generator=torch.Generator().manual_seed(1))
    (got,) = ort.InferenceSession(f.getvalue()).run(None, {"tokens": tokens.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, mod(tokens).numpy(), rtol=1e-4, atol=1e-5)
