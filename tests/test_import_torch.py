"""``nnspec import`` of PyTorch models: the written spec checks, is fmt-clean, loads the
original's state_dict strictly (same keys) and gives the original's outputs in both
backends, at the traced size and at others; what has no kind is one located error."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module, emit_source  # noqa: E402
from nnspec.frontends.torch import ImportFailure, import_model  # noqa: E402
from nnspec.tools.cli import main  # noqa: E402
from nnspec.tools.fmt import format_text  # noqa: E402

HERE = Path(__file__).parent


def _same(ref, spec, *xs, numpy: bool = True, source: bool = False):
    """The spec's module with ref's state_dict (strict) gives ref's outputs, float64."""
    ref = ref.double().eval()
    m = build_module(spec).double().eval()
    m.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        want = ref(*xs)
        got = m(*xs)
    scale = want.abs().max().item()
    assert (got - want).abs().max().item() <= 1e-12 * scale
    if numpy:
        nm = NumpyModel(spec, params={k: v.numpy() for k, v in ref.state_dict().items()})
        out = nm(*(x.numpy() for x in xs))
        assert np.abs(out - want.numpy()).max() <= 1e-12 * scale
    if source:
        ns: dict = {}
        exec(compile(emit_source(spec), "<emitted>", "exec"), ns)  # noqa: S102
        cls = ns[spec.program.models[0].name]
        e = cls().double().eval()
        e.load_state_dict(ref.state_dict(), strict=True)
        with torch.no_grad():
            assert (e(*xs) - want).abs().max().item() <= 1e-12 * scale


def _spec(text: str):
    assert format_text(text) == text  # written as `nnspec fmt` writes
    return nnspec.loads(text)


# ---- torchvision ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tv():
    sys.path.insert(0, str(HERE))
    from _torchvision import models

    return models()


def test_resnet18_blocks_names_and_outputs(tv):
    text = import_model("torchvision.models:resnet18")
    spec = _spec(text)
    # one block per structure of BasicBlock: plain, and with the downsampling shortcut
    assert "block BasicBlock(x, c) {" in text and "block BasicBlock2(x, c) {" in text
    assert "BasicBlock(64) * 2 as layer1" in text
    assert "as downsample.0 | batchnorm as downsample.1" in text
    assert "model Resnet18(x: [N, 3, H, W]) {" in text
    assert spec.param_count() == 11_689_512
    torch.manual_seed(0)
    ref = tv.resnet18()
    # symbolic H, W: the same spec at two sizes the original accepts
    _same(ref, spec, torch.randn(2, 3, 64, 64, dtype=torch.float64), source=True)
    _same(ref, spec, torch.randn(1, 3, 48, 80, dtype=torch.float64), numpy=False)


def test_resnet50_and_densenet121(tv):
    torch.manual_seed(1)
    spec = _spec(import_model("torchvision.models:resnet50"))
    assert spec.param_count() == 25_557_032
    _same(tv.resnet50(), spec, torch.randn(1, 3, 64, 64, dtype=torch.float64))
    text = import_model("torchvision.models:densenet121")
    assert "block _DenseLayer(x) {" in text
    spec = _spec(text)
    assert spec.param_count() == 7_978_856
    _same(tv.densenet121(), spec, torch.randn(1, 3, 64, 64, dtype=torch.float64),
          numpy=False)


@pytest.mark.parametrize("name,count", [
    ("vgg16_bn", 138_365_992), ("mobilenet_v2", 3_504_872), ("efficientnet_b0", 5_288_548),
    ("convnext_tiny", 28_589_128), ("vit_b_16", 86_567_656), ("densenet121", 7_978_856)])
def test_published_counts_on_meta(name, count):
    """Built on the meta device: no weights are allocated, the counts are torchvision's."""
    assert nnspec.loads(import_model(f"torchvision.models:{name}")).param_count() == count


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0", "convnext_tiny",
                                  "shufflenet_v2_x0_5"])
