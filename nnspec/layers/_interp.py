"""NumPy kernels of upsample (F.interpolate) and pixel shuffle / unshuffle.

Interpolation is separable: per spatial axis, source indices and weights are computed
for the output positions (index arithmetic over ``arange``), then gathered with
``np.take`` and summed. The index arithmetic reproduces torch's CPU kernels
(ATen UpSample.h) in their own precision, since an index that rounds the other way
is a different pixel, not a rounding error:

- ``nearest`` on a rank-4 input: ``floor(i * scale)`` in float32 (copy when the output
  size equals the input size, ``i >> 1`` when it is twice it); on rank 3 and 5 the
  scale and product in the input's precision, floored in float32.
- ``nearest-exact``: ``floor((i + 0.5) * scale)`` the same way.
- linear modes: ``src = scale * (i + 0.5) - 0.5`` clamped at 0 (``scale * i`` with
  ``align_corners``), index ``min(floor(src), in - 1)``; a copy when the output size
  equals the input size.
- bicubic: Keys' cubic with A = -0.75 over the four neighbours, indices clamped at the
  borders (the source coordinate is not clamped).

``scale`` is ``1 / scale_factor`` when a factor is given, else ``in / out``;
``(in - 1) / (out - 1)`` with ``align_corners``.
"""

from __future__ import annotations

import numpy as np

_A = -0.75


def _scale(n_in: int, n_out: int, factor: float | None, ft):
    """torch's compute_scales_value in precision ``ft``."""
    if factor is not None and factor > 0:
        return ft(1.0 / factor)
    return ft(n_in) / ft(n_out)


def _floor_index(real: np.ndarray, n_in: int) -> np.ndarray:
    # torch floors with floorf: the coordinate is rounded to float32 first
    return np.minimum(np.floor(real.astype(np.float32)).astype(np.int64), n_in - 1)


def nearest_index(n_in: int, n_out: int, factor: float | None, exact: bool, rank: int,
                  ft) -> np.ndarray:
    i = np.arange(n_out)
    if rank == 2:
        if not exact and n_out == n_in:
            return i
        if not exact and n_out == 2 * n_in:
            return i >> 1
        f = np.float32
        s = _scale(n_in, n_out, factor, f)
        src = (i.astype(f) + f(0.5)) * s if exact else i.astype(f) * s
        return np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    s = _scale(n_in, n_out, factor, ft)
    if exact:
        real = np.maximum(s * (i.astype(ft) + ft(0.5)) - ft(0.5), ft(0)) + ft(0.5)
    else:
        real = s * i.astype(ft)
    return _floor_index(real, n_in)


def _source(n_in: int, n_out: int, factor: float | None, align: bool, cubic: bool, ft):
    i = np.arange(n_out).astype(ft)
    if align:
        s = ft(n_in - 1) / ft(n_out - 1) if n_out > 1 else ft(0)
        return s * i
    s = _scale(n_in, n_out, factor, ft)
    real = s * (i + ft(0.5)) - ft(0.5)
    return real if cubic else np.maximum(real, ft(0))


def linear_taps(n_in: int, n_out: int, factor: float | None, align: bool, ft):
    """([i0, i1], [w0, w1]) for each output position."""
    if n_out == n_in:
        i = np.arange(n_out)
        return [i], [np.ones(n_out, ft)]
    real = _source(n_in, n_out, factor, align, False, ft)
    i0 = _floor_index(real, n_in)
    w1 = np.clip(real - i0.astype(ft), ft(0), ft(1))
    i1 = i0 + (i0 < n_in - 1)
    return [i0, i1], [ft(1) - w1, w1]


def cubic_taps(n_in: int, n_out: int, factor: float | None, align: bool, ft):
    """Four indices (clamped to the input) and Keys' weights for each output position."""
    real = _source(n_in, n_out, factor, align, True, ft)
    i0 = _floor_index(real, n_in)
    t = np.clip(real - i0.astype(ft), ft(0), ft(1))
    a = ft(_A)

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    u = ft(1) - t
    weights = [far(t + ft(1)), near(t), near(u), far(u + ft(1))]
    idx = [np.clip(i0 - 1 + j, 0, n_in - 1) for j in range(4)]
    return idx, weights


