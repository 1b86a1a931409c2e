"""``nnspec export``: every bundled spec out as ONNX, checked by onnx.checker and run by
onnxruntime at the traced sizes and at other sizes of each dynamic symbol, against
build_module's output; and the command's errors (exit 1 or 2, nothing written)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nnspec
from nnspec.backends.torch import build_module
from nnspec.tools import cli

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

# the large ones at small sizes through their own constants (the same layers and blocks)
CONSTS = {
    "gpt2.nn": {"vocab": 50, "context": 16, "d": 16, "heads": 2, "layers": 1},
    "bert_base.nn": {"vocab": 40, "positions": 16, "d": 16, "heads": 2, "layers": 1,
                     "ff": 32},
    "llama2_7b.nn": {"vocab": 40, "d": 16, "layers": 1, "heads": 4, "kv_heads": 2, "ff": 24},
    "causal_lm.nn": {"d": 16, "heads": 2, "layers": 1, "context": 16},
    "vit_b16.nn": {"image_size": 32, "patch_size": 8, "num_layers": 1, "num_heads": 2,
                   "hidden_dim": 16, "mlp_dim": 32, "num_classes": 10},
}
# specs whose sizes are written out: the text shrunk (each replaced text must be in the
# spec, so that a change to it is noticed here), the intermediate annotations of the image
# networks dropped (checked at full size by test_specs)
SHRINK = {
    "transformer_base.nn": [("const d = 512", "const d = 16"), ("const ff = 2048",
                            "const ff = 32"), ("const vocab = 32000", "const vocab = 40"),
                            ("[N, S, 512]", "[N, S, 16]"), ("[N, T, 512]", "[N, T, 16]"),
                            ("[N, T, 32000]", "[N, T, 40]"),
                            ("heads, ff, p, 6)", "heads, ff, p, 1)")],
    # the smallest input of the paper's valid convolutions (188 -> 4), not 572 -> 388, and
    # an eighth of the channels
    "unet.nn": [("[N, 1, 572, 572]) -> [N, 2, 388, 388]", "[N, 1, 188, 188]) -> [N, 2, 4, 4]"),
                ("DoubleConv(64)", "DoubleConv(8)"), ("Down(128)", "Down(16)"),
                ("Down(256)", "Down(32)"), ("Down(512)", "Down(64)"), ("Down(1024)", "Down(128)"),
                ("x4, 512)", "x4, 64)"), ("x3, 256)", "x3, 32)"), ("x2, 128)", "x2, 16)"),
                ("x1, 64)", "x1, 8)")],
    "vgg16.nn": [("[N, 3, 224, 224]", "[N, 3, 32, 32]"), ("4096", "64"), ("Stage(64,", "Stage(8,"),
                 ("Stage(128,", "Stage(16,"), ("Stage(256,", "Stage(32,"),
                 ("Stage(512,", "Stage(64,")],
    "alexnet.nn": [("[N, 3, 224, 224]", "[N, 3, 63, 63]"), ("4096", "64")],
    "resnet18.nn": [("[N, 3, 224, 224]", "[N, 3, 32, 32]"), ("conv 64 k=7", "conv 8 k=7"),
                    ("Basic(64)", "Basic(8)"), ("Layer(128)", "Layer(16)"),
                    ("Layer(256)", "Layer(32)"), ("Layer(512)", "Layer(64)")],
}
ANNOTATION = re.compile(r"\s+:\s*\[[^\]\n]*\]\s*$", re.M)
DROP_ANNOTATIONS = {"unet.nn", "vgg16.nn", "alexnet.nn", "resnet18.nn"}
# the models of the specs that have several: those with layers or inputs the others lack
MODELS = {"autoencoder_mlp.nn": ["Autoencoder"], "dbn.nn": ["DBN", "SampledDBN"],
          "dcgan.nn": ["Generator"], "seq2seq_gru.nn": ["Decoder"],
          "transformer_base.nn": ["TransformerBase"], "vae.nn": ["VAE"]}
# 10^12 weights: refused (one ONNX file holds 2 GiB), see test_a_model_over_2_gib
TOO_LARGE = {"dense_1e12.nn"}
RANDOM_OPS = {"Bernoulli", "RandomUniform", "RandomUniformLike", "RandomNormal",
              "RandomNormalLike", "Multinomial"}


def _spec_text(path: Path) -> str:
    text = path.read_text()
    for old, new in SHRINK.get(path.name, []):
        assert old in text, (path.name, old)
        text = text.replace(old, new)
    if path.name in DROP_ANNOTATIONS:
        text = "\n".join(ANNOTATION.sub("", line) if line.startswith(" ") else line
                         for line in text.splitlines())
    return text


def _load(path: Path):
    return nnspec.loads(_spec_text(path), str(path), consts=CONSTS.get(path.name))


# the models every run exports, one per construct the exporter treats apart: pooling and
# convolutions, a layer named like a GraphModule attribute (conv_autoencoder's `code`),
# attention with a tied head and dynamic N and T, a symbol torch specialises (the seq2seq
# Decoder), tuple outputs, symbolic crops, random ops, learned tensors; every bundled model
# with NNSPEC_SLOW_TESTS=1 (a minute more of CPU)
ALWAYS = {"lenet5.nn", "conv_autoencoder.nn", "gpt2.nn", "seq2seq_gru.nn", "vae.nn",
          "unet.nn", "dbn.nn", "vit_b16.nn"}
SLOW = bool(os.environ.get("NNSPEC_SLOW_TESTS"))


def _cases():
    for path in sorted(SPECS.glob("*.nn")):
        if path.name in TOO_LARGE:
            continue
        marks = () if SLOW or path.name in ALWAYS else (pytest.mark.skip(
            reason="NNSPEC_SLOW_TESTS=1 exports every bundled model"),)
        for model in MODELS.get(path.name) or _load(path).model_names:
            yield pytest.param(path, model, id=f"{path.stem}-{model}", marks=marks)


def _export(tmp_path, path: Path, model: str, dims: dict | None = None,
            extra: tuple = ()) -> tuple[int, Path]:
    """cli.main(export ...) on the (shrunk) spec; returns (exit code, output path)."""
    src = path
    if path.name in SHRINK or path.name in DROP_ANNOTATIONS:
        src = tmp_path / path.name
        src.write_text(_spec_text(path))
    out = tmp_path / f"{path.stem}-{model}.onnx"
    argv = ["export", str(src), "--model", model, "-o", str(out), *extra]
    for k, v in CONSTS.get(path.name, {}).items():
        argv += ["--const", f"{k}={v}"]
    for k, v in (dims or {}).items():
        argv += ["--dim", f"{k}={v}"]
    return cli.main(argv), out


def _inputs(m, env: dict, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    xs = []
    for inp in m.inputs:
        shape = [d.evaluate(env) for d in inp.dims()]
        if inp.dtype == "int":
            xs.append(rng.integers(0, 2, size=shape).astype(np.int64))
        else:
            xs.append(rng.standard_normal(size=shape).astype(np.float32))
    return xs


def _dims(value_info) -> list:
    return [d.dim_param if d.HasField("dim_param") else d.dim_value
            for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("path, model", list(_cases()))
def test_export_runs_in_onnxruntime_as_build_module(path, model, tmp_path, capsys):
    spec = _load(path)
    m = spec.model(model)
    code, out = _export(tmp_path, path, model)
    err = capsys.readouterr().err
    assert code == 0 and out.is_file(), err
    assert err.startswith(f"nnspec: wrote {out} (model {model}, ONNX opset 18, ")
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == [i.name for i in m.inputs]
    assert proto.opset_import[0].version == 18
    # the dims: each bare symbol a dynamic axis of its name (or baked where torch fixed it),
    # every other dim baked
    traced: dict[str, int] = {}
    dynamic = set()
    for inp, vi in zip(m.inputs, proto.graph.input):
        got = _dims(vi)
        assert len(got) == len(inp.dims())
        for d, g in zip(inp.dims(), got):
            if d.is_const:
                assert g == d.value
            elif str(d) in d.symbols():
                assert g == str(d) or isinstance(g, int), (d, g)
                if isinstance(g, int):  # fixed by torch: said so
                    traced[str(d)] = g
                    assert f"note: {d} is fixed at {g}: torch specialised" in err
                else:
                    dynamic.add(str(d))
    assert "N" in dynamic  # the batch is dynamic in every bundled model
    typ = spec.output_type(model)
    wants = list(getattr(typ, "items", (typ,)))
    assert len(proto.graph.output) == len(wants)
    for t, vo in zip(wants, proto.graph.output):
        got = _dims(vo)
        assert len(got) == t.rank
        for d, g in zip(t.shape, got):
            assert g == d.value if d.is_const else isinstance(g, (str, int)), (d, g)
    # the weights are build_module's (seed 0), the inputs' sizes the traced ones and others
    net = build_module(spec, model, seed=0).eval()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(out.read_bytes(), options, providers=["CPUExecutionProvider"])
    samples = bool({n.op_type for n in proto.graph.node} & RANDOM_OPS)
    from nnspec.backends.torch.onnx import example_dims

    env = example_dims(spec, model, traced)
    other = {s: (v - 1 if v > 1 else v + 1) if s in dynamic else v for s, v in env.items()}
    for k, sizes in enumerate((env, other)):
        xs = _inputs(m, sizes, seed=k)
        got = sess.run(None, {i.name: x for i, x in zip(m.inputs, xs)})
        with torch.no_grad():
            want = net(*[torch.from_numpy(x) for x in xs])
        want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape, (sizes, g.shape, w.shape)
            if samples:  # the model samples at inference: the same shapes, other draws
                assert np.isfinite(g).all()
            else:
                np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=str(sizes))
    assert samples == any(n.params.get("sample") == "always" for n in m.nodes)
    assert samples == ("samples at inference" in err)


# ---- the command's options and errors ---------------------------------------------------


def test_quiet_and_another_opset(tmp_path, capsys):
    out = tmp_path / "mlp.onnx"
    assert cli.main(["export", str(SPECS / "keras_mlp.nn"), "-o", str(out), "-q",
                     "--opset", "20"]) == 0
    assert capsys.readouterr() == ("", "")
    proto = onnx.load(str(out))
    assert [(o.domain, o.version) for o in proto.opset_import if o.domain == ""] == [("", 20)]
    x = np.random.default_rng(0).standard_normal((5, 100)).astype(np.float32)
    got, = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    net = build_module(nnspec.load(str(SPECS / "keras_mlp.nn")), seed=0).eval()
    with torch.no_grad():
        np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)


def _refused(argv, capsys, code: int, message: str, out: Path, before: bytes | None = None):
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err
    if before is None:
        assert not out.exists()
    else:
        assert out.read_bytes() == before
    if out.parent.is_dir():  # no temp files left
        assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    return err


def test_several_models_need_a_model_name(tmp_path, capsys):
    out = tmp_path / "vae.onnx"
    err = _refused(["export", str(SPECS / "vae.nn"), "-o", str(out)], capsys, 2,
                   "the spec has 2 models (VAE, Generator): choose one with --model", out)
    assert err.count("\n") == 1
    _refused(["export", str(SPECS / "vae.nn"), "--model", "Nope", "-o", str(out)], capsys, 2,
             "no model 'Nope'; the spec has: VAE, Generator", out)


@pytest.mark.parametrize("opset, message", [
    ("7", "--opset 7 is out of range: export writes opsets 18 to "),
    ("99", "--opset 99 is out of range: export writes opsets 18 to "),
    ("x", "an opset is an integer, not 'x'"),
])
def test_a_bad_opset(tmp_path, capsys, opset, message):
    out = tmp_path / "l.onnx"
    _refused(["export", str(SPECS / "lenet5.nn"), "-o", str(out), "--opset", opset], capsys, 2,
             message, out)


def test_outputs_it_cannot_write(tmp_path, capsys):
    lenet = str(SPECS / "lenet5.nn")
    locked = tmp_path / "locked.onnx"
    locked.write_bytes(b"old")
    locked.chmod(0o444)
    try:
        _refused(["export", lenet, "-o", str(locked)], capsys, 2, f"cannot write {locked}",
                 locked, before=b"old")
    finally:
        locked.chmod(0o644)
    missing = tmp_path / "no" / "l.onnx"
    _refused(["export", lenet, "-o", str(missing)], capsys, 2, "no such folder", missing)
    folder = tmp_path / "dir.onnx"
    folder.mkdir()
    assert cli.main(["export", lenet, "-o", str(folder)]) == 2
    assert "it is a folder" in capsys.readouterr().err and not any(folder.iterdir())
    for name in ("l.txt", "-"):
        assert cli.main(["export", lenet, "-o", str(tmp_path / name) if name != "-" else name])\
            == 2
        assert ".onnx" in capsys.readouterr().err
    assert not (tmp_path / "l.txt").exists()


def test_a_spec_with_errors_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "broken.nn"
    bad.write_text("model Tiny(x: [N, 16, 10, 10]) {\n    maxpool k=2 s=2\n    conv 32 k=7\n}\n")
    out = tmp_path / "tiny.onnx"
    out.write_bytes(b"previous")
    err = _refused(["export", str(bad), "-o", str(out)], capsys, 1,
                   f"{bad}:3:5: error: conv output height is -1 [E301]", out, before=b"previous")
    assert "wrote" not in err


def test_dims_it_cannot_trace_at(tmp_path, capsys):
    spec = tmp_path / "net.nn"
    spec.write_text("model Net(x: [N, 3, H, W]) {\n    conv 4 k=5\n}\n")
    out = tmp_path / "net.onnx"
    _refused(["export", str(spec), "-o", str(out), "--dim", "Q=4"], capsys, 2,
             "model Net has no dim Q (its symbols: N, H, W)", out)
    err = _refused(["export", str(spec), "-o", str(out), "--dim", "H=3"], capsys, 1,
                   f"{spec}:2:5: error: conv output height is -1", out)
    assert "--dim NAME=SIZE" in err
    _refused(["export", str(spec), "-o", str(out), "--dim", "H=0"], capsys, 2,
             "--dim takes NAME=SIZE with SIZE >= 1", out)


def test_a_model_over_2_gib(tmp_path, capsys):
    out = tmp_path / "huge.onnx"
    _refused(["export", str(SPECS / "dense_1e12.nn"), "-o", str(out)], capsys, 1,
             "model HugeDense has 3,725.3 GiB of float32 weights: one ONNX file holds at most "
             "2 GiB", out)


#: cli.main with onnx unimportable, as without the onnx extra; prints code and stderr.
_NO_ONNX = """
import contextlib, io, json, sys
class NoOnnx:
    def find_spec(self, name, path=None, target=None):
        if name == "onnx" or name.startswith("onnx."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoOnnx())
