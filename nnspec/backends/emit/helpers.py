"""The layer families' torch helpers, read as text: the source of the helper functions and
classes a plan uses (``nnspec.layers.torch.<family>:<name>``, a GRU cell, sinusoidal
positions), copied into the generated file each after those it needs (:func:`_helpers_src`).
Their module is read with :mod:`ast` and never imported (it imports torch); the global names
they define or read (:func:`_helper_names`) are names the generated file must not shadow.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import symtable

from ..plans import helper_parts as _helper_parts


@functools.lru_cache(maxsize=None)
def _helper_module(mod_name: str) -> dict[str, tuple[str, frozenset]]:
    """name -> (source, the module's other top-level definitions it uses) of every top-level
    function and class of a helper module, read from its file: the module itself is not
    imported (it imports torch)."""
    found = importlib.util.find_spec(mod_name)
    if found is None or not found.origin or not found.origin.endswith(".py"):
        raise ValueError(f"no source for the torch helpers {mod_name}")
    with open(found.origin, encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines()
    defs = {n.name: n for n in ast.parse(text).body
            if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    out = {}
    for name, n in defs.items():
        start = n.decorator_list[0].lineno if n.decorator_list else n.lineno
        src = "\n".join(lines[start - 1:n.end_lineno]).rstrip()
        used = {x.id for x in ast.walk(n) if isinstance(x, ast.Name)} - {name}
        out[name] = (src, frozenset(used & defs.keys()))
    return out


def _helper_def(ref: str) -> tuple[str, str, tuple[str, ...]]:
    """(name, source, refs of the helpers it needs) of one helper."""
    mod_name, name = _helper_parts(ref)
    defs = _helper_module(mod_name)
    if name not in defs:
        raise ValueError(f"{mod_name} has no {name}")
    src, deps = defs[name]
    return name, src, tuple(f"{mod_name}:{d}" for d in sorted(deps))


def _helpers_src(plans) -> list[str]:
    """Source of the layer-family helpers the plans use, each after those it needs."""
    refs = []
    for _, _, plan in plans:
        if plan.module is not None and plan.module.cls.startswith("nnspec."):
            refs.append(plan.module.cls)
        refs += [c.fn for c in plan.calls if c.fn.startswith("nnspec.")]
    out: list[str] = []
    done: set[str] = set()

    def add(ref: str) -> None:
        if ref in done:
            return
        done.add(ref)
        _, src, deps = _helper_def(ref)
        for dep in deps:
            add(dep)
        out.append(src)

    for ref in dict.fromkeys(refs):
        add(ref)
    return out


def _helper_names(helpers: list[str]) -> set[str]:
    """The global names of the copied helper sources, those they define and those they
    read: a class or local of the generated file must not shadow them (a model named
    ``ChoGRU`` or ``add_sinusoidal``, a local ``math``). Their own locals do not count."""
    return set().union(*(_globals_of(src) for src in helpers))


@functools.lru_cache(maxsize=None)
def _globals_of(src: str) -> frozenset[str]:
    out: set[str] = set()
    stack = [symtable.symtable(src, "<helper>", "exec")]
    while stack:
        table = stack.pop()
        top = table.get_type() == "module"
        out.update(s.get_name() for s in table.get_symbols() if top or s.is_global())
        stack += table.get_children()
    return frozenset(out)
