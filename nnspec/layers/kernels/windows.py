"""The window kernels: padding, convolution, transposed convolution, pooling, and their
backward.

:func:`pad_nd`, :func:`conv_nd`, :func:`conv_transpose_nd`, :func:`max_pool_nd`,
:func:`avg_pool_nd` (with :func:`pool_output_size`, PyTorch's output length) and global
average pooling, then the gradients: :func:`gather_backward` for ops that only move
elements, and the backward of the convolutions and pools, which loop over kernel offsets,
never over pixels. Convolutions are an im2col over a sliding-window view and one GEMM;
pooling is a sequence of strided elementwise ``maximum``/``add`` passes, measured 20-40x
faster than reducing a sliding-window view.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .common import _float_array, _kernel, _pads, _tuple

# ---------------------------------------------------------------------------
# padding
# ---------------------------------------------------------------------------


def pad_nd(x, pads, value: float = 0.0) -> np.ndarray:
    """Constant-pad the last ``len(pads)`` axes of ``x``.

    ``pads`` is a list of ``(before, after)`` pairs, one per padded axis, in axis
    order.  Negative amounts crop, as in ``torch.nn.functional.pad``.
    """
    x = np.asarray(x)
    pads = [(int(b), int(a)) for b, a in pads]
    r = len(pads)
    if r > x.ndim:
        raise ValueError(f"cannot pad {r} axes of a {x.ndim}-d array")
    if r == 0:
        return x
    # cropping (negative pads) first
    if any(b < 0 or a < 0 for b, a in pads):
        sl = [slice(None)] * (x.ndim - r)
        for (b, a), n in zip(pads, x.shape[x.ndim - r :]):
            sl.append(slice(max(-b, 0), n - max(-a, 0)))
        x = x[tuple(sl)]
        pads = [(max(b, 0), max(a, 0)) for b, a in pads]
    if all(b == 0 and a == 0 for b, a in pads):
        return x
    lead = x.shape[: x.ndim - r]
    sp = x.shape[x.ndim - r :]
    out = np.full(lead + tuple(n + b + a for n, (b, a) in zip(sp, pads)), value, dtype=x.dtype)
    inner = (Ellipsis,) + tuple(slice(b, b + n) for n, (b, _) in zip(sp, pads))
    out[inner] = x
    return out


# ---------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------


# Below this many output pixels per image, conv_nd batches all images into one GEMM
# (measured: 13x13 and 7x7 AlexNet/VGG-like layers gain 10-15%, 27x27 and up do not).
_CONV_SMALL_P = 512


def conv_nd(x, w, b=None, stride=1, pads=None, dilation=1, groups: int = 1) -> np.ndarray:
    """N-d cross-correlation with PyTorch semantics (``F.conv1d/2d/3d``).

    x: ``[N, C_in, *spatial]``; w: ``[C_out, C_in/groups, *k]``; b: ``[C_out]`` or None.
    ``stride``/``dilation``: per-spatial-dim tuples (or ints); ``pads``: list of
    ``(before, after)`` pairs (asymmetric padding allowed).

    Implementation: pad, take a sliding-window view (stride and dilation applied
    by slicing the view) and copy it once into an im2col tensor, then GEMM:

    * usually as ``[N, G, C_in/G * prod(k), prod(out)]`` with one broadcast
      matmul ``[G, C_out/G, K] @ [N, G, K, P]``, which lands directly in
      ``[N, C_out, *out]`` order;
    * when an image has few output pixels (``P < _CONV_SMALL_P``), as
      ``[G, K, N*P]`` so that one thicker GEMM per group covers the whole batch,
      followed by one transpose of the result.

    Of the layouts measured (bench/bench_npops_conv.py), these were the fastest
    on AlexNet/LeNet/VGG-like shapes.
    """
    x = _float_array(x)
    dt = x.dtype
    w = np.asarray(w, dtype=dt)
    r = w.ndim - 2
    if r < 1:
        raise ValueError("conv weight must be [C_out, C_in/groups, *k]")
    if x.ndim != r + 2:
        raise ValueError(f"conv{r}d expects a {r + 2}-d input, got shape {x.shape}")
    groups = int(groups)
    n, c = x.shape[:2]
    c_out, cg = w.shape[:2]
    k = w.shape[2:]
    if groups < 1 or c % groups or c_out % groups or cg * groups != c:
        raise ValueError(
            f"conv: C_in={c}, C_out={c_out}, weight C_in/groups={cg} incompatible with "
            f"groups={groups}"
        )
    stride = _tuple(stride, r, "stride")
    dilation = _tuple(dilation, r, "dilation")
    pads = _pads(pads, r)

    xp = pad_nd(x, pads)
    ext = tuple(d * (kk - 1) + 1 for d, kk in zip(dilation, k))
    if any(sp < e for sp, e in zip(xp.shape[2:], ext)):
        raise ValueError(f"conv: padded input {xp.shape[2:]} smaller than dilated kernel {ext}")
    v = sliding_window_view(xp, ext, axis=tuple(range(2, 2 + r)))  # [N, C, *o, *ext]
    v = v[
        (slice(None), slice(None))
        + tuple(slice(None, None, s) for s in stride)
        + tuple(slice(None, None, d) for d in dilation)
    ]  # [N, C, *o, *k]
    out_sp = v.shape[2 : 2 + r]
    kk = math.prod(k)
    p = math.prod(out_sp)
    v = v.reshape((n, groups, cg) + out_sp + tuple(k))
    wm = w.reshape(groups, c_out // groups, cg * kk)
    ks = tuple(range(3 + r, 3 + 2 * r))
    os_ = tuple(range(3, 3 + r))
    if p >= _CONV_SMALL_P or n == 1:
        # [N, G, Cg, *o, *k] -> [N, G, Cg, *k, *o]: one copy into the im2col tensor, then
        # one GEMM per (image, group) landing directly in [N, C_out, *o]
        cols = v.transpose((0, 1, 2) + ks + os_).reshape(n, groups, cg * kk, p)
        out = np.matmul(wm, cols)  # [N, G, C_out/G, P]
        out = out.reshape((n, c_out) + out_sp)
    else:
        # few output pixels per image: per-image GEMMs are too thin; batch the images
        # into one GEMM per group ([G, Cg*K, N*P]) and transpose the result once
        cols = v.transpose((1, 2) + ks + (0,) + os_).reshape(groups, cg * kk, n * p)
        out = np.matmul(wm, cols).reshape(c_out, n, p)  # [G*C_out/G, N, P]
        out = np.ascontiguousarray(out.transpose(1, 0, 2)).reshape((n, c_out) + out_sp)
    if b is not None:
        out += np.asarray(b, dtype=dt).reshape((c_out,) + (1,) * r)
    return out


# Transposed convolution: pixels per image below which the batch is folded into one GEMM
# (measured on the DCGAN generator, batch 16: its 4x4 -> 8x8 layer 3x faster folded; at
# 16x16 and more, the per-image GEMMs are as fast and the extra copy of the result costs
# more).
_FOLD_BELOW = 256


def conv_transpose_nd(x, w, b=None, stride=(1,), pads=((0, 0),), dilation=(1,),
                      output_padding=(0,), groups: int = 1) -> np.ndarray:
    """N-d transposed convolution with PyTorch semantics (``F.conv_transpose1d/2d/3d``).

    x: ``[N, C_in, *F]``; w: ``[C_in, C_out/groups, *k]``; b: ``[C_out]`` or None; the
    other arguments are per-spatial-dim tuples, ``pads`` (before, after) pairs cropped
    from the full output (asymmetric allowed) and ``output_padding`` extra positions at
    the end.

    One GEMM per group scatters every input pixel into ``C_out/groups * prod(k)``
    contributions (``[G, Cg_out*K, Cg_in] @ [N, G, Cg_in, P]``); an overlap-add over the
    ``prod(k)`` kernel offsets (strided slices, no loop over pixels or batch) places them
    at ``i*s + j*d``, and the crop leaves ``(F - 1)*s - p_b - p_a + d*(k - 1) + op + 1``.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    dt = x.dtype
    w = np.asarray(w, dtype=dt)
    r = w.ndim - 2
    n, c_in = x.shape[:2]
    sp = x.shape[2:]
    cg_out, k = w.shape[1], w.shape[2:]
    g = int(groups)
    cg_in, c_out = c_in // g, cg_out * g
    kk, p = math.prod(k), math.prod(sp)
    wm = w.reshape(g, cg_in, cg_out * kk).transpose(0, 2, 1)  # [G, Cg_out*K, Cg_in]
    if n > 1 and p < _FOLD_BELOW:
        # few pixels per image (a generator's first upsamplings: 4x4 -> 8x8): one GEMM per
        # image would be a skinny [Cg_out*K, Cg_in] @ [Cg_in, P] far below BLAS's peak, so
        # the batch goes into the GEMM's columns and the result is put back in image order
        xm = x.reshape(n, g, cg_in, p).transpose(1, 2, 0, 3).reshape(g, cg_in, n * p)
        cols = np.matmul(wm, xm).reshape(g, cg_out * kk, n, p).transpose(2, 0, 1, 3)
        cols = np.ascontiguousarray(cols)
    else:
        cols = np.matmul(wm, x.reshape(n, g, cg_in, p))  # [N, G, Cg_out*K, P]
    cols = cols.reshape((n, c_out) + tuple(k) + tuple(sp))
    full = [(f - 1) * s + d * (kd - 1) + 1 for f, s, d, kd in zip(sp, stride, dilation, k)]
    outs = [L - pb - pa + op for L, (pb, pa), op in zip(full, pads, output_padding)]
    # the buffer also holds the output_padding positions past the full output (zeros)
    y = np.zeros((n, c_out) + tuple(max(L, pb + o) for L, (pb, _), o in
                                    zip(full, pads, outs)), dtype=dt)
    for offs in np.ndindex(*k):
        sl = tuple(slice(j * d, j * d + (f - 1) * s + 1, s)
                   for j, d, f, s in zip(offs, dilation, sp, stride))
        y[(Ellipsis,) + sl] += cols[(slice(None), slice(None)) + offs]
    y = y[(Ellipsis,) + tuple(slice(pb, pb + o) for (pb, _), o in zip(pads, outs))]
    y = np.ascontiguousarray(y)
    if b is not None:
        y += np.asarray(b, dtype=dt).reshape((c_out,) + (1,) * r)
    return y


