"""The block structure of a model: its layers grouped into the block instances they were
called in (:class:`_Scope`, built by :func:`_tree` from the dotted layer names and
``called_from``), and what each instance reads, defines and returns (:func:`_flow`); a
structure that does not fit (an IR written by hand) raises :class:`_NameClash` and the model
is emitted flat. :class:`_Class` is the generated class an instance is written as.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .naming import _child


class _NameClash(ValueError):
    """Two modules of one class body under one name: the block structure read from the
    names and calls does not fit (an IR written by hand); the model is emitted flat."""


@dataclass(eq=False)
class _Class:
    """One generated class: the instances of a block that render alike, or a model."""

    name: str
    params: list = field(default_factory=list)  # constructor parameter names
    lines: list = field(default_factory=list)   # the class's source lines


@dataclass(eq=False)
class _Scope:
    """The model or one block instance: its items in node order, each a layer
    ("node", index in plans, local name) or a block instance ("inst", scope, local name)."""

    path: str
    block: str | None
    call: tuple | None
    parent: _Scope | None
    items: list = field(default_factory=list)
    defined: set = field(default_factory=set)   # value ids made inside (descendants too)
    inputs: list = field(default_factory=list)  # ids read from outside, in order of use
    output: str | None = None
    height: int = 0
    cls: _Class | None = None
    values: list = field(default_factory=list)  # its class's constructor arguments
    reuse: _Scope | None = None  # the instance this one applies again (shared weights)
    names: set = field(default_factory=set)     # the layer names inside (descendants too)


def _tree(plans, flat: bool = False) -> _Scope:
    """The model's scope with its block instances as children, from the dotted layer names
    and ``called_from`` (a repetition ``Basic(64) * 2 as layer1`` gives the instances
    layer1.0 and layer1.1). A name or call that does not fit (an IR written by hand) leaves
    the layer in its enclosing scope under its dotted name: nothing is lost."""
    root = _Scope("", None, None, None)
    scopes = {"": root}
    prev = root
    for k, (node, _, _) in enumerate(plans):
        parts = node.name.split(".")
        cur, i = root, 0
        for c in () if flat else (tuple(c) for c in reversed(node.called_from)):  # outermost 1st
            if not c or i >= len(parts) - 1:
                break
            j = i + 1
            if j < len(parts) - 1 and parts[j].isdigit():
                j += 1
            path = ".".join(parts[:j])
            s = scopes.get(path)
            if s is not None and node.shared and s.parent is cur and (
                    node.name in s.names or s.call != c):
                # the instance applied again (``x2 | tower``): a call of the same module
                s = scopes[path] = _Scope(path, str(c[0]), c, cur, reuse=s.reuse or s)
                cur.items.append(("inst", s, _rel(path, cur)))
            elif s is None:
                s = scopes[path] = _Scope(path, str(c[0]), c, cur)
                cur.items.append(("inst", s, _rel(path, cur)))
            elif s.call != c or s.parent is not cur or not _within(prev, s):
                break  # left and entered again, or another call: not one block instance
            s.names.add(node.name)
            cur, i = s, j
        cur.items.append(("node", k, _rel(node.name, cur)))
        prev = cur
    return root


def _path_ref(path: str, parent: str = "self") -> str:
    """``self.encoder.fc.weight`` for the dotted path of a module or parameter below
    ``parent``."""
    for part in path.split("."):
        parent = _child(parent, part)
    return parent


def _within(s: _Scope | None, outer: _Scope) -> bool:
    while s is not None:
        if s is outer:
            return True
        s = s.parent
    return False


def _rel(name: str, scope: _Scope) -> str:
    return name[len(scope.path) + 1:] if scope.path else name


def _flow(s: _Scope, plans, model_output: str, readers: dict) -> None:
    """Fill in what s and its descendants define, read and return (post-order). A child
    that is no function of its inputs (more than one value leaves it, or none: it returns
    its input) is inlined, its layers under their dotted names."""
    items = []
    for item in s.items:
        if item[0] == "inst":
            child = item[1]
            _flow(child, plans, model_output, readers)
            if child.output is None:
                items += [(kind, x, f"{item[2]}.{local}") for kind, x, local in child.items]
                for kind, x, _ in child.items:
                    if kind == "inst":
                        x.parent = s
                continue
        items.append(item)
    s.items = items
    for kind, x, _ in items:
        if kind == "node":
            s.defined.add(plans[x][0].id)
        else:
            s.defined |= x.defined
            s.height = max(s.height, x.height + 1)
    seen: set = set()
    for kind, x, _ in items:
        for v in (plans[x][0].inputs if kind == "node" else x.inputs):
            if v not in s.defined and v not in seen:
                seen.add(v)
                s.inputs.append(v)
    if s.parent is None:
        s.output = model_output
        return
    outs = [v for v in s.defined if v == model_output or readers.get(v, set()) - s.defined]
    if not outs:  # nothing reads its value (a dead branch): the one value unread inside
        made = [plans[x][0].id if kind == "node" else x.output for kind, x, _ in items]
        outs = [v for v in made if not readers.get(v, set()) & s.defined]
    s.output = outs[0] if len(outs) == 1 else None
