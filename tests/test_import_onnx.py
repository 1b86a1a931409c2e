"""``nnspec import model.onnx``: ONNX graphs (torch.onnx exports of models written here and
of bundled specs' modules, and graphs built node by node) as .nn specs. Each written spec
checks, is fmt-clean, takes the ONNX initializers as its state_dict (strictly) and gives
onnxruntime's outputs in both backends, at the exported size and, where a dim is
symbolic, at another; what nnspec cannot express is one error naming the node."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import nnspec  # noqa: E402
from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.frontends.onnx import OnnxImportError, import_onnx, load_onnx_weights  # noqa: E402
import nnspec.frontends.onnx.read as onnx_read  # noqa: E402
from nnspec.tools.cli import main  # noqa: E402
from nnspec.tools.fmt import format_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(0)


def _rand(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _import(path: Path, **kw):
    text = import_onnx(str(path), **kw)
    assert format_text(text) == text  # written as `nnspec fmt` writes
    spec = nnspec.loads(text)
    spec.raise_for_errors()
    return text, spec, load_onnx_weights(str(path), spec)


def _same(path: Path, spec, params: dict, *xs, torch_too: bool = True) -> None:
    """onnxruntime's outputs, from NumpyModel and from build_module (strict state_dict)."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), xs)})[0]
    scale = max(1.0, float(np.abs(want).max()))
    got = NumpyModel(spec, params=params)(*xs)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * scale
    if torch_too:
        torch = pytest.importorskip("torch")
        from nnspec.backends.torch import build_module

        m = build_module(spec).eval()
        m.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=True)
        with torch.no_grad():
            out = m(*(torch.from_numpy(x) for x in xs)).numpy()
        assert np.abs(out - want).max() <= 1e-4 * scale


# ---- torch.onnx exports ------------------------------------------------------------------

def _export(module, args, path: Path, names=("x",), dynamic=None, keep_bn=False,
            opset=17) -> Path:
    torch = pytest.importorskip("torch")
    mode = torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), dynamo=False,
                          input_names=list(names), output_names=["y"],
                          dynamic_axes=dynamic, opset_version=opset, training=mode,
                          do_constant_folding=not keep_bn)
    return path


@pytest.fixture(scope="module")
def nn():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch.nn


def test_mlp_dense_names_and_symbolic_batch(nn, tmp_path):
    import torch

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.drop, self.fc2 = nn.Linear(12, 32), nn.Dropout(0.2), nn.Linear(32, 5)

        def forward(self, x):
            return torch.log_softmax(self.fc2(self.drop(torch.relu(self.fc1(x)))), dim=1)

    path = _export(MLP(), (torch.randn(2, 12),), tmp_path / "mlp.onnx",
                   dynamic={"x": {0: "N"}})
    text, spec, params = _import(path)
    assert "model Mlp(x: [N, 12]) -> [N, 5] {" in text
    assert "dense 32 as fc1 | relu | dense 5 as fc2 | log_softmax dim=1" in text
    assert set(params) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert params["fc1.weight"].shape == (32, 12)  # Gemm's transB=1 layout kept
    _same(path, spec, params, _rand(2, 12))
    _same(path, spec, params, _rand(7, 12))


