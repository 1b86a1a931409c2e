"""Adaptive pooling (adaptive_avgpool / adaptive_maxpool, 1d/2d/3d), centre crop (crop,
crop_like) and padding (pad): symbolic shapes, torch's own layers as the reference, located
errors, emitted source and crosscheck."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnspec
from nnspec.backends.numpy import NumpyModel
from nnspec.core.dims import Dim
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


def only_error(layer: str, shape: str = "[N, 3, 8, 6]"):
    """(code, column, message, notes, hint) of the one error of a one-layer model."""
    spec = nnspec.loads(f"model M(x: {shape}) {{\n    {layer}\n}}\n", "bad.nn", strict=False)
    (d,) = spec.diagnostics
    assert d.span.line == 2
    return d.code, d.span.col, d.message, d.notes, d.hint


def both(spec: nnspec.Spec, *xs: np.ndarray):
    """The NumPy and the torch backend's outputs, float64."""
    ref = NumpyModel(spec, dtype=np.float64)(*xs)
    mod = build_module(spec, dtype=torch.float64)
    with torch.no_grad():
        got = mod(*[torch.from_numpy(x) for x in xs]).numpy()
    return ref, got


RNG = np.random.default_rng(0)


# ---- adaptive pooling -------------------------------------------------------------------


ADAPTIVE = [
    # (layer, input shape, torch module)
    ("adaptive_avgpool 3", (2, 3, 7), nn.AdaptiveAvgPool1d(3)),
    ("adaptive_maxpool 3", (2, 3, 7), nn.AdaptiveMaxPool1d(3)),
    ("adaptive_avgpool 4", (2, 3, 8), nn.AdaptiveAvgPool1d(4)),  # divisible: plain pooling
    ("adaptive_avgpool1d 5", (1, 2, 3), nn.AdaptiveAvgPool1d(5)),  # larger than the input
    ("adaptive_maxpool1d 5", (1, 2, 3), nn.AdaptiveMaxPool1d(5)),
    ("adaptive_avgpool (3, 4)", (2, 3, 7, 5), nn.AdaptiveAvgPool2d((3, 4))),
    ("adaptive_maxpool (3, 4)", (2, 3, 7, 5), nn.AdaptiveMaxPool2d((3, 4))),
    ("adaptive_avgpool2d (7, None)", (2, 2, 10, 3), nn.AdaptiveAvgPool2d((7, None))),
    ("adaptive_max_pool2d [_, 2]", (2, 2, 4, 9), nn.AdaptiveMaxPool2d((None, 2))),
    ("adaptiveavgpool2d 6", (1, 2, 4, 13), nn.AdaptiveAvgPool2d(6)),
    ("adaptive_avgpool (2, 3, None)", (1, 2, 5, 4, 3), nn.AdaptiveAvgPool3d((2, 3, None))),
    ("adaptive_maxpool3d 3", (1, 2, 5, 4, 7), nn.AdaptiveMaxPool3d(3)),
]


@pytest.mark.parametrize("layer,shape,ref", ADAPTIVE, ids=[a for a, _, _ in ADAPTIVE])
def test_adaptive_pooling_equals_torch(layer, shape, ref):
    spec = one(layer, "[" + ", ".join(map(str, shape)) + "]")
    x = RNG.standard_normal(shape)
    want = ref(torch.from_numpy(x)).numpy()
    a, b = both(spec, x)
    assert a.shape == b.shape == want.shape == tuple(d.value for d in spec.output_type().shape)
    np.testing.assert_allclose(a, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b, want, rtol=0, atol=1e-12)


