"""Learned tensors and broadcasting: ``param`` and ``expand``.

- ``param [1, 1, d] init=trunc_normal(0, 0.02) as class_token``: a parameter of any
  concrete shape, used as a value (a class token, a position embedding, a layer scale).
  It takes no input tensor. Its state_dict key is the layer's own name (``class_token``,
  ``encoder.pos_embedding`` inside a block called ``as encoder``), as PyTorch registers an
  ``nn.Parameter`` attribute; its default initialisation is zeros.
- ``expand(cls, [N, -1, -1])`` (``Tensor.expand``): broadcasts size-1 axes, and adds new
  leading axes, to the sizes given; ``-1`` keeps an axis as it is. Sizes may be symbols of
  the model's inputs (the batch ``N``), read at run time.

A parameter's weights dict has one entry under the key ``""``: the layer's name is the
state_dict key (see ``nnspec.ir.spec.Spec.state_shapes``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from pydantic import BeforeValidator

from ..core.dims import Dim
from . import initializers as _inits
from .base import (
    DEFAULT_INIT,
    MODULE,
    DimArg,
    In,
    InitArg,
    LayerKind,
    Params,
    ShapeError,
    SymDim,
    TensorType,
    TorchCall,
    TorchModule,
    TorchPlan,
    W,
    register,
)

#: the state_dict key of a parameter relative to its layer: the layer's name itself
OWN = ""

#: the torch module class of a parameter: an ``nn.Parameter`` registered on the parent
PARAMETER = "Parameter"


def _shape_tuple(v):
    """``param 768`` is a vector: a single size is a shape of rank 1."""
    if isinstance(v, (int, Dim, str)) and not isinstance(v, bool):
        return (v,)
    if isinstance(v, list):
        return tuple(v)
    return v


Shape = Annotated[tuple[DimArg, ...], BeforeValidator(_shape_tuple)]


def _show(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


@register
class Param(LayerKind):
    """A learned tensor of a given shape: no input, its parameter is its output."""

    name = "param"
    aliases = ("parameter",)
    arity = 0
    positional = ("shape",)
    synonyms = {"size": "shape"}
    summary = ("learned tensor, no input (state_dict key: its name): "
               "param [1, 1, d] [init=zeros] as name")

    class Params(Params):
        shape: Shape
        init: InitArg = DEFAULT_INIT

    def input_count_problem(self, p, n: int) -> str | None:
        if n:
            return (f"param takes no input tensor, got {n}: it is a learned tensor of its "
                    "own; name it (g = param [d] as gamma) and use the name")
        return None

    def check_inputs(self, p, ins: list) -> None:
        if ins:
            raise ShapeError(f"param takes no input tensor, got {len(ins)}")

    def sizes(self, p) -> tuple[int, ...]:
        out = []
        for i, d in enumerate(p.shape):
            if not d.is_const:
                syms = ", ".join(sorted(d.symbols()))
                why = "a symbol of the input" if str(d) == syms else f"it depends on {syms}"
                raise ShapeError(f"param {_show(p.shape)}: a parameter's shape must be "
                                 f"concrete, but axis {i} is {d} ({why})",
                                 arg="shape",
                                 hint="use constants (const d = 768), not the input's "
                                      "symbols; expand(p, [N, ...]) broadcasts it to the batch")
            if d.value < 1:
                raise ShapeError(f"param {_show(p.shape)}: axis {i} is {d.value}; sizes are at "
                                 "least 1", arg="shape")
            out.append(d.value)
        return tuple(out)

    def state(self, p, ins, out):
        """The tensor with the spec's initialiser (zeros by default)."""
        w = self.weights(p, ins, out)[OWN]
        if p.init.is_default:
            return {OWN: w}
        try:
            p.init.check_shape(w.shape, "the param")
        except _inits.InitError as e:
            raise ShapeError(str(e), arg="init", code="E340") from None
        return {OWN: replace(w, init=p.init.dist(w.shape))}

    def infer(self, p, ins):
        return TensorType(self.sizes(p))

    def weights(self, p, ins, out):
        return {OWN: W(self.sizes(p), ("zeros",))}

    def torch(self, p, ins, out):
        return TorchPlan(TorchModule(PARAMETER, self.sizes(p)), [TorchCall(MODULE, ())])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        return np.array(w[OWN], copy=True)

    def backward(self, p, w, xs, y, gy, ctx):
        return [], {OWN: gy}

    def detail(self, p, ins):
        init = "" if p.init.is_default else f" init={p.init}"
        return f"shape={_show(p.shape)}{init}"

    def sample(self):
        return {"shape": (Dim.const(1), Dim.const(3), Dim.const(4)),
                "init": "normal(0, 0.02)"}, []


