"""upsample / interpolate and pixel shuffle / unshuffle: shapes (symbolic included),
located errors, torch's own layers in float64, emitted source and crosscheck."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnspec
from nnspec.layers import _interp

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module, emit_source  # noqa: E402
from nnspec.tools.crosscheck import crosscheck  # noqa: E402

from _util import import_source  # noqa: E402


def spec(body: str, inp: str = "[N, 3, H, W]") -> nnspec.Spec:
    return nnspec.loads(f"model M(x: {inp}) {{\n    {body}\n}}\n", "t.nn")


def out_type(body: str, inp: str = "[N, 3, H, W]") -> str:
    return str(spec(body, inp).output_type("M"))


def error(body: str, inp: str = "[N, 3, 4, 4]"):
    with pytest.raises(nnspec.SpecError) as e:
        spec(body, inp)
    (d,) = e.value.diagnostics
    return d


# ---- shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("body,inp,want", [
    ("upsample 2", "[N, C, H, W]", "[N, C, 2*H, 2*W]"),
    ("upsample scale_factor=2.0 mode=bilinear", "[N, 3, H, W]", "[N, 3, 2*H, 2*W]"),
    ("upsample 1.5", "[N, 3, H, W]", "[N, 3, H + floor(H/2), W + floor(W/2)]"),
    ("upsample (2, 0.5)", "[N, 3, H, W]", "[N, 3, 2*H, floor(W/2)]"),
    ("interpolate scale=3 mode=linear", "[N, 3, T]", "[N, 3, 3*T]"),
    ("upsample size=[2*H, W + 1]", "[N, 3, H, W]", "[N, 3, 2*H, W + 1]"),
    ("upsample size=64 mode=bicubic", "[N, 3, H, W]", "[N, 3, 64, 64]"),
    ("upsampling size=(5, 6, 7) mode=trilinear", "[N, 3, D, H, W]", "[N, 3, 5, 6, 7]"),
    ("upsample 0.3", "[N, 3, 10, 7]", "[N, 3, 3, 2]"),
    ("upsample 0.29", "[N, 3, 100, 7]", "[N, 3, 28, 2]"),  # torch: 100 * 0.29 < 29
    ("upsample2d 2 mode=nearest_exact", "[N, 3, H, W]", "[N, 3, 2*H, 2*W]"),
    ("pixel_shuffle 2", "[N, 12, H, W]", "[N, 3, 2*H, 2*W]"),
    ("pixelshuffle upscale_factor=3", "[N, 18, 4, 5]", "[N, 2, 12, 15]"),
    ("pixel_unshuffle 2", "[N, 3, 2*H, 4]", "[N, 12, H, 2]"),
    ("pixel_unshuffle downscale_factor=2 | pixel_shuffle 2", "[N, 3, 6, 4]", "[N, 3, 6, 4]"),
])
def test_shapes(body, inp, want):
    assert out_type(body, inp) == want


def test_float_sizes_follow_torch():
    # the double product, truncated, exactly as F.interpolate computes the output size
    for f in (7, 10, 100, 33):
        for s in (0.29, 0.3, 1.7, 2.3, 1 / 3):
            want = F.interpolate(torch.zeros(1, 1, f), scale_factor=s).shape[-1]
            assert out_type(f"upsample {s!r}", f"[N, 3, {f}]") == f"[N, 3, {want}]"


# ---- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("body,inp,code,col,message", [
    ("upsample 0.2", "[N, 3, 4, 4]", "E381", 14, "upsample output height is 0"),
    ("upsample (1, 0.2)", "[N, 3, 4, 4]", "E381", 14, "upsample output width is 0"),
    ("upsample 2 mode=linear", "[N, 3, 4, 4]", "E382", 16,
     "mode=linear needs a rank-3 input ([N, C, L]), got [N, 3, 4, 4] (rank 4)"),
    ("upsample 2 mode=bilinear", "[N, 3, 4, 4, 4]", "E382", 16,
     "mode=bilinear needs a rank-4 input ([N, C, H, W]), got [N, 3, 4, 4, 4] (rank 5)"),
    ("upsample 2 align_corners", "[N, 3, 4, 4]", "E383", 16,
     "align_corners is only for the interpolating modes (linear, bilinear, bicubic, "
     "trilinear), not mode=nearest (as torch)"),
    ("upsample", "[N, 3, 4, 4]", "E380", 5, "upsample needs scale= or size="),
    ("upsample 2 size=3", "[N, 3, 4, 4]", "E380", 16,
     "upsample takes scale= or size=, not both (as torch)"),
    ("upsample size=(3, 4) recompute", "[N, 3, 4, 4]", "E384", 26,
     "recompute (recompute_scale_factor) is for scale=; with size= the coordinates always "
     "follow the sizes (as torch)"),
    ("upsample (2, 2, 2)", "[N, 3, 4, 4]", "E385", 14,
     "scale has 3 values but the input has 2 spatial dims"),
    ("upsample size=(2, 2, 2)", "[N, 3, 4, 4]", "E385", 14,
     "size has 3 values but the input has 2 spatial dims"),
    ("upsample 0.3", "[N, 3, H, 4]", "E386", 14,
     "upsample with scale 0.3 needs a concrete input height, but it is H (depends on "
     "symbol H)"),
    ("upsample2d 2", "[N, 3, 4]", "E300", 5,
     "upsample2d expects a rank-4 input ([N, C, H, W]), got [N, 3, 4] (rank 3)"),
    ("pixel_shuffle 2", "[N, 6, 4, 4]", "E387", 19,
     "pixel_shuffle's input channels must be a multiple of r^2, but 6 is not a multiple of "
     "4 (6 = 4*1 + 2)"),
    ("pixel_shuffle 2", "[N, C, 4, 4]", "E387", 19,
     "pixel_shuffle's input channels must be a multiple of r^2 = 4 for every value of its "
     "symbols, but it is C"),
    ("pixel_unshuffle 2", "[N, 3, 4, 5]", "E388", 21,
     "pixel_unshuffle's input width must be a multiple of r, but 5 is not a multiple of 2 "
     "(5 = 2*2 + 1)"),
    ("upsample 2 mode=cubic", "[N, 3, 4, 4]", "E046", 16,
     "invalid mode for upsample: Input should be 'nearest', 'nearest-exact', 'linear', "
     "'bilinear', 'bicubic' or 'trilinear' (received mode=cubic)"),
    ("upsample -2", "[N, 3, 4, 4]", "E046", 14,
     "invalid scale for upsample: scale must be > 0 and finite, not -2 (received scale=-2)"),
    ("upsample size=0", "[N, 3, 4, 4]", "E046", 14,
     "invalid size for upsample: size must be >= 1, not 0 (received size=0)"),
    ("upsample 1e300", "[N, 3, 4, 4]", "E381", 14,
     "upsample output height 4 * 1e+300 is beyond int64"),
])
def test_errors(body, inp, code, col, message):
    d = error(body, inp)
    assert (d.code, d.span.line, d.span.col, d.message) == (code, 2, col, message)


def test_error_shows_the_formula_with_numbers():
    d = error("upsample 0.2")
    assert d.notes[0] == "F_out = floor(F_in * scale) = floor(4 * 0.2) = 0"
    assert d.hint == "use a scale of at least 0.25 along the height, or give the output " \
                     "size with size="


def test_nearest_exact_spellings():
    for body in ("upsample 2 mode=nearest_exact", 'upsample 2 mode="nearest-exact"'):
        (layer,) = spec(body).layers("M")
        assert layer.node.params == {"scale": 2, "mode": "nearest-exact"}
    # `nearest-exact` is a minus between two names: a syntax error at `exact`
    with pytest.raises(nnspec.SpecError) as e:
        spec("upsample 2 mode=nearest-exact")
    (d,) = e.value.diagnostics
    assert (d.code, d.span.col) == ("E100", 29)


# ---- numerics against torch -------------------------------------------------------------

MODES = {3: ["nearest", "nearest-exact", "linear"],
         4: ["nearest", "nearest-exact", "bilinear", "bicubic"],
         5: ["nearest", "nearest-exact", "trilinear"]}


def _cases():
    rng = np.random.default_rng(0)
    cases = []
    for rank, modes in MODES.items():
        for mode in modes:
            aligns = (False, True) if mode not in ("nearest", "nearest-exact") else (False,)
            for align in aligns:
                for _ in range(6):
                    n = rank - 2
                    shape = [int(rng.integers(1, 9 if n < 3 else 5)) for _ in range(n)]
                    which = int(rng.integers(3))
                    if which == 0:  # a size, up or down
                        kw = {"size": [int(rng.integers(1, 13)) for _ in range(n)]}
                    else:
                        sc = [float(rng.choice([0.5, 0.7, 1.3, 1.7, 2.0, 2.5, 3.0]))
                              for _ in range(n)]
                        if min(math.floor(f * s) for f, s in zip(shape, sc)) < 1:
                            sc = [2.5] * n
                        kw = {"scale_factor": sc, "recompute_scale_factor": which == 2}
                    cases.append((shape, mode, align, kw))
    return cases


@pytest.mark.parametrize("shape,mode,align,kw", _cases())
def test_kernel_equals_torch(shape, mode, align, kw):
    x = np.random.default_rng(1).standard_normal([2, 3] + shape)
    want = F.interpolate(torch.from_numpy(x), mode=mode, align_corners=align or None,
                         **kw).numpy()
    n = len(shape)
    if "size" in kw:
        sizes, factors = tuple(kw["size"]), (None,) * n
    else:
        sc = kw["scale_factor"]
        sizes = tuple(math.floor(f * s) for f, s in zip(shape, sc))
        factors = (None,) * n if kw["recompute_scale_factor"] else tuple(sc)
    got = _interp.interpolate(x, sizes, mode, align, factors)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def _spec_text(body: str, inp: str) -> str:
    return f"model M(x: {inp}) {{\n    {body}\n}}\n"


LAYERS = [
    ("upsample 2", "[N, 3, H, W]", lambda: torch.nn.Upsample(scale_factor=2)),
    ("upsample (1.7, 2.3) mode=bicubic", "[N, 3, 5, 4]",
     lambda: torch.nn.Upsample(scale_factor=(1.7, 2.3), mode="bicubic")),
    ("upsample 1.7 mode=bilinear align_corners", "[N, 3, 5, 4]",
     lambda: torch.nn.Upsample(scale_factor=1.7, mode="bilinear", align_corners=True)),
    ("upsample 1.7 mode=bilinear recompute_scale_factor=true", "[N, 3, 5, 4]",
     lambda: torch.nn.Upsample(scale_factor=1.7, mode="bilinear",
                               recompute_scale_factor=True)),
    ("upsample size=(3, 7) mode=nearest_exact", "[N, 3, 5, 4]",
     lambda: torch.nn.Upsample(size=(3, 7), mode="nearest-exact")),
    ("upsample size=9 mode=linear", "[N, 3, 4]",
     lambda: torch.nn.Upsample(size=9, mode="linear")),
    ("upsample 0.6 mode=trilinear", "[N, 2, 5, 4, 6]",
     lambda: torch.nn.Upsample(scale_factor=0.6, mode="trilinear")),
    ("pixel_shuffle 2", "[N, 8, 3, 5]", lambda: torch.nn.PixelShuffle(2)),
    ("pixel_unshuffle 3", "[N, 2, 6, 9]", lambda: torch.nn.PixelUnshuffle(3)),
]


@pytest.mark.parametrize("body,inp,ref", LAYERS, ids=[b for b, _, _ in LAYERS])
def test_both_backends_and_emitted_source_equal_torch(body, inp, ref, tmp_path):
    s = nnspec.loads(_spec_text(body, inp), "t.nn")
    shape = [int(d) if d.isdigit() else 4 for d in inp.strip("[]").split(", ")]
    shape[0] = 2
    x = np.random.default_rng(2).standard_normal(shape)
    want = ref()(torch.from_numpy(x)).numpy()
    assert want.shape == tuple(d.evaluate({"N": 2, "H": 4, "W": 4})
                               for d in s.output_type("M").shape)
    mod = build_module(s, "M", dtype=torch.float64)
    path = tmp_path / "m.py"
    path.write_text(emit_source(s, "M"))
    emitted = import_source(path, "emitted_upsample").M().double()
    with torch.no_grad():
        np.testing.assert_allclose(mod(torch.from_numpy(x)).numpy(), want, rtol=0, atol=1e-12)
        np.testing.assert_allclose(emitted(torch.from_numpy(x)).numpy(), want, rtol=0,
                                   atol=1e-12)
    got = NumpyModel(s, "M", params={}, dtype="float64")(x)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_emitted_source_reads_like_torch(tmp_path):
    s = spec("upsample 2 mode=bilinear align_corners | upsample size=[2*H, W]")
    src = emit_source(s, "M")
    assert 'nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)' in src
    assert "_, _, H, W = x.shape\n" in src
    assert 'F.interpolate(x, size=(2 * H, W), mode="nearest")' in src
    path = tmp_path / "m.py"
    path.write_text(src)
    emitted = import_source(path, "emitted_upsample_sym").M()
    x = torch.randn(2, 3, 3, 5)
    with torch.no_grad():
        assert torch.equal(emitted(x), build_module(s, "M")(x))
    assert emitted(x).shape == (2, 3, 6, 5)


def test_nearest_scale_that_doubles_exactly():
    # 2.02 on 17 gives 34 = 2*17: torch's two 2-d nearest kernels disagree there (by input
    # size); nnspec passes 2 so that torch doubles each pixel, as the NumPy backend does
    s = spec("upsample 2.02", "[N, 3, 17, 9]")
    x = np.random.default_rng(3).standard_normal((1, 3, 17, 9))
    want = np.repeat(np.repeat(x, 2, axis=2), 2, axis=3)
    with torch.no_grad():
        t = build_module(s, "M", dtype=torch.float64)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(t, want)
    np.testing.assert_array_equal(NumpyModel(s, "M", params={}, dtype="float64")(x), want)


def test_macs():
    layers = spec("upsample 2 mode=bilinear | upsample 2 mode=bicubic | upsample 2",
                  "[1, 1, 2, 2]").layers("M")
    assert [x.macs for x in layers] == [16 * 4, 64 * 16, 0]


def test_crosscheck(tmp_path):
    path = tmp_path / "sr.nn"
    path.write_text(
        "model SR(x: [N, 3, H, W]) -> [N, 3, 4*H, 4*W] {\n"
        "    conv 12 k=3 p=1 | relu | pixel_shuffle 2     : [N, 3, 2*H, 2*W]\n"
        "    upsample 2 mode=bicubic align_corners\n"
        "    pixel_unshuffle 2 | pixel_shuffle 2\n"
        "    upsample 1.5 mode=nearest_exact | upsample size=[4*H, 4*W] mode=bilinear\n"
        "}\n")
    s = nnspec.load(str(path))
    for dtype in ("float64", "float32"):
        report = crosscheck(s, "SR", dtype, dims={"H": 3, "W": 5})
        assert report.ok and report.first_shape_mismatch is None, report.render()
        assert [r.name for r in report.rows][-3:] == ["pixel_shuffle_1", "upsample_1",
                                                      "upsample_2"]


def test_a_hyphenated_mode_says_how_to_write_it():
    spec = nnspec.loads("model M(x: [N, 3, 8, 8]) {\n    upsample 2 mode=nearest-exact\n}\n",
                        "u.nn", strict=False)
    (d,) = spec.diagnostics
    assert (d.code, d.span.line, d.span.col) == ("E100", 2, 29)
    assert d.hint == ("a name cannot contain '-': write nearest_exact or \"nearest-exact\" "
                      "(or (nearest - exact) for a difference)")
