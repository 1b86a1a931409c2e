"""The kernels that are not windows: linear, normalisation, erf/erfc and activations.

:func:`linear`, :func:`batch_norm`, :func:`layer_norm`; :func:`erf` and :func:`erfc` by
W. J. Cody's rational approximations (NumPy has no erf), which :func:`gelu` uses; and the
activations (:func:`relu`, :func:`sigmoid`, :func:`softmax`, ..., :func:`dropout`), each
stable over the whole float range.
"""

from __future__ import annotations

import numpy as np

from .common import _float_array

# ---------------------------------------------------------------------------
# linear & normalisation
# ---------------------------------------------------------------------------


def linear(x, w, b=None) -> np.ndarray:
    """``x @ w.T + b`` over the last axis; ``w`` is ``[out, in]`` as in PyTorch."""
    x = _float_array(x)
    w = np.asarray(w, dtype=x.dtype)
    y = np.matmul(x, w.T)
    if b is not None:
        y += np.asarray(b, dtype=x.dtype)
    return y


def batch_norm(
    x,
    running_mean,
    running_var,
    weight=None,
    bias=None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
):
    """Batch normalisation over channel axis 1 (``F.batch_norm`` semantics).

    Returns ``(y, new_running_mean, new_running_var)``; the inputs are not
    modified.  In training mode (or when the running stats are ``None``) batch
    statistics are used, normalising with the biased variance; the running
    stats (when given, and training) are updated with ``momentum`` using the
    unbiased variance.  In eval mode the running stats are used and returned
    unchanged.
    """
    x = _float_array(x)
    dt = x.dtype
    if x.ndim < 2:
        raise ValueError(f"batch_norm expects [N, C, ...], got shape {x.shape}")
    c = x.shape[1]
    bshape = (1, c) + (1,) * (x.ndim - 2)
    axes = (0,) + tuple(range(2, x.ndim))
    use_batch = training or running_mean is None or running_var is None
    new_rm, new_rv = running_mean, running_var
    if use_batch:
        count = x.size // c if c else 0
        if count <= 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size {x.shape}"
            )
        mean = x.mean(axis=axes)
        centred = x - mean.reshape(bshape)
        var = np.mean(centred * centred, axis=axes)  # biased; numpy<2 has no var(mean=)
        if training and running_mean is not None and running_var is not None:
            rm = np.asarray(running_mean)
            rv = np.asarray(running_var)
            m = float(momentum)
            unbiased = var * (count / (count - 1))
            new_rm = ((1.0 - m) * rm + m * mean.astype(rm.dtype)).astype(rm.dtype, copy=False)
            new_rv = ((1.0 - m) * rv + m * unbiased.astype(rv.dtype)).astype(rv.dtype, copy=False)
    else:
        mean = np.asarray(running_mean, dtype=dt)
        var = np.asarray(running_var, dtype=dt)
    invstd = 1.0 / np.sqrt(var + dt.type(eps))
    scale = invstd if weight is None else invstd * np.asarray(weight, dtype=dt)
    shift = -mean * scale
    if bias is not None:
        shift = shift + np.asarray(bias, dtype=dt)
    y = x * scale.reshape(bshape)
    y += shift.reshape(bshape)
    return y, new_rm, new_rv


def layer_norm(x, normalized_shape_len: int, weight=None, bias=None, eps: float = 1e-5):
    """Layer normalisation over the last ``normalized_shape_len`` axes."""
    x = _float_array(x)
    dt = x.dtype
    axes = tuple(range(x.ndim - int(normalized_shape_len), x.ndim))
    # centred about the row's first value first: a constant row centres to exact zeros (as
    # torch's), where x - mean(x) would leave the mean's rounding error
    y = x - x[(Ellipsis,) + (slice(0, 1),) * len(axes)]
    y -= y.mean(axis=axes, keepdims=True)
    var = np.mean(y * y, axis=axes, keepdims=True)
    y *= 1.0 / np.sqrt(var + dt.type(eps))
    if weight is not None:
        y *= np.asarray(weight, dtype=dt)
    if bias is not None:
        y += np.asarray(bias, dtype=dt)
    return y


# ---------------------------------------------------------------------------
# erf / erfc  (W. J. Cody, "Rational Chebyshev approximations for the error
# function", Math. Comp. 23 (1969), 631-637; coefficients from CALERF)
# ---------------------------------------------------------------------------

_ERF_A = (
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
)
_ERF_B = (
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
)
_ERF_C = (
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
    2.15311535474403846e-8,
)
_ERF_D = (
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
)
_ERF_P = (
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
)
_ERF_Q = (
    2.56852019228982242e00,
    1.87295284992346725e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
)
_INV_SQRT_PI = 5.6418958354775628695e-1
_ERF_THRESH = 0.46875


def _erf_small(x):
    """erf(x) for |x| <= 0.46875."""
    a, b = _ERF_A, _ERF_B
    ysq = x * x
    xnum = a[4] * ysq
    xden = ysq
    for i in range(3):
        xnum = (xnum + a[i]) * ysq
        xden = (xden + b[i]) * ysq
    return x * (xnum + a[3]) / (xden + b[3])


