"""The Python names of a generated file: those it defines or uses at module level, which
no class or local variable may take (:data:`_MODULE_NAMES`, :data:`_RESERVED_LOCALS`), and
how a child module is reached and registered under its layer name (:func:`_child`,
:func:`_assign_child`): ``self.conv1``, or ``self._modules["forward"]`` and
``self.add_module("0", ...)`` where attribute access would find something else.
"""

from __future__ import annotations

from ...ir.names import MODULE_ATTRS, PY_BUILTINS, child_name_problem, plain
from .literals import _str


# Names every generated file defines or uses at module level: a class or local variable
# named like one of them (a model called ``torch`` or ``math``, an input called ``float``)
# would shadow it. The helpers' own names are added per file (_helper_names).
_MODULE_NAMES = frozenset({"torch", "nn", "F", "math"}) | PY_BUILTINS
# ``l``, ``O`` and ``I`` read like digits: linters refuse them as variable names (E741)
_RESERVED_LOCALS = _MODULE_NAMES | {"self", "dims", "l", "O", "I"}
# the methods a train section adds to the module (SpecModule has them always)
_TRAIN_METHODS = frozenset({"loss", "configure_optimizer", "clip_gradients"})


def _module_attr(name: str) -> bool:
    return name in MODULE_ATTRS or name in _TRAIN_METHODS


def _check_child_name(name: str, full: str) -> None:
    problem = child_name_problem(name)
    if problem is not None:
        raise ValueError(f"layer {full!r}: {problem[0]}")


def _attr_ok(name: str) -> bool:
    """``self.name`` reaches the child ``name``: not a keyword, not mangled (``__x`` in a
    class body), not private (torch's own or a class attribute such as ``__qualname__``),
    and not an nn.Module attribute (``forward``), which attribute lookup finds first."""
    return plain(name) and not name.startswith("_") and not _module_attr(name)


def _via_modules(name: str) -> bool:
    """Only ``_modules`` reaches the child: getattr/add_module would find or refuse an
    attribute of that name (an nn.Module method, ``__qualname__``, a private one)."""
    return name.startswith("_") or _module_attr(name)


def _child(parent: str, name: str) -> str:
    if _attr_ok(name):
        return f"{parent}.{name}"
    if _via_modules(name):
        return f"{parent}._modules[{_str(name)}]"
    return f"getattr({parent}, {_str(name)})"  # a keyword or a digit: "class", "0"


def _assign_child(parent: str, name: str) -> str:
    """The text before the value that registers child ``name`` of ``parent``."""
    if _attr_ok(name):
        return f"{parent}.{name} = "
    if _via_modules(name):  # registered without add_module's check
        return f"{parent}._modules[{_str(name)}] = "
    return f"{parent}.add_module({_str(name)}, "


def _assign_pieces(parent: str, name: str, value: list) -> list:
    head = _assign_child(parent, name)
    return [head, *value] + ([")"] if head.endswith(", ") else [])


# the names a person gives a layer without weights that the spec left unnamed (``maxpool_0``)
_NATURAL = {"maxpool": "pool", "avgpool": "pool", "maxpool1d": "pool", "maxpool3d": "pool",
            "avgpool1d": "pool", "avgpool3d": "pool", "sdpa": "attention"}
_RENAMED = frozenset(_NATURAL) | {"dropout", "upsample", "pixelshuffle", "flatten"}


def rename_stateless(root, plans, stateful: set) -> None:
    """Give each unnamed layer without state (a pooling, attention, dropout: nothing in
    the state_dict) the name a person would: ``pool``, ``pool1``/``pool2`` for two,
    ``maxpool``/``avgpool`` beside each other (torchvision's), ``attention`` for sdpa.
    Layers with weights or buffers keep their names: they are the state_dict keys."""
    counts: dict[str, int] = {}
    for node, _, _ in plans:
        counts[node.name] = counts.get(node.name, 0) + 1
    stack = [root]
    while stack:
        s = stack.pop()
        found = []
        for idx, (kind, x, local) in enumerate(s.items):
            if kind == "inst":
                stack.append(x)
                continue
            node, _, plan = plans[x]
            # only the kinds listed: a sampling layer's name keys its noise (use_noise)
            if node.op not in _RENAMED or "." in local or plan.module is None or node.shared \
                    or counts[node.name] > 1 \
                    or node.name in stateful or local.rpartition("_")[0] != node.op \
                    or not local.rpartition("_")[2].isdigit():
                continue
            found.append((idx, node.op))
        if not found:
            continue
        taken = {local.split(".")[0] for _, _, local in s.items} - \
            {s.items[i][2] for i, _ in found}
        natural = {}
        for _, op in found:
            natural.setdefault(_NATURAL.get(op, op), set()).add(op)
        groups: dict[str, list] = {}
        for idx, op in found:
            base = _NATURAL.get(op, op)
            groups.setdefault(base if len(natural[base]) == 1 else op, []).append(idx)
        for base, idxs in groups.items():
            for n, idx in enumerate(idxs, 1):
                name = base if len(idxs) == 1 else f"{base}{n}"
                if name in taken or not _attr_ok(name) or name in _RESERVED_LOCALS:
                    continue
                taken.add(name)
                kind, x, _ = s.items[idx]
                s.items[idx] = (kind, x, name)


def stateful_names(keys) -> set:
    """Every layer path that holds a state_dict entry (and the paths above it)."""
    out = set()
    for key in keys:
        parts = key.split(".")
        for i in range(1, len(parts)):
            out.add(".".join(parts[:i]))
    return out