def interpolate(x, sizes: tuple[int, ...], mode: str, align_corners: bool,
                factors: tuple[float | None, ...]) -> np.ndarray:
    """F.interpolate(x, size=sizes, mode=mode, align_corners=...) where ``factors`` are
    the scale factors torch uses for the coordinates (None: in / out)."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    ft = x.dtype.type
    n = len(sizes)
    for a in range(n):
        ax = x.ndim - n + a
        n_in, n_out = x.shape[ax], sizes[a]
        if mode in ("nearest", "nearest-exact"):
            idx = nearest_index(n_in, n_out, factors[a], mode == "nearest-exact", n, ft)
            x = np.take(x, idx, axis=ax)
            continue
        taps = cubic_taps if mode == "bicubic" else linear_taps
        idx, weights = taps(n_in, n_out, factors[a], align_corners, ft)
        shape = [1] * x.ndim
        shape[ax] = n_out
        y = np.take(x, idx[0], axis=ax) * weights[0].reshape(shape)
        for i, w in zip(idx[1:], weights[1:]):
            y += np.take(x, i, axis=ax) * w.reshape(shape)
        x = y
    return x


def _axis_matrix(n_in: int, n_out: int, mode: str, align_corners: bool,
                 factor: float | None, rank: int, ft) -> np.ndarray:
    """The [n_out, n_in] matrix of one axis's interpolation: the taps' weights added at
    their (possibly repeated or clamped) source indices."""
    m = np.zeros((n_out, n_in), dtype=ft)
    rows = np.arange(n_out)
    if mode in ("nearest", "nearest-exact"):
        m[rows, nearest_index(n_in, n_out, factor, mode == "nearest-exact", rank, ft)] = 1
        return m
    taps = cubic_taps if mode == "bicubic" else linear_taps
    for i, w in zip(*taps(n_in, n_out, factor, align_corners, ft)):
        np.add.at(m, (rows, i), w)
    return m


def interpolate_backward(x, sizes: tuple[int, ...], mode: str, align_corners: bool,
                         factors: tuple[float | None, ...], gy) -> np.ndarray:
    """Gradient of :func:`interpolate`: the forward is, per spatial axis, a product with a
    fixed [out, in] matrix, so the gradient applies the transposes, axis by axis. A nearest
    mode's matrix is a gather (one 1 per row), so its transpose sums each output's gradient
    into the input position it copied."""
    x = np.asarray(x)
    ft = x.dtype.type if np.issubdtype(x.dtype, np.floating) else np.float64
    g = np.asarray(gy, dtype=ft)
    n = len(sizes)
    for a in reversed(range(n)):
        ax = x.ndim - n + a
        m = _axis_matrix(x.shape[ax], sizes[a], mode, align_corners, factors[a], n, ft)
        g = np.moveaxis(np.tensordot(g, m, axes=([ax], [0])), -1, ax)
    return np.ascontiguousarray(g)


def pixel_shuffle(x, r: int) -> np.ndarray:
    """[*, C*r*r, H, W] -> [*, C, H*r, W*r] (channel c*r*r + i*r + j goes to (h*r + i,
    w*r + j)), as nn.PixelShuffle."""
    *lead, c, h, w = x.shape
    y = x.reshape(*lead, c // (r * r), r, r, h, w)
    k = len(lead)
    y = y.transpose(*range(k), k, k + 3, k + 1, k + 4, k + 2)
    return y.reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(x, r: int) -> np.ndarray:
    """The inverse: [*, C, H*r, W*r] -> [*, C*r*r, H, W], as nn.PixelUnshuffle."""
    *lead, c, h, w = x.shape
    y = x.reshape(*lead, c, h // r, r, w // r, r)
    k = len(lead)
    y = y.transpose(*range(k), k, k + 2, k + 4, k + 1, k + 3)
    return y.reshape(*lead, c * r * r, h // r, w // r)
