"""Normalisations the exporters write out as arithmetic: RMSNorm as ``x * 1 / sqrt(mean(x
** 2) + eps)`` (then times its weight), and the capsules' squash, ``|s|² / (1 + |s|²) * s
/ |s|``, as one stage.

Each group is found from its ``ReduceMean`` or ``ReduceSum`` of the squares, and checked by
evaluating it (probe.py) on test arrays against nnspec's own definition of the stage, at
the epsilon the file's constant gives: only a group that is the stage exactly becomes it.
"""

from __future__ import annotations

import numpy as np

from .attention import Graph
from .convert import Converter, Op, label
from .probe import constants, evaluate
from .words import num


def find_norms(cx: Converter) -> None:
    gr = Graph(cx)
    for k, node in enumerate(gr.nodes):
        if k in cx.skip or k in cx.replaced or node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "ReduceMean":
            _rms(cx, gr, k)
        elif node.op_type == "ReduceSum":
            _squash(cx, gr, k)


def _square_of(cx: Converter, gr: Graph, value: str) -> str | None:
    """x where ``value`` is ``x ** 2`` or ``x * x``."""
    k = gr.made_by(value, "Pow", "Mul")
    if k is None:
        return None
    n = gr.nodes[k]
    if n.op_type == "Mul":
        return n.input[0] if n.input[0] == n.input[1] else None
    c = n.input[1]
    if not cx.is_const(c):
        return None
    v = cx.value(c)
    return n.input[0] if v.dtype != object and v.size == 1 and float(v.reshape(-1)[0]) == 2 \
        else None


def _scalar(cx: Converter, name: str) -> float | None:
    if not name or not cx.is_const(name):
        return None
    v = cx.value(name)
    if v.dtype == object or v.size != 1:
        return None
    return float(v.reshape(-1)[0])


def _closed(cx: Converter, gr: Graph, nodes: list[int], last: int) -> bool:
    """Whether every value the group makes but its last is read only inside it."""
    inside = set(nodes)
    for j in nodes:
        if j == last:
            continue
        for o in gr.nodes[j].output:
            if o and (o in cx.outputs or any(r not in inside for r in gr.readers.get(o, []))):
                return False
    return True


def _probe_shape(dims) -> list | None:
    if dims is None or any(d is None for d in dims):
        return None
    return [d if isinstance(d, int) else 2 + j for j, d in enumerate(dims)]


def _forward(gr: Graph, start: int, stop: str, limit: int = 6) -> list[int] | None:
    """The chain of single readers from ``start`` to the node that reads ``stop`` as well
    (the normalised product), at most ``limit`` long."""
    chain = [start]
    while len(chain) <= limit:
        j = gr.only_reader(gr.nodes[chain[-1]].output[0])
        if j is None:
            return None
        chain.append(j)
        if stop in gr.nodes[j].input:
            return chain
    return None


def _rms(cx: Converter, gr: Graph, k: int) -> None:
    node = gr.nodes[k]
    x = _square_of(cx, gr, node.input[0])
    dims = cx.dims(x) if x else None
    shape = _probe_shape(dims)
    if shape is None or x in cx.g.inits or cx.is_const(x):
        return
    chain = _forward(gr, k, x)
    if chain is None:
        return
    nodes = [gr.made_by(node.input[0], "Pow", "Mul")] + chain
    eps = next((e for j in chain[1:] if gr.nodes[j].op_type == "Add"
                for e in (_scalar(cx, i) for i in gr.nodes[j].input) if e is not None), None)
    axes = _axes(cx, node, len(dims))
    if eps is None or axes is None:
        return
    probe = np.random.default_rng(0).standard_normal(shape)
    env = evaluate([gr.nodes[j] for j in nodes], {x: probe}, constants(cx))
    out = gr.nodes[nodes[-1]].output[0]
    red = tuple(range(len(dims) - axes, len(dims)))
    want = probe / np.sqrt(np.mean(probe * probe, axis=red, keepdims=True) + eps)
    if env is None or env[out].shape != want.shape or \
            not np.allclose(env[out], want, rtol=1e-6, atol=1e-7) or \
            not _closed(cx, gr, nodes, nodes[-1]):
        return
    last, weight = nodes[-1], None
    j = gr.only_reader(out)
    if j is not None and gr.nodes[j].op_type == "Mul" and out not in cx.outputs:
        w = [i for i in gr.nodes[j].input if i != out]
        if len(w) == 1 and w[0] in cx.g.inits and \
                tuple(cx.value(w[0]).shape) == tuple(dims[len(dims) - axes:]):
            last, weight = j, w[0]
            nodes.append(j)
    text = "rmsnorm" + (f" {axes}" if axes != 1 else "") + f" eps={num(eps)}"
    end = gr.nodes[last]

    def make(cx: Converter, end=end) -> Op:
        xin = cx.tensor(end, cx.resolve(x))
        if weight is None:
            return Op(label(end), "stage", text + " affine=false", [xin], end.output[0])
        return cx.layer(end, "rmsnorm", text, [xin], end.output[0], {"weight": (weight, None)})

    cx.skip |= set(nodes) - {last}
    cx.replaced[last] = make


