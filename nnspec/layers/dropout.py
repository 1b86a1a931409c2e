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
        return npops.dropout(xs[0], p.p, ctx.training, ctx.rng)

    def sample(self):
        return {"p": 0.25}, [TensorType((2, 5))]