def test_newer_cnns_round_trip(tv, name):
    """ReLU6, SiLU with squeeze-excitation, stochastic depth (drop_path), ConvNeXt's
    channels-first LayerNorm2d and its layer scale (a learned tensor), ShuffleNet's channel
    shuffle (its reshapes at sizes that follow H and W: unflatten, flatten). ConvNeXt-T's
    28 M parameters in float64 run with NNSPEC_SLOW_TESTS=1 (timm's convnext_atto, the same
    constructs, runs every time)."""
    if name == "convnext_tiny" and not os.environ.get("NNSPEC_SLOW_TESTS"):
        pytest.skip("NNSPEC_SLOW_TESTS=1 runs ConvNeXt-T (convnext_atto runs always)")
    text = import_model(f"torchvision.models:{name}")
    spec = _spec(text)
    torch.manual_seed(6)
    ref = getattr(tv, name)()
    for p in ref.parameters():  # a zero-initialised head would hide a wrong trunk
        torch.nn.init.normal_(p, 0.0, 0.05) if p.dim() == 1 and p.abs().sum() == 0 else None
    _same(ref, spec, torch.randn(1, 3, 64, 64, dtype=torch.float64), numpy=name != "convnext_tiny")
    if name == "convnext_tiny":
        assert "layernorm dim=1 eps=1e-06" in text and "drop_path" in text
        assert "param [96, 1, 1] as layer_scale" in text
    if name.startswith("shufflenet"):
        assert "| unflatten 1 (2, 24) | transpose 1 2 | flatten start=1 end=2" in text
        # the spec checks at sizes the trace never saw
        assert nnspec.loads(text.replace("[N, 3, H, W]", "[N, 3, 97, 131]")).model_names


def test_inception_functional_pooling_and_tuple_block_arguments(tv):
    """Inception-v3: F.max_pool2d / F.avg_pool2d in forward, blocks whose parameters are
    kernel sizes (1, 7) and paddings (0, 3)."""
    text = import_model("torchvision.models:inception_v3",
                        kwargs={"aux_logits": False, "init_weights": False})
    assert "| avgpool k=3 s=1 p=1 |" in text and "maxpool k=3 s=2" in text
    assert "(1, 7), (0, 3)) as branch7x7_2" in text
    spec = _spec(text)
    torch.manual_seed(8)
    ref = tv.inception_v3(aux_logits=False, init_weights=False)
    _same(ref, spec, torch.randn(1, 3, 80, 80, dtype=torch.float64), numpy=False)


def test_a_module_name_the_language_cannot_write_is_refused(tv):
    """RegNet's children are named "block1-0"; its initialisation reads its weights, so it
    is built with memory when the meta device refuses."""
    with pytest.raises(ImportFailure, match=r"block1-0: a module name nnspec cannot write"):
        import_model("torchvision.models:regnet_y_400mf")