def test_adaptive_pooling_of_infinities_and_nan_as_torch():
    # a bin holding inf or nan gives inf / nan, and only that bin (no 0*inf = nan elsewhere)
    x = np.array([[[1.0, np.inf, 3.0, -2.0, 5.0, np.nan, 4.0]]])
    for kind, ref in (("avg", nn.AdaptiveAvgPool1d(3)), ("max", nn.AdaptiveMaxPool1d(3))):
        a, b = both(one(f"adaptive_{kind}pool 3", "[1, 1, 7]"), x)
        want = ref(torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(a, want)
        np.testing.assert_array_equal(b, want)
    assert np.isinf(want[0, 0, 0]) and np.isnan(want[0, 0, 2])


def test_adaptive_shapes_are_symbolic():
    assert out("adaptive_avgpool (7, None)", "[N, C, H, W]") == "[N, C, 7, W]"
    assert out("adaptive_maxpool 1", "[N, 8, H, W]") == "[N, 8, 1, 1]"
    assert out("adaptive_avg_pool [2, _, 3]", "[N, 4, D, H, W]") == "[N, 4, 2, H, 3]"
    assert out("adaptive_maxpool1d output_size=5", "[N, 4, T]") == "[N, 4, 5]"


def test_adaptive_spellings_resolve_to_one_kind_per_rank():
    for mode, spellings in (("avg", ("adaptiveavgpool", "adaptive_avg_pool",
                                     "adaptive_average_pool")),
                            ("max", ("adaptivemaxpool", "adaptive_max_pool"))):
        for r in ("", "1d", "2d", "3d"):
            name = f"adaptive_{mode}pool{r}"
            assert {REGISTRY[s + r].name for s in spellings} == {name}
            assert REGISTRY[name].rank == (int(r[0]) if r else None)


def _bins_read(n: int, out: int) -> int:
    return sum(math.ceil((i + 1) * n / out) - (i * n) // out for i in range(out))


def test_adaptive_macs_count_every_bin():
    for n, o in ((7, 3), (8, 4), (3, 5), (13, 6), (224, 7)):
        assert n + o - math.gcd(n, o) == _bins_read(n, o)
    (row,) = one("adaptive_avgpool (3, 6)", "[2, 4, 7, 13]").layers()
    assert row.macs == 2 * 4 * _bins_read(7, 3) * _bins_read(13, 6)
    # a symbolic F_in: F_in + F_out - 1, an upper bound (exact when they are coprime)
    (row,) = one("adaptive_maxpool (3, None)", "[N, 4, H, W]").layers()
    n, h, w = Dim.sym("N"), Dim.sym("H"), Dim.sym("W")
    assert row.macs == n * 4 * (h + 2) * w


def test_adaptive_torch_module_is_the_torch_layer():
    spec = one("adaptive_avgpool (7, None)", "[N, 3, H, W]")
    mod = build_module(spec)
    (layer,) = [m for m in mod.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    assert layer.output_size == (7, None)
    assert "nn.AdaptiveAvgPool2d((7, None))" in emit_source(spec)
    assert "nn.AdaptiveMaxPool3d(2)" in emit_source(one("adaptive_maxpool 2", "[N, 3, 4, 4, 4]"))


@pytest.mark.parametrize("layer,code,col,message", [
    ("adaptive_avgpool 0", "E390", 22, "adaptive_avgpool output size is 0: an output size "
                                       "must be >= 1"),
    ("adaptive_maxpool (3, -1)", "E390", 22, "adaptive_maxpool output width is -1: an output "
                                             "size must be >= 1"),
    ("adaptive_avgpool (3, 2, 1)", "E391", 22, "size has 3 values but the input "
                                               "[N, 3, 8, 6] has 2 spatial dims"),
    ("adaptive_avgpool1d 3", "E300", 5, "adaptive_avgpool1d expects a rank-3 input "
                                        "([N, C, L]), got [N, 3, 8, 6] (rank 4)"),
    ("adaptive_avgpool [H, 2]", "E046", 22, "invalid size for adaptive_avgpool: an output "
     "size must be an integer (or None to keep the input's size), not the symbol H "
     "(received size=(H, 2))"),
    ("adaptive_avgpool None", "E046", 22, "invalid size for adaptive_avgpool: None keeps one "
     "dim; give the output size of the others, e.g. (7, None) (received size=None)"),
])
def test_adaptive_errors_are_located(layer, code, col, message):
    got = only_error(layer)
    assert got[:3] == (code, col, message)


def test_adaptive_pool_to_zero_hints_at_keeping_the_dim():
    assert only_error("adaptive_avgpool (0, 2)")[4] == "use None (or _) to keep a dim as it is"


# ---- crop -------------------------------------------------------------------------------


def test_crop_shapes_are_symbolic():
    assert out("crop [H - 8, W - 8]", "[N, C, H, W]") == "[N, C, H - 8, W - 8]"
    assert out("crop (64, 64)", "[N, 3, 100, 90]") == "[N, 3, 64, 64]"
    assert out("crop 4", "[N, 3, 9, 8, 7]") == "[N, 3, 4, 4, 4]"
    assert out("crop [_, 5]", "[N, 3, H, 9]") == "[N, 3, H, 5]"
    assert out("center_crop size=(2, None)", "[N, 3, 5, W]") == "[N, 3, 2, W]"
    spec = nnspec.loads("model M(x: [N, 64, H, W], y: [N, 32, H - 4, W - 4]) {\n"
                        "    crop_like(x, y)\n}\n")
    assert str(spec.output_type()) == "[N, 64, H - 4, W - 4]"


def test_crop_is_the_centre_window_with_the_floor_offset():
    # surplus 3 along the height: the window starts at floor(3 / 2) = 1; 4 along the width: 2
    x = RNG.standard_normal((2, 3, 7, 8))
    a, b = both(one("crop (4, 4)", "[2, 3, 7, 8]"), x)
    np.testing.assert_array_equal(a, x[..., 1:5, 2:6])
    np.testing.assert_array_equal(b, x[..., 1:5, 2:6])


def test_crop_like_crops_to_the_other_tensor_at_any_size():
    spec = nnspec.loads("model M(x: [N, 2, H, W], y: [N, 1, H - 3, W - 4]) {\n"
                        "    crop_like(x, y)\n}\n")
    mod = build_module(spec, dtype=torch.float64)
    ref = NumpyModel(spec, dtype=np.float64)
    for h, w in ((5, 6), (8, 11)):
        x = RNG.standard_normal((2, 2, h, w))
        y = RNG.standard_normal((2, 1, h - 3, w - 4))
        want = x[..., 1:h - 2, 2:w - 2]
        np.testing.assert_array_equal(ref(x, y), want)
        np.testing.assert_array_equal(mod(torch.from_numpy(x), torch.from_numpy(y)).numpy(),
                                      want)


def test_crop_emits_a_slice():
    src = emit_source(one("crop [3, _]", "[N, 3, 8, 6]"))
    assert "v1 = x[..., 2:5, :]" in src or "x = x[..., 2:5, :]" in src
    src = emit_source(one("crop [H - 2, W - 3]", "[N, 3, H, W]"))
    assert "_, _, H, W = x.shape\n" in src and "x[..., 1 : H - 1, 1 : W - 2]" in src


@pytest.mark.parametrize("layer,code,col,message", [
    ("crop [9, 4]", "E392", 10, "crop height 9 is larger than the input height 8"),
    ("crop (4, 0)", "E393", 10, "crop width is 0: a size must be >= 1"),
    ("crop (4, 4, 4)", "E394", 10, "size has 3 values but the input [N, 3, 8, 6] has 2 "
                                   "spatial dims"),
    ("crop [4, K]", "E082", 10, "crop's size uses the symbol K, which is not a dim of the "
                                "model's inputs"),
    ("crop 3", "E300", 5, "crop expects an input of rank 3 or more ([N, C, *spatial]), "
                          "got [N, 3] (rank 2)"),
])
def test_crop_errors_are_located(layer, code, col, message):
    shape = "[N, 3]" if code == "E300" else "[N, 3, 8, 6]"
    assert only_error(layer, shape)[:3] == (code, col, message)


def test_crop_larger_than_the_input_shows_the_numbers():
    code, _, _, notes, hint = only_error("crop [4, 7]")
    assert code == "E392"
    assert notes[0] == "offset = floor((F_in - F_out) / 2) = floor((6 - 7) / 2) = -1"
    assert hint == "crop to at most 6, or pad first"


def test_crop_like_errors():
    spec = nnspec.loads("model M(x: [N, 3, 8, 6], y: [N, 3, 9, 2], z: [N, 3, 4]) {\n"
                        "    a = crop_like(x, y)\n    b = crop_like(x, z)\n}\n", strict=False)
    d1, d2 = spec.diagnostics
    assert (d1.code, d1.span.line, d1.message) == (
        "E392", 2, "crop_like height 9 is larger than the input height 8")
    assert (d2.code, d2.span.line, d2.message) == (
        "E394", 3, "crop_like needs a second tensor of the first's rank 4, got [N, 3, 4] "
                   "(rank 3)")


def test_a_symbolic_crop_is_checked_again_at_the_bound_dims():
    spec = one("crop [6, 6]", "[N, 3, H, H]")
    assert str(spec.output_type()) == "[N, 3, 6, 6]"
    with pytest.raises(nnspec.SpecError, match=r"crop height 6 is larger than the input "
                                               r"height 4 \[E392\]"):
        crosscheck(spec, dims={"H": 4})


def test_a_crop_larger_by_a_symbolic_size_is_an_error_with_the_formula():
    code, col, message, notes, _ = only_error("crop [H + 1, W]", "[N, 3, H, W]")
    assert (code, col, message) == ("E392", 10, "crop height H + 1 is larger than the input "
                                                "height H")
    assert notes[0] == "offset = floor((F_in - F_out) / 2) = floor((H - (H + 1)) / 2) = -1"


# ---- pad --------------------------------------------------------------------------------


PADS = [
    # (layer, input shape, torch's F.pad arguments: last dim first)
    ("pad 1", (2, 3, 4, 5), ((1, 1, 1, 1), {})),
    ("pad ((1, 2), (0, 3)) value=-0.5", (2, 3, 4, 5), ((0, 3, 1, 2), {"value": -0.5})),
    ("pad (1, 2) reflect", (2, 3, 4, 5), ((2, 2, 1, 1), {"mode": "reflect"})),
    ("pad ((3, 0), (1, 4)) mode=reflect", (1, 2, 4, 5), ((1, 4, 3, 0), {"mode": "reflect"})),
    ("pad ((2, 1),) replicate", (1, 2, 3), ((2, 1), {"mode": "replicate"})),
    ("pad 3 edge", (1, 2, 2, 2, 2), ((3,) * 6, {"mode": "replicate"})),
    ("pad ((4, 1), (0, 2)) circular", (1, 2, 4, 3), ((0, 2, 4, 1), {"mode": "circular"})),
    ("pad (1, 2, 3) padding_mode=wrap", (1, 1, 3, 4, 5), ((3, 3, 2, 2, 1, 1),
                                                          {"mode": "circular"})),
    ("pad 1 value=2", (1, 1, 2, 2, 2, 2), ((1,) * 8, {"value": 2.0})),
]


@pytest.mark.parametrize("layer,shape,args", PADS, ids=[a for a, _, _ in PADS])
def test_pad_equals_torch_F_pad(layer, shape, args):
    spec = one(layer, "[" + ", ".join(map(str, shape)) + "]")
    x = RNG.standard_normal(shape)
    want = F.pad(torch.from_numpy(x), args[0], **args[1]).numpy()
    a, b = both(spec, x)
    assert a.shape == want.shape == tuple(d.value for d in spec.output_type().shape)
    np.testing.assert_array_equal(a, want)
    np.testing.assert_array_equal(b, want)


def test_pad_shapes_are_symbolic():
    assert out("pad ((1, 2), (0, 3))", "[N, C, H, W]") == "[N, C, H + 3, W + 3]"
    assert out("pad 2 reflect", "[N, C, T]") == "[N, C, T + 4]"
    assert out("pad (0, 1) replicate", "[N, 4, H, W]") == "[N, 4, H, W + 2]"


def test_pad_emits_F_pad_in_torch_order():
    src = emit_source(one("pad ((1, 2), (0, 3)) reflect", "[N, 3, 8, 6]"))
    assert 'x = F.pad(x, (0, 3, 1, 2), mode="reflect")' in src
    src = emit_source(one("pad 1 value=0.5", "[N, 3, 8, 6]"))
    assert "x = F.pad(x, (1, 1, 1, 1), value=0.5)" in src
    assert "x = F.pad(x, (2, 2))" in emit_source(one("pad 2", "[N, 3, 8]"))


@pytest.mark.parametrize("layer,code,col,message", [
    ("pad 6 reflect", "E395", 9, "reflect padding 6 along the width is not less than the "
                                 "input width 6: a reflection needs p < size (PyTorch's rule)"),
    ("pad ((8, 0), 0) reflect", "E395", 9, "reflect padding 8 along the height is not less "
     "than the input height 8: a reflection needs p < size (PyTorch's rule)"),
    ("pad (1, 7) circular", "E395", 9, "circular padding 7 along the width is more than the "
     "input width 6: it would wrap around more than once (PyTorch's rule)"),
    ("pad 1 reflect value=2", "E397", 19, "value= is the fill of mode=constant; mode=reflect "
                                          "pads with the input's own values"),
    ("pad (1, 2, 3)", "E396", 9, "p has 3 entries but the input [N, 3, 8, 6] has 2 spatial "
                                 "dims"),
    ("pad -1", "E046", 9, "invalid p for pad: padding must be >= 0 (crop removes rows) "
                          "(received p=-1)"),
    ("pad 1 mode=symmetric", "E046", 11, "invalid mode for pad: Input should be 'constant', "
     "'reflect', 'replicate' or 'circular' (received mode=symmetric)"),
    ("pad 1 value=true", "E046", 11, "invalid value for pad: Input should be a valid number "
                                     "(received value=true)"),
])
def test_pad_errors_are_located(layer, code, col, message):
    assert only_error(layer)[:3] == (code, col, message)


def test_pad_circular_may_wrap_once_and_reflect_up_to_size_minus_one():
    assert out("pad 6 circular", "[N, 3, 8, 6]") == "[N, 3, 20, 18]"
    assert out("pad 5 reflect", "[N, 3, 8, 6]") == "[N, 3, 18, 16]"


def test_pad_beyond_three_dims_needs_constant_mode():
    assert out("pad 1", "[N, 1, 2, 2, 2, 2]") == "[N, 1, 4, 4, 4, 4]"
    assert only_error("pad 1 replicate", "[N, 1, 2, 2, 2, 2]")[:3] == (
        "E397", 11, "pad mode=replicate pads 1 to 3 spatial dims (as PyTorch's F.pad), but "
                    "the input [N, 1, 2, 2, 2, 2] has 4")


# ---- together: emitted source and crosscheck ----------------------------------------------

UNET_LIKE = """
model M(x: [N, 2, H, W]) -> [N, 10, 4, 4] {
    skip = x | pad 1 reflect | conv 2 k=3
    down = skip | maxpool 2 | conv 2 k=3 p=1 | pad ((0, 1), (1, 0)) replicate
    y = concat(crop_like(skip, down), down, dim=1)
    z = y | pad 1 circular | pad (0, 1) value=0.25 | crop [_, 5]
    a = z | adaptive_avgpool (4, 4)
    m = z | adaptive_maxpool 4
    g = x | adaptive_avgpool2d [4, _] | adaptive_avg_pool 4
    return concat(a, m, g, dim=1)
}
"""


def test_emitted_source_round_trips(tmp_path):
    spec = nnspec.loads(UNET_LIKE, "unet_like.nn")
    path = tmp_path / "gen_padcrop.py"
    path.write_text(emit_source(spec))
    gen = import_source(path, "gen_padcrop")
    ref = build_module(spec, seed=1, dtype=torch.float64).eval()
    mine = gen.M().to(torch.float64).eval()
    mine.load_state_dict(ref.state_dict())
    for h, w in ((8, 8), (11, 9)):
        x = torch.from_numpy(RNG.standard_normal((2, 2, h, w)))
        with torch.no_grad():
            want = ref(x)
            assert want.shape == (2, 10, 4, 4)
            torch.testing.assert_close(mine(x), want, rtol=0, atol=0)
        np.testing.assert_allclose(NumpyModel(spec, params={
            k: v.numpy() for k, v in ref.state_dict().items()}, dtype=np.float64)(x.numpy()),
            want.numpy(), rtol=0, atol=1e-12)


def test_crosscheck_passes():
    spec = nnspec.loads(UNET_LIKE, "unet_like.nn")
    for dims in ({"H": 8, "W": 9}, {"H": 13, "W": 8}):
        report = crosscheck(spec, "M", "float64", seed=0, dims=dims)
        assert report.ok, report.render()
        assert len(report.rows) == len(spec.model("M").nodes)

