"""ONNX GRU and LSTM as nnspec's ``gru`` and ``lstm`` layers (batch first, as PyTorch's).

The time-major layout ONNX uses is undone where the exporter wrote it: the input's
``Transpose(1, 0, 2)``, the output's ``Transpose(0, 2, 1, 3) -> Reshape -> Transpose(1, 0,
2)``; a layer fed by the one before (the exporter's form of ``layers=2``) is the same layer
with one more layer. Gates are reordered from ONNX's (z, r, h / i, o, f, c) to PyTorch's
(r, z, n / i, f, g, o); the initial state is zeros or a model input.
"""

from __future__ import annotations

import numpy as np

from .convert import Converter, Op, label
from .patterns import consumer

#: the stages that swap the first two axes of [T, N, F]
_TIME_MAJOR = ("transpose 0 1", "permute (1, 0, 2)")
#: op type -> (nnspec kind, gates, the ONNX gate of each of PyTorch's gates in order)
_KINDS = {"GRU": ("gru", 3, (1, 0, 2)), "LSTM": ("lstm", 4, (0, 2, 3, 1))}


class _Gates:
    """One direction's matrix or bias of a weight with ONNX's gate order, as PyTorch's."""

    def __init__(self, d: int, part: int, parts: int, order: tuple):
        self.key = (d, part, parts, order)

    def __eq__(self, other) -> bool:
        return isinstance(other, _Gates) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __call__(self, a: np.ndarray) -> np.ndarray:
        d, part, parts, order = self.key
        a = a[d]
        n = a.shape[0] // parts
        a = a[part * n:(part + 1) * n]
        g = n // len(order)
        return np.concatenate([a[k * g:(k + 1) * g] for k in order], axis=0)


def _batch_first(cx: Converter, node, x: str) -> tuple[str, Op | None]:
    """The batch-first tensor whose time-major form is ``x``, and the recurrent layer that
    computed it (None: another op)."""
    if x in cx.time_major:
        src = cx.time_major[x]
        return src, cx.producer.get(src)
    op = cx.producer.get(x)
    if op is not None and op.text in _TIME_MAJOR and cx.users.get(x) == 1 and \
            x not in cx.outputs:
        cx.ops.remove(op)
        return op.inputs[0], None
    out = f"{x}\x00batch_first"
    perm = Op(label(node), "stage", "transpose 0 1", [cx.tensor(node, x)], out)
    cx.ops.append(perm)
    cx.producer[out] = perm
    cx.tensors.add(out)
    return out, None


def _output(cx: Converter, node) -> tuple[str, str | None]:
    """(the batch-first output's name, the time-major name it also has or None)."""
    t = consumer(cx, node.output[0], "Transpose")
    if not t or list(cx.attr(t[1], "perm")) != [0, 2, 1, 3]:
        raise cx.fail(node, "its output is used other than as the exporter reshapes it "
                            "(Transpose(0, 2, 1, 3), then a Reshape)")
    users = cx.consumers.get(t[1].output[0], [])
    rs = [u for u in users if u[1].op_type == "Reshape"]
    r = rs[0] if len(rs) == 1 and all(u[1].op_type in ("Reshape", "Shape") for u in users) \
        and t[1].output[0] not in cx.outputs else None
    if not r or len(cx.dims(r[1].output[0]) or []) != 3:
        raise cx.fail(node, "its output is used other than as the exporter reshapes it "
                            "(Transpose(0, 2, 1, 3), then a Reshape)")
    cx.skip |= {t[0], r[0]}
    cx.tensors.add(t[1].output[0])  # its sizes only: every other reader is a Shape
    b = consumer(cx, r[1].output[0], "Transpose")
    if b and list(cx.attr(b[1], "perm")) == [1, 0, 2]:
        cx.skip.add(b[0])
        return b[1].output[0], None
    return f"{r[1].output[0]}\x00batch_first", r[1].output[0]


