"""groupnorm (torch.nn.GroupNorm) and instancenorm (torch.nn.InstanceNorm1d/2d/3d by input
rank): normalisation over groups of channels, or each channel alone, of each sample."""

from __future__ import annotations

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
    positive,
    prod,
    register,
)
from .norm import _BatchNorm, _check_eps, channel_norm_weights


def _affine(c: int) -> dict[str, W]:
    return {"weight": W((c,), ("ones",)), "bias": W((c,), ("zeros",))}


def _per_channel(a, ndim: int):
    """A [C] weight shaped to broadcast over [N, C, *spatial]."""
    return a.reshape((1, -1) + (1,) * (ndim - 2))


def _normalise(xg, eps: float):
    """(x̂, invstd) of ``xg`` [N, G, M] over its last axis, with the biased variance."""
    import numpy as np

    mean = xg.mean(axis=-1, keepdims=True)
    centred = xg - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    invstd = 1.0 / np.sqrt(var + xg.dtype.type(eps))
    return centred * invstd, invstd


def _grouped_backward(x, gy, w, groups: int, eps: float, affine: bool):
    """dx, dweight and dbias of y = x̂ * weight + bias with x̂ normalised over each of
    ``groups`` groups of channels per sample (M values each): dx = invstd / M * (M g - Σg
    - x̂ Σ(g x̂)), g = gy * weight; dweight = Σ gy x̂ and dbias = Σ gy over N and space."""
    import numpy as np

    n = x.shape[0]
    xhat, invstd = _normalise(x.reshape(n, groups, -1), eps)
    g = gy * _per_channel(np.asarray(w["weight"], dtype=x.dtype), x.ndim) if affine else gy
    g = g.reshape(n, groups, -1)
    m = g.shape[-1]
    gx = invstd / m * (m * g - g.sum(axis=-1, keepdims=True)
                       - xhat * (g * xhat).sum(axis=-1, keepdims=True))
    grads = {}
    if affine:
        axes = (0,) + tuple(range(2, x.ndim))
        grads = {"weight": (gy * xhat.reshape(x.shape)).sum(axis=axes),
                 "bias": gy.sum(axis=axes)}
    return gx.reshape(x.shape), grads


@register
class GroupNorm(LayerKind):
    """Normalises each sample over groups of channels (axis 1) and their positions, then a
    per-channel affine map (torch.nn.GroupNorm)."""

    name = "groupnorm"
    aliases = ("group_norm", "GroupNorm")
    positional = ("groups",)
    synonyms = {"num_groups": "groups"}
    summary = "group normalisation over the channel axis (1): groupnorm <groups> [eps=1e-5]"
    ranks = (2, None)
    layout = "[N, C, *]"

    class Params(Params):
        groups: Int
        eps: float = 1e-5
        affine: Bool = True
        init: InitArg = DEFAULT_INIT
        bias_init: InitArg = DEFAULT_INIT

        _groups = positive("groups")
        _eps = field_validator("eps")(_check_eps)

    def infer(self, p, ins):
        x = ins[0]
        need_float(x, self.name)
        c = concrete(x.shape[1], f"{self.name}'s channels (axis 1)")
        if c % p.groups:
            divisors = [d for d in range(1, c + 1) if c % d == 0]
            raise ShapeError(f"groupnorm {p.groups} splits the channels into {p.groups} "
                             f"groups, but {c} channels ({x}) are not divisible by {p.groups}",
                             arg="groups", hint="use a divisor of the channels: "
                             + ", ".join(map(str, divisors)))
        space = x.shape[2:]
        if c == p.groups and all(d.is_const for d in space) and prod(
                d.value for d in space) == 1:
            raise ShapeError(f"groupnorm {p.groups} of {x} normalises one value per group: "
                             "every output would be its bias (torch refuses it for a batch "
                             "of one)", arg="groups",
                             hint="use fewer groups, or batchnorm or layernorm for this input")
        return x

    def weights(self, p, ins, out):
        return _affine(ins[0].shape[1].value) if p.affine else {}

    def macs(self, p, ins, out):
        return prod(ins[0].shape) * 2

    def torch(self, p, ins, out):
        kw = {"eps": p.eps, "affine": p.affine}
        return TorchPlan(TorchModule("GroupNorm", (p.groups, ins[0].shape[1].value), kw), [])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = xs[0]
        y = _normalise(x.reshape(x.shape[0], p.groups, -1), p.eps)[0].reshape(x.shape)
        if p.affine:
            y = y * _per_channel(np.asarray(w["weight"], dtype=x.dtype), x.ndim)
            y = y + _per_channel(np.asarray(w["bias"], dtype=x.dtype), x.ndim)
        return y

    def backward(self, p, w, xs, y, gy, ctx):
        gx, grads = _grouped_backward(xs[0], gy, w, p.groups, p.eps, p.affine)
        return [gx], grads

    def sample(self):
        return {"groups": 2, "eps": 1e-3, "affine": True}, [TensorType((2, 4, 3, 2))]

    def samples(self):
        return [self.sample(), ({"groups": 3, "affine": False}, [TensorType((2, 6))])]


