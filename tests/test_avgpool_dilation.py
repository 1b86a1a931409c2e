"""``avgpool d=``: average pooling over max pooling's dilated windows (torch's avg_pool has
no dilation). The NumPy kernel and the torch helper against F.unfold and against explicit
loops over each window's taps (count_include_pad, ceil mode, asymmetric and wide padding,
windows wholly in the padding), its gradient against finite differences and autograd, and
a spec through both backends and the emitted source."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import nnspec
from nnspec.layers.kernels import windows as K
from nnspec.layers.kernels.windows import pool_output_size

torch = pytest.importorskip("torch")
F = torch.nn.functional
from nnspec.layers.torch.pool import avg_pool_dilated  # noqa: E402

RNG = np.random.default_rng(5)


def _loops(x, k, s, pads, d, ceil, count_include_pad):
    """Each window's taps, one by one: the mean over the counted ones (0 for none)."""
    n = len(k)
    sp = x.shape[2:]
    outs = [pool_output_size(sp[i], k[i], s[i], *pads[i], d[i], ceil) for i in range(n)]
    y = np.zeros(x.shape[:2] + tuple(outs))
    for o in itertools.product(*(range(m) for m in outs)):
        total, count = np.zeros(x.shape[:2]), 0
        for j in itertools.product(*(range(kk) for kk in k)):
            at = [o[i] * s[i] - pads[i][0] + j[i] * d[i] for i in range(n)]
            inside = all(0 <= a < sp[i] for i, a in enumerate(at))
            padded = all(-pads[i][0] <= a < sp[i] + pads[i][1] for i, a in enumerate(at))
            if inside:
                total = total + x[(slice(None), slice(None)) + tuple(at)]
            count += inside if not count_include_pad else padded
        y[(slice(None), slice(None)) + o] = total / count if count else 0.0
    return y


def _flat(pads):
    out = []
    for a, b in reversed(pads):
        out += [a, b]
    return tuple(out)


CASES = [
    # k, s, pads, d, ceil, count_include_pad, spatial size
    ((3, 3), (1, 1), ((0, 0), (0, 0)), (2, 2), False, True, (9, 8)),
    ((3, 2), (2, 1), ((1, 1), (1, 0)), (2, 3), True, True, (9, 8)),
    ((3, 3), (2, 2), ((1, 1), (1, 1)), (2, 2), True, False, (9, 8)),
    ((2, 2), (3, 3), ((0, 2), (3, 1)), (3, 2), True, False, (7, 6)),  # wide, asymmetric
    ((2,), (2,), ((4, 4),), (2,), True, False, (3,)),  # windows wholly in the padding
    ((2,), (2,), ((4, 4),), (2,), True, True, (3,)),
    ((2, 2, 2), (1, 2, 1), ((1, 1), (0, 1), (1, 0)), (2, 1, 3), True, False, (5, 4, 6)),
]


@pytest.mark.parametrize("k, s, pads, d, ceil, cip, size", CASES)
def test_numpy_and_the_torch_helper_equal_explicit_loops(k, s, pads, d, ceil, cip, size):
    x = RNG.standard_normal((2, 3) + size)
    want = _loops(x, k, s, pads, d, ceil, cip)
    got = K.avg_pool_nd(x, k, s, pads, ceil, cip, dilation=d)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    helper = avg_pool_dilated(torch.tensor(x), _flat(pads), k, s, d, ceil_mode=ceil,
                              count_include_pad=cip)
    np.testing.assert_allclose(helper.numpy(), want, rtol=1e-12, atol=1e-14)


def test_against_unfold_and_max_pools_output_size():
    """Without ceil mode and with count_include_pad every tap counts: the mean of
    F.unfold's columns; the output has max pooling's size."""
    x = torch.tensor(RNG.standard_normal((2, 3, 11, 10)))
    k, s, p, d = (5, 3), (2, 1), (2, 1), (2, 2)
    cols = F.unfold(x, k, dilation=d, padding=p, stride=s)
    ref = cols.view(2, 3, 15, -1).mean(2)
    y = avg_pool_dilated(x, (1, 1, 2, 2), k, s, d)
    assert y.shape == F.max_pool2d(x, k, s, p, d).shape
    np.testing.assert_allclose(y.flatten(2).numpy(), ref.numpy(), rtol=1e-13)
    got = K.avg_pool_nd(x.numpy(), k, s, ((2, 2), (1, 1)), dilation=d)
    np.testing.assert_allclose(got, y.numpy(), rtol=1e-13)


@pytest.mark.parametrize("k, s, pads, d, ceil, cip, size", CASES)
def test_backward_equals_autograd_and_finite_differences(k, s, pads, d, ceil, cip, size):
    x = RNG.standard_normal((1, 2) + size)
    y = K.avg_pool_nd(x, k, s, pads, ceil, cip, dilation=d)
    gy = RNG.standard_normal(y.shape)
    g = K.avg_pool_nd_backward(x, gy, k, s, pads, ceil, cip, dilation=d)
    xt = torch.tensor(x, requires_grad=True)
    avg_pool_dilated(xt, _flat(pads), k, s, d, ceil_mode=ceil,
                     count_include_pad=cip).backward(torch.tensor(gy))
    np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    h = 1e-6
    for i in RNG.choice(x.size, size=min(6, x.size), replace=False):
        e = np.zeros(x.size)
        e[i] = h
        e = e.reshape(x.shape)
        fd = ((K.avg_pool_nd(x + e, k, s, pads, ceil, cip, dilation=d)
               - K.avg_pool_nd(x - e, k, s, pads, ceil, cip, dilation=d)) * gy).sum() / (2 * h)
        assert g.flat[i] == pytest.approx(fd, rel=1e-6, abs=1e-8)


SPEC = """
model P(x: [N, 3, 9, 8]) {
    avgpool k=3 s=2 p=((0, 2), 1) d=2 ceil count_include_pad=false : [N, 3, 4, 4]
    avgpool2d k=2 d=(1, 2) s=1 p=1                                 : [N, 3, 5, 4]
}
"""


def test_a_spec_through_both_backends_and_the_emitted_source():
    from nnspec.backends.numpy import NumpyModel
    from nnspec.backends.torch import build_module, emit_source

    spec = nnspec.loads(SPEC, "p.nn")
    x = RNG.standard_normal((2, 3, 9, 8))
    nm = NumpyModel(spec, seed=0, dtype=np.float64)
    want = nm(x)
    net = build_module(spec, dtype=torch.float64)
    np.testing.assert_allclose(net(torch.tensor(x)).detach().numpy(), want, rtol=1e-12)
    src = emit_source(spec)
    assert "def avg_pool_dilated(" in src
    assert ("x = avg_pool_dilated(x, (1, 1, 1, 1), kernel_size=(2, 2), stride=(1, 1), "
            "dilation=(1, 2))") in src
    assert ("dilation=(2, 2),\n            ceil_mode=True,\n            count_include_pad=False,"
            in src)
    env: dict = {}
    exec(compile(src, "p.py", "exec"), env)
    got = env["P"]().double()(torch.tensor(x))
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12)


def test_the_output_size_is_max_poolings():
    spec = nnspec.loads("model P(x: [N, 3, 10, 10]) {\n"
                        "  a = x | avgpool k=3 s=2 d=3 ceil p=1\n"
                        "  b = x | maxpool k=3 s=2 d=3 ceil p=1\n"
                        "  add(a, b) : [N, 3, 4, 4]\n}\n", "q.nn")
    assert not spec.diagnostics
