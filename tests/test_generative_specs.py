"""The generative and dense-prediction specs (dcgan.nn, conv_autoencoder.nn, unet.nn,
superres.nn) and the adaptive pooling of VGG-16 and AlexNet: published parameter counts
and shapes, the networks written by hand in PyTorch (the DCGAN tutorial's Sequentials,
ESPCN, a valid-convolution U-Net) with the same weights, emitted source, and both backends
cross-checked.

Everything runs in float64 on tiny batches; the 572x572 U-Net is only counted (on the
meta device) and a small U-Net from the same blocks runs instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.backends.numpy import NumpyModel
from nnspec.layers import REGISTRY

from _util import import_source

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from nnspec.backends.torch import build_module, emit_source  # noqa: E402
from nnspec.tools.crosscheck import crosscheck  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"


def load(name: str) -> nnspec.Spec:
    return nnspec.load(str(SPECS / name))


def dims(t) -> tuple:
    return tuple(d.value if d.is_const else str(d) for d in t.shape)


def outputs(spec: nnspec.Spec, model: str) -> dict:
    return {r.name: dims(r.output) for r in spec.layers(model)}


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def load_by_order(module, state: dict) -> None:
    """Load ``state`` into ``module`` by position: the i-th tensor to the i-th entry,
    whose shapes must match one to one."""
    mine = module.state_dict()
    assert len(mine) == len(state)
    new = {}
    for (k, v), (k2, v2) in zip(mine.items(), state.items()):
        assert tuple(v.shape) == tuple(v2.shape), (k, k2)
        new[k] = v2
    module.load_state_dict(new)


def randomise_bn_stats(module, gen) -> None:
    """Running statistics other than 0 and 1, so that eval-mode batchnorm is not the
    identity (and a mix-up of mean and variance would show)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen,
                                             dtype=torch.float64) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen,
                                           dtype=torch.float64) + 0.5)


def numpy_of(spec: nnspec.Spec, model: str, state: dict) -> NumpyModel:
    return NumpyModel(spec, model, params={k: v.numpy() for k, v in state.items()},
                      dtype="float64")


def emitted(spec: nnspec.Spec, tmp_path, name: str):
    """The module of every model class ``emit_source`` writes for the spec."""
    path = tmp_path / f"{name}.py"
    path.write_text(emit_source(spec, all_models=True))
    return import_source(path, name)


# ---- DCGAN --------------------------------------------------------------------------------

NZ, NGF, NDF, NC = 100, 64, 64, 3


class TutorialGenerator(nn.Module):
    """The PyTorch DCGAN tutorial's Generator, as written there."""

    def __init__(self):
        super().__init__()
        ngf, nz, nc = NGF, NZ, NC
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, x):
        return self.main(x)


class TutorialDiscriminator(nn.Module):
    """The PyTorch DCGAN tutorial's Discriminator, as written there."""

    def __init__(self):
        super().__init__()
        ndf, nc = NDF, NC
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return self.main(x)


def weights_init(m):
    """The tutorial's weights_init: conv weights N(0, 0.02), batchnorm N(1, 0.02) and 0."""
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


def test_dcgan_published_counts_and_shapes():
    spec = load("dcgan.nn")
    assert spec.param_count("Generator") == 3_576_704
    assert spec.param_count("Discriminator") == 2_765_568
    assert str(spec.output_type("Generator")) == "[N, 3, 64, 64]"
    assert str(spec.output_type("Discriminator")) == "[N, 1, 1, 1]"
    g = outputs(spec, "Generator")
    assert [g[f"up{i}.conv"] for i in range(1, 5)] == [
        ("N", 512, 4, 4), ("N", 256, 8, 8), ("N", 128, 16, 16), ("N", 64, 32, 32)]
    d = outputs(spec, "Discriminator")
    assert [d["conv1"]] + [d[f"down{i}.conv"] for i in range(2, 5)] == [
        ("N", 64, 32, 32), ("N", 128, 16, 16), ("N", 256, 8, 8), ("N", 512, 4, 4)]
    assert [c.chain for c in spec.program.checks] == [["Discriminator", "Generator"]]
    with torch.device("meta"):
        assert n_params(TutorialGenerator()) == 3_576_704
        assert n_params(TutorialDiscriminator()) == 2_765_568


