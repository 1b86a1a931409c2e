"""Where the generated ``forward`` reads a symbolic size: from the tensors that carry it,
never from an argument.

The rule, per layer of a class's ``forward``:

1. A size the layer's plan derives from its own inputs' shapes (a centre crop's offsets)
   is written from those shapes, ``skip[..., (skip.shape[2] - u.shape[2]) // 2 : ...]``,
   where it relates two tensors or the shapes are symbolic (a crop of one tensor of
   constant shape stays ``x[..., 2:5]``). :func:`shape_plan` finds these by planning the
   layer again with a fresh symbol for each axis of its inputs; the new plan is kept when
   it has the same calls and equals the original at the real shapes.
2. Any other symbol (a ``reshape [N, T, 12, 64]``) is read once, at the top of
   ``forward``, from the first of the class's tensor arguments with that symbol as a bare
   axis: ``N, T, _ = x.shape``; failing that, from an axis ``c*S + k`` of it:
   ``S = (x.shape[2] - k) // c`` (:func:`size_lines`).

A symbol that none of a class's tensor arguments carries is an error: the class could
not be called with its tensors alone.
"""

from __future__ import annotations

from ...core.dims import Dim
from ...layers.base import SymDim, TensorType, TorchPlan
from ..plans import walk_syms

_FRESH = "in_axis_"


def _fresh(i: int, k: int) -> str:
    return f"{_FRESH}{i}_{k}"


def is_fresh(name: str) -> bool:
    return name.startswith(_FRESH)


def fresh_axis(name: str) -> tuple[int, int]:
    """(input index, axis) of a fresh axis symbol."""
    i, k = name[len(_FRESH):].split("_")
    return int(i), int(k)


def _has_dims(a) -> bool:
    if isinstance(a, (Dim, SymDim)):
        return True
    if isinstance(a, (tuple, list)):
        return any(_has_dims(x) for x in a)
    if isinstance(a, slice):
        return _has_dims((a.start, a.stop, a.step))
    if isinstance(a, dict):
        return any(_has_dims(x) for x in a.values())
    return False


def _same(orig, new, env: dict) -> bool:
    """``new`` is ``orig`` with the fresh axis symbols bound to the real sizes."""
    if isinstance(orig, SymDim) or isinstance(new, SymDim):
        o = orig.dim if isinstance(orig, SymDim) else orig
        n = new.dim if isinstance(new, SymDim) else new
        return isinstance(o, (Dim, int)) and isinstance(n, Dim) and n.subs(env) == o
    if isinstance(new, Dim):
        return isinstance(orig, (Dim, int)) and not isinstance(orig, bool) \
            and new.subs(env) == orig
    if isinstance(orig, (tuple, list)):
        return type(orig) is type(new) and len(orig) == len(new) and all(
            _same(a, b, env) for a, b in zip(orig, new))
    if isinstance(orig, slice):
        return isinstance(new, slice) and _same(
            (orig.start, orig.stop, orig.step), (new.start, new.stop, new.step), env)
    if isinstance(orig, dict):
        return isinstance(new, dict) and orig.keys() == new.keys() and all(
            _same(orig[k], new[k], env) for k in orig)
    return type(orig) is type(new) and orig == new


def shape_plan(kind, node, row, plan: TorchPlan) -> TorchPlan:
    """The plan with the sizes it derives from its inputs' shapes as fresh axis symbols
    (rule 1), or the plan itself."""
    if node.ties or not any(_has_dims(c.args) or _has_dims(c.kwargs) for c in plan.calls):
        return plan
    env: dict[str, Dim] = {}
    ins = []
    for i, t in enumerate(row.inputs):
        if isinstance(t, TensorType):
            shape = []
            for k, d in enumerate(t.shape):
                env[_fresh(i, k)] = d
                shape.append(Dim.sym(_fresh(i, k)))
            t = TensorType(tuple(shape), t.dtype)
        ins.append(t)
    try:
        out = kind.infer(node.p, ins)
        new = kind.torch(node.p, ins, out)
    except Exception:  # noqa: BLE001 - a kind that needs constant sizes keeps its plan
        return plan
    calls = list(new.calls)
    if len(calls) != len(plan.calls) or (new.module is None) != (plan.module is None):
        return plan
    for a, b in zip(plan.calls, calls):
        if a.fn != b.fn or not _same(a.args, b.args, env) or not _same(a.kwargs, b.kwargs, env):
            return plan
    tensors = {fresh_axis(x)[0] for x in _symbols_of(calls) if is_fresh(x)}
    if len(tensors) < 2 and not _symbols_of(plan.calls):
        return plan  # sizes of one tensor of constant shape: x[..., 2:5] as written
    return TorchPlan(plan.module, calls)


def _symbols_of(calls) -> set[str]:
    acc: set[str] = set()
    for c in calls:
        walk_syms(c.args, acc)
        walk_syms(c.kwargs, acc)
    return acc


def plan_symbols(plan: TorchPlan) -> set[str]:
    """The spec's symbols a plan's calls use (fresh axis symbols left out)."""
    return {s for s in _symbols_of(plan.calls) if not is_fresh(s)}


def _source(sym: str, args: list[str], types: list):
    """(argument, axis, coefficient, offset) of the first axis of the arguments that is
    ``sym`` itself, else of the first that is ``c*sym + k``."""
    s = Dim.sym(sym)
    linear = None
    for name, t in zip(args, types):
        for k, d in enumerate(getattr(t, "shape", ())):
            if d == s:
                return name, k, 1, 0
            if linear is None and d.symbols() == {sym}:
                rest = d - d.terms.get((sym,), 0) * s
                c = d.terms.get((sym,), 0)
                if c > 0 and rest.is_const and len(d.terms) <= 2:
                    linear = (name, k, c, rest.value)
    return linear


def size_lines(symbols: set, args: list[str], types: list, names: dict) -> list[str]:
    """The lines that read the symbols from the tensor arguments (rule 2): ``N, T, _ =
    x.shape`` for bare axes of one argument, ``S = (x.shape[2] - 4) // 2`` otherwise.
    ``names``: symbol -> its local variable."""
    bare: dict[str, dict[int, str]] = {}
    lines = []
    for sym in sorted(symbols):
        got = _source(sym, args, types)
        if got is None:
            raise ValueError(f"the symbol {sym} is used by a layer but is no axis of the "
                             f"tensors {', '.join(args) or '(none)'} it is computed from")
        name, k, c, off = got
        if c == 1 and off == 0:
            bare.setdefault(name, {})[k] = names[sym]
            continue
        expr = f"{name}.shape[{k}]"
        if off:
            expr = f"({expr} {'-' if off > 0 else '+'} {abs(off)})"
        lines.append(f"{names[sym]} = {expr}" + (f" // {c}" if c != 1 else ""))
    out = []
    for name in args:
        axes = bare.get(name)
        if not axes:
            continue
        rank = len(types[args.index(name)].shape)
        if len(axes) == 1:
            (k, local), = axes.items()
            out.append(f"{local} = {name}.shape[{k}]")
            continue
        last = max(axes)
        targets = [axes.get(k, "_") for k in range(last + 1)]
        if rank - last - 1 <= 1:
            targets += ["_"] * (rank - last - 1)
            out.append(f"{', '.join(targets)} = {name}.shape")
        else:
            out.append(f"{', '.join(targets)} = {name}.shape[:{last + 1}]")
    return out + lines
