"""Scaled dot-product attention as the exporters write it out (``q * s``, ``k`` transposed
by reshapes, ``MatMul``, a causal mask built from ``Trilu`` or none, ``Softmax``,
``MatMul`` with ``v``) as one ``sdpa(q, k, v)`` expression.

The group is found from its ``Softmax`` and checked by evaluating it (probe.py) on test
arrays of two sizes against nnspec's sdpa, causal or not, at the scale its constants give:
only a group that is the stage exactly becomes it. Nodes of the group that nothing else
reads are skipped; the last ``MatMul`` becomes the expression.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ...layers.attention import visible_numpy
from .convert import Converter, Op, label
from .probe import constants, evaluate, sized
from .words import num

_SCALING = ("Mul", "Div")
# reshapes and transposes, and the repeat of key/value heads (grouped-query attention)
_MOVES = ("Reshape", "Transpose", "Expand", "Unsqueeze")
_COMPARES = {"Less", "Greater", "LessOrEqual", "GreaterOrEqual"}
_INT_TYPES = {2, 3, 4, 5, 6, 7, 9, 12, 13}
_MAX_CONE = 80


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


def _cone(cx: Converter, gr: Graph, last: int, stops: set[str], masked: bool = False):
    """(nodes, Shape nodes of other tensors, the int mask) ``last`` is computed by from
    ``stops``, constants and sizes; with ``masked``, an int tensor cast to bool is the
    mask. None when it reads another tensor."""
    seen: set[int] = set()
    shapes: set[int] = set()
    mask = None
    todo = [last]
    while todo:
        k = todo.pop()
        if k in seen:
            continue
        n = gr.nodes[k]
        if n.op_type == "Shape" and n.input[0] not in stops:
            shapes.add(k)
            continue
        seen.add(k)
        if len(seen) > _MAX_CONE:
            return None
        if masked and n.op_type == "Cast" and cx.attr(n, "to") == 9 and \
                not cx.is_const(n.input[0]):
            v = cx.g.values.get(n.input[0])
            if v is None or v.elem not in _INT_TYPES or mask not in (None, n.input[0]):
                return None
            mask = n.input[0]
            continue
        for i in n.input:
            if not i or i in stops or i in cx.g.inits or i in cx.const:
                continue
            p = gr.producer.get(i)
            if p is None:
                return None
            todo.append(p)
    return sorted(seen), shapes, mask


def tables_matched(cx: Converter, match) -> None:
    """``match(cx, gr, k)`` at every Add not yet taken: the nodes of the tables it returns
    (rope's cosines, a sinusoidal position table) are dropped once nothing but the matched
    groups reads them."""
    gr = Graph(cx)
    tables: set[int] = set()
    for k, node in enumerate(gr.nodes):
        if node.op_type == "Add" and node.domain in ("", "ai.onnx") and \
                k not in cx.skip and k not in cx.replaced:
            found = match(cx, gr, k)
            if found:
                tables |= found
    gone = cx.skip | set(cx.replaced)
    for j in sorted(tables, reverse=True):
        outs = [o for o in gr.nodes[j].output if o]
        if all(o not in cx.outputs and all(r in gone for r in gr.readers.get(o, []))
               for o in outs):
            cx.skip.add(j)
            gone.add(j)


def cone_of(cx: Converter, gr: Graph, last: int, x: str, limit: int):
    """(nodes, Shape nodes) ``last`` is computed by from ``x``, constants and the sizes of
    tensors; None when it reads another tensor or takes more than ``limit`` nodes."""
    seen, shapes, todo = set(), set(), [last]
    while todo:
        k = todo.pop()
        if k in seen or k in shapes:
            continue
        if gr.nodes[k].op_type == "Shape":
            shapes.add(k)
            continue
        seen.add(k)
        if len(seen) > limit:
            return None
        for i in gr.nodes[k].input:
            if not i or i == x or i in cx.g.inits or i in cx.const:
                continue
            p = gr.producer.get(i)
            if p is None:
                return None
            todo.append(p)
    return sorted(seen), shapes


def given_shapes(cx: Converter, gr: Graph, shapes, sizes: dict) -> dict | None:
    """The values of Shape nodes of tensors outside a group, at the probe's sizes."""
    out = {}
    for j in shapes:
        n = gr.nodes[j]
        d = cx.dims(n.input[0])
        if d is None:
            return None
        d = d[slice(cx.attr(n, "start", 0), cx.attr(n, "end", len(d)))]
        v = sized(np.array(d, dtype=object), sizes)
        if v is None:
            return None
        out[n.output[0]] = v
    return out


def _sdpa(q, k, v, causal: bool, scale: float, mask=None, window=None, cap=None):
    """nnspec's sdpa (layers/sdpa.py): GQA by shapes, the int mask nonzero = attend."""
    if k.ndim >= 3 and q.ndim == k.ndim and k.shape[-3] != q.shape[-3]:
        if k.shape[-3] == 0 or q.shape[-3] % k.shape[-3]:
            return None
        g = q.shape[-3] // k.shape[-3]
        k, v = np.repeat(k, g, axis=-3), np.repeat(v, g, axis=-3)
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * scale
    if cap is not None:
        s = np.tanh(s / cap) * cap
    if mask is not None and np.issubdtype(mask.dtype, np.integer):
        s = np.where(mask != 0, s, -np.inf)
    elif mask is not None:
        s = s + mask
    seen = visible_numpy(s.shape[-2], s.shape[-1], causal, window)
    if seen is not None:
        s = np.where(seen, s, -np.inf)
    top = s.max(axis=-1, keepdims=True)
    e = np.exp(s - np.where(np.isneginf(top), 0.0, top))
    total = e.sum(axis=-1, keepdims=True)
    return np.matmul(e / np.where(total == 0, 1.0, total), v)


def _probe_sizes(dims_list, seed: int) -> tuple[list, dict] | None:
    sizes: dict = {}
    out = []
    for dims in dims_list:
        if dims is None or any(d is None for d in dims):
            return None
        out.append([d if isinstance(d, int) else
                    sizes.setdefault(d, 2 + seed * 3 + len(sizes)) for d in dims])
    return out, sizes


def find_sdpa(cx: Converter) -> None:
    """Every attention group of the graph, registered with the converter; then the nodes
    the groups share (a mask made once for every layer), once nothing else reads them."""
    gr = Graph(cx)
    shared: set[int] = set()
    for k, node in enumerate(gr.nodes):
        if node.op_type == "Softmax" and node.domain in ("", "ai.onnx"):
            shared |= _match(cx, gr, k) or set()
    gone = cx.skip | set(cx.replaced)
    for j in sorted(shared - gone, reverse=True):
        outs = [o for o in gr.nodes[j].output if o]
        if gr.nodes[j].op_type != "Shape" and all(
                o not in cx.outputs and all(r in gone for r in gr.readers.get(o, []))
                for o in outs):
            cx.skip.add(j)
            gone.add(j)


def _after_softmax(gr: Graph, soft) -> int | None:
    """The MatMul of the weights: read directly, or through ``Where(IsNaN(w), 0, w)``."""
    out = soft.output[0]
    readers = gr.readers.get(out, [])
    if len(readers) == 1 and gr.nodes[readers[0]].op_type == "Where" and \
            gr.nodes[readers[0]].input[2] == out:
        out = gr.nodes[readers[0]].output[0]  # the rows that see no key set to zero
    elif len(readers) == 2:
        kinds = {gr.nodes[r].op_type: r for r in readers}
        if set(kinds) != {"IsNaN", "Where"}:
            return None
        w = gr.nodes[kinds["Where"]]
        if list(w.input[1:]).count(out) != 1 or w.input[0] != gr.nodes[kinds["IsNaN"]].output[0]:
            return None
        out = w.output[0]
    last = gr.only_reader(out)
    if last is None or gr.nodes[last].op_type != "MatMul" or gr.nodes[last].input[0] != out:
        return None
    return last


def _scores_matmul(cx: Converter, gr: Graph, value: str, depth: int = 6) -> int | None:
    """The MatMul of q and k the scores are computed from (through a mask's Add or Where,
    a soft cap's Div, Tanh and Mul)."""
    todo = [(value, 0)]
    while todo:
        v, d = todo.pop(0)
        k = gr.made_by(v, "MatMul", "Add", "Where", "Mul", "Div", "Tanh")
        if k is None or d > depth:
            continue
        n = gr.nodes[k]
        if n.op_type == "MatMul":
            if not any(cx.is_const(i) or i in cx.g.inits for i in n.input):
                return k
            continue
        todo.extend((i, d + 1) for i in n.input if i and not cx.is_const(i))
    return None


def _match(cx: Converter, gr: Graph, k: int) -> set[int] | None:
    soft = gr.nodes[k]
    last = _after_softmax(gr, soft)
    if last is None:
        return None
    v = gr.nodes[last].input[1]
    mm = _scores_matmul(cx, gr, soft.input[0])
    if mm is None:
        return None
    q, sq = _unscaled(cx, gr, gr.nodes[mm].input[0], moves=False)
    if cx.dims(q) is None:
        return None
    key, sk = _unscaled(cx, gr, gr.nodes[mm].input[1], moves=True, like=cx.dims(q))
    v, _ = _unscaled(cx, gr, v, moves=True, like=cx.dims(q)[:-1] + [cx.dims(v)[-1]]
                     if cx.dims(v) and isinstance(cx.dims(v)[-1], int) else cx.dims(q))
    stops = {q, key, v}
    cone = _cone(cx, gr, last, stops) or _cone(cx, gr, last, stops, masked=True)
    if cone is None or len(stops) != 3:
        return None
    nodes, shapes, mask = cone
    fill = _fill(cx, gr, nodes, mask) if mask else None
    if mask and fill is None:
        return None
    dims = [cx.dims(x) for x in (q, key, v)] + ([cx.dims(mask)] if mask else [])
    if any(d is None or len(d) < 2 for d in dims) or not isinstance(dims[0][-1], int):
        return None
    tensor_nodes = [gr.nodes[j] for j in nodes if gr.nodes[j].op_type != "Constant"]
    ops = {n.op_type for n in tensor_nodes}
    consts = [x for n in tensor_nodes for x in n.input if x and cx.is_const(x)]
    nums = [float(cx.value(x).reshape(-1)[0]) for x in consts
            if cx.value(x).dtype != object and cx.value(x).size == 1]
    caps = [None] + sorted({abs(c) for c in nums if c not in (0, 1)} if "Tanh" in ops else [])
    windows = _windows(cx, gr, nodes) + [None]
    scales = sorted({1 / math.sqrt(dims[0][-1]), sq * sk} |
                    {sq * sk * s for s in _scaled_after(cx, gr, mm)})
    rng = np.random.default_rng(0)
    probes = []
    for seed in (0, 1):
        got = _probe_sizes(dims, seed)
        given = got and given_shapes(cx, gr, shapes, got[1])
        if given is None:
            return None
        xs = [rng.standard_normal(s) for s in got[0][:3]]
        if mask:  # the first example's keys all hidden, the last's all seen
            m = rng.integers(0, 3, got[0][3])
            m[0], m[-1] = 0, 2
            xs.append(m)
        given.update(zip((q, key, v, mask), xs))
        env = evaluate(tensor_nodes, given, constants(cx, got[1]))
        if env is None:
            return None
        probes.append((xs, env[gr.nodes[last].output[0]]))
    for causal, scale, window, cap in itertools.product((False, True), scales, windows, caps):
        with np.errstate(all="ignore"):
            same = all(_same(_sdpa(*xs[:3], causal, scale, _mask(xs, fill), window, cap),
                            got) for xs, got in probes)
        if same:
            return _register(cx, gr, nodes, last, (q, key, v, mask), causal, scale, window,
                             cap, fill)
    return None


def _scaled_after(cx: Converter, gr: Graph, mm: int) -> list[float]:
    """The products of the constant scalings that follow the scores' MatMul, each
    prefix of the chain (a soft cap's division may follow the scale)."""
    out, scale, value = [], 1.0, gr.nodes[mm].output[0]
    while True:
        j = gr.only_reader(value)
        n = gr.nodes[j] if j is not None else None
        if n is None or n.op_type not in _SCALING:
            return out
        s = next((_scalar(cx, x) for x in n.input if x != value), None)
        if s is None or s == 0:
            return out
        scale *= s if n.op_type == "Mul" else 1 / s
        out.append(scale)
        value = n.output[0]


def _windows(cx: Converter, gr: Graph, nodes: list[int]) -> list[int]:
    """The sliding windows the group may have: the int constants subtracted from (or added
    to) the positions that a comparison reads. A window no shorter than the test arrays
    cannot be told from none by them: one that the structure gives is taken first."""
    found = set()
    for j in nodes:
        n = gr.nodes[j]
        if n.op_type not in ("Sub", "Add") or not any(
                gr.nodes[r].op_type in _COMPARES for r in gr.readers.get(n.output[0], [])):
            continue
        for x in n.input:
            v = cx.value(x) if x and cx.is_const(x) else None
            if v is not None and v.dtype != object and v.size == 1:
                c = float(v.reshape(-1)[0])
                if 1 <= c < 2**31 and c == int(c):
                    found.add(int(c))
    return sorted(found)


def _fill(cx: Converter, gr: Graph, nodes: list[int], mask: str) -> float | None:
    """What the hidden keys' scores get: -inf where the int mask (cast to bool) is applied
    as such, or the finite value ``b`` of ``Where(mask, 0, b)`` added to the scores."""
    casts = [j for j in nodes if gr.nodes[j].op_type == "Cast" and
             gr.nodes[j].input[0] == mask]
    readers = {r for j in casts for r in gr.readers.get(gr.nodes[j].output[0], [])}
    if len(readers) != 1:
        return None
    w = gr.nodes[readers.pop()]
    if w.op_type != "Where" or len(casts) != 1 or w.input[0] != gr.nodes[casts[0]].output[0]:
        return None
    a, b = _scalar(cx, w.input[1]), _scalar(cx, w.input[2])
    if a != 0 or b is None or math.isnan(b) or b == math.inf:
        return None
    return b


def _mask(xs, fill):
    if len(xs) < 4:
        return None
    if fill == -math.inf:
        return xs[3]
    return np.where(xs[3] != 0, 0.0, fill)


def _same(want, got) -> bool:
    return want is not None and got.shape == want.shape and \
        np.allclose(got, want, atol=1e-6)


def _register(cx: Converter, gr: Graph, cone: list[int], last: int, qkv, causal: bool,
              scale: float, window, cap, fill=None) -> set[int]:
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
    if qkv[3]:
        text += ", mask={3}"
    if not math.isclose(scale, 1 / math.sqrt(d), rel_tol=1e-6):
        text += f", scale={num(scale)}"
    if cap is not None:
        text += f", softcap={num(cap)}"
    if window is not None:
        text += f", window={window}"
    text += ")"
    node = gr.nodes[last]

    def make(cx: Converter, node=node) -> Op:
        ins = [cx.tensor(node, cx.resolve(x)) for x in qkv if x]
        if fill is not None and fill != -math.inf:
            ins[3] = _float_mask(cx, node, ins[3], fill)
        return Op(label(node), "expr", text, ins, node.output[0], base="att")

    cx.skip |= inside - {last}
    cx.replaced[last] = make
    return set(cone) - inside


def _float_mask(cx: Converter, node, m: str, fill: float) -> str:
    """``Where(m != 0, 0, fill)`` of an int mask as a float tensor, made once."""
    key = f"\x00mask:{m}:{fill!r}"
    if key not in cx.tensors:
        op = Op(label(node), "expr", f"((1.0 - to_float(ne({{0}}, 0))) * ({num(fill)}))", [m],
                key, base="mask")
        cx.ops.append(op)
        cx.producer[key] = op
        cx.tensors.add(key)
    return key