def _axes(cx: Converter, node, rank: int) -> int | None:
    """How many last axes a reduction with keepdims runs over; None when not the last."""
    if not cx.attr(node, "keepdims", 1):
        return None
    axes = cx.attr(node, "axes")
    if len(node.input) > 1 and node.input[1]:
        if not cx.is_const(node.input[1]):
            return None
        axes = cx.value(node.input[1]).reshape(-1).tolist()
    if not axes:
        return None
    got = sorted(int(a) % rank for a in axes)
    return len(got) if got == list(range(rank - len(got), rank)) else None


def _squash(cx: Converter, gr: Graph, k: int) -> None:
    """``squash dim=-1``: the group from the sum of squares to the product with s."""
    node = gr.nodes[k]
    s = _square_of(cx, gr, node.input[0])
    dims = cx.dims(s) if s else None
    shape = _probe_shape(dims)
    if shape is None or cx.is_const(s) or _axes(cx, node, len(dims)) != 1:
        return
    start = gr.made_by(node.input[0], "Pow", "Mul")
    # the sum of squares is read twice (the factor and the length): the group is the
    # nodes between it and the product with s
    tail = _squash_nodes(cx, gr, k, s)
    if tail is None:
        return
    nodes = sorted({start, k} | tail)
    last = max(tail)
    probe = np.random.default_rng(0).standard_normal(shape)
    env = evaluate([gr.nodes[j] for j in nodes], {s: probe}, constants(cx))
    out = gr.nodes[last].output[0]
    for eps in _eps_candidates(cx, gr, nodes):
        n2 = np.sum(probe * probe, axis=-1, keepdims=True)
        want = n2 / (1 + n2) * probe / np.sqrt(n2 + eps)
        if env is not None and env[out].shape == want.shape and \
                np.allclose(env[out], want, rtol=1e-6, atol=1e-7) and \
                _closed(cx, gr, nodes, last):
            text = "squash" + (f" eps={num(eps)}" if not np.isclose(eps, 1e-7) else "")
            end = gr.nodes[last]

            def make(cx: Converter, end=end, text=text) -> Op:
                return Op(label(end), "stage", text, [cx.tensor(end, cx.resolve(s))],
                          end.output[0])

            cx.skip |= set(nodes) - {last}
            cx.replaced[last] = make
            return


def _squash_nodes(cx: Converter, gr: Graph, k: int, s: str) -> set[int] | None:
    """The nodes computed from the sum of squares (node ``k``) up to the first that reads
    ``s`` and is read by nothing computed from the sum: at most 8 of them."""
    seen, todo = set(), [k]
    while todo:
        j = todo.pop()
        for o in gr.nodes[j].output:
            for r in gr.readers.get(o, []):
                if r in seen:
                    continue
                seen.add(r)
                if len(seen) > 8:
                    return None
                if s not in gr.nodes[r].input:
                    todo.append(r)
    ends = [j for j in seen if s in gr.nodes[j].input]
    return seen if len(ends) == 1 and max(seen) == ends[0] else None


def _eps_candidates(cx: Converter, gr: Graph, nodes: list[int]) -> list[float]:
    found = [e for j in nodes if gr.nodes[j].op_type == "Add"
             for e in (_scalar(cx, i) for i in gr.nodes[j].input) if e is not None and e != 1]
    return found or [0.0]