from nnspec.tools.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(["export", "specs/lenet5.nn", "-o", sys.argv[1]])
print(json.dumps({"code": code, "err": err.getvalue()}))
"""


def test_without_the_onnx_extra(tmp_path):
    out = tmp_path / "l.onnx"
    r = subprocess.run([sys.executable, "-c", _NO_ONNX, str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "code": 2, "err": "nnspec: error: export: this needs the onnx extra: "
                          "pip install 'nnspec[onnx]'\n"}
    assert not out.exists()


def test_the_command_line_imports_neither_torch_nor_onnx():
    code = ("import sys; from nnspec.tools import cli; cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxscript') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 0 and r.stdout == "[]\n", r.stderr


def test_the_library_function_traces_at_distinct_sizes():
    from nnspec.backends.torch.onnx import ExportError, example_dims, export_onnx

    spec = nnspec.load(str(SPECS / "superres.nn"))
    assert example_dims(spec) == {"N": 2, "H": 3, "W": 4}
    assert example_dims(spec, dims={"N": 3}) == {"N": 3, "H": 2, "W": 4}
    with pytest.raises(ExportError, match="model ESPCN has no dim T"):
        example_dims(spec, dims={"T": 3})
    with pytest.raises(ExportError, match="opset 17 is out of range"):
        export_onnx(spec, opset=17)


def test_weights_from_a_checkpoint(tmp_path, capsys):
    """--weights: the file computes what the module with those weights computes (keys
    matched as `nnspec weights map` matches them); a checkpoint that does not fit is a
    usage error and nothing is written."""
    spec = nnspec.load(str(SPECS / "lenet5.nn"))
    trained = build_module(spec, seed=7).eval()
    ckpt = tmp_path / "lenet5.pt"
    torch.save(trained.state_dict(), ckpt)
    out = tmp_path / "lenet5.onnx"
    assert cli.main(["export", str(SPECS / "lenet5.nn"), "-o", str(out), "--weights",
                     str(ckpt), "-q"]) == 0
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x})[0]
    with torch.no_grad():
        want = trained(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    bad = tmp_path / "bad.pt"
    torch.save({"conv_0.weight": torch.zeros(3)}, bad)
    other = tmp_path / "other.onnx"
    assert cli.main(["export", str(SPECS / "lenet5.nn"), "-o", str(other), "--weights",
                     str(bad)]) == 2
    assert "does not map onto the spec" in capsys.readouterr().err and not other.exists()
