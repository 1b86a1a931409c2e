"""Which spec names the PyTorch backend can hold, decided without importing torch.

A layer's or block instance's name becomes a submodule name, and so the prefix of its
state_dict keys, which the torch backend keeps exactly as written. Any name works as a key
except the attributes in which ``torch.nn.Module`` keeps data (``training``, ``_modules``,
``_parameters``, ...): torch assigns or reads them on every module at run time (``train()``
sets ``training``), and ``nn.Module.__setattr__`` refuses to overwrite a submodule with a
non-module, so a child under such a name breaks ``train()``/``eval()``. ``check`` refuses
those names (E070), and :func:`build_module` refuses the very same set. Names that shadow a
method (``forward``, ``state_dict``, ``to``) are fine: methods live on the class, so the
backends register and read such children through ``_modules``.

Model and input names never reach a state_dict: the source emitter renames them where
Python needs it (:func:`py_name`), in class names and ``forward`` arguments.

The lists below are ``dir(torch.nn.Module())`` (a test compares them with the installed
torch), frozen here so that ``nnspec check`` never imports torch.
"""

from __future__ import annotations

import builtins
import keyword

from ..core.diagnostics import Diagnostic
from ..core.source import Span

__all__ = ["MODULE_ATTRS", "MODULE_DATA", "PY_BUILTINS", "child_name_problem",
           "layer_name_diagnostics", "plain", "py_name"]

# dir(torch.nn.Module()) minus MODULE_DATA: the methods (callable attributes).
_MODULE_METHODS = frozenset("""
    __call__ __class__ __delattr__ __dir__ __eq__ __format__ __ge__ __getattr__
    __getattribute__ __getstate__ __gt__ __hash__ __init__ __init_subclass__ __le__
    __lt__ __ne__ __new__ __reduce__ __reduce_ex__ __repr__ __setattr__ __setstate__
    __sizeof__ __str__ __subclasshook__ _apply _call_impl _get_backward_hooks
    _get_backward_pre_hooks _get_name _load_from_state_dict
    _maybe_warn_non_full_backward_hook _named_members _register_load_state_dict_pre_hook
    _register_state_dict_hook _replicate_for_data_parallel _save_to_state_dict
    _slow_forward _wrapped_call_impl add_module apply bfloat16 buffers children compile
    cpu cuda double eval extra_repr float forward get_buffer get_extra_state
    get_parameter get_submodule half ipu load_state_dict modules mtia named_buffers
    named_children named_modules named_parameters parameters register_backward_hook
    register_buffer register_forward_hook register_forward_pre_hook
    register_full_backward_hook register_full_backward_pre_hook
    register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module
    register_parameter register_state_dict_post_hook register_state_dict_pre_hook
    requires_grad_ set_extra_state set_submodule share_memory state_dict to to_empty
    train type xpu zero_grad
""".split())

#: The attributes of ``torch.nn.Module()`` that are not callable: its instance state and
#: class-level data. A submodule cannot be named like one of them.
MODULE_DATA = frozenset("""
    T_destination __annotations__ __dict__ __doc__ __module__ __weakref__
    _backward_hooks _backward_pre_hooks _buffers _compiled_call_impl _forward_hooks
    _forward_hooks_always_called _forward_hooks_with_kwargs _forward_pre_hooks
    _forward_pre_hooks_with_kwargs _is_full_backward_hook _load_state_dict_post_hooks
    _load_state_dict_pre_hooks _modules _non_persistent_buffers_set _parameters
    _state_dict_hooks _state_dict_pre_hooks _version call_super_init dump_patches
    training
""".split())

#: Every attribute of ``torch.nn.Module()``: ``dir(torch.nn.Module())``.
MODULE_ATTRS = _MODULE_METHODS | MODULE_DATA

#: Names Python predefines in every module; generated code must not shadow them.
PY_BUILTINS = frozenset(dir(builtins))


