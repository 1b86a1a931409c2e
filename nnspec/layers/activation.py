"""Element-wise activations, softmax and identity: shape in = shape out, no weights."""

from __future__ import annotations

from typing import Literal

from .base import (
    In,
    LayerKind,
    Params,
    ShapeError,
    TensorType,
    TorchCall,
    TorchPlan,
    need_float,
    npops,
    prod,
    register,
)


def _where(cond, a: float, b: float, dtype):
    import numpy as np

    return np.where(cond, dtype.type(a), dtype.type(b))


class _Activation(LayerKind):
    fn: str = ""  # torch function
    torch_kwargs: tuple = ()  # (torch kwarg name, our param name)

    def infer(self, p, ins):
        need_float(ins[0], self.name)
        return ins[0]

    def macs(self, p, ins, out):
        return 0

    def torch(self, p, ins, out):
        kw = {tk: getattr(p, ours) for tk, ours in self.torch_kwargs}
        return TorchPlan(None, [TorchCall(self.fn, (In(0),), kw)])

    def sample(self):
        args = {f: v for f, v in self.sample_args.items()}
        return args, [TensorType((2, 3, 4))]

    sample_args: dict = {}


@register
class Relu(_Activation):
    """max(x, 0)"""
    name, fn, summary = "relu", "F.relu", "max(x, 0)"

    def numpy(self, p, w, xs, ctx):
        return npops.relu(xs[0])

    def backward(self, p, w, xs, y, gy, ctx):
        return [gy * (xs[0] > 0)], {}  # torch's: no gradient at 0


@register
class LeakyRelu(_Activation):
    """x if x > 0 else slope * x"""
    name, fn, summary = "leaky_relu", "F.leaky_relu", "x if x > 0 else slope*x: leaky_relu [0.01]"
    positional = ("slope",)
    synonyms = {"negative_slope": "slope", "alpha": "slope"}
    torch_kwargs = (("negative_slope", "slope"),)
    sample_args = {"slope": 0.2}

    class Params(Params):
        slope: float = 0.01

    def numpy(self, p, w, xs, ctx):
        return npops.leaky_relu(xs[0], p.slope)

    def backward(self, p, w, xs, y, gy, ctx):
        x = xs[0]
        return [gy * _where(x > 0, 1.0, p.slope, x.dtype)], {}


@register
class Elu(_Activation):
    """x if x > 0 else alpha * (exp(x) - 1)"""
    name, fn, summary = "elu", "F.elu", "x if x > 0 else alpha*(exp(x) - 1): elu [1.0]"
    positional = ("alpha",)
    torch_kwargs = (("alpha", "alpha"),)
    sample_args = {"alpha": 0.5}

    class Params(Params):
        alpha: float = 1.0

    def numpy(self, p, w, xs, ctx):
        return npops.elu(xs[0], p.alpha)

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        x = xs[0]  # d/dx alpha*(exp(x) - 1) = y + alpha for x <= 0
        return [np.where(x > 0, gy, gy * (y + x.dtype.type(p.alpha)))], {}


@register
class Gelu(_Activation):
    """x * Φ(x) (exact, with erf) or its tanh approximation"""
    name, fn, summary = "gelu", "F.gelu", "x * Phi(x): gelu [approximate=tanh]"
    torch_kwargs = (("approximate", "approximate"),)
    sample_args = {"approximate": "tanh"}

    class Params(Params):
        approximate: Literal["none", "tanh"] = "none"

    def numpy(self, p, w, xs, ctx):
        return npops.gelu(xs[0], p.approximate)

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        x = xs[0]
        dt = x.dtype.type
        if p.approximate == "none":  # Phi(x) + x * phi(x)
            cdf = dt(0.5) * npops.erfc(-x * dt(0.7071067811865476))
            pdf = np.exp(dt(-0.5) * x * x) * dt(0.3989422804014327)
            return [gy * (cdf + x * pdf)], {}
        # 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2), t = tanh(inner)
        k = dt(0.7978845608028654)
        t = np.tanh(k * (x + dt(0.044715) * x * x * x))
        d = dt(0.5) * (dt(1) + t) + dt(0.5) * x * (dt(1) - t * t) * k * (
            dt(1) + dt(3 * 0.044715) * x * x)
        return [gy * d], {}


@register
class Tanh(_Activation):
    name, fn, summary = "tanh", "torch.tanh", "hyperbolic tangent"

    def numpy(self, p, w, xs, ctx):
        return npops.tanh(xs[0])

    def backward(self, p, w, xs, y, gy, ctx):
        return [gy * (1 - y * y)], {}


@register
class Sigmoid(_Activation):
    name, fn, summary = "sigmoid", "torch.sigmoid", "1 / (1 + exp(-x))"

    def numpy(self, p, w, xs, ctx):
        return npops.sigmoid(xs[0])

    def backward(self, p, w, xs, y, gy, ctx):
        return [gy * y * (1 - y)], {}


@register
class Silu(_Activation):
    """x * sigmoid(x) (SiLU, also called swish): LLaMA's and SwiGLU's gate."""
    name, fn, summary = "silu", "F.silu", "x * sigmoid(x) (also swish)"
    aliases = ("swish",)

    def numpy(self, p, w, xs, ctx):
        return xs[0] * npops.sigmoid(xs[0])

    def backward(self, p, w, xs, y, gy, ctx):
        s = npops.sigmoid(xs[0])
        return [gy * s * (1 + xs[0] * (1 - s))], {}


class _Softmax(_Activation):
    ranks = (1, None)
    positional = ("dim",)
    synonyms = {"axis": "dim"}
    sample_args = {"dim": 1}

    class Params(Params):
        dim: int = -1

    def infer(self, p, ins):
        x = ins[0]
        need_float(x, self.name)
        if not -x.rank <= p.dim < x.rank:
            raise ShapeError(f"dim {p.dim} is out of range for a rank-{x.rank} input {x}",
                             arg="dim", hint=f"use a dim from {-x.rank} to {x.rank - 1}")
        return x

    def macs(self, p, ins, out):
        return prod(ins[0].shape)

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall(self.fn, (In(0),), {"dim": p.dim})])


@register
class Softmax(_Softmax):
    """exp(x) / sum(exp(x)) along dim (default: the last)"""
    name, fn, summary = "softmax", "F.softmax", "softmax along dim: softmax [dim=-1]"

    def numpy(self, p, w, xs, ctx):
        return npops.softmax(xs[0], p.dim)

    def backward(self, p, w, xs, y, gy, ctx):
        # dx = y * (gy - sum(gy * y)) along dim
        return [y * (gy - (gy * y).sum(axis=p.dim, keepdims=True))], {}


@register
class LogSoftmax(_Softmax):
    """log(softmax(x)) along dim, computed stably"""
    name, fn, summary = "log_softmax", "F.log_softmax", "log of softmax: log_softmax [dim=-1]"

    def numpy(self, p, w, xs, ctx):
        return npops.log_softmax(xs[0], p.dim)

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        # dx = gy - softmax(x) * sum(gy) along dim, softmax(x) = exp(y)
        return [gy - np.exp(y) * gy.sum(axis=p.dim, keepdims=True)], {}


@register
class Identity(_Activation):
    """Passes its input through unchanged."""
    name, summary = "identity", "passes its input through"

    def infer(self, p, ins):
        return ins[0]

    def torch(self, p, ins, out):
        return TorchPlan(None, [])

    def numpy(self, p, w, xs, ctx):
        return xs[0]

    def backward(self, p, w, xs, y, gy, ctx):
        return [gy], {}
