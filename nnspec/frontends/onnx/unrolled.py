"""An Elman RNN unrolled by the exporter (torch's ``nn.RNN`` over a sequence of fixed
length T, written out step by step) as one ``rnn`` layer.

The form: ``x`` made time-major (``Transpose(1, 0, 2)``), its input projection ``MatMul(W)
+ b_ih`` for every step at once, cut into steps (``Slice``/``Squeeze`` or ``Gather``);
then per step ``act(MatMul(h, R) + b_hh + g_t)`` from a zero state, ``act`` ``Relu`` or
``Tanh``; the T states joined by ``Concat`` on axis 0 (and made batch-first again). Every
step's ``R`` and ``b_hh`` must be equal, and the whole group is evaluated (probe.py) at two
batch sizes and must equal nnspec's ``rnn`` (layers/recurrent.py) with those weights.
"""

from __future__ import annotations

import numpy as np

from ...layers.base import NumpyCtx
from ...layers.recurrent import RNN
from .attention import Graph, cone_of, given_shapes
from .convert import Converter, Op, label
from .probe import constants, evaluate

_ACTS = {"Relu": "relu", "Tanh": "tanh"}
_MAX_STEPS = 512
_KIND = RNN()


def find_unrolled_rnn(cx: Converter) -> None:
    gr = Graph(cx)
    for k, node in enumerate(gr.nodes):
        if node.op_type == "Concat" and node.domain in ("", "ai.onnx") and \
                k not in cx.skip and k not in cx.replaced and \
                cx.attr(node, "axis", 0) == 0 and 1 <= len(node.input) <= _MAX_STEPS:
            _match(cx, gr, k)


def _const(cx: Converter, name: str, ndim: int) -> np.ndarray | None:
    if not name or not cx.is_const(name):
        return None
    v = cx.value(name)
    return v if v.dtype != object and v.ndim == ndim and \
        np.issubdtype(v.dtype, np.floating) else None


def _linear(cx: Converter, gr: Graph, value: str):
    """(tensor, matrix name, bias name or "") when ``value`` is ``MatMul(tensor, M) + b``
    or ``MatMul(tensor, M)`` with constant M and b."""
    bias = ""
    k = gr.made_by(value, "Add")
    if k is not None:
        a, b = gr.nodes[k].input
        if _const(cx, b, 1) is None:
            a, b = b, a
        if _const(cx, b, 1) is None:
            return None
        bias, value = b, a
    m = gr.made_by(value, "MatMul")
    if m is None or _const(cx, gr.nodes[m].input[1], 2) is None:
        return None
    return gr.nodes[m].input[0], gr.nodes[m].input[1], bias


def _step(cx: Converter, gr: Graph, h: str):
    """(act op, previous state, R, b_hh, the input part) of one step's output ``h``."""
    a = gr.made_by(h, *_ACTS)
    s = a is not None and gr.made_by(gr.nodes[a].input[0], "Add")
    if not s:
        return None
    u, v = gr.nodes[s].input
    for rec, part in ((u, v), (v, u)):
        lin = _linear(cx, gr, rec)
        if lin is not None and lin[2]:
            return gr.nodes[a].op_type, lin[0], lin[1], lin[2], part
        if lin is not None:
            return None  # without a bias: the input part's own Add is ambiguous
    return None


def _source(cx: Converter, gr: Graph, part: str):
    """(x, W, b_ih) when ``part`` is one step cut from ``Transpose(x) @ W + b_ih``."""
    value = part
    for _ in range(4):
        k = gr.producer.get(value)
        if k is None:
            return None
        n = gr.nodes[k]
        if n.op_type not in ("Squeeze", "Slice", "Gather", "Unsqueeze"):
            break
        value = n.input[0]
    lin = _linear(cx, gr, value)
    if lin is None or not lin[2]:
        return None
    t = gr.made_by(lin[0], "Transpose")
    if t is None or list(cx.attr(gr.nodes[t], "perm", [])) != [1, 0, 2]:
        return None
    return gr.nodes[t].input[0], lin[1], lin[2]


def _cone(cx: Converter, gr: Graph, last: int, x: str):
    """(nodes, Shape nodes) ``last`` is computed by from ``x``, constants and sizes."""
    return cone_of(cx, gr, last, x, 12 * len(gr.nodes[last].input) + 40)


