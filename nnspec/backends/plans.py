"""The torch plans of a model, one per node: what each layer kind says its torch form is
(:class:`~nnspec.layers.base.TorchPlan`, data), with ties resolved and the implicit module
call made explicit. One plan, two renderings: the torch back end instantiates it, the
source emitter writes it as Python.
"""

from __future__ import annotations

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
