"""Scaled dot-product attention as the exporters write it out (``q * s``, ``k`` transposed
by reshapes, ``MatMul``, a causal mask built from ``Trilu`` or none, ``Softmax``,
``MatMul`` with ``v``) as one ``sdpa(q, k, v)`` expression.

The group is found from its ``Softmax`` and checked by evaluating it (probe.py) on test
arrays of two sizes against nnspec's sdpa, causal or not, at the scale its constants give:
only a group that is the stage exactly becomes it. Nodes of the group that nothing else
reads are skipped; the last ``MatMul`` becomes the expression.
"""

from __future__ import annotations

import math

import numpy as np

from .convert import Converter, Op, label
from .probe import evaluate
from .words import num

_SCALING = ("Mul", "Div")
_MOVES = ("Reshape", "Transpose")


class Graph:
    """Who produces and who reads each value of the main graph."""

    def __init__(self, cx: Converter):
        self.nodes = list(cx.g.graph.node)
        self.producer = {o: k for k, n in enumerate(self.nodes) for o in n.output if o}
        self.readers: dict[str, list[int]] = {}
        for k, n in enumerate(self.nodes):
            for i in n.input:
                self.readers.setdefault(i, []).append(k)

    def made_by(self, value: str, *ops: str):
        k = self.producer.get(value)
        return k if k is not None and self.nodes[k].op_type in ops else None

    def only_reader(self, value: str) -> int | None:
        r = self.readers.get(value, [])
        return r[0] if len(r) == 1 else None


def _scalar(cx: Converter, name: str) -> float | None:
    if not cx.is_const(name):
        return None
    v = cx.value(name)
    if v.dtype == object or v.size != 1 or not np.issubdtype(v.dtype, np.floating):
        return None
    return float(v.reshape(-1)[0])


def _unscaled(cx: Converter, gr: Graph, value: str, moves: bool, like=None
              ) -> tuple[str, float]:
    """The tensor ``value`` is computed from by constant scalings (and, with ``moves``,
    reshapes and transposes, back to the first tensor of dims ``like`` in rank and last
    size), and the product of the scalings."""
    scale = 1.0
    while True:
        d = cx.dims(value)
        if like is not None and d is not None and len(d) == len(like) and d[-1] == like[-1]:
            return value, scale
        k = gr.made_by(value, *(_SCALING + (_MOVES if moves else ())))
        if k is None:
            return value, scale
        n = gr.nodes[k]
        if n.op_type in _SCALING:
            a, b = n.input
            s = _scalar(cx, b)
            if s is None and n.op_type == "Mul":
                s, b, a = _scalar(cx, a), a, b
            if s is None or s == 0:
                return value, scale
            scale *= s if n.op_type == "Mul" else 1 / s
            value = a
        else:
            value = n.input[0]


def _cone(cx: Converter, gr: Graph, last: int, stops: set[str]) -> list[int] | None:
    """The nodes ``last`` is computed by from ``stops`` and constants; None when it reads
    another tensor."""
    seen: set[int] = set()
    todo = [last]
    while todo:
        k = todo.pop()
        if k in seen:
            continue
        seen.add(k)
        for i in gr.nodes[k].input:
            if not i or i in stops or i in cx.g.inits:
                continue
            p = gr.producer.get(i)
            if p is None:
                return None
            todo.append(p)
    return sorted(seen)


def _sdpa(q, k, v, causal: bool, scale: float) -> np.ndarray:
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * scale
    if causal:
        t, n = s.shape[-2], s.shape[-1]
        s = np.where(np.arange(n)[None, :] <= np.arange(t)[:, None] + n - t, s, -np.inf)
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return np.matmul(e / e.sum(axis=-1, keepdims=True), v)


def _probe_sizes(dims_list, seed: int) -> list | None:
    sizes: dict = {}
    out = []
    for dims in dims_list:
        if dims is None or any(d is None for d in dims):
            return None
        out.append([d if isinstance(d, int) else
                    sizes.setdefault(d, 2 + seed * 3 + len(sizes)) for d in dims])
    return out


def find_sdpa(cx: Converter) -> None:
    """Every attention group of the graph, registered with the converter."""
    gr = Graph(cx)
    for k, node in enumerate(gr.nodes):
        if node.op_type == "Softmax" and node.domain in ("", "ai.onnx"):
            _match(cx, gr, k)


def _match(cx: Converter, gr: Graph, k: int) -> None:
    soft = gr.nodes[k]
    last = gr.only_reader(soft.output[0])
    if last is None or gr.nodes[last].op_type != "MatMul" or \
            gr.nodes[last].input[0] != soft.output[0]:
        return
    v = gr.nodes[last].input[1]
    scores = soft.input[0]
    a = gr.made_by(scores, "Add", "Where")
    mm = gr.made_by(scores, "MatMul")
    if mm is None and a is not None:
        for x in gr.nodes[a].input:
            mm = mm if mm is not None else gr.made_by(x, "MatMul")
    if mm is None:
        return
    q, sq = _unscaled(cx, gr, gr.nodes[mm].input[0], moves=False)
    if cx.dims(q) is None:
        return
    key, sk = _unscaled(cx, gr, gr.nodes[mm].input[1], moves=True, like=cx.dims(q))
    stops = {q, key, v}
    cone = _cone(cx, gr, last, stops)
    if cone is None or len(stops) != 3:
        return
    dims = [cx.dims(x) for x in (q, key, v)]
    if any(d is None or len(d) < 2 for d in dims) or not isinstance(dims[0][-1], int):
        return
    tensor_nodes = [gr.nodes[j] for j in cone if gr.nodes[j].op_type != "Constant"]
    scales = {1 / math.sqrt(dims[0][-1]), sq * sk}
    found = None
    rng = np.random.default_rng(0)
    for causal in (False, True):
        for scale in sorted(scales):
            ok = True
            for seed in (0, 1):
                shapes = _probe_sizes(dims, seed)
                if shapes is None:
                    return
                xs = [rng.standard_normal(s) for s in shapes]
                env = evaluate(tensor_nodes, dict(zip((q, key, v), xs)),
                               lambda n: cx.value(n) if cx.is_const(n) else None)
                if env is None:
                    return
                got = env[gr.nodes[last].output[0]]
                want = _sdpa(*xs, causal, scale)
                if got.shape != want.shape or not np.allclose(got, want, atol=1e-6):
                    ok = False
                    break
            if ok:
                found = (causal, scale)
                break
        if found:
            break
    if found is None:
        return
    _register(cx, gr, cone, last, (q, key, v), *found)


def _register(cx: Converter, gr: Graph, cone: list[int], last: int, qkv, causal: bool,
              scale: float) -> None:
    inside = {last}
    for j in reversed(cone):
        if j == last:
            continue
        outs = [o for o in gr.nodes[j].output if o]
        if all(o not in cx.outputs and all(r in inside for r in gr.readers.get(o, []))
               for o in outs):
            inside.add(j)
    d = cx.dims(qkv[0])[-1]
    text = "sdpa({0}, {1}, {2}" + (", causal" if causal else "")
    if not math.isclose(scale, 1 / math.sqrt(d), rel_tol=1e-6):
        text += f", scale={num(scale)}"
    text += ")"
    node = gr.nodes[last]

    def make(cx: Converter, node=node) -> Op:
        ins = [cx.tensor(node, cx.resolve(x)) for x in qkv]
        return Op(label(node), "expr", text, ins, node.output[0], base="att")

    cx.skip |= inside - {last}
    cx.replaced[last] = make
