"""Constant folding of the ONNX ops that exporters use to compute sizes and constants.

Values are NumPy arrays; a size read from a tensor's shape (``Shape``) that is a symbol of
the model's inputs, or not known statically, makes an array of dtype object whose items
are ints, symbol names (str) or None. ``Shape -> Gather -> Unsqueeze -> Concat`` (a
``view(x.size(0), -1)``) so folds to ``['N', -1]``, which a reshape writes as ``[N, -1]``.
"""

from __future__ import annotations

import numpy as np

_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
           7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32,
           13: np.uint64}


class FoldError(Exception):
    """The op cannot be folded with these values (the caller reports the node)."""


def symbolic(a: np.ndarray) -> bool:
    return a.dtype == object


def _attr(node, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def constant(node) -> np.ndarray:
    """The value of a ``Constant`` node (any of its attribute forms)."""
    from onnx import numpy_helper

    a = node.attribute[0]
    if a.name == "value":
        return numpy_helper.to_array(a.t)
    if a.name == "value_float":
        return np.array(a.f, dtype=np.float32)
    if a.name == "value_floats":
        return np.array(list(a.floats), dtype=np.float32)
    if a.name == "value_int":
        return np.array(a.i, dtype=np.int64)
    if a.name == "value_ints":
        return np.array(list(a.ints), dtype=np.int64)
    raise FoldError(f"a Constant given as {a.name}")


def _elementwise(fn, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not symbolic(a) and not symbolic(b):
        return np.asarray(fn(a, b))
    a2, b2 = np.broadcast_arrays(a.astype(object), b.astype(object))
    out = np.empty(a2.shape, dtype=object)
    for i in np.ndindex(a2.shape):
        x, y = a2[i], b2[i]
        out[i] = int(fn(x, y)) if isinstance(x, (int, np.integer)) and \
            isinstance(y, (int, np.integer)) else None
    return out


def _div(a, b):
    if np.issubdtype(np.asarray(a).dtype, np.integer) and \
            np.issubdtype(np.asarray(b).dtype, np.integer):
        return np.trunc(np.asarray(a) / np.asarray(b)).astype(np.asarray(a).dtype)
    return np.divide(a, b)


def _slice(node, ins: list) -> np.ndarray:
    data = ins[0]
    starts, ends = [int(v) for v in ins[1]], [int(v) for v in ins[2]]
    axes = [int(v) for v in ins[3]] if len(ins) > 3 and ins[3] is not None else \
        list(range(len(starts)))
    steps = [int(v) for v in ins[4]] if len(ins) > 4 and ins[4] is not None else \
        [1] * len(starts)
    index = [slice(None)] * data.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[ax] = slice(s, e, st)
    return data[tuple(index)]


def _reshape(ins: list) -> np.ndarray:
    data, shape = ins[0], [int(v) for v in ins[1]]
    shape = [data.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return data.reshape(shape)


def _unsqueeze(node, ins: list) -> np.ndarray:
    axes = ins[1] if len(ins) > 1 else _attr(node, "axes")
    out = ins[0]
    rank = out.ndim + len(axes)
    for ax in sorted(int(a) % rank for a in axes):
        out = np.expand_dims(out, ax)
    return out


def _squeeze(node, ins: list) -> np.ndarray:
    axes = ins[1] if len(ins) > 1 else _attr(node, "axes")
    if axes is None:
        return np.squeeze(ins[0])
    return np.squeeze(ins[0], axis=tuple(int(a) for a in axes))


def _cast(node, ins: list) -> np.ndarray:
    if symbolic(ins[0]):
        return ins[0]
    to = _attr(node, "to")
    if to not in _DTYPES:
        raise FoldError(f"a Cast to element type {to}")
    return ins[0].astype(_DTYPES[to])


def _constant_of_shape(node, ins: list) -> np.ndarray:
    from onnx import numpy_helper

    if symbolic(ins[0]):
        raise FoldError("a ConstantOfShape of a shape not known statically")
    v = _attr(node, "value")
    fill = numpy_helper.to_array(v) if v is not None else np.zeros(1, np.float32)
    return np.full([int(s) for s in ins[0]], fill.reshape(-1)[0], dtype=fill.dtype)


def _range(ins: list) -> np.ndarray:
    start, limit, delta = (np.asarray(x).reshape(()) for x in ins)
    return np.arange(start, limit, delta, dtype=np.result_type(start, limit, delta))


def split(node, ins: list) -> tuple:
    """The outputs of a ``Split`` (its sizes from the input, the attribute or equal parts)."""
    x = ins[0]
    axis = _attr(node, "axis", 0)
    n = len(node.output)
    if len(ins) > 1 and ins[1] is not None:
        sizes = [int(v) for v in ins[1]]
    elif _attr(node, "split") is not None:
        sizes = [int(v) for v in _attr(node, "split")]
    else:
        step = -(-x.shape[axis] // n)
        sizes = [min(step, x.shape[axis] - j * step) for j in range(n)]
    if len(sizes) != n or sum(sizes) != x.shape[axis] or min(sizes) < 0:
        raise FoldError("a Split whose sizes do not fit its input")
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


FOLD = {
    "Identity": lambda node, ins: ins[0],
    "Cast": _cast,
    "CastLike": lambda node, ins: ins[0] if symbolic(ins[0]) else
    ins[0].astype(ins[1].dtype),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda node, ins: np.concatenate(
        [np.asarray(x).astype(object) if any(symbolic(y) for y in ins) else x
         for x in ins], axis=_attr(node, "axis")),
    "Gather": lambda node, ins: np.take(ins[0], ins[1].astype(np.int64),
                                        axis=_attr(node, "axis", 0)),
    "Slice": _slice,
    "Reshape": lambda node, ins: _reshape(ins),
    "Transpose": lambda node, ins: np.transpose(ins[0], _attr(node, "perm")),
    "Add": lambda node, ins: _elementwise(np.add, ins[0], ins[1]),
    "Sub": lambda node, ins: _elementwise(np.subtract, ins[0], ins[1]),
    "Mul": lambda node, ins: _elementwise(np.multiply, ins[0], ins[1]),
    "Div": lambda node, ins: _elementwise(_div, ins[0], ins[1]),
    "Neg": lambda node, ins: -ins[0],
    "Sqrt": lambda node, ins: np.sqrt(ins[0]),
    "Equal": lambda node, ins: _elementwise(np.equal, ins[0], ins[1]),
    "Where": lambda node, ins: np.where(ins[0].astype(bool), ins[1], ins[2]),
    "ConstantOfShape": _constant_of_shape,
    "Range": lambda node, ins: _range(ins),
    "Shape": lambda node, ins: np.array(ins[0].shape[slice(_attr(node, "start", 0),
                                                           _attr(node, "end"))], np.int64),
    "Expand": lambda node, ins: np.broadcast_to(
        ins[0], np.broadcast_shapes(ins[0].shape, tuple(int(s) for s in ins[1]))).copy(),
}


def fold(node, ins: list) -> np.ndarray:
    """The value of ``node``'s first output from its constant inputs (None: absent)."""
    fn = FOLD.get(node.op_type)
    if fn is None:
        raise FoldError(f"{node.op_type} of constants")
    try:
        return np.asarray(fn(node, ins))
    except FoldError:
        raise
    except (ValueError, TypeError, IndexError) as e:
        syms = sorted({str(v) for a in ins if a is not None and symbolic(a)
                       for v in a.reshape(-1) if isinstance(v, str)})
        if syms:
            raise FoldError(f"a value computed from the input's symbolic sizes "
                            f"({', '.join(syms)}): nnspec has no kind for it") from None
        raise FoldError(f"{node.op_type} of constants: {e}") from None
