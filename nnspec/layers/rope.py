"""rope: rotary position embeddings (Su et al., RoFormer), as LLaMA, GPT-NeoX and Phi apply
them to queries and keys.

The features of the last axis (the head dim D) are rotated in pairs, position p's pair i by
the angle p * theta^(-2i/dim). ``layout=half`` pairs feature i with i + dim/2 (HF LLaMA's
``rotate_half``, GPT-NeoX), ``interleaved`` pairs 2i with 2i + 1 (the RoFormer paper,
Meta's llama with complex numbers, GPT-J). ``dim`` rotates only the first features
(partial rotary); ``offset`` is the position of the first step (a query block at the end
of a cache). The cosines and sines are computed, not stored: the layer has no state_dict
entries, so a checkpoint's keys are those of a model that computes them on the fly.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BeforeValidator, Strict, field_validator

from .base import (
    In,
    Int,
    LayerKind,
    Params,
    ShapeError,
    TensorType,
    TorchCall,
    TorchPlan,
    concrete,
    need_float,
    prod,
    register,
)

_HELPERS = "nnspec.layers.torch.rope"


def _number(v):
    # `theta=500000` is 500000.0; true or "1e4" is not a number (pydantic would convert both)
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


Number = Annotated[float, Strict(), BeforeValidator(_number)]


def rope_tables(t: int, rot: int, theta: float, offset: int, layout: str):
    """(cos, sin) of the rotation angles, float64 [t, rot]: position offset + j, pair i at
    the angle (offset + j) * theta^(-2i/rot), each angle given to both features of its
    pair (i and i + rot/2 for half, 2i and 2i + 1 for interleaved)."""
    import numpy as np

    inv_freq = 1.0 / theta ** (np.arange(0, rot, 2, dtype=np.float64) / rot)
    pos = np.arange(offset, offset + t, dtype=np.float64)
    freqs = np.outer(pos, inv_freq)
    emb = np.concatenate([freqs, freqs], -1) if layout == "half" else np.repeat(freqs, 2, -1)
    return np.cos(emb), np.sin(emb)


def _rotate(x, layout: str):
    """The pair partner with a sign: half (x1, x2) -> (-x2, x1); interleaved
    (x[2i], x[2i+1]) -> (-x[2i+1], x[2i])."""
    import numpy as np

    if layout == "half":
        h = x.shape[-1] // 2
        return np.concatenate([-x[..., h:], x[..., :h]], -1)
    out = np.empty_like(x)
    out[..., 0::2] = -x[..., 1::2]
    out[..., 1::2] = x[..., 0::2]
    return out


def rotary(x, axis: int, theta: float, layout: str, offset: int = 0, dim: int | None = None,
           sign: float = 1.0):
    """x rotated by sign * the rotary angles (sign -1: the inverse rotation, which is the
    transpose and so the backward): positions ``offset + j`` along ``axis``, the first
    ``dim`` features of the last axis (all by default) in pairs. The one NumPy form of
    rotary embeddings (the attention kind's ``rope`` option calls it too)."""
    import numpy as np

    a = axis % x.ndim
    d = x.shape[-1]
    rot = d if dim is None else dim
    t = x.shape[a]
    cos, sin = rope_tables(t, rot, theta, offset, layout)
    shape = (t,) + (1,) * (x.ndim - 2 - a) + (rot,)
    cos = cos.astype(x.dtype).reshape(shape)
    sin = (sin * sign).astype(x.dtype).reshape(shape)
    r = x[..., :rot]
    y = r * cos + _rotate(r, layout) * sin
    return y if rot == d else np.concatenate([y, x[..., rot:]], -1)


@register
class Rope(LayerKind):
    """Rotary position embeddings of [..., T, D] (the positions on ``axis``, -2 by default;
    [N, T, H, D] takes axis=1): no weights, the shape unchanged."""

    name = "rope"
    aliases = ("rotary",)
    synonyms = {"base": "theta", "rope_theta": "theta", "rotary_dim": "dim",
                "position_axis": "axis"}
    ranks = (2, None)
    layout = "[..., T, D]"
    summary = ("rotary position embeddings of [..., T, D]: rope [theta=10000] "
               "[layout=half|interleaved] [offset=0] [dim=<rotated>] [axis=-2]")

    class Params(Params):
        theta: Number = 10000.0
        layout: Literal["half", "interleaved"] = "half"
        offset: Int = 0
        dim: Optional[Int] = None
        axis: Int = -2

        @field_validator("theta")
        @classmethod
        def _theta(cls, v):
            if v <= 0:
                raise ValueError("must be > 0 (the base of the rotation frequencies)")
            return v

        @field_validator("offset")
        @classmethod
        def _offset(cls, v):
            if v < 0:
                raise ValueError("must be >= 0 (the position of the first step)")
            return v

        @field_validator("dim")
        @classmethod
        def _dim(cls, v):
            if v is not None and v < 2:
                raise ValueError("must be >= 2 (features are rotated in pairs)")
            return v

    def _axis(self, p, x: TensorType) -> int:
        r = x.rank
        if not -r <= p.axis < r:
            raise ShapeError(f"rope: axis {p.axis} is out of range for a rank-{r} input {x} "
                             f"(axes {-r} to {r - 2}; the last is the head dim)", arg="axis",
                             code="E360")
        a = p.axis % r
        if a == r - 1:
            raise ShapeError(f"rope: the positions axis {p.axis} of {x} is its last axis, the "
                             "head dim that is rotated", arg="axis", code="E352",
                             hint="the positions are axis -2 of [..., T, D], axis 1 of "
                                  "[N, T, H, D]")
        return a

    def _rot(self, p, x: TensorType) -> int:
        """The number of rotated features (checked): dim, or all of D."""
        d = concrete(x.shape[-1], "rope's head dim (the last dim)")
        if p.dim is not None and p.dim > d:
            raise ShapeError(f"rope: dim={p.dim} rotates more features than the head dim "
                             f"{d} of {x} has", arg="dim", code="E351",
                             hint=f"rotate at most the {d} features of the last axis")
        rot = d if p.dim is None else p.dim
        if rot % 2:
            what = f"dim={rot}" if p.dim is not None else f"the head dim {rot} of {x}"
            raise ShapeError(f"rope rotates features in pairs, but {what} is odd",
                             arg="dim" if p.dim is not None else None, code="E351",
                             hint="rotate an even number of features (dim=)")
        return rot

    def infer(self, p, ins):
        (x,) = ins
        need_float(x, self.name)
        self._axis(p, x)
        self._rot(p, x)
        return x

    def macs(self, p, ins, out):
        # x * cos + rotate(x) * sin: two products per rotated feature
        x = ins[0]
        return prod(x.shape[:-1]) * (2 * self._rot(p, x))

    def torch(self, p, ins, out):
        kw: dict = {}
        for key, default in (("theta", 10000.0), ("layout", "half"), ("offset", 0),
                             ("dim", None), ("axis", -2)):
            if getattr(p, key) != default:
                kw[key] = getattr(p, key)
        return TorchPlan(None, [TorchCall(f"{_HELPERS}:apply_rope", (In(0),), kw)])

    def _apply(self, p, x, sign: float):
        return rotary(x, p.axis, p.theta, p.layout, p.offset, p.dim, sign)

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = np.asarray(xs[0])
        return self._apply(p, x, 1.0)

    def backward(self, p, w, xs, y, gy, ctx):
        """The rotation is orthogonal: dx is dy rotated back (by minus the angles). Each pair
        shares its angle and rotate's transpose is -rotate, so Rᵀ dy = dy cos - rotate(dy)
        sin; the features that are not rotated pass dy through."""
        import numpy as np

        x = np.asarray(xs[0])
        return [self._apply(p, np.asarray(gy, dtype=x.dtype), -1.0)], {}

    def sample(self):
        return ({"theta": 500.0, "layout": "interleaved", "offset": 3, "dim": 4, "axis": 1},
                [TensorType((2, 3, 2, 6))])

    def samples(self):
        return [self.sample(), ({}, [TensorType((2, 2, 5, 8))])]
