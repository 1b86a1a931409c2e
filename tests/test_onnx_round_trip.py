"""Bundled specs out through ``export_onnx`` (torch's dynamo exporter) and back through
``nnspec import``: the imported spec takes the file's initializers strictly and gives
onnxruntime's outputs in NumpyModel and build_module, at two sizes of each symbolic dim;
the layer kinds and parameter counts are the original's."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module  # noqa: E402
from nnspec.backends.torch.onnx import export_onnx  # noqa: E402
from nnspec.frontends.onnx import import_onnx, load_onnx_weights  # noqa: E402
from nnspec.tools.fmt import format_text  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"
# the spec's text shrunk (each replaced text must be in it) and its annotations dropped
SHRINK = {"alexnet.nn": [("[N, 3, 224, 224]", "[N, 3, 63, 63]"), ("4096", "64")],
          "gru_sentiment.nn": [("embedding 20000 128", "embedding 50 8"), ("gru 256", "gru 12")],
          "seq2seq_gru.nn": [("const vocab = 8000", "const vocab = 30"),
                             ("const hidden = 256", "const hidden = 12"), ("256]", "12]")]}
ANNOTATION = re.compile(r"\s+:\s*\[[^\]\n]*\]\s*$", re.M)


def _source(name: str):
    text = (SPECS / name).read_text()
    for old, new in SHRINK.get(name, []):
        assert old in text, (name, old)
        text = text.replace(old, new)
    if name in SHRINK:
        text = "\n".join(ANNOTATION.sub("", ln) if ln.startswith(" ") else ln
                         for ln in text.splitlines())
    return nnspec.loads(text, str(SPECS / name))


def _round_trip(tmp_path, name: str, model: str):
    source = _source(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = export_onnx(source, model, seed=0)
    path = tmp_path / f"{model}.onnx"
    path.write_bytes(out.to_bytes())
    text = import_onnx(str(path))
    assert format_text(text) == text
    spec = nnspec.loads(text)
    spec.raise_for_errors()
    return source, path, text, spec, load_onnx_weights(str(path), spec)


def _same(path: Path, spec, params: dict, sizes: dict, seed: int) -> None:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    feed = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else sizes[d] for d in i.shape]
        feed[i.name] = rng.integers(0, 7, shape).astype(np.int64) if "int" in i.type \
            else rng.standard_normal(shape).astype(np.float32)
    want = sess.run(None, feed)[0]
    scale = max(1.0, float(np.abs(want).max()))
    got = NumpyModel(spec, params=params)(*feed.values())
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * scale
    m = build_module(spec).eval()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=True)
    with torch.no_grad():
        out = m(*(torch.from_numpy(x) for x in feed.values())).numpy()
    assert np.abs(out - want).max() <= 1e-4 * scale


@pytest.mark.parametrize("name, model, stages, sizes", [
    # the adaptive pooling written as GatherND and a mean
    ("alexnet.nn", "AlexNet", ["adaptive_avgpool 6 |"], [{"N": 2}, {"N": 3}]),
    # LSTM: gates reordered, the zero state of the batch's size dropped
    ("keras_lstm.nn", "KerasLSTM", ["lstm 64 as lstm"], [{"N": 2}, {"N": 5}]),
    # two bidirectional GRU nodes: one layer of two layers
    ("gru_sentiment.nn", "GRUSentiment", ["gru 12 bidirectional layers=2 as gru"],
     [{"N": 2, "T": 3}, {"N": 4, "T": 6}]),
    # an initial state given as an input
    ("seq2seq_gru.nn", "Decoder", ["gru 12 h0=h0 as decoder.gru"],
     [{"N": 2}, {"N": 5}]),
])
def test_exported_spec_imports_back(tmp_path, name, model, stages, sizes):
    source, path, text, spec, params = _round_trip(tmp_path, name, model)
    for st in stages:
        assert st in text, text
    assert "permute" not in text
    assert spec.param_count() == source.param_count(model)
    for k, dims in enumerate(sizes):
        _same(path, spec, params, dims, seed=k)



# ---- attention, activations written out, learned positions, ties and blocks --------------

def _export_import(tmp_path, name: str, model: str, consts: dict | None = None,
                   replace=()):
    text = (SPECS / name).read_text()
    for old, new in replace:
        assert old in text, (name, old)
        text = text.replace(old, new)
    text = "\n".join(ANNOTATION.sub("", ln) if ln.startswith(" ") else ln
                     for ln in text.splitlines()) if replace else text
    source = nnspec.loads(text, str(SPECS / name), consts=consts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = export_onnx(source, model, seed=0)
    path = tmp_path / f"{model}.onnx"
    path.write_bytes(out.to_bytes())
    text = import_onnx(str(path))
    assert format_text(text) == text
    spec = nnspec.loads(text)
    spec.raise_for_errors()
    return source, path, text, spec, load_onnx_weights(str(path), spec)


def test_gpt2_attention_gelu_positions_tie_and_blocks(tmp_path):
    source, path, text, spec, params = _export_import(
        tmp_path, "gpt2.nn", "GPT2Small",
        {"vocab": 50, "context": 16, "d": 16, "heads": 2, "layers": 2})
    # the exporter's written-out SDPA (Trilu causal mask), tanh GELU and position slice
    assert "sdpa(" in text and ", causal)" in text
    assert re.search(r"\| gelu approximate=tanh( \||$)", text, re.M)
    assert "| positional learned max_len=16 as transformer.wpe" in text
    # the head's transposed copy of the table is the tie the spec has
    assert "| embedding 50 16 as transformer.wte" in text
    assert "dense 50 bias=false weight=transformer.wte.weight as lm_head" in text
    # transformer.h.0 and .1: one block, applied twice
    assert "block HBlock(x) {" in text and "HBlock() * 2 as transformer.h" in text
    assert "as attn.c_attn" in text and "as transformer.h.0" not in text
    assert spec.param_count() == source.param_count("GPT2Small")
    for k, dims in enumerate([{"N": 2, "T": 5}, {"N": 1, "T": 16}]):
        _same(path, spec, params, dims, seed=k)


def test_multihead_attention_module_and_erf_gelu(tmp_path):
    # nn.MultiheadAttention written out: packed in_proj, heads by reshapes, the causal mask
    source, path, text, spec, params = _export_import(
        tmp_path, "causal_lm.nn", "CausalLM",
        {"d": 16, "heads": 2, "layers": 1, "context": 16})
    assert ", causal)" in text and re.search(r"\| gelu( \||$)", text, re.M)
    assert "as h.attn.dense" in text and "as h.attn.out_proj" in text
    for k, dims in enumerate([{"N": 2, "T": 3}, {"N": 3, "T": 7}]):
        _same(path, spec, params, dims, seed=k)


def test_resnet18_blocks_from_module_paths(tmp_path):
    source, path, text, spec, params = _export_import(
        tmp_path, "resnet18.nn", "ResNet18", replace=[
            ("[N, 3, 224, 224]", "[N, 3, 32, 32]"), ("conv 64 k=7", "conv 8 k=7"),
            ("Basic(64)", "Basic(8)"), ("Layer(128)", "Layer(16)"),
            ("Layer(256)", "Layer(32)"), ("Layer(512)", "Layer(64)")])
    assert "block Layer1Block(x) {" in text
    assert "| Layer1Block() * 2 as layer1" in text
    assert "conv 8 k=3 p=1 bias=false as conv1 | relu" in text  # names relative in the block
    # batchnorm folded into the convolutions by the exporter: its statistics are gone
    assert spec.param_count() < source.param_count("ResNet18")
    _same(path, spec, params, {"N": 2}, seed=0)


def _decoder(tmp_path, name, model, consts, stages, sizes):
    source, path, text, spec, params = _export_import(tmp_path, name, model, consts)
    for st in stages:
        assert st in text, text
    assert "Pow" not in text and "permute (0, 1, 3, 2)" not in text
    assert spec.param_count() == source.param_count(model)
    for k, dims in enumerate(sizes):
        _same(path, spec, params, dims, seed=k)


@pytest.mark.parametrize("name, model, consts, stages", [
    # RMSNorm, rope from its Range tables, grouped-query attention (the expand/reshape
    # repeat of the key and value heads), the causal mask from Trilu
    ("llama2_7b.nn", "Llama2", {"vocab": 40, "d": 16, "layers": 2, "heads": 4,
                                "kv_heads": 2, "ff": 24},
     ["| rmsnorm eps=1.0e-05 as ", "| rope", "sdpa(", ", causal)"]),
    # the sliding window's comparisons of positions
    ("mistral.nn", "Mistral", {"vocab": 40, "d": 16, "layers": 2, "heads": 4,
                               "kv_heads": 2, "ff": 24},
     ["| rope", ", causal, window=4)"]),
])
def test_decoder_rmsnorm_rope_gqa(tmp_path, name, model, consts, stages):
    _decoder(tmp_path, name, model, consts, stages, [{"N": 2, "T": 5}, {"N": 1, "T": 3}])


def test_gemma2_softcap_windows_and_offset_norms(tmp_path):
    # soft-capped scores, a window of 4 and one of the context on the other layers, the
    # norms' (1 + weight) folded into their weights
    _decoder(tmp_path, "gemma2.nn", "Gemma2",
             {"vocab": 40, "d": 16, "heads": 2, "kv_heads": 1, "head_dim": 8, "ff": 24,
              "query_scalar": 8},
             ["causal, softcap=50.0, window=4)", "causal, softcap=50.0, window=8192)",
              "| rmsnorm eps=1.0e-06 as "], [{"N": 2, "T": 6}])


def test_bert_int_attention_mask(tmp_path):
    # the int mask cast to bool, its Where of 0 and the float minimum added to the scores
    # (a row of padding only: equal weights, not zero ones), the NaN check after softmax
    source, path, text, spec, params = _export_import(
        tmp_path, "bert_base.nn", "BertBase",
        {"layers": 2, "d": 16, "heads": 2, "ff": 24, "vocab": 40, "positions": 16})
    # the additive mask Where(m, 0, float32 min): the float mask of the int one, made once
    assert text.count("* (-3.4028235e+38))") == 1, text
    assert len(re.findall(r"sdpa\(\w+, \w+, \w+, mask=\w+\)", text)) == 2, text
    assert spec.param_count() == source.param_count("BertBase")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(0, 40, (3, 5)), "token_type_ids":
            rng.integers(0, 2, (3, 5)), "attention_mask": rng.integers(0, 2, (3, 5))}
    feed["attention_mask"][0] = 0  # a sequence of padding only: its weights are zero
    want = sess.run(None, feed)
    m = build_module(spec).eval()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=True)
    with torch.no_grad():
        got = m(*(torch.from_numpy(feed[i.name]) for i in sess.get_inputs()))
    for g, w in zip(got, want):
        assert np.abs(g.numpy() - w).max() <= 1e-4 * max(1.0, float(np.abs(w).max()))


def _exported(tmp_path, name: str, model: str, consts=None, replace=()):
    text = (SPECS / name).read_text()
    for old, new in replace:
        assert old in text, (name, old)
        text = text.replace(old, new)
    text = "\n".join(ANNOTATION.sub("", ln) if ln.startswith(" ") else ln
                     for ln in text.splitlines()) if replace else text
    source = nnspec.loads(text, str(SPECS / name), consts=consts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = export_onnx(source, model, seed=0)
    return source, out.proto


def _imported(tmp_path, proto, stem: str):
    path = tmp_path / f"{stem}.onnx"
    path.write_bytes(proto.SerializeToString())
    text = import_onnx(str(path))
    assert format_text(text) == text
    spec = nnspec.loads(text)
    spec.raise_for_errors()
    return path, text, spec, load_onnx_weights(str(path), spec)


def _tampered(proto, name: str, scale: float):
    """The model with one initializer scaled (a table or weight that no longer fits)."""
    from onnx import numpy_helper

    bad = onnx.ModelProto()
    bad.CopyFrom(proto)
    for t in bad.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * scale, name))
            return bad
    raise AssertionError(name)


def test_transformer_sinusoidal_positions_cross_attention_and_shared_table(tmp_path):
    source, proto = _exported(tmp_path, "transformer_base.nn", "TransformerBase",
                              {"d": 16, "heads": 2, "ff": 24, "vocab": 40},
                              [("p, 6)", "p, 1)"), ("32000]", "40]")])
    path, text, spec, params = _imported(tmp_path, proto, "tb")
    # the sinusoidal table from Range, times sqrt(E) before it: nnspec's positional scale
    assert text.count("| positional scale") == 2 and "Range" not in text
    # one table for both token sequences, tied to the generator
    assert "src | embedding 40 16 as embed | positional scale" in text
    assert "tgt | embed | positional scale" in text
    assert "dense 40 bias=false weight=embed.weight as generator" in text
    # the cross-attention's packed in_proj cut by Split: a query and a key/value dense
    assert "dense 16 as decoder.layers.multihead_attn.dense" in text
    assert len(re.findall(r"sdpa\(", text)) == 3 and text.count(", causal)") == 1
    # the exporter drops the zero biases of the three out_proj layers: 3 x 16
    assert spec.param_count() == source.param_count("TransformerBase") - 48
    for k, dims in enumerate([{"N": 2, "S": 3, "T": 5}, {"N": 1, "S": 6, "T": 2}]):
        _same(path, spec, params, dims, seed=k)
    # a table of another base is not nnspec's positional: the Range stays, refused
    from nnspec.frontends.onnx import OnnxImportError

    pows = [t.name for t in proto.graph.initializer if list(t.dims) == [16] and
            t.data_type == onnx.TensorProto.DOUBLE]
    assert pows
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(_tampered(proto, pows[0], 1.5).SerializeToString())
    with pytest.raises(OnnxImportError, match=r"^node '[^']+' \(Range\): "):
        import_onnx(str(bad))


def test_keras_simplernn_unrolled_steps_as_rnn(tmp_path):
    # torch writes nn.RNN over a fixed T=10 step by step: MatMuls over a zero state
    source, proto = _exported(tmp_path, "keras_simplernn.nn", "KerasSimpleRNN")
    path, text, spec, params = _imported(tmp_path, proto, "rnn")
    assert "x | rnn 64 nonlinearity=relu as simple_rnn | last | dense 10 as dense" in text
    assert "MatMul" not in text and "matmul" not in text
    assert spec.param_count() == source.param_count("KerasSimpleRNN")
    for k, dims in enumerate([{"N": 2}, {"N": 5}]):
        _same(path, spec, params, dims, seed=k)
    # one step's recurrent matrix unlike the others: not an rnn, one located error
    from nnspec.frontends.onnx import OnnxImportError

    steps = [t.name for t in proto.graph.initializer if list(t.dims) == [64, 64]]
    assert len(steps) >= 2
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(_tampered(proto, steps[-1], 1.01).SerializeToString())
    with pytest.raises(OnnxImportError, match=r"^node '[^']+' \(MatMul\): "):
        import_onnx(str(bad))


@pytest.mark.parametrize("name, model, consts, message", [
    # a sample drawn at inference
    ("dbn.nn", "SampledDBN", None, "(RandomUniformLike): no nnspec kind for this op "
                                   "(in the module 'rbm1', class RBM)"),
    # the capsule layer's routing, unrolled: the prediction vectors W @ u come first
    ("capsnet.nn", "CapsNet", None, "(MatMul): a constant of shape [1152, 160, 8] times a "
                                    "tensor, the constant on the left (W @ x): nnspec's "
                                    "dense multiplies by a constant matrix on the right "
                                    "(x @ W) (in the module 'digitcaps', class "
                                    "CapsuleLayer)"),
])
def test_what_does_not_map_is_one_located_error(tmp_path, name, model, consts, message):
    from nnspec.frontends.onnx import OnnxImportError

    source = nnspec.loads((SPECS / name).read_text(), str(SPECS / name), consts=consts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = export_onnx(source, model, seed=0)
    path = tmp_path / f"{model}.onnx"
    path.write_bytes(out.to_bytes())
    with pytest.raises(OnnxImportError, match=r"^node '[^']+' " + re.escape(message) + "$"):
        import_onnx(str(path))
