"""Transposed convolution (convtranspose, 1d/2d/3d) and 3-d convolution: symbolic shapes,
torch's own layers as the reference, weights and init, located errors, emitted source."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nnspec
from nnspec.backends.numpy import NumpyModel
from nnspec.core.dims import Dim, transposed_conv_formula
from nnspec.layers import REGISTRY

from _util import import_source

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from nnspec.backends.torch import build_module, emit_source  # noqa: E402
from nnspec.tools.crosscheck import crosscheck  # noqa: E402


def one(layer: str, shape: str) -> nnspec.Spec:
    return nnspec.loads(f"model M(x: {shape}) {{\n    {layer}\n}}\n", "t.nn")


def out(layer: str, shape: str) -> str:
    return str(one(layer, shape).output_type())


def errors(src: str) -> list:
    return nnspec.loads(src, "bad.nn", strict=False).diagnostics


def only_error(layer: str, shape: str):
    """The one diagnostic of a one-layer model, with the column its span starts at."""
    (d,) = errors(f"model M(x: {shape}) {{\n    {layer}\n}}\n")
    assert d.span.line == 2
    return d, layer[d.span.col - 5:d.span.end_col - 5]


def both(spec: nnspec.Spec, x: np.ndarray, seed: int = 0):
    """(NumPy output, in-process torch output, module) with shared float64 weights."""
    mod = build_module(spec, seed=seed, dtype=torch.float64).eval()
    ref = NumpyModel(spec, params={k: v.numpy() for k, v in mod.state_dict().items()},
                     dtype="float64")
    with torch.no_grad():
        y_t = mod(torch.from_numpy(x)).numpy()
    return ref(x), y_t, mod


# ---- shapes -----------------------------------------------------------------------------


@pytest.mark.parametrize("layer,shape,want", [
    ("convtranspose 32 k=4 s=2 p=1", "[N, 64, H, W]", "[N, 32, 2*H, 2*W]"),
    ("convtranspose 8 k=3 s=2 p=1", "[N, 4, H, W]", "[N, 8, 2*H - 1, 2*W - 1]"),
    ("convtranspose 8 k=3 s=2 p=1 output_padding=1", "[N, 4, H, W]", "[N, 8, 2*H, 2*W]"),
    ("deconv 8 k=4 s=1 p=0", "[N, 100, 1, 1]", "[N, 8, 4, 4]"),
    ("convtranspose 8 k=3 d=2 p=((0, 1), (2, 0))", "[N, 4, H, W]", "[N, 8, H + 3, W + 2]"),
    ("convtranspose 2 k=2 s=2", "[N, 4, T]", "[N, 2, 2*T]"),
    ("convtranspose 2 k=(1, 2, 3) s=(1, 2, 3)", "[N, 4, D, H, W]", "[N, 2, D, 2*H, 3*W]"),
    ("convtranspose 2 k=3 p=same", "[N, 4, H, W]", "[N, 2, H, W]"),
    ("convtranspose 2 k=3 s=2 p=1 size=[2*H, 2*W]", "[N, 4, H, W]", "[N, 2, 2*H, 2*W]"),
    ("convtranspose 2 k=3 s=2 p=1 size=(8, 7)", "[N, 4, 4, 4]", "[N, 2, 8, 7]"),
    ("conv3d 6 k=3 s=2 p=1", "[N, 3, D, H, W]",
     "[N, 6, floor((D - 1)/2) + 1, floor((H - 1)/2) + 1, floor((W - 1)/2) + 1]"),
    ("conv 6 k=(3, 1, 1) p=((2, 0), 0, 0)", "[N, 3, T, H, W]", "[N, 6, T, H, W]"),
])
def test_symbolic_output_shapes(layer, shape, want):
    assert out(layer, shape) == want


def test_every_spelling_and_synonym_is_the_same_layer():
    base = one("convtranspose 8 k=3 s=2 p=1 d=1 output_padding=1", "[N, 4, H, W]")
    want = (str(base.output_type()), base.param_count())
    for kw in ("conv_transpose", "deconv", "transposed_conv", "convtranspose2d",
               "conv_transpose2d", "deconv2d", "conv2d_transpose"):
        for args in ("8 k=3 s=2 p=1 output_padding=1",
                     "out_channels=8 kernel_size=3 stride=2 padding=1 dilation=1 "
                     "output_size=[2*H, 2*W]"):
            s = one(f"{kw} {args}", "[N, 4, H, W]")
            assert (str(s.output_type()), s.param_count()) == want, (kw, args)
    for r in (1, 3):
        assert {REGISTRY[f"{a}{r}d"].name for a in ("convtranspose", "conv_transpose",
                                                     "deconv")} == {f"convtranspose{r}d"}
        assert REGISTRY[f"conv{r}d_transpose"].name == f"convtranspose{r}d"


def test_size_resolves_output_padding_statically():
    s = one("convtranspose 2 k=3 s=2 p=1 size=[2*H, 2*W - 1]", "[N, 4, H, W]")
    (layer,) = s.layers()
    assert "output_padding=(1, 0)" in emit_source(s)
    assert str(layer.output) == "[N, 2, 2*H, 2*W - 1]"
    s = one("convtranspose 2 k=3 s=2 p=1 size=8", "[N, 4, 4, 4]")
    assert "output_padding=1" in emit_source(s)


def test_weights_layout_init_and_macs():
    s = one("convtranspose 32 k=(4, 3) s=2 p=1 groups=4", "[N, 64, H, W]")
    shapes = s.state_shapes()
    assert {k: w.shape for k, w in shapes.items()} == {
        "convtranspose_0.weight": (64, 8, 4, 3), "convtranspose_0.bias": (32,)}
    ref = nn.ConvTranspose2d(64, 32, (4, 3), 2, 1, groups=4)
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(ref.weight)
    assert fan_in == 8 * 12
    assert shapes["convtranspose_0.weight"].init == ("uniform", pytest.approx(fan_in ** -0.5))
    assert shapes["convtranspose_0.bias"].init == ("uniform", pytest.approx(fan_in ** -0.5))
    # the module's state_dict loads into torch's own layer unchanged
    mod = build_module(s, seed=0)
    ref.load_state_dict({k.split(".", 1)[1]: v for k, v in mod.state_dict().items()})
    assert s.param_count() == 64 * 8 * 12 + 32
    # each input element meets C_out/groups * prod(k) weights
    assert str(s.macs()) == str(Dim.parse("64*H*W*N") * (8 * 12))
    s = one("convtranspose 6 k=3 init=xavier bias=false", "[N, 4, 5]")
    w = s.state_shapes()["convtranspose_0.weight"]
    assert w.init == ("uniform", pytest.approx((6 / (6 * 3 + 4 * 3)) ** 0.5))


# ---- numbers: torch's own layers ----------------------------------------------------------


@pytest.mark.parametrize("n,args,torch_kw", [
    (1, "k=3 s=2 p=1 output_padding=1", dict(kernel_size=3, stride=2, padding=1,
                                             output_padding=1)),
    (2, "k=4 s=2 p=1", dict(kernel_size=4, stride=2, padding=1)),
    (2, "k=(3, 2) s=(2, 3) p=(1, 0) d=(1, 2) output_padding=(1, 1) groups=2 bias=false",
     dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 0), dilation=(1, 2),
          output_padding=(1, 1), groups=2, bias=False)),
    (2, "k=3 d=3 output_padding=2", dict(kernel_size=3, dilation=3, output_padding=2)),
    (3, "k=3 s=2 p=1 output_padding=1 groups=2", dict(kernel_size=3, stride=2, padding=1,
                                                      output_padding=1, groups=2)),
])
def test_equals_torch_convtranspose(n, args, torch_kw):
    shape = (2, 4) + (4, 3, 5)[3 - n:]
    s = one(f"convtranspose 6 {args}", "[" + ", ".join(map(str, shape)) + "]")
    x = np.random.default_rng(0).standard_normal(shape)
    y_np, y_t, mod = both(s, x)
    ref = getattr(nn, f"ConvTranspose{n}d")(4, 6, dtype=torch.float64, **torch_kw)
    ref.load_state_dict({k.split(".", 1)[1]: v for k, v in mod.state_dict().items()})
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    assert y_np.shape == y_t.shape == want.shape == tuple(
        d.value for d in s.output_type().shape)
    np.testing.assert_allclose(y_np, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(y_t, want, rtol=0, atol=1e-12)


def test_target_size_equals_torch_forward_output_size():
    s = one("convtranspose 3 k=3 s=3 p=1 size=(10, 12)", "[2, 4, 4, 4]")
    x = np.random.default_rng(1).standard_normal((2, 4, 4, 4))
    y_np, y_t, mod = both(s, x)
    ref = nn.ConvTranspose2d(4, 3, 3, 3, 1, dtype=torch.float64)
    ref.load_state_dict({k.split(".", 1)[1]: v for k, v in mod.state_dict().items()})
    with torch.no_grad():
        want = ref(torch.from_numpy(x), output_size=[10, 12]).numpy()
    assert want.shape == (2, 3, 10, 12)
    np.testing.assert_allclose(y_np, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(y_t, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("pads,op", [(((0, 1), (2, 0)), (0, 0)), (((1, 0), (0, 2)), (1, 1)),
                                     (((3, 1), (1, 1)), (1, 0))])
def test_asymmetric_padding_is_a_crop_of_the_full_output(pads, op):
    # the reference, written independently: torch's full transposed convolution (no
    # padding), output_padding zeros appended, cropped by (before, after), then the bias
    x = np.random.default_rng(2).standard_normal((2, 4, 5, 4))
    p_txt = "(" + ", ".join(f"({a}, {b})" for a, b in pads) + ")"
    s = one(f"convtranspose 6 k=3 s=2 p={p_txt} output_padding={op} groups=2",
            "[2, 4, 5, 4]")
    y_np, y_t, mod = both(s, x)
    w, b = mod.state_dict()["convtranspose_0.weight"], mod.state_dict()["convtranspose_0.bias"]
    full = F.conv_transpose2d(torch.from_numpy(x), w, stride=2, groups=2)
    full = F.pad(full, (0, op[1], 0, op[0]))
    (hb, ha), (wb, wa) = pads
    want = (full[:, :, hb:full.shape[2] - ha, wb:full.shape[3] - wa]
            + b.reshape(1, -1, 1, 1)).numpy()
    assert want.shape == tuple(d.value for d in s.output_type().shape)
    np.testing.assert_allclose(y_np, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(y_t, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("layer,shape,torch_kw", [
    ("conv3d 6 k=3 s=2 p=1 groups=2", (2, 4, 5, 6, 7),
     dict(kernel_size=3, stride=2, padding=1, groups=2)),
    ("conv 6 k=(3, 2, 1) d=(1, 2, 1) s=(1, 1, 2) bias=false", (1, 4, 5, 5, 5),
     dict(kernel_size=(3, 2, 1), dilation=(1, 2, 1), stride=(1, 1, 2), bias=False)),
])
def test_conv3d_equals_torch_conv3d(layer, shape, torch_kw):
    s = one(layer, "[" + ", ".join(map(str, shape)) + "]")
    x = np.random.default_rng(3).standard_normal(shape)
    y_np, y_t, mod = both(s, x)
    ref = nn.Conv3d(4, 6, dtype=torch.float64, **torch_kw)
    ref.load_state_dict({k.split(".", 1)[1]: v for k, v in mod.state_dict().items()})
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    assert want.shape == tuple(d.value for d in s.output_type().shape)
    np.testing.assert_allclose(y_np, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(y_t, want, rtol=0, atol=1e-12)


def test_conv3d_asymmetric_padding_equals_padded_torch_conv3d():
    s = one("conv3d 2 k=2 p=((1, 0), (0, 1), (1, 1))", "[1, 3, 4, 4, 4]")
    x = np.random.default_rng(4).standard_normal((1, 3, 4, 4, 4))
    y_np, y_t, mod = both(s, x)
    sd = mod.state_dict()
    want = F.conv3d(F.pad(torch.from_numpy(x), (1, 1, 0, 1, 1, 0)), sd["conv3d_0.weight"],
                    sd["conv3d_0.bias"]).numpy()
    assert want.shape == (1, 2, 4, 4, 5)
    np.testing.assert_allclose(y_np, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(y_t, want, rtol=0, atol=1e-12)


# ---- errors -----------------------------------------------------------------------------


def test_output_below_one_shows_the_formula_with_numbers():
    d, at = only_error("convtranspose 4 k=3 p=3", "[N, 2, 1, 1]")
    assert (d.code, d.message, at) == ("E370", "convtranspose output height is -3", "p=3")
    assert d.notes[0] == ("F_out = (F_in - 1)*s - 2p + d*(k - 1) + output_padding + 1 "
                          "= (1 - 1)*1 - 2*3 + 1*(3 - 1) + 0 + 1 = -3")
    d, at = only_error("deconv1d 4 k=2 p=((1, 2),)", "[N, 2, 1]")
    assert (d.code, d.message, at) == ("E370", "convtranspose1d output length is -1",
                                       "p=((1, 2),)")
    assert d.notes[0].endswith("= (1 - 1)*1 - 1 - 2 + 1*(2 - 1) + 0 + 1 = -1")


def test_output_padding_must_be_below_stride_or_dilation():
    d, at = only_error("convtranspose 4 k=3 s=2 output_padding=2", "[N, 2, 5, 5]")
    assert (d.code, at) == ("E371", "output_padding=2")
    assert d.message == ("output_padding 2 along the height must be smaller than the stride "
                         "2 or the dilation 1 (PyTorch's rule)")
    assert d.hint == "use output_padding < 2, or a larger stride"
    d, _ = only_error("convtranspose 4 k=3 s=(1, 3) d=(2, 1) output_padding=(1, 3)",
                      "[N, 2, 5, 5]")
    assert d.message.startswith("output_padding 3 along the width must be smaller than the "
                                "stride 3 or the dilation 1")
    d, at = only_error("convtranspose 4 k=3 output_padding=-1", "[N, 2, 5, 5]")
    assert (d.code, at) == ("E046", "output_padding=-1")
    assert "output_padding must be >= 0" in d.message


def test_a_size_no_output_padding_reaches_is_an_error():
    d, at = only_error("convtranspose 4 k=4 s=2 p=1 size=(10, 12)", "[N, 2, 5, 5]")
    assert (d.code, at) == ("E375", "size=(10, 12)")
    assert d.message == ("size 12 along the width is out of reach: output_padding 0 to 1 "
                         "gives 10 to 11")
    assert d.notes[0] == ("F_out = (F_in - 1)*s - 2p + d*(k - 1) + output_padding + 1 "
                          "= (5 - 1)*2 - 2*1 + 1*(4 - 1) + 0 + 1 = 10")
    d, _ = only_error("convtranspose 4 k=3 size=4", "[N, 2, 5, 5]")
    assert d.message == "size 4 along the height is out of reach: output_padding 0 gives 7"
    d, at = only_error("convtranspose 4 k=4 s=2 p=1 size=[H, 2*W]", "[N, 2, H, W]")
    assert (d.code, at) == ("E374", "size=[H, 2*W]")
    assert d.message == ("size H along the height cannot be reached for every input size: "
                         "it differs from the output without output_padding, 2*H, by -H")


def test_size_with_output_padding_or_the_wrong_count():
    d, at = only_error("convtranspose 4 k=4 s=2 output_padding=1 size=(10, 10)",
                       "[N, 2, 5, 5]")
    assert (d.code, at) == ("E373", "size=(10, 10)")
    assert d.message == ("give size or output_padding, not both: size resolves the "
                         "output_padding")
    d, at = only_error("convtranspose 4 k=4 s=2 size=(10, 10, 10)", "[N, 2, 5, 5]")
    assert (d.message, at) == ("size has 3 values but the layer has 2 spatial dims",
                               "size=(10, 10, 10)")
    d, at = only_error("convtranspose 4 k=4 s=2 size=(0, 10)", "[N, 2, 5, 5]")
    assert (d.code, at) == ("E046", "size=(0, 10)")
    d, at = only_error("convtranspose 4 k=4 s=2 size=[_, 10]", "[N, 2, 5, 5]")
    assert (d.code, at) == ("E046", "size=[_, 10]")
    assert "every output size must be given (no _)" in d.message


def test_groups_rank_dtype_and_same_errors():
    d, at = only_error("convtranspose 4 k=3 groups=3", "[N, 6, 5, 5]")
    assert (d.code, d.message, at) == (
        "E372", "groups must divide the output channels, but 3 does not divide 4", "groups=3")
    d, _ = only_error("convtranspose 6 k=3 groups=4", "[N, 6, 5, 5]")
    assert d.message == "groups must divide the input channels, but 4 does not divide 6"
    d, _ = only_error("convtranspose 4 k=3", "[N, 6]")
    assert d.message.startswith("convtranspose expects a rank-3 or 4 or 5 input ([N, C, L], "
                                "[N, C, H, W] or [N, C, D, H, W]), got [N, 6]")
    d, _ = only_error("convtranspose3d 4 k=3", "[N, 6, 4, 4]")
    assert d.message.startswith("convtranspose3d expects a rank-5 input ([N, C, D, H, W])")
    d, _ = only_error("conv3d 4 k=3", "[N, 6, 4, 4]")
    assert d.message.startswith("conv3d expects a rank-5 input ([N, C, D, H, W])")
    d, at = only_error("convtranspose 4 k=3 s=2 p=same", "[N, 6, 4, 4]")
    assert (d.message, at) == ("p=same needs stride 1 (as in PyTorch)", "p=same")
    d, _ = only_error("convtranspose 4 k=3", "[N, C, 4, 4]")
    assert d.message.startswith("convtranspose's input channels must be a concrete size")


def test_check_reports_every_error_located_and_never_crashes(tmp_path):
    from nnspec.tools.cli import main

    path = tmp_path / "bad.nn"
    path.write_text("model G(z: [N, 100, 1, 1]) {\n"
                    "    convtranspose 64 k=4 p=2\n"
                    "}\n"
                    "model H(z: [N, 100, 1, 1]) {\n"
                    "    deconv 64 k=4 s=2 output_padding=2\n"
                    "}\n")
    spec = nnspec.load(str(path), strict=False)
    assert [(d.code, d.span.line, d.span.col) for d in spec.diagnostics] == [
        ("E370", 2, 26), ("E371", 5, 23)]
    assert main(["check", str(path)]) == 1


# ---- emitted source, crosscheck, IR -----------------------------------------------------

GEN = """model G(z: [N, 16, 1, 1]) -> [N, 3, 32, 32] {
    convtranspose 32 k=4 bias=false     : [N, 32, 4, 4]
    batchnorm | relu
    deconv 16 k=4 s=2 p=1               : [N, 16, 8, 8]
    relu
    convtranspose 8 k=3 s=2 p=((0, 1), (1, 0)) d=1 output_padding=1 groups=2
    relu : [N, 8, 17, 17]
    convtranspose 3 k=3 s=2 p=2 size=32 | tanh
}
model V(x: [N, 2, D, H, W]) {
    conv3d 4 k=3 p=1 | relu
    convtranspose 2 k=2 s=2 : [N, 2, 2*D, 2*H, 2*W]
}
"""


def test_emitted_source_round_trip(tmp_path):
    spec = nnspec.loads(GEN, "gen.nn")
    src = emit_source(spec, all_models=True)
    assert "nn.ConvTranspose2d(16, 32, kernel_size=4, bias=False)" in src
    assert "nn.ConvTranspose2d(32, 16, kernel_size=4, stride=2, padding=1)" in src
    assert "F.pad(self.convtranspose_2(z), (-1, 0, 0, -1))" in src
    assert "nn.Conv3d(2, 4, kernel_size=3, padding=1)" in src
    assert "nn.ConvTranspose3d(4, 2, kernel_size=2, stride=2)" in src
    path = tmp_path / "gen_mod.py"
    path.write_text(src)
    mod = import_source(path, "gen_mod")
    for name, shape in (("G", (2, 16, 1, 1)), ("V", (2, 2, 2, 3, 2))):
        built = build_module(spec, name, seed=1, dtype=torch.float64).eval()
        emitted = getattr(mod, name)().to(torch.float64).eval()
        emitted.load_state_dict(built.state_dict())
        x = torch.from_numpy(np.random.default_rng(5).standard_normal(shape))
        with torch.no_grad():
            a, b = built(x), emitted(x)
        assert a.shape == b.shape
        assert torch.equal(a, b)


def test_crosscheck_passes():
    spec = nnspec.loads(GEN, "gen.nn")
    for name, dims in (("G", {"N": 2}), ("V", {"N": 1, "D": 2, "H": 3, "W": 2})):
        report = crosscheck(spec, name, "float64", seed=0, dims=dims)
        assert report.ok, report.first_divergence
        assert report.first_shape_mismatch is None
        assert len(report.rows) >= 3


def test_crosscheck_binds_a_symbolic_target_size():
    spec = one("convtranspose 2 k=3 s=2 p=1 size=[2*H - 1, 2*W]", "[N, 4, H, W]")
    report = crosscheck(spec, "M", "float64", seed=0, dims={"N": 2, "H": 3, "W": 2})
    assert report.ok and report.first_shape_mismatch is None


def test_ir_json_round_trip_keeps_a_symbolic_size():
    spec = one("convtranspose 2 k=3 s=2 p=1 size=[2*H, 2*W]", "[N, 4, H, W]")
    data = json.loads(spec.program.to_json())
    again = nnspec.from_ir(json.dumps(data))
    assert str(again.output_type()) == "[N, 2, 2*H, 2*W]"


def test_formula_helper_renders_symbols():
    assert transposed_conv_formula(Dim.parse("H + 1"), 4, 2, (0, 1), 2, 1) == (
        "F_out = (F_in - 1)*s - p_before - p_after + d*(k - 1) + output_padding + 1 "
        "= ((H + 1) - 1)*2 - 0 - 1 + 2*(4 - 1) + 1 + 1 = 2*H + 7")
