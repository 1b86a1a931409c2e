"""Activations the exporters write out as element-wise formulas (GELU as ``x * 0.5 * (1 +
erf(x / sqrt 2))`` or its tanh approximation with ``Pow``, SiLU as ``x * sigmoid(x)``) as
one stage.

A chain of element-wise nodes from one tensor, each read only by the next, with scalar
constants, is evaluated (probe.py) on test values and compared with each activation's
definition; the longest chain that equals one becomes it. Anything else is left to the
node-by-node conversion.
"""

from __future__ import annotations

import math

import numpy as np

from .attention import Graph
from .convert import Converter, Op, label
from .probe import evaluate

_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Erf", "Tanh", "Sigmoid", "Exp",
                "Reciprocal", "Neg", "Sqrt"}
_ERF = np.vectorize(math.erf, otypes=[np.float64])
_PROBE = np.linspace(-6.0, 6.0, 241)

#: the stage -> its definition
ACTIVATIONS = {
    "gelu": lambda x: 0.5 * x * (1 + _ERF(x / math.sqrt(2))),
    "gelu approximate=tanh": lambda x: 0.5 * x * (
        1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    "silu": lambda x: x / (1 + np.exp(-x)),
}


def _scalar_const(cx: Converter, name: str) -> bool:
    if not cx.is_const(name):
        return False
    v = cx.value(name)
    return v.dtype != object and v.size == 1 and np.issubdtype(v.dtype, np.number)


def find_activations(cx: Converter) -> None:
    gr = Graph(cx)
    taken = set(cx.skip) | set(cx.replaced)
    for k, node in enumerate(gr.nodes):
        if k in taken or node.op_type not in _ELEMENTWISE or not node.input:
            continue
        x = next((i for i in node.input if i and not _scalar_const(cx, i)), None)
        if x is None or cx.is_const(x):
            continue
        chain = _chain(cx, gr, k, x, taken)
        if chain:
            taken |= set(chain)


def _chain(cx: Converter, gr: Graph, k: int, x: str, taken: set) -> list[int] | None:
    chain: list[int] = []
    made: set[str] = {x}
    best = None
    j = k
    while j is not None and j not in taken and gr.nodes[j].op_type in _ELEMENTWISE:
        node = gr.nodes[j]
        if not all(i in made or _scalar_const(cx, i) for i in node.input if i):
            break
        chain.append(j)
        made.add(node.output[0])
        if len(chain) > 1:
            kind = _which(cx, [gr.nodes[c] for c in chain], x, node.output[0])
            if kind is not None:
                best = (list(chain), kind)
        if node.output[0] in cx.outputs:
            break
        j = gr.only_reader(node.output[0])
        if j is not None and any(r not in chain for o in
                                 [gr.nodes[c].output[0] for c in chain[:-1]]
                                 for r in gr.readers.get(o, [])
                                 if r != j and r not in chain):
            break
    if best is None:
        return None
    chain, kind = best
    inner = [gr.nodes[c].output[0] for c in chain[:-1]]
    if any(o in cx.outputs or any(r not in chain for r in gr.readers.get(o, []))
           for o in inner):
        return None
    last = gr.nodes[chain[-1]]

    def make(cx: Converter, node=last) -> Op:
        return Op(label(node), "stage", kind, [cx.tensor(node, cx.resolve(x))],
                  node.output[0])

    cx.skip |= set(chain[:-1])
    cx.replaced[chain[-1]] = make
    return chain


def _which(cx: Converter, nodes: list, x: str, out: str) -> str | None:
    env = evaluate(nodes, {x: _PROBE.copy()},
                   lambda n: cx.value(n) if cx.is_const(n) else None)
    if env is None or out not in env or env[out].shape != _PROBE.shape:
        return None
    for kind, fn in ACTIVATIONS.items():
        if np.allclose(env[out], fn(_PROBE), rtol=1e-6, atol=1e-6):
            return kind
    return None
