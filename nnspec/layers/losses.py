"""The loss functions of a ``train`` section, one class per loss: its arguments (pydantic,
torch's names and defaults), the shape rule, the NumPy value and gradients, and the
PyTorch expression a person writes.

Every loss is a scalar: ``reduction=mean`` (torch's default) or ``sum``; ``kl_div`` also
takes ``batchmean``. The gradients are those torch autograd gives, targets included where
torch differentiates them (mse, l1, huber, smooth_l1, bce targets, probability targets of
cross_entropy, kl_div's target); an int target gets None.

Never imports numpy or torch at import time (``nnspec check`` validates train sections).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from .base import FLOAT, INT, ShapeError, TensorType


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    reduction: Literal["mean", "sum"] = "mean"

    @field_validator("*")
    @classmethod
    def _finite(cls, v):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"must be a finite number, not {v}")
        return v


def _positive(cls, v):
    if not v > 0:
        raise ValueError("must be > 0")
    return v


class LossKind:
    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    arity: ClassVar[int] = 2
    summary: ClassVar[str] = ""
    torch_fn: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = _Params

    def check(self, p, ins: list[TensorType]) -> None:
        raise NotImplementedError

    def numpy(self, p, xs: list) -> float:
        raise NotImplementedError

    def backward(self, p, xs: list) -> list:
        raise NotImplementedError

    def torch(self, p, ts: list):
        """The same loss in-process: torch.nn.functional's function with the arguments."""
        import torch.nn.functional as F

        return getattr(F, self.torch_fn)(*ts, **p.model_dump(exclude_defaults=True))

    def torch_src(self, p, args: list[str]) -> str:
        kw = _kwargs(p)
        return f"F.{self.torch_fn}({', '.join(args + kw)})"


def _kwargs(p) -> list[str]:
    out = []
    for k, v in p.model_dump(exclude_defaults=True).items():
        out.append(f'{k}="{v}"' if isinstance(v, str) else f"{k}={v!r}")
    return out


def _float(t: TensorType, what: str) -> None:
    if t.dtype != FLOAT:
        raise ShapeError(f"{what} must be a float tensor, got {t}")


def _same(name: str, x: TensorType, y: TensorType, what: str = "the target") -> None:
    if x.shape != y.shape:
        raise ShapeError(f"{name} needs {what}'s shape {TensorType(x.shape)}, got "
                         f"{TensorType(y.shape)}")


def _scale(p, n: int) -> float:
    return 1.0 / n if p.reduction == "mean" and n else 1.0


# ---- element-wise losses ------------------------------------------------------------------


class _Elementwise(LossKind):
    """L = reduce(f(x, y)) over every element; x and y have one shape."""

    def check(self, p, ins):
        x, y = ins
        _float(x, f"{self.name}'s prediction")
        _float(y, f"{self.name}'s target")
        _same(self.name, x, y)

    def f(self, p, x, y):
        raise NotImplementedError

    def df(self, p, x, y):
        """(df/dx, df/dy) element-wise."""
        raise NotImplementedError

    def numpy(self, p, xs):
        x, y = xs
        v = self.f(p, x, y)
        return float(v.sum() * _scale(p, v.size))

    def backward(self, p, xs):
        x, y = xs
        gx, gy = self.df(p, x, y)
        k = _scale(p, x.size)
        return [gx * k, gy * k]


class MSE(_Elementwise):
    name, aliases, torch_fn = "mse", ("mse_loss", "l2"), "mse_loss"
    summary = "mean squared error: mse(prediction, target)"

    def f(self, p, x, y):
        return (x - y) ** 2

    def df(self, p, x, y):
        return 2 * (x - y), -2 * (x - y)


class L1(_Elementwise):
    name, aliases, torch_fn = "l1", ("mae", "l1_loss"), "l1_loss"
    summary = "mean absolute error: l1(prediction, target)"

    def f(self, p, x, y):
        import numpy as np

        return np.abs(x - y)

    def df(self, p, x, y):
        import numpy as np

        s = np.sign(x - y)
        return s, -s


