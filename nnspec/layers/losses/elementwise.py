"""The element-wise losses: ``reduce(f(x, y))`` over every element of two same-shape tensors.

:class:`_Elementwise` owns the reduction and the gradients' scale; each loss gives its
``f`` and ``df``: the regressions (mse, l1, huber, smooth_l1) and binary cross-entropy on
probabilities (bce) or logits (bce_with_logits).
"""

from __future__ import annotations

from pydantic import field_validator

from .kind import LossKind, _float, _Params, _positive, _same, _scale


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
    about, inputs = "mean squared error", ("prediction", "target")

    def f(self, p, x, y):
        return (x - y) ** 2

    def df(self, p, x, y):
        return 2 * (x - y), -2 * (x - y)


class L1(_Elementwise):
    name, aliases, torch_fn = "l1", ("mae", "l1_loss"), "l1_loss"
    about, inputs = "mean absolute error", ("prediction", "target")

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
    about, inputs = "Huber loss", ("prediction", "target")
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
    about, inputs = "smooth L1 loss", ("prediction", "target")
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


#: torch's bound on x (1 - x) in bce's gradient: its 1e-12, a float32 constant
_BCE_EPS = 9.999999960041972e-13


class BCE(_Elementwise):
    """-(y log x + (1 - y) log(1 - x)), each log clamped at -100 as torch does. The
    gradients are autograd's: (x - y) / max(x (1 - x), 1e-12) and, for the target, the
    unclamped log(1 - x) - log(x) (infinite at predictions 0 and 1)."""

    name, aliases, torch_fn = "bce", ("binary_cross_entropy",), "binary_cross_entropy"
    about, inputs = "binary cross-entropy of probabilities", ("probability", "target")

    def f(self, p, x, y):
        import numpy as np

        with np.errstate(divide="ignore"):
            lx = np.maximum(np.log(x), -100.0)
            l1x = np.maximum(np.log1p(-x), -100.0)
        return -(y * lx + (1 - y) * l1x)

    def df(self, p, x, y):
        import numpy as np

        with np.errstate(divide="ignore", invalid="ignore"):
            gy = np.log1p(-x) - np.log(x)
        return (x - y) / np.maximum((1 - x) * x, _BCE_EPS), gy


class BCEWithLogits(_Elementwise):
    """max(x, 0) - x y + log(1 + exp(-|x|)): bce of sigmoid(x), computed stably."""

    name, aliases = "bce_with_logits", ("bce_logits", "binary_cross_entropy_with_logits")
    torch_fn = "binary_cross_entropy_with_logits"
    about, inputs = "binary cross-entropy of logits", ("logit", "target")

    def f(self, p, x, y):
        import numpy as np

        return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))

    def df(self, p, x, y):
        from ..kernels import sigmoid

        return sigmoid(x) - y, -x
