"""Reference NumPy kernels for the NumPy backend.

Every kernel follows PyTorch's layout conventions (images ``[N, C, *spatial]``,
weights exactly as they appear in a PyTorch ``state_dict``) and PyTorch's
numerical semantics, so that a model compiled to NumPy reproduces the PyTorch
model to round-off.  All kernels accept float32 and float64 arrays and return
results of the input dtype (parameters are cast to the input dtype, never the
other way round).

Only NumPy is imported here.  Everything is vectorised: the only Python loops
are over spatial dimensions and kernel offsets in the pooling kernels, where a
sequence of strided elementwise ``maximum``/``add`` passes measured 20-40x
faster than reducing a sliding-window view.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "adaptive_avg_pool_global",
    "avg_pool_nd",
    "batch_norm",
    "conv_nd",
    "conv_transpose_nd",
    "dropout",
    "elu",
    "erf",
    "erfc",
    "gelu",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log_softmax",
    "max_pool_nd",
    "pad_nd",
    "pool_output_size",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _float_array(x) -> np.ndarray:
    """``x`` as a floating ndarray (integers/bools are promoted to float64)."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return x


def _param(p, dtype) -> np.ndarray | None:
    """A parameter array cast to the computation dtype (``None`` stays ``None``)."""
    if p is None:
        return None
    return np.asarray(p, dtype=dtype)


def _tuple(v, rank: int, name: str) -> tuple[int, ...]:
    if isinstance(v, (int, np.integer)):
        return (int(v),) * rank
    t = tuple(int(e) for e in v)
    if len(t) == 1 and rank != 1:
        t = t * rank
    if len(t) != rank:
        raise ValueError(f"{name} must have {rank} entries, got {len(t)}")
    return t


def _kernel(k, *others) -> tuple[int, ...]:
    """Kernel size as a tuple; an int kernel takes its rank from the other arguments."""
    if not isinstance(k, (int, np.integer)):
        return tuple(int(e) for e in k)
    for o in others:
        if o is not None and not isinstance(o, (int, np.integer)) and len(o) > 1:
            return (int(k),) * len(o)
    return (int(k),)


def _pads(pads, rank: int) -> list[tuple[int, int]]:
    if pads is None:
        return [(0, 0)] * rank
    if isinstance(pads, (int, np.integer)):
        return [(int(pads), int(pads))] * rank
    out = []
    for p in pads:
        if isinstance(p, (int, np.integer)):
            out.append((int(p), int(p)))
        else:
            b, a = p
            out.append((int(b), int(a)))
    if len(out) == 1 and rank != 1:
        out = out * rank
    if len(out) != rank:
        raise ValueError(f"pads must have {rank} (before, after) pairs, got {len(out)}")
    return out


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


def _avg_divisor_1d(n, k, s, pb, pa, o, count_include_pad):
    start = np.arange(o) * s - pb
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
) -> np.ndarray:
    """Average pooling over the last ``len(k)`` axes (PyTorch semantics).

    Divisor rule (as in ATen): for each window ``start = o*s - pb``,
    ``end = min(start + k, n + pa)``; with ``count_include_pad`` the divisor is
    the product of ``end - start`` (padded positions count, ceil-mode overhang
    does not), otherwise only real input elements count.  ``divisor_override``
    replaces the divisor entirely.
    """
    x = _float_array(x)
    k = _kernel(k, stride, pads)
    r = len(k)
    stride = k if stride is None else _tuple(stride, r, "stride")
    pads = _pads(pads, r)
    ones = (1,) * r
    xp, outs = _pool_prepare(x, k, stride, pads, ones, ceil_mode, 0.0)
    total = _separable_reduce(xp, k, stride, ones, outs, np.add)
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError("divisor_override must be non-zero")
        return total / x.dtype.type(divisor_override)
    div = _avg_divisor(x, k, stride, pads, outs, count_include_pad)
    if np.any(div <= 0):  # windows with no element: ATen leaves them at 0
        safe = np.where(div > 0, div, 1)
        return np.where(div > 0, total / safe, 0).astype(x.dtype, copy=False)
    total /= div
    return total


def _avg_divisor(x, k, stride, pads, outs, count_include_pad) -> np.ndarray:
    r = len(k)
    sp = x.shape[x.ndim - r :]
    div = np.ones((), dtype=np.int64)
    for i in range(r):
        d = _avg_divisor_1d(
            sp[i], k[i], stride[i], pads[i][0], pads[i][1], outs[i], count_include_pad
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
                         count_include_pad: bool = True):
    """Gradient of ``avg_pool_nd``: each window's gradient over its divisor, spread over
    the cells it covers."""
    x = _float_array(x)
    r = len(k)
    stride, pads = _tuple(stride, r, "s"), _pads(pads, r)
    ones = (1,) * r
    xp, outs = _pool_prepare(x, k, stride, pads, ones, ceil_mode, 0.0)
    div = _avg_divisor(x, k, stride, pads, outs, count_include_pad)
    g = np.where(div > 0, gy / np.where(div > 0, div, 1), 0).astype(x.dtype, copy=False)
    lead = (slice(None),) * (x.ndim - r)
    gxp = np.zeros_like(xp)
    for sl, _ in _offsets(k, stride, ones, outs):
        gxp[lead + sl] += g
    return _crop(gxp, x.shape, pads)


def adaptive_avg_pool_global(x, spatial_rank: int) -> np.ndarray:
    """Global average pooling: mean over the last ``spatial_rank`` axes, keepdims."""
    x = _float_array(x)
    axes = tuple(range(x.ndim - spatial_rank, x.ndim))
    return x.mean(axis=axes, keepdims=True)


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
    mean = x.mean(axis=axes, keepdims=True)
    y = x - mean
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