def test_cnn_batchnorm_pooling_at_two_sizes(nn, tmp_path):
    import torch

    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        nn.Conv2d(8, 16, (3, 1), padding=(1, 0), dilation=(1, 1), groups=2),
        nn.BatchNorm2d(16), nn.LeakyReLU(0.2),
        nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    with torch.no_grad():  # running statistics that are not the defaults
        for bn in (net[1], net[5]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
    path = _export(net, (torch.randn(2, 3, 20, 20),), tmp_path / "cnn.onnx",
                   dynamic={"x": {0: "N", 2: "H", 3: "W"}}, keep_bn=True)
    text, spec, params = _import(path)
    assert "model Cnn(x: [N, 3, H, W]) -> [N, 4] {" in text
    # Sequential's "0", "1" cannot start a layer name: the kind's names instead
    assert "conv 8 k=3 s=2 p=1 bias=false as conv_0 | batchnorm as batchnorm_0" in text
    assert "conv 16 k=(3, 1) p=(1, 0) groups=2 as conv_1" in text
    assert "maxpool k=3 s=2 p=1 ceil" in text
    assert "avgpool k=2 s=1 p=1 count_include_pad=false | avgpool global" in text
    assert params["batchnorm_1.num_batches_tracked"].dtype == np.int64  # for a strict load
    _same(path, spec, params, _rand(2, 3, 20, 20))
    _same(path, spec, params, _rand(3, 3, 17, 26))


def test_residual_blocks_keep_module_paths(nn, tmp_path):
    import torch

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.conv2(torch.relu(self.bn1(self.conv1(x)))) + x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.layer1 = nn.Sequential(Block(8), Block(8))
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            x = self.layer1(self.stem(x)).mean(dim=(2, 3))
            return self.head(x)

    path = _export(Net(), (torch.randn(1, 3, 12, 12),), tmp_path / "res.onnx",
                   dynamic={"x": {0: "N"}}, keep_bn=True)
    text, spec, params = _import(path)
    for name in ("stem", "layer1.0.conv1", "layer1.0.bn1", "layer1.1.conv2", "head"):
        assert f" as {name}" in text
    assert "mean dim=(2, 3)" in text
    _same(path, spec, params, _rand(2, 3, 12, 12))
    _same(path, spec, params, _rand(1, 3, 12, 12))


def test_reshape_transpose_concat_and_arithmetic(nn, tmp_path):
    import torch

    class Mix(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(6, 6)
            self.norm = nn.LayerNorm(6)
            self.act = nn.GELU()

        def forward(self, x):  # x: [N, 4, 6]
            n = x.size(0)
            a = x.view(n, 2, 2, 6).permute(0, 3, 1, 2).reshape(n, 6, 4)  # [N, 6, 4]
            b = self.act(self.norm(self.proj(x))).transpose(1, 2)       # MatMul + Add
            y = torch.cat([a * 0.5, (1 - b) / 2, a - b], dim=1)          # [N, 18, 4]
            return torch.softmax(y[:, 1:, :3] + 3, dim=-1)

    path = _export(Mix(), (torch.randn(2, 4, 6),), tmp_path / "mix.onnx",
                   dynamic={"x": {0: "N"}})
    text, spec, params = _import(path)
    assert "reshape [N, 2, 2, 6]" in text and "permute (0, 3, 1, 2)" in text
    assert "dense 6 as proj | layernorm as norm | gelu" in text  # MatMul + Add, Erf GELU
    assert "concat(prod, ratio, diff_2, dim=1)" in text and "(1.0 - norm)" in text
    assert params["proj.weight"].shape == (6, 6)
    _same(path, spec, params, _rand(2, 4, 6))
    _same(path, spec, params, _rand(5, 4, 6))


def test_upsample_convtranspose_and_embedding(nn, tmp_path):
    import torch

    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)

        def forward(self, x):
            a = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
            b = nn.functional.interpolate(x, scale_factor=2, mode="bilinear",
                                          align_corners=False)
            return torch.cat([a + b, self.up(x)], dim=1)

    path = _export(Up(), (torch.randn(1, 4, 5, 6),), tmp_path / "up.onnx")
    text, spec, params = _import(path)
    assert "upsample 2" in text and "upsample 2 mode=bilinear" in text
    assert "convtranspose 3 k=3 s=2 p=1 output_padding=1 as up" in text
    _same(path, spec, params, _rand(1, 4, 5, 6))

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.out = nn.Embedding(20, 8), nn.Linear(8, 3)

        def forward(self, tokens):
            return self.out(self.emb(tokens))

    path = _export(Tagger(), (torch.zeros(2, 5, dtype=torch.long),), tmp_path / "tag.onnx",
                   names=("tokens",), dynamic={"tokens": {0: "N", 1: "T"}})
    text, spec, params = _import(path)
    assert "model Tag(tokens: [N, T] int) -> [N, T, 3] {" in text
    assert "embedding 20 8 as emb | dense 3 as out" in text
    ids = RNG.integers(0, 20, (3, 7)).astype(np.int64)
    _same(path, spec, params, ids)


# ---- bundled specs -----------------------------------------------------------------------

def _spec_module(text: str):
    pytest.importorskip("torch")
    from nnspec.backends.torch import build_module

    return build_module(nnspec.loads(text).raise_for_errors(), seed=1)


@pytest.mark.parametrize("name", ["lenet5", "cnn_small"])
def test_bundled_specs_round_trip(name, tmp_path):
    import torch

    source = nnspec.load(str(ROOT / "specs" / f"{name}.nn"))
    module = _spec_module((ROOT / "specs" / f"{name}.nn").read_text())
    shape = [1, 1, 32, 32] if name == "lenet5" else [1, 3, 32, 32]
    path = _export(module, (torch.randn(*shape),), tmp_path / f"{name}.onnx",
                   dynamic={"x": {0: "N"}}, keep_bn=True)
    text, spec, params = _import(path)
    assert spec.param_count() == source.param_count()
    shape[0] = 3
    _same(path, spec, params, _rand(*shape))


def test_resnet18_at_a_small_symbolic_size(tmp_path):
    import torch

    text = (ROOT / "specs" / "resnet18.nn").read_text()
    text = re.sub(r"(?m)\s+: \[N, [0-9, ]+\]$", "", text).replace(
        "x: [N, 3, 224, 224]", "x: [N, 3, H, W]")
    path = _export(_spec_module(text), (torch.randn(1, 3, 64, 64),), tmp_path / "r18.onnx",
                   dynamic={"x": {0: "N", 2: "H", 3: "W"}}, keep_bn=True)
    out, spec, params = _import(path)
    assert "model R18(x: [N, 3, H, W]) -> [N, 1000] {" in out
    assert " as layer2.down_0.downsample_conv" in out
    assert spec.param_count() == 11_689_512
    _same(path, spec, params, _rand(1, 3, 64, 64), torch_too=False)
    _same(path, spec, params, _rand(1, 3, 40, 56))


@pytest.mark.parametrize("name", ["lenet5", "superres"])
def test_nnspec_export_round_trip(name, tmp_path):
    """Files written by ``nnspec export`` (torch's dynamo exporter): same outputs, same
    parameter count, the symbolic batch kept."""
    pytest.importorskip("onnxscript")
    export = pytest.importorskip("nnspec.backends.torch.onnx")
    source = nnspec.load(str(ROOT / "specs" / f"{name}.nn"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = export.export_onnx(source, seed=0)
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(out.to_bytes())
    text, spec, params = _import(path)
    assert spec.param_count() == source.param_count()
    shape = [d if isinstance(d, int) else 3 for d in out.inputs[0].dims]
    assert shape[0] == 3 and out.inputs[0].dims[0] == "N"
    assert re.search(r"model \w+\(\w+: \[N, ", text)
    if name == "superres":
        assert "pixel_shuffle 3" in text
    _same(path, spec, params, _rand(*shape))


# ---- graphs built node by node -----------------------------------------------------------

def _model(path: Path, nodes, inputs, output, inits=(), opset=17, value_info=()) -> Path:
    """A model of ``nodes``; inputs/output as (name, dims) with str dims symbolic."""
    def vi(name, dims, elem=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, elem, list(dims))

    graph = helper.make_graph(
        nodes, "g", [vi(*i) for i in inputs], [vi(*output)],
        [numpy_helper.from_array(np.asarray(v), name=k) for k, v in dict(inits).items()],
        value_info=list(value_info))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _node(op, ins, outs, name="", **attrs):
    return helper.make_node(op, ins, outs, name=name or f"/{outs[0]}/{op}", **attrs)


def test_conv_pads_auto_pad_and_shared_weights(tmp_path):
    w1, b1 = _rand(4, 3, 3, 3), _rand(4)
    nodes = [
        _node("Conv", ["x", "c1.weight", "c1.bias"], ["a"], pads=[0, 1, 1, 2], strides=[2, 1],
              dilations=[1, 2]),                                         # asymmetric
        _node("Conv", ["a", "c2.weight"], ["b"], name="/blk/c2/Conv", auto_pad="SAME_UPPER",
              strides=[2, 2]),                                           # static sizes
        _node("Conv", ["b", "c3.weight"], ["c"], auto_pad="SAME_LOWER", group=2),
        _node("Conv", ["c", "c3.weight"], ["d"], auto_pad="SAME_LOWER", group=2),  # shared
        _node("MaxPool", ["d"], ["e"], kernel_shape=[3, 3], strides=[2, 2],
              auto_pad="SAME_UPPER"),
        _node("AveragePool", ["e"], ["y"], kernel_shape=[2, 2], pads=[1, 1, 1, 1],
              count_include_pad=1),
    ]
    inits = {"c1.weight": w1, "c1.bias": b1, "c2.weight": _rand(4, 4, 2, 2),
             "c3.weight": _rand(4, 2, 3, 3)}
    path = _model(tmp_path / "pads.onnx", nodes, [("x", [2, 3, 11, 13])], ("y", [2, 4, 3, 4]),
                  inits)
    text, spec, params = _import(path)
    assert "conv 4 k=3 s=(2, 1) p=((0, 1), (1, 2)) d=(1, 2) as c1" in text
    assert "conv 4 k=2 s=2 p=((0, 1), (0, 0)) bias=false as c2" in text  # SAME_UPPER
    assert text.count("as c3") == 1 and re.search(r"as c3 \| c3\b", text)  # applied twice
    assert "maxpool k=3 s=2 p=((1, 1), (0, 1)) | avgpool k=2 s=1 p=1" in text
    assert "count_include_pad" not in text  # ONNX's 1 is nnspec's default
    assert set(params) == {"c1.weight", "c1.bias", "c2.weight", "c3.weight"}
    _same(path, spec, params, _rand(2, 3, 11, 13))


def test_resize_activations_gemm_and_reductions(tmp_path):
    f32 = np.float32
    nodes = [
        _node("Resize", ["x", "", "s2"], ["up"], mode="nearest",
              coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        _node("Shape", ["x"], ["shape"]),
        _node("Slice", ["shape", "zero", "two"], ["nc"]),
        _node("Concat", ["nc", "hw"], ["sz"], axis=0),                   # [N, 2, 8, 12]
        _node("Resize", ["x", "", "", "sz"], ["lin"], mode="linear",
              coordinate_transformation_mode="align_corners"),
        _node("Add", ["up", "lin"], ["s"]),
        _node("Resize", ["s", "", "s2"], ["s4"], mode="linear",
              coordinate_transformation_mode="pytorch_half_pixel"),
        _node("Elu", ["s4"], ["a1"], alpha=0.5),
        _node("HardSigmoid", ["a1"], ["a2"], alpha=1 / 6, beta=0.5),
        _node("Clip", ["a2", "lo", "hi"], ["a3"]),
        _node("Mul", ["a3", "chan"], ["a4"]),                          # a per-channel param
        _node("ReduceMean", ["a4"], ["m"], axes=[2, 3], keepdims=0),    # [N, 2]
        _node("Gemm", ["m", "fc.weight", "fc.bias"], ["g"]),            # transB=0: W^T kept
        _node("Softplus", ["g"], ["y"]),
    ]
    inits = {"s2": np.array([1, 1, 2, 2], f32), "hw": np.array([8, 12], np.int64),
             "zero": np.array([0], np.int64), "two": np.array([2], np.int64),
             "lo": np.array(0.1, f32), "hi": np.array(0.9, f32),
             "chan": _rand(2, 1, 1), "fc.weight": _rand(2, 5), "fc.bias": _rand(1, 5)}
    path = _model(tmp_path / "mix.onnx", nodes, [("x", ["N", 2, 4, 6])], ("y", ["N", 5]),
                  inits)
    text, spec, params = _import(path)
    assert "model Mix(x: [N, 2, 4, 6]) -> [N, 5] {" in text
    assert "upsample 2" in text and "upsample size=(8, 12) mode=bilinear align_corners" in text
    assert "upsample 2 mode=bilinear | elu 0.5 | hardsigmoid | clamp min=0.1 max=0.9" in text
    assert "param [2, 1, 1] as chan" in text and "mean dim=(2, 3)" in text
    assert "dense 5 as fc | softplus" in text
    assert params["fc.weight"].shape == (5, 2) and params["fc.bias"].shape == (5,)
    _same(path, spec, params, _rand(3, 2, 4, 6))
    _same(path, spec, params, _rand(1, 2, 4, 6))


def test_shape_ops_slices_and_opset_18(tmp_path):
    i64 = np.int64
    nodes = [
        _node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),                    # [N, T, C]
        _node("Unsqueeze", ["t", "ax1"], ["u"]),                             # [N, 1, T, C]
        _node("Squeeze", ["u", "ax1"], ["q"]),
        _node("Slice", ["q", "st", "en", "axs"], ["sl"]),                    # [N, T, 1:3]
        _node("Gather", ["sl", "zero"], ["g"], axis=1),                      # [N, 2]
        _node("ReduceMax", ["q", "ax2"], ["r"], keepdims=1),                 # [N, T, 1]
        _node("Flatten", ["u"], ["fl"], axis=2),                             # [N, 20]
        _node("Shape", ["g"], ["sh"]),
        _node("Gather", ["sh", "zero"], ["n0"], axis=0),
        _node("Unsqueeze", ["n0", "ax0"], ["n1"]),
        _node("Concat", ["n1", "minus1"], ["target"], axis=0),
        _node("Reshape", ["r", "target"], ["rs"]),                           # [N, T]
        _node("Concat", ["g", "rs", "fl"], ["cat"], axis=1),
        _node("Sub", ["two", "cat"], ["y"]),
    ]
    inits = {"ax0": np.array([0], i64), "ax1": np.array([1], i64),
             "ax2": np.array([-1], i64), "st": np.array([1], i64),
             "en": np.array([3], i64), "axs": np.array([2], i64),
             "zero": np.array(0, i64), "minus1": np.array([-1], i64),
             "two": np.array([2.0], np.float32)}
    path = _model(tmp_path / "shapes.onnx", nodes, [("x", ["N", 4, 5])], ("y", ["N", 27]),
                  inits, opset=18)
    text, spec, params = _import(path)
    assert "| transpose 1 2 |" in text and "[:, :, 1:3]" in text and "[:, 0]" in text
    assert "amax dim=-1 keepdim" in text and "| reshape [N, -1]" in text
    assert "flatten start=2 | flatten start=0 end=1" in text
    assert "(2.0 - " in text
    assert params == {}
    _same(path, spec, params, _rand(2, 4, 5))
    _same(path, spec, params, _rand(3, 4, 5))


# ---- bad input ---------------------------------------------------------------------------

def _relu_model(tmp_path: Path, name="ok.onnx") -> Path:
    return _model(tmp_path / name, [_node("Relu", ["x"], ["y"])], [("x", ["N", 3])],
                  ("y", ["N", 3]))


def test_cli_writes_the_spec_and_binds_dims(tmp_path, capsys):
    path = _relu_model(tmp_path)
    out = tmp_path / "ok.nn"
    assert main(["import", str(path), "-o", str(out), "-q"]) == 0
    assert out.read_text() == import_onnx(str(path))
    assert "model Ok(x: [N, 3]) -> [N, 3] {" in out.read_text()
    assert main(["import", str(path), "--dim", "N=4", "--name", "Tiny"]) == 0
    assert "model Tiny(x: [4, 3]) -> [4, 3] {" in capsys.readouterr().out
    assert main(["import", str(path), "--dim", "T=4"]) == 2
    assert "--dim T: no input dim is named so (the symbols: N)" in capsys.readouterr().err
    assert main(["import", str(path), "--input", "x: [N, 3]"]) == 2


@pytest.mark.parametrize("content", [b"not a model\n", bytes(range(256)) * 4, b""])
def test_not_onnx_is_exit_1_and_nothing_written(tmp_path, capsys, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    out = tmp_path / "out.nn"
    assert main(["import", str(path), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not an ONNX model" in err or "not a valid ONNX model" in err
    assert "Traceback" not in err and not out.exists()


def test_missing_file_and_size_limit(tmp_path, capsys, monkeypatch):
    assert main(["import", str(tmp_path / "none.onnx")]) == 2
    assert "no such file" in capsys.readouterr().err
    path = _relu_model(tmp_path)
    monkeypatch.setattr(onnx_read, "MAX_FILE_BYTES", 64)
    out = tmp_path / "out.nn"
    assert main(["import", str(path), "-o", str(out)]) == 1
    assert "larger than the 64 bytes" in capsys.readouterr().err and not out.exists()


def test_unsupported_op_names_the_node(tmp_path, capsys):
    path = _model(tmp_path / "topk.onnx",
                  [_node("Relu", ["x"], ["r"]),
                   _node("Sin", ["r"], ["y"], name="/head/trig/Sin")],
                  [("x", ["N", 3])], ("y", ["N", 3]))
    with pytest.raises(OnnxImportError, match=r"node '/head/trig/Sin' \(Sin\): no nnspec kind"):
        import_onnx(str(path))
    out = tmp_path / "x.nn"
    out.write_text("kept\n")
    assert main(["import", str(path), "-o", str(out)]) == 1
    assert "node '/head/trig/Sin' (Sin)" in capsys.readouterr().err
    assert out.read_text() == "kept\n"  # a failed import leaves the file as it was


def test_zeros_of_the_batch_size_outside_a_recurrent_layer(tmp_path):
    """A constant broadcast to a symbolic size is taken as a recurrent layer's zero state
    only: added to a tensor, it is an error naming the node that reads it."""
    path = _model(tmp_path / "zeros.onnx",
                  [_node("Shape", ["x"], ["s"]),
                   _node("Expand", ["zero", "s"], ["z"]),
                   _node("Add", ["x", "z"], ["y"], name="/head/Add")],
                  [("x", ["N", 3])], ("y", ["N", 3]), inits={"zero": np.zeros((), np.float32)})
    with pytest.raises(OnnxImportError, match=r"node '/head/Add' \(Add\): 'z' is a tensor of "
                       r"0.0 whose shape is computed from the input's symbolic sizes"):
        import_onnx(str(path))


@pytest.mark.parametrize("node, inits, message", [
    (("Gemm", ["x", "w"], ["y"], {"alpha": 0.5}), {"w": np.ones((3, 3), np.float32)},
     r"\(Gemm\): alpha=0.5"),
    (("Conv", ["x", "w"], ["y"], {}), {}, r"\(Conv\): its weight is computed at run time"),
    (("Resize", ["x", "", "s"], ["y"], {"mode": "cubic"}),
     {"s": np.array([1, 2], np.float32)}, r"a resize of a rank-2 tensor"),
    (("BatchNormalization", ["x", "w", "w", "w", "w"], ["y"], {"training_mode": 1}),
     {"w": np.ones(3, np.float32)}, r"training_mode=1"),
])
def test_attributes_nnspec_cannot_express(tmp_path, node, inits, message):
    op, ins, outs, attrs = node
    graph_ins = [("x", ["N", 3])] + ([("w", [3, 3])] if op == "Conv" else [])
    path = _model(tmp_path / "bad.onnx", [_node(op, ins, outs, **attrs)], graph_ins,
                  ("y", ["N", 3]), inits)
    with pytest.raises(OnnxImportError, match=message):
        import_onnx(str(path))


def test_custom_ops_old_opsets_and_external_data_are_refused(tmp_path):
    node = helper.make_node("Secret", ["x"], ["y"], domain="com.example", name="/s")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, [2])],
                              [helper.make_tensor_value_info("y", 1, [2])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                helper.make_opsetid("com.example", 1)])
    onnx.save(m, str(tmp_path / "custom.onnx"))
    with pytest.raises(OnnxImportError, match="custom domain 'com.example'"):
        import_onnx(str(tmp_path / "custom.onnx"))

    _model(tmp_path / "old.onnx", [_node("Relu", ["x"], ["y"])], [("x", [2])], ("y", [2]),
           opset=11)
    with pytest.raises(OnnxImportError, match="opset 11: nnspec imports opset 13 and later"):
        import_onnx(str(tmp_path / "old.onnx"))

    # weights stored beside the file are read; a location outside its folder is refused
    inner = tmp_path / "m"
    inner.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.ones(9, np.float32).tobytes())
    w = numpy_helper.from_array(np.ones((3, 3), np.float32), name="fc.weight")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", "36")):
        w.external_data.add(key=k, value=v)
    graph = helper.make_graph([_node("Gemm", ["x", "fc.weight"], ["y"], transB=1)], "g",
                              [helper.make_tensor_value_info("x", 1, ["N", 3])],
                              [helper.make_tensor_value_info("y", 1, ["N", 3])], [w])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, str(inner / "ext.onnx"))
    with pytest.raises(OnnxImportError, match="not a file in the model's folder"):
        import_onnx(str(inner / "ext.onnx"))
    (inner / "w.bin").write_bytes(np.arange(9, dtype=np.float32).tobytes())
    m.graph.initializer[0].external_data[0].value = "w.bin"
    onnx.save(m, str(inner / "ext.onnx"))
    text, spec, params = _import(inner / "ext.onnx")
    assert "dense 3 bias=false as fc" in text
    assert params["fc.weight"].tolist() == np.arange(9.0).reshape(3, 3).tolist()
    _same(inner / "ext.onnx", spec, params, _rand(2, 3))


def test_the_onnx_path_never_imports_torch(tmp_path):
    import subprocess
    import sys

    path = _relu_model(tmp_path)
    code = ("import sys; from nnspec.tools.cli import main; "
            f"assert main(['import', {str(path)!r}, '-q']) == 0; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "model Ok(x: [N, 3])" in r.stdout


def _rms_graph(tmp_path: Path, axes: list[int], name: str) -> Path:
    """x * 1 / sqrt(mean(x ** 2, axes) + 1e-5) * w, as torch writes an RMSNorm out."""
    inits = {"two": np.array(2.0, np.float32), "axes": np.array(axes, np.int64),
             "eps": np.array(1e-5, np.float32), "norm.weight": _rand(8)}
    nodes = [_node("Pow", ["x", "two"], ["p"], "pow"),
             _node("ReduceMean", ["p", "axes"], ["m"], "mean", keepdims=1),
             _node("Add", ["m", "eps"], ["a"], "add"), _node("Sqrt", ["a"], ["s"], "sqrt"),
             _node("Reciprocal", ["s"], ["r"], "rsqrt"), _node("Mul", ["x", "r"], ["n"], "mul"),
             _node("Mul", ["n", "norm.weight"], ["y"], "scale")]
    return _model(tmp_path / name, nodes, [("x", ["N", 4, 8])], ("y", ["N", 4, 8]), inits,
                  opset=18)


def test_written_out_rmsnorm_is_checked_numerically(tmp_path):
    path = _rms_graph(tmp_path, [-1], "rms.onnx")
    text, spec, params = _import(path)
    assert "| rmsnorm eps=1.0e-05 as norm" in text
    _same(path, spec, params, _rand(3, 4, 8))
    # the mean over another axis than the last is not an RMSNorm: its Pow stays an error
    with pytest.raises(OnnxImportError, match=r"^node 'pow' \(Pow\): no nnspec kind"):
        import_onnx(str(_rms_graph(tmp_path, [1], "other.onnx")))
