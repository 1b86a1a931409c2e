"""Initial weights drawn with NumPy, so one seed gives the same weights in both backends.

Each layer declares its state_dict entries with PyTorch's default initialiser for that
layer kind (see ``W.init``); this module draws them in state_dict order from one
``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np

from .layers.base import INT, W

# Refuse to allocate weights beyond this many bytes (a spec can describe 10^12 weights).
DEFAULT_MEMORY_LIMIT = 8 * 2**30


class TooLarge(Exception):
    """The model's weights would not fit in the memory budget."""


def nbytes(shapes: dict[str, W], dtype) -> int:
    size = np.dtype(dtype).itemsize
    total = 0
    for w in shapes.values():
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
        if w.dtype == INT:
            out[key] = np.zeros(w.shape, dtype=np.int64)
        elif kind == "uniform":
            bound = w.init[1]
            out[key] = rng.uniform(-bound, bound, size=w.shape).astype(dtype, copy=False)
        elif kind == "zeros":
            out[key] = np.zeros(w.shape, dtype=dtype)
        elif kind == "ones":
            out[key] = np.ones(w.shape, dtype=dtype)
        elif kind == "normal":  # ("normal", std[, row]): row is zeroed (a padding index)
            a = (rng.standard_normal(size=w.shape) * w.init[1]).astype(dtype, copy=False)
            if len(w.init) > 2 and w.init[2] is not None:
                a[w.init[2]] = 0
            out[key] = a
        else:
            raise ValueError(f"unknown initialiser {kind!r} for {key}")
    return out
