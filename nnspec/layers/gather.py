"""gather: entries of a tensor picked along one axis by an int index tensor.

``gather(q, action, dim=1)`` with q [N, A] and action [N] int is DQN's Q(s, a): one entry
per row, [N]. An index of x's rank minus one picks one entry per position of x's other
axes (its dims are those axes'); an index of x's rank has ``torch.gather``'s meaning
(out[i][j] = x[i][index[i][j]] for dim=1, each other dim of the index at most x's). Negative
indices count from the end, as Python's; an index outside [-size, size) is an error at run
time in both backends (torch's RuntimeError, NumPy's IndexError).
"""

from __future__ import annotations

from .base import (
    FLOAT,
    INT,
    In,
    Int,
    LayerKind,
    Params,
    Prev,
    ShapeError,
    TensorType,
    TorchCall,
    TorchPlan,
    register,
)
from .tensorops import _axis

_WRAP = "nnspec.layers.torch.gather:wrap_index"


@register
class Gather(LayerKind):
    """x's entries at ``index`` along ``dim`` (``q.gather(1, action.unsqueeze(1))``)."""

    name = "gather"
    arity = 2
    synonyms = {"axis": "dim"}
    summary = "entries picked by an int index along dim: gather(q, action, dim=1)"
    ranks = (1, None)

    class Params(Params):
        dim: Int = 1

    def infer(self, p, ins):
        x, index = ins
        if not isinstance(index, TensorType) or index.dtype != INT:
            raise ShapeError(f"gather takes an int index, got {index}",
                             hint="declare the index as int: action: [N] int")
        axis = _axis(p.dim, x.rank, self.name, "dim")
        others = [d for i, d in enumerate(x.shape) if i != axis]
        if index.rank == x.rank - 1:
            for i, (a, b) in enumerate(zip(index.shape, others)):
                if a != b:
                    raise ShapeError(
                        f"gather along dim {p.dim} of {x}: the index {index} has dim {a} "
                        f"where x has {b} (axis {i} of the index)",
                        hint=f"an index of rank {index.rank} has x's dims without dim "
                             f"{p.dim}: [{', '.join(str(d) for d in others)}]")
        elif index.rank == x.rank:
            for i, (a, b) in enumerate(zip(index.shape, x.shape)):
                fits = a == b or (a.is_const and b.is_const and a.value <= b.value)
                if i != axis and not fits:
                    raise ShapeError(
                        f"gather along dim {p.dim} of {x}: the index {index} has dim {a} on "
                        f"axis {i}, which is not at most x's {b}",
                        hint="each dim of the index but dim's must be at most x's")
        else:
            raise ShapeError(f"gather of {x} takes an index of rank {x.rank - 1} (one entry "
                             f"per position of the other axes) or {x.rank} (torch.gather's), "
                             f"got {index} (rank {index.rank})",
                             hint=f"gather along dim {p.dim} with an index "
                                  f"[{', '.join(str(d) for d in others)}] int")
        return TensorType(index.shape, x.dtype)

    def torch(self, p, ins, out):
        x, index = ins
        size = x.shape[p.dim % x.rank]
        calls = [TorchCall(_WRAP, (In(1), size))]
        if index.rank == x.rank:
            return TorchPlan(None, calls + [TorchCall(".gather", (In(0), p.dim, Prev()))])
        # q.gather(1, action.unsqueeze(1)).squeeze(1)
        calls += [TorchCall(".unsqueeze", (Prev(), p.dim)),
                  TorchCall(".gather", (In(0), p.dim, Prev())),
                  TorchCall(".squeeze", (Prev(), p.dim))]
        return TorchPlan(None, calls)

    def _index(self, p, x, index):
        """(axis, the index as non-negative ints with x's rank): IndexError when an entry is
        out of range, as torch.gather's RuntimeError."""
        import numpy as np

        index = np.asarray(index)
        if not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"gather takes an integer index, got {index.dtype}")
        axis = p.dim % x.ndim
        n = x.shape[axis]
        if index.size and (index.min() < -n or index.max() >= n):
            bad = index.min() if index.min() < -n else index.max()
            raise IndexError(f"gather: index {bad} is out of range for dim {p.dim} of size "
                             f"{n} (indices run from {-n} to {n - 1})")
        index = np.where(index < 0, index + n, index)
        if index.ndim == x.ndim - 1:
            index = np.expand_dims(index, axis)
        return axis, index

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = np.asarray(xs[0])
        axis, index = self._index(p, x, xs[1])
        part = x[tuple(slice(None) if i == axis else slice(0, n)
                       for i, n in enumerate(index.shape))]
        y = np.take_along_axis(part, index, axis)
        return y.reshape(np.shape(xs[1]))

    def backward(self, p, w, xs, y, gy, ctx):
        """dx: gy scatter-added into x's shape (an entry picked twice gets both); the index
        is an int: no gradient."""
        import numpy as np

        x = np.asarray(xs[0])
        if not np.issubdtype(x.dtype, np.floating):
            return [None, None], {}
        axis, index = self._index(p, x, xs[1])
        where = list(np.indices(index.shape, sparse=True))
        where[axis] = index
        gx = np.zeros(x.shape, np.asarray(gy).dtype)
        np.add.at(gx, tuple(where), np.reshape(gy, index.shape))
        return [gx, None], {}

    def sample(self):
        return {"dim": -1}, [TensorType((3, 3, 3)), TensorType((3, 3), INT)]

    def samples(self):
        return [self.sample(),
                ({"dim": 0}, [TensorType((3, 5)), TensorType((2, 4), INT)]),
                ({}, [TensorType((2, 4), FLOAT), TensorType((2,), INT)])]
