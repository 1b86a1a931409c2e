"""conv, conv1d, conv2d, conv3d: convolution over [N, C, *spatial] (torch.nn.Conv1d/2d/3d).

F_out = floor((F_in + p_before + p_after - d*(k - 1) - 1) / s) + 1 per spatial dim.
``weight_norm=<dim>`` reparametrises the weight as torch.nn.utils.weight_norm (see
:mod:`.weightnorm`): Wav2Vec2's positional conv is ``conv 768 k=128 p=64 groups=16
weight_norm=2``.
"""

from __future__ import annotations

from typing import Optional

from . import weightnorm as wn
from ._window import IntOrTuple, PadSpec, WindowParams, resolve, show, spatial_out, spatial_rank
from .base import (
    DEFAULT_INIT,
    MODULE,
    Bool,
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
    npops,
    positive,
    prod,
    register,
)
from .dense import default_init


class _Conv(LayerKind):
    rank: int | None = None  # spatial rank; None: taken from the input
    max_spatial = 3
    positional = ("out",)
    synonyms = {"kernel_size": "k", "stride": "s", "padding": "p", "dilation": "d",
                "out_channels": "out", "filters": "out"}

    class Params(WindowParams):
        out: Int
        k: IntOrTuple
        s: IntOrTuple = 1
        p: PadSpec = 0
        d: IntOrTuple = 1
        groups: Int = 1
        bias: Bool = True
        init: InitArg = DEFAULT_INIT
        bias_init: InitArg = DEFAULT_INIT
        weight_norm: Optional[Int] = None

        _pos = positive("out", "groups")

    def _n(self, x):
        return spatial_rank(self, x)

    def geometry(self, p, x):
        n = self._n(x)
        k, s, pd, d = resolve(p, n)
        return n, k, s, pd, d

    def infer(self, p, ins):
        (x,) = ins
        need_float(x, self.name)
        n, k, s, pd, d = self.geometry(p, x)
        c_in = concrete(x.shape[1], f"{self.name}'s input channels")
        if c_in % p.groups:
            raise ShapeError(f"groups must divide the input channels, but {p.groups} does "
                             f"not divide {c_in}", arg="groups")
        if p.out % p.groups:
            raise ShapeError(f"groups must divide the output channels, but {p.groups} does "
                             f"not divide {p.out}", arg="groups")
        spatial = spatial_out(self.name, x, k, s, pd, d)
        wn.check(p, n + 2, self.name)
        return TensorType((x.shape[0], p.out) + spatial)

    def weights(self, p, ins, out):
        x = ins[0]
        n, k, s, pd, d = self.geometry(p, x)
        c_in = x.shape[1].value
        fan_in = c_in // p.groups * prod(k)
        w = {"weight": W((p.out, c_in // p.groups) + k, default_init(fan_in))}
        if p.bias:
            w["bias"] = W((p.out,), default_init(fan_in))
        return wn.with_entries(w, p.weight_norm)

    def macs(self, p, ins, out):
        x = ins[0]
        n, k, *_ = self.geometry(p, x)
        return prod(out.shape) * (x.shape[1].value // p.groups) * prod(k)

    def torch(self, p, ins, out):
        x = ins[0]
        n, k, s, pd, d = self.geometry(p, x)
        symmetric = all(a == b for a, b in pd)
        kw = {"kernel_size": k, "stride": s, "padding": tuple(a for a, _ in pd) if symmetric
              else 0, "dilation": d, "groups": p.groups, "bias": p.bias}
        mod = TorchModule(f"Conv{n}d", (x.shape[1].value, p.out), kw)
        if p.weight_norm is not None:
            mod = wn.module(f"Conv{n}d", mod.args, kw, p.weight_norm)
        if symmetric:
            return TorchPlan(mod, [])
        flat = []
        for a, b in reversed(pd):  # F.pad lists the last dim first
            flat += [a, b]
        return TorchPlan(mod, [TorchCall("F.pad", (In(0), tuple(flat))),
                               TorchCall(MODULE, (Prev(),))])

    def detail(self, p, ins):
        n, k, s, pd, d = self.geometry(p, ins[0])
        out = f"out={p.out} k={k} s={s} pads={show(pd)}"
        if any(x != 1 for x in d):
            out += f" d={d}"
        if p.groups != 1:
            out += f" groups={p.groups}"
        if p.weight_norm is not None:
            out += f" weight_norm={p.weight_norm}"
        return out + ("" if p.bias else " bias=false")

    def numpy(self, p, w, xs, ctx):
        n, k, s, pd, d = self.geometry(p, _shape_of(xs[0]))
        weight = wn.weight(w, p.weight_norm)
        return npops.conv_nd(xs[0], weight, w.get("bias"), s, pd, d, p.groups)

    def backward(self, p, w, xs, y, gy, ctx):
        n, k, s, pd, d = self.geometry(p, _shape_of(xs[0]))
        weight = wn.weight(w, p.weight_norm)
        gx, gw = npops.conv_nd_backward(xs[0], weight, gy, s, pd, d, p.groups)
        grads = wn.grads(w, gw, p.weight_norm)
        if p.bias:
            grads["bias"] = gy.sum(axis=(0,) + tuple(range(2, gy.ndim)))
        return [gx], grads

    def sample(self):
        shape = {1: (2, 4, 11), 3: (2, 4, 7, 6, 5)}.get(self.rank, (2, 4, 9, 8))
        n = len(shape) - 2
        return ({"out": 6, "k": 3, "s": 2, "p": ((1, 0),) * n, "d": 2, "groups": 2,
                 "bias": False, "init": "kaiming"}, [TensorType(shape)])

    def samples(self):
        """Also weight_norm over the kernel's first axis, as Wav2Vec2's positional conv."""
        args, ins = self.sample()
        return [(args, ins), ({"out": 6, "k": 3, "p": 1, "groups": 2, "weight_norm": 2}, ins)]


def _shape_of(a) -> TensorType:
    return TensorType(a.shape)


@register
class Conv(_Conv):
    """Convolution whose spatial rank (1, 2 or 3) follows the input's rank."""

    name = "conv"
    summary = "convolution: conv <out> k=<k> [s=1] [p=0|same|(..)] [d=1] [groups=1] [bias]"


@register
class Conv1d(_Conv):
    name = "conv1d"
    rank = 1
    summary = "1-d convolution over [N, C, L]"


@register
class Conv2d(_Conv):
    name = "conv2d"
    rank = 2
    summary = "2-d convolution over [N, C, H, W]"


@register
class Conv3d(_Conv):
    name = "conv3d"
    rank = 3
    summary = "3-d convolution over [N, C, D, H, W]"
