"""convtranspose (1d, 2d, 3d): transposed convolution over [N, C, *spatial]
(torch.nn.ConvTranspose1d/2d/3d), the upsampling layer of generators and decoders.

F_out = (F_in - 1)*s - p_before - p_after + d*(k - 1) + output_padding + 1 per spatial dim
(dims.transposed_conv_out). ``size=`` asks for the output size instead, as torch's
``forward(output_size=...)`` does: it is resolved to an output_padding here, statically.

PyTorch's ConvTranspose pads symmetrically only; asymmetric padding is lowered to the
smaller pad of each dim plus a crop of the rest (``F.pad`` with negative amounts).
"""

from __future__ import annotations

from typing import Optional, Union

from pydantic import field_validator

from ..core.dims import Dim, as_dim, transposed_conv_formula, transposed_conv_out
from ._window import (
    SPATIAL_NAMES,
    IntOrTuple,
    PadSpec,
    WindowParams,
    per_dim,
    resolve,
    show,
    spatial_rank,
)
from .base import (
    DEFAULT_INIT,
    MODULE,
    Bool,
    DimArg,
    In,
    InitArg,
    Int,
    LayerKind,
    Prev,
    ShapeError,
    TensorType,
    TorchCall,
    TorchModule,
    TorchPlan,
    W,
    concrete,
    need_float,
    positive,
    prod,
    register,
)
from .dense import default_init


def _where(n: int, i: int) -> str:
    return f" along the {SPATIAL_NAMES[n][i]}" if n > 1 else ""


