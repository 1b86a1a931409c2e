"""The losses over a class axis: cross_entropy and nll, and CapsNet's margin loss.

Their targets are class indices, or class probabilities where torch takes them
(:func:`_class_target` checks both against the scores, :func:`_onehot` expands indices).
:class:`_ClassLoss` computes with the class axis moved to 1, as torch's functions take it,
so that ``dim=-1`` scores per token ``[N, T, C]`` work alike.
"""

from __future__ import annotations

from pydantic import field_validator

from ..base import INT, ShapeError, TensorType
from .kind import LossKind, _float, _kwargs, _Params


class _ClassParams(_Params):
    ignore_index: int = -100
    # the class axis of the scores: torch's is 1 ([N, C, d...]); -1 takes per-token scores
    # [N, T, C] against indices [N, T] (the emitted code moves the axis to 1)
    dim: int = 1


class _CEParams(_ClassParams):
    label_smoothing: float = 0.0

    @field_validator("label_smoothing")
    @classmethod
    def _ls(cls, v):
        if not 0.0 <= v <= 1.0:
            raise ValueError("must be in [0, 1]")
        return v


class _ClassAxis1:
    """The class axis of a loss that has no ``dim`` argument (margin): 1."""

    dim = 1


_CLASS_AXIS_1 = _ClassAxis1()


def _class_target(name: str, p, x: TensorType, y: TensorType, probabilities: bool) -> None:
    _float(x, f"{name}'s input")
    if x.rank < 2:
        raise ShapeError(f"{name} takes scores [N, C] (or [N, C, d1, ...]), got {x}")
    if not -x.rank <= p.dim < x.rank or p.dim % x.rank == 0:
        raise ShapeError(f"{name}'s class axis dim={p.dim} is not an axis 1 to {x.rank - 1} "
                         f"of {x}", hint="dim=1 for [N, C, ...] scores, dim=-1 for [N, T, C]")
    d = p.dim % x.rank
    want = TensorType(x.shape[:d] + x.shape[d + 1:], INT)
    if y.dtype == INT:
        if y.shape != want.shape:
            raise ShapeError(f"{name} takes class indices {want} for {x}, got {y}",
                             hint=f"the class axis is {p.dim}: indices have the other dims"
                             + (" (per-token scores [N, T, C]: dim=-1)" if d == 1 else ""))
        return
    if not probabilities:
        raise ShapeError(f"{name} takes class indices {want} for {x}, got {y}")
    if d != 1:
        raise ShapeError(f"{name} with dim={p.dim} takes class indices {want}; class "
                         f"probabilities need the class axis at 1, got {y}")
    if y.shape != x.shape:
        raise ShapeError(f"{name} takes class indices {want} or class probabilities "
                         f"{TensorType(x.shape)} for {x}, got {y}")


def _grad_scale(p, count: float) -> float:
    """The gradient's factor of a sum over ``count`` targets: with every target ignored the
    mean is 0 / 0 (NaN, as torch's) but its gradient is 0, as torch autograd's (no target
    sends any)."""
    if p.reduction == "sum":
        return 1.0
    return 1.0 / count if count else 0.0


def _onehot(y, c: int, dtype):
    """[N, d...] indices -> [N, C, d...] one-hot (an index outside [0, C) gives a zero
    row: it is an ignored one)."""
    import numpy as np

    classes = np.arange(c).reshape((1, c) + (1,) * (y.ndim - 1))
    return (np.expand_dims(y, 1) == classes).astype(dtype)


class _ClassLoss(LossKind):
    """A loss over a class axis: computed with the axis moved to 1, as torch's functions
    take it (``dim=-1``: ``F.cross_entropy(logits.movedim(-1, 1), target)``)."""

    def numpy(self, p, xs):
        import numpy as np

        return self.value(p, [np.moveaxis(xs[0], p.dim, 1), xs[1]])

    def backward(self, p, xs):
        import numpy as np

        gs = self.grads(p, [np.moveaxis(xs[0], p.dim, 1), xs[1]])
        return [np.moveaxis(gs[0], 1, p.dim)] + gs[1:]

    def value(self, p, xs) -> float:
        raise NotImplementedError

    def grads(self, p, xs) -> list:
        raise NotImplementedError

    def _torch_kwargs(self, p) -> dict:
        return p.model_dump(exclude_defaults=True, exclude={"dim"})

    def torch(self, p, ts):
        import torch.nn.functional as F

        x = ts[0] if p.dim == 1 else ts[0].movedim(p.dim, 1)
        return getattr(F, self.torch_fn)(x, *ts[1:], **self._torch_kwargs(p))

    def torch_src(self, p, args):
        x = args[0] if p.dim == 1 else f"{args[0]}.movedim({p.dim}, 1)"
        kw = _kwargs(p.model_copy(update={"dim": 1}))
        return f"F.{self.torch_fn}({', '.join([x] + args[1:] + kw)})"