@register
class Expand(LayerKind):
    """Broadcasts size-1 axes (and new leading axes) to the sizes given (Tensor.expand)."""

    name = "expand"
    aliases = ("broadcast_to",)
    positional = ("shape",)
    synonyms = {"size": "shape", "sizes": "shape"}
    summary = "broadcast to a shape, -1 keeps an axis: expand(x, [N, -1, -1]) (Tensor.expand)"

    class Params(Params):
        shape: Shape

    def target(self, p, x: TensorType) -> tuple[Dim, ...]:
        shape = p.shape
        lead = len(shape) - x.rank
        if lead < 0:
            raise ShapeError(f"expand to {_show(shape)} gives {len(shape)} size"
                             f"{'s' if len(shape) != 1 else ''} for the rank-{x.rank} input "
                             f"{x}", arg="shape", code="E362",
                             hint="give a size (or -1 to keep it) for every axis; new axes "
                                  "come first")
        out = []
        for i, d in enumerate(shape):
            if d == -1:
                if i < lead:
                    raise ShapeError(f"expand to {_show(shape)}: -1 keeps an axis of the "
                                     f"input, but size {i} is a new leading axis", arg="shape",
                                     hint="give new leading axes their size")
                out.append(x.shape[i - lead])
                continue
            if d.is_const and d.value < 1:
                raise ShapeError(f"expand to {_show(shape)}: size {i} is {d.value}; sizes are "
                                 "at least 1, or -1 to keep an axis", arg="shape")
            if i >= lead:
                have = x.shape[i - lead]
                if have != d and have != 1:
                    raise ShapeError(f"expand cannot stretch axis {i - lead} of {x} (size "
                                     f"{have}) to {d}: only an axis of size 1 broadcasts",
                                     arg="shape", code="E365",
                                     hint="use -1 to keep the axis")
            out.append(d)
        return tuple(out)

    def infer(self, p, ins):
        x = ins[0]
        return TensorType(self.target(p, x), x.dtype)

    def torch(self, p, ins, out):
        dims = tuple(d.value if d.is_const else SymDim(d) for d in p.shape)
        return TorchPlan(None, [TorchCall(".expand", (In(0),) + dims)])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = xs[0]
        lead = len(p.shape) - x.ndim
        shape = tuple(x.shape[i - lead] if d == -1 else d.evaluate(ctx.env)
                      for i, d in enumerate(p.shape))
        return np.array(np.broadcast_to(x, shape), copy=True)

    def backward(self, p, w, xs, y, gy, ctx):
        x = xs[0]
        lead = gy.ndim - x.ndim
        g = gy.sum(axis=tuple(range(lead))) if lead else gy
        axes = tuple(i for i, n in enumerate(x.shape) if n == 1 and g.shape[i] != 1)
        return [g.sum(axis=axes, keepdims=True) if axes else g], {}

    def detail(self, p, ins):
        return f"shape={_show(p.shape)}"

    def samples(self):
        c = Dim.const
        return [({"shape": (c(2), c(-1), c(3), c(4))}, [TensorType((1, 3, 1))]),
                ({"shape": (c(5),)}, [TensorType((1,))])]

    def sample(self):
        return self.samples()[0]