class _HuberParams(_Params):
    delta: float = 1.0
    _d = field_validator("delta")(_positive)


class Huber(_Elementwise):
    """0.5 d² where |d| <= delta, delta (|d| - delta / 2) beyond (d = x - y)."""

    name, aliases, torch_fn = "huber", ("huber_loss",), "huber_loss"
    summary = "Huber loss: huber(prediction, target, delta=1.0)"
    Params = _HuberParams

    def f(self, p, x, y):
        import numpy as np

        d = np.abs(x - y)
        return np.where(d <= p.delta, 0.5 * d * d, p.delta * (d - 0.5 * p.delta))

    def df(self, p, x, y):
        import numpy as np

        g = np.clip(x - y, -p.delta, p.delta)
        return g, -g


class _SmoothParams(_Params):
    beta: float = 1.0
    _b = field_validator("beta")(_positive)


class SmoothL1(_Elementwise):
    """0.5 d² / beta where |d| < beta, |d| - beta / 2 beyond (DQN's loss with beta 1)."""

    name, aliases, torch_fn = "smooth_l1", ("smooth_l1_loss",), "smooth_l1_loss"
    summary = "smooth L1: smooth_l1(prediction, target, beta=1.0)"
    Params = _SmoothParams

    def f(self, p, x, y):
        import numpy as np

        d = np.abs(x - y)
        return np.where(d < p.beta, 0.5 * d * d / p.beta, d - 0.5 * p.beta)

    def df(self, p, x, y):
        import numpy as np

        d = x - y
        g = np.where(np.abs(d) < p.beta, d / p.beta, np.sign(d))
        return g, -g


class BCE(_Elementwise):
    """-(y log x + (1 - y) log(1 - x)), each log clamped at -100 as torch does."""

    name, aliases, torch_fn = "bce", ("binary_cross_entropy",), "binary_cross_entropy"
    summary = "binary cross-entropy of probabilities: bce(probability, target)"

    def f(self, p, x, y):
        import numpy as np

        with np.errstate(divide="ignore"):
            lx = np.maximum(np.log(x), -100.0)
            l1x = np.maximum(np.log1p(-x), -100.0)
        return -(y * lx + (1 - y) * l1x)

    def df(self, p, x, y):
        import numpy as np

        with np.errstate(divide="ignore"):
            lx = np.maximum(np.log(x), -100.0)
            l1x = np.maximum(np.log1p(-x), -100.0)
        return (x - y) / np.maximum((1 - x) * x, 1e-12), l1x - lx


class BCEWithLogits(_Elementwise):
    """max(x, 0) - x y + log(1 + exp(-|x|)): bce of sigmoid(x), computed stably."""

    name, aliases = "bce_with_logits", ("bce_logits", "binary_cross_entropy_with_logits")
    torch_fn = "binary_cross_entropy_with_logits"
    summary = "binary cross-entropy of logits: bce_with_logits(logit, target)"

    def f(self, p, x, y):
        import numpy as np

        return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))

    def df(self, p, x, y):
        from ..backends.numpy.kernels import sigmoid

        return sigmoid(x) - y, -x


# ---- classification -----------------------------------------------------------------------


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
    summary = ("cross-entropy of logits [N, C] with indices [N] int or probabilities [N, C]:"
               " cross_entropy(logits, target, label_smoothing=0, ignore_index=-100, dim=1)")
    Params = _CEParams

    def check(self, p, ins):
        _class_target(self.name, p, ins[0], ins[1], probabilities=True)

    def _parts(self, p, xs):
        import numpy as np

        from ..backends.numpy.kernels import log_softmax

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
        logp, t, count = self._parts(p, xs)
        total = float(-(t * logp).sum())
        if p.reduction == "sum":
            return total
        return total / count if count else float("nan")

    def grads(self, p, xs):
        import numpy as np

        logp, t, count = self._parts(p, xs)
        k = 1.0 if p.reduction == "sum" else (1.0 / count if count else float("nan"))
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
    summary = "negative log-likelihood of log-probabilities: nll(log_probs, label)"
    Params = _NLLParams

    def check(self, p, ins):
        _class_target(self.name, p, ins[0], ins[1], probabilities=False)

    def _t(self, p, xs):
        x, y = xs
        mask = (y != p.ignore_index).astype(x.dtype)
        import numpy as np

        return _onehot(y, x.shape[1], x.dtype) * np.expand_dims(mask, 1), float(mask.sum())

    def value(self, p, xs):
        t, count = self._t(p, xs)
        total = float(-(t * xs[0]).sum())
        return total if p.reduction == "sum" else (total / count if count else float("nan"))

    def grads(self, p, xs):
        t, count = self._t(p, xs)
        k = 1.0 if p.reduction == "sum" else (1.0 / count if count else float("nan"))
        return [-t * k, None]


