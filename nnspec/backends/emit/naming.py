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
