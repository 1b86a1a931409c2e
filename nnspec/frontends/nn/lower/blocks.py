"""Blocks and repetition: a block call expanded inline under its own name prefix (its
parameters bound to the inputs, arguments and defaults; recursion and deep nesting refused),
a stage repeated ``* n`` times, and a named layer or block instance (``as tower``) applied
again with the same weights, its nodes taking the names of its first application."""

from __future__ import annotations

import os

from ....core.diagnostics import suggest
from ....layers import REGISTRY
from .. import syntax as S
from .base import MAX_DEPTH, MAX_REPEAT, BuilderBase, Instance
from .evaluate import Evaluator, has_tensor_syntax
from .values import POISON, Tensor, describe


class Blocks(BuilderBase):
    """ModelBuilder's part that expands blocks and repeats and reuses layers."""

    def make(self, make, name, values, inputs, n, span, alias, prefix):
        """Apply a layer kind or block (``make``) n times, the first time to ``inputs``."""
        if n == 1:
            return make(name, values, inputs, span, alias, prefix)
        scope_prefix = prefix
        if alias is not None:
            scope_prefix = self.name_for(prefix, "", alias, span) + "."
        v = inputs
        for i in range(n):
            if i:
                self.budget(span)
            sub = str(i) if alias is not None else None
            out = make(name, values, v, span, sub, scope_prefix)
            v = [out]
        return v[0]

    def reuse(self, inst: "Instance", args, rep, alias, span, env, inp, prefix, call_form,
              chained):
        """``x2 | tower``, ``tower(x2)``, ``x | fc * 3``: the layer or block instance named
        ``tower`` applied again with the same weights. Its nodes take the names of the first
        application and are marked shared."""
        where = f"line {inst.span.line}" if inst.span.file == span.file else \
            f"{os.path.basename(inst.span.file)}:{inst.span.line}"
        inputs: list = []
        for a in args:
            v = self.expr(a.value, env, prefix) if has_tensor_syntax(a.value) else \
                Evaluator(self.loader, self.scope).value(a.value, env)
            if call_form and a.key is None and (isinstance(v, Tensor) or v is POISON):
                inputs.append(v)
                continue
            self.fail("E080", f"the layer {'.'.join(filter(None, [prefix[:-1], inst.alias]))} "
                      f"(named at {where}) is applied again with its own arguments; "
                      "it takes only its input tensors here", a.span,
                      hint="to build another layer like it, write the layer again")
        if alias is not None:
            self.fail("E080", f"{inst.alias} names a layer already (at {where}); applying it "
                      "again gives no new name", span)
        sourceless = inst.kind in REGISTRY and REGISTRY[inst.kind].arity == 0
        if sourceless and chained:
            self.discarded(span)  # x | gamma: a learned tensor takes no input
        if sourceless and rep is not None:
            self.fail("E041", f"{inst.alias} is a {inst.kind}: it takes no input, so it "
                      "cannot be repeated", rep.span, hint="use the value it was assigned to")
        if not inputs:
            inputs = [] if sourceless else [inp]
        elif chained:
            self.discarded(span)
        n = 1
        if rep is not None:
            n = Evaluator(self.loader, self.scope).value(rep, env)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n > MAX_REPEAT:
                self.fail("E039", f"a repeat count must be an integer from 1 to {MAX_REPEAT}, "
                          f"got {describe(n)}", rep.span)
        if inst.broken or any(v is POISON for v in inputs):
            return POISON
        for x in inputs:
            if not isinstance(x, Tensor):
                self.fail("E040", f"{inst.alias} needs a tensor input, got {describe(x)}", span)
        if n > 1 and len(inputs) > 1:
            self.fail("E041", "only a single-input stage can be repeated", rep.span)
        make = self.layer if inst.kind in REGISTRY else self.block
        v = inputs
        for _ in range(n):
            self.budget(span)
            self.replay = list(inst.names)
            try:
                out = self.make(make, inst.kind, inst.values, v, inst.n, span, inst.alias,
                                prefix)
            finally:
                self.replay = None
            v = [out]
        return v[0]

    def block(self, name, values, inputs, span, alias, prefix):
        blk: S.Block = self.scope.blocks[name]
        chain = [b for b, _ in self.calls]
        if name in chain:
            cycle = " -> ".join(chain[chain.index(name):] + [name])
            self.fail("E067", f"block {name} calls itself ({cycle})", span,
                      hint="blocks are expanded inline, so a recursive block never ends; "
                      "repeat a stage with `* n` instead")
        if self.depth >= MAX_DEPTH:
            self.fail("E051", f"blocks nest deeper than {MAX_DEPTH} (does {name} call itself?)",
                      span)
        env: dict = {}
        params = list(blk.params)
        names = [prm.name for prm in params]
        dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if dup is not None:
            self.fail("E069", f"block {name} has two parameters named {dup!r}", blk.span)
        if not params:
            self.fail("E052", f"block {name} has no input parameter", blk.span)
        n_in = len(inputs)
        if n_in > len(params):
            self.fail("E053", f"block {name} takes {len(params)} parameters, got {n_in} inputs",
                      span)
        for prm, x in zip(params, inputs):
            env[prm.name] = x
        rest = params[n_in:]
        given: dict = {}
        pos = [p.name for p in rest]
        for a, v in values:
            if a.key is None:
                if not pos:
                    self.fail("E054", f"block {name} takes {len(params) - 1} argument"
                              f"{'s' if len(params) != 2 else ''} after its input, got more",
                              a.span)
                key = pos.pop(0)
            else:
                key = a.key
                if key not in [p.name for p in rest]:
                    best = suggest(key, [p.name for p in rest])
                    self.fail("E055", f"block {name} has no parameter {key!r}", a.span,
                              hint=f"did you mean {best!r}?" if best else None)
                if key in pos:
                    pos.remove(key)
            if key in given:
                self.fail("E050", f"argument {key!r} given twice", a.span)
            given[key] = v
        ev = Evaluator(self.loader, self.scope)
        for prm in rest:
            if prm.name in given:
                env[prm.name] = given[prm.name]
            elif prm.default is not None:
                env[prm.name] = ev.value(prm.default, env)
            else:
                self.fail("E056", f"block {name} needs the argument {prm.name!r}", span)
        inst = self.name_for(prefix, name.lower(), alias, span)
        self.block_args[inst] = self.block_args.get(inst) or (
            name, {k: v.id for k, v in env.items() if isinstance(v, Tensor)},
            {k: v for k, v in env.items() if not isinstance(v, Tensor) and v is not POISON})
        self.depth += 1
        self.calls.append((name, span))
        try:
            out = self.body(blk.body, env, inputs[0], inst + ".")
        finally:
            self.depth -= 1
            self.calls.pop()
        return out