class _KLParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # batchmean, the divergence's definition (torch's default "mean" also divides by the
    # support size, and torch warns about it)
    reduction: Literal["mean", "sum", "batchmean"] = "batchmean"
    log_target: bool = False


class KLDiv(LossKind):
    """torch's F.kl_div(x, t): Σ t (log t - x) for log-probabilities x and probabilities t
    (``log_target``: t given as log-probabilities, exp(t) (t - x)); batchmean divides the
    sum by the batch size, mean by the element count."""

    name, aliases, torch_fn = "kl_div", ("kl", "kl_divergence"), "kl_div"
    summary = "KL divergence: kl_div(log_probs, target, [reduction=mean|sum], log_target)"
    Params = _KLParams

    def check(self, p, ins):
        x, y = ins
        _float(x, "kl_div's input")
        _float(y, "kl_div's target")
        _same(self.name, x, y)

    def _torch_kwargs(self, p) -> dict:
        kw = p.model_dump(exclude_defaults=True)
        kw["reduction"] = p.reduction  # torch's default differs
        return kw

    def torch(self, p, ts):
        import torch.nn.functional as F

        return F.kl_div(*ts, **self._torch_kwargs(p))

    def torch_src(self, p, args):
        kw = [f'{k}="{v}"' if isinstance(v, str) else f"{k}={v!r}"
              for k, v in self._torch_kwargs(p).items()]
        return f"F.kl_div({', '.join(args + kw)})"

    def _k(self, p, x) -> float:
        if p.reduction == "sum":
            return 1.0
        return 1.0 / (x.shape[0] if p.reduction == "batchmean" else x.size)

    def numpy(self, p, xs):
        import numpy as np

        x, t = xs
        if p.log_target:
            v = np.exp(t) * (t - x)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.where(t > 0, t * (np.log(np.where(t > 0, t, 1.0)) - x), 0.0)
        return float(v.sum() * self._k(p, x))

    def backward(self, p, xs):
        import numpy as np

        x, t = xs
        k = self._k(p, x)
        if p.log_target:
            e = np.exp(t)
            return [-e * k, e * (t - x + 1) * k]
        with np.errstate(divide="ignore", invalid="ignore"):
            gt = np.where(t > 0, np.log(np.where(t > 0, t, 1.0)) + 1 - x, 0.0)
        return [-t * k, gt * k]


class KLNormal(LossKind):
    """A VAE's KL divergence of N(mu, exp(logvar)) from N(0, 1): per sample
    -0.5 Σ (1 + logvar - mu² - exp(logvar)) over every dim but the batch; the mean over
    the batch (``sum``: the total)."""

    name, aliases = "kl_normal", ("vae_kl", "kl_gaussian")
    summary = "KL of N(mu, exp(logvar)) from N(0, 1): kl_normal(mu, logvar)"

    def check(self, p, ins):
        mu, lv = ins
        _float(mu, "kl_normal's mu")
        _float(lv, "kl_normal's logvar")
        _same(self.name, mu, lv, "mu")

    def numpy(self, p, xs):
        import numpy as np

        mu, lv = xs
        total = float(-0.5 * (1 + lv - mu * mu - np.exp(lv)).sum())
        return total if p.reduction == "sum" else total / mu.shape[0]

    def backward(self, p, xs):
        import numpy as np

        mu, lv = xs
        k = 1.0 if p.reduction == "sum" else 1.0 / mu.shape[0]
        return [mu * k, -0.5 * (1 - np.exp(lv)) * k]

    def torch(self, p, ts):
        mu, lv = ts
        per = -0.5 * (1 + lv - mu.pow(2) - lv.exp())
        return per.sum() if p.reduction == "sum" else per.flatten(1).sum(dim=1).mean()

    def torch_src(self, p, args):
        mu, lv = args
        per = f"-0.5 * (1 + {lv} - {mu}.pow(2) - {lv}.exp())"
        if p.reduction == "sum":
            return f"({per}).sum()"
        return f"({per}).flatten(1).sum(dim=1).mean()"


