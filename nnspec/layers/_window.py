"""Window arguments shared by convolution and pooling: k, s, p, d per spatial dim.

Padding forms: ``p=1`` (all sides), ``p=(1, 2)`` (per dim, both sides), ``p=((0, 1), (0, 1))``
(per dim, before/after), ``p=same`` (stride 1: output size = input size; for an even
effective kernel the extra pad goes after, as PyTorch does) and ``p=valid`` (no padding).
"""

from __future__ import annotations

from typing import Union

from pydantic import field_validator

from ..core.dims import conv_formula, conv_out
from .base import Int, Params, ShapeError, TensorType, need_rank

IntOrTuple = Union[Int, tuple[Int, ...]]
PadSpec = Union[Int, str, tuple[Union[Int, tuple[Int, Int]], ...]]

SPATIAL_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}
LAYOUTS = {1: "[N, C, L]", 2: "[N, C, H, W]", 3: "[N, C, D, H, W]"}


def spatial_rank(kind, x: TensorType) -> int:
    """Spatial dims of a window layer's [N, C, *spatial] input: fixed by a kind such as
    conv2d (``kind.rank``), or taken from the input's rank for conv / maxpool."""
    if kind.rank is not None:
        need_rank(x, {kind.rank + 2}, kind.name, LAYOUTS[kind.rank])
        return kind.rank
    most = getattr(kind, "max_spatial", 2)  # spatial dims a rank-generic kind takes
    need_rank(x, set(range(3, most + 3)), kind.name,
              ", ".join(LAYOUTS[r] for r in range(1, most)) + f" or {LAYOUTS[most]}")
    return x.rank - 2


def per_dim(value, n: int, arg: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    if len(value) != n:
        raise ShapeError(f"{arg} has {len(value)} values but the layer has {n} spatial "
                         f"dim{'s' if n != 1 else ''}", arg=arg)
    return tuple(value)


def pads(p, n: int, k: tuple, d: tuple, s: tuple) -> list[tuple[int, int]]:
    """Explicit (before, after) pads per spatial dim."""
    if p == "valid":
        return [(0, 0)] * n
    if p == "same":
        if any(x != 1 for x in s):
            raise ShapeError("p=same needs stride 1 (as in PyTorch)", arg="p",
                             hint="give the padding explicitly for a strided layer")
        out = []
        for kk, dd in zip(k, d):
            total = dd * (kk - 1)
            out.append((total // 2, total - total // 2))
        return out
    if isinstance(p, int):
        return [(p, p)] * n
    if len(p) != n:
        one_pair = n == 1 and len(p) == 2 and all(isinstance(x, int) for x in p)
        raise ShapeError(f"p has {len(p)} entries but the layer has {n} spatial "
                         f"dim{'s' if n != 1 else ''}", arg="p",
                         hint=f"for {p[0]} before and {p[1]} after, write p=(({p[0]}, "
                         f"{p[1]}),): one pair per spatial dim; ((a, b)) is just (a, b), "
                         "as in Python" if one_pair else None)
    return [(x, x) if isinstance(x, int) else tuple(x) for x in p]


def check_positive(v, what: str):
    vals = (v,) if isinstance(v, int) else v
    for x in vals:
        if x < 1:
            raise ValueError(f"{what} must be >= 1")
    return v


def check_pad(v):
    if isinstance(v, str):
        if v not in ("same", "valid"):
            raise ValueError("padding must be an integer, a tuple, same or valid")
        return v
    vals = (v,) if isinstance(v, int) else v
    for x in vals:
        for y in ((x,) if isinstance(x, int) else x):
            if y < 0:
                raise ValueError("padding must be >= 0")
        if not isinstance(x, int) and len(x) != 2:
            raise ValueError("a per-side padding is a (before, after) pair")
    return v


class WindowParams(Params):
    """Base schema with the validators of the k/s/p/d fields."""

    @field_validator("k", "s", "d", check_fields=False)
    @classmethod
    def _window_positive(cls, v, info):
        return check_positive(v, info.field_name) if v is not None else v

    @field_validator("p", check_fields=False)
    @classmethod
    def _window_pad(cls, v):
        return check_pad(v)


def resolve(p, n: int, stride_default_k: bool = False):
    """(k, s, pads, d) tuples for a window layer with n spatial dims."""
    k = per_dim(p.k, n, "k")
    s_val = p.s if p.s is not None else (p.k if stride_default_k else 1)
    s = per_dim(s_val, n, "s")
    d = per_dim(getattr(p, "d", 1), n, "d")
    return k, s, pads(p.p, n, k, d, s), d


def spatial_out(what: str, x: TensorType, k, s, pd, d, ceil=False, arg=None):
    """Output spatial dims, with the formula in the error when one is below 1."""
    n = len(k)
    spatial = x.shape[-n:]
    out = []
    for i in range(n):
        o = conv_out(spatial[i], k[i], s[i], pd[i], d[i], ceil)
        if o.is_const and o.value < 1:
            dim_name = SPATIAL_NAMES.get(n, ("dim",) * n)[i]
            notes = [conv_formula(spatial[i], k[i], s[i], pd[i], d[i], ceil)]
            need = d[i] * (k[i] - 1) + 1 - spatial[i].value
            hint = (f"pad with p={(need + 1) // 2}, or use a smaller kernel" if need > 0
                    else "use a smaller stride or kernel")
            raise ShapeError(f"{what} output {dim_name} is {o.value}", arg=arg, notes=notes,
                             hint=hint, code="E301")
        out.append(o)
    return tuple(out)


def show(pd) -> str:
    """Explicit pads in summary form: ((0, 1), (0, 1))."""
    return "(" + ", ".join(f"({a}, {b})" for a, b in pd) + ")"
