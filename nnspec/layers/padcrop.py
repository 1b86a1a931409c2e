"""crop and pad: the spatial dims of [N, C, *spatial], no weights.

``crop`` is a centre crop, as the original U-Net crops its skip connections: to a size
(``crop [64, 64]``, ``crop (64, 64)``, ``crop 64`` for every spatial dim, ``_`` or None
keeps a dim); ``crop_like(x, y)`` crops x to the spatial size of y. The window starts
at ``floor((F_in - F_out) / 2)``, so an odd surplus leaves the extra row at the end. (That
is the U-Net implementations' ``(F_in - F_out) // 2``; torchvision's ``center_crop``
rounds (F_in - F_out) / 2 half to even and starts one later when F_in - F_out is 3 mod 4.)

``pad`` pads with ``p`` in the order of conv's ``p``: one int for every side, one per
spatial dim (both sides), or ``((before, after), ...)`` with the first spatial dim first
(torch's F.pad lists the last dim first; the torch backend converts). ``mode`` is
``constant`` (the default, filled with ``value``), ``reflect`` (mirrored without the edge,
PyTorch's rule: each pad < the size), ``replicate`` (the edge repeated) or ``circular``
(wrapped around, at most once: each pad <= the size), as F.pad's modes.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BeforeValidator, Strict, field_validator

from ..core.dims import Dim
from ._window import SPATIAL_NAMES
from .base import (
    DimArg,
    In,
    Int,
    LayerKind,
    Params,
    ShapeError,
    TensorType,
    TorchCall,
    TorchPlan,
    need_float,
    npops,
    register,
)


def _dim_name(n: int, i: int) -> str:
    return SPATIAL_NAMES[n][i] if n in SPATIAL_NAMES else f"spatial dim {i}"


def _term(d: Dim) -> str:
    """A dim inside a formula: parenthesised unless a number or a name."""
    s = str(d)
    return s if d.is_const or s.isidentifier() else f"({s})"


def _keep(v):
    if isinstance(v, str) and v in ("None", "_"):
        return None
    return v


def _crop_size(v):
    if isinstance(v, (tuple, list)):
        return tuple(_keep(x) for x in v)
    if isinstance(v, Dim) and v.is_const:
        return v.value
    return v


CropSize = Annotated[Union[Int, tuple[Optional[DimArg], ...]], BeforeValidator(_crop_size)]


def _check_crop(what: str, x: TensorType, want, arg: str | None) -> tuple[Dim, ...]:
    """The output's spatial dims ``want``, checked against the input's."""
    n = x.rank - 2
    for i, (d, t) in enumerate(zip(x.shape[2:], want)):
        name = _dim_name(n, i)
        if t.is_const and t.value < 1:
            raise ShapeError(f"{what} {name} is {t}: a size must be >= 1", arg=arg,
                             code="E393")
        surplus = d - t
        if surplus.is_const and surplus.value < 0:
            raise ShapeError(f"{what} {name} {t} is larger than the input {name} {d}",
                             arg=arg, notes=[f"offset = floor((F_in - F_out) / 2) = "
                                             f"floor(({_term(d)} - {_term(t)}) / 2) = "
                                             f"{surplus.value // 2}"],
                             hint=f"crop to at most {d}, or pad first", code="E392")
    return tuple(want)


def _crop_plan(x: TensorType, out: TensorType) -> TorchPlan:
    """``x[..., a:a + h, b:b + w]`` with a = floor((H - h) / 2), b = floor((W - w) / 2)."""
    if out.shape == x.shape:
        return TorchPlan(None, [])
    index: list = [...]
    for d, t in zip(x.shape[2:], out.shape[2:]):
        if d == t:
            index.append(slice(None))
            continue
        start = (d - t).floordiv(2)
        index.append(slice(start, start + t))
    return TorchPlan(None, [TorchCall("getitem", (In(0), tuple(index)))])


def _crop_np(x, want):
    index = (...,) + tuple(slice((d - t) // 2, (d - t) // 2 + t)
                           for d, t in zip(x.shape[2:], want))
    return x[index]


@register
class Crop(LayerKind):
    """Centre crop of the spatial dims to a size."""

    name = "crop"
    aliases = ("center_crop", "centre_crop", "centercrop")
    positional = ("size",)
    synonyms = {"output_size": "size"}
    ranks = (3, None)
    layout = "[N, C, *spatial]"
    summary = "centre crop: crop [H, W] | crop (h, w) | crop h (_ keeps a dim)"

    class Params(Params):
        size: CropSize

    def target(self, p, x: TensorType) -> tuple[Dim, ...]:
        n = x.rank - 2
        if isinstance(p.size, int):
            want = (Dim.const(p.size),) * n
        else:
            if len(p.size) != n:
                raise ShapeError(f"size has {len(p.size)} value{'s' if len(p.size) != 1 else ''}"
                                 f" but the input {x} has {n} spatial dim{'s' if n != 1 else ''}",
                                 arg="size", hint="give one size per spatial dim (_ keeps one)",
                                 code="E394")
            want = tuple(d if t is None else t for d, t in zip(x.shape[2:], p.size))
            known = set().union(*(d.symbols() for d in x.shape))
            for t in want:
                missing = t.symbols() - known
                if missing:
                    raise ShapeError(f"crop uses the symbol {sorted(missing)[0]}, which is not a "
                                     f"dim of the input {x}", arg="size",
                                     hint="crop_like(x, y) crops x to the size of y",
                                     code="E395")
        return _check_crop(self.name, x, want, "size")

    def infer(self, p, ins):
        x = ins[0]
        return TensorType(x.shape[:2] + self.target(p, x), x.dtype)

    def torch(self, p, ins, out):
        return _crop_plan(ins[0], out)

    def numpy(self, p, w, xs, ctx):
        x = xs[0]
        if isinstance(p.size, int):
            want = (p.size,) * (x.ndim - 2)
        else:
            want = tuple(d if t is None else t.evaluate(ctx.env)
                         for d, t in zip(x.shape[2:], p.size))
        return _crop_np(x, want)

    def backward(self, p, w, xs, y, gy, ctx):
        want = y.shape[2:]
        return [npops.gather_backward(lambda i: _crop_np(i, want), xs[0].shape, gy)], {}

    def sample(self):
        return {"size": (Dim.const(4), None)}, [TensorType((2, 3, 7, 5))]


@register
class CropLike(LayerKind):
    """Centre crop of the first tensor's spatial dims to those of the second."""

    name = "crop_like"
    aliases = ("crop_to", "center_crop_like")
    arity = 2
    ranks = (3, None)
    layout = "[N, C, *spatial]"
    summary = "centre crop to another tensor's spatial size: crop_like(x, y)"

    def infer(self, p, ins):
        x, y = ins
        if not isinstance(y, TensorType) or y.rank != x.rank:
            raise ShapeError(f"crop_like needs a second tensor of the first's rank {x.rank}, "
                             f"got {y} (rank {y.rank})", code="E394")
        return TensorType(x.shape[:2] + _check_crop(self.name, x, y.shape[2:], None), x.dtype)

    def torch(self, p, ins, out):
        return _crop_plan(ins[0], out)

    def numpy(self, p, w, xs, ctx):
        return _crop_np(xs[0], xs[1].shape[2:])

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        want = xs[1].shape[2:]  # only the reference's shape is used: its gradient is zero
        return [npops.gather_backward(lambda i: _crop_np(i, want), xs[0].shape, gy),
                np.zeros_like(xs[1])], {}

    def sample(self):
        return {}, [TensorType((2, 3, 7, 6)), TensorType((2, 1, 4, 3))]