def test_dcgan_has_the_tutorials_initialisation():
    shapes = load("dcgan.nn").state_shapes
    for model in ("Generator", "Discriminator"):
        inits = {k: w.init for k, w in shapes(model).items() if w.trainable}
        convs = [k for k in inits if k.endswith("conv.weight") or k.startswith(
            ("out.", "conv1."))]
        assert len(convs) == 5
        for k, init in inits.items():
            if k in convs:
                assert init == ("normal", 0.02), k  # N(0, 0.02)
            elif k.endswith("bn.weight"):
                assert init == ("gauss", 1.0, 0.02), k  # N(1, 0.02)
            else:
                assert k.endswith("bn.bias") and init == ("zeros",), k


def test_dcgan_check_fails_when_the_generator_gives_another_size():
    text = (SPECS / "dcgan.nn").read_text()
    old = "convtranspose nc k=4 s=2 p=1 bias=false init=W as out | tanh   : [N, 3, 64, 64]"
    assert old in text
    text = text.replace(old, "convtranspose nc k=4 s=1 p=1 bias=false init=W as out | tanh")
    text = text.replace("model Generator(z: [N, nz, 1, 1]) -> [N, nc, 64, 64]",
                        "model Generator(z: [N, nz, 1, 1])")
    spec = nnspec.loads(text, "dcgan.nn", strict=False)
    (d,) = spec.diagnostics
    assert d.code == "E321"
    assert d.message == ("Discriminator's input x does not fit the output of Generator")
    assert d.span.line == text.splitlines().index("check Discriminator(Generator)") + 1
    assert d.notes[1:] == ["Generator gives [N, 3, 33, 33]",
                           "dim 2: expected 64, got 33"]


@pytest.mark.parametrize("model, tutorial, shape", [
    ("Generator", TutorialGenerator, (2, NZ, 1, 1)),
    ("Discriminator", TutorialDiscriminator, (2, NC, 64, 64)),
])
def test_dcgan_tutorial_state_dict_loads_by_order(tmp_path, model, tutorial, shape):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    ref = tutorial().double()
    ref.apply(weights_init)
    with torch.no_grad():
        randomise_bn_stats(ref, gen)
    ref.eval()
    spec = load("dcgan.nn")
    built = build_module(spec, model, seed=0, dtype=torch.float64).eval()
    load_by_order(built, ref.state_dict())
    mod = emitted(spec, tmp_path, f"dcgan_{model.lower()}")
    emit = getattr(mod, model)().double().eval()
    load_by_order(emit, ref.state_dict())
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        want = ref(x)
        got_built, got_emit = built(x), emit(x)
    assert want.shape == got_built.shape == got_emit.shape
    assert torch.allclose(got_built, want, rtol=0, atol=1e-12)
    assert torch.allclose(got_emit, want, rtol=0, atol=1e-12)
    got_np = numpy_of(spec, model, built.state_dict())(x.numpy())
    np.testing.assert_allclose(got_np, want.numpy(), rtol=0, atol=1e-12)
    # the outputs are not trivially equal: a different input gives a different output
    assert not torch.allclose(want, ref(torch.flip(x, [0])))


def test_dcgan_emits_pytorch_as_written():
    src = emit_source(load("dcgan.nn"), all_models=True)
    # one class per block: Up's instances differ in their channels, stride and padding
    assert "self.up1 = Up(in_channels=100, c=512, stride=1, pad=0)" in src
    assert "in_channels, c, kernel_size=4, stride=stride, padding=pad, bias=False" in src
    assert "nn.Conv2d(3, 64, kernel_size=4, stride=2, padding=1, bias=False)" in src
    assert "nn.BatchNorm2d(c)" in src
    assert "F.leaky_relu(" in src and "0.2" in src


