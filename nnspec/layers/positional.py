"""positional: sinusoidal or learned positional encodings added to [N, T, E] ("Attention Is
All You Need"; a learned table has nn.Embedding's layout and initialisation)."""

from __future__ import annotations

import math
from typing import Optional

from .base import (
    DEFAULT_INIT,
    MODULE,
    Bool,
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
    positive,
    register,
)

_HELPERS = "nnspec.layers.torch.positional"


@register
class Positional(LayerKind):
    """Adds positional encodings to [N, T, E]: sinusoidal ("Attention Is All You Need"; no
    weights) or learned (a [max_len, E] table, nn.Embedding's layout and init)."""

    name = "positional"
    aliases = ("positional_encoding",)
    synonyms = {"max_length": "max_len", "num_embeddings": "max_len"}
    summary = "positional encodings: positional [learned max_len=<L>] [scale] (scale: x*sqrt(E))"

    class Params(Params):
        learned: Bool = False
        max_len: Optional[Int] = None
        scale: Bool = False
        init: InitArg = DEFAULT_INIT

        _max_len = positive("max_len")

    def infer(self, p, ins):
        x = ins[0]
        need_rank(x, {3}, "positional", "[N, T, E]")
        need_float(x, "positional")
        concrete(x.shape[2], "positional's width (the last dim)")
        if p.learned and p.max_len is None:
            raise ShapeError("learned positions need a table size: positional learned "
                             "max_len=<L>", arg="learned",
                             hint="give the longest sequence length, e.g. max_len=512")
        t = x.shape[1]
        if p.max_len is not None and t.is_const and t.value > p.max_len:
            raise ShapeError(f"the sequence has {t.value} positions, more than max_len="
                             f"{p.max_len}", arg="max_len",
                             hint=f"raise max_len to at least {t.value}")
        return x

    def weights(self, p, ins, out):
        if not p.learned:
            return {}
        return {"weight": W((p.max_len, ins[0].shape[2].value), ("normal", 1.0))}

    def macs(self, p, ins, out):
        n, t, e = ins[0].shape
        return n * t * e * (2 if p.scale else 1)

    def torch(self, p, ins, out):
        e = ins[0].shape[2].value
        if p.learned:
            mod = TorchModule(f"{_HELPERS}:LearnedPositions", (p.max_len, e))
            args = (Prev(),) if p.scale else (In(0),)
            calls = [TorchCall("torch.mul", (In(0), math.sqrt(e)))] if p.scale else []
            return TorchPlan(mod, calls + [TorchCall(MODULE, args)])
        if p.max_len is not None:
            call = TorchCall(f"{_HELPERS}:add_sinusoidal", (In(0),),
                             {"scale": p.scale, "max_len": p.max_len})
        else:
            call = TorchCall(f"{_HELPERS}:add_sinusoidal", (In(0),), {"scale": p.scale})
        return TorchPlan(None, [call])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = np.asarray(xs[0])
        t, e = x.shape[1], x.shape[2]
        if p.max_len is not None and t > p.max_len:
            raise ValueError(f"the sequence has {t} positions, more than max_len={p.max_len}")
        if p.scale:
            x = x * math.sqrt(e)
        if p.learned:
            return x + np.asarray(w["weight"], dtype=x.dtype)[:t]
        return x + sinusoidal_table(t, e).astype(x.dtype)

    def backward(self, p, w, xs, y, gy, ctx):
        """y = x·√E (scale) + P[:T]: dx = dy·√E (or dy); a learned table's first T rows get
        Σ_n dy[n] and the rest zeros."""
        import numpy as np

        x = np.asarray(xs[0])
        gy = np.asarray(gy, dtype=x.dtype)
        gx = gy * math.sqrt(x.shape[2]) if p.scale else gy
        if not p.learned:
            return [gx], {}
        table = np.zeros(np.shape(w["weight"]), gy.dtype)
        table[:x.shape[1]] = gy.sum(axis=0)
        return [gx], {"weight": table}

    def sample(self):
        return {"learned": True, "max_len": 5, "scale": True}, [TensorType((2, 3, 4))]


def sinusoidal_table(t: int, e: int):
    """PE[pos, 2i] = sin(pos / 10000^(2i/E)), PE[pos, 2i+1] = cos(pos / 10000^(2i/E)):
    a float64 [t, e] array."""
    import numpy as np

    pos = np.arange(t, dtype=np.float64)[:, None]
    j = np.arange(e)
    angle = pos / np.power(10000.0, (j - j % 2).astype(np.float64) / e)
    return np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
