"""batchnorm (1d/2d/3d by input rank) and layernorm."""

from __future__ import annotations

from typing import Optional

from pydantic import field_validator

from .base import (
    DEFAULT_INIT,
    Bool,
    InitArg,
    Int,
    LayerKind,
    Params,
    ShapeError,
    TensorType,
    TorchModule,
    TorchPlan,
    W,
    concrete,
    need_float,
    need_rank,
    npops,
    positive,
    prod,
    register,
)


def _check_eps(cls, v):
    # not `v <= 0`: NaN compares false to everything, and must be refused too
    if not v > 0:
        raise ValueError("must be > 0")
    return v


class _BatchNorm(LayerKind):
    rank: int | None = None
    synonyms = {"affine": "affine", "track_running_stats": "track"}
    summary = "batch normalisation over the channel axis (1)"

    class Params(Params):
        eps: float = 1e-5
        momentum: float = 0.1
        affine: Bool = True
        track: Bool = True
        init: InitArg = DEFAULT_INIT
        bias_init: InitArg = DEFAULT_INIT

        _eps = field_validator("eps")(_check_eps)

        @field_validator("momentum")
        @classmethod
        def _m(cls, v):
            if not 0.0 <= v <= 1.0:
                raise ValueError("must be in [0, 1]")
            return v

    def _n(self, x):
        if self.rank == 1:
            need_rank(x, {2, 3}, self.name, "[N, C] or [N, C, L]")
            return 1
        if self.rank == 2:
            need_rank(x, {4}, self.name, "[N, C, H, W]")
            return 2
        if self.rank == 3:
            need_rank(x, {5}, self.name, "[N, C, D, H, W]")
            return 3
        need_rank(x, {2, 3, 4, 5}, self.name,
                  "[N, C], [N, C, L], [N, C, H, W] or [N, C, D, H, W]")
        return 1 if x.rank < 4 else x.rank - 2

    def infer(self, p, ins):
        x = ins[0]
        need_float(x, self.name)
        self._n(x)
        concrete(x.shape[1], f"{self.name}'s channels (axis 1)")
        return x

    def weights(self, p, ins, out):
        c = ins[0].shape[1].value
        w = {}
        if p.affine:
            w["weight"] = W((c,), ("ones",))
            w["bias"] = W((c,), ("zeros",))
        if p.track:
            w["running_mean"] = W((c,), ("zeros",), trainable=False)
            w["running_var"] = W((c,), ("ones",), trainable=False)
            w["num_batches_tracked"] = W((), ("zeros",), trainable=False, dtype="int")
        return w

    def macs(self, p, ins, out):
        return prod(ins[0].shape) * 2

    def torch(self, p, ins, out):
        x = ins[0]
        n = self._n(x)
        kw = {"eps": p.eps, "momentum": p.momentum, "affine": p.affine,
              "track_running_stats": p.track}
        return TorchPlan(TorchModule(f"BatchNorm{n}d", (x.shape[1].value,), kw), [])

    def numpy(self, p, w, xs, ctx):
        y, rm, rv = npops.batch_norm(xs[0], w.get("running_mean"), w.get("running_var"),
                                     w.get("weight"), w.get("bias"), ctx.training,
                                     p.momentum, p.eps)
        if ctx.training and p.track:
            ctx.updates["running_mean"] = rm
            ctx.updates["running_var"] = rv
            ctx.updates["num_batches_tracked"] = w["num_batches_tracked"] + 1
        return y

    def backward(self, p, w, xs, y, gy, ctx):
        """With batch statistics (training, or no running stats), x̂ = (x - mean) * invstd
        over M = N * spatial values per channel: dx = invstd / M * (M g - Σg - x̂ Σ(g x̂)),
        g = gy * weight; with running stats the layer is affine: dx = gy * weight * invstd."""
        import numpy as np

        x = xs[0]
        dt = x.dtype
        axes = (0,) + tuple(range(2, x.ndim))
        bshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        batch = ctx.training or not p.track
        if batch:
            mean = x.mean(axis=axes, keepdims=True)
            var = np.mean((x - mean) ** 2, axis=axes, keepdims=True)
        else:
            mean = np.asarray(w["running_mean"], dtype=dt).reshape(bshape)
            var = np.asarray(w["running_var"], dtype=dt).reshape(bshape)
        invstd = 1.0 / np.sqrt(var + dt.type(p.eps))
        xhat = (x - mean) * invstd
        g = gy * np.asarray(w["weight"], dtype=dt).reshape(bshape) if p.affine else gy
        if batch:
            m = x.size // x.shape[1]
            gx = invstd / m * (m * g - g.sum(axis=axes, keepdims=True)
                               - xhat * (g * xhat).sum(axis=axes, keepdims=True))
        else:
            gx = g * invstd
        grads = {}
        if p.affine:
            grads = {"weight": (gy * xhat).sum(axis=axes), "bias": gy.sum(axis=axes)}
        return [gx], grads

    def sample(self):
        shape = {None: (3, 4, 5, 5), 1: (3, 4, 6), 2: (3, 4, 5, 5), 3: (3, 4, 3, 2, 3)}[
            self.rank]
        return {"eps": 1e-3, "momentum": 0.2, "affine": True, "track": True}, [TensorType(shape)]