def _erfc_pos(y):
    """erfc(y) for y > 0.46875 (y may contain nan/inf)."""
    dt = y.dtype
    # erfc underflows to 0 beyond xbig (float64: 26.543, float32: 9.194)
    xbig = 26.543 if dt == np.float64 else 9.194 if dt == np.float32 else 26.543
    big = y >= xbig
    y = np.minimum(y, dt.type(xbig))
    res = np.empty_like(y)
    mid = y <= 4.0
    ym = y[mid]
    if ym.size:
        c, d = _ERF_C, _ERF_D
        xnum = c[8] * ym
        xden = ym
        for i in range(7):
            xnum = (xnum + c[i]) * ym
            xden = (xden + d[i]) * ym
        res[mid] = (xnum + c[7]) / (xden + d[7])
    hi = ~mid
    yh = y[hi]
    if yh.size:
        p, q = _ERF_P, _ERF_Q
        ysq = 1.0 / (yh * yh)
        xnum = p[5] * ysq
        xden = ysq
        for i in range(4):
            xnum = (xnum + p[i]) * ysq
            xden = (xden + q[i]) * ysq
        t = ysq * (xnum + p[4]) / (xden + q[4])
        res[hi] = (_INV_SQRT_PI - t) / yh
    # exp(-y*y) computed as exp(-ysq*ysq) * exp(-del) to avoid cancellation
    ysq = np.trunc(y * 16.0) / 16.0
    dl = (y - ysq) * (y + ysq)
    res *= np.exp(-ysq * ysq) * np.exp(-dl)
    res[big] = 0.0
    return res


def erf(x) -> np.ndarray:
    """Vectorised error function (Cody's rational approximations), dtype-preserving.

    Max relative error about 1e-16 in float64.
    """
    x = _float_array(x)
    ax = np.abs(x)
    small = ax <= _ERF_THRESH
    out = np.empty_like(x)
    out[small] = _erf_small(x[small])
    large = ~small
    xl = x[large]
    if xl.size:
        v = 1.0 - _erfc_pos(np.abs(xl))
        out[large] = np.where(xl < 0, -v, v)
    return out


def erfc(x) -> np.ndarray:
    """Vectorised complementary error function, accurate in the tails."""
    x = _float_array(x)
    ax = np.abs(x)
    small = ax <= _ERF_THRESH
    out = np.empty_like(x)
    out[small] = 1.0 - _erf_small(x[small])
    large = ~small
    xl = x[large]
    if xl.size:
        v = _erfc_pos(np.abs(xl))
        out[large] = np.where(xl < 0, 2.0 - v, v)
    return out


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------


def relu(x) -> np.ndarray:
    x = _float_array(x)
    return np.maximum(x, x.dtype.type(0))


def leaky_relu(x, slope: float = 0.01) -> np.ndarray:
    x = _float_array(x)
    return np.where(x > 0, x, x * x.dtype.type(slope))


def elu(x, alpha: float = 1.0) -> np.ndarray:
    x = _float_array(x)
    neg = np.expm1(np.minimum(x, x.dtype.type(0))) * x.dtype.type(alpha)
    return np.where(x > 0, x, neg)


_SQRT1_2 = 0.7071067811865475244
_SQRT_2_OVER_PI = 0.7978845608028654


def gelu(x, approximate: str = "none") -> np.ndarray:
    """GELU; ``approximate`` is ``"none"`` (erf form) or ``"tanh"``."""
    x = _float_array(x)
    dt = x.dtype.type
    if approximate == "none":
        # 0.5 x (1 + erf(x/sqrt2)) == 0.5 x erfc(-x/sqrt2), the latter without cancellation
        return dt(0.5) * x * erfc(-x * dt(_SQRT1_2))
    if approximate == "tanh":
        inner = dt(_SQRT_2_OVER_PI) * (x + dt(0.044715) * x * x * x)
        return dt(0.5) * x * (dt(1.0) + np.tanh(inner))
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def tanh(x) -> np.ndarray:
    return np.tanh(_float_array(x))


def sigmoid(x) -> np.ndarray:
    """Logistic sigmoid, stable for large |x| (no overflow warnings)."""
    x = _float_array(x)
    e = np.exp(-np.abs(x))
    one = x.dtype.type(1)
    return np.where(x >= 0, one / (one + e), e / (one + e))


def softmax(x, dim: int = -1) -> np.ndarray:
    x = _float_array(x)
    m = np.max(x, axis=dim, keepdims=True)
    e = np.exp(x - m)
    e /= np.sum(e, axis=dim, keepdims=True)
    return e


def log_softmax(x, dim: int = -1) -> np.ndarray:
    x = _float_array(x)
    m = np.max(x, axis=dim, keepdims=True)
    z = x - m
    z -= np.log(np.sum(np.exp(z), axis=dim, keepdims=True))
    return z


def dropout(x, p: float = 0.5, training: bool = False, rng=None) -> np.ndarray:
    """Inverted dropout: identity unless ``training``; zeros with probability ``p``.

    ``rng`` is a ``numpy.random.Generator`` (a fresh default one if ``None``).
    """
    x = _float_array(x)
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return np.zeros_like(x)
    if rng is None:
        rng = np.random.default_rng()
    keep = rng.random(x.shape) >= p
    return np.where(keep, x * x.dtype.type(1.0 / (1.0 - p)), x.dtype.type(0))
