"""Element-wise activations, softmax and identity: shape in = shape out, no weights but
prelu's learnt slopes."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from .base import (
    DEFAULT_INIT,
    INT,
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
    need_float,
    npops,
    positive,
    prod,
    register,
)


#: Names of functions a typo away from a kind's name that mean something else (torch's
#: selu is no misspelt elu, softmin no softmax): an unknown kind written so gets no
#: 'did you mean'.
NOT_MISSPELT = ("selu", "celu", "rrelu", "glu", "geglu", "reglu", "softmin", "softsign",
                "softshrink", "hardshrink", "tanhshrink", "logsigmoid", "minpool")


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


# ---- piecewise-linear and smooth activations (torch.nn.functional's) ----------------------


def _upper_bound(lo: str):
    """A Params validator of an upper bound: it must not be below the lower bound ``lo``
    (validated first, as fields are in order); the error is the upper bound's."""

    def check(cls, v, info):
        a = info.data.get(lo)
        if a is not None and v is not None and v < a:
            raise ValueError(f"must be >= {lo} ({a}): the range is empty")
        return v

    return classmethod(check)


class _Given(_Activation):
    """An activation called with the arguments given other than their defaults:
    ``F.hardtanh(x)`` as a person writes it, ``F.hardtanh(x, min_val=-2.0)`` when set."""

    def torch(self, p, ins, out):
        fields = self.fields()
        kw = {tk: getattr(p, ours) for tk, ours in self.torch_kwargs
              if getattr(p, ours) != fields[ours].default}
        return TorchPlan(None, [TorchCall(self.fn, (In(0),), kw)])


@register
class Relu6(_Given):
    """min(max(x, 0), 6) (MobileNet's)."""
    name, fn, summary = "relu6", "F.relu6", "min(max(x, 0), 6)"
    aliases = ("ReLU6",)

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = xs[0]
        return np.clip(x, x.dtype.type(0), x.dtype.type(6))

    def backward(self, p, w, xs, y, gy, ctx):
        x = xs[0]
        return [gy * ((x > 0) & (x < 6))], {}  # torch's: none at 0 and at 6


@register
class Hardtanh(_Given):
    """min(max(x, min_val), max_val)"""
    name, fn = "hardtanh", "F.hardtanh"
    summary = "clamp to [min_val, max_val]: hardtanh [min_val=-1] [max_val=1]"
    aliases = ("hard_tanh", "Hardtanh")
    positional = ("min_val", "max_val")
    synonyms = {"min": "min_val", "max": "max_val"}
    torch_kwargs = (("min_val", "min_val"), ("max_val", "max_val"))
    sample_args = {"min_val": -0.5, "max_val": 2.0}

    class Params(Params):
        min_val: float = -1.0
        max_val: float = Field(1.0, validate_default=True)

        _range = field_validator("max_val")(_upper_bound("min_val"))

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = xs[0]
        return np.clip(x, x.dtype.type(p.min_val), x.dtype.type(p.max_val))

    def backward(self, p, w, xs, y, gy, ctx):
        x = xs[0]  # torch's: none at the bounds
        return [gy * ((x > p.min_val) & (x < p.max_val))], {}


@register
class Clamp(_Activation):
    """torch.clamp(x, min, max): either bound may be left out, not both."""
    name, fn = "clamp", "torch.clamp"
    summary = "clamp to [min, max], either bound optional: clamp [min=] [max=]"
    aliases = ("clip",)
    positional = ("min", "max")
    synonyms = {"min_val": "min", "max_val": "max"}
    torch_kwargs = (("min", "min"), ("max", "max"))
    sample_args = {"min": -0.5, "max": 0.75}

    class Params(Params):
        min: Optional[float] = None
        max: Optional[float] = None

        _range = field_validator("max")(_upper_bound("min"))

        @model_validator(mode="after")
        def _a_bound(self):
            if self.min is None and self.max is None:
                raise ValueError("give min=, max= or both")
            return self

    def infer(self, p, ins):
        x = ins[0]
        if getattr(x, "dtype", None) != INT:
            return super().infer(p, ins)
        for arg in ("min", "max"):  # an int tensor stays int: its bounds are whole numbers
            v = getattr(p, arg)
            if v is not None and v != int(v):
                raise ShapeError(f"clamp of the int tensor {x} takes whole bounds, got "
                                 f"{arg}={v}", arg=arg, code="E368",
                                 hint="round the bound, or to_float(x) first")
        return x

    def torch(self, p, ins, out):
        whole = int if ins[0].dtype == INT else float
        kw = {k: whole(v) for k, v in (("min", p.min), ("max", p.max)) if v is not None}
        return TorchPlan(None, [TorchCall(self.fn, (In(0),), kw)])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = xs[0]
        dt = x.dtype.type
        return np.clip(x, None if p.min is None else dt(p.min),
                       None if p.max is None else dt(p.max))

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        x = xs[0]  # torch's: the bounds themselves pass the gradient
        if not np.issubdtype(np.asarray(x).dtype, np.floating):
            return [None], {}  # an int tensor: no gradient
        keep = np.ones(x.shape, bool)
        if p.min is not None:
            keep &= x >= p.min
        if p.max is not None:
            keep &= x <= p.max
        return [gy * keep], {}

    def samples(self):
        return [self.sample(), ({"max": 0.25}, [TensorType((3, 5))]),
                ({"min": -1.0, "max": 15.0}, [TensorType((3, 5), INT)])]