@register
class BatchNorm(_BatchNorm):
    name = "batchnorm"


@register
class BatchNorm1d(_BatchNorm):
    name = "batchnorm1d"
    rank = 1


@register
class BatchNorm2d(_BatchNorm):
    name = "batchnorm2d"
    rank = 2


@register
class BatchNorm3d(_BatchNorm):
    name = "batchnorm3d"
    rank = 3


def _last_axes(name: str, p, x):
    """The input of a normalisation over its last ``p.axes`` dims, which must be concrete
    (they are the weight's shape)."""
    need_float(x, name)
    if p.axes > x.rank:
        raise ShapeError(f"{name} over {p.axes} axes needs a rank >= {p.axes} input, got {x}",
                         arg="axes")
    for d in x.shape[-p.axes:]:
        concrete(d, f"{name}'s normalised dims")
    return x


@register
class LayerNorm(LayerKind):
    """Normalises over the last ``axes`` dims (torch.nn.LayerNorm)."""

    name = "layernorm"
    positional = ("axes",)
    synonyms = {"elementwise_affine": "affine"}
    summary = "layer normalisation over the last axes: layernorm [axes=1] [eps=1e-5]"

    class Params(Params):
        axes: Int = 1
        eps: float = 1e-5
        affine: Bool = True
        bias: Bool = True
        init: InitArg = DEFAULT_INIT
        bias_init: InitArg = DEFAULT_INIT

        _axes = positive("axes")
        _eps = field_validator("eps")(_check_eps)

    def infer(self, p, ins):
        return _last_axes(self.name, p, ins[0])

    def _shape(self, p, x):
        return tuple(d.value for d in x.shape[-p.axes:])

    def weights(self, p, ins, out):
        shp = self._shape(p, ins[0])
        w = {}
        if p.affine:
            w["weight"] = W(shp, ("ones",))
            if p.bias:
                w["bias"] = W(shp, ("zeros",))
        return w

    def macs(self, p, ins, out):
        return prod(ins[0].shape) * 2

    def torch(self, p, ins, out):
        kw = {"eps": p.eps, "elementwise_affine": p.affine}
        if not p.bias:
            kw["bias"] = False
        return TorchPlan(TorchModule("LayerNorm", (self._shape(p, ins[0]),), kw), [])

    def numpy(self, p, w, xs, ctx):
        return npops.layer_norm(xs[0], p.axes, w.get("weight"), w.get("bias"), p.eps)

    def backward(self, p, w, xs, y, gy, ctx):
        """x̂ = (x - mean) * invstd over the last ``axes`` dims (M values): dx = invstd / M
        * (M g - Σg - x̂ Σ(g x̂)) with g = gy * weight; dweight = Σ gy x̂ and dbias = Σ gy
        over the leading dims."""
        import numpy as np

        x = xs[0]
        dt = x.dtype
        axes = tuple(range(x.ndim - p.axes, x.ndim))
        lead = tuple(range(x.ndim - p.axes))
        mean = x.mean(axis=axes, keepdims=True)
        var = np.mean((x - mean) ** 2, axis=axes, keepdims=True)
        invstd = 1.0 / np.sqrt(var + dt.type(p.eps))
        xhat = (x - mean) * invstd
        g = gy * np.asarray(w["weight"], dtype=dt) if p.affine else gy
        m = int(np.prod(x.shape[x.ndim - p.axes:]))
        gx = invstd / m * (m * g - g.sum(axis=axes, keepdims=True)
                           - xhat * (g * xhat).sum(axis=axes, keepdims=True))
        grads = {}
        if p.affine:
            grads["weight"] = (gy * xhat).sum(axis=lead)
            if p.bias:
                grads["bias"] = gy.sum(axis=lead)
        return [gx], grads

    def sample(self):
        return {"axes": 2, "eps": 1e-6, "affine": True, "bias": False}, [TensorType((2, 3, 4))]


