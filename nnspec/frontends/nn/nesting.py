"""The syntax-tree walks of the limits (``nnspec.core.limits``): nesting deeper than
MAX_NESTING in a statement, constant or input shape, and the items that a line blanked for
a syntax error taints (so that their follow-on errors are not reported).
"""

from __future__ import annotations

import re

from ...core.limits import MAX_NESTING
from ...core.source import Span
from . import syntax as S

_NODE_TYPES = tuple(
    cls for cls in vars(S).values()
    if isinstance(cls, type) and cls.__module__ == S.__name__ and hasattr(cls, "__slots__")
    and cls not in (S.Module,)
)
_NODES = frozenset(_NODE_TYPES)
# fields declared as these never hold a syntax node: they are not looked into
_LEAF_TYPES = frozenset({"str", "str | None", "bool", "Span", "Span | None"})
_SLOTS: dict[type, tuple[str, ...]] = {}


def _node_slots(cls: type) -> tuple[str, ...]:
    """The slots of a syntax class that may hold a node or a list of them."""
    got = _SLOTS.get(cls)
    if got is None:
        fields = getattr(cls, "__dataclass_fields__", {})
        got = _SLOTS[cls] = tuple(
            name for name in cls.__slots__
            if name not in fields or str(fields[name].type) not in _LEAF_TYPES)
    return got


def too_deep(root, limit: int = MAX_NESTING) -> bool:
    """True if the syntax tree under ``root`` nests deeper than ``limit`` (iterative, one
    level of the tree at a time)."""
    level, depth = [root], 1
    nodes, slots = _NODES, _SLOTS
    while level:
        if depth > limit:
            return True
        below = []
        for node in level:
            names = slots.get(type(node))
            if names is None:
                names = _node_slots(type(node))
            for name in names:
                v = getattr(node, name)
                if type(v) is list:
                    for x in v:
                        if type(x) in nodes:
                            below.append(x)
                        elif type(x) is tuple:  # a train section's (expr, span) loss lines
                            below += [y for y in x if type(y) in nodes]
                elif type(v) in nodes:
                    below.append(v)
        level, depth = below, depth + 1
    return False


def _roots(item):
    """The parts of a top-level item that are checked one by one (for the error's place)."""
    if isinstance(item, (S.Model, S.Block)):
        yield from (item.inputs if isinstance(item, S.Model) else item.params)
        if isinstance(item, S.Model) and item.out_shape is not None:
            yield item.out_shape
        yield from item.body
    elif isinstance(item, S.Train):  # each loss line and setting on its own
        yield from item.targets
        yield from (expr for expr, _ in item.loss)
        yield from item.settings
    else:
        yield item


#: A statement on one line of at most this many characters is not walked: it cannot nest
#: MAX_NESTING deep. Every node lies in its statement's text, and a chain of nodes with the
#: same text is at most 3 long (statement, pipeline, stage; argument, value): every 3 levels
#: down take at least one character more (a name, a bracket, an operator). The walk would
#: find at most 3 levels per character; this assumes up to 5.
SHORT_STATEMENT = MAX_NESTING // 5


def nesting_errors(module: S.Module):
    """(item index, span) for each statement nested deeper than MAX_NESTING."""
    out = []
    stmt, short = S.Stmt, SHORT_STATEMENT
    for i, item in enumerate(module.items):
        for root in _roots(item):
            if root.__class__ is stmt:
                sp = root.span
                if sp.line == sp.end_line and sp.end_col - sp.col <= short:
                    continue
            if too_deep(root):
                out.append((i, root.span))
    return out


_CONST_LINE = re.compile(r"\s*const\s+([A-Za-z_][A-Za-z0-9_]*)")


def tainted_items(module: S.Module, text: str, lines: list[int]) -> tuple[set[int], list[str]]:
    """Items that contained a blanked (syntax error) line, and the names of constants whose
    definition line was blanked.

    An item's lines run from its first line to the line before the next item. A blanked line
    outside every model, block or constant (a broken ``use``, say) may have defined anything,
    so it taints every item: only the syntax errors are reported then.
    """
    starts = [_first_line(it) for it in module.items]
    src = text.split("\n")
    tainted: set[int] = set()
    consts: list[str] = []
    for line in lines:
        m = _CONST_LINE.match(src[line - 1]) if 0 < line <= len(src) else None
        if m:
            consts.append(m.group(1))
            continue
        owner = None
        for i, start in enumerate(starts):
            if start <= line:
                owner = i
        if owner is None or not isinstance(module.items[owner], (S.Model, S.Block)):
            return set(range(len(module.items))), consts
        tainted.add(owner)
    return tainted, consts


def _first_line(item) -> int:
    span: Span = item.span
    return span.line
