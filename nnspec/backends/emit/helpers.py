"""The layer families' torch helpers, read as text: the source of the helper functions and
classes a plan uses (``nnspec.layers.torch.<family>:<name>``, a GRU cell, sinusoidal
positions), copied into the generated file each after those it needs (:func:`_helpers_src`).
Their modules are read with :mod:`ast` and never imported (they import torch); the global
names they define or read (:func:`_helper_names`) are names the generated file must not
shadow.

The helpers of every family share one namespace, the generated file's: :func:`_helper_index`
maps each name to its one definition and refuses a name that two modules define (a module
that needs another's helper imports it, and that import is not a definition). A file is
assembled by name from that index, so it holds one definition per name by construction.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import symtable

from ..plans import HELPERS
from ..plans import helper_parts as _helper_parts


@functools.lru_cache(maxsize=None)
def _helper_module(mod_name: str) -> dict[str, tuple[str, frozenset]]:
    """name -> (source, the global names it reads) of every top-level function and class
    of a helper module, read from its file: the module itself is not imported (it imports
    torch)."""
    found = importlib.util.find_spec(mod_name)
    if found is None or not found.origin or not found.origin.endswith(".py"):
        raise ValueError(f"no source for the torch helpers {mod_name}")
    with open(found.origin, encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines()
    out = {}
    for n in ast.parse(text).body:
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            start = n.decorator_list[0].lineno if n.decorator_list else n.lineno
            src = "\n".join(lines[start - 1:n.end_lineno]).rstrip()
            out[n.name] = (src, _globals_of(src) - {n.name})
    return out


@functools.lru_cache(maxsize=None)
def _helper_index(package: str = HELPERS) -> dict[str, str]:
    """helper name -> the module that defines it, over every module of the helper package
    (``nnspec.layers.torch.``); a name defined by two modules is an error (the generated file
    could hold only one of them)."""
    found = importlib.util.find_spec(package.rstrip("."))
    if found is None or not found.submodule_search_locations:
        raise ValueError(f"no torch helper package {package.rstrip('.')}")
    folder = list(found.submodule_search_locations)[0]
    index: dict[str, str] = {}
    for file in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(file)
        if ext != ".py" or stem.startswith("_"):
            continue
        mod_name = package + stem
        for name in _helper_module(mod_name):
            if name in index:
                raise ValueError(f"the torch helper {name} is defined in both {index[name]} "
                                 f"and {mod_name}: a generated file holds one definition per "
                                 "name; keep one and import it in the other module")
            index[name] = mod_name
    return index


def _helper_def(ref: str) -> tuple[str, str, tuple[str, ...]]:
    """(name, source, refs of the helpers it needs) of one helper."""
    mod_name, name = _helper_parts(ref)
    index = _helper_index()
    if index.get(name) != mod_name:
        raise ValueError(f"{mod_name} has no {name}" + (
            f" of its own (it is {index[name]}'s)" if name in index else ""))
    src, used = _helper_module(mod_name)[name]
    return name, src, tuple(f"{index[d]}:{d}" for d in sorted(used & index.keys()))


def _helpers_src(plans) -> list[str]:
    """Source of the layer-family helpers the plans use, each after those it needs."""
    refs = []
    for _, _, plan in plans:
        if plan.module is not None and plan.module.cls.startswith("nnspec."):
            refs.append(plan.module.cls)
        refs += [c.fn for c in plan.calls if c.fn.startswith("nnspec.")]
    out: dict[str, str] = {}

    def add(ref: str, seen: frozenset = frozenset()) -> None:
        name, src, deps = _helper_def(ref)
        if name in out or name in seen:
            return
        for dep in deps:
            add(dep, seen | {name})
        out[name] = src

    for ref in dict.fromkeys(refs):
        add(ref)
    return list(out.values())


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
