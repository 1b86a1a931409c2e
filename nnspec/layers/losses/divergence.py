"""The losses between two distributions or two embeddings: kl_div, kl_normal (a VAE's KL
term) and cosine_embedding.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..base import ShapeError
from .kind import LossKind, _float, _Params, _same, _scale


class _KLParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    # batchmean, the divergence's definition (torch's default "mean" also divides by the
    # support size, and torch warns about it)
    reduction: Literal["mean", "sum", "batchmean"] = "batchmean"
    log_target: bool = False


class KLDiv(LossKind):
    """torch's F.kl_div(x, t): Σ t (log t - x) for log-probabilities x and probabilities t
    (``log_target``: t given as log-probabilities, exp(t) (t - x)); batchmean divides the
    sum by the batch size, mean by the element count. As torch's xlogy(t, t) - t x: a zero
    t adds 0 (NaN where x is -inf), a negative one NaN; and as its autograd, the gradient
    w.r.t. a zero t is NaN (the one-sided derivative log t + 1 - x is -inf there)."""

    name, aliases, torch_fn = "kl_div", ("kl", "kl_divergence"), "kl_div"
    about = "KL divergence of a target distribution from log-probabilities"
    inputs = ("log_probs", "target")
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
            with np.errstate(invalid="ignore"):  # a -inf t: 0 * -inf, NaN as torch's
                v = np.exp(t) * (t - x)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.where(t == 0, 0.0, t * np.log(t)) - t * x
        return float(v.sum() * self._k(p, x))

    def backward(self, p, xs):
        import numpy as np

        x, t = xs
        k = self._k(p, x)
        if p.log_target:
            e = np.exp(t)
            with np.errstate(invalid="ignore"):
                return [-e * k, e * (t - x + 1) * k]
        with np.errstate(divide="ignore", invalid="ignore"):
            gt = np.where(t > 0, np.log(np.where(t > 0, t, 1.0)) + 1 - x, np.nan)
        return [-t * k, gt * k]


class KLNormal(LossKind):
    """A VAE's KL divergence of N(mu, exp(logvar)) from N(0, 1): per sample
    -0.5 Σ (1 + logvar - mu² - exp(logvar)) over every dim but the batch; the mean over
    the batch (``sum``: the total)."""

    name, aliases = "kl_normal", ("vae_kl", "kl_gaussian")
    about = "KL of N(mu, exp(logvar)) from N(0, 1), a VAE's latent term"
    inputs = ("mu", "logvar")

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


#: torch's 1e-12 in cosine_embedding's magnitudes, a float32 constant
_COS_EPS = 9.999999960041972e-13


class _CosParams(_Params):
    margin: float = 0.0


class CosineEmbedding(LossKind):
    """torch's F.cosine_embedding_loss: 1 - cos(x1, x2) where y = 1, max(0, cos - margin)
    where y = -1; cos = x1·x2 / sqrt((|x1|² + 1e-12)(|x2|² + 1e-12))."""

    name, aliases, arity = "cosine_embedding", ("cosine_embedding_loss",), 3
    torch_fn = "cosine_embedding_loss"
    about = "cosine embedding loss of pairs [N, D] with y [N] (1 similar, -1 not)"
    inputs = ("x1", "x2", "y")
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
        m1 = (a * a).sum(axis=1) + _COS_EPS
        m2 = (b * b).sum(axis=1) + _COS_EPS
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
        # torch's clamp_min passes the gradient at cos = margin too
        g = np.where(y == 1, -1.0, np.where((y == -1) & (cos >= p.margin), 1.0, 0.0))
        g = (g * _scale(p, cos.size))[:, None]
        ga = g * (b / d[:, None] - cos[:, None] * a / m1[:, None])
        gb = g * (a / d[:, None] - cos[:, None] * b / m2[:, None])
        return [ga, gb, None]
