"""Which block instances share a class. A scope rendered before its constructor parameters
are known (:class:`_Raw`) has a key (:func:`_slots_and_key`): instances equal but for their
slots and the number literals of forward (:class:`_Num`) share one class. Groups that differ
only in the count of a repetition of a child (``ConvRelu(c) * n``, :class:`_Run`) are folded
into one class with a loop over the children (:func:`_merge_groups`, :func:`_fold`,
:func:`_looped`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from ...ir.names import py_name
from .constructors import _Slot
from .layout import _scan


@dataclass
class _Raw:
    """A scope rendered as a class body before its constructor parameters are known."""

    init: list            # pieces per line
    fwd: list             # (indent, code, note, shape) per line
    args: list            # forward's argument names after self
    key: tuple = ()
    slots: list = field(default_factory=list)
    nums: list = field(default_factory=list)  # per forward line: its _Num literals


class _Indent:
    """Starts a line of ``__init__`` that is the body of a loop (one level deeper)."""


_INDENT = _Indent()


@dataclass(frozen=True)
class _Num:
    """A number literal in a line of forward (at ``start:end``, its unary minus included):
    where the instances of a block differ in it, it becomes a constructor parameter kept
    on ``self``; ``name`` is what that parameter would be called."""

    start: int
    end: int
    text: str
    name: str

    @property
    def value(self):
        return ast.literal_eval(self.text)


# a string literal (skipped), or a number that is no part of a name or attribute
_NUMBER = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|'
                     r'(?<![\w.)\]])(-?[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?)(?![\w.])')
_KEYWORD = re.compile(r"(?<![=!<>])\b([A-Za-z_]\w*)=$")
_CALLEE = re.compile(r"([A-Za-z_]\w*)$")


def _numbers(code: str) -> list[_Num]:
    out = []
    for m in _NUMBER.finditer(code):
        if m.group(1) is not None:
            start, end = m.span(1)
            out.append(_Num(start, end, m.group(1), _num_name(code, start, end)))
    return out


def _num_name(code: str, start: int, end: int) -> str:
    """A name for the number at ``code[start:end]`` from where it stands: the keyword it is
    given to (``dim``), the part of a slice (``start``, ``stop``, ``step``) or ``index``
    in a subscript, ``n`` for ``range``, ``<function>_arg`` for another call."""
    before = code[:start].rstrip()
    kw = _KEYWORD.search(before)
    if kw:
        return kw.group(1)
    opens: list[int] = []
    sep = -1
    for i, ch, _ in _scan(code[:start]):
        if ch in "([{":
            opens.append(i)
        elif ch in ")]}" and opens:
            opens.pop()
        elif ch == "," and opens:
            sep = i
    if not opens:
        return "value"
    o = opens[-1]
    if code[o] == "[" and o and (code[o - 1].isalnum() or code[o - 1] in "_)]"):
        colons = code[max(o, sep) + 1:start].count(":")
        if colons:
            return "stop" if colons == 1 else "step"
        return "start" if code[end:].lstrip().startswith(":") else "index"
    callee = _CALLEE.search(code[:o]) if code[o] == "(" else None
    if callee is None:
        return "value"
    return "n" if callee.group(1) == "range" else f"{callee.group(1)}_arg"


def _template(line: list) -> tuple:
    return tuple("\0" if isinstance(p, _Slot) else p for p in line)


def _code_template(code: str, nums: list[_Num]) -> str:
    for num in reversed(nums):
        code = code[:num.start] + "\0" + code[num.end:]
    return code


def _slots_and_key(raw: _Raw, block: str | None) -> None:
    """Fill in ``raw``'s slots, forward literals and key: instances with equal keys (equal
    but for their slots and forward literals) share one class."""
    raw.slots = [p for line in raw.init for p in line if isinstance(p, _Slot)]
    raw.nums = [_numbers(code) for _, code, _, _ in raw.fwd]
    raw.key = (block, tuple(_template(line) for line in raw.init),
               tuple((i, _code_template(c, nums), n)
                     for (i, c, n, _), nums in zip(raw.fwd, raw.nums)),
               tuple(raw.args))


# A child of a repetition: ``self.convrelu_1 = ConvRelu(c=c)`` in __init__ (an unnamed
# ``ConvRelu(c) * n``: its children are named ``convrelu_<i>``), and its call in forward
_RUN_CHILD = re.compile(r"self\.([A-Za-z_]\w*)_(0|[1-9][0-9]*) = ")
_RUN_CALL = re.compile(r"([A-Za-z_]\w*) = self\.([A-Za-z_]\w*)_(0|[1-9][0-9]*)"
                       r"\(([A-Za-z_]\w*(?:, [A-Za-z_]\w*)*)\)")


@dataclass(frozen=True)
class _Run:
    """Children ``base_<start>`` .. ``base_<start + count - 1>`` of one class, each made on
    one line of __init__ (from ``init``) and called on one line of forward (from ``fwd``),
    one after the other: ``x = self.base_<i>(x, ...)``."""

    base: str
    start: int
    count: int
    init: int
    fwd: int


def _run_child(line: list) -> tuple | None:
    """(base, index, the rest of the line as a template) of a child of a repetition made
    by this line of __init__: a block instance with its arguments as plain slots."""
    if len(line) < 2 or not isinstance(line[0], str):
        return None
    m = _RUN_CHILD.fullmatch(line[0])
    if m is None or any(isinstance(p, _Slot) and p.kw for p in line):
        return None
    return m.group(1), int(m.group(2)), _template(line[1:])


def _runs(raw: _Raw) -> list[_Run]:
    out = []
    i = 0
    while i < len(raw.init):
        got = _run_child(raw.init[i])
        if got is None:
            i += 1
            continue
        base, start, tpl = got
        j = i + 1
        while j < len(raw.init) and _run_child(raw.init[j]) == (base, start + j - i, tpl):
            j += 1
        count = j - i
        for f, line in enumerate(raw.fwd):
            m = _RUN_CALL.fullmatch(line[1])
            if m and m.group(2) == base and int(m.group(3)) == start:
                if _chained(raw.fwd[f:f + count], base, start, count):
                    out.append(_Run(base, start, count, i, f))
                break
        i = j
    return out


def _chained(lines: list, base: str, start: int, count: int) -> bool:
    """The forward lines call base_<start> .. in turn, each on the previous one's value
    (``x = self.b_0(x)``, ``x = self.b_1(x)``), with the same other arguments and note."""
    if len(lines) != count:
        return False
    head = None
    for k, (indent, code, note, _) in enumerate(lines):
        m = _RUN_CALL.fullmatch(code)
        if indent or m is None or m.group(2) != base or int(m.group(3)) != start + k:
            return False
        target, args = m.group(1), m.group(4)
        if args.split(", ")[0] != target or (head is not None and head != (target, args, note)):
            return False
        head = (target, args, note)
    return True


def _folded_key(raw: _Raw, runs: list[_Run]) -> tuple:
    """``raw.key`` with each repetition's children as one item whatever their count."""
    at_init = {r.init: r for r in runs}
    at_fwd = {r.fwd: r for r in runs}
    init, fwd = [], []
    i = 0
    while i < len(raw.init):
        r = at_init.get(i)
        init.append(("run", r.base, r.start, _template(raw.init[i][1:])) if r
                     else raw.key[1][i])
        i += r.count if r else 1
    i = 0
    while i < len(raw.fwd):
        r = at_fwd.get(i)
        fwd.append(("run", r.base, r.start, raw.fwd[i][1].split(" = ")[0], raw.fwd[i][2])
                   if r else raw.key[2][i])
        i += r.count if r else 1
    return raw.key[0], tuple(init), tuple(fwd), raw.key[3]


