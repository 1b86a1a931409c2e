"""Initial weights drawn with NumPy, so one seed gives the same weights in both backends.

Each layer declares its state_dict entries with PyTorch's default initialiser for that
layer kind (see ``W.init``); this module draws them in state_dict order from one
``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np

from ..layers.base import INT, W

# Refuse to allocate weights beyond this many bytes (a spec can describe 10^12 weights).
DEFAULT_MEMORY_LIMIT = 8 * 2**30


class TooLarge(Exception):
    """The model's weights would not fit in the memory budget."""


def nbytes(shapes: dict[str, W], dtype) -> int:
    size = np.dtype(dtype).itemsize
    total = 0
    for w in shapes.values():
        if w.tied:
            continue  # the same memory as the entry it is tied to
        n = 1
        for s in w.shape:
            n *= s
        total += n * (8 if w.dtype == INT else size)
    return total


def check_fits(shapes: dict[str, W], dtype, limit: int | None = DEFAULT_MEMORY_LIMIT) -> int:
    """Bytes the weights need; raises TooLarge above ``limit`` (never allocates)."""
    need = nbytes(shapes, dtype)
    if limit is not None and need > limit:
        raise TooLarge(f"the weights need {need:,} bytes ({need / 2**30:,.1f} GiB) in "
                       f"{np.dtype(dtype).name}, over the limit of {limit:,} bytes; "
                       "refusing to allocate them")
    return need


def draw(shapes: dict[str, W], seed: int | None = 0, dtype=np.float32,
         limit: int | None = DEFAULT_MEMORY_LIMIT) -> dict[str, np.ndarray]:
    """Draw every state_dict entry with its declared initialiser."""
    check_fits(shapes, dtype, limit)
    rng = np.random.default_rng(seed)
    out = {}
    for key, w in shapes.items():
        kind = w.init[0]
        if w.tied:  # a tied weight: the very array of the entry it is
            out[key] = out[w.tied]
        elif w.dtype == INT:
            out[key] = np.zeros(w.shape, dtype=np.int64)
        elif kind == "uniform":
            bound = w.init[1]
            out[key] = rng.uniform(-bound, bound, size=w.shape).astype(dtype, copy=False)
        elif kind in ("zeros", "computed"):  # computed: a persistent buffer, filled by the
            out[key] = np.zeros(w.shape, dtype=dtype)  # back end from its constant
        elif kind == "ones":
            out[key] = np.ones(w.shape, dtype=dtype)
        elif kind == "normal":  # ("normal", std[, row]): row is zeroed (a padding index)
            a = (rng.standard_normal(size=w.shape) * w.init[1]).astype(dtype, copy=False)
            if len(w.init) > 2 and w.init[2] is not None:
                a[w.init[2]] = 0
            out[key] = a
        elif kind == "constant":
            out[key] = np.full(w.shape, w.init[1], dtype=dtype)
        elif kind == "uniform_range":
            out[key] = rng.uniform(w.init[1], w.init[2], size=w.shape).astype(dtype, copy=False)
        elif kind == "gauss":
            out[key] = rng.normal(w.init[1], w.init[2], size=w.shape).astype(dtype, copy=False)
        elif kind == "trunc_normal":
            out[key] = _trunc_normal(rng, w.shape, *w.init[1:]).astype(dtype, copy=False)
        elif kind == "orthogonal":
            out[key] = _orthogonal(rng, w.shape, w.init[1]).astype(dtype, copy=False)
        else:
            raise ValueError(f"unknown initialiser {kind!r} for {key}")
    return out


def _trunc_normal(rng, shape, mean: float, std: float, a: float, b: float) -> np.ndarray:
    """N(mean, std) restricted to [a, b], as torch.nn.init.trunc_normal_ (which cuts at
    the absolute values a and b): redraw the values outside until none is left."""
    if std == 0:
        return np.full(shape, mean)
    out = rng.normal(mean, std, size=shape)
    bad = (out < a) | (out > b)
    for _ in range(1000):  # each round keeps at least the in-range mass of N(mean, std)
        n = int(bad.sum())
        if n == 0:
            break
        out[bad] = rng.normal(mean, std, size=n)
        bad = (out < a) | (out > b)
    return np.clip(out, a, b)


def _orthogonal(rng, shape, gain: float) -> np.ndarray:
    """torch.nn.init.orthogonal_: the weight flattened to [size(0), rest] gets orthonormal
    rows (or columns, whichever are fewer), from the QR decomposition of a normal draw with
    the signs of R's diagonal folded in, times ``gain``."""
    rows = shape[0]
    cols = 1
    for s in shape[1:]:
        cols *= s
    flat = rng.standard_normal(size=(rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    d = np.sign(np.diag(r))
    d[d == 0] = 1
    q = q * d
    if rows < cols:
        q = q.T
    return (gain * q).reshape(shape)
