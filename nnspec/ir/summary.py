"""Summaries of a checked model (``nnspec summary``, :meth:`Spec.summary`): per-layer
rows folded into blocks to a depth, parameter and buffer totals, weight bytes, and the
activation memory of a forward pass (the live set's peak) and of training (what autograd
keeps), symbolic where the sizes are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..core.dims import Dim
from ..layers import TensorType
from . import model as ir

#: Bytes per element of the float dtypes a summary can size weights and activations in.
ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
#: Integer tensors (token ids, ``num_batches_tracked``) are int64 whatever ``dtype`` is.
INT_ITEMSIZE = 8
#: Kinds whose output is a view of their first input (or that very tensor): they allocate
#: nothing, and their input stays alive as long as they are.
VIEW_KINDS = frozenset({"flatten", "reshape", "identity", "item", "transpose", "permute", "index",
                        "split", "chunk", "expand"})
#: Kinds whose rows the summary table hides unless asked (``--all``): the unpacking of a
#: layer's several values (``item``), a block's return of several (``pack``), and views that
#: only rearrange a tensor (torch modules have no such rows)
INTERNAL_KINDS = frozenset({"item", "pack", "reshape", "transpose", "permute", "chunk",
                            "split", "index", "expand"})
#: Kinds that are views at inference only (dropout returns its input in eval mode).
EVAL_VIEW_KINDS = VIEW_KINDS | {"dropout", "drop_path"}


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _tensor_bytes(t, itemsize: int) -> Dim:
    """Bytes of a tensor (or of every tensor of a tuple) of type ``t``, symbolic if its
    shape is."""
    if hasattr(t, "items"):
        total = Dim.const(0)
        for item in t.items:
            total = total + _tensor_bytes(item, itemsize)
        return total
    n = Dim.const(INT_ITEMSIZE if t.dtype == "int" else itemsize)
    for d in t.shape:
        n = n * d
    return n


def _at_least(a: Dim, b: Dim) -> bool:
    """``a >= b`` for every value of the symbols (each >= 1), when that is evident: every
    coefficient of ``a - b`` is >= 0 and it holds no floor/ceil. False when unknown."""
    d = a - b
    if d.is_const:
        return d.value >= 0
    return all(c >= 0 and all(isinstance(x, str) for x in mono) for mono, c in d.terms.items())


def _peak(sizes: list[Dim]) -> Dim | None:
    """The largest of ``sizes`` when one is evidently at least every other, else None (two
    symbolic sizes such as ``2*T`` and ``T + 100`` have no maximum without values of T)."""
    if not sizes:
        return Dim.const(0)
    if all(d.is_const for d in sizes):
        return max(sizes, key=lambda d: d.value)
    # the likely maxima are the largest at a sample point: checking only those keeps this
    # linear in the layers (a 5,000-layer model has 5,000 sizes)
    syms = set().union(*(d.symbols() for d in sizes))
    for point in (64, 1):
        env = dict.fromkeys(syms, point)
        cand = max(sizes, key=lambda d: d.evaluate(env))
        if all(_at_least(cand, other) for other in sizes):
            return cand
    return None


@dataclass
class SummaryRow:
    """One row of ``nnspec summary``: a layer, or (with ``depth``) a block call folded into
    one row whose figures are the sums over its layers."""

    name: str
    kind: str
    line: int | None
    args: str
    inputs: list
    output: TensorType
    params: int  # trainable parameters (nn.Parameter elements that get gradients)
    non_trainable: int  # parameters that get no gradient (none yet: nothing can be frozen)
    buffers: int  # non-parameter state_dict elements (batchnorm's running statistics)
    macs: Dim
    layers: int = 1
    node_id: str = ""  # the (last) IR node of the row
    # the rows (or model inputs) whose outputs it reads, internal rows seen through
    connected: list[str] = field(default_factory=list)
    internal: bool = False  # an item, pack or rearranging view (see INTERNAL_KINDS)
    shared: bool = False  # a shared layer applied again (its weights counted once)


@dataclass
class ModelSummary:
    """A model's summary rows and totals. Byte figures are in ``dtype`` (int tensors: int64);
    activation figures are per sample: the batch dim (``batch``, the first dim of the first
    input when it is a symbol) is set to 1, and symbols in ``dims`` are bound first.

    - ``inference_bytes``: the largest set of tensors alive at once in a forward pass in
      the IR's order (the inputs included; a tensor lives from the layer that makes it to
      its last reader; views and eval-mode dropout allocate nothing);
    - ``training_bytes``: every tensor the forward pass makes, and the inputs, kept for the
      backward pass (views excluded): autograd's saved tensors, as an upper bound (gradient
      buffers and optimiser state not included).

    A figure that stays symbolic is a Dim; None when symbolic sizes have no evident maximum.
    """

    model: ir.Model
    rows: list[SummaryRow]
    params: int
    non_trainable: int
    buffers: int
    macs: Dim
    dtype: str
    weight_bytes: int
    batch: str | None
    inference_bytes: Dim | None
    training_bytes: Dim
    output: TensorType | None = None  # the model's output type
    # each block call (a dotted name prefix) as one folded row, for the table's tree
    blocks: dict[str, SummaryRow] = field(default_factory=dict)


def _fold(rows: list[SummaryRow], nodes: dict[str, ir.Node], types: dict, depth: int
          ) -> list[SummaryRow]:
    """Rows with names of more than ``depth`` dotted parts folded into one row per prefix of
    ``depth`` parts: the module tree at that depth, as torchinfo's ``depth`` shows it."""
    groups: list[tuple[str, list[SummaryRow]]] = []
    for r in rows:
        parts = r.name.split(".")
        key = ".".join(parts[:depth]) if len(parts) > depth else None
        if key is not None and groups and groups[-1][0] == key:
            groups[-1][1].append(r)
        else:
            groups.append((key if key is not None else "", [r]))
    out = []
    for key, members in groups:
        if not key:
            out.extend(members)
            continue
        out.append(_folded_row(key, members, nodes, types, depth))
    return out