class _MarginParams(_Params):
    m_plus: float = 0.9
    m_minus: float = 0.1
    lam: float = 0.5


class Margin(LossKind):
    """CapsNet's margin loss (Sabour et al., 2017) on capsule lengths v [N, K]:
    Σ_k T_k max(0, m⁺ - v_k)² + λ (1 - T_k) max(0, v_k - m⁻)², T the one-hot class
    ([N] int) or given [N, K]; the mean over the batch (``sum``: the total)."""

    name, aliases = "margin", ("margin_loss", "capsule_margin")
    summary = "CapsNet margin loss: margin(lengths, label, m_plus=0.9, m_minus=0.1, lam=0.5)"
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


class _CosParams(_Params):
    margin: float = 0.0


class CosineEmbedding(LossKind):
    """torch's F.cosine_embedding_loss: 1 - cos(x1, x2) where y = 1, max(0, cos - margin)
    where y = -1; cos = x1·x2 / sqrt((|x1|² + 1e-12)(|x2|² + 1e-12))."""

    name, aliases, arity = "cosine_embedding", ("cosine_embedding_loss",), 3
    torch_fn = "cosine_embedding_loss"
    summary = "cosine embedding loss: cosine_embedding(x1, x2, y, margin=0)"
    Params = _CosParams

    def check(self, p, ins):
        a, b, y = ins
        _float(a, "cosine_embedding's x1")
        _float(b, "cosine_embedding's x2")
        _same(self.name, a, b, "x1")
        if a.rank != 2 or y.shape != a.shape[:1]:
            raise ShapeError(f"cosine_embedding takes x1, x2 [N, D] and y [N] (1 or -1), got "
                             f"{a} and {y}")

    def _cos(self, a, b):
        import numpy as np

        s = (a * b).sum(axis=1)
        m1 = (a * a).sum(axis=1) + 1e-12
        m2 = (b * b).sum(axis=1) + 1e-12
        d = np.sqrt(m1 * m2)
        return s / d, d, m1, m2

    def numpy(self, p, xs):
        import numpy as np

        a, b, y = xs
        cos, *_ = self._cos(a, b)
        v = np.where(y == 1, 1 - cos, np.where(y == -1, np.maximum(0, cos - p.margin), 0.0))
        return float(v.sum() * _scale(p, v.size))

    def backward(self, p, xs):
        import numpy as np

        a, b, y = xs
        cos, d, m1, m2 = self._cos(a, b)
        g = np.where(y == 1, -1.0, np.where((y == -1) & (cos > p.margin), 1.0, 0.0))
        g = (g * _scale(p, cos.size))[:, None]
        ga = g * (b / d[:, None] - cos[:, None] * a / m1[:, None])
        gb = g * (a / d[:, None] - cos[:, None] * b / m2[:, None])
        return [ga, gb, None]


LOSSES: dict[str, LossKind] = {}
for _cls in (MSE, L1, Huber, SmoothL1, BCE, BCEWithLogits, CrossEntropy, NLL, KLDiv, KLNormal,
             Margin, CosineEmbedding):
    _inst = _cls()
    for _key in (_cls.name, *_cls.aliases):
        LOSSES[_key] = _inst

__all__ = ["LOSSES", "LossKind"]
