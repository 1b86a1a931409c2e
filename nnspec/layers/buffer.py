"""Constant tensors stored on the module: ``buffer``.

``idx = (...) | buffer persistent as relative_position_index`` keeps a constant, a tensor
computed from numbers only (``arange``, comparisons, arithmetic, ``reshape``: see
``consts.py``), as torch models keep theirs with ``register_buffer``: the back ends compute it
once when they build the model and forward reads it.

- ``buffer`` (the default): non-persistent, as ``register_buffer(name, t,
  persistent=False)``: no state_dict key; it moves with ``.to()`` (a float buffer takes the
  module's dtype, an int one stays int64).
- ``buffer persistent``: a state_dict entry under the layer's name (``as
  relative_position_index``; ``attn.relative_position_index`` inside a block called ``as
  attn``), as torchvision's Swin registers its index: a checkpoint that stores it loads by
  key, and a model built from a seed holds the computed value there.

Its value depends on no model input, no layer with weights, nothing random and no symbol of
the inputs' sizes: all the sizes it uses are numbers (a window size, not ``T``). A constant
of the inputs' sizes (T5's buckets of ``arange(T)``) has no fixed value: it is computed in
forward, on the inputs' device, with no ``buffer`` stage. The back ends check what the value
depends on (``nnspec.backends.plans.buffers``); the shape is checked here.
"""

from __future__ import annotations

from .base import FLOAT, LayerKind, Params, ShapeError, TensorType, TorchPlan, W, register

#: the state_dict key of a persistent buffer relative to its layer: the layer's name itself
OWN = ""

#: the initialiser of a persistent buffer's entry: its value is computed, not drawn (the
#: weights drawn from a seed hold zeros there until the back end computes it)
COMPUTED = ("computed",)


@register
class Buffer(LayerKind):
    """A constant tensor kept on the module (``register_buffer``), computed once."""

    name = "buffer"
    arity = 1
    summary = ("a constant kept on the module, computed once (torch's register_buffer; "
               "state_dict key with persistent): ... | buffer [persistent] as name")

    class Params(Params):
        persistent: bool = False

    def infer(self, p, ins):
        x = ins[0]
        if not isinstance(x, TensorType):
            raise ShapeError(f"buffer keeps one tensor, got {x}")
        bad = [(i, d) for i, d in enumerate(x.shape) if not d.is_const]
        if bad:
            i, d = bad[0]
            raise ShapeError(f"a buffer's shape must be numbers, but axis {i} of {x} is {d}: "
                             "its value depends on the sizes of the model's inputs",
                             code="E398",
                             hint="drop `| buffer`: a constant of the inputs' sizes is "
                                  "computed in forward, on the inputs' device")
        return x

    def weights(self, p, ins, out):
        if not p.persistent:
            return {}
        shape = tuple(d.value for d in out.shape)
        return {OWN: W(shape, COMPUTED, trainable=False, dtype=out.dtype)}

    def torch(self, p, ins, out):
        # as a plan it is its value; the back ends register it and read it in forward
        return TorchPlan(None, [])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        if OWN in w:  # persistent: the state's value (a checkpoint's, or the computed one)
            return np.array(w[OWN], copy=True)
        return np.array(xs[0], copy=True)

    def backward(self, p, w, xs, y, gy, ctx):
        """As ``numpy`` computes it: its input's value (non-persistent) or the state's
        (persistent: no slope). What it is computed from is constant in a model anyway."""
        import numpy as np

        x = np.asarray(xs[0])
        if not np.issubdtype(x.dtype, np.floating):
            return [None], {}
        return [np.zeros_like(x) if OWN in w else np.asarray(gy, dtype=x.dtype)], {}

    def detail(self, p, ins):
        return "persistent" if p.persistent else ""

    def samples(self):
        return [({}, [TensorType((3, 4), "int")]), ({"persistent": True}, [TensorType((2, 5))])]

    def sample(self):
        return self.samples()[0]


__all__ = ["Buffer", "COMPUTED", "FLOAT", "OWN"]
