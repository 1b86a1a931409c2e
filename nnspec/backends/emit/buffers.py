"""The ``buffer`` layers of the emitted source: a constant computed in ``__init__`` and
registered there (``self.register_buffer("relative_position_index", index,
persistent=True)``), read in forward as ``self.relative_position_index``.

The layers a buffer is computed from are written in ``__init__`` as one local variable each,
from their plans (the calls forward would make, without ``device=``: the buffer moves with
the module's ``.to()``); the layers only buffers read are left out of forward, and a buffer
reads nothing there (:func:`strip`).
"""

from __future__ import annotations

from dataclasses import replace

from ...ir.names import MODULE_ATTRS, py_name
from ...layers.base import In, InputDevice
from ..plans import BUFFER
from .literals import _INFIX, _call_src, _dim_src, _str
from .constructors import _Slot
from .naming import _RESERVED_LOCALS, _attr_ok


def strip(rows: list, bufs) -> list:
    """The rows forward is written from: without the layers only buffers read, and each
    buffer reading nothing (its value is the module's)."""
    if not bufs:
        return rows
    return [(node.model_copy(update={"inputs": []}) if node.id in bufs.nodes else node, r, plan)
            for node, r, plan in rows if node.id not in bufs.only]


def sources(rows: list, bufs) -> dict:
    """buffer node id -> (the buffer's node, the rows of the layers it is computed from)."""
    by_id = {row[0].id: row for row in rows}
    return {b: (node, [by_id[v] for v in bufs.sources[b]]) for b, node in bufs.nodes.items()}


def ref(parent: str, leaf: str) -> str:
    """``self.index``, or ``self._buffers["forward"]`` where attribute access would find
    something else."""
    return f"{parent}.{leaf}" if _attr_ok(leaf) else f"{parent}._buffers[{_str(leaf)}]"


def _no_symbol(name: str) -> str:
    raise ValueError(f"a buffer's value uses the symbol {name}")


def lines(node, rows: list, parent: str, leaf: str, names: dict, avoid: set,
          reserved: set) -> list[str]:
    """``__init__``'s lines for one buffer: a local per layer it is computed from, then its
    registration. ``names``: value id -> the spec's name for it; a local is named so that
    it is no constructor parameter (``avoid``: the parameters' possible names) and no
    ``reserved`` name."""
    var: dict[str, str] = {}
    taken: set[str] = set()
    out = []
    uses: dict[str, int] = {}
    for src, _, _ in rows:
        for v in src.inputs:
            uses[v] = uses.get(v, 0) + 1
    inline = {src.id for src, _, plan in rows if _chained(src, plan, rows, uses)}

    def size(d):
        return _dim_src(d, _no_symbol)

    for src, _, plan in rows:
        ins = [var[v] for v in src.inputs]
        if src.op == BUFFER:  # a buffer of a buffer: the same value
            var[src.id] = ins[0]
            continue
        expr = None
        for call in plan.calls:
            if any(isinstance(v, InputDevice) for v in call.kwargs.values()):
                call = replace(call, kwargs={k: v for k, v in call.kwargs.items()
                                             if not isinstance(v, InputDevice)})
            expr = _call_src(call, None, ins, expr, size)
        if expr is None:
            expr = ins[0]
        if src.id in inline or src.id == node.inputs[0] and src.id not in uses:
            var[src.id] = expr  # read once: written where it is read (a chain, or the value)
            continue
        base = names.get(src.id) or src.op
        name = py_name(base, taken, reserved, fallback=src.op)
        i = 2
        while name.rstrip("_") in avoid:
            taken.discard(name)
            name = py_name(f"{base}{i}", taken, reserved, fallback=src.op)
            i += 1
        out.append(f"{name} = {expr}")
        var[src.id] = name
    value = var[node.inputs[0]]
    persistent = bool(node.p.persistent)
    if _attr_ok(leaf):
        out.append(f"{parent}.register_buffer({_str(leaf)}, {value}, "
                   f"persistent={persistent})")
    else:  # a name register_buffer refuses (an nn.Module attribute): set as it does
        out.append(f"{parent}._buffers[{_str(leaf)}] = {value}")
        if not persistent:
            out.append(f"{parent}._non_persistent_buffers_set.add({_str(leaf)})")
    return out


def init_lines(em, s, m, init: list, made: list) -> list[str]:
    """``__init__``'s lines that compute and register the buffers of scope ``s`` (``made``:
    (buffer node id, parent, leaf) each), after its other lines; their locals are named
    apart from the constructor's parameters (a block's arguments, and the literals that may
    become parameters: the slots of ``init``)."""
    values = {vid: name for (_, vid), name in
              (getattr(m, "_value_names", None) or {}).items()}
    call_args = (getattr(m, "_block_args", None) or {}).get(s.path)
    avoid = {p.name for line in init for p in line if isinstance(p, _Slot)}
    if call_args:
        avoid |= set(call_args[1]) | set(call_args[2] or ())
    reserved = em.module_names | _RESERVED_LOCALS | em.class_names | MODULE_ATTRS
    out: list[str] = []
    for vid, parent, leaf in made:
        node, rows = em.buffers[(m.name, vid)]
        out += lines(node, rows, parent, leaf, values, avoid, reserved)
    return out


def _chained(src, plan, rows: list, uses: dict) -> bool:
    """The value is read once and written inline where it is: as the object of a method
    when its own last call is none of + - * / (``torch.arange(7).reshape(7, 1)``), as an
    operand of one when it is one of them (``(dh + 6) * 13``)."""
    if uses.get(src.id) != 1 or not plan.calls or src.op == BUFFER:
        return False
    reader = next((r for r in rows if src.id in r[0].inputs), None)
    if reader is None or reader[0].op == BUFFER or not reader[2].calls:
        return False
    first, j = reader[2].calls[0], reader[0].inputs.index(src.id)
    if plan.calls[-1].fn in _INFIX:
        return first.fn in _INFIX and In(j) in first.args
    return first.fn.startswith(".") and first.args[:1] == (In(j),)