def child_name_problem(name: str) -> tuple[str, str] | None:
    """(message, hint) when ``name`` cannot name a submodule (one part of a layer's dotted
    name), else None. The same rule serves ``check`` and the torch backend."""
    if name in MODULE_DATA:
        what = "its train/eval flag" if name == "training" else "data, not a method"
        return (f"{name!r} cannot name a layer: every torch.nn.Module has an attribute "
                f"{name!r} ({what})", f"choose another name, e.g. `as {name.strip('_')}_layer`")
    if not name or "." in name:
        return f"invalid layer name {name!r}", "a layer name is a non-empty name without dots"
    return None


def _span(data) -> Span | None:
    if (isinstance(data, list) and len(data) == 5 and isinstance(data[0], str)
            and all(type(x) is int for x in data[1:])):
        return Span.from_json(data)
    return None


def layer_name_diagnostics(program) -> list[Diagnostic]:
    """The layer names of an IR program (e.g. read from JSON, which lowering has not seen)
    that no torch module can hold: a part refused by :func:`child_name_problem` (E070), an
    empty part (E071), a name used twice or also used as a block instance's prefix (E072)."""
    out: list[Diagnostic] = []
    for m in program.models:
        full: set[str] = set()
        prefixes: set[str] = set()
        first: dict = {}
        for node in m.nodes:
            span = _span(node.span)
            if node.shared or node.ties:
                out += _sharing_diagnostics(m, node, first, span)
            if node.shared:
                continue
            parts = node.name.split(".")
            bad = next((p for p in parts if p and child_name_problem(p)), None)
            if bad is not None:
                msg, hint = child_name_problem(bad)
                out.append(Diagnostic("E070", f"layer {node.name!r}: {msg}", span, hint=hint))
                continue
            if not all(parts):
                out.append(Diagnostic("E071", f"invalid layer name {node.name!r} in model "
                                      f"{m.name}: a dotted name with an empty part", span))
                continue
            heads = {".".join(parts[:j]) for j in range(1, len(parts))}
            if node.name in full or node.name in prefixes or heads & full:
                out.append(Diagnostic("E072", f"the layer name {node.name!r} is used twice in "
                                      f"model {m.name} (as a layer or a block instance)", span))
                continue
            full.add(node.name)
            first[node.name] = node
            prefixes |= heads
    return out


def _sharing_diagnostics(m, node, first: dict, span) -> list[Diagnostic]:
    """A shared node applies an earlier layer of its name with the same kind and arguments;
    a tie names an earlier layer (whose key and shape the shape pass checks)."""
    out = []
    if node.shared:
        orig = first.get(node.name)
        if orig is None:
            out.append(Diagnostic("E072", f"layer {node.name!r} of model {m.name} is marked "
                                  "shared, but no earlier layer has that name", span))
        elif orig.op != node.op or orig.params != node.params:
            out.append(Diagnostic("E072", f"the shared layer {node.name!r} of model {m.name} "
                                  f"is applied as {node.op} {node.params} here but is "
                                  f"{orig.op} {orig.params} where it is defined", span))
    for key, (owner, _, _) in node.ties.items():
        if owner not in first or owner == node.name:
            out.append(Diagnostic("E072", f"the {key} of layer {node.name!r} is tied to "
                                  f"{owner!r}, which is not an earlier layer of model {m.name}",
                                  span))
    return out


def plain(name: str) -> bool:
    """``name`` can stand as a Python name in generated code exactly as written."""
    return (name.isascii() and name.isidentifier() and not keyword.iskeyword(name)
            and not name.startswith("__"))


def py_name(name: str, taken: set, reserved: frozenset | set = frozenset(),
            fallback: str = "v") -> str:
    """A Python identifier for ``name`` in generated code, added to ``taken``: the name itself
    when it is plain and free, otherwise a deterministic variant (``lambda`` -> ``lambda_``,
    ``torch`` -> ``torch_`` when that is free, ``__x`` -> ``x``, since a name starting with
    ``__`` is mangled inside a class body; ``fallback`` for a name that is no identifier)."""
    if not (name.isascii() and name.isidentifier()):
        name = fallback
    if name.startswith("__"):
        stripped = name.lstrip("_")
        name = stripped if stripped.isidentifier() else fallback + stripped
    while keyword.iskeyword(name) or name in reserved or name in taken:
        name += "_"
    taken.add(name)
    return name