def test_vision_transformer_class_token_and_positions(tv):
    text = import_model("torchvision.models.vision_transformer:VisionTransformer",
                        ["x: [N, 3, 32, 32]"],
                        kwargs={"image_size": 32, "patch_size": 16, "num_layers": 2,
                                "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32,
                                "num_classes": 5})
    assert "model VisionTransformer(x: [N, 3, 32, 32]) {" in text
    assert "param [1, 1, 16] as class_token" in text
    assert "expand(class_token, [N, -1, -1])" in text
    assert "param [1, 5, 16] as pos_embedding" in text  # inside the Encoder block
    with pytest.raises(ImportFailure, match=r"Wrong image height! Expected 32 .* --input"):
        import_model("torchvision.models.vision_transformer:VisionTransformer",
                     kwargs={"image_size": 32, "patch_size": 16, "num_layers": 1,
                             "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32})
    spec = _spec(text)
    torch.manual_seed(7)
    from torchvision.models.vision_transformer import VisionTransformer

    ref = VisionTransformer(32, 16, 2, 2, 16, 32, num_classes=5)
    torch.nn.init.normal_(ref.heads.head.weight)  # zero-initialised by torchvision
    torch.nn.init.normal_(ref.class_token)
    _same(ref, spec, torch.randn(3, 3, 32, 32, dtype=torch.float64), source=True)


@pytest.mark.parametrize("name,count", [
    ("resnet18", 11_689_512), ("mobilenetv3_small_100", 2_542_856),
    ("convnext_atto", 3_695_520), ("efficientnet_b0", 5_288_548)])
def test_timm_models_round_trip(tv, name, count):
    """timm's layers compute with F.layer_norm / F.batch_norm on their own parameters
    (BatchNormAct2d, LayerNorm2d): each becomes the layer of its module, named by its path."""
    timm = pytest.importorskip("timm")
    text = import_model("timm:create_model", kwargs={"model_name": name})
    spec = _spec(text)
    assert spec.param_count() == count
    torch.manual_seed(8)
    ref = timm.create_model(name)
    for m in ref.modules():  # statistics other than the initial ones
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    _same(ref, spec, torch.randn(2, 3, 64, 64, dtype=torch.float64),
          numpy=name in ("resnet18", "mobilenetv3_small_100"))


def test_kwargs_reach_the_factory(tv):
    text = import_model("torchvision.models:resnet18", kwargs={"num_classes": 7})
    assert "dense 7 as fc" in text


# ---- models of the user's own -----------------------------------------------------------

_MODELS = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from torch import nn


    class Mlp(nn.Module):
        def __init__(self, d=16, hidden=32, out=4):
            super().__init__()
            self.fc1 = nn.Linear(d, hidden)
            self.drop = nn.Dropout(0.1)
            self.fc2 = nn.Linear(hidden, out)

        def forward(self, x):
            return self.fc2(self.drop(F.gelu(self.fc1(x))))


    class Cell(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, padding=1)
            self.norm = nn.BatchNorm2d(c)

        def forward(self, x):
            return x + torch.relu(self.norm(self.conv(x))) * 0.5


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.cells = nn.Sequential(*[Cell(8) for _ in range(3)])
            self.head = nn.Linear(8 * 2, 10)

        def forward(self, x):
            x = self.cells(self.stem(x))
            a = x.mean(dim=(2, 3))
            b = x.amax(dim=(2, 3))
            y = torch.cat([a, b], dim=1)
            return F.log_softmax(self.head(y), dim=-1)


    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 12)
            self.proj = nn.Linear(12, 12)

        def forward(self, tokens):
            h = self.emb(tokens)
            n, t, d = h.shape
            h = self.proj(h).view(n, t, 3, 4).transpose(1, 2)
            return h.reshape(n, 3, -1)


    class Glu(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 10)

        def forward(self, x):
            a, b = self.fc(x).chunk(2, dim=-1)
            n, t, _ = x.shape
            q, k = self.fc(x).view(n, t, 5, 2).unbind(3)
            return a * torch.sigmoid(b) + q * k


    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            if x.sum() > 0:
                return self.fc(x)
            return x


    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(4, 6, batch_first=True)
            self.lstm = nn.LSTM(6, 5, num_layers=2, bidirectional=True, batch_first=True,
                                proj_size=3)
            self.rnn = nn.RNN(6, 4, nonlinearity="relu", batch_first=True, bias=False)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            h, _ = self.gru(x)
            y = self.lstm(h)[0]
            z, _ = self.rnn(y)
            return self.head(z[:, -1])


    class Normed(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.utils.weight_norm(nn.Conv1d(4, 6, 3, padding=1), dim=2)
            self.fc = nn.utils.weight_norm(nn.Linear(6, 2))

        def forward(self, x):
            return self.fc(self.conv(x).mean(dim=2))


    class TimeFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(4, 5)

        def forward(self, x):
            return self.lstm(x)[0]


    class Cumulative(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.cumsum(self.fc(x), dim=1)


    def broken():
        raise ValueError("no weights here")
''')


@pytest.fixture(scope="module")
def user_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("user")
    (d / "nnspec_user_models.py").write_text(_MODELS)
    sys.path.insert(0, str(d))
    import nnspec_user_models

    yield nnspec_user_models
    sys.path.remove(str(d))


def test_user_mlp(user_models):
    text = import_model("nnspec_user_models:Mlp")
    spec = _spec(text)
    assert "model Mlp(x: [N, 16]) {" in text
    torch.manual_seed(2)
    _same(user_models.Mlp(), spec, torch.randn(5, 16, dtype=torch.float64), source=True)


def test_user_net_functional_ops(user_models):
    text = import_model("nnspec_user_models:Net")
    spec = _spec(text)
    assert "Cell() * 3 as cells" in text
    torch.manual_seed(3)
    _same(user_models.Net(), spec, torch.randn(2, 3, 12, 16, dtype=torch.float64),
          source=True)


def test_sizes_from_the_graph_become_symbols(user_models):
    text = import_model("nnspec_user_models:Seq", ["tokens: [N, T] int"])
    assert "reshape [N, T, 3, 4]" in text and "reshape [N, 3, -1]" in text
    spec = _spec(text)
    torch.manual_seed(4)
    tokens = torch.randint(0, 50, (3, 7))
    ref = user_models.Seq().double().eval()
    m = build_module(spec).double().eval()
    m.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(m(tokens), ref(tokens))


def test_recurrent_modules(user_models):
    """nn.GRU, a stacked bidirectional nn.LSTM with proj_size, nn.RNN(relu, no bias), their
    sequence outputs; torch's own state_dict keys."""
    text = import_model("nnspec_user_models:Recurrent", ["x: [N, T, 4]"])
    assert "gru 6 as gru" in text
    assert "lstm 5 layers=2 bidirectional proj_size=3 as lstm" in text
    assert "rnn 4 bias=false nonlinearity=relu as rnn" in text
    torch.manual_seed(3)
    _same(user_models.Recurrent(), _spec(text),
          torch.randn(2, 7, 4, dtype=torch.float64))
    with pytest.raises(ImportFailure, match=r"lstm \(LSTM\): LSTM\(batch_first=False\)"):
        import_model("nnspec_user_models:TimeFirst", ["x: [T, N, 4]"])


def test_weight_norm_keys(user_models):
    """torch.nn.utils.weight_norm's weight_g/weight_v: nnspec's weight_norm= (HF Wav2Vec2's
    positional convolution is written so)."""
    text = import_model("nnspec_user_models:Normed", ["x: [N, 4, L]"])
    assert "weight_norm=2 as conv" in text and "weight_norm=0 as fc" in text
    torch.manual_seed(4)
    _same(user_models.Normed(), _spec(text), torch.randn(2, 4, 9, dtype=torch.float64))


def test_chunk_and_unbind_pieces_are_indexed(user_models):
    text = import_model("nnspec_user_models:Glu", ["x: [N, T, 6]"])
    assert "fc[..., :5]" in text and "fc[..., 5:]" in text and "[..., 1]" in text
    spec = _spec(text)
    _same(user_models.Glu(), spec, torch.randn(2, 5, 6, dtype=torch.float64), source=True)


def test_what_cannot_be_imported_is_one_located_error(user_models, tmp_path, capsys):
    with pytest.raises(ImportFailure, match="control flow"):
        import_model("nnspec_user_models:Loop", ["x: [N, 4]"])
    with pytest.raises(ImportFailure, match=r"the model: no nnspec kind for torch\.cumsum"):
        import_model("nnspec_user_models:Cumulative", ["x: [N, 4]"])
    out = tmp_path / "m.nn"
    assert main(["import", "nnspec_user_models:Cumulative", "--input", "x: [N, 4]",
                 "-o", str(out)]) == 1
    assert "torch.cumsum" in capsys.readouterr().err and not out.exists()
    assert main(["import", "nnspec_user_models:broken", "-o", str(out)]) == 1
    assert "broken() raised ValueError: no weights here" in capsys.readouterr().err
    for argv, what in ((["nnspec_user_models:Nope"], "has no attribute 'Nope'"),
                       (["no_such_module_here:Net"], "cannot import no_such_module_here"),
                       (["not a target"], "package.module:callable"),
                       (["nnspec_user_models:Mlp", "--kwargs", "[1]"], "JSON object"),
                       (["nnspec_user_models:Mlp", "--kwargs", "{"], "not JSON"),
                       (["nnspec_user_models:Mlp", "--input", "x: N, 4"], "NAME: [DIMS]"),
                       (["nnspec_user_models:Mlp", "--input", "a: [N, 16]", "--input",
                         "b: [N, 16]"], "takes 1 inputs")):
        assert main(["import", *argv, "-o", str(out)]) == 2, argv
        assert what in capsys.readouterr().err, argv
        assert not out.exists()


def test_cli_writes_a_spec_that_checks(user_models, tmp_path, capsys):
    out = tmp_path / "net.nn"
    assert main(["import", "nnspec_user_models:Net", "-o", str(out), "--name", "MyNet"]) == 0
    assert "wrote" in capsys.readouterr().err
    text = out.read_text()
    assert "model MyNet(" in text
    assert main(["check", str(out)]) == 0


# ---- names that are paths ---------------------------------------------------------------

def test_layer_names_may_be_paths():
    spec = nnspec.loads(textwrap.dedent("""\
        block Down(x, c) {
            y = x | conv c k=3 s=2 p=1 bias=false as conv1 | batchnorm as bn1
            r = x | conv c k=1 s=2 bias=false as downsample.0 | batchnorm as downsample.1
            return relu(y + r)
        }
        model M(x: [N, 4, H, W]) {
            Down(8) as layer.0 | Down(8) as layer.1
        }
        """))
    keys = list(build_module(spec).state_dict())
    assert "layer.0.downsample.0.weight" in keys and "layer.1.downsample.1.running_var" in keys
    clash = nnspec.loads("model M(x: [N, 4]) {\n    dense 4 as a | dense 4 as a.0\n}\n",
                         strict=False)
    assert [d.code for d in clash.diagnostics] == ["E030"]
    bad = nnspec.loads("model M(x: [N, 4]) {\n    dense 4 as a.training\n}\n", strict=False)
    assert [d.code for d in bad.diagnostics] == ["E070"]


_ENCODER = textwrap.dedent('''
    import torch
    from torch import nn


    class Layer(nn.Module):
        def __init__(self, d=16, heads=4):
            super().__init__()
            self.ln_1 = nn.LayerNorm(d)
            self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
            self.ln_2 = nn.LayerNorm(d)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

        def forward(self, x):
            h = self.ln_1(x)
            x = x + self.attn(h, h, h, need_weights=False)[0]
            return x + self.mlp(self.ln_2(x))


    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(8, 16)
            self.layers = nn.ModuleList([Layer() for _ in range(2)])
            self.ln = nn.LayerNorm(16)

        def forward(self, x):
            x = self.embed(x)
            for layer in self.layers:
                x = layer(x)
            return self.ln(x)
''')


def test_self_attention_encoder(tmp_path, monkeypatch):
    (tmp_path / "nnspec_user_encoder.py").write_text(_ENCODER)
    monkeypatch.syspath_prepend(str(tmp_path))
    import nnspec_user_encoder as enc

    text = import_model("nnspec_user_encoder:Encoder", ["x: [N, T, 8]"])
    assert "attention heads=4 as attn" in text and "Layer() * 2 as layers" in text
    spec = _spec(text)
    torch.manual_seed(5)
    _same(enc.Encoder(), spec, torch.randn(2, 5, 8, dtype=torch.float64))
    _same(enc.Encoder(), spec, torch.randn(3, 9, 8, dtype=torch.float64), numpy=False)
