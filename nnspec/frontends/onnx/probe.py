"""Checking that a group of nodes is one nnspec stage: the group is evaluated on test
arrays with NumPy forms of the ONNX ops (as the operator specification defines them) and
compared with the stage's own definition. Nothing of the file is run: only these ops, on
arrays made here, with the file's constants."""

from __future__ import annotations

import math

import numpy as np

from .fold import FOLD, FoldError, _attr, split


def _softmax(node, ins):
    x = ins[0]
    axis = _attr(node, "axis", -1)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _trilu(node, ins):
    k = int(np.asarray(ins[1]).reshape(())) if len(ins) > 1 and ins[1] is not None else 0
    return np.triu(ins[0], k) if _attr(node, "upper", 1) else np.tril(ins[0], k)


def _reduce(fn):
    def make(node, ins):
        axes = ins[1] if len(ins) > 1 and ins[1] is not None else _attr(node, "axes")
        if axes is None or len(axes) == 0:
            axes = None if not _attr(node, "noop_with_empty_axes", 0) else ()
            if axes == ():
                return ins[0]
        axes = None if axes is None else tuple(int(a) for a in axes)
        return fn(ins[0], axis=axes, keepdims=bool(_attr(node, "keepdims", 1)))
    return make


_ERF = np.vectorize(math.erf, otypes=[np.float64])

PROBE = {
    **FOLD,
    "MatMul": lambda node, ins: np.matmul(ins[0], ins[1]),
    "Softmax": _softmax,
    "Trilu": _trilu,
    "Less": lambda node, ins: np.less(ins[0], ins[1]),
    "Greater": lambda node, ins: np.greater(ins[0], ins[1]),
    "LessOrEqual": lambda node, ins: np.less_equal(ins[0], ins[1]),
    "GreaterOrEqual": lambda node, ins: np.greater_equal(ins[0], ins[1]),
    "Not": lambda node, ins: np.logical_not(ins[0]),
    "And": lambda node, ins: np.logical_and(ins[0], ins[1]),
    "Or": lambda node, ins: np.logical_or(ins[0], ins[1]),
    "Pow": lambda node, ins: np.power(ins[0], ins[1]),
    "Tanh": lambda node, ins: np.tanh(ins[0]),
    "Relu": lambda node, ins: np.maximum(ins[0], 0),
    "Erf": lambda node, ins: _ERF(ins[0]),
    "Sigmoid": lambda node, ins: 1 / (1 + np.exp(-ins[0])),
    "Exp": lambda node, ins: np.exp(ins[0]),
    "Reciprocal": lambda node, ins: 1 / ins[0],
    "ReduceMean": _reduce(np.mean),
    "ReduceSum": _reduce(np.sum),
    "Max": lambda node, ins: np.maximum(ins[0], ins[1]),
    "Split": split,
    "IsInf": lambda node, ins: (np.isposinf(ins[0]) if _attr(node, "detect_positive", 1)
                                else False) | (np.isneginf(ins[0])
                                               if _attr(node, "detect_negative", 1) else False),
    "ReduceMin": _reduce(np.min),
    "ReduceMax": _reduce(np.max),
    "IsNaN": lambda node, ins: np.isnan(ins[0]),
    "Cos": lambda node, ins: np.cos(ins[0]),
    "Sin": lambda node, ins: np.sin(ins[0]),
    "Min": lambda node, ins: np.minimum(ins[0], ins[1]),
}


def sized(value: np.ndarray, sizes: dict) -> np.ndarray | None:
    """A constant whose items may be symbols of the input's sizes (fold.py) with each symbol
    given its size in ``sizes``; None when an item is not known statically or not given."""
    if value.dtype != object:
        return value
    out = []
    for v in value.reshape(-1):
        v = sizes.get(v) if isinstance(v, str) else v
        if v is None:
            return None
        out.append(int(v))
    return np.array(out, dtype=np.int64).reshape(value.shape)


def constants(cx, sizes: dict | None = None):
    """The ``const`` argument of :func:`evaluate` for a converter: its constants, with
    symbolic sizes given by ``sizes``."""
    def get(name):
        if not cx.is_const(name):
            return None
        return sized(cx.value(name), sizes or {})
    return get


def evaluate(nodes: list, given: dict, const) -> dict | None:
    """The values of ``nodes`` (in graph order) from ``given`` (name -> array) and
    ``const(name)`` (the file's constant of that name, or None); None when an op is not one
    of these or does not compute on these arrays."""
    env = dict(given)
    with np.errstate(all="ignore"):
        for node in nodes:
            fn = PROBE.get(node.op_type)
            if fn is None or node.domain not in ("", "ai.onnx"):
                return None
            ins = []
            for x in node.input:
                if not x:
                    ins.append(None)
                    continue
                v = env.get(x)
                if v is None:
                    v = const(x)
                if v is None or getattr(v, "dtype", None) is np.dtype(object):
                    return None
                ins.append(np.asarray(v))
            try:
                got = fn(node, ins)
                if isinstance(got, tuple):
                    if len(got) != len(node.output):
                        return None
                    env.update((o, np.asarray(v)) for o, v in zip(node.output, got) if o)
                else:
                    env[node.output[0]] = np.asarray(got)
            except (FoldError, ValueError, TypeError, IndexError):
                return None
    return env
