"""dense: a fully connected layer over the last axis (torch.nn.Linear); ``weight_norm=<dim>``
reparametrises its weight as torch.nn.utils.weight_norm (see :mod:`.weightnorm`);
``layout=in_out`` stores the weight ``[in, out]``, as Hugging Face's ``Conv1D`` (GPT-2's
``c_attn``, ``c_proj``, ``c_fc``) does, so that such checkpoints load by key."""

from __future__ import annotations

from typing import Literal, Optional

from . import weightnorm as wn
from .base import (
    DEFAULT_INIT,
    MODULE,
    Bool,
    In,
    InitArg,
    Int,
    LayerKind,
    Params,
    ShapeError,
    TensorType,
    TorchCall,
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

_HELPERS = "nnspec.layers.torch.dense"


def default_init(fan_in: int) -> tuple:
    """PyTorch's default of Linear/Conv weights and biases (the spec may override it with
    ``init=`` / ``bias_init=``, applied by LayerKind.state)."""
    return ("uniform", fan_in_bound(fan_in))


@register
class Dense(LayerKind):
    """y = x Wᵀ + b over the last axis: [*, in] -> [*, out]."""

    name = "dense"
    aliases = ("linear",)
    positional = ("out",)
    synonyms = {"units": "out", "out_features": "out", "use_bias": "bias"}
    summary = ("fully connected layer: dense <out> [bias=false] [init=xavier] [bias_init=zeros] "
               "[layout=in_out]")
    ranks, layout = (1, None), "[*, features]"

    class Params(Params):
        out: Int
        bias: Bool = True
        init: InitArg = DEFAULT_INIT
        bias_init: InitArg = DEFAULT_INIT
        weight_norm: Optional[Int] = None
        layout: Literal["out_in", "in_out"] = "out_in"

        _out = positive("out")

    def infer(self, p, ins):
        (x,) = ins
        need_float(x, "dense")
        concrete(x.shape[-1], "dense's input width (the last dim)")
        wn.check(p, 2, "dense")
        if p.layout == "in_out" and p.weight_norm is not None:
            raise ShapeError("dense: weight_norm= with layout=in_out (torch's weight_norm "
                             "of a Linear weight is over its [out, in] layout)")
        return TensorType(x.shape[:-1] + (p.out,))

    def weights(self, p, ins, out):
        n_in = ins[0].shape[-1].value
        shape = (n_in, p.out) if p.layout == "in_out" else (p.out, n_in)
        w = {"weight": W(shape, default_init(n_in))}
        if p.bias:
            w["bias"] = W((p.out,), default_init(n_in))
        return wn.with_entries(w, p.weight_norm)

    def macs(self, p, ins, out):
        return prod(out.shape) * ins[0].shape[-1].value

    def torch(self, p, ins, out):
        n_in = ins[0].shape[-1].value
        kw = {} if p.bias else {"bias": False}
        if p.weight_norm is not None:
            return TorchPlan(wn.module("Linear", (n_in, p.out), kw, p.weight_norm), [])
        if p.layout == "in_out":
            return TorchPlan(TorchModule(f"{_HELPERS}:Conv1D", (n_in, p.out), kw), [])
        return TorchPlan(TorchModule("Linear", (n_in, p.out), kw), [])

    # ``weight=enc.weight.T``: the weight of another layer, transposed (see LayerKind)
    transposed_tie = "weight"

    def torch_tied(self, p, ins, out, ref):
        n_in = ins[0].shape[-1].value
        kw = {} if p.bias else {"bias": False}
        return TorchPlan(TorchModule(f"{_HELPERS}:TransposedLinear", (n_in, p.out), kw),
                         [TorchCall(MODULE, (In(0), ref))])

    def numpy(self, p, w, xs, ctx):
        return npops.linear(xs[0], self._w(p, w), w.get("bias"))

    @staticmethod
    def _w(p, w):
        """The weight [out, in], whatever its layout."""
        return w["weight"].T if p.layout == "in_out" else wn.weight(w, p.weight_norm)

    def backward(self, p, w, xs, y, gy, ctx):
        # y = x Wᵀ + b: dx = gy W, dW = Σ gyᵀ x over the leading axes, db = Σ gy
        x = xs[0]
        g2 = gy.reshape(-1, gy.shape[-1])
        gw = g2.T @ x.reshape(-1, x.shape[-1])
        grads = {"weight": gw.T} if p.layout == "in_out" else wn.grads(w, gw, p.weight_norm)
        if p.bias:
            grads["bias"] = g2.sum(axis=0)
        return [gy @ self._w(p, w)], grads

    def sample(self):
        return {"out": 3, "init": "xavier", "bias_init": "zeros"}, [TensorType((2, 5))]

    def samples(self):
        """Also weight_norm over the output units (torch's default dim 0)."""
        return [self.sample(), ({"out": 3, "weight_norm": 0}, [TensorType((2, 5))]),
                ({"out": 4, "layout": "in_out"}, [TensorType((2, 3, 5))])]
