"""The .nn text of converted Ops, as a person would write it and as ``nnspec fmt`` keeps it:
stages whose input nothing else reads chained into one pipeline (``h = x | conv 6 k=5 |
relu``), joins and calls as named values, long pipelines continued on lines that start
with ``|`` under the first one, and the last statement returned.
"""

from __future__ import annotations

import re

from ...core.util import wrap_pipeline
from ...layers import REGISTRY
from .convert import Op
from .read import RESERVED

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
WIDTH = 96


class Names:
    """Value names: identifiers, none a layer kind, a reserved word or taken already."""

    def __init__(self, taken: set[str]):
        self.taken = set(taken)

    def fresh(self, base: str) -> str:
        base = re.sub(r"\W", "_", base).strip("_") or "h"
        if not _IDENT.fullmatch(base) or base in RESERVED or base in REGISTRY:
            base = f"h_{base}" if _IDENT.fullmatch(f"h_{base}") and \
                f"h_{base}" not in REGISTRY else "h"
        name, i = base, 2
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name


def _base(op: Op) -> str:
    if op.layer is not None:
        words = [w for w in op.layer.split(".") if _IDENT.fullmatch(w)]
        if words and words[-1] not in REGISTRY and words[-1] not in RESERVED:
            return words[-1]
        return "out"
    return op.base or "h"


def body(ops: list[Op], env: dict[str, str], outputs: list[str], taken: set[str]) -> list[str]:
    """The statements computing ``outputs`` (resolved value names) from ``env`` (the
    inputs' names), ending in ``return``."""
    names = Names(taken | set(env.values()))
    users: dict[str, int] = {}
    for op in ops:
        for x in op.inputs:
            users[x] = users.get(x, 0) + 1
    for o in outputs:
        users[o] = users.get(o, 0) + 2  # a value returned is never chained away
    lines: list[str] = []
    chain: list[str] = []
    start = tail = tail_op = None

    def close() -> None:
        if chain:
            name = names.fresh(_base(tail_op))
            lines.append(f"{name} = {start} | " + " | ".join(chain))
            env[tail] = name

    for op in ops:
        if op.form == "stage":
            x = op.inputs[0]
            text = op.stage_text()
            if len(op.inputs) > 1:
                text = text.format("", *(env[v] for v in op.inputs[1:]))
            if tail is not None and x == tail and users.get(x, 0) == 1:
                chain.append(text)
                tail = op.output
                tail_op = op if op.layer is not None or tail_op.layer is None else tail_op
                continue
            close()
            start, chain, tail, tail_op = env[x], [text], op.output, op
            continue
        close()
        start, chain, tail, tail_op = None, [], None, None
        text = op.text.format(*(env[x] for x in op.inputs))
        if op.layer is not None:
            text += f" as {op.layer}"
        name = names.fresh(_base(op))
        lines.append(f"{name} = {text}")
        env[op.output] = name
    close()
    outs = [env[o] for o in outputs]
    last = lines[-1] if lines else ""
    if len(outs) == 1 and last.startswith(f"{outs[0]} = ") and \
            sum(re.search(rf"\b{re.escape(outs[0])}\b", ln) is not None for ln in lines) == 1:
        lines[-1] = "return " + last[len(outs[0]) + 3:]
    else:
        lines.append("return " + ", ".join(outs))
    return lines


def model(name: str, source: str, inputs: list[tuple[str, list, str]], result: list | None,
          lines: list[str], blocks: list[list[str]] = ()) -> str:
    """The whole spec: a comment naming the file, its blocks (each its lines, ``block`` to
    ``}``), the model's signature and body."""
    sig = ", ".join(f"{n}: [{', '.join(str(d) for d in dims)}]" + (" int" if t == "int" else "")
                    for n, dims, t in inputs)
    head = f"model {name}({sig})"
    if result is not None:
        head += " -> [" + ", ".join(str(d) for d in result) + "]"
    out = [f"# {name}: imported by nnspec from {source}", ""]
    for b in blocks:
        out.append(b[0])
        for ln in b[1:-1]:
            out += [" " * (len(ln) - len(ln.lstrip())) + w for w in
                    wrap_pipeline(ln.lstrip(), len(ln) - len(ln.lstrip()), WIDTH)]
        out += [b[-1], ""]
    out.append(head + " {")
    for ln in lines:
        out += ["    " + w for w in wrap_pipeline(ln, 4, WIDTH)]
    out.append("}")
    return "\n".join(out) + "\n"
