"""upsample (interpolate) over [N, C, *spatial]: torch.nn.Upsample / F.interpolate.

The output size along each spatial dim is ``size`` as given, or ``floor(F_in * scale)``
computed as torch does (the double-precision product, truncated). A symbolic size flows
through an integer scale (``scale=2`` on ``H`` gives ``2*H``) and through a scale that
is a binary fraction with a small denominator (``scale=1.5`` gives ``floor(3*H/2)``),
for which that product is exact; any other float scale needs a concrete size.

As in torch, with ``scale`` the source coordinates use ``1/scale`` (so that ``scale=1.7``
on a size of 5 maps output pixel i to ``(i + 0.5)/1.7 - 0.5``, not ``(i + 0.5)*5/8 - 0.5``);
``recompute`` (torch's ``recompute_scale_factor=True``) and ``size`` use ``in/out``.
A nearest or bicubic scale that gives exactly the input size (nearest: or twice it) copies
(doubles) each pixel, as torch's backward does there: it is passed to torch as 1 (2).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Union

from pydantic import Field, Strict, field_validator

from ..core.dims import Dim
from ._window import SPATIAL_NAMES
from .base import (
    Bool,
    DimArg,
    In,
    Int,
    LayerKind,
    Params,
    ShapeError,
    SymDim,
    TensorType,
    TorchCall,
    TorchModule,
    TorchPlan,
    need_float,
    need_rank,
    prod,
    register,
)

Float = Annotated[float, Strict()]
Number = Union[Int, Float]

#: The interpolating modes and the input rank torch requires of each (nearest and
#: nearest-exact take any rank from 3 to 5).
MODE_RANK = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}
LAYOUTS = {3: "[N, C, L]", 4: "[N, C, H, W]", 5: "[N, C, D, H, W]"}
#: The largest denominator of a float scale (a binary fraction p / 2^k) for which a
#: symbolic size stays exact: floor(F * p / 2^k), exact while F * p < 2^53.
MAX_SYMBOLIC_DEN = 1024


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _dim_like(v) -> bool:
    return isinstance(v, (int, str, Dim)) and not isinstance(v, bool)


class UpsampleParams(Params):
    scale: Optional[Union[Number, tuple[Number, ...]]] = None
    size: Optional[Union[tuple[DimArg, ...], DimArg]] = Field(None, union_mode="left_to_right")
    mode: Literal["nearest", "nearest-exact", "linear", "bilinear", "bicubic",
                  "trilinear"] = "nearest"
    align_corners: Bool = False
    recompute: Bool = False

    @field_validator("scale", mode="before")
    @classmethod
    def _scale(cls, v):
        if v is None:
            return v
        vals = v if isinstance(v, (tuple, list)) else (v,)
        if not vals or not all(_number(x) for x in vals):
            raise ValueError("scale must be a number or a tuple of numbers, such as 2 or "
                             "(2, 1.5)")
        for x in vals:
            if not (math.isfinite(x) and x > 0):
                raise ValueError(f"scale must be > 0 and finite, not {x}")
        return tuple(v) if isinstance(v, list) else v

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, v):
        if v is None:
            return v
        vals = v if isinstance(v, (tuple, list)) else (v,)
        if not vals or not all(_dim_like(x) for x in vals):
            raise ValueError("size must be a size or a tuple of sizes, such as 64, (64, 64) "
                             "or [2*H, 2*W]")
        for x in vals:
            if isinstance(x, int) and x < 1 or isinstance(x, Dim) and x.is_const and x.value < 1:
                raise ValueError(f"size must be >= 1, not {x}")
        return tuple(v) if isinstance(v, list) else v

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, v):
        # `nearest-exact` is no name of the language (`-` is a minus): accept the name
        # with an underscore, and store torch's spelling
        return "nearest-exact" if v == "nearest_exact" else v


def _per_dim(value, n: int, arg: str) -> tuple:
    if not isinstance(value, tuple):
        return (value,) * n
    if len(value) != n:
        raise ShapeError(f"{arg} has {len(value)} values but the input has {n} spatial "
                         f"dim{'s' if n != 1 else ''}", arg=arg, code="E385")
    return value


def _show_num(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def scaled_size(f: Dim, s, what: str, axis: str) -> Dim:
    """floor(f * s) as torch computes it (a double product, truncated); exact symbolically
    for an integer scale or a binary fraction of denominator <= MAX_SYMBOLIC_DEN."""
    if f.is_const:
        if isinstance(s, int):
            out = f.value * s
        else:
            prod_ = float(f.value) * s
            if not math.isfinite(prod_) or prod_ >= 2.0 ** 63:
                raise ShapeError(f"{what} output {axis} {f.value} * {s!r} is beyond int64",
                                 arg="scale", code="E381")
            out = math.floor(prod_)
        if out < 1:
            raise ShapeError(
                f"{what} output {axis} is {out}", arg="scale", code="E381",
                notes=[f"F_out = floor(F_in * scale) = floor({f.value} * {_show_num(s)}) = "
                       f"{out}"],
                hint=f"use a scale of at least {_show_num(1 / f.value)} along the {axis}, or "
                     "give the output size with size=")
        return Dim.const(out)
    num, den = (s, 1) if isinstance(s, int) else s.as_integer_ratio()
    if den == 1:
        return f * num
    if den <= MAX_SYMBOLIC_DEN:
        return (f * num).floordiv(den)
    syms = ", ".join(sorted(f.symbols()))
    raise ShapeError(
        f"{what} with scale {s!r} needs a concrete input {axis}, but it is {f} (depends on "
        f"symbol{'s' if len(f.symbols()) > 1 else ''} {syms})", arg="scale", code="E386",
        notes=[f"floor({f} * {s!r}) has no exact symbolic form: {s!r} is not a fraction "
               f"with a power-of-two denominator up to {MAX_SYMBOLIC_DEN}"],
        hint="give the input a concrete size, use an integer scale (or one such as 1.5), "
             "or give the output size with size=")


class _Upsample(LayerKind):
    rank: int | None = None  # spatial rank; None: taken from the input (1 to 3)
    Params = UpsampleParams
    positional = ("scale",)
    synonyms = {"scale_factor": "scale", "recompute_scale_factor": "recompute",
                "interpolation": "mode"}

    def _n(self, x: TensorType) -> int:
        if self.rank is not None:
            need_rank(x, {self.rank + 2}, self.name, LAYOUTS[self.rank + 2])
            return self.rank
        need_rank(x, {3, 4, 5}, self.name, "[N, C, L], [N, C, H, W] or [N, C, D, H, W]")
        return x.rank - 2

    def check(self, p, x: TensorType) -> int:
        """The spatial rank, after the checks of the argument combination."""
        n = self._n(x)
        if p.scale is None and p.size is None:
            raise ShapeError(f"{self.name} needs scale= or size=", arg="scale", code="E380",
                             hint=f"{self.name} scale=2, or {self.name} size=(64, 64)")
        if p.scale is not None and p.size is not None:
            raise ShapeError(f"{self.name} takes scale= or size=, not both (as torch)",
                             arg="size", code="E380")
        want = MODE_RANK.get(p.mode)
        if want is not None and want != x.rank:
            fit = [m for m, r in MODE_RANK.items() if r == x.rank]
            hint = (f"for a rank-{x.rank} input use mode={' or mode='.join(fit)}" if fit
                    else "use mode=nearest")
            raise ShapeError(f"mode={p.mode} needs a rank-{want} input ({LAYOUTS[want]}), "
                             f"got {x} (rank {x.rank})", arg="mode", code="E382", hint=hint)
        if p.align_corners and want is None:
            raise ShapeError(f"align_corners is only for the interpolating modes (linear, "
                             f"bilinear, bicubic, trilinear), not mode={p.mode} (as torch)",
                             arg="align_corners", code="E383")
        if p.recompute and p.size is not None:
            raise ShapeError("recompute (recompute_scale_factor) is for scale=; with size= "
                             "the coordinates always follow the sizes (as torch)",
                             arg="recompute", code="E384")
        return n

    def sizes(self, p, x: TensorType) -> tuple[Dim, ...]:
        n = self.check(p, x)
        if p.size is not None:
            return tuple(Dim.const(d) if isinstance(d, int) else d
                         for d in _per_dim(p.size, n, "size"))
        scales = _per_dim(p.scale, n, "scale")
        axes = SPATIAL_NAMES[n]
        return tuple(scaled_size(f, s, self.name, a)
                     for f, s, a in zip(x.shape[2:], scales, axes))

    def infer(self, p, ins):
        (x,) = ins
        need_float(x, self.name)
        return TensorType(x.shape[:2] + self.sizes(p, x))

    def macs(self, p, ins, out):
        n = out.rank - 2
        taps = {"bicubic": 4, "nearest": 0, "nearest-exact": 0}.get(p.mode, 2)
        return prod(out.shape) * taps ** n

    def detail(self, p, ins):
        sizes = self.sizes(p, ins[0])
        out = (f"scale={_show_tuple(p.scale)}" if p.scale is not None
               else "size=(" + ", ".join(str(d) for d in sizes) + ")")
        out += f" mode={p.mode}"
        if p.align_corners:
            out += " align_corners"
        if p.recompute:
            out += " recompute"
        return out

    def _scales(self, p, x: TensorType, sizes) -> tuple:
        """The scale factor per spatial dim: as written, except that a non-integer scale
        that gives exactly the input size (or, for mode=nearest, twice it) is 1 (or 2).
        torch's backward of nearest and bicubic copies (or doubles) each pixel there, while
        its forward steps by 1/scale (and its two nearest 2-d kernels disagree, chosen by
        the input's size): with 1 or 2 its forward copies too, as the NumPy backend does,
        and the gradient is the forward's. A symbolic input size keeps its scale."""
        scales = _per_dim(p.scale, len(sizes), "scale")
        if p.recompute or p.mode not in ("nearest", "bicubic"):
            return tuple(scales)
        fixed = []
        for f, s, o in zip(x.shape[2:], scales, sizes):
            if f.is_const and o.is_const:
                if o.value == f.value or (p.mode == "nearest" and o.value == 2 * f.value):
                    s = o.value // f.value
            fixed.append(s)
        return tuple(fixed)

    def _torch_scale(self, p, x: TensorType, sizes):
        """The scale factor given to torch (see :meth:`_scales`): one number where every
        dim has the same and the scale was written as one."""
        scales = self._scales(p, x, sizes)
        if not isinstance(p.scale, tuple) and len(set(scales)) == 1:
            return scales[0]
        return tuple(scales)

    def torch(self, p, ins, out):
        x = ins[0]
        sizes = self.sizes(p, x)
        kw: dict = {}
        if p.size is not None:
            kw["size"] = sizes[0] if not isinstance(p.size, tuple) else tuple(sizes)
        else:
            kw["scale_factor"] = self._torch_scale(p, x, sizes)
        kw["mode"] = p.mode
        if p.align_corners:
            kw["align_corners"] = True
        if p.recompute:
            kw["recompute_scale_factor"] = True
        scales = _per_dim(p.scale, len(sizes), "scale") if p.size is None else ()
        if p.size is None and not p.recompute and p.mode in ("nearest", "bicubic") and any(
                not f.is_const and float(s) != int(s) for f, s in zip(x.shape[2:], scales)):
            # whether the output of a symbolic size is the input's is known at run time only
            kw.pop("recompute_scale_factor", None)
            kw["scale_factor"] = tuple(float(s) for s in scales)
            return TorchPlan(None, [TorchCall(
                "nnspec.layers.torch.upsample:interpolate_copying", (In(0),), kw)])
        symbolic = p.size is not None and not all(d.is_const for d in sizes)
        if not symbolic:
            if "size" in kw:
                kw["size"] = (kw["size"].value if isinstance(kw["size"], Dim)
                              else tuple(d.value for d in kw["size"]))
            return TorchPlan(TorchModule("Upsample", (), kw), [])
        size = tuple(SymDim(d) for d in sizes)
        return TorchPlan(None, [TorchCall("F.interpolate", (In(0),), {**kw, "size": size})])

    def _plan(self, p, x, ctx):
        """(output sizes, the scale factors torch uses for the coordinates) at the bound
        dims: a symbolic size= binds from the inputs."""
        t = TensorType(x.shape)
        sizes = self.sizes(p, t)
        n = len(sizes)
        scales = ((None,) * n if p.size is not None or p.recompute
                  else tuple(float(s) for s in self._scales(p, t, sizes)))
        return tuple(d.evaluate(ctx.env) for d in sizes), scales

    def numpy(self, p, w, xs, ctx):
        from . import _interp

        sizes, scales = self._plan(p, xs[0], ctx)
        return _interp.interpolate(xs[0], sizes, p.mode, p.align_corners, scales)

    def backward(self, p, w, xs, y, gy, ctx):
        from . import _interp

        sizes, scales = self._plan(p, xs[0], ctx)
        return [_interp.interpolate_backward(xs[0], sizes, p.mode, p.align_corners, scales,
                                             gy)], {}

    def sample(self):
        shape = {None: (2, 3, 5, 4), 1: (2, 3, 5), 2: (2, 3, 5, 4), 3: (2, 2, 3, 4, 2)}
        x = TensorType(shape[self.rank])
        n = x.rank - 2
        mode = {1: "linear", 2: "bicubic", 3: "trilinear"}[n]
        return {"scale": (1.7, 2.3, 1.5)[:n], "mode": mode}, [x]

    def samples(self):
        # size= excludes scale=: a second sample gives it
        args, ins = self.sample()
        n = ins[0].rank - 2
        return [(args, ins), ({"size": (7, 3, 5)[:n], "mode": args["mode"]}, ins)]


def _show_tuple(v) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_show_num(x) for x in v) + ")"
    return _show_num(v)


@register
class Upsample(_Upsample):
    """Upsampling (or resizing) by a scale or to a size; the spatial rank (1 to 3) follows
    the input's rank."""

    name = "upsample"
    aliases = ("interpolate", "upsampling")
    summary = ("upsample / interpolate: upsample <scale> | size=(..) [mode=nearest|"
               "nearest_exact|linear|bilinear|bicubic|trilinear] [align_corners] [recompute]")


@register
class Upsample1d(_Upsample):
    name = "upsample1d"
    aliases = ("upsampling1d",)
    rank = 1
    summary = "upsampling over [N, C, L]"


@register
class Upsample2d(_Upsample):
    name = "upsample2d"
    aliases = ("upsampling2d",)
    rank = 2
    summary = "upsampling over [N, C, H, W]"


@register
class Upsample3d(_Upsample):
    name = "upsample3d"
    aliases = ("upsampling3d",)
    rank = 3
    summary = "upsampling over [N, C, D, H, W]"
