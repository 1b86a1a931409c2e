"""The torch plans of a model, one per node: what each layer kind says its torch form is
(:class:`~nnspec.layers.base.TorchPlan`, data), with ties resolved and the implicit module
call made explicit. One plan, two renderings: the torch back end instantiates it, the
source emitter writes it as Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.diagnostics import Diagnostic, SpecError
from ..core.dims import Dim
from ..ir.spec import Spec
from ..layers import REGISTRY
from ..layers.base import MODULE, In, ParamRef, SymDim, TorchCall, TorchPlan


def plans(spec: Spec, model):
    """(node, LayerInfo, TorchPlan with explicit calls) per node, in order."""
    rows = {r.node.id: r for r in spec.layers(model.name)}
    out = []
    for node in model.nodes:
        r = rows.get(node.id)
        if r is None:
            raise ValueError(f"layer {node.name} has no inferred type; the spec has errors")
        kind = REGISTRY[node.op]
        flipped = [(k, t) for k, t in node.ties.items() if t[2]]
        if flipped:  # weight=enc.weight.T: the other layer's matrix is an argument
            (key, (owner, okey, _)), = flipped
            plan = kind.torch_tied(node.p, r.inputs, r.output, ParamRef(f"{owner}.{okey}"))
        else:
            plan = kind.torch(node.p, r.inputs, r.output)
        calls = list(plan.calls)
        if not calls and plan.module is not None:
            calls = [TorchCall(MODULE, (In(0),))]
        if any(c.fn == MODULE for c in calls) and plan.module is None:
            raise ValueError(f"layer {node.name} ({node.op}) calls a module but declares none")
        out.append((node, r, TorchPlan(plan.module, calls)))
    return out


def returned_parameters(model) -> set[str]:
    """The ids of ``param`` values the model returns (as its output, or one of the values of
    ``return a, b``): returned as a copy, so that the output is a tensor as any other
    (under no_grad it requires no grad), never the Parameter itself."""
    by_id = {n.id: n for n in model.nodes}
    out = by_id.get(model.output)
    ids = list(out.inputs) if out is not None and out.op == "pack" else [model.output]
    return {i for i in ids if i in by_id and by_id[i].op == "param"}


def symbol_sources(model) -> dict[str, tuple[int, int]]:
    """symbol -> (input index, axis) of its first plain occurrence in the input shapes."""
    src: dict[str, tuple[int, int]] = {}
    for i, inp in enumerate(model.inputs):
        for ax, d in enumerate(inp.dims()):
            if not d.is_const and str(d) in d.symbols() and str(d) not in src:
                src[str(d)] = (i, ax)
    return src


def walk_syms(a, acc: set) -> None:
    if isinstance(a, SymDim):
        acc |= a.dim.symbols()
    elif isinstance(a, Dim):
        acc |= a.symbols()
    elif isinstance(a, (tuple, list)):
        for x in a:
            walk_syms(x, acc)
    elif isinstance(a, slice):
        walk_syms((a.start, a.stop, a.step), acc)
    elif isinstance(a, dict):
        for x in a.values():
            walk_syms(x, acc)


def plan_symbols(plan) -> set[str]:
    acc: set[str] = set()
    for c in plan.calls:
        walk_syms(c.args, acc)
        walk_syms(c.kwargs, acc)
    return acc


#: the package of the kinds' torch helpers (nnspec/layers/torch/), one module per family
HELPERS = "nnspec.layers.torch."


def helper_parts(ref: str) -> tuple[str, str]:
    """A plan's reference to a torch helper, ``nnspec.layers.torch.<family>:<name>``, as
    (module, name), checked: only a public top-level name of a helper module is valid."""
    mod_name, _, name = ref.partition(":")
    family = mod_name.removeprefix(HELPERS)
    if not (mod_name.startswith(HELPERS) and family.isidentifier()
            and name.isidentifier() and not name.startswith("_")):
        raise ValueError(f"invalid torch helper reference {ref!r}")
    return mod_name, name


# ---- buffers: constants computed once ------------------------------------------------------

#: the layer kind whose value the back ends keep on the module (nnspec/layers/buffer.py)
BUFFER = "buffer"

#: the layer families whose values are random (a draw in each forward): never a constant
_RANDOM = ("nnspec.layers.stochastic", "nnspec.layers.rbm")


@dataclass
class Buffers:
    """The ``buffer`` layers of a model and what each is computed from.

    ``nodes``: buffer node id -> its node, in model order; ``sources``: buffer node id ->
    the ids of the nodes its value is computed from, in model order; ``only``: the ids of
    the nodes that only buffers read (directly or through one another), which forward
    need not run."""

    nodes: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    only: frozenset = frozenset()

    def __bool__(self) -> bool:
        return bool(self.nodes)


def buffers(spec: Spec, model, rows=None) -> Buffers:
    """The buffers of ``model`` (``rows``: its :func:`plans`, when at hand), checked: a
    buffer's value depends on no model input, no layer with weights or a module, nothing
    random and no symbol of the inputs' sizes; else a located SpecError (E399)."""
    if not any(n.op == BUFFER for n in model.nodes):
        return Buffers()
    rows = plans(spec, model) if rows is None else rows
    by_id = {node.id: (node, r, plan) for node, r, plan in rows}
    order = {node.id: k for k, (node, _, _) in enumerate(rows)}
    inputs = {inp.id: inp.name for inp in model.inputs}
    out = Buffers()
    for node, _, _ in rows:
        if node.op != BUFFER:
            continue
        seen: set = set()
        stack = list(node.inputs)
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in inputs:
                _refuse(spec, node, f"its value depends on the model input {inputs[v]}",
                        "a buffer is computed from numbers only (arange(7), reshape, "
                        "arithmetic): compute a value of the input in forward, with no "
                        "`| buffer`")
            src, r, plan = by_id[v]
            problem = _not_constant(src, r, plan)
            if problem is not None:
                _refuse(spec, node, f"its value depends on {src.name} ({src.op}), {problem}",
                        "a buffer is computed from numbers only: arange, comparisons, "
                        "where, arithmetic, reshape, expand, permute")
            stack += src.inputs
        out.nodes[node.id] = node
        out.sources[node.id] = sorted(seen, key=order.__getitem__)
    # the nodes forward skips: every reader is a buffer or skipped, and no output
    readers: dict[str, list] = {}
    for node, _, _ in rows:
        for v in node.inputs:
            readers.setdefault(v, []).append(node)
    wanted = set().union(*out.sources.values())
    outputs = {model.output}
    only: set = set()
    for node, _, _ in reversed(rows):
        if node.id in wanted and node.id not in outputs and node.op != BUFFER and all(
                rd.op == BUFFER or rd.id in only for rd in readers.get(node.id, ())) \
                and node.id in readers:
            only.add(node.id)
    out.only = frozenset(only)
    return out


def _not_constant(node, r, plan) -> str | None:
    """Why a node's value is no constant (None when it is one)."""
    if r.weights or node.op == "param":
        return "a layer with weights"
    if plan.module is not None:
        return f"a layer with a module (nn.{plan.module.cls})"
    if type(REGISTRY[node.op]).__module__ in _RANDOM:
        return "a random draw"
    syms = plan_symbols(plan)
    if syms:
        return f"a layer of the inputs' sizes ({', '.join(sorted(syms))})"
    for c in plan.calls:
        if any(isinstance(a, ParamRef) for a in c.args):
            return "another layer's weights"
    return None


def _refuse(spec: Spec, node, why: str, hint: str) -> None:
    raise SpecError(Diagnostic("E399", f"buffer {node.name} cannot be computed once: {why}",
                               node.where(), node.call_notes(), hint), spec.sources)
