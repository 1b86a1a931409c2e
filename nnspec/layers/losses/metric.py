"""The metric-learning losses on embeddings: contrastive (a Siamese pair and a same /
different label) and triplet (an anchor, a positive and a negative).

Both measure torch's ``F.pairwise_distance``: the p-norm over the last axis of
``x1 - x2 + eps`` (the ``eps`` keeps the gradient finite where two embeddings coincide);
:func:`_distance` and :func:`_distance_grad` are that norm and its gradient as torch's
autograd gives it. Every other axis indexes a pair (a triplet): the mean is over them.
"""

from __future__ import annotations

from pydantic import field_validator

from ..base import ShapeError, TensorType
from .kind import LossKind, _float, _Params, _positive, _same


def _non_negative(cls, v):
    if v < 0:
        raise ValueError("must be >= 0")
    return v


def _distance(a, b, p: float, eps: float):
    """(F.pairwise_distance(a, b, p, eps), the difference a - b + eps it is the norm of)."""
    import numpy as np

    d = a - b + eps
    if p == 2:
        return np.sqrt((d * d).sum(axis=-1)), d
    if p == 1:
        return np.abs(d).sum(axis=-1), d
    return (np.abs(d) ** p).sum(axis=-1) ** (1 / p), d


def _distance_grad(g, dist, d, p: float):
    """dL/d(a - b) for dL/d(distance) = ``g``, as torch's norm backward: 0 where the norm
    is 0 (where the difference is 0 for p < 1)."""
    import numpy as np

    g, dist = g[..., None], dist[..., None]
    if p == 1:
        return np.sign(d) * g
    zero = dist == 0
    safe = np.where(zero, 1.0, dist)
    if p == 2:
        return g * np.where(zero, 0.0, d / safe)
    if p < 1:
        with np.errstate(divide="ignore"):
            scaled = np.sign(d) * np.where(d == 0, 0.0, np.abs(d) ** (p - 1))
        return scaled * g * dist ** (1 - p)
    return np.sign(d) * np.abs(d) ** (p - 1) * np.where(zero, 0.0, g / safe ** (p - 1))


def _embeddings(name: str, what: tuple[str, ...], ins: list[TensorType]) -> None:
    for t, w in zip(ins, what):
        _float(t, f"{name}'s {w}")
    if ins[0].rank < 1:
        raise ShapeError(f"{name} takes embeddings [N, D], got {ins[0]}")
    for t in ins[1:]:
        _same(name, ins[0], t, what[0])


def _reduce(p, per):
    total = float(per.sum())
    return total if p.reduction == "sum" else total / per.size


def _factor(p, per) -> float:
    return 1.0 if p.reduction == "sum" else 1.0 / per.size


class _ContrastiveParams(_Params):
    margin: float = 1.0
    eps: float = 1e-6
    _m = field_validator("margin")(_positive)
    _e = field_validator("eps")(_non_negative)


