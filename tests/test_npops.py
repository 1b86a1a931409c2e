"""Reference NumPy kernels (nnspec.layers.kernels) against torch.nn.functional."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnspec.layers import kernels as npops

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = {np.float64: {"rtol": 1e-10, "atol": 1e-12}, np.float32: {"rtol": 1e-5, "atol": 1e-5}}


def rnd(shape, dtype=np.float64, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def t(a):
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


def check(got, ref, dtype=np.float64):
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    assert got.dtype == np.dtype(dtype), f"dtype {got.dtype} != {np.dtype(dtype)}"
    assert got.shape == ref.shape, f"shape {got.shape} != {ref.shape}"
    np.testing.assert_allclose(got, ref, **TOL[dtype])


def torch_pad_arg(pads):
    """[(b, a) per spatial dim] -> F.pad's flat list (last dim first)."""
    flat = []
    for b, a in reversed(pads):
        flat += [b, a]
    return flat


# ---------------------------------------------------------------------------
# pad
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,pads,value",
    [
        ((2, 3, 5), [(1, 2)], 0.0),
        ((2, 3, 5, 4), [(0, 1), (2, 0)], 0.0),
        ((2, 3, 5, 4), [(1, 1), (3, 2)], -1.5),
        ((1, 2, 3, 4, 5), [(1, 0), (0, 1), (2, 2)], 0.0),
        ((2, 3, 6, 6), [(-1, 2), (1, -2)], 0.0),
    ],
)
def test_pad_nd(shape, pads, value):
    x = rnd(shape)
    check(npops.pad_nd(x, pads, value), F.pad(t(x), torch_pad_arg(pads), value=value))


# ---------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------

# (N, C_in, C_out, spatial, k, stride, pads, dilation, groups, bias)
CONV_CASES = [
    # 1-d
    (2, 3, 4, (11,), (3,), (1,), [(0, 0)], (1,), 1, True),
    (2, 4, 6, (17,), (5,), (2,), [(2, 1)], (1,), 2, True),
    (3, 4, 4, (13,), (3,), (1,), [(1, 3)], (2,), 4, False),
    # 2-d
    (2, 3, 5, (9, 9), (3, 3), (1, 1), [(1, 1), (1, 1)], (1, 1), 1, True),
    (2, 3, 8, (12, 11), (3, 2), (2, 3), [(0, 2), (1, 0)], (1, 1), 1, True),
    (2, 4, 6, (10, 10), (3, 3), (1, 2), [(2, 2), (2, 2)], (2, 3), 2, True),
    (2, 6, 6, (8, 9), (3, 3), (1, 1), [(1, 1), (1, 1)], (1, 1), 6, False),  # depthwise
    (2, 4, 8, (8, 8), (3, 3), (2, 2), [(1, 0), (0, 1)], (1, 1), 4, True),  # depthwise x2
    (1, 3, 4, (7, 7), (1, 1), (1, 1), [(0, 0), (0, 0)], (1, 1), 1, True),  # 1x1
    (2, 1, 6, (28, 28), (5, 5), (1, 1), [(2, 2), (2, 2)], (1, 1), 1, True),  # LeNet conv1
    (1, 3, 8, (35, 35), (11, 11), (4, 4), [(2, 2), (2, 2)], (1, 1), 1, True),  # AlexNet conv1
    # large outputs per image (per-image GEMM path), with groups
    (2, 4, 6, (600,), (3,), (1,), [(1, 2)], (2,), 2, True),
    (2, 4, 6, (25, 24), (3, 3), (1, 1), [(1, 0), (2, 1)], (1, 2), 2, True),
    # 3-d
    (1, 2, 4, (5, 6, 7), (3, 2, 3), (1, 2, 1), [(1, 1), (0, 1), (2, 0)], (1, 1, 2), 2, True),
]


