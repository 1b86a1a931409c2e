"""The bundled example specs (specs/*.nn): they load, and their parameter counts, shapes
and MACs agree with published figures and with hand computation.

The torch cross-checks build torchvision's AlexNet and ResNet-18 by hand (torchvision is
not a dependency) on the meta device, so nothing is allocated.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import nnspec
from nnspec.core.dims import Dim

SPECS = Path(__file__).resolve().parent.parent / "specs"
ALL_SPECS = sorted(SPECS.glob("*.nn"))


def load(name: str) -> nnspec.Spec:
    return nnspec.load(str(SPECS / name))


def per_sample(d: Dim) -> int:
    """A cost that is linear in the batch size N, for N = 1."""
    return d.subs({"N": 1}).value


def dims(t) -> tuple:
    return tuple(d.value if d.is_const else str(d) for d in t.shape)


def conv_out(n: int, k: int, s: int = 1, p: int = 0) -> int:
    return (n + 2 * p - k) // s + 1


# ---- every bundled spec is valid -------------------------------------------------------

def test_specs_folder_is_not_empty():
    assert len(ALL_SPECS) >= 8


@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.name)
def test_spec_loads_without_diagnostics(path):
    spec = nnspec.load(str(path), strict=False)
    assert spec.diagnostics == [], "\n".join(d.render(spec.sources) for d in spec.diagnostics)
    assert spec.model_names
    for name in spec.model_names:
        assert spec.output_type(name) is not None
        assert spec.param_count(name) > 0


# ---- published parameter counts ---------------------------------------------------------

@pytest.mark.parametrize("file, model, count", [
    ("lenet5.nn", "LeNet5", 61_706),
    ("alexnet.nn", "AlexNet", 61_100_840),
    ("vgg16.nn", "VGG16", 138_357_544),
    ("resnet18.nn", "ResNet18", 11_689_512),
    ("keras_mlp.nn", "KerasMLP", 100 * 64 + 64 + 64 * 10 + 10),
    ("dqn.nn", "DQN", 1_693_362),
    ("dcgan.nn", "Generator", 3_576_704),
    ("dcgan.nn", "Discriminator", 2_765_568),
    ("unet.nn", "UNet", 31_030_658),
])
def test_published_parameter_counts(file, model, count):
    assert load(file).param_count(model) == count


def test_keras_mlp_is_7114():
    assert load("keras_mlp.nn").param_count("KerasMLP") == 7_114


def test_dense_1e12_is_counted_instantly():
    t0 = time.perf_counter()
    spec = load("dense_1e12.nn")
    n = spec.param_count("HugeDense")
    elapsed = time.perf_counter() - t0
    assert n == 1_000_000 * 1_000_000 + 1_000_000 == 1_000_001_000_000
    assert elapsed < 1.0
    (row,) = [r for r in spec.layers("HugeDense") if r.kind == "dense"]
    assert spec.state_shapes("HugeDense")["hidden.weight"].shape == (1_000_000, 1_000_000)
    assert per_sample(row.macs) == 10 ** 12


def test_hand_counted_small_specs():
    # cnn_small: conv (no bias) + batchnorm (2c) per ConvBN, widths 32/64/128, dense 128->10
    total, c_in = 0, 3
    for c in (32, 64, 128):
        total += c_in * c * 9 + 2 * c + c * c * 9 + 2 * c
        c_in = c
    total += 128 * 10 + 10
    assert load("cnn_small.nn").param_count("SmallCNN") == total == 288_746
    ae = load("autoencoder_mlp.nn")
    assert ae.param_count("Encoder") == 784 * 256 + 256 + 256 * 32 + 32
    assert ae.param_count("Decoder") == 32 * 256 + 256 + 256 * 784 + 784
    text = load("conv1d_text.nn")
    assert text.param_count("TextCNN") == (64 * 128 * 5 + 128) + (128 * 128 * 3 + 128) \
        + (128 * 5 + 5)


# ---- shapes -------------------------------------------------------------------------

def test_alexnet_spatial_sizes():
    spec = load("alexnet.nn")
    sizes = [dims(r.output)[2] for r in spec.layers("AlexNet") if r.kind in ("conv", "maxpool")]
    s = 224
    want = []
    for k, st, p in [(11, 4, 2), (3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1), (3, 1, 1),
                     (3, 1, 1), (3, 2, 0)]:
        s = conv_out(s, k, st, p)
        want.append(s)
    assert sizes == want == [55, 27, 27, 13, 13, 13, 13, 6]
    flat = [r for r in spec.layers("AlexNet") if r.kind == "flatten"][0]
    assert dims(flat.output) == ("N", 256 * 6 * 6)
    assert str(spec.output_type("AlexNet")) == "[N, 1000]"


def test_vgg16_stage_sizes():
    spec = load("vgg16.nn")
    pools = [dims(r.output) for r in spec.layers("VGG16") if r.kind == "maxpool"]
    assert pools == [("N", 64, 112, 112), ("N", 128, 56, 56), ("N", 256, 28, 28),
                     ("N", 512, 14, 14), ("N", 512, 7, 7)]
    convs = [r for r in spec.layers("VGG16") if r.kind == "conv"]
    assert len(convs) == 13  # configuration D: 2 + 2 + 3 + 3 + 3
    assert all(dims(c.output)[2] == dims(c.inputs[0])[2] for c in convs)  # 3x3, p=1
    assert len([r for r in spec.layers("VGG16") if r.kind == "dense"]) == 3


def test_resnet18_shapes():
    spec = load("resnet18.nn")
    out = {r.name: dims(r.output) for r in spec.layers("ResNet18")}
    assert out["conv1"] == ("N", 64, 112, 112)  # (224 + 6 - 7) // 2 + 1
    assert out["maxpool_0"] == ("N", 64, 56, 56)
    assert out["layer2.down_0.conv1"] == ("N", 128, 28, 28)
    assert out["layer2.down_0.downsample_conv"] == ("N", 128, 28, 28)
    assert out["layer4.basic_0.conv2"] == ("N", 512, 7, 7)
    assert out["fc"] == ("N", 1000)


def test_small_spec_shapes():
    cnn = {r.name: dims(r.output) for r in load("cnn_small.nn").layers("SmallCNN")}
    assert cnn["stage1.convbn_0.conv"] == ("N", 32, 32, 32)  # p=same
    assert cnn["stage1.convbn_1.conv"] == ("N", 32, conv_out(32, 3, 2, 1), 16)
    assert cnn["stage3.convbn_1.conv"] == ("N", 128, 4, 4)
    text = {r.name: dims(r.output) for r in load("conv1d_text.nn").layers("TextCNN")}
    assert text["conv1"] == ("N", 128, 100)
    assert text["conv2"] == ("N", 128, 50)
    assert text["classifier"] == ("N", 5)


# ---- MACs ---------------------------------------------------------------------------

def test_lenet5_macs():
    spec = load("lenet5.nn")
    rows = spec.layers("LeNet5")
    conv1 = rows[0]
    assert conv1.kind == "conv"
    assert per_sample(conv1.macs) == 6 * 28 * 28 * 5 * 5 == 117_600
    dense = [r for r in rows if r.kind == "dense"]
    assert [per_sample(r.macs) for r in dense] == [400 * 120, 120 * 84, 84 * 10]
    assert str(conv1.macs) == "117600*N"


def test_alexnet_macs():
    spec = load("alexnet.nn")
    # (c_in, c_out, k, output side) of the five convolutions; (in, out) of the dense layers
    convs = [(3, 64, 11, 55), (64, 192, 5, 27), (192, 384, 3, 13), (384, 256, 3, 13),
             (256, 256, 3, 13)]
    dense = [(256 * 6 * 6, 4096), (4096, 4096), (4096, 1000)]
    conv_macs = sum(co * s * s * ci * k * k for ci, co, k, s in convs)
    dense_macs = sum(i * o for i, o in dense)
    hand = conv_macs + dense_macs
    assert hand == 714_188_480  # the widely cited ~0.71 GMAC
    assert abs(hand / 1e9 - 0.71) < 0.01
    rows = spec.layers("AlexNet")
    weighted = sum(per_sample(r.macs) for r in rows if r.kind in ("conv", "dense"))
    assert weighted == hand
    # pooling is counted as one op per window element: 3x3 windows
    pool = 9 * (64 * 27 * 27 + 192 * 13 * 13 + 256 * 6 * 6)
    assert sum(per_sample(r.macs) for r in rows if r.kind == "maxpool") == pool
    assert per_sample(spec.macs("AlexNet")) == hand + pool + sum(
        per_sample(r.macs) for r in rows if r.kind not in ("conv", "dense", "maxpool"))


# ---- compositions -------------------------------------------------------------------

def test_autoencoder_composition_passes():
    spec = load("autoencoder_mlp.nn")
    assert spec.ok
    assert len(spec.program.checks) == 1
    assert spec.program.checks[0].chain == ["Decoder", "Encoder"]


def test_broken_composition_is_diagnosed():
    text = (SPECS / "autoencoder_mlp.nn").read_text()
    text, n = re.subn(r"dense 32 as code( +): \[_, 32\]", r"dense 16 as code\1: [_, 16]", text)
    assert n == 1
    text = text.replace("model Encoder(x: [N, 784]) -> [N, 32]",
                        "model Encoder(x: [N, 784]) -> [N, 16]")
    spec = nnspec.loads(text, "broken.nn", strict=False)
    # the composition fails, and so does the whole Autoencoder's annotation of the code
    assert sorted(d.code for d in spec.diagnostics) == ["E311", "E321"]
    d = next(d for d in spec.diagnostics if d.code == "E321")
    assert "Decoder" in d.message
    assert d.span is not None and d.span.line == text.splitlines().index(
        "check Decoder(Encoder)") + 1
    assert any("[N, 16]" in n for n in d.notes)
    with pytest.raises(nnspec.SpecError):
        nnspec.loads(text, "broken.nn")


# ---- torch cross-checks -------------------------------------------------------------

def _torch_alexnet(nn):
    """torchvision.models.AlexNet, layer for layer."""

    class AlexNet(nn.Module):
        def __init__(self, num_classes=1000, dropout=0.5):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(64, 192, kernel_size=5, padding=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(192, 384, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
            )
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(p=dropout),
                nn.Linear(256 * 6 * 6, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p=dropout),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Linear(4096, num_classes),
            )

    return AlexNet()


def _torch_resnet18(nn):
    """torchvision.models.resnet18(), layer for layer (BasicBlock, [2, 2, 2, 2])."""

    def conv3x3(i, o, stride=1):
        return nn.Conv2d(i, o, kernel_size=3, stride=stride, padding=1, bias=False)

    class BasicBlock(nn.Module):
        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = conv3x3(inplanes, planes, stride)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = conv3x3(planes, planes)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample

    class ResNet(nn.Module):
        def __init__(self, layers=(2, 2, 2, 2), num_classes=1000):
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(64, layers[0])
            self.layer2 = self._make_layer(128, layers[1], stride=2)
            self.layer3 = self._make_layer(256, layers[2], stride=2)
            self.layer4 = self._make_layer(512, layers[3], stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, num_classes)

        def _make_layer(self, planes, blocks, stride=1):
            downsample = None
            if stride != 1 or self.inplanes != planes:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes),
                )
            layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes
            for _ in range(1, blocks):
                layers.append(BasicBlock(self.inplanes, planes))
            return nn.Sequential(*layers)

    return ResNet()


def _build_on_meta(torch, make):
    with torch.device("meta"):
        return make(torch.nn)


def _compare(torch_model, spec, name):
    ours = spec.state_shapes(name)
    theirs = torch_model.state_dict()
    assert sum(p.numel() for p in torch_model.parameters()) == spec.param_count(name)
    # every state_dict entry (buffers included), in order, has the same shape
    assert [tuple(w.shape) for w in ours.values()] == [tuple(t.shape) for t in theirs.values()]
    # and the trainable ones are exactly the parameters
    assert [tuple(w.shape) for w in ours.values() if w.trainable] == \
        [tuple(p.shape) for p in torch_model.parameters()]
    return dict(zip(ours, theirs))


def test_alexnet_matches_torchvision_layout():
    torch = pytest.importorskip("torch")
    model = _build_on_meta(torch, _torch_alexnet)
    spec = load("alexnet.nn")
    mapping = _compare(model, spec, "AlexNet")
    assert sum(p.numel() for p in model.parameters()) == 61_100_840
    # the readable names map onto torchvision's Sequential indices by order
    assert mapping == {
        "conv1.weight": "features.0.weight", "conv1.bias": "features.0.bias",
        "conv2.weight": "features.3.weight", "conv2.bias": "features.3.bias",
        "conv3.weight": "features.6.weight", "conv3.bias": "features.6.bias",
        "conv4.weight": "features.8.weight", "conv4.bias": "features.8.bias",
        "conv5.weight": "features.10.weight", "conv5.bias": "features.10.bias",
        "fc6.weight": "classifier.1.weight", "fc6.bias": "classifier.1.bias",
        "fc7.weight": "classifier.4.weight", "fc7.bias": "classifier.4.bias",
        "fc8.weight": "classifier.6.weight", "fc8.bias": "classifier.6.bias",
    }


def test_resnet18_matches_torchvision_layout():
    torch = pytest.importorskip("torch")
    model = _build_on_meta(torch, _torch_resnet18)
    spec = load("resnet18.nn")
    mapping = _compare(model, spec, "ResNet18")
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    # names agree with torchvision except for the documented renamings
    def torchvision_name(key):
        for i, b in ((0, "down_0"), (1, "basic_0")):
            key = key.replace(f".{b}.", f".{i}.")
        return key.replace("downsample_conv", "downsample.0").replace(
            "downsample_bn", "downsample.1")
    assert all(torchvision_name(k) == v for k, v in mapping.items()), [
        (k, v) for k, v in mapping.items() if torchvision_name(k) != v]


@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.name)
def test_every_spec_round_trips_through_the_json_ir(path):
    from nnspec import ir

    spec = nnspec.load(str(path))
    again = ir.Program.from_json(spec.program.to_json())
    assert again == spec.program
    reloaded = nnspec.from_ir(again)
    assert reloaded.ok
    for name in spec.model_names:
        assert reloaded.param_count(name) == spec.param_count(name)
        assert str(reloaded.output_type(name)) == str(spec.output_type(name))


def test_readme_shows_what_check_prints_on_the_bundled_specs(capsys):
    from nnspec.tools.cli import main

    readme = (SPECS.parent / "README.md").read_text()
    shown = readme.split("$ nnspec check specs/\n", 1)[1].split("\n", 1)[0]
    assert main(["check", str(SPECS)]) == 0
    cap = capsys.readouterr()
    assert shown in (cap.out + cap.err).splitlines()
