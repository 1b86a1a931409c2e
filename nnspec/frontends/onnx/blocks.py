"""Repeated modules as blocks: the layers named ``P.0.*``, ``P.1.*`` ... (a ``Sequential`` or
``ModuleList`` of modules, as torch's module paths name them) are instances of ``P``; the
stages from an instance's first layer up to the next instance, or to the next layer outside
it, are its body. Instances whose bodies read the same but for numbers share one ``block``
(the numbers that differ are its parameters); a run of instances with the same arguments
is ``Block(...) * n as P``, a lone one ``Block(...) as P.i``.

An instance becomes a block only where its body reads one value from before it and one of
its values is read after it; anything else stays inline (the spec is the same model).
"""

from __future__ import annotations

import re

from .convert import Op
from .write import Names, body

_INSTANCE = re.compile(r"^(.*?)\.([0-9]+)\.")
_NUMBER = re.compile(r"(?<![\w.])-?[0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?(?![\w.])")


def _instance(op: Op) -> tuple[str, int] | None:
    if op.layer is None:
        return None
    m = _INSTANCE.match(op.layer + ".")
    return (m.group(1), int(m.group(2))) if m else None


def _spans(ops: list[Op]) -> list[tuple[str, int, int, int]]:
    """(container path, index, first op, end) of each instance, in order."""
    out: list = []
    cur = None
    for k, op in enumerate(ops):
        inst = _instance(op)
        if inst is not None:
            if cur is None or cur[:2] != inst:
                if cur is not None:
                    out.append((*cur[:2], cur[2], k))
                cur = (*inst, k)
            continue
        if op.layer is not None and cur is not None:
            out.append((*cur[:2], cur[2], k))
            cur = None
    if cur is not None:
        out.append((*cur[:2], cur[2], len(ops)))
    return out


def _boundary(ops: list[Op], a: int, b: int, outputs: list[str]):
    """(the value read from before, the value read after) of ops[a:b], or None."""
    made = {op.output for op in ops[a:b]}
    ins = {x for op in ops[a:b] for x in op.inputs if x not in made}
    later = {x for op in ops[b:] for x in op.inputs} | set(outputs)
    outs = [op.output for op in ops[a:b] if op.output in later]
    if len(ins) != 1 or len(outs) != 1:
        return None
    return ins.pop(), outs[0]


def _relative(op: Op, prefix: str) -> Op:
    new = Op(**vars(op))
    new.weights = dict(op.weights)
    if op.layer is not None:
        if not op.layer.startswith(prefix + "."):
            raise ValueError(op.layer)
        new.layer = op.layer[len(prefix) + 1:]
    return new


def form(ops: list[Op], outputs: list[str], dims) -> tuple[list[Op], list[list[str]]]:
    """The model's ops with repeated instances replaced by block calls, and the text of each
    block; ``dims(value)``: a value's dims (for the block's input annotation)."""
    found = []
    for path, idx, a, b in _spans(ops):
        edge = _boundary(ops, a, b, outputs)
        if edge is None or any(op.layer is not None and not op.layer.startswith(
                f"{path}.{idx}.") for op in ops[a:b]):
            continue
        prefix = f"{path}.{idx}"
        inner = [_relative(op, prefix) for op in ops[a:b]]
        lines = body(inner, {edge[0]: "x"}, [edge[1]], {"x"})
        text = "\n".join(lines)
        shape = re.sub(_NUMBER, "#", text)
        found.append((path, idx, a, b, edge, text, shape, dims(edge[0])))
    shapes: dict[str, list] = {}
    for f in found:
        shapes.setdefault(f[6], []).append(f)
    blocks, calls = [], {}
    names = Names(set())
    for group in shapes.values():
        if len(group) < 2:
            continue
        toks = [_NUMBER.findall(f[5]) for f in group]
        vary = [j for j in range(len(toks[0])) if len({t[j] for t in toks}) > 1]
        params = [f"c{j + 1}" if len(vary) > 1 else "c" for j in range(len(vary))]
        name = names.fresh(_block_name(group[0][0]))
        parts = re.split(_NUMBER, group[0][5])
        nums = toks[0]
        out, v = parts[0], 0
        for j, n in enumerate(nums):
            out += params[v] if j in vary else n
            v += j in vary
            out += parts[j + 1]
        head = f"block {name}(" + ", ".join(["x"] + params) + ") {"
        syms = [d for d in (group[0][7] or []) if isinstance(d, str)]
        annot = ", ".join(d if isinstance(d, str) else "_" for d in (group[0][7] or []))
        lines = [head] + ([f"    x  : [{annot}]"]
                          if syms else []) + ["    " + ln for ln in out.split("\n")] + ["}"]
        blocks.append(lines)
        for f, t in zip(group, toks):
            calls[f[2]] = (f, f"{name}(" + ", ".join(t[j] for j in vary) + ")")
    if not calls:
        return ops, []
    result: list[Op] = []
    k = 0
    while k < len(ops):
        if k not in calls:
            result.append(ops[k])
            k += 1
            continue
        f, call = calls[k]
        run = [f]
        while True:
            nxt = calls.get(run[-1][3])
            if nxt is None or nxt[1] != call or nxt[0][0] != f[0] or \
                    nxt[0][1] != run[-1][1] + 1 or f[1] != 0:
                break
            run.append(nxt[0])
        path = f[0]
        if len(run) > 1:
            text, layer = f"{call} * {len(run)}", path
        else:
            text, layer = call, f"{path}.{f[1]}"
        result.append(Op("", "stage", text, [f[4][0]], run[-1][4][1], layer=layer,
                         kind="block"))
        k = run[-1][3]
    return result, blocks


def _block_name(path: str) -> str:
    last = path.split(".")[-1] or "Block"
    words = [w for w in re.split(r"[^A-Za-z0-9]+", last) if w]
    name = "".join(w[:1].upper() + w[1:] for w in words if not w.isdigit())
    return (name or "Block") + "Block" if not name.endswith("Block") else name