@pytest.mark.parametrize("model", ["Generator", "Discriminator"])
def test_dcgan_crosscheck(model):
    report = crosscheck(load("dcgan.nn"), model, "float64", seed=0, dims={"N": 2})
    assert report.ok, report.render()
    assert report.first_shape_mismatch is None
    assert len(report.rows) == (14 if model == "Generator" else 13)


@pytest.mark.parametrize("n, side, groups", [(3, 4, 1), (4, 3, 2), (2, 17, 2), (1, 4, 1)])
def test_transposed_conv_kernel_folds_the_batch_alike(monkeypatch, n, side, groups):
    # small images (side 3, 4) take the batch-folded GEMM, 17x17 the per-image one; both
    # equal torch's and each other
    from nnspec.layers.kernels import windows as ct

    rng = np.random.default_rng(side)
    x = rng.standard_normal((n, 4, side, side + 1))
    w = rng.standard_normal((4, 3, 4, 3))
    b = rng.standard_normal(3 * groups)
    args = dict(stride=(2, 1), pads=((1, 1), (0, 1)), dilation=(1, 2),
                output_padding=(1, 0), groups=groups)
    got = ct.conv_transpose_nd(x, w, b, **args)
    want = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                              stride=(2, 1), padding=(1, 0), output_padding=(1, 0),
                              groups=groups, dilation=(1, 2))[..., :-1].numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    monkeypatch.setattr(ct, "_FOLD_BELOW", 0)
    np.testing.assert_allclose(ct.conv_transpose_nd(x, w, b, **args), got, rtol=0,
                               atol=1e-13)


# ---- convolutional autoencoder --------------------------------------------------------------


def test_conv_autoencoder_round_trip_type():
    spec = load("conv_autoencoder.nn")
    assert spec.ok
    assert [c.chain for c in spec.program.checks] == [["Decoder", "Encoder"]]
    assert str(spec.output_type("Encoder")) == "[N, 64, 1, 1]"
    # the composition Decoder(Encoder) returns the encoder's input type
    (enc_in,) = spec.types("Encoder").inputs()
    assert str(enc_in) == "[N, 1, 28, 28]"
    assert spec.output_type("Decoder") == enc_in
    assert outputs(spec, "Decoder")["deconv2"] == ("N", 16, 14, 14)
    assert spec.param_count("Encoder") == 160 + 4_640 + 100_416 == 105_216
    assert spec.param_count("Decoder") == 100_384 + 4_624 + 145 == 105_153
    # size=(28, 28) resolved the last transposed convolution's output_padding to 1
    deconv3 = next(r for r in spec.layers("Decoder") if r.name == "deconv3")
    assert REGISTRY[deconv3.kind].detail(deconv3.node.p, deconv3.inputs).endswith(
        "output_padding=(1, 1)")


def test_conv_autoencoder_without_output_padding_fails_the_check():
    text = (SPECS / "conv_autoencoder.nn").read_text()
    # the layout of the spec is nnspec fmt's: match the statements, whatever the spacing
    text, n = re.subn(r"convtranspose 16 k=3 s=2 p=1 output_padding=1 as deconv2 \| relu +"
                      r": \[N, 16, 14, 14\]", "convtranspose 16 k=3 s=2 p=1 as deconv2 | relu",
                      text)
    assert n == 1
    text, n = re.subn(r"size=\(28, 28\) as deconv3 \| sigmoid +: \[N, 1, 28, 28\]",
                      "as deconv3 | sigmoid", text)
    assert n == 1
    text = text.replace("model Decoder(z: [N, 64, 1, 1]) -> [N, 1, 28, 28]",
                        "model Decoder(z: [N, 64, 1, 1])")
    spec = nnspec.loads(text, "conv_autoencoder.nn", strict=False)
    # each model is fine on its own (7 -> 13 -> 25); the contract `-> x` is not
    (d,) = spec.diagnostics
    assert (d.code, d.span.line, d.message) == (
        "E323", 25, "Decoder(Encoder) does not return Encoder's input x [N, 1, 28, 28]: it "
        "gives [N, 1, 25, 25]")
    assert d.notes[-1] == "dim 2: Encoder's input x has 28, the composition gives 25"
    assert str(spec.output_type("Decoder")) == "[N, 1, 25, 25]"