def _blocks(rows: list[SummaryRow], nodes: dict, types: dict) -> dict[str, SummaryRow]:
    """Every block call (a proper prefix of a dotted name) folded into one row."""
    members: dict[str, list[SummaryRow]] = {}
    for r in rows:
        parts = r.name.split(".")
        for k in range(1, len(parts)):
            members.setdefault(".".join(parts[:k]), []).append(r)
    return {key: _folded_row(key, rs, nodes, types, key.count(".") + 1)
            for key, rs in members.items()}


def _folded_row(key: str, members: list[SummaryRow], nodes: dict, types: dict, depth: int
                ) -> SummaryRow:
    ids = {r.node_id for r in members}
    chains = [list(reversed(nodes[r.node_id].called_from)) for r in members]  # outer first
    common = 0
    while all(len(c) > common and c[common] == chains[0][common] for c in chains):
        common += 1
    children = {r.name.split(".")[depth] for r in members}
    repeated = len(children) > 1 and all(c.isdigit() for c in children)
    if common:
        call = chains[0][common - 1]
        kind, line = call[0], call[2]
    else:
        kinds = {r.kind for r in members}
        kind, line = (kinds.pop() if len(kinds) == 1 else "group"), members[0].line
    if repeated:
        kind = f"{kind} * {len(children)}"
    first = nodes[members[0].node_id]
    outside = [types[i] for i in first.inputs if i not in ids]
    macs = Dim.const(0)
    for r in members:
        macs = macs + r.macs
    inner = key + "."
    connected = list(dict.fromkeys(c for r in members for c in r.connected
                                   if not c.startswith(inner)))
    return SummaryRow(key, kind, line, f"{len(members)} layers", outside or members[0].inputs,
                      members[-1].output, sum(r.params for r in members),
                      sum(r.non_trainable for r in members), sum(r.buffers for r in members),
                      macs, len(members), members[-1].node_id, connected)


def _written(spec, node, text: str, ins: list) -> str:
    """``text`` (the kind's summary of its arguments) with each tensor argument as the spec
    wrote it (``label=label``, ``h0=h``) instead of its input index or shape."""
    for a in node.kind.tensor_args:
        i = getattr(node.p, a, None)
        span = node.arg_spans.get(a)
        src = spec.sources.get(span[0]) if span else None
        if i is None or src is None or span[1] != span[3]:
            continue
        value = re.sub(r"^\w+\s*=\s*", "", src.line_text(span[1])[span[2] - 1:span[4] - 1])
        for shown in (f"{a}={ins[i]}", f"{a}={i}"):
            found = re.search(rf"(^| ){re.escape(shown)}(?= |$)", text)
            if found:
                text = text[:found.start()] + found.group(1) + f"{a}={value}" + \
                    text[found.end():]
                break
        else:
            text = f"{text} {a}={value}".strip()
    return text


