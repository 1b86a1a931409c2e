"""Reference gradients of the generative kinds against torch autograd (float64): transposed
convolution at every rank with groups, dilation, output_padding and asymmetric pads;
adaptive pooling with bins that overlap, repeat and tie; upsampling in every mode. Finite
differences over the registry samples run in test_backward.py."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec

from _gradcheck import check_autograd

SPECS = """
model T2(x: [N, 4, 5, 4]) {
    convtranspose 6 k=3 s=2 p=((1, 0), (0, 2)) d=2 output_padding=1 groups=2 | tanh
    convtranspose 3 k=4 s=2 p=1 bias=false
    deconv 2 k=(2, 3) s=(3, 1) size=(78, 22)
}
model T1(x: [N, 3, 6]) {
    convtranspose1d 4 k=5 s=3 p=2 output_padding=2 | convtranspose1d 2 k=1
}
model T3(x: [N, 2, 3, 2, 3]) {
    convtranspose3d 2 k=2 s=(2, 1, 2) p=(0, 1, 0) d=(1, 2, 1)
}
model A(x: [N, 3, 7, 10]) {
    a = x | adaptive_avgpool (3, 4)
    b = x | adaptive_maxpool (5, 3)
    c = x | adaptive_avgpool (9, None) | adaptive_maxpool (2, 10)
    concat(flatten(a), flatten(b), flatten(c), dim=1)
}
model A3(x: [N, 2, 5, 3, 4]) {
    a = x | adaptive_maxpool3d (2, None, 3)
    b = x | adaptive_avgpool3d (3, 2, 7)
    concat(flatten(a), flatten(b), dim=1)
}
model U(x: [N, 2, 5, 4]) {
    a = x | upsample 2 | upsample scale=1.5 mode="nearest-exact"
    b = x | upsample scale=(1.7, 2.3) mode=bilinear
    c = x | upsample size=(9, 7) mode=bilinear align_corners
    d = x | upsample size=(11, 6) mode=bicubic
    e = x | upsample scale=0.5 mode=bicubic align_corners
    concat(flatten(a), flatten(b), flatten(c), flatten(d), flatten(e), dim=1)
}
model U1(x: [N, 3, 7]) {
    a = x | upsample1d 3 | upsample1d scale=0.6 mode=linear
    b = x | upsample1d size=12 mode=linear align_corners
    concat(a, b, dim=2)
}
model U3(x: [N, 2, 3, 4, 2]) {
    upsample3d scale=(2, 1.5, 2) mode=trilinear | upsample3d size=(4, 5, 3)
}
"""

SHAPES = {"T2": (2, 4, 5, 4), "T1": (3, 3, 6), "T3": (2, 2, 3, 2, 3), "A": (2, 3, 7, 10),
          "A3": (2, 2, 5, 3, 4), "U": (2, 2, 5, 4), "U1": (2, 3, 7), "U3": (1, 2, 3, 4, 2)}


@pytest.mark.parametrize("model", sorted(SHAPES))
def test_generative_kinds_agree_with_torch_autograd(model):
    spec = nnspec.loads(SPECS, "g.nn")
    assert not spec.diagnostics, spec.diagnostics
    x = np.random.default_rng(7).standard_normal(SHAPES[model])
    check_autograd(spec, [x], model)


def test_adaptive_max_routes_ties_as_torch_does():
    """Equal maxima in one bin (a ReLU's zeros, repeated values): the gradient goes to the
    first in row-major order, as torch's kernel scans a bin, not per axis."""
    spec = nnspec.loads("model M(x: [N, 2, 6, 5]) {\n    adaptive_maxpool (4, 3)\n}", "t.nn")
    x = np.random.default_rng(1).integers(0, 2, (2, 2, 6, 5)).astype(np.float64)
    # bins of rows [0, 2) and columns [0, 2) hold ties in this draw: several cells of 1
    assert (x[:, :, :2, :2] == 1).sum(axis=(2, 3)).max() > 1
    check_autograd(spec, [x])


def test_conv_gradient_is_a_transposed_convolution():
    """The input gradient of a strided convolution with dropped border pixels (no window
    reaches them) is zero there, as torch's."""
    spec = nnspec.loads("model M(x: [N, 2, 8, 7]) {\n    conv 3 k=3 s=3 p=((1, 0), (0, 0))\n}",
                        "c.nn")
    x = np.random.default_rng(2).standard_normal((2, 2, 8, 7))
    gx = check_autograd(spec, [x]).inputs[0]
    assert np.all(gx[:, :, :, 6] == 0)  # W = 7, k = s = 3: column 6 is read by no window
