"""``weight_norm=<dim>`` of conv and dense (Salimans & Kingma, 2016): the weight is
g · v / ‖v‖, the 2-norm over every dim but ``dim``, as torch.nn.utils.weight_norm.

The state_dict holds ``weight_g`` (the weight's shape with every dim but ``dim`` of size 1)
and ``weight_v`` (the weight's shape), after ``bias``: torch.nn.utils.weight_norm's keys and
order, which Hugging Face's Wav2Vec2 checkpoints use (``pos_conv_embed.conv.weight_g``), and
which torch.nn.utils.parametrizations.weight_norm also loads (its state-dict hook renames
them to ``parametrizations.weight.original0/1``). The torch plan builds the helpers of
``nnspec/layers/torch/weightnorm.py``: the layer's torch.nn class computing the weight in
forward, without the legacy function's deprecated hook (and, unlike a parametrized module,
picklable).

At construction torch sets g to the norm of the initial v; nnspec draws every entry from
its own initialiser, so ``weight_g`` starts at the expected norm of v's default draw
(uniform(-b, b) over m cells: b √(m / 3)). ``init=`` would set v alone after g is taken
(torch's order), so it is refused with ``weight_norm``.
"""

from __future__ import annotations

import math

from .base import ShapeError, TorchModule, W

_HELPERS = "nnspec.layers.torch.weightnorm"
G, V = "weight_g", "weight_v"


def check(p, rank: int, name: str) -> None:
    """The dim must be an axis of the weight, and no ``init=`` may come with it."""
    dim = p.weight_norm
    if dim is None:
        return
    if not 0 <= dim < rank:
        raise ShapeError(f"weight_norm={dim} is not a dim of {name}'s weight (rank {rank}: "
                         f"0 to {rank - 1})", arg="weight_norm",
                         hint="0 normalises each output unit (torch's default); Wav2Vec2's "
                              "positional conv uses weight_norm=2, its kernel axis")
    if not p.init.is_default:
        raise ShapeError(f"init={p.init} with weight_norm: the weight is weight_g * "
                         "weight_v / |weight_v|, and g is taken from the initial weight",
                         arg="init", hint="leave init= out (the layer's default), or drop "
                                          "weight_norm")


def entries(weight: W, dim: int) -> dict[str, W]:
    """``weight_g`` and ``weight_v`` in place of ``weight`` (drawn with its initialiser)."""
    shape = weight.shape
    g_shape = tuple(s if i == dim else 1 for i, s in enumerate(shape))
    cells = math.prod(shape) // shape[dim]
    kind, *args = weight.init
    if kind != "uniform":
        raise ValueError(f"weight_norm needs a uniform default weight, not {kind}")
    return {G: W(g_shape, ("constant", args[0] * math.sqrt(cells / 3))),
            V: W(shape, weight.init)}


def with_entries(ws: dict[str, W], dim) -> dict[str, W]:
    """The layer's entries with ``weight`` replaced, after ``bias`` as torch orders them."""
    if dim is None:
        return ws
    rest = {k: w for k, w in ws.items() if k != "weight"}
    return {**rest, **entries(ws["weight"], dim)}


def module(cls: str, args: tuple, kwargs: dict, dim: int) -> TorchModule:
    """The helper of torch.nn's ``cls`` (Linear, Conv2d) with weight_norm over ``dim``."""
    return TorchModule(f"{_HELPERS}:WeightNorm{cls}", args, {**kwargs, "dim": dim})


def _norm(v, dim: int):
    import numpy as np

    return np.sqrt((v * v).sum(axis=tuple(i for i in range(v.ndim) if i != dim),
                               keepdims=True))


def weight(w: dict, dim):
    """The weight the layer computes with: ``w["weight"]``, or g · v / ‖v‖."""
    if dim is None:
        return w["weight"]
    v = w[V]
    return v * (w[G] / _norm(v, dim))


def grads(w: dict, gw, dim) -> dict:
    """{key: gradient} of the weight entries for dL/dweight = ``gw``: with n = ‖v‖,
    dL/dg = Σ gw · v / n and dL/dv = (g / n) (gw - v dL/dg / n) over each slice."""
    if dim is None:
        return {"weight": gw}
    v, g = w[V], w[G]
    n = _norm(v, dim)
    axes = tuple(i for i in range(v.ndim) if i != dim)
    gg = (gw * v).sum(axis=axes, keepdims=True) / n
    return {G: gg, V: g / n * (gw - v * (gg / n))}
