"""What every NumPy kernel shares: coercing its arguments.

Inputs become floating arrays (:func:`_float_array`), parameters take the input's dtype
(:func:`_param`), and the per-axis arguments of the window kernels (strides, dilations,
kernel sizes, ``(before, after)`` pads) become one tuple entry per spatial axis
(:func:`_tuple`, :func:`_kernel`, :func:`_pads`). Only NumPy is imported here.
"""

from __future__ import annotations

import numpy as np


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