@register
class RMSNorm(LayerKind):
    """Root-mean-square normalisation over the last ``axes`` dims (torch.nn.RMSNorm):
    y = x / sqrt(mean(x²) + eps) * weight, no centring and no bias (LLaMA, T5)."""

    name = "rmsnorm"
    aliases = ("rms_norm",)
    positional = ("axes",)
    synonyms = {"elementwise_affine": "affine"}
    summary = ("RMS normalisation over the last axes: rmsnorm [axes=1] [eps] (eps: the "
               "dtype's machine epsilon by default, as torch)")

    class Params(Params):
        axes: Int = 1
        eps: Optional[float] = None
        affine: Bool = True
        init: InitArg = DEFAULT_INIT

        _axes = positive("axes")

        @field_validator("eps")
        @classmethod
        def _eps(cls, v):
            return v if v is None else _check_eps(cls, v)

    infer = LayerNorm.infer
    _shape = LayerNorm._shape

    def weights(self, p, ins, out):
        return {"weight": W(self._shape(p, ins[0]), ("ones",))} if p.affine else {}

    def macs(self, p, ins, out):
        return prod(ins[0].shape) * 2

    def torch(self, p, ins, out):
        kw = {} if p.eps is None else {"eps": p.eps}
        if not p.affine:
            kw["elementwise_affine"] = False
        return TorchPlan(TorchModule("RMSNorm", (self._shape(p, ins[0]),), kw), [])

    def _parts(self, p, x):
        """(axes, 1 / sqrt(mean(x²) + eps)) in x's dtype."""
        import numpy as np

        axes = tuple(range(x.ndim - p.axes, x.ndim))
        eps = np.finfo(x.dtype).eps if p.eps is None else p.eps
        ms = np.mean(x * x, axis=axes, keepdims=True)
        return axes, (1.0 / np.sqrt(ms + x.dtype.type(eps))).astype(x.dtype)

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = xs[0]
        y = x * self._parts(p, x)[1]
        return y * np.asarray(w["weight"], dtype=x.dtype) if p.affine else y

    def backward(self, p, w, xs, y, gy, ctx):
        """With r = (mean(x²) + eps)^-1/2 over M values and g = gy * weight:
        dx = r g - x r³ Σ(g x) / M; dweight = Σ gy x r over the leading dims."""
        import numpy as np

        x = xs[0]
        axes, r = self._parts(p, x)
        g = gy * np.asarray(w["weight"], dtype=x.dtype) if p.affine else gy
        m = int(np.prod(x.shape[x.ndim - p.axes:]))
        gx = r * g - x * r ** 3 * (g * x).sum(axis=axes, keepdims=True) / m
        grads = {}
        if p.affine:
            grads["weight"] = (gy * x * r).sum(axis=tuple(range(x.ndim - p.axes)))
        return [gx], grads

    def sample(self):
        return {"axes": 2, "eps": 1e-6}, [TensorType((2, 3, 4))]

    def samples(self):
        return [self.sample(), ({"affine": False}, [TensorType((3, 5))])]