def _match(cx: Converter, gr: Graph, k: int) -> bool:
    cat = gr.nodes[k]
    steps = list(cat.input)
    found = [_step(cx, gr, h) for h in steps]
    if any(f is None for f in found) or len({f[0] for f in found}) != 1:
        return False
    if any(found[t][1] != steps[t - 1] for t in range(1, len(steps))):
        return False
    src = _source(cx, gr, found[0][4])
    if src is None:
        return False
    x, w_name, bi_name = src
    dims = cx.dims(x)
    w, r = cx.value(w_name), cx.value(found[0][2])
    if dims is None or len(dims) != 3 or dims[1] != len(steps) or dims[2] != w.shape[0] or \
            r.shape != (w.shape[1], w.shape[1]):
        return False
    b_ih, b_hh = cx.value(bi_name), cx.value(found[0][3])
    for f in found[1:]:
        if not np.array_equal(cx.value(f[2]), r) or not np.array_equal(cx.value(f[3]), b_hh):
            return False
    hidden = w.shape[1]
    if b_ih.shape != (hidden,) or b_hh.shape != (hidden,):
        return False
    cone = _cone(cx, gr, k, x)
    if cone is None:
        return False
    nodes, shapes = cone
    act = _ACTS[found[0][0]]
    p = RNN.Params(hidden=hidden, nonlinearity=act)
    weights = {"weight_ih_l0": w.T, "weight_hh_l0": r.T, "bias_ih_l0": b_ih,
               "bias_hh_l0": b_hh}
    if not _verified(cx, gr, nodes, shapes, x, dims, p, weights, cat.output[0]):
        return False
    # the group's nodes, once nothing outside it reads them; every step must go
    made = {x}
    mine = set()
    for j in nodes:
        if any(i in made for i in gr.nodes[j].input):
            mine.add(j)
            made.update(o for o in gr.nodes[j].output if o)
    inside = {k}
    for j in sorted(nodes, reverse=True):
        if j != k and all(o not in cx.outputs and all(rd in inside for rd in
                                                      gr.readers.get(o, []))
                          for o in gr.nodes[j].output if o):
            inside.add(j)
    if not mine <= inside:
        return False
    out, end = cat.output[0], k
    t = gr.only_reader(out)
    if t is not None and out not in cx.outputs and gr.nodes[t].op_type == "Transpose" and \
            list(cx.attr(gr.nodes[t], "perm", [])) == [1, 0, 2]:
        inside.add(t)
        out, end = gr.nodes[t].output[0], t
    text = f"rnn {hidden}" + (" nonlinearity=relu" if act == "relu" else "")
    sources = {"weight_ih_l0": (w_name, "T"), "weight_hh_l0": (found[0][2], "T"),
               "bias_ih_l0": (bi_name, None), "bias_hh_l0": (found[0][3], None)}
    named = gr.nodes[gr.producer[found[0][4]]] if found[0][4] in gr.producer else cat
    batch_first = out if end != k else f"{out}\x00batch_first"

    def make(cx: Converter) -> Op:
        return cx.layer(named, "rnn", text, [cx.tensor(cat, cx.resolve(x))], batch_first,
                        sources)

    cx.skip |= inside - {end}
    if end != k:
        cx.replaced[end] = make
        return True
    # time-major Concat read as such: the rnn, then its output made time-major again
    last = gr.producer[steps[-1]]
    cx.skip.discard(last)
    cx.replaced[last] = make
    cx.replaced[k] = lambda cx: Op(label(cat), "stage", "transpose 0 1",
                                   [batch_first], out)
    return True


def _verified(cx, gr, nodes, shapes, x, dims, p, weights, out) -> bool:
    """The group equals ``rnn`` at two batch sizes."""
    for seed in (0, 1):
        sizes, shape = {}, []
        for j, d in enumerate(dims):
            if isinstance(d, int):
                shape.append(d)
            elif isinstance(d, str):
                shape.append(sizes.setdefault(d, 2 + seed * 3 + j))
            else:
                return False
        given = given_shapes(cx, gr, shapes, sizes)
        if given is None:
            return False
        probe = np.random.default_rng(seed).standard_normal(shape)
        given[x] = probe
        env = evaluate([gr.nodes[j] for j in nodes], given, constants(cx, sizes))
        got = None if env is None else env.get(out)
        if got is None:
            return False
        want = _KIND.numpy(p, weights, [probe], NumpyCtx()).transpose(1, 0, 2)
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-5):
            return False
    return True