class CrossEntropy(_ClassLoss):
    """-Σ_c t_c log softmax(x)_c over the class axis 1, with t the one-hot index (or the
    given probabilities) smoothed to (1 - ε) t + ε / C; the mean is over the targets (the
    ones not equal to ignore_index)."""

    name, aliases, torch_fn = "cross_entropy", ("ce", "cross_entropy_loss"), "cross_entropy"
    about = "cross-entropy of logits [N, C] with indices [N] int or probabilities [N, C]"
    inputs = ("logits", "target")
    Params = _CEParams

    def check(self, p, ins):
        _class_target(self.name, p, ins[0], ins[1], probabilities=True)

    def _parts(self, p, xs):
        import numpy as np

        from ..kernels import log_softmax

        x, y = xs
        c = x.shape[1]
        logp = log_softmax(x, 1)
        eps = p.label_smoothing
        if np.issubdtype(np.asarray(y).dtype, np.integer):
            mask = (y != p.ignore_index).astype(x.dtype)
            t = _onehot(y, c, x.dtype) * np.expand_dims(mask, 1)
            t = (1 - eps) * t + eps / c * np.expand_dims(mask, 1)
            count = float(mask.sum())
        else:
            t = (1 - eps) * y + eps / c
            count = float(x.size // c)
        return logp, t, count

    def value(self, p, xs):
        import numpy as np

        logp, t, count = self._parts(p, xs)
        if np.issubdtype(np.asarray(xs[1]).dtype, np.integer):
            # torch reads only the classes an index weighs: a -inf logit elsewhere is no NaN
            logp = np.where(t != 0, logp, 0.0)
        total = float(-(t * logp).sum())
        if p.reduction == "sum":
            return total
        return total / count if count else float("nan")

    def grads(self, p, xs):
        import numpy as np

        logp, t, count = self._parts(p, xs)
        k = _grad_scale(p, count)
        gx = (np.exp(logp) * t.sum(axis=1, keepdims=True) - t) * k
        if np.issubdtype(np.asarray(xs[1]).dtype, np.integer):
            return [gx, None]
        return [gx, -(1 - p.label_smoothing) * logp * k]


class _NLLParams(_ClassParams):
    pass


class NLL(_ClassLoss):
    """-x[y] for log-probabilities x over the class axis 1; the mean is over the targets
    not equal to ignore_index."""

    name, aliases, torch_fn = "nll", ("nll_loss",), "nll_loss"
    about = "negative log-likelihood of log-probabilities [N, C] with indices [N] int"
    inputs = ("log_probs", "label")
    Params = _NLLParams

    def check(self, p, ins):
        _class_target(self.name, p, ins[0], ins[1], probabilities=False)

    def _t(self, p, xs):
        x, y = xs
        mask = (y != p.ignore_index).astype(x.dtype)
        import numpy as np

        return _onehot(y, x.shape[1], x.dtype) * np.expand_dims(mask, 1), float(mask.sum())

    def value(self, p, xs):
        import numpy as np

        t, count = self._t(p, xs)
        total = float(-(t * np.where(t != 0, xs[0], 0.0)).sum())  # -x[y]: no other x is read
        return total if p.reduction == "sum" else (total / count if count else float("nan"))

    def grads(self, p, xs):
        t, count = self._t(p, xs)
        return [-t * _grad_scale(p, count), None]



class _MarginParams(_Params):
    m_plus: float = 0.9
    m_minus: float = 0.1
    lam: float = 0.5


class Margin(LossKind):
    """CapsNet's margin loss (Sabour et al., 2017) on capsule lengths v [N, K]:
    Σ_k T_k max(0, m⁺ - v_k)² + λ (1 - T_k) max(0, v_k - m⁻)², T the one-hot class
    ([N] int) or given [N, K]; the mean over the batch (``sum``: the total)."""

    name, aliases = "margin", ("margin_loss", "capsule_margin")
    about = "CapsNet margin loss of capsule lengths [N, K]"
    inputs = ("lengths", "label")
    Params = _MarginParams

    def check(self, p, ins):
        v, y = ins
        _float(v, "margin's lengths")
        if v.rank != 2:
            raise ShapeError(f"margin takes capsule lengths [N, K], got {v}")
        _class_target(self.name, _CLASS_AXIS_1, v, y, probabilities=True)

    def _t(self, v, y):
        import numpy as np

        if np.issubdtype(np.asarray(y).dtype, np.integer):
            return _onehot(y, v.shape[1], v.dtype)
        return y

    def numpy(self, p, xs):
        import numpy as np

        v, y = xs
        t = self._t(v, y)
        per = (t * np.maximum(0, p.m_plus - v) ** 2
               + p.lam * (1 - t) * np.maximum(0, v - p.m_minus) ** 2)
        total = float(per.sum())
        return total if p.reduction == "sum" else total / v.shape[0]

    def backward(self, p, xs):
        import numpy as np

        v, y = xs
        t = self._t(v, y)
        k = 1.0 if p.reduction == "sum" else 1.0 / v.shape[0]
        gv = (-2 * t * np.maximum(0, p.m_plus - v)
              + 2 * p.lam * (1 - t) * np.maximum(0, v - p.m_minus)) * k
        if np.issubdtype(np.asarray(y).dtype, np.integer):
            return [gv, None]
        gt = (np.maximum(0, p.m_plus - v) ** 2 - p.lam * np.maximum(0, v - p.m_minus) ** 2)
        return [gv, gt * k]

    def torch_src(self, p, args):
        v, y = args
        t = (f"(F.one_hot({y}, {v}.shape[1]).to({v}.dtype) if not {y}.is_floating_point() "
             f"else {y})")
        # T a + λ(1 - T) b written with T once: λ b + T (a - λ b)
        absent = f"{p.lam!r} * F.relu({v} - {p.m_minus!r}).pow(2)"
        per = f"{absent} + {t} * (F.relu({p.m_plus!r} - {v}).pow(2) - {absent})"
        red = ".sum()" if p.reduction == "sum" else ".sum(dim=1).mean()"
        return f"({per}){red}"

    def torch(self, p, ts):
        import torch.nn.functional as F

        v, y = ts
        t = F.one_hot(y, v.shape[1]).to(v.dtype) if not y.is_floating_point() else y
        absent = p.lam * F.relu(v - p.m_minus).pow(2)
        per = absent + t * (F.relu(p.m_plus - v).pow(2) - absent)  # as torch_src writes it
        return per.sum() if p.reduction == "sum" else per.sum(dim=1).mean()