# ---------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------


def pool_output_size(
    n: int, k: int, s: int, pad_before: int, pad_after: int, dilation: int, ceil_mode: bool
) -> int:
    """PyTorch's pooling output length along one axis.

    ``floor((n + pb + pa - d*(k-1) - 1) / s) + 1`` (ceil in ceil mode), and in
    ceil mode the last window must start inside the input or the left padding.
    """
    span = n + pad_before + pad_after - dilation * (k - 1) - 1
    if ceil_mode:
        o = -(-span // s) + 1
        if (o - 1) * s >= n + pad_before:
            o -= 1
    else:
        o = span // s + 1
    return o


def _pool_prepare(x, k, stride, pads, dilation, ceil_mode, fill):
    """Pad ``x`` (incl. the ceil-mode overhang) and compute the output sizes."""
    r = len(k)
    if x.ndim < r:
        raise ValueError(f"pool over {r} spatial dims needs an input of rank >= {r}")
    sp = x.shape[x.ndim - r :]
    outs = []
    full = []
    for i in range(r):
        pb, pa = pads[i]
        o = pool_output_size(sp[i], k[i], stride[i], pb, pa, dilation[i], ceil_mode)
        if o < 1:
            raise ValueError(f"pool: output size {o} < 1 along spatial axis {i}")
        outs.append(o)
        need = (o - 1) * stride[i] + dilation[i] * (k[i] - 1) + 1
        have = sp[i] + pb + pa
        full.append((pb, pa + max(0, need - have)))
    return pad_nd(x, full, fill), outs


def _separable_reduce(xp, k, stride, dilation, outs, op):
    """Reduce windows axis by axis with ``op`` (np.maximum or np.add), in place."""
    r = len(k)
    y = xp
    for i in range(r):
        axis = y.ndim - r + i
        acc = None
        for j in range(k[i]):
            start = j * dilation[i]
            sl = [slice(None)] * y.ndim
            sl[axis] = slice(start, start + stride[i] * (outs[i] - 1) + 1, stride[i])
            part = y[tuple(sl)]
            if acc is None:
                acc = part.copy()
            else:
                op(acc, part, out=acc)
        y = acc
    return y


def max_pool_nd(x, k, stride=None, pads=None, dilation=1, ceil_mode: bool = False) -> np.ndarray:
    """Max pooling over the last ``len(k)`` axes (PyTorch semantics, -inf padding)."""
    x = _float_array(x)
    k = _kernel(k, stride, pads, dilation)
    r = len(k)
    stride = k if stride is None else _tuple(stride, r, "stride")
    dilation = _tuple(dilation, r, "dilation")
    pads = _pads(pads, r)
    xp, outs = _pool_prepare(x, k, stride, pads, dilation, ceil_mode, -np.inf)
    return _separable_reduce(xp, k, stride, dilation, outs, np.maximum)


def _avg_divisor_1d(n, k, s, pb, pa, o, count_include_pad, d=1):
    """Each window's counted taps along one axis: those inside the padded extent
    [-pb, n + pa) (the ceil-mode overhang past it never counts), or with
    ``count_include_pad`` off those inside the input [0, n)."""
    start = np.arange(o) * s - pb
    if d != 1:
        taps = start[:, None] + np.arange(k) * d
        lo, hi = (-pb, n + pa) if count_include_pad else (0, n)
        return ((taps >= lo) & (taps < hi)).sum(axis=1)
    end = np.minimum(start + k, n + pa)
    size = end - start
    if not count_include_pad:
        size = np.minimum(end, n) - np.maximum(start, 0)
    return size


def avg_pool_nd(
    x,
    k,
    stride=None,
    pads=None,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    dilation=1,
) -> np.ndarray:
    """Average pooling over the last ``len(k)`` axes (PyTorch semantics).

    Divisor rule (as in ATen): for each window ``start = o*s - pb``,
    ``end = min(start + k, n + pa)``; with ``count_include_pad`` the divisor is
    the product of ``end - start`` (padded positions count, ceil-mode overhang
    does not), otherwise only real input elements count.  ``divisor_override``
    replaces the divisor entirely. A ``dilation`` (which PyTorch's avg_pool lacks) spaces
    the taps as max pooling's; the divisor counts the taps by the same rule.
    """
    x = _float_array(x)
    k = _kernel(k, stride, pads, dilation)
    r = len(k)
    stride = k if stride is None else _tuple(stride, r, "stride")
    dilation = _tuple(dilation, r, "dilation")
    pads = _pads(pads, r)
    xp, outs = _pool_prepare(x, k, stride, pads, dilation, ceil_mode, 0.0)
    total = _separable_reduce(xp, k, stride, dilation, outs, np.add)
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError("divisor_override must be non-zero")
        return total / x.dtype.type(divisor_override)
    div = _avg_divisor(x, k, stride, pads, outs, count_include_pad, dilation)
    if np.any(div <= 0):  # windows with no element: ATen leaves them at 0
        safe = np.where(div > 0, div, 1)
        return np.where(div > 0, total / safe, 0).astype(x.dtype, copy=False)
    total /= div
    return total


def _avg_divisor(x, k, stride, pads, outs, count_include_pad, dilation=None) -> np.ndarray:
    r = len(k)
    sp = x.shape[x.ndim - r :]
    dilation = dilation or (1,) * r
    div = np.ones((), dtype=np.int64)
    for i in range(r):
        d = _avg_divisor_1d(
            sp[i], k[i], stride[i], pads[i][0], pads[i][1], outs[i], count_include_pad,
            dilation[i],
        )
        div = np.multiply.outer(div, d)
    return div.astype(x.dtype)


def gather_backward(move, x_shape, gy) -> np.ndarray:
    """The gradient of an op that only moves (or repeats) elements: crop, pad, pixel
    shuffle. ``move`` applied to the index of every input element says where each output
    element comes from (-1: a constant fill); the gradient sums gy back there."""
    n = int(np.prod(x_shape))
    src = np.asarray(move(np.arange(n, dtype=np.int64).reshape(x_shape)))
    keep = src >= 0
    g = np.bincount(src[keep].ravel(), weights=np.asarray(gy)[keep].ravel(), minlength=n)
    return g.reshape(x_shape).astype(np.asarray(gy).dtype, copy=False)


# ---- backward of the window kernels (loops over kernel offsets, never over pixels) ----


def _offsets(k, stride, dilation, outs):
    """For each kernel offset (row-major, as PyTorch scans a window): the slices of the
    padded input that the offset reads for every output position."""
    import itertools

    for off in itertools.product(*(range(kk) for kk in k)):
        yield tuple(slice(j * d, j * d + s * (o - 1) + 1, s)
                    for j, d, s, o in zip(off, dilation, stride, outs)), off


def _crop(gp, x_shape, pads):
    """The gradient of the padded input cut back to the input (the pads get none)."""
    r = len(pads)
    sl = tuple(slice(pb, pb + n) for (pb, _), n in zip(pads, x_shape[len(x_shape) - r:]))
    return gp[(Ellipsis,) + sl]


def conv_weight_grad(x, gy, k, stride, pads, dilation, groups: int = 1) -> np.ndarray:
    """The weight gradient of ``conv_nd``: ``dW[g] = Σ_{n,p} gy[n, g, :, p] · cols[n, g, :, p]ᵀ``
    with ``cols`` the forward's im2col tensor, built the same way (one copy of a sliding-window
    view) but laid out ``[G, C_in/G * prod(k), N*P]``, so that the sum over the batch and the
    pixels is one GEMM per group."""
    x = _float_array(x)
    dt = x.dtype
    gy = np.asarray(gy, dtype=dt)
    r = len(k)
    stride, dilation, pads = _tuple(stride, r, "s"), _tuple(dilation, r, "d"), _pads(pads, r)
    n, c = x.shape[:2]
    c_out = gy.shape[1]
    g = int(groups)
    cg, og = c // g, c_out // g
    outs = tuple(gy.shape[2:])
    xp = pad_nd(x, pads)
    ext = tuple(d * (kk - 1) + 1 for d, kk in zip(dilation, k))
    v = sliding_window_view(xp, ext, axis=tuple(range(2, 2 + r)))
    v = v[(slice(None), slice(None))
          + tuple(slice(None, s * (o - 1) + 1, s) for s, o in zip(stride, outs))
          + tuple(slice(None, None, d) for d in dilation)]  # [N, C, *o, *k]
    p, kk = math.prod(outs), math.prod(k)
    ks = tuple(range(3 + r, 3 + 2 * r))
    os_ = tuple(range(3, 3 + r))
    cols = v.reshape((n, g, cg) + outs + tuple(k))
    cols = cols.transpose((1, 2) + ks + (0,) + os_).reshape(g, cg * kk, n * p)
    gyt = gy.reshape(n, g, og, p).transpose(1, 2, 0, 3).reshape(g, og, n * p)
    return np.matmul(gyt, cols.transpose(0, 2, 1)).reshape((c_out, cg) + tuple(k))


def _conv_grad_args(x, w, gy, stride, pads, dilation):
    """The backward's arrays in the input's float dtype and its geometry as tuples."""
    x = _float_array(x)
    w = np.asarray(w, dtype=x.dtype)
    gy = np.asarray(gy, dtype=x.dtype)
    r = w.ndim - 2
    return (x, w, gy, _tuple(stride, r, "s"), _pads(pads, r), _tuple(dilation, r, "d"))


def conv_nd_backward(x, w, gy, stride, pads, dilation, groups: int = 1):
    """Gradients of ``conv_nd``: (dx, dw). The input gradient of a convolution is the
    transposed convolution of ``gy`` with the same weight (``output_padding`` restoring the
    input positions no window reached); the weight gradient is :func:`conv_weight_grad`."""
    x, w, gy, stride, pads, dilation = _conv_grad_args(x, w, gy, stride, pads, dilation)
    k = w.shape[2:]
    outs = gy.shape[2:]
    op = tuple(f - ((o - 1) * s - pb - pa + d * (kk - 1) + 1) for f, o, s, (pb, pa), d, kk
               in zip(x.shape[2:], outs, stride, pads, dilation, k))
    gx = conv_transpose_nd(gy, w, None, stride, pads, dilation, op, groups)
    return gx, conv_weight_grad(x, gy, k, stride, pads, dilation, groups)


def conv_transpose_nd_backward(x, w, gy, stride, pads, dilation, output_padding,
                               groups: int = 1):
    """Gradients of :func:`conv_transpose_nd`: (dx, dw). ``gy`` is put back into the full
    (uncropped) output, ``(F - 1)*s + d*(k - 1) + 1`` long (the output_padding positions
    past it got no contribution and drop out); then dx is the plain convolution of that
    with the same weight, and dw the convolution weight gradient with the roles of input
    and output swapped (``dW[ci, co, j] = Σ x[ci, i] · gy_full[co, i*s + j*d]``)."""
    x, w, gy, stride, pads, dilation = _conv_grad_args(x, w, gy, stride, pads, dilation)
    op = _tuple(output_padding, w.ndim - 2, "output_padding")
    gfull = pad_nd(gy, [(pb, pa - o) for (pb, pa), o in zip(pads, op)])
    gx = conv_nd(gfull, w, None, stride, None, dilation, groups)
    return gx, conv_weight_grad(gfull, x, w.shape[2:], stride, None, dilation, groups)


def max_pool_nd_backward(x, gy, k, stride, pads, dilation, ceil_mode: bool = False):
    """Gradient of ``max_pool_nd``: each window's gradient goes to its maximum, the first
    one in scan order when several are equal (as PyTorch)."""
    x = _float_array(x)
    r = len(k)
    stride, dilation, pads = _tuple(stride, r, "s"), _tuple(dilation, r, "d"), _pads(pads, r)
    xp, outs = _pool_prepare(x, k, stride, pads, dilation, ceil_mode, -np.inf)
    lead = (slice(None),) * (x.ndim - r)
    y = _separable_reduce(xp, k, stride, dilation, outs, np.maximum)
    gxp = np.zeros_like(xp)
    taken = np.zeros(y.shape, dtype=bool)
    for sl, _ in _offsets(k, stride, dilation, outs):
        hit = (xp[lead + sl] == y) & ~taken
        taken |= hit
        gxp[lead + sl] += np.where(hit, gy, 0)
    return _crop(gxp, x.shape, pads)


def avg_pool_nd_backward(x, gy, k, stride, pads, ceil_mode: bool = False,
                         count_include_pad: bool = True, dilation=1):
    """Gradient of ``avg_pool_nd``: each window's gradient over its divisor, spread over
    the cells it covers (its taps, ``dilation`` apart)."""
    x = _float_array(x)
    r = len(k)
    stride, pads = _tuple(stride, r, "s"), _pads(pads, r)
    dilation = _tuple(dilation, r, "d")
    xp, outs = _pool_prepare(x, k, stride, pads, dilation, ceil_mode, 0.0)
    div = _avg_divisor(x, k, stride, pads, outs, count_include_pad, dilation)
    g = np.where(div > 0, gy / np.where(div > 0, div, 1), 0).astype(x.dtype, copy=False)
    lead = (slice(None),) * (x.ndim - r)
    gxp = np.zeros_like(xp)
    for sl, _ in _offsets(k, stride, dilation, outs):
        gxp[lead + sl] += g
    return _crop(gxp, x.shape, pads)


def adaptive_avg_pool_global(x, spatial_rank: int) -> np.ndarray:
    """Global average pooling: mean over the last ``spatial_rank`` axes, keepdims."""
    x = _float_array(x)
    axes = tuple(range(x.ndim - spatial_rank, x.ndim))
    return x.mean(axis=axes, keepdims=True)

