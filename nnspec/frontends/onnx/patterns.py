"""Node patterns that stand for one nnspec stage: the index-and-mean form of an adaptive
average pooling that torch's dynamo exporter writes (``Transpose -> GatherND -> Transpose ->
ReduceMean``).

A pattern is recognised only when its constants make it the stage exactly: the pooling's
gather indices are checked by running the pattern on a test array.
"""

from __future__ import annotations

import numpy as np

from .convert import Converter, Op, label


def consumer(cx: Converter, value: str, op_type: str):
    """(index, node) of the one node reading ``value``, when it is an ``op_type``."""
    users = cx.consumers.get(value, [])
    if len(users) != 1 or cx.users.get(value) != 1 or users[0][1].op_type != op_type:
        return None
    return users[0]


def _adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _adaptive_mean(a: np.ndarray, out: list[int]) -> np.ndarray:
    """PyTorch's adaptive average pooling of the last two axes of ``a``."""
    rows = _adaptive_windows(a.shape[-2], out[0])
    cols = _adaptive_windows(a.shape[-1], out[1])
    res = np.empty(a.shape[:-2] + tuple(out), dtype=np.float64)
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            res[..., i, j] = a[..., r0:r1, c0:c1].mean(axis=(-2, -1))
    return res


def adaptive_pool(cx: Converter, node, x: str, perm: list[int]) -> Op | None:
    """``Transpose(perm) -> GatherND(constant indices) -> Transpose -> ReduceMean`` over an
    ``[N, C, H, W]`` input as ``adaptive_avgpool (oh, ow)``; None when it is not that."""
    have = cx.dims(x)
    if have is None or len(have) != 4 or not all(isinstance(d, int) for d in have[2:]):
        return None
    g = consumer(cx, node.output[0], "GatherND")
    t = g and consumer(cx, g[1].output[0], "Transpose")
    m = t and consumer(cx, t[1].output[0], "ReduceMean")
    out = m and cx.dims(m[1].output[0])
    if not out or len(out) != 4 or not all(isinstance(d, int) for d in out[2:]):
        return None
    if cx.attr(g[1], "batch_dims", 0) or cx.attr(m[1], "keepdims", 1):
        return None
    idx = cx.resolve(g[1].input[1])
    axes = cx.attr(m[1], "axes")
    if len(m[1].input) > 1 and m[1].input[1]:
        a = cx.resolve(m[1].input[1])
        axes = cx.value(a) if cx.is_const(a) else None
    if not cx.is_const(idx) or axes is None:
        return None
    ind = cx.value(idx)
    if ind.dtype == object or ind.ndim < 1 or ind.shape[-1] < 1:
        return None
    h, w = have[2:]
    probe = np.random.default_rng(0).standard_normal((2, 3, h, w))
    try:
        a = np.transpose(probe, perm)
        k = ind.shape[-1]
        picked = a[tuple(np.moveaxis(ind.astype(np.int64), -1, 0))]
        picked = picked.reshape(ind.shape[:-1] + a.shape[k:])
        picked = np.transpose(picked, cx.attr(t[1], "perm"))
        got = picked.mean(axis=tuple(int(v) for v in np.asarray(axes).reshape(-1)))
    except (ValueError, IndexError, TypeError):
        return None
    want = _adaptive_mean(probe, list(out[2:]))
    if got.shape != want.shape or not np.allclose(got, want, atol=1e-9):
        return None
    cx.skip |= {g[0], t[0], m[0]}
    size = out[2] if out[2] == out[3] else f"({out[2]}, {out[3]})"
    return Op(label(node), "stage", f"adaptive_avgpool {size}", [x], m[1].output[0])
