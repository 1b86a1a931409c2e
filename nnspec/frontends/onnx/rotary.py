"""Rotary position embeddings as the exporters write them out: the cosine and sine tables
computed from ``Range`` over the sequence's (symbolic) length, then ``x * cos +
rotate(x) * sin`` with the rotation made of ``Split``/``Slice``, ``Neg`` and ``Concat``,
as one ``rope`` stage.

A group is found from its final ``Add`` and checked by evaluating it (probe.py) at two
sequence lengths against nnspec's own rotary (layers/rope.py): the base theta is read from
the group's angles and the whole group must then equal ``rope theta=...`` exactly. The
tables' nodes are dropped once every rope that reads them is matched.
"""

from __future__ import annotations

import numpy as np

from ...layers.rope import rotary
from .attention import Graph, cone_of, given_shapes, tables_matched
from .convert import Converter, Op, label
from .probe import constants, evaluate
from .words import num

_MAX_CONE = 40


def find_rope(cx: Converter) -> None:
    tables_matched(cx, _match)


def _cone(cx: Converter, gr: Graph, last: int, x: str):
    return cone_of(cx, gr, last, x, _MAX_CONE)


def _depends(gr: Graph, nodes: list[int], x: str) -> set[int]:
    made, out = {x}, set()
    for j in nodes:
        if any(i in made for i in gr.nodes[j].input):
            out.add(j)
            made.update(o for o in gr.nodes[j].output if o)
    return out


def _match(cx: Converter, gr: Graph, k: int) -> set[int] | None:
    add = gr.nodes[k]
    muls = [gr.made_by(i, "Mul") for i in add.input]
    if None in muls or len(muls) != 2:
        return None
    for m in muls:
        for x in gr.nodes[m].input:
            d = cx.dims(x)
            if not x or cx.is_const(x) or x in cx.g.inits or d is None or len(d) < 2 or \
                    not isinstance(d[-1], int) or d[-1] < 4 or d[-1] % 2:
                continue
            found = _try(cx, gr, k, x, d)
            if found is not None:
                return found
    return None


def _run(cx, gr, nodes, shapes, x, dims, seed, probe=None):
    sizes, shape = {}, []
    for j, d in enumerate(dims):
        if isinstance(d, int):
            shape.append(d)
        elif isinstance(d, str):
            shape.append(sizes.setdefault(d, 3 + seed * 4 + j))
        else:
            return None, None
    given = given_shapes(cx, gr, shapes, sizes)
    if given is None:
        return None, None
    if probe is None:
        probe = np.random.default_rng(seed).standard_normal(shape)
    elif probe.shape != tuple(shape):
        return None, None
    given[x] = probe
    env = evaluate([gr.nodes[j] for j in nodes], given, constants(cx, sizes))
    return (None if env is None else env.get(gr.nodes[nodes[-1]].output[0])), probe


def _try(cx: Converter, gr: Graph, k: int, x: str, dims) -> set[int] | None:
    cone = _cone(cx, gr, k, x)
    if cone is None:
        return None
    nodes, shapes = cone
    mine = _depends(gr, nodes, x)
    if k not in mine or not mine:
        return None
    for axis in ([-2, -3] if len(dims) == 4 else [-2]):
        for layout in ("half", "interleaved"):
            theta = _theta(cx, gr, nodes, shapes, x, dims, axis, layout)
            if theta is None:
                continue
            ok = True
            for seed in (0, 1):
                got, probe = _run(cx, gr, nodes, shapes, x, dims, seed)
                if got is None or probe.shape[axis] < 2:
                    return None
                want = rotary(probe, axis, theta, layout)
                if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5,
                                                              atol=1e-5):
                    ok = False
                    break
            if ok:
                return _register(cx, gr, k, x, nodes, mine, theta, layout, axis, len(dims))
    return None


def _theta(cx, gr, nodes, shapes, x, dims, axis, layout) -> float | None:
    """The base the group's angles give: pair 1's angle at position 1 is theta^(-2/D)."""
    d = dims[-1]
    sizes = [v if isinstance(v, int) else None for v in dims]
    shape = [3 + j if v is None else v for j, v in enumerate(sizes)]
    if shape[axis] < 2:
        return None
    probe = np.zeros(shape)
    i, j = (1, 1 + d // 2) if layout == "half" else (2, 3)
    probe[..., i] = 1.0
    got, _ = _run(cx, gr, nodes, shapes, x, dims, 0, probe)
    if got is None:
        return None
    at = [0] * (len(shape) - 1)
    at[axis % len(shape)] = 1
    c, s = float(got[tuple(at) + (i,)]), float(got[tuple(at) + (j,)])
    w = np.arctan2(s, c)
    if not 0 < w < 1:
        return None
    theta = float(w ** (-d / 2))
    return float(num(theta)) if np.isfinite(theta) and theta > 1 else None


def _register(cx, gr, k, x, nodes, mine, theta, layout, axis, rank) -> set[int]:
    text = "rope"
    if not np.isclose(theta, 10000.0, rtol=1e-6):
        text += f" theta={num(theta)}"
    if layout != "half":
        text += f" layout={layout}"
    if axis % rank != rank - 2:
        text += f" axis={axis % rank}"
    end = gr.nodes[k]

    def make(cx: Converter, end=end) -> Op:
        return Op(label(end), "stage", text, [cx.tensor(end, cx.resolve(x))], end.output[0])

    inside = {k}
    for j in sorted(mine, reverse=True):
        if j != k and all(o not in cx.outputs and all(r in inside for r in
                                                       gr.readers.get(o, []))
                          for o in gr.nodes[j].output if o):
            inside.add(j)
    if inside != mine:
        return set()
    cx.skip |= mine - {k}
    cx.replaced[k] = make
    return set(nodes) - mine