def _merge_groups(groups: dict, models: dict) -> list[list]:
    """The members of each class to write: a group of instances with one key, or several
    groups of one block that differ only in the counts of repetitions of a child
    (``ConvRelu(c) * n``), written as one class with a loop over the children."""
    folded: dict[tuple, list] = {}
    for members in groups.values():
        raw = members[0][1]
        runs = _runs(raw)
        key = _folded_key(raw, runs) if runs else ("once", id(members))
        folded.setdefault(key, []).append((members, runs))
    out = []
    for parts in folded.values():
        merged = _fold(parts, models) if len(parts) > 1 else None
        if merged is None:
            out += [members for members, _ in parts]
        else:
            out.append(merged)
    return out


def _fold(parts: list, models: dict) -> list | None:
    """The members of several groups rewritten alike, each repetition whose count differs
    between them as a loop; None when the children of a repetition differ in another way
    than the first from the rest (which ``a if i == 0 else b`` writes)."""
    members = [m for group, _ in parts for m in group]
    runs = [rs for group, rs in parts for _ in group]  # each member's repetitions
    calls = [(getattr(models[id(sc)], "_block_args", None) or {}).get(sc.path)
             for sc, _ in members]
    words: set[str] = set()  # the loop variable must be none of forward's names
    for (_, raw), call in zip(members, calls):
        for _, code, _, _ in raw.fwd:
            words.update(re.findall(r"[A-Za-z_]\w*", code))
        words.update(call[2] if call else ())
    loop = next((v for v in ("i", "j", "k", "idx") if v not in words), None) or \
        py_name("i", set(), words)
    plans = []
    for k in range(len(runs[0])):
        if len({rs[k].count for rs in runs}) > 1:
            plan = _loop_plan([raw for _, raw in members], [rs[k] for rs in runs], calls)
            if plan is None:
                return None
            plans.append((k, plan))
    out = [(sc, _looped(raw, [(rs[k], plan) for k, plan in plans], loop, call))
           for (sc, raw), rs, call in zip(members, runs, calls)]
    _close_rests([raw for _, raw in out])
    return out