def recurrent(cx: Converter, node, ins, i) -> Op | None:
    kind, gates, order = _KINDS[node.op_type]
    if cx.attr(node, "layout", 0):
        raise cx.fail(node, "layout=1")
    if cx.attr(node, "activations") is not None or cx.attr(node, "clip") is not None:
        raise cx.fail(node, "activations or clip other than the default ones")
    if cx.attr(node, "input_forget", 0):
        raise cx.fail(node, "input_forget=1")
    if len(ins) > 4 and ins[4]:
        raise cx.fail(node, "sequence_lens (nnspec runs every step)")
    if len(ins) > 7 and ins[7]:
        raise cx.fail(node, "peephole weights (PyTorch's LSTM has none)")
    if any(o and cx.users.get(o) for o in node.output[1:]):
        raise cx.fail(node, "its final state outputs are used")
    direction = cx.attr(node, "direction", "forward")
    if direction not in ("forward", "bidirectional"):
        raise cx.fail(node, f"direction={direction}")
    hidden = int(cx.attr(node, "hidden_size"))
    w = cx.numeric(node, ins[1], "W")
    r = cx.numeric(node, ins[2], "R")
    dirs = 2 if direction == "bidirectional" else 1
    if w.ndim != 3 or w.shape[:2] != (dirs, gates * hidden) or \
            r.shape != (dirs, gates * hidden, hidden):
        raise cx.fail(node, f"W {list(w.shape)} and R {list(r.shape)} do not fit "
                            f"hidden_size={hidden}")
    bias = len(ins) > 3 and bool(ins[3])
    if bias:
        b = cx.numeric(node, ins[3], "B")
        if b.shape != (dirs, 2 * gates * hidden):
            raise cx.fail(node, f"B {list(b.shape)} does not fit hidden_size={hidden}")
    extra = ""
    if kind == "gru" and not cx.attr(node, "linear_before_reset", 0):
        extra = " reset=before"
    states = []
    for j in ((5, 6) if kind == "lstm" else (5,)):
        s = ins[j] if len(ins) > j else ""
        if s and cx.fills.get(s, 0.0) != 0.0:
            raise cx.fail(node, "an initial state of a constant other than zero")
        states.append(s if s and s not in cx.fills else "")
    x, before = _batch_first(cx, node, cx.resolve(ins[0]))
    out, time_major = _output(cx, node)
    weights = {}
    for d in range(dirs):
        tail = "_reverse" if d else ""
        weights[f"weight_ih_l{{}}{tail}"] = (ins[1], _Gates(d, 0, 1, order))
        weights[f"weight_hh_l{{}}{tail}"] = (ins[2], _Gates(d, 0, 1, order))
        if bias:
            weights[f"bias_ih_l{{}}{tail}"] = (ins[3], _Gates(d, 0, 2, order))
            weights[f"bias_hh_l{{}}{tail}"] = (ins[3], _Gates(d, 1, 2, order))
    head = f"{kind} {hidden}" + (" bidirectional" if dirs == 2 else "") + extra + \
        ("" if bias else " bias=false")
    if time_major:
        cx.time_major[time_major] = out
    if before is not None and before.kind == kind and not any(states) and \
            before.text.split(" layers=")[0] == head and cx.users.get(ins[0]) == 1:
        n = int(before.text.split(" layers=")[1].split()[0]) if " layers=" in before.text \
            else 1
        before.text = f"{head} layers={n + 1}"
        before.weights.update({k.format(n): v for k, v in weights.items()})
        before.output = out
        cx.producer[out] = before
        cx.tensors.add(out)
        return None
    text = head
    args = []
    for s, name in zip(states, ("h0", "c0")):
        if s:
            args.append(cx.tensor(node, s))
            text += f" {name}={{{len(args)}}}"
    op = cx.layer(node, kind, text, [x], out, {k.format(0): v for k, v in weights.items()})
    op.inputs += args
    return op


RECURRENT_OPS = {"GRU": recurrent, "LSTM": recurrent}
