"""dense: a fully connected layer over the last axis (torch.nn.Linear)."""

from __future__ import annotations

import math
from typing import Literal

from .base import (
    Bool,
    Int,
    LayerKind,
    Params,
    TensorType,
    TorchModule,
    TorchPlan,
    W,
    concrete,
    fan_in_bound,
    need_float,
    npops,
    positive,
    prod,
    register,
)

Init = Literal["default", "xavier", "kaiming"]


def weight_init(init: str, fan_in: int, fan_out: int) -> tuple:
    """Initialiser of a weight matrix: PyTorch's default, or the one the spec names."""
    if init == "xavier":  # torch.nn.init.xavier_uniform_
        return ("uniform", math.sqrt(6.0 / (fan_in + fan_out)))
    if init == "kaiming":  # torch.nn.init.kaiming_uniform_(nonlinearity="relu")
        return ("uniform", math.sqrt(6.0 / fan_in))
    return ("uniform", fan_in_bound(fan_in))


def bias_init(init: str, fan_in: int) -> tuple:
    return ("uniform", fan_in_bound(fan_in)) if init == "default" else ("zeros",)


@register
class Dense(LayerKind):
    """y = x Wᵀ + b over the last axis: [*, in] -> [*, out]."""

    name = "dense"
    aliases = ("linear",)
    positional = ("out",)
    synonyms = {"units": "out", "out_features": "out", "use_bias": "bias"}
    summary = "fully connected layer: dense <out> [bias=false] [init=xavier]"
    ranks, layout = (1, None), "[*, features]"

    class Params(Params):
        out: Int
        bias: Bool = True
        init: Init = "default"

        _out = positive("out")

    def infer(self, p, ins):
        (x,) = ins
        need_float(x, "dense")
        concrete(x.shape[-1], "dense's input width (the last dim)")
        return TensorType(x.shape[:-1] + (p.out,))

    def weights(self, p, ins, out):
        n_in = ins[0].shape[-1].value
        w = {"weight": W((p.out, n_in), weight_init(p.init, n_in, p.out))}
        if p.bias:
            w["bias"] = W((p.out,), bias_init(p.init, n_in))
        return w

    def macs(self, p, ins, out):
        return prod(out.shape) * ins[0].shape[-1].value

    def torch(self, p, ins, out):
        n_in = ins[0].shape[-1].value
        kw = {} if p.bias else {"bias": False}
        return TorchPlan(TorchModule("Linear", (n_in, p.out), kw), [])

    def numpy(self, p, w, xs, ctx):
        return npops.linear(xs[0], w["weight"], w.get("bias"))

    def sample(self):
        return {"out": 3, "bias": False, "init": "xavier"}, [TensorType((2, 5))]
