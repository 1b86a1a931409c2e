"""A traced model as a whole spec: blocks for repeated module classes, ``* n`` for runs of
identical instances, the model with its declared inputs (see write.py for the rules)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

from ...core.util import wrap_pipeline
from .ops import Op
from .trace import ImportFailure, Traced
from .write import (
    _CONTAINERS,
    _IDENT,
    Body,
    Input,
    Scope,
    Sizes,
    collect,
    fill,
    flat_ops,
    resolve_calls,
)

_PARAM_NAMES = {"c": "c", "stride": "stride", "k": "k", "pad": "p", "dilation": "d",
                "groups": "groups", "d": "d", "size": "size", "vocab": "vocab"}


@dataclass
class _Group:
    """The instances of one module class with one body structure: one block."""

    cls: type
    key: str
    template: str
    slots_per_instance: list = field(default_factory=list)
    calls: list = field(default_factory=list)  # the block-call Ops, to fill in afterwards
    name: str = ""
    params: list = field(default_factory=list)  # (name, slot index) per block parameter
    slot_names: dict = field(default_factory=dict)
    gid: int = 0


class Writer:
    def __init__(self, traced: Traced, inputs: list[Input], sizes: Sizes, source: str):
        self.traced, self.inputs, self.sizes, self.source = traced, inputs, sizes, source
        self.groups: dict[tuple, _Group] = {}
        self.order: list[_Group] = []
        self.users: dict = {}

    def spec(self, model_name: str) -> str:
        root, placeholders, outputs = collect(self.traced, {})
        used = {x for op in flat_ops(root) for x in op.inputs} | set(outputs)
        if len(placeholders) > len(self.inputs):  # arguments fixed at their defaults
            placeholders = placeholders[:len(self.inputs)] + [
                p for p in placeholders[len(self.inputs):] if p in used]
        if len(placeholders) != len(self.inputs):
            raise ImportFailure(f"the model's forward takes {len(placeholders)} inputs "
                                f"({', '.join(p.target for p in placeholders)}); "
                                f"{len(self.inputs)} declared", usage=True)
        for op in flat_ops(root):
            for x in op.inputs:
                self.users[x] = self.users.get(x, 0) + 1
        for o in outputs:
            self.users[o] = self.users.get(o, 0) + 1
        self.outputs = set(outputs)
        ops = self.lift(root)
        env = {ph: i.name for ph, i in zip(placeholders, self.inputs)}
        body = Body(ops, env, self.sizes, "", outputs, {i.name for i in self.inputs})
        body.write()
        self._name_blocks()
        lines = [f"# {model_name}: imported by nnspec from {self.source}", ""]
        for g in self.order:
            lines += self._block_text(g) + [""]
        sig = ", ".join(i.text() for i in self.inputs)
        lines.append(f"model {model_name}({sig}) {{")
        for ln in body.lines:
            text = resolve_calls(fill(ln, body.slots, {}), self.order)
            lines += ["    " + w for w in wrap_pipeline(text, 4)]
        lines.append("}")
        return "\n".join(lines) + "\n"

    # ---- lifting module instances to block calls ----------------------------------------

    def lift(self, scope: Scope) -> list[Op]:
        out: list[Op] = []
        for it in scope.items:
            if not isinstance(it, Scope):
                out.append(it)
                continue
            ops = self.lift(it)
            if issubclass(it.cls, _CONTAINERS):
                out += ops
                continue
            out += self._instance(it, ops)
        return self._fold(out)

    def _io(self, ops: list[Op]):
        made = {op.node for op in ops}
        inside: dict = {}
        ins = []
        for op in ops:
            for x in op.inputs:
                if x in made:  # a block call reads its input as often as its body does
                    inside[x] = inside.get(x, 0) + (op.inner_uses if _is_call(op) and
                                                    op.inner_uses else 1)
                elif x not in ins:
                    ins.append(x)
        outs = [op.node for op in ops
                if self.users.get(op.node, 0) > inside.get(op.node, 0) or op.node in
                self.outputs]
        return ins, outs

    def _instance(self, scope: Scope, ops: list[Op]) -> list[Op]:
        """The ops of a module instance as one block call when they take one tensor and give
        one, else as they are. A join of several inputs that the instance starts with
        (DenseNet's ``torch.cat(inputs, 1)``) is done before the call."""
        ins, outs = self._io(ops)
        if len(ins) > 1 and len(ops) > 1 and set(ops[0].inputs) == set(ins) \
                and not any(x in ins for op in ops[1:] for x in op.inputs):
            call = self._call(scope, ops[1:])
            return [ops[0], call] if call is not None else ops
        call = self._call(scope, ops)
        return [call] if call is not None else ops

    def _call(self, scope: Scope, ops: list[Op]) -> Op | None:
        ins, outs = self._io(ops)
        if len(ins) != 1 or len(outs) != 1 or not ops:
            return None
        if any(op.owner == scope.path for op in ops):  # a module whose forward is a layer
            return None  # of its own parameters and more (timm's BatchNormAct2d): inline
        prefix = scope.path + "."
        env = {ins[0]: "x"}
        try:
            body = Body(ops, env, self.sizes, prefix, outs, {"x"})
            body.write()
        except ImportFailure:
            return None
        template = "\n".join(body.lines)
        key = (scope.cls, re.sub("\x00[0-9]+\x00", "#", template))
        g = self.groups.get(key)
        if g is None:
            g = _Group(scope.cls, key[1], template, gid=len(self.order))
            self.groups[key] = g
            self.order.append(g)
        g.slots_per_instance.append(body.slots)
        call = Op(outs[0], [("call", g, len(g.slots_per_instance) - 1)], [ins[0]], "stage",
                  scope.path)
        call.scope = ()
        call.inner_uses = sum(x is ins[0] for op in ops for x in op.inputs)
        g.calls.append(call)
        return call

    def _fold(self, ops: list[Op]) -> list[Op]:
        """Runs of calls ``P.0 .. P.n-1`` of one block with the same arguments, each feeding
        the next, where P is a Sequential or ModuleList of exactly those n children: one
        ``Block(...) * n as P``."""
        out: list[Op] = []
        i = 0
        while i < len(ops):
            run = self._run(ops, i)
            if len(run) < 2:
                out.append(ops[i])
                i += 1
                continue
            first, last = run[0], run[-1]
            g = first.words[0][1]
            path = first.owner[:-2]
            folded = Op(last.node, [first.words[0], f" * {len(run)}"], first.inputs, "stage",
                        path)
            folded.inner_uses = first.inner_uses
            for op in run[1:]:
                g.calls.remove(op)
            g.calls[g.calls.index(first)] = folded
            out.append(folded)
            i += len(run)
        return out

    def _run(self, ops: list[Op], i: int) -> list[Op]:
        first = ops[i]
        if not (first.owner and first.owner.endswith(".0") and _is_call(first)):
            return []
        path = first.owner[:-2]
        container = self.traced.modules.get(path)
        if not isinstance(container, (nn.Sequential, nn.ModuleList)):
            return []
        n = len(container)
        g = first.words[0][1]
        values = [s.value for s in g.slots_per_instance[first.words[0][2]]]
        run = [first]
        for j in range(1, n):
            if i + j >= len(ops):
                return []
            op, prev = ops[i + j], ops[i + j - 1]
            if not (op.owner == f"{path}.{j}" and _is_call(op) and op.words[0][1] is g
                    and len(op.words) == 1
                    and [s.value for s in g.slots_per_instance[op.words[0][2]]] == values
                    and op.inputs == [prev.node]
                    and self.users.get(prev.node) == op.inner_uses):
                return []
            run.append(op)
        return run if len(first.words) == 1 else []

    # ---- blocks ------------------------------------------------------------------------

    def _name_blocks(self) -> None:
        used: set[str] = set()
        for g in self.order:
            base = re.sub(r"\W", "_", g.cls.__name__) or "Block"
            name, i = base, 2
            while name in used:
                name, i = f"{base}{i}", i + 1
            used.add(name)
            g.name = name
            self._params(g)

    def _params(self, g: _Group) -> None:
        """Block parameters: the slots whose values differ between instances (slots with
        the same values in every instance share one)."""
        per = g.slots_per_instance
        if not per:
            return
        vectors: dict[tuple, str] = {}
        names: set[str] = {"x"}
        for k, slot in enumerate(per[0]):
            vec = tuple(inst[k].value for inst in per)
            if len(set(vec)) == 1:
                continue
            if vec not in vectors:
                base = _PARAM_NAMES.get(slot.hint, slot.hint)
                base = base if _IDENT.fullmatch(base) else "v"
                name, i = base, 2
                while name in names:
                    name, i = f"{base}{i}", i + 1
                names.add(name)
                vectors[vec] = name
                g.params.append((name, k))
            g.slot_names[k] = vectors[vec]

    def _block_text(self, g: _Group) -> list[str]:
        head = ", ".join(["x"] + [name for name, _ in g.params])
        mod = getattr(g.cls, "__module__", "")
        lines = [f"# {mod}.{g.cls.__qualname__}" if mod else f"# {g.cls.__qualname__}",
                 f"block {g.name}({head}) {{"]
        slots = g.slots_per_instance[0] if g.slots_per_instance else []
        for ln in g.template.splitlines():
            text = resolve_calls(fill(ln, slots, g.slot_names), self.order)
            lines += ["    " + w for w in wrap_pipeline(text, 4)]
        lines.append("}")
        return lines


def _is_call(op: Op) -> bool:
    return bool(op.words) and isinstance(op.words[0], tuple) and op.words[0][0] == "call"