@pytest.mark.parametrize("model", ["Encoder", "Decoder"])
def test_conv_autoencoder_crosscheck(model):
    report = crosscheck(load("conv_autoencoder.nn"), model, "float64", seed=0,
                        dims={"N": 3})
    assert report.ok, report.render()
    assert report.first_shape_mismatch is None


def test_conv_autoencoder_matches_torch(tmp_path):
    spec = load("conv_autoencoder.nn")
    enc = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Conv2d(32, 64, 7)).double().eval()
    dec = nn.Sequential(nn.ConvTranspose2d(64, 32, 7), nn.ReLU(),
                        nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1),
                        nn.ReLU(),
                        nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1),
                        nn.Sigmoid()).double().eval()
    mod = emitted(spec, tmp_path, "conv_ae")
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(3),
                   dtype=torch.float64)
    e, d = mod.Encoder().double().eval(), mod.Decoder().double().eval()
    load_by_order(e, enc.state_dict())
    load_by_order(d, dec.state_dict())
    with torch.no_grad():
        want = dec(enc(x))
        got = d(e(x))
    assert got.shape == (2, 1, 28, 28)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)


# ---- U-Net ------------------------------------------------------------------------------


class DoubleConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.double_conv = nn.Sequential(nn.Conv2d(cin, cout, 3), nn.ReLU(inplace=True),
                                         nn.Conv2d(cout, cout, 3), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    round_up = False  # crop at ceil((in - out) / 2) instead (a test's wrong convention)

    def __init__(self, cin, cout):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(cin, cout)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        # the original paper's crop of the skip (x2) to the upsampled size
        dh = (x2.size(2) - x1.size(2) + self.round_up) // 2
        dw = (x2.size(3) - x1.size(3) + self.round_up) // 2
        x2 = x2[:, :, dh:dh + x1.size(2), dw:dw + x1.size(3)]
        return self.conv(torch.cat([x2, x1], dim=1))


class TorchUNet(nn.Module):
    """The common PyTorch U-Net (inc, down1..down4, up1..up4, outc) with valid
    convolutions and cropped skips, no batchnorm; ``base`` channels and ``depth`` levels."""

    def __init__(self, n_channels=1, n_classes=2, base=64, depth=4):
        super().__init__()
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.inc = DoubleConv(n_channels, base)
        self.downs = nn.ModuleList(Down(a, b) for a, b in zip(widths, widths[1:]))
        self.ups = nn.ModuleList(Up(b, a) for a, b in reversed(list(zip(widths,
                                                                        widths[1:]))))
        self.outc = nn.Conv2d(base, n_classes, kernel_size=1)

    def forward(self, x):
        skips = [self.inc(x)]
        for d in self.downs:
            skips.append(d(skips[-1]))
        y = skips.pop()
        for u in self.ups:
            y = u(y, skips.pop())
        return self.outc(y)


def test_unet_published_shapes():
    spec = load("unet.nn")
    assert str(spec.output_type("UNet")) == "[N, 2, 388, 388]"
    out = outputs(spec, "UNet")
    assert [out[k] for k in ("inc.conv2", "down1.conv.conv2", "down2.conv.conv2",
                             "down3.conv.conv2", "down4.conv.conv2")] == [
        ("N", 64, 568, 568), ("N", 128, 280, 280), ("N", 256, 136, 136),
        ("N", 512, 64, 64), ("N", 1024, 28, 28)]
    # each skip is cropped to the upsampled size: 64 -> 56, 136 -> 104, 280 -> 200,
    # 568 -> 392 (the paper's Fig. 1)
    assert [out[f"up{i}.crop_like_0"] for i in range(1, 5)] == [
        ("N", 512, 56, 56), ("N", 256, 104, 104), ("N", 128, 200, 200),
        ("N", 64, 392, 392)]
    assert [out[f"up{i}.conv.conv2"][2] for i in range(1, 5)] == [52, 100, 196, 388]


def test_unet_parameter_count():
    spec = load("unet.nn")
    # by hand, from the layer list: a 3x3 conv a -> b has 9*a*b + b parameters, the 2x2
    # up-convolution 4*a*b + b, the 1x1 classifier 64*2 + 2
    def conv(a, b, k=3):
        return k * k * a * b + b

    def double(a, b):
        return conv(a, b) + conv(b, b)

    widths = [64, 128, 256, 512, 1024]
    hand = double(1, 64) + sum(double(a, b) for a, b in zip(widths, widths[1:]))
    hand += sum(conv(b, a, 2) + double(b, a) for a, b in zip(widths, widths[1:]))
    hand += conv(64, 2, 1)
    assert hand == 31_030_658
    with torch.device("meta"):
        ref = TorchUNet()
    assert n_params(ref) == spec.param_count("UNet") == hand
    # and the same tensors in the same order
    assert [tuple(w.shape) for w in spec.state_shapes("UNet").values()] == \
        [tuple(t.shape) for t in ref.state_dict().values()]


# the same blocks, from unet.nn itself, two levels deep and 4 channels wide; 45 leaves an
# odd margin (41 - 8 = 33) for the last crop
TINY = """use "unet.nn"
model TinyUNet(x: [N, 1, 45, 45]) -> [N, 2, 4, 4] {
    x1 = x | DoubleConv(4) as inc            : [N, 4, 41, 41]
    x2 = x1 | Down(8) as down1               : [N, 8, 16, 16]
    x3 = x2 | Down(16) as down2              : [N, 16, 4, 4]
    y = Up(x3, x2, 8) as up1                 : [N, 8, 4, 4]
    y = Up(y, x1, 4) as up2                  : [N, 4, 4, 4]
    conv 2 k=1 as outc
}
"""


def tiny_unet() -> nnspec.Spec:
    return nnspec.loads(TINY, str(SPECS / "tiny_unet.nn"))


def test_tiny_unet_crosscheck():
    report = crosscheck(tiny_unet(), "TinyUNet", "float64", seed=0, dims={"N": 2})
    assert report.ok, report.render()
    assert report.first_shape_mismatch is None


def test_tiny_unet_gradients_agree():
    from nnspec.tools.crosscheck import crosscheck_grad

    report = crosscheck_grad(tiny_unet(), "TinyUNet", "float64", seed=0, dims={"N": 2})
    assert report.ok, report.render()
    assert len(report.params) > 20  # every conv's weight and bias, and the input


def test_tiny_unet_matches_torch(tmp_path):
    spec = tiny_unet()
    ref = TorchUNet(base=4, depth=2).double().eval()
    built = build_module(spec, "TinyUNet", seed=0, dtype=torch.float64).eval()
    load_by_order(built, ref.state_dict())
    mod = emitted(spec, tmp_path, "tiny_unet")
    emit = mod.TinyUNet().double().eval()
    load_by_order(emit, ref.state_dict())
    x = torch.randn(2, 1, 45, 45, generator=torch.Generator().manual_seed(4),
                    dtype=torch.float64)
    with torch.no_grad():
        want = ref(x)
        a, b = built(x), emit(x)
    assert want.shape == (2, 2, 4, 4)
    assert torch.allclose(a, want, rtol=0, atol=1e-12)
    assert torch.allclose(b, want, rtol=0, atol=1e-12)
    got_np = numpy_of(spec, "TinyUNet", built.state_dict())(x.numpy())
    np.testing.assert_allclose(got_np, want.numpy(), rtol=0, atol=1e-12)
    # the last crop's margin is odd (41 - 8 = 33): cropping from ceil(33 / 2) instead of
    # floor(33 / 2) gives another output, so the comparison above pins the window
    with torch.no_grad():
        for up in ref.ups:
            up.round_up = True
        assert not torch.allclose(ref(x), want, atol=1e-6)


def test_unet_too_small_input_is_located():
    text = re.sub(r"[ \t]+: \[[^\]\n]*\][ \t]*$", "", TINY, flags=re.M)
    text = text.replace("[N, 1, 45, 45]) -> [N, 2, 4, 4]", "[N, 1, 30, 30])")
    spec = nnspec.loads(text, str(SPECS / "tiny_unet.nn"), strict=False)
    (d,) = spec.diagnostics
    assert (d.code, d.message) == ("E301", "conv output height is 0")
    # 30 -> 26 -> 13 -> 9 -> 4 -> 2 -> 0: the second conv of down2's DoubleConv
    assert d.notes[0] == ("F_out = floor((F_in - k + 2p) / s) + 1 = "
                          "floor((2 - 3 + 2*0) / 1) + 1 = 0")
    unet = (SPECS / "unet.nn").read_text().splitlines()
    assert Path(d.span.file).name == "unet.nn"
    assert unet[d.span.line - 1][d.span.col - 1:d.span.end_col - 1] == "conv c k=3 as conv2"
    assert d.notes[2].startswith("in block DoubleConv, called at ")
    down = unet.index("    maxpool k=2 s=2 | DoubleConv(c) as conv") + 1
    assert d.notes[2].endswith(f"unet.nn:{down}:23")
    assert d.notes[3].startswith("in block Down, called at ")
    assert d.notes[3].endswith("tiny_unet.nn:5:15")  # x3 = x2 | Down(16) as down2


# ---- super-resolution -------------------------------------------------------------------


class TorchESPCN(nn.Module):
    def __init__(self, r=3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 5, padding=2)
        self.conv2 = nn.Conv2d(64, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, r * r, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(r)

    def forward(self, x):
        x = torch.tanh(self.conv1(x))
        x = torch.tanh(self.conv2(x))
        return self.pixel_shuffle(self.conv3(x))


def test_superres_symbolic_shapes():
    spec = load("superres.nn")
    assert str(spec.output_type("ESPCN")) == "[N, 1, 3*H, 3*W]"
    assert outputs(spec, "ESPCN")["conv3"] == ("N", 9, "H", "W")
    assert spec.param_count("ESPCN") == 1_664 + 18_464 + 2_601 == 22_729
    assert n_params(TorchESPCN()) == 22_729


def test_superres_matches_torch(tmp_path):
    spec = load("superres.nn")
    ref = TorchESPCN().double().eval()
    built = build_module(spec, seed=0, dtype=torch.float64).eval()
    load_by_order(built, ref.state_dict())
    emit = emitted(spec, tmp_path, "espcn").ESPCN().double().eval()
    load_by_order(emit, ref.state_dict())
    x = torch.randn(2, 1, 5, 7, generator=torch.Generator().manual_seed(5),
                    dtype=torch.float64)
    with torch.no_grad():
        want = ref(x)
        a, b = built(x), emit(x)
    assert want.shape == (2, 1, 15, 21)
    assert torch.allclose(a, want, rtol=0, atol=1e-12)
    assert torch.allclose(b, want, rtol=0, atol=1e-12)
    got_np = numpy_of(spec, "ESPCN", built.state_dict())(x.numpy())
    np.testing.assert_allclose(got_np, want.numpy(), rtol=0, atol=1e-12)


def test_superres_crosscheck():
    report = crosscheck(load("superres.nn"), "ESPCN", "float64", seed=0,
                        dims={"N": 2, "H": 4, "W": 3})
    assert report.ok, report.render()
    assert report.first_shape_mismatch is None
    assert report.rows[-1].shape == (2, 1, 12, 9)


# ---- VGG-16 and AlexNet at other input sizes ----------------------------------------------


def resized(name: str, size) -> str:
    """The bundled spec with another input size and without its shape annotations (which
    state the 224x224 sizes)."""
    text = (SPECS / name).read_text()
    assert "x: [N, 3, 224, 224]" in text
    text = text.replace("x: [N, 3, 224, 224]", f"x: [N, 3, {size}, {size}]")
    return re.sub(r"[ \t]+: \[[^\]\n]*\][ \t]*$", "", text, flags=re.M)


def _torch_vgg16(nn):
    """torchvision.models.vgg16(): configuration D, AdaptiveAvgPool2d((7, 7))."""
    layers, c = [], 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(nn.Sequential(*layers), nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(),
                         nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                         nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                         nn.Linear(4096, 1000))


def _torch_alexnet(nn):
    """torchvision.models.alexnet(), AdaptiveAvgPool2d((6, 6)) included."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(),
        nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
        nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 1000))


CLASSIFIERS = [
    # file, model, published count, torch reference, sizes that work (the minimum last)
    ("vgg16.nn", "VGG16", 138_357_544, _torch_vgg16, (256, 100, 32)),
    ("alexnet.nn", "AlexNet", 61_100_840, _torch_alexnet, (256, 100, 63)),
]


@pytest.mark.parametrize("file, model, count, make, sizes", CLASSIFIERS,
                         ids=["vgg16", "alexnet"])
def test_adaptive_pool_takes_other_input_sizes(file, model, count, make, sizes):
    bundled = load(file)
    pool = next(r for r in bundled.layers(model) if r.kind == "adaptive_avgpool")
    assert pool.name == "avgpool" and dims(pool.inputs[0]) == dims(pool.output)
    with torch.device("meta"):
        ref = make(nn)
    for size in sizes:
        spec = nnspec.loads(resized(file, size), file)
        assert str(spec.output_type(model)) == "[N, 1000]"
        assert spec.param_count(model) == count
        assert [tuple(w.shape) for w in spec.state_shapes(model).values()] == \
            [tuple(w.shape) for w in bundled.state_shapes(model).values()]
        # torch runs the same network at that size (on the meta device: shapes only)
        assert tuple(ref(torch.empty(1, 3, size, size, device="meta")).shape) == (1, 1000)
    # a symbolic input size checks too: the pool's output is fixed whatever H is
    spec = nnspec.loads(resized(file, "H").replace("H, H]", "H, W]"), file)
    assert str(spec.output_type(model)) == "[N, 1000]"
    assert spec.param_count(model) == count


@pytest.mark.parametrize("file, size, line, layer, formula, came", [
    # 31 -> 15 -> 7 -> 3 -> 1 -> stage5's pool of 1
    ("vgg16.nn", 31, "    ConvRelu(c) * n | maxpool k=2 s=2", "maxpool k=2 s=2",
     "floor((1 - 2 + 2*0) / 2) + 1 = 0", "in block Stage, called at vgg16.nn:27:5"),
    # conv1 (62 + 4 - 11)/4 + 1 = 14 -> 6 -> 2 -> the last pool of 2
    ("alexnet.nn", 62, "    maxpool k=3 s=2", "maxpool k=3 s=2",
     "floor((2 - 3 + 2*0) / 2) + 1 = 0", None),
])
def test_below_the_minimum_input_is_located(file, size, line, layer, formula, came):
    text = resized(file, size)
    spec = nnspec.loads(text, file, strict=False)
    (d,) = spec.diagnostics
    assert (d.code, d.message) == ("E301", "maxpool output height is 0")
    assert d.notes[0] == f"F_out = floor((F_in - k + 2p) / s) + 1 = {formula}"
    lines = text.splitlines()
    assert lines[d.span.line - 1].startswith(line)
    assert lines[d.span.line - 1][d.span.col - 1:d.span.end_col - 1] == layer
    if came:
        assert came in d.notes
    else:  # AlexNet's last pool, right before the adaptive pool
        assert "adaptive_avgpool" in lines[d.span.line]
    # and torch refuses that size too
    make = {c[0]: c[3] for c in CLASSIFIERS}[file]
    with torch.device("meta"):
        ref = make(nn)
    with pytest.raises(RuntimeError):
        ref(torch.empty(1, 3, size, size, device="meta"))