def _close_rests(raws: list[_Raw]) -> None:
    """The later children's arguments of an instance with one child are never used: give
    them the values of a column that agrees with the others' wherever they have them (VGG's
    ``c``), so that no parameter is made for them alone."""
    slots = [raw.slots for raw in raws]
    for j, slot in enumerate(slots[0]):
        if not isinstance(slot, _Rest) or not any(getattr(s[j], "open", False) for s in slots):
            continue
        known = [s for s in slots if not getattr(s[j], "open", False)]
        same = next((k for k in range(len(slots[0])) if k != j
                     and not any(isinstance(s[k], _Rest) and s[k].open for s in slots)
                     and all(s[k].text == s[j].text for s in known)), None)
        if same is None:
            continue
        for raw, s in zip(raws, slots):
            if getattr(s[j], "open", False):
                _replace_slot(raw, j, _Rest(s[same].value, s[j].name))
    for raw in raws:
        _slots_and_key(raw, raw.key[0])


def _replace_slot(raw: _Raw, j: int, new: _Slot) -> None:
    n = 0
    for line in raw.init:
        for k, p in enumerate(line):
            if isinstance(p, _Slot):
                if n == j:
                    line[k] = new
                    return
                n += 1


class _Count(_Slot):
    """The count of a loop in __init__ (``for i in range(n)``)."""


@dataclass(frozen=True)
class _Rest(_Slot):
    """An argument of the children after the first in a loop in __init__ (the ``c`` of
    ``in_channels if i == 0 else c``); ``open`` where the instance has one child only."""

    open: bool = False


@dataclass(frozen=True)
class _LoopPlan:
    """How one repetition is written as a loop: per argument of a child, whether the first
    child's differs from the others' (``in_channels if i == 0 else c``); the block
    parameter its count follows, with the difference (``range(n - 1)``), if one does."""

    first: tuple
    param: str | None = None
    offset: int = 0


def _loop_plan(raws: list, runs: list[_Run], calls: list) -> _LoopPlan | None:
    first = None
    for raw, r in zip(raws, runs):
        cols = [[p.text for p in line if isinstance(p, _Slot)]
                for line in raw.init[r.init:r.init + r.count]]
        if any(c != cols[-1] for c in cols[1:]):
            return None
        diff = [a != b for a, b in zip(cols[0], cols[-1])]
        first = diff if first is None else [a or b for a, b in zip(first, diff)]
    best = None
    if all(c is not None for c in calls):
        for pname in calls[0][2]:
            vals = [c[2].get(pname) for c in calls]
            if all(type(v) is int for v in vals):
                offs = {r.count - v for r, v in zip(runs, vals)}
                if len(offs) == 1 and (best is None or abs(next(iter(offs))) < abs(best[1])):
                    best = (pname, offs.pop())
    return _LoopPlan(tuple(first or ()), *(best or (None, 0)))


def _plus(k: int) -> str:
    return "" if k == 0 else f" + {k}" if k > 0 else f" - {-k}"


def _looped(raw: _Raw, plans: list, loop: str, call) -> _Raw:
    """``raw`` with each repetition of ``plans`` as a loop in __init__ that registers its
    children under their names, and a loop in forward that calls them in turn."""
    at_init = {r.init: (r, plan) for r, plan in plans}
    at_fwd = {r.fwd: (r, plan) for r, plan in plans}
    init: list = []
    i = 0
    while i < len(raw.init):
        if i not in at_init:
            init.append(raw.init[i])
            i += 1
            continue
        r, plan = at_init[i]
        count = _Count(call[2][plan.param] if plan.param else r.count,
                       plan.param or f"n_{r.base}")
        head = f"for {loop} in range({r.start}, " if r.start else f"for {loop} in range("
        init.append([head, count, f"{_plus(r.start + plan.offset)}):"])
        rest = [p for p in raw.init[i + r.count - 1] if isinstance(p, _Slot)]
        body: list = [_INDENT, f'self.add_module(f"{r.base}_{{{loop}}}", ']
        q = 0
        for p in raw.init[i][1:]:
            if isinstance(p, _Slot) and plan.first[q]:
                other = rest[q] if r.count > 1 else p
                body += [p, f" if {loop} == {r.start} else ",
                         _Rest(other.value, other.name, open=r.count == 1)]
            else:
                body.append(p)
            q += isinstance(p, _Slot)
        init.append(body + [")"])
        i += r.count
    fwd: list = []
    i = 0
    while i < len(raw.fwd):
        if i not in at_fwd:
            fwd.append(raw.fwd[i])
            i += 1
            continue
        r, plan = at_fwd[i]
        m = _RUN_CALL.fullmatch(raw.fwd[i][1])
        count = call[2][plan.param] if plan.param else r.count
        head = f"{r.start}, " if r.start else ""
        fwd.append((0, f"for {loop} in range({head}{count}{_plus(r.start + plan.offset)}):",
                    raw.fwd[i][2], raw.fwd[i + r.count - 1][3]))
        fwd.append((1, f'{m.group(1)} = self.get_submodule(f"{r.base}_{{{loop}}}")'
                       f"({m.group(4)})", None, None))
        i += r.count
    out = _Raw(init, fwd, raw.args)
    _slots_and_key(out, raw.key[0])
    return out