def torch_conv(x, w, b, stride, pads, dilation, groups):
    r = w.ndim - 2
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[r]
    xp = F.pad(t(x), torch_pad_arg(pads))
    return fn(xp, t(w), t(b), stride=stride, padding=0, dilation=dilation, groups=groups)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_nd(case):
    n, c, o, sp, k, stride, pads, dil, g, bias = case
    x = rnd((n, c) + sp, seed=1)
    w = rnd((o, c // g) + k, seed=2)
    b = rnd((o,), seed=3) if bias else None
    got = npops.conv_nd(x, w, b, stride, pads, dil, g)
    check(got, torch_conv(x, w, b, stride, pads, dil, g))


@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[5], CONV_CASES[6]])
def test_conv_nd_float32(case):
    n, c, o, sp, k, stride, pads, dil, g, bias = case
    x = rnd((n, c) + sp, np.float32, seed=1)
    w = rnd((o, c // g) + k, np.float32, seed=2)
    b = rnd((o,), np.float32, seed=3) if bias else None
    got = npops.conv_nd(x, w, b, stride, pads, dil, g)
    check(got, torch_conv(x, w, b, stride, pads, dil, g), np.float32)


def test_conv_errors():
    with pytest.raises(ValueError):
        npops.conv_nd(rnd((1, 3, 5, 5)), rnd((4, 2, 3, 3)), None, (1, 1), [(0, 0)] * 2, (1, 1), 1)
    with pytest.raises(ValueError):
        npops.conv_nd(rnd((1, 3, 2, 2)), rnd((4, 3, 3, 3)), None, (1, 1), [(0, 0)] * 2, (1, 1), 1)


# ---------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------

# (shape, k, stride, pad, dilation, ceil_mode)
MAX_POOL_CASES = [
    ((2, 3, 11), (3,), (2,), (1,), (1,), False),
    ((2, 3, 10), (2,), (3,), (0,), (2,), True),
    ((2, 3, 9, 9), (2, 2), (2, 2), (0, 0), (1, 1), False),
    ((2, 3, 9, 9), (2, 2), (2, 2), (0, 0), (1, 1), True),
    ((2, 3, 13, 11), (3, 3), (2, 2), (1, 1), (1, 1), True),
    ((2, 3, 12, 12), (3, 2), (2, 3), (1, 1), (2, 1), True),
    ((1, 2, 10, 9), (3, 3), (3, 2), (1, 0), (2, 2), False),
    ((2, 64, 55, 55), (3, 3), (2, 2), (0, 0), (1, 1), False),  # AlexNet pool1
    ((1, 2, 6, 7, 8), (2, 3, 2), (2, 2, 3), (1, 1, 0), (1, 1, 2), True),
]


@pytest.mark.parametrize("case", MAX_POOL_CASES)
def test_max_pool(case):
    shape, k, s, p, d, ceil = case
    r = len(k)
    x = rnd(shape, seed=4)
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[r]
    ref = fn(t(x), k, s, p, d, ceil_mode=ceil)
    got = npops.max_pool_nd(x, k, s, [(pi, pi) for pi in p], d, ceil)
    check(got, ref)


# (shape, k, stride, pad, ceil_mode, count_include_pad, divisor_override)
AVG_POOL_CASES = [
    ((2, 3, 11), (3,), (2,), (1,), False, True, None),
    ((2, 3, 10), (3,), (2,), (1,), True, True, None),
    ((2, 3, 10), (3,), (2,), (1,), True, False, None),
    ((2, 3, 9, 9), (2, 2), (2, 2), (0, 0), True, True, None),
    ((2, 3, 9, 8), (3, 3), (2, 2), (1, 1), True, True, None),
    ((2, 3, 9, 8), (3, 3), (2, 2), (1, 1), True, False, None),
    ((2, 3, 10, 11), (3, 2), (3, 2), (1, 1), False, False, None),
    ((2, 3, 10, 11), (3, 3), (2, 2), (1, 0), True, True, 5),
    ((2, 6, 28, 28), (2, 2), (2, 2), (0, 0), False, True, None),  # LeNet pool
    ((1, 2, 6, 7, 8), (2, 3, 2), (2, 2, 3), (1, 1, 0), True, True, None),
    ((1, 2, 6, 7, 8), (2, 3, 2), (2, 2, 3), (1, 1, 0), True, False, None),
]


def torch_avg_pool(x, k, s, p, ceil, cip, div):
    r = len(k)
    if r == 1:
        assert div is None
        return F.avg_pool1d(t(x), k, s, p, ceil_mode=ceil, count_include_pad=cip)
    fn = F.avg_pool2d if r == 2 else F.avg_pool3d
    return fn(t(x), k, s, p, ceil_mode=ceil, count_include_pad=cip, divisor_override=div)


@pytest.mark.parametrize("case", AVG_POOL_CASES)
def test_avg_pool(case):
    shape, k, s, p, ceil, cip, div = case
    x = rnd(shape, seed=5)
    got = npops.avg_pool_nd(x, k, s, [(pi, pi) for pi in p], ceil, cip, div)
    check(got, torch_avg_pool(x, k, s, p, ceil, cip, div))


def test_pools_float32():
    x = rnd((2, 3, 13, 11), np.float32, seed=6)
    check(
        npops.max_pool_nd(x, (3, 3), (2, 2), [(1, 1)] * 2, (1, 1), True),
        F.max_pool2d(t(x), 3, 2, 1, ceil_mode=True),
        np.float32,
    )
    check(
        npops.avg_pool_nd(x, (3, 3), (2, 2), [(1, 1)] * 2, True, False),
        F.avg_pool2d(t(x), 3, 2, 1, ceil_mode=True, count_include_pad=False),
        np.float32,
    )


def test_pool_asymmetric_padding_matches_explicit_pad():
    x = rnd((2, 3, 9, 10), seed=7)
    pads = [(1, 0), (0, 2)]
    got = npops.max_pool_nd(x, (2, 3), (2, 2), pads, (1, 1), False)
    ref = F.max_pool2d(F.pad(t(x), torch_pad_arg(pads), value=-math.inf), (2, 3), (2, 2))
    check(got, ref)
    got = npops.avg_pool_nd(x, (2, 3), (2, 2), pads, False, True)
    ref = F.avg_pool2d(F.pad(t(x), torch_pad_arg(pads)), (2, 3), (2, 2))
    check(got, ref)


def test_pool_default_stride_and_int_kernel():
    x = rnd((2, 3, 8, 8), seed=8)
    check(npops.max_pool_nd(x, 2, None, [(0, 0), (0, 0)]), F.max_pool2d(t(x), 2))
    check(npops.avg_pool_nd(x, (2, 2)), F.avg_pool2d(t(x), 2))


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_adaptive_avg_pool_global(rank):
    x = rnd((2, 3) + (5, 6, 4)[:rank], seed=9)
    fn = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[rank]
    check(npops.adaptive_avg_pool_global(x, rank), fn(t(x), 1))
    x32 = x.astype(np.float32)
    check(npops.adaptive_avg_pool_global(x32, rank), fn(t(x32), 1), np.float32)


# ---------------------------------------------------------------------------
# hypothesis: random conv / pool configurations
# ---------------------------------------------------------------------------


@st.composite
def conv_configs(draw):
    r = draw(st.sampled_from([1, 2]))
    g = draw(st.sampled_from([1, 2, 3]))
    cg = draw(st.integers(1, 3))
    og = draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 4)) for _ in range(r))
    d = tuple(draw(st.integers(1, 3)) for _ in range(r))
    s = tuple(draw(st.integers(1, 3)) for _ in range(r))
    pads = [(draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(r)]
    sp = tuple(
        draw(st.integers(max(1, di * (ki - 1) + 1 - pb - pa), 12))
        for ki, di, (pb, pa) in zip(k, d, pads)
    )
    n = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return n, g * cg, g * og, sp, k, s, pads, d, g, bias, seed


@settings(max_examples=60, deadline=None)
@given(conv_configs())
def test_conv_hypothesis(cfg):
    n, c, o, sp, k, s, pads, d, g, bias, seed = cfg
    x = rnd((n, c) + sp, seed=seed)
    w = rnd((o, c // g) + k, seed=seed + 1)
    b = rnd((o,), seed=seed + 2) if bias else None
    check(npops.conv_nd(x, w, b, s, pads, d, g), torch_conv(x, w, b, s, pads, d, g))


@st.composite
def pool_configs(draw):
    r = draw(st.sampled_from([1, 2]))
    k = tuple(draw(st.integers(1, 4)) for _ in range(r))
    s = tuple(draw(st.integers(1, 3)) for _ in range(r))
    p = tuple(draw(st.integers(0, ki // 2)) for ki in k)
    d = tuple(draw(st.integers(1, 3)) for _ in range(r))
    sp = tuple(
        draw(st.integers(max(1, di * (ki - 1) + 1 - 2 * pi), 11)) for ki, di, pi in zip(k, d, p)
    )
    ceil = draw(st.booleans())
    cip = draw(st.booleans())
    div = draw(st.sampled_from([None, None, 3])) if r == 2 else None
    seed = draw(st.integers(0, 2**16))
    return (2, 2) + sp, k, s, p, d, ceil, cip, div, seed


@settings(max_examples=80, deadline=None)
@given(pool_configs())
def test_pool_hypothesis(cfg):
    shape, k, s, p, d, ceil, cip, div, seed = cfg
    r = len(k)
    x = rnd(shape, seed=seed)
    pads = [(pi, pi) for pi in p]
    mfn = {1: F.max_pool1d, 2: F.max_pool2d}[r]
    check(npops.max_pool_nd(x, k, s, pads, d, ceil), mfn(t(x), k, s, p, d, ceil_mode=ceil))
    check(
        npops.avg_pool_nd(x, k, s, pads, ceil, cip, div), torch_avg_pool(x, k, s, p, ceil, cip, div)
    )


def test_pool_output_size_matches_torch_formula():
    for n in range(1, 12):
        for k in range(1, 5):
            for s in range(1, 4):
                for p in range(k // 2 + 1):
                    for ceil in (False, True):
                        if n + 2 * p < k:
                            continue
                        x = torch.zeros(1, 1, n, dtype=torch.float64)
                        ref = F.max_pool1d(x, k, s, p, ceil_mode=ceil).shape[-1]
                        assert npops.pool_output_size(n, k, s, p, p, 1, ceil) == ref


# ---------------------------------------------------------------------------
# linear & normalisation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("lead", [(), (4,), (2, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(lead, bias):
    x = rnd(lead + (7,), seed=10)
    w = rnd((5, 7), seed=11)
    b = rnd((5,), seed=12) if bias else None
    check(npops.linear(x, w, b), F.linear(t(x), t(w), t(b)))
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    b32 = None if b is None else b.astype(np.float32)
    check(npops.linear(x32, w32, b32), F.linear(t(x32), t(w32), t(b32)), np.float32)


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 7), (4, 3, 5, 6), (2, 3, 2, 3, 4)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm(shape, training, affine):
    c = shape[1]
    x = rnd(shape, seed=13, scale=3.0) + 1.5
    rm = rnd((c,), seed=14)
    rv = np.abs(rnd((c,), seed=15)) + 0.5
    w = rnd((c,), seed=16) if affine else None
    b = rnd((c,), seed=17) if affine else None
    trm, trv = t(rm.copy()), t(rv.copy())
    ref = F.batch_norm(t(x), trm, trv, t(w), t(b), training=training, momentum=0.3, eps=1e-4)
    y, nrm, nrv = npops.batch_norm(x, rm, rv, w, b, training, 0.3, 1e-4)
    check(y, ref)
    check(nrm, trm)  # running-stat update (unbiased variance) or unchanged in eval
    check(nrv, trv)
    if training:
        assert not np.allclose(nrv, rv)


def test_batch_norm_no_running_stats_and_float32():
    x = rnd((6, 4, 3, 3), seed=18)
    w, b = rnd((4,), seed=19), rnd((4,), seed=20)
    y, nrm, nrv = npops.batch_norm(x, None, None, w, b, False, 0.1, 1e-5)
    assert nrm is None and nrv is None
    check(y, F.batch_norm(t(x), None, None, t(w), t(b), training=True, eps=1e-5))
    x32 = x.astype(np.float32)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    trm, trv = t(rm.copy()), t(rv.copy())
    y, nrm, nrv = npops.batch_norm(
        x32, rm, rv, w.astype(np.float32), b.astype(np.float32), True, 0.1, 1e-5
    )
    ref = F.batch_norm(
        t(x32),
        trm,
        trv,
        t(w.astype(np.float32)),
        t(b.astype(np.float32)),
        training=True,
        momentum=0.1,
        eps=1e-5,
    )
    check(y, ref, np.float32)
    check(nrm, trm, np.float32)
    check(nrv, trv, np.float32)
    with pytest.raises(ValueError):
        npops.batch_norm(rnd((1, 4)), rm, rv, None, None, True, 0.1, 1e-5)


@pytest.mark.parametrize(
    "shape,nlen", [((4, 7), 1), ((2, 3, 6), 1), ((2, 3, 4, 5), 2), ((2, 3, 4, 5), 3)]
)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(shape, nlen, affine):
    ns = shape[len(shape) - nlen :]
    x = rnd(shape, seed=21, scale=2.0) + 0.7
    w = rnd(ns, seed=22) if affine else None
    b = rnd(ns, seed=23) if affine else None
    check(npops.layer_norm(x, nlen, w, b, 1e-5), F.layer_norm(t(x), ns, t(w), t(b), 1e-5))
    x32 = x.astype(np.float32)
    w32 = None if w is None else w.astype(np.float32)
    b32 = None if b is None else b.astype(np.float32)
    check(
        npops.layer_norm(x32, nlen, w32, b32, 1e-5),
        F.layer_norm(t(x32), ns, t(w32), t(b32), 1e-5),
        np.float32,
    )


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------

ACTS = [
    ("relu", lambda x: npops.relu(x), lambda x: F.relu(x)),
    ("leaky_relu", lambda x: npops.leaky_relu(x, 0.2), lambda x: F.leaky_relu(x, 0.2)),
    ("elu", lambda x: npops.elu(x, 1.3), lambda x: F.elu(x, 1.3)),
    ("gelu", lambda x: npops.gelu(x, "none"), lambda x: F.gelu(x, approximate="none")),
    ("gelu_tanh", lambda x: npops.gelu(x, "tanh"), lambda x: F.gelu(x, approximate="tanh")),
    ("tanh", lambda x: npops.tanh(x), lambda x: torch.tanh(x)),
    ("sigmoid", lambda x: npops.sigmoid(x), lambda x: torch.sigmoid(x)),
    ("softmax0", lambda x: npops.softmax(x, 0), lambda x: F.softmax(x, 0)),
    ("softmax", lambda x: npops.softmax(x, -1), lambda x: F.softmax(x, -1)),
    ("log_softmax1", lambda x: npops.log_softmax(x, 1), lambda x: F.log_softmax(x, 1)),
    ("log_softmax", lambda x: npops.log_softmax(x, -1), lambda x: F.log_softmax(x, -1)),
]


@pytest.mark.parametrize("name,ours,ref", ACTS, ids=[a[0] for a in ACTS])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_activations(name, ours, ref, dtype):
    x = rnd((5, 6, 7), dtype, seed=24, scale=3.0)
    x[0, 0, :3] = [0.0, -0.0, 1e-30]
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        got = ours(x)
    check(got, ref(t(x)), dtype)


@pytest.mark.parametrize("name,ours,ref", ACTS, ids=[a[0] for a in ACTS])
def test_activations_extreme(name, ours, ref):
    x = np.array(
        [
            [-1e4, -800.0, -40.0, -10.0, -1.0, 0.0, 1.0, 10.0, 40.0, 800.0, 1e4],
            [1e3, 1e3 + 1, 1e3 - 2, 5.0, -1e3, 3.0, 1e3, 0.5, 0.25, 700, -3],
        ]
    )
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        got = ours(x)
    assert np.all(np.isfinite(got))
    check(got, ref(t(x)))


def test_softmax_large_values():
    x = rnd((4, 10), seed=25, scale=1e3)
    check(npops.softmax(x, 1), F.softmax(t(x), 1))
    check(npops.log_softmax(x, 1), F.log_softmax(t(x), 1))
    assert np.allclose(npops.softmax(x, 1).sum(1), 1.0)


def test_erf_accuracy():
    x = np.linspace(-10.0, 10.0, 40001)
    ref = np.array([math.erf(v) for v in x])
    got = npops.erf(x)
    rel = np.abs(got - ref) / np.maximum(np.abs(ref), np.finfo(np.float64).tiny)
    assert rel.max() < 1e-15
    refc = np.array([math.erfc(v) for v in x])
    gotc = npops.erfc(x)
    relc = np.abs(gotc - refc) / np.maximum(refc, np.finfo(np.float64).tiny)
    assert relc.max() < 2e-15
    check(got, torch.erf(t(x)))
    special = npops.erf(np.array([0.0, np.inf, -np.inf, 30.0, -30.0, np.nan]))
    np.testing.assert_array_equal(special[:5], [0.0, 1.0, -1.0, 1.0, -1.0])
    assert np.isnan(special[5])
    x32 = x.astype(np.float32)
    got32 = npops.erf(x32)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, torch.erf(t(x32)).numpy(), rtol=1e-6, atol=1e-7)


def test_gelu_wide_range():
    x = np.linspace(-10.0, 10.0, 2001)
    check(npops.gelu(x, "none"), F.gelu(t(x)))
    check(npops.gelu(x, "tanh"), F.gelu(t(x), approximate="tanh"))
    with pytest.raises(ValueError):
        npops.gelu(x, "fast")


# ---------------------------------------------------------------------------
# dropout
# ---------------------------------------------------------------------------


def test_dropout():
    x = rnd((200, 100), seed=26) + 5.0
    assert npops.dropout(x, 0.5, False, None) is x
    y = npops.dropout(x, 0.3, True, np.random.default_rng(0))
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-14)
    y2 = npops.dropout(x, 0.3, True, np.random.default_rng(0))
    np.testing.assert_array_equal(y, y2)
    y32 = npops.dropout(x.astype(np.float32), 0.3, True, np.random.default_rng(0))
    assert y32.dtype == np.float32
    assert np.all(npops.dropout(x, 1.0, True, np.random.default_rng(0)) == 0)
    np.testing.assert_array_equal(npops.dropout(x, 0.0, True, np.random.default_rng(0)), x)
    with pytest.raises(ValueError):
        npops.dropout(x, 1.5, True, None)


# ---------------------------------------------------------------------------
# dtype preservation
# ---------------------------------------------------------------------------


def test_float32_in_float32_out():
    f = np.float32
    x = rnd((2, 4, 8, 8), f, seed=27)
    w = rnd((6, 2, 3, 3), np.float64, seed=28)  # float64 params are cast down
    outs = [
        npops.pad_nd(x, [(1, 1), (1, 1)]),
        npops.conv_nd(x, w, np.zeros(6), (1, 1), [(1, 1)] * 2, (1, 1), 2),
        npops.max_pool_nd(x, (2, 2), (2, 2), [(0, 0)] * 2, (1, 1), True),
        npops.avg_pool_nd(x, (3, 3), (2, 2), [(1, 1)] * 2, True, False),
        npops.avg_pool_nd(x, (3, 3), (2, 2), [(1, 1)] * 2, True, True, 4),
        npops.adaptive_avg_pool_global(x, 2),
        npops.linear(x, np.ones((3, 8)), np.ones(3)),
        npops.batch_norm(x, np.zeros(4), np.ones(4), np.ones(4), np.zeros(4), True, 0.1, 1e-5)[0],
        npops.batch_norm(x, np.zeros(4), np.ones(4), None, None, False, 0.1, 1e-5)[0],
        npops.layer_norm(x, 2, np.ones((8, 8)), np.zeros((8, 8)), 1e-5),
        npops.relu(x),
        npops.leaky_relu(x, 0.1),
        npops.elu(x, 1.0),
        npops.gelu(x, "none"),
        npops.gelu(x, "tanh"),
        npops.erf(x),
        npops.erfc(x),
        npops.tanh(x),
        npops.sigmoid(x),
        npops.softmax(x, 1),
        npops.log_softmax(x, -1),
        npops.dropout(x, 0.5, True, np.random.default_rng(1)),
    ]
    for i, o in enumerate(outs):
        assert o.dtype == np.float32, (i, o.dtype)