class _InstanceNorm(LayerKind):
    """Normalises each channel of each sample over its positions (torch.nn.InstanceNormNd),
    with running statistics when ``track`` (used in eval mode, updated in training)."""

    rank: int | None = None
    synonyms = {"track_running_stats": "track"}
    summary = ("instance normalisation of each channel (axis 1) over its positions: "
               "instancenorm [eps=1e-5] [momentum=0.1] [affine] [track]")

    class Params(_BatchNorm.Params):  # batchnorm's arguments and checks, other defaults
        affine: Bool = False
        track: Bool = False

    def _n(self, x) -> int:
        layouts = {1: "[N, C, L]", 2: "[N, C, H, W]", 3: "[N, C, D, H, W]"}
        if self.rank is not None:
            need_rank(x, {self.rank + 2}, self.name, layouts[self.rank])
            return self.rank
        need_rank(x, {3, 4, 5}, self.name, ", ".join(layouts.values()))
        return x.rank - 2

    def infer(self, p, ins):
        x = ins[0]
        need_float(x, self.name)
        self._n(x)
        concrete(x.shape[1], f"{self.name}'s channels (axis 1)")
        space = x.shape[2:]
        if all(d.is_const for d in space) and prod(d.value for d in space) == 1:
            raise ShapeError(f"{self.name} of {x} normalises one value per channel: every "
                             "output would be 0 (torch refuses it in training)",
                             hint="instancenorm needs more than one position per channel; "
                                  "for [N, C] inputs use batchnorm or layernorm")
        return x

    def weights(self, p, ins, out):
        return channel_norm_weights(ins[0].shape[1].value, p.affine, p.track)

    def macs(self, p, ins, out):
        return prod(ins[0].shape) * 2

    def torch(self, p, ins, out):
        x = ins[0]
        kw = {"eps": p.eps, "momentum": p.momentum, "affine": p.affine,
              "track_running_stats": p.track}
        return TorchPlan(TorchModule(f"InstanceNorm{self._n(x)}d", (x.shape[1].value,), kw), [])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = xs[0]
        n, c = x.shape[:2]
        dt = x.dtype
        if ctx.training or not p.track:
            xg = x.reshape(n, c, -1)
            y, _ = _normalise(xg, p.eps)
            y = y.reshape(x.shape)
            if ctx.training and p.track:  # the mean over the batch of each sample's stats
                m = p.momentum
                count = xg.shape[-1]
                mean = xg.mean(axis=-1)
                var = np.mean((xg - mean[..., None]) ** 2, axis=-1) * (count / (count - 1))
                rm, rv = np.asarray(w["running_mean"]), np.asarray(w["running_var"])
                ctx.updates["running_mean"] = ((1.0 - m) * rm + m * mean.mean(axis=0)).astype(
                    rm.dtype, copy=False)
                ctx.updates["running_var"] = ((1.0 - m) * rv + m * var.mean(axis=0)).astype(
                    rv.dtype, copy=False)
        else:
            mean = _per_channel(np.asarray(w["running_mean"], dtype=dt), x.ndim)
            var = _per_channel(np.asarray(w["running_var"], dtype=dt), x.ndim)
            y = (x - mean) / np.sqrt(var + dt.type(p.eps))
        if p.affine:
            y = y * _per_channel(np.asarray(w["weight"], dtype=dt), x.ndim)
            y = y + _per_channel(np.asarray(w["bias"], dtype=dt), x.ndim)
        return y

    def backward(self, p, w, xs, y, gy, ctx):
        """With each sample's statistics, groupnorm's backward with one group per channel;
        with the running ones (eval, track) the layer is affine: dx = gy * weight * invstd."""
        import numpy as np

        x = xs[0]
        if ctx.training or not p.track:
            gx, grads = _grouped_backward(x, gy, w, x.shape[1], p.eps, p.affine)
            return [gx], grads
        dt = x.dtype
        mean = _per_channel(np.asarray(w["running_mean"], dtype=dt), x.ndim)
        var = _per_channel(np.asarray(w["running_var"], dtype=dt), x.ndim)
        invstd = 1.0 / np.sqrt(var + dt.type(p.eps))
        if not p.affine:
            return [gy * invstd], {}
        axes = (0,) + tuple(range(2, x.ndim))
        weight = _per_channel(np.asarray(w["weight"], dtype=dt), x.ndim)
        return [gy * weight * invstd], {"weight": (gy * (x - mean) * invstd).sum(axis=axes),
                                        "bias": gy.sum(axis=axes)}

    def sample(self):
        shape = {None: (2, 3, 4, 3), 1: (2, 3, 5), 2: (2, 3, 4, 3), 3: (2, 3, 2, 3, 2)}[
            self.rank]
        return ({"eps": 1e-3, "momentum": 0.2, "affine": True, "track": True},
                [TensorType(shape)])

    def samples(self):
        first = self.sample()
        return [first, ({}, first[1])]


@register
class InstanceNorm(_InstanceNorm):
    name = "instancenorm"
    aliases = ("instance_norm",)


@register
class InstanceNorm1d(_InstanceNorm):
    name = "instancenorm1d"
    aliases = ("InstanceNorm1d",)
    rank = 1
    summary = "instancenorm of a [N, C, L] input (torch.nn.InstanceNorm1d)"


@register
class InstanceNorm2d(_InstanceNorm):
    name = "instancenorm2d"
    aliases = ("InstanceNorm2d",)
    rank = 2
    summary = "instancenorm of a [N, C, H, W] input (torch.nn.InstanceNorm2d)"


@register
class InstanceNorm3d(_InstanceNorm):
    name = "instancenorm3d"
    aliases = ("InstanceNorm3d",)
    rank = 3
    summary = "instancenorm of a [N, C, D, H, W] input (torch.nn.InstanceNorm3d)"
