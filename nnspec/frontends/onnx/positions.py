"""Sinusoidal positional encodings as the exporters write them out: the table
``PE[pos, 2i] = sin(pos / 10000^(2i/E))``, ``PE[pos, 2i+1] = cos(...)`` computed from
``Range`` over the sequence's (symbolic) length, added to ``[N, T, E]`` (after ``x *
sqrt(E)`` in the scaled form), as one ``positional`` stage.

A group is found from its ``Add``: one operand is computed from constants and sizes only,
through a ``Range``; the group is evaluated (probe.py) at two sequence lengths and must
equal nnspec's own ``positional`` (layers/positional.py), scaled or not, exactly. The
table's nodes are dropped once every group that reads them is matched.
"""

from __future__ import annotations

import math

import numpy as np

from ...layers.positional import Positional
from .attention import Graph, given_shapes, tables_matched
from .convert import Converter, Op, label
from .probe import constants, evaluate

_MAX_CONE = 40
_KIND = Positional()


def find_positional(cx: Converter) -> None:
    tables_matched(cx, _match)


def _table(cx: Converter, gr: Graph, value: str):
    """(nodes, Shape nodes) ``value`` is computed by from constants and the sizes of
    tensors, through a ``Range``; None when it reads a tensor's values."""
    first = gr.producer.get(value)
    if first is None or cx.is_const(value):
        return None
    seen, shapes, todo = set(), set(), [first]
    while todo:
        k = todo.pop()
        if k in seen or k in shapes:
            continue
        n = gr.nodes[k]
        if n.op_type == "Shape":
            shapes.add(k)
            continue
        seen.add(k)
        if len(seen) > _MAX_CONE:
            return None
        for i in n.input:
            if not i or i in cx.g.inits or i in cx.const:
                continue
            p = gr.producer.get(i)
            if p is None:
                return None
            todo.append(p)
    if not any(gr.nodes[j].op_type == "Range" for j in seen):
        return None
    return sorted(seen), shapes


def _scaled(cx: Converter, gr: Graph, x: str, width: int) -> tuple[str, int] | None:
    """(x0, the Mul node) when ``x`` is ``x0 * c`` for a constant scalar c, read only by
    the group."""
    m = gr.made_by(x, "Mul")
    if m is None or len(gr.readers.get(x, [])) != 1 or x in cx.outputs:
        return None
    a, b = gr.nodes[m].input
    for x0, c in ((a, b), (b, a)):
        if cx.is_const(c) and not cx.is_const(x0):
            v = cx.value(c)
            if v.dtype != object and v.size == 1 and \
                    math.isclose(float(v.reshape(-1)[0]), math.sqrt(width), rel_tol=1e-6):
                return x0, m
    return None


def _match(cx: Converter, gr: Graph, k: int) -> set[int] | None:
    add = gr.nodes[k]
    if len(add.input) != 2:
        return None
    for x, t in (add.input, reversed(add.input)):
        d = cx.dims(x)
        if not x or cx.is_const(x) or d is None or len(d) != 3 or \
                not isinstance(d[2], int) or d[2] < 1:
            continue
        cone = _table(cx, gr, t)
        if cone is None:
            continue
        nodes, shapes = cone
        tries = []
        s = _scaled(cx, gr, x, d[2])
        if s is not None and cx.dims(s[0]) == d:
            tries.append((s[0], True, [s[1]]))
        tries.append((x, False, []))
        for x0, scale, extra in tries:
            group = sorted(set(nodes) | set(extra) | {k})
            if _verified(cx, gr, group, shapes, x0, d, scale, add.output[0]):
                _register(cx, gr, k, x0, scale, set(extra))
                return set(nodes)
    return None


def _verified(cx, gr, group, shapes, x, dims, scale: bool, out: str) -> bool:
    """The group equals ``positional [scale]`` at two sizes of the input's symbols."""
    p = Positional.Params(scale=scale)
    lengths = set()
    for seed in (0, 1):
        sizes, shape = {}, []
        for j, d in enumerate(dims):
            if isinstance(d, int):
                shape.append(d)
            elif isinstance(d, str):
                shape.append(sizes.setdefault(d, 3 + seed * 4 + j))
            else:
                return False
        given = given_shapes(cx, gr, shapes, sizes)
        if given is None:
            return False
        probe = np.random.default_rng(seed).standard_normal(shape)
        given[x] = probe
        env = evaluate([gr.nodes[j] for j in group], given, constants(cx, sizes))
        got = None if env is None else env.get(out)
        if got is None:
            return False
        want = _KIND.numpy(p, {}, [probe], None)
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-5):
            return False
        lengths.add(shape[1])
    return len(lengths) == 2 or all(isinstance(d, int) for d in dims)


def _register(cx: Converter, gr: Graph, k: int, x: str, scale: bool, extra: set[int]
              ) -> None:
    end = gr.nodes[k]
    text = "positional" + (" scale" if scale else "")

    def make(cx: Converter, end=end) -> Op:
        return Op(label(end), "stage", text, [cx.tensor(end, cx.resolve(x))], end.output[0])

    cx.skip |= extra
    cx.replaced[k] = make
