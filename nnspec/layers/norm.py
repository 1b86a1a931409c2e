"""batchnorm (1d/2d/3d by input rank), layernorm (over the last axes or any) and rmsnorm."""

from __future__ import annotations

from typing import Optional

from pydantic import field_validator, model_validator

from .base import (
    DEFAULT_INIT,
    Bool,
    MODULE,
    In,
    InitArg,
    Int,
    LayerKind,
    Params,
    Prev,
    ShapeError,
    TensorType,
    TorchCall,
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


def channel_norm_weights(c: int, affine: bool, track: bool) -> dict:
    """The state of a normalisation per channel, as torch's _NormBase: ``weight``, ``bias``
    (affine) and ``running_mean``, ``running_var``, ``num_batches_tracked`` (track)."""
    w = {}
    if affine:
        w["weight"] = W((c,), ("ones",))
        w["bias"] = W((c,), ("zeros",))
    if track:
        w["running_mean"] = W((c,), ("zeros",), trainable=False)
        w["running_var"] = W((c,), ("ones",), trainable=False)
        w["num_batches_tracked"] = W((), ("zeros",), trainable=False, dtype="int")
    return w


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
        return channel_norm_weights(ins[0].shape[1].value, p.affine, p.track)

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


def _norm_axes(p, rank: int) -> tuple[int, ...]:
    """The axes a layernorm normalises, ascending: those of ``dim`` (validated against the
    rank by :meth:`LayerNorm.infer`), else the last ``axes``."""
    dim = getattr(p, "dim", None)
    if dim is None:
        return tuple(range(rank - p.axes, rank))
    return tuple(sorted(d % rank for d in dim))


def _moved(x, axes: tuple[int, ...]):
    """x with ``axes`` moved last, in order (NumPy)."""
    import numpy as np

    return np.moveaxis(x, axes, tuple(range(x.ndim - len(axes), x.ndim)))


def _moved_back(y, axes: tuple[int, ...]):
    import numpy as np

    return np.moveaxis(y, tuple(range(y.ndim - len(axes), y.ndim)), axes)


@register
class LayerNorm(LayerKind):
    """Normalises over the last ``axes`` dims (torch.nn.LayerNorm), or over the axes ``dim``
    names (``dim=1``: channels first, as ConvNeXt's LayerNorm2d), weight and bias of their
    shape."""

    name = "layernorm"
    aliases = ("layer_norm",)
    positional = ("axes",)
    synonyms = {"elementwise_affine": "affine"}
    summary = ("layer normalisation over the last axes, or over the axes dim names: "
               "layernorm [axes=1] [dim=] [eps=1e-5]")

    class Params(Params):
        axes: Int = 1
        dim: Optional[tuple[Int, ...]] = None
        eps: float = 1e-5
        affine: Bool = True
        bias: Bool = True
        init: InitArg = DEFAULT_INIT
        bias_init: InitArg = DEFAULT_INIT

        _axes = positive("axes")
        _eps = field_validator("eps")(_check_eps)

        @field_validator("dim", mode="before")
        @classmethod
        def _dim(cls, v):
            if isinstance(v, int) and not isinstance(v, bool):
                return (v,)  # dim=1: one axis
            if v is not None and not (isinstance(v, (tuple, list)) and v and all(
                    isinstance(d, int) and not isinstance(d, bool) for d in v)):
                raise ValueError("must be an axis or a tuple of axes: dim=1, dim=(1, 2)")
            return v

        @model_validator(mode="after")
        def _one_way(self):
            if self.dim is not None and self.axes != 1:
                raise ValueError("give axes (the last axes) or dim (the axes named), not both")
            return self

    def infer(self, p, ins):
        x = ins[0]
        if getattr(p, "dim", None) is None:
            return _last_axes(self.name, p, x)
        need_float(x, self.name)
        for d in p.dim:
            if not -x.rank <= d < x.rank:
                raise ShapeError(f"dim {d} is out of range for a rank-{x.rank} input {x}",
                                 arg="dim", hint=f"use dims from {-x.rank} to {x.rank - 1}")
        if len({d % x.rank for d in p.dim}) < len(p.dim):
            raise ShapeError(f"dim {_show_dims(p.dim)} names an axis of {x} twice", arg="dim")
        for a in _norm_axes(p, x.rank):
            concrete(x.shape[a], f"{self.name}'s normalised dims", "dim")
        return x

    def _shape(self, p, x):
        return tuple(x.shape[a].value for a in _norm_axes(p, x.rank))

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
        module = TorchModule("LayerNorm", (self._shape(p, ins[0]),), kw)
        rank = ins[0].rank
        axes = _norm_axes(p, rank)
        last = tuple(range(rank - len(axes), rank))
        if axes == last:
            return TorchPlan(module, [])
        # the axes moved last, normalised, moved back: x.movedim(1, -1) ... .movedim(-1, 1)
        src = axes[0] if len(axes) == 1 else axes
        dst = -1 if len(axes) == 1 else tuple(a - rank for a in last)
        return TorchPlan(module, [TorchCall(".movedim", (In(0), src, dst)),
                                  TorchCall(MODULE, (Prev(),)),
                                  TorchCall(".movedim", (Prev(), dst, src))])

    def numpy(self, p, w, xs, ctx):
        x = xs[0]
        axes = _norm_axes(p, x.ndim)
        y = npops.layer_norm(_moved(x, axes), len(axes), w.get("weight"), w.get("bias"), p.eps)
        return _moved_back(y, axes)

    def backward(self, p, w, xs, y, gy, ctx):
        """x̂ = (x - mean) * invstd over the normalised dims (M values): dx = invstd / M
        * (M g - Σg - x̂ Σ(g x̂)) with g = gy * weight; dweight = Σ gy x̂ and dbias = Σ gy
        over the other dims. Computed with the normalised dims moved last."""
        import numpy as np

        norm = _norm_axes(p, xs[0].ndim)
        x, gy = _moved(xs[0], norm), _moved(gy, norm)
        dt = x.dtype
        k = len(norm)
        axes = tuple(range(x.ndim - k, x.ndim))
        lead = tuple(range(x.ndim - k))
        mean = x.mean(axis=axes, keepdims=True)
        var = np.mean((x - mean) ** 2, axis=axes, keepdims=True)
        invstd = 1.0 / np.sqrt(var + dt.type(p.eps))
        xhat = (x - mean) * invstd
        g = gy * np.asarray(w["weight"], dtype=dt) if p.affine else gy
        m = int(np.prod(x.shape[x.ndim - k:]))
        gx = invstd / m * (m * g - g.sum(axis=axes, keepdims=True)
                           - xhat * (g * xhat).sum(axis=axes, keepdims=True))
        grads = {}
        if p.affine:
            grads["weight"] = (gy * xhat).sum(axis=lead)
            if p.bias:
                grads["bias"] = gy.sum(axis=lead)
        return [_moved_back(gx, norm)], grads

    def sample(self):
        return {"axes": 2, "eps": 1e-6, "affine": True, "bias": False}, [TensorType((2, 3, 4))]

    def samples(self):
        return [self.sample(), ({"dim": 1}, [TensorType((2, 3, 4, 2))])]


def _show_dims(dim: tuple[int, ...]) -> str:
    return str(dim[0]) if len(dim) == 1 else "(" + ", ".join(map(str, dim)) + ")"


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