class Contrastive(LossKind):
    """Hadsell, Chopra and LeCun's contrastive loss (2006) of a pair's embeddings x1, x2
    [N, D] and a label y [N]: **y = 0 for a similar pair, 1 for a dissimilar one**;
    per pair ½ (1 - y) D² + ½ y max(0, margin - D)² with D = F.pairwise_distance(x1, x2,
    eps=eps) = ‖x1 - x2 + eps‖₂; the mean over the pairs (``sum``: the total). The label
    may be int or float (a float one gets its gradient ½ (max(0, margin - D)² - D²))."""

    name, aliases, arity = "contrastive", ("contrastive_loss",), 3
    about = "contrastive loss of a pair's embeddings [N, D]; label [N]: 0 similar, 1 dissimilar"
    inputs = ("x1", "x2", "label")
    Params = _ContrastiveParams

    def check(self, p, ins):
        a, b, y = ins
        _embeddings(self.name, ("x1", "x2"), [a, b])
        if y.shape != a.shape[:-1]:
            raise ShapeError(f"contrastive takes a label {TensorType(a.shape[:-1], y.dtype)} "
                             f"(0 similar, 1 dissimilar) for embeddings {a}, got {y}",
                             hint="one label per pair: the embeddings' dims but the last")

    def numpy(self, p, xs):
        import numpy as np

        a, b, y = xs
        dist, _ = _distance(a, b, 2, p.eps)
        per = 0.5 * ((1 - y) * dist ** 2 + y * np.maximum(0.0, p.margin - dist) ** 2)
        return _reduce(p, per)

    def backward(self, p, xs):
        import numpy as np

        a, b, y = xs
        dist, d = _distance(a, b, 2, p.eps)
        k = _factor(p, dist)
        short = np.maximum(0.0, p.margin - dist)
        ga = _distance_grad(((1 - y) * dist - y * short) * k, dist, d, 2)
        if np.issubdtype(np.asarray(y).dtype, np.integer):
            return [ga, -ga, None]
        return [ga, -ga, 0.5 * (short ** 2 - dist ** 2) * k]

    def torch(self, p, ts):
        import torch.nn.functional as F

        a, b, y = ts
        dist = F.pairwise_distance(a, b, eps=p.eps)
        per = 0.5 * ((1 - y) * dist.pow(2) + y * F.relu(p.margin - dist).pow(2))
        return per.sum() if p.reduction == "sum" else per.mean()

    def torch_src(self, p, args):
        a, b, y = args
        eps = f", eps={p.eps!r}" if p.eps != 1e-6 else ""
        dist = f"F.pairwise_distance({a}, {b}{eps})"
        per = f"0.5 * ((1 - {y}) * {dist}.pow(2) + {y} * F.relu({p.margin!r} - {dist}).pow(2))"
        return f"({per}).{'sum' if p.reduction == 'sum' else 'mean'}()"


class _TripletParams(_Params):
    margin: float = 1.0
    p: float = 2.0
    eps: float = 1e-6
    swap: bool = False
    _m = field_validator("margin", "p")(_positive)
    _e = field_validator("eps")(_non_negative)


class Triplet(LossKind):
    """torch's F.triplet_margin_loss: per triplet max(0, margin + D(a, p) - D(a, n)) with
    D = F.pairwise_distance(·, ·, p, eps) = ‖x - y + eps‖_p over the last axis; ``swap``
    (Balntas et al.) takes min(D(a, n), D(p, n)) for the negative's distance. The mean over
    the triplets (``sum``: the total); the gradient passes at the margin (clamp_min's)."""

    name, aliases, arity = "triplet", ("triplet_margin", "triplet_margin_loss"), 3
    torch_fn = "triplet_margin_loss"
    about = "triplet margin loss of embeddings [N, D]"
    inputs = ("anchor", "positive", "negative")
    Params = _TripletParams

    def check(self, p, ins):
        _embeddings(self.name, self.inputs, ins)

    def _parts(self, p, xs):
        import numpy as np

        a, pos, neg = xs
        dp, d_ap = _distance(a, pos, p.p, p.eps)
        dn, d_an = _distance(a, neg, p.p, p.eps)
        ds = d_pn = None
        if p.swap:
            ds, d_pn = _distance(pos, neg, p.p, p.eps)
            far = np.minimum(dn, ds)
        else:
            far = dn
        return p.margin + dp - far, (dp, d_ap), (dn, d_an), (ds, d_pn)

    def numpy(self, p, xs):
        import numpy as np

        gap = self._parts(p, xs)[0]
        return _reduce(p, np.maximum(gap, 0.0))

    def backward(self, p, xs):
        import numpy as np

        gap, (dp, d_ap), (dn, d_an), (ds, d_pn) = self._parts(p, xs)
        g = np.where(gap >= 0, _factor(p, gap), 0.0)  # clamp_min passes it at 0
        if p.swap:  # torch's minimum: the gradient to the smaller, halved at a tie
            half = np.where(dn == ds, 0.5, 1.0)
            g_n, g_s = -g * half * (dn <= ds), -g * half * (ds <= dn)
        else:
            g_n, g_s = -g, None
        u_ap = _distance_grad(g, dp, d_ap, p.p)
        u_an = _distance_grad(g_n, dn, d_an, p.p)
        ga, gp, gn = u_ap + u_an, -u_ap, -u_an
        if g_s is not None:
            u_pn = _distance_grad(g_s, ds, d_pn, p.p)
            gp, gn = gp + u_pn, gn - u_pn
        return [ga, gp, gn]
