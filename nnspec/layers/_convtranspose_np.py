"""The NumPy kernel of transposed convolution (imported only when a NumPy model runs)."""

from __future__ import annotations

import math

import numpy as np

# Pixels per image below which the batch is folded into one GEMM (measured on the DCGAN
# generator, batch 16: its 4x4 -> 8x8 layer 3x faster folded; at 16x16 and more, the
# per-image GEMMs are as fast and the extra copy of the result costs more).
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