class _ConvTranspose(LayerKind):
    rank: int | None = None  # spatial rank; None: taken from the input
    max_spatial = 3
    positional = ("out",)
    synonyms = {"kernel_size": "k", "stride": "s", "padding": "p", "dilation": "d",
                "out_channels": "out", "filters": "out", "output_size": "size"}

    class Params(WindowParams):
        out: Int
        k: IntOrTuple
        s: IntOrTuple = 1
        p: PadSpec = 0
        d: IntOrTuple = 1
        output_padding: IntOrTuple = 0
        # the output's spatial size, one value or one per spatial dim (symbolic allowed:
        # `size=[2*H, 2*W]`); resolves output_padding
        size: Optional[Union[Int, tuple[DimArg, ...]]] = None
        groups: Int = 1
        bias: Bool = True
        init: InitArg = DEFAULT_INIT
        bias_init: InitArg = DEFAULT_INIT

        _pos = positive("out", "groups")

        @field_validator("output_padding")
        @classmethod
        def _op(cls, v):
            for x in (v,) if isinstance(v, int) else v:
                if x < 0:
                    raise ValueError("output_padding must be >= 0")
            return v

        @field_validator("size")
        @classmethod
        def _size(cls, v):
            for x in (v,) if isinstance(v, int) or v is None else v:
                if isinstance(x, int) and x < 1 or isinstance(x, Dim) and x.is_const \
                        and x.value < 1:
                    raise ValueError("an output size must be >= 1")
                if isinstance(x, Dim) and "_" in x.symbols():
                    raise ValueError("every output size must be given (no _)")
            return v

    def geometry(self, p, x: TensorType):
        """(n, k, s, pads, d, output_padding): explicit tuples, output_padding resolved
        from ``size`` when that is given; every impossible combination is a ShapeError."""
        n = spatial_rank(self, x)
        k, s, pd, d = resolve(p, n)
        op = per_dim(p.output_padding, n, "output_padding")
        spatial = x.shape[-n:]
        if p.size is not None:
            if any(op):
                raise ShapeError("give size or output_padding, not both: size resolves the "
                                 "output_padding", arg="size", code="E373")
            op = tuple(self._reach(p, n, i, spatial[i], k[i], s[i], pd[i], d[i])
                       for i in range(n))
        for i in range(n):
            if op[i] >= max(s[i], d[i]):
                raise ShapeError(
                    f"output_padding {op[i]}{_where(n, i)} must be smaller than the stride "
                    f"{s[i]} or the dilation {d[i]} (PyTorch's rule)", arg="output_padding",
                    hint=f"use output_padding < {max(s[i], d[i])}, or a larger stride",
                    code="E371")
        return n, k, s, pd, d, op

    def _reach(self, p, n, i, f, k, s, pad, d) -> int:
        """The output_padding that gives the asked size along spatial dim i."""
        want = per_dim(p.size, n, "size")[i]
        base = transposed_conv_out(f, k, s, pad, d, 0)
        top = max(s, d) - 1
        gap = as_dim(want) - base
        if not gap.is_const:
            raise ShapeError(
                f"size {want}{_where(n, i)} cannot be reached for every input size: it differs "
                f"from the output without output_padding, {base}, by {gap}", arg="size",
                hint="give a size that is the output size plus 0 to "
                     f"{top}, for every input size", code="E374")
        if not 0 <= gap.value <= top:
            lo = transposed_conv_formula(f, k, s, pad, d, 0)
            ops, reach = ("0", f"{base}") if top == 0 else (f"0 to {top}",
                                                             f"{base} to {base + top}")
            raise ShapeError(
                f"size {want}{_where(n, i)} is out of reach: output_padding {ops} "
                f"gives {reach}", arg="size", notes=[lo],
                hint="change the stride, padding or kernel, or ask for a size in that range",
                code="E375")
        return gap.value

    def infer(self, p, ins):
        (x,) = ins
        need_float(x, self.name)
        n, k, s, pd, d, op = self.geometry(p, x)
        c_in = concrete(x.shape[1], f"{self.name}'s input channels")
        for what, c in (("input", c_in), ("output", p.out)):
            if c % p.groups:
                raise ShapeError(f"groups must divide the {what} channels, but {p.groups} "
                                 f"does not divide {c}", arg="groups", code="E372")
        spatial = x.shape[-n:]
        out = []
        for i in range(n):
            o = transposed_conv_out(spatial[i], k[i], s[i], pd[i], d[i], op[i])
            if o.is_const and o.value < 1:
                name = SPATIAL_NAMES[n][i]
                raise ShapeError(
                    f"{self.name} output {name} is {o.value}",
                    notes=[transposed_conv_formula(spatial[i], k[i], s[i], pd[i], d[i], op[i])],
                    arg="p",  # without padding the size is at least 1
                    hint="use less padding, or a larger kernel or stride", code="E370")
            out.append(o)
        return TensorType((x.shape[0], p.out) + tuple(out))

    def weights(self, p, ins, out):
        x = ins[0]
        n, k, *_ = self.geometry(p, x)
        c_in = x.shape[1].value
        # torch's fans of a [C_in, C_out/groups, *k] weight: dim 1 is the fan-in
        fan_in = p.out // p.groups * prod(k)
        w = {"weight": W((c_in, p.out // p.groups) + k, default_init(fan_in))}
        if p.bias:
            w["bias"] = W((p.out,), default_init(fan_in))
        return w

    def macs(self, p, ins, out):
        # every input element meets C_out/groups * prod(k) weights (what torch computes,
        # the cropped border included)
        x = ins[0]
        n, k, *_ = self.geometry(p, x)
        return prod(x.shape) * (p.out // p.groups) * prod(k)

    def torch(self, p, ins, out):
        x = ins[0]
        n, k, s, pd, d, op = self.geometry(p, x)
        sym = tuple(min(a, b) for a, b in pd)
        kw = {"kernel_size": k, "stride": s, "padding": sym,
              "output_padding": op[0] if len(set(op)) == 1 else op,
              "groups": p.groups, "bias": p.bias, "dilation": d}
        mod = TorchModule(f"ConvTranspose{n}d", (x.shape[1].value, p.out), kw)
        if all(a == b for a, b in pd):
            return TorchPlan(mod, [])
        crop = []
        for (a, b), m in zip(reversed(pd), reversed(sym)):  # F.pad lists the last dim first
            crop += [m - a, m - b]
        return TorchPlan(mod, [TorchCall(MODULE, (In(0),)),
                               TorchCall("F.pad", (Prev(), tuple(crop)))])

    def detail(self, p, ins):
        n, k, s, pd, d, op = self.geometry(p, ins[0])
        out = f"out={p.out} k={k} s={s} pads={show(pd)}"
        if any(op):
            out += f" output_padding={op}"
        if any(x != 1 for x in d):
            out += f" d={d}"
        if p.groups != 1:
            out += f" groups={p.groups}"
        return out + ("" if p.bias else " bias=false")

    def numpy(self, p, w, xs, ctx):
        from .kernels import conv_transpose_nd

        if isinstance(p.size, tuple):  # a symbolic target size, at the bound dims
            p = p.model_copy(update={"size": tuple(Dim.const(x.evaluate(ctx.env))
                                                   for x in p.size)})
        n, k, s, pd, d, op = self.geometry(p, TensorType(xs[0].shape))
        return conv_transpose_nd(xs[0], w["weight"], w.get("bias"), s, pd, d, op, p.groups)

    def backward(self, p, w, xs, y, gy, ctx):
        from .kernels import conv_transpose_nd_backward

        if isinstance(p.size, tuple):
            p = p.model_copy(update={"size": tuple(Dim.const(x.evaluate(ctx.env))
                                                   for x in p.size)})
        n, k, s, pd, d, op = self.geometry(p, TensorType(xs[0].shape))
        gx, gw = conv_transpose_nd_backward(xs[0], w["weight"], gy, s, pd, d, op, p.groups)
        grads = {"weight": gw}
        if p.bias:
            grads["bias"] = gy.sum(axis=(0,) + tuple(range(2, gy.ndim)))
        return [gx], grads

    def _shape(self):
        return {1: (2, 4, 6), 3: (2, 4, 3, 4, 3)}.get(self.rank, (2, 4, 5, 4))

    def sample(self):
        shape = self._shape()
        n = len(shape) - 2
        return ({"out": 6, "k": 3, "s": 2, "p": ((1, 0),) * n, "d": 2, "output_padding": 1,
                 "groups": 2, "bias": False, "init": "kaiming"}, [TensorType(shape)])

    def samples(self):
        shape = self._shape()
        # k=4 s=2 p=1 doubles a size; one more needs output_padding 1
        size = tuple(2 * f + 1 for f in shape[2:])
        return [self.sample(), ({"out": 3, "k": 4, "s": 2, "p": 1, "size": size},
                                [TensorType(shape)])]


@register
class ConvTranspose(_ConvTranspose):
    """Transposed convolution whose spatial rank (1, 2 or 3) follows the input's rank."""

    name = "convtranspose"
    aliases = ("conv_transpose", "deconv", "transposed_conv")
    summary = ("transposed convolution: convtranspose <out> k=<k> [s=1] [p=0] [d=1] "
               "[output_padding=0 | size=(..)] [groups=1] [bias]")


def _fixed(rank: int):
    names = (f"convtranspose{rank}d", f"conv_transpose{rank}d", f"deconv{rank}d",
             f"conv{rank}d_transpose")
    layout = {1: "[N, C, L]", 2: "[N, C, H, W]", 3: "[N, C, D, H, W]"}[rank]
    cls = type(f"ConvTranspose{rank}d", (_ConvTranspose,), {
        "name": names[0], "aliases": names[1:], "rank": rank,
        "summary": f"{rank}-d transposed convolution over {layout}",
        "__doc__": f"Transposed convolution over {layout} (torch.nn.ConvTranspose{rank}d)."})
    return register(cls)


ConvTranspose1d, ConvTranspose2d, ConvTranspose3d = (_fixed(r) for r in (1, 2, 3))