_MODES = {"zeros": "constant", "zero": "constant", "edge": "replicate", "wrap": "circular",
          "reflection": "reflect", "replication": "replicate"}


def _mode(v):
    return _MODES.get(v, v) if isinstance(v, str) else v


def _number(v):
    # `value=1` is 1.0; true or "1.5" is not a number (pydantic would convert both)
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


PadArg = Union[Int, tuple[Union[Int, tuple[Int, Int]], ...]]
Mode = Annotated[Literal["constant", "reflect", "replicate", "circular"], BeforeValidator(_mode)]
Number = Annotated[float, Strict(), BeforeValidator(_number)]


@register
class Pad(LayerKind):
    """Padding of the spatial dims: constant, reflect, replicate or circular (F.pad)."""

    name = "pad"
    positional = ("p", "mode")
    synonyms = {"padding": "p", "pad": "p", "padding_mode": "mode", "fill": "value"}
    ranks = (3, None)
    layout = "[N, C, *spatial]"
    summary = ("pad <p> [constant|reflect|replicate|circular] [value=0]: p as conv's, "
               "first spatial dim first")

    class Params(Params):
        p: PadArg
        mode: Mode = "constant"
        value: Number = 0.0

        @field_validator("p")
        @classmethod
        def _non_negative(cls, v):
            for x in (v,) if isinstance(v, int) else v:
                if any(y < 0 for y in ((x,) if isinstance(x, int) else x)):
                    raise ValueError("padding must be >= 0 (crop removes rows)")
            return v

    def pads(self, p, x: TensorType) -> list[tuple[int, int]]:
        """(before, after) per spatial dim, checked against the mode and the input."""
        n = x.rank - 2
        if isinstance(p.p, int):
            pd = [(p.p, p.p)] * n
        elif len(p.p) != n:
            raise ShapeError(f"p has {len(p.p)} entr{'ies' if len(p.p) != 1 else 'y'} but the "
                             f"input {x} has {n} spatial dim{'s' if n != 1 else ''}", arg="p",
                             hint="one int, one per spatial dim, or ((before, after), ...)",
                             code="E396")
        else:
            pd = [(a, a) if isinstance(a, int) else tuple(a) for a in p.p]
        if p.mode == "constant":
            return pd
        if p.value != 0:
            raise ShapeError(f"value= is the fill of mode=constant; mode={p.mode} pads with "
                             "the input's own values", arg="value", code="E397")
        if n > 3:
            raise ShapeError(f"pad mode={p.mode} pads 1 to 3 spatial dims (as PyTorch's "
                             f"F.pad), but the input {x} has {n}", arg="mode", code="E397")
        for i, ((a, b), d) in enumerate(zip(pd, x.shape[2:])):
            if not d.is_const:
                continue
            big = max(a, b)
            name = _dim_name(n, i)
            if p.mode == "reflect" and big >= d.value:
                raise ShapeError(f"reflect padding {big} along the {name} is not less than "
                                 f"the input {name} {d.value}: a reflection needs p < size "
                                 "(PyTorch's rule)", arg="p", code="E395",
                                 hint=f"use p <= {d.value - 1}, or mode=replicate")
            if p.mode == "circular" and big > d.value:
                raise ShapeError(f"circular padding {big} along the {name} is more than the "
                                 f"input {name} {d.value}: it would wrap around more than once "
                                 "(PyTorch's rule)", arg="p", code="E395",
                                 hint=f"use p <= {d.value}")
        return pd

    def infer(self, p, ins):
        x = ins[0]
        need_float(x, self.name)
        pd = self.pads(p, x)
        return TensorType(x.shape[:2] + tuple(d + a + b for d, (a, b) in zip(x.shape[2:], pd)))

    def detail(self, p, ins):
        pd = self.pads(p, ins[0])
        out = "pads=(" + ", ".join(f"({a}, {b})" for a, b in pd) + f") mode={p.mode}"
        return out + (f" value={p.value}" if p.value else "")

    def torch(self, p, ins, out):
        pd = self.pads(p, ins[0])
        if all(a == b == 0 for a, b in pd):
            return TorchPlan(None, [])
        flat: list[int] = []
        for a, b in reversed(pd):  # F.pad lists the last dim first
            flat += [a, b]
        kw: dict = {"mode": p.mode} if p.mode != "constant" else (
            {"value": p.value} if p.value else {})
        return TorchPlan(None, [TorchCall("F.pad", (In(0), tuple(flat)), kw)])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = xs[0]
        pd = self.pads(p, TensorType(x.shape))
        widths = [(0, 0)] * 2 + pd
        if p.mode == "constant":
            return np.pad(x, widths, constant_values=p.value)
        return np.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge",
                                       "circular": "wrap"}[p.mode])

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        x = xs[0]
        widths = [(0, 0)] * 2 + self.pads(p, TensorType(x.shape))
        if p.mode == "constant":
            move = lambda i: np.pad(i, widths, constant_values=-1)  # noqa: E731
        else:
            mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[p.mode]
            move = lambda i: np.pad(i, widths, mode=mode)  # noqa: E731
        return [npops.gather_backward(move, x.shape, gy)], {}

    def sample(self):
        return {"p": ((1, 2), 0), "mode": "reflect"}, [TensorType((2, 3, 5, 4))]

    def samples(self):
        return [self.sample(), ({"p": (1, (0, 2)), "value": 1.5}, [TensorType((2, 3, 5, 4))])]