@register
class Hardsigmoid(_Activation):
    """relu6(x + 3) / 6"""
    name, fn, summary = "hardsigmoid", "F.hardsigmoid", "relu6(x + 3) / 6"
    aliases = ("hard_sigmoid", "Hardsigmoid")

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = xs[0]
        dt = x.dtype.type
        return np.clip((x + dt(3)) / dt(6), dt(0), dt(1))

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        x = xs[0]
        # torch multiplies by 1/6 rounded to float32, whatever the dtype
        sixth = x.dtype.type(np.float32(1.0) / np.float32(6.0))
        return [gy * np.where((x > -3) & (x < 3), sixth, x.dtype.type(0))], {}


@register
class Hardswish(_Activation):
    """x * relu6(x + 3) / 6 (MobileNetV3's)"""
    name, fn, summary = "hardswish", "F.hardswish", "x * relu6(x + 3) / 6"
    aliases = ("hard_swish", "Hardswish")

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = xs[0]
        dt = x.dtype.type
        return x * np.clip(x + dt(3), dt(0), dt(6)) / dt(6)

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        x = xs[0]  # torch's: 0 up to -3 inclusive, x/3 + 1/2 below 3, 1 from 3 on
        dt = x.dtype.type
        d = np.where(x <= -3, dt(0), np.where(x < 3, x / dt(3) + dt(0.5), dt(1)))
        return [gy * d], {}


def _softplus(x, beta: float, threshold: float):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (torch's)."""
    import numpy as np

    dt = x.dtype.type
    bx = x * dt(beta)
    small = np.log1p(np.exp(np.minimum(bx, dt(threshold)))) / dt(beta)
    return np.where(bx > threshold, x, small)


@register
class Softplus(_Given):
    """log(1 + exp(beta x)) / beta, linear above the threshold"""
    name, fn = "softplus", "F.softplus"
    summary = "log(1 + exp(beta*x)) / beta: softplus [beta=1] [threshold=20]"
    aliases = ("Softplus",)
    positional = ("beta", "threshold")
    torch_kwargs = (("beta", "beta"), ("threshold", "threshold"))
    sample_args = {"beta": 2.0, "threshold": 1.0}

    class Params(Params):
        beta: float = 1.0
        threshold: float = 20.0

        @field_validator("beta")
        @classmethod
        def _beta(cls, v):
            if not v > 0:
                raise ValueError("must be > 0")
            return v

    def numpy(self, p, w, xs, ctx):
        return _softplus(xs[0], p.beta, p.threshold)

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        x = xs[0]
        bx = x * x.dtype.type(p.beta)
        return [np.where(bx > p.threshold, gy, gy * npops.sigmoid(bx))], {}


@register
class Mish(_Activation):
    """x * tanh(softplus(x))"""
    name, fn, summary = "mish", "F.mish", "x * tanh(softplus(x))"
    aliases = ("Mish",)

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = xs[0]
        return x * np.tanh(_softplus(x, 1.0, 20.0))

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        x = xs[0]  # tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2)
        t = np.tanh(_softplus(x, 1.0, 20.0))
        return [gy * (t + x * npops.sigmoid(x) * (1 - t * t))], {}


@register
class PRelu(_Activation):
    """x if x > 0 else weight * x, with one learnt slope or one per channel (axis 1)."""
    name = "prelu"
    summary = ("x if x > 0 else a*x, a learnt (nn.PReLU): prelu [num_parameters=1|channels] "
               "[init=constant(0.25)]")
    aliases = ("PReLU",)
    positional = ("num_parameters",)
    synonyms = {"n": "num_parameters", "channels": "num_parameters"}

    class Params(Params):
        num_parameters: Int = 1
        init: InitArg = DEFAULT_INIT

        _n = positive("num_parameters")

    def infer(self, p, ins):
        x = ins[0]
        need_float(x, self.name)
        if p.num_parameters == 1:
            return x
        if x.rank < 2:
            raise ShapeError(f"prelu {p.num_parameters} learns one slope per channel (axis 1) "
                             f"and needs a rank >= 2 input, got {x}", arg="num_parameters",
                             hint="use prelu (one shared slope) for this input")
        c = concrete(x.shape[1], "prelu's channels (axis 1)", "num_parameters")
        if c != p.num_parameters:
            raise ShapeError(f"prelu {p.num_parameters} needs {p.num_parameters} channels on "
                             f"axis 1, got {c} ({x})", arg="num_parameters",
                             hint=f"use prelu {c} (one slope per channel) or prelu (one "
                                  "shared slope)")
        return x

    def weights(self, p, ins, out):
        return {"weight": W((p.num_parameters,), ("constant", 0.25))}

    def torch(self, p, ins, out):
        args = (p.num_parameters,) if p.num_parameters != 1 else ()
        return TorchPlan(TorchModule("PReLU", args), [])

    def _slope(self, p, w, x):
        import numpy as np

        a = np.asarray(w["weight"], dtype=x.dtype)
        if p.num_parameters == 1:
            return a.reshape(())
        return a.reshape((1, -1) + (1,) * (x.ndim - 2))

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = xs[0]
        return np.where(x > 0, x, self._slope(p, w, x) * x)

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        x = xs[0]
        a = self._slope(p, w, x)
        gx = np.where(x > 0, gy, gy * a)
        ga = np.where(x > 0, x.dtype.type(0), gy * x)
        ga = ga.sum() if p.num_parameters == 1 else ga.sum(
            axis=(0,) + tuple(range(2, x.ndim)))
        return [gx], {"weight": np.reshape(ga, (p.num_parameters,))}

    def sample(self):
        return {"num_parameters": 3, "init": "constant(0.1)"}, [TensorType((2, 3, 4))]

    def samples(self):
        return [self.sample(), ({}, [TensorType((3, 5))])]