def summarise(spec, name: str | None, dtype: str, depth: int | None,
              dims: dict[str, int] | None) -> ModelSummary:
    """The summary of a :class:`~nnspec.ir.spec.Spec`'s model (see ``Spec.summary``)."""
    if dtype not in ITEMSIZE:
        raise ValueError(f"dtype must be one of {', '.join(ITEMSIZE)}, not {dtype!r}")
    itemsize = ITEMSIZE[dtype]
    m = spec.model(name)
    types = spec.results[m.name].types
    rows = []
    weight_bytes = 0
    seen: dict[str, str] = {i.id: i.name for i in m.inputs}  # value -> the row showing it
    for r in spec.layers(m.name):
        buffers = 0
        for w in r.weights.values():
            if w.tied:
                continue  # the memory of the parameter it is tied to
            n = _numel(w.shape)
            weight_bytes += n * (INT_ITEMSIZE if w.dtype == "int" else itemsize)
            if not w.trainable:
                buffers += n
        node = r.node
        args = _written(spec, node, node.kind.detail(node.p, r.inputs), r.inputs)
        ties = " ".join(f"{k}={o}.{ok}{'.T' if t else ''}" for k, (o, ok, t) in
                        node.ties.items())
        args = " ".join(filter(None, [args, ties]))
        internal = node.op in INTERNAL_KINDS and not r.params and not buffers
        connected = list(dict.fromkeys(seen.get(v, v) for v in node.inputs))
        seen[node.id] = seen.get(node.inputs[0], r.name) if internal and node.inputs \
            else r.name
        rows.append(SummaryRow(r.name, r.kind, node.span[1] if node.span else None,
                               args, r.inputs, r.output, r.params, 0, buffers, r.macs,
                               node_id=node.id, connected=connected, internal=internal,
                               shared=node.shared))
    nodes = {n.id: n for n in m.nodes}
    batch = None
    if m.inputs and m.inputs[0].shape:
        first = Dim.parse(m.inputs[0].shape[0]) if m.inputs[0].shape[0] != "_" else None
        if first is not None and not first.is_const and str(first) in first.symbols():
            batch = str(first)
    env: dict[str, int] = dict(dims or {})
    if batch is not None:
        env[batch] = 1
    inference, training = _activation_bytes(m, types, itemsize, env)
    params = sum(r.params for r in rows)
    shown = _fold(rows, nodes, types, depth) if depth is not None else rows
    macs = Dim.const(0)
    for r in rows:
        macs = macs + r.macs
    return ModelSummary(m, shown, params, 0, sum(r.buffers for r in rows), macs, dtype,
                        weight_bytes, batch, inference, training, spec.results[m.name].output(),
                        _blocks(rows, nodes, types))


def _activation_bytes(m: ir.Model, types: dict, itemsize: int, env: dict[str, int]
                      ) -> tuple[Dim | None, Dim]:
    """(inference peak, training total) bytes; see :class:`ModelSummary`."""

    def size(value: str) -> Dim:
        t = types.get(value)
        return Dim.const(0) if t is None else _tensor_bytes(t, itemsize).subs(env)

    training = Dim.const(0)
    for i in m.inputs:
        training = training + size(i.id)
    root: dict[str, str] = {i.id: i.id for i in m.inputs}
    for n in m.nodes:
        if n.op in VIEW_KINDS and n.inputs:
            root[n.id] = root.get(n.inputs[0], n.inputs[0])
        else:
            root[n.id] = n.id
            training = training + size(n.id)
    # inference: a storage lives from its maker to the last reader of any view of it
    eval_root = dict(root)
    for n in m.nodes:
        if n.op in EVAL_VIEW_KINDS and n.inputs:
            eval_root[n.id] = eval_root.get(n.inputs[0], n.inputs[0])
    born: dict[str, int] = {eval_root[i.id]: 0 for i in m.inputs}
    last: dict[str, int] = dict(born)
    for step, n in enumerate(m.nodes):
        born.setdefault(eval_root[n.id], step)
        last.setdefault(eval_root[n.id], step)
        for v in n.inputs:
            r = eval_root.get(v, v)
            last[r] = max(last.get(r, step), step)
    last[eval_root.get(m.output, m.output)] = len(m.nodes)
    # sweep: a storage joins the live set at its maker's step, leaves after its last reader
    joins: dict[int, list[str]] = {}
    leaves: dict[int, list[str]] = {}
    for r, b in born.items():
        joins.setdefault(b, []).append(r)
        leaves.setdefault(last.get(r, b), []).append(r)
    live = Dim.const(0)
    sizes = []
    for step in range(max(len(m.nodes), 1)):
        for r in joins.get(step, ()):
            live = live + size(r)
        sizes.append(live)
        for r in leaves.get(step, ()):
            live = live - size(r)
    return _peak(sizes), training
