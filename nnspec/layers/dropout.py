"""dropout: zeroes elements with probability p in training (inverted scaling)."""

from __future__ import annotations

from .base import (
    LayerKind,
    Params,
    TensorType,
    TorchModule,
    TorchPlan,
    npops,
    probability,
    register,
)


@register
class Dropout(LayerKind):
    """Identity in eval mode; in training, zero with probability p and scale by 1/(1-p)."""

    name = "dropout"
    positional = ("p",)
    synonyms = {"rate": "p"}
    summary = "dropout <p> (identity in eval mode)"

    class Params(Params):
        p: float = 0.5

        _p = probability("p")

    def infer(self, p, ins):
        return ins[0]

    def torch(self, p, ins, out):
        return TorchPlan(TorchModule("Dropout", (p.p,)), [])

    def numpy(self, p, w, xs, ctx):
        if ctx.saved is not None and ctx.training and 0.0 < p.p < 1.0:
            import numpy as np

            # the same draw as npops.dropout, with the mask kept for the backward
            x = xs[0]
            keep = ctx.rng.random(x.shape) >= p.p
            ctx.saved["keep"] = keep
            return np.where(keep, x * x.dtype.type(1.0 / (1.0 - p.p)), x.dtype.type(0))
        return npops.dropout(xs[0], p.p, ctx.training, ctx.rng)

    def backward(self, p, w, xs, y, gy, ctx):
        if not ctx.training or p.p == 0.0:
            return [gy], {}
        if p.p == 1.0:
            return [gy * 0], {}
        import numpy as np

        keep = ctx.saved["keep"]
        return [np.where(keep, gy * gy.dtype.type(1.0 / (1.0 - p.p)), gy.dtype.type(0))], {}

    def sample(self):
        return {"p": 0.25}, [TensorType((2, 5))]
