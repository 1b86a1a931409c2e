"""Pipelines and tensor expressions: the stages of ``x | conv 64 | relu`` (layers, calls,
parenthesised expressions, ``a + b`` branches, indexing ``x[:, 0]``), how a stage's name
resolves (a value, a layer kind, a block, a layer-valued parameter, a named instance) and
its arguments are evaluated (apply), and element-wise arithmetic of tensors and numbers."""

from __future__ import annotations

from ....core.diagnostics import Failure, suggest
from ....core.source import Span
from ....layers import REGISTRY
from ....layers import initializers as _inits
from .. import syntax as S
from .base import MAX_REPEAT, BuilderBase, Instance
from .evaluate import SCALAR_FUNCTIONS, Evaluator, has_tensor_syntax
from .values import POISON, Tensor, Word, describe


class Pipelines(BuilderBase):
    """ModelBuilder's part that lowers pipelines, their stages and tensor expressions."""

    def pipeline(self, pl: S.Pipeline, env: dict, current, prefix: str):
        v = current
        annots = {a.after: a.shape for a in pl.annots}
        for i, stage in enumerate(pl.stages):
            v = self.stage(stage, env, v, prefix, chained=i > 0)
            if i in annots:
                self.annotate(annots[i], v, env)
        return v

    def discarded(self, span: Span):
        """A stage after `|` that takes its input from elsewhere would drop the piped value."""
        self.fail("E065", "this stage ignores the value piped into it", span,
                  hint="start a new statement for it, or drop the `|` before it")

    def stage(self, st, env: dict, inp, prefix: str, chained: bool = False):
        if isinstance(st, S.Plus):
            a = self.stage(st.left, env, inp, prefix)
            b = self.stage(st.right, env, inp, prefix)
            return self.elementwise("add", [a, b], st.span, prefix)
        if isinstance(st, S.Group):
            if st.rep is not None or st.alias is not None:
                self.fail("E036", "a parenthesised expression cannot be repeated or named",
                          st.span)
            if chained:
                self.discarded(st.span)
            return self.expr(st.expr, env, prefix)
        if isinstance(st, S.Index):
            return self.index(st, env, prefix, chained)
        if isinstance(st, S.Layer):
            bound = env.get(st.name, self.scope.consts.get(st.name))
            layer_valued = isinstance(bound, Word) and (
                bound.name in REGISTRY or bound.name in self.scope.blocks)
            reused = chained and (prefix, st.name) in self.instances
            if isinstance(bound, Word) and not layer_valued and (chained or st.args):
                self.unknown(bound.name, st.name_span, env)  # act=gelux, then | act
            if (st.name in env or st.name in self.scope.consts) and not (layer_valued or reused):
                if st.args or st.rep is not None or st.alias is not None:
                    self.fail("E037", f"{st.name!r} is a value, not a layer or block",
                              st.name_span)
                if chained:
                    self.discarded(st.span)
                if isinstance(bound, Tensor) or bound is POISON:
                    return bound
                self.fail("E038", f"{st.name!r} is {describe(bound)}, not a tensor", st.name_span)
        return self.apply(st.name, st.args, st.rep, st.alias, st.span, st.name_span,
                          env, inp, prefix, call_form=isinstance(st, S.Call), chained=chained)

    def index(self, st: S.Index, env: dict, prefix: str, chained: bool):
        """``x[:, 0]``: an index node of the named value x."""
        if st.name not in env:
            best = suggest(st.name, [k for k, v in env.items() if isinstance(v, Tensor)])
            self.fail("E048", f"unknown name {st.name!r}: only named values can be indexed",
                      st.name_span, hint=f"did you mean {best!r}?" if best else None)
        if chained:
            self.discarded(st.span)
        bound = env[st.name]
        if bound is POISON:
            return POISON
        if not isinstance(bound, Tensor):
            self.fail("E038", f"{st.name!r} is {describe(bound)}, not a tensor", st.name_span)
        ev = Evaluator(self.loader, self.scope)

        def integer(e, dim=None):
            v = ev.value(e, env)
            if isinstance(v, bool) or not isinstance(v, int):
                picks = isinstance(v, Tensor) and dim is not None  # q[:, action]
                self.fail("E046", f"an index or slice bound is an integer, got {describe(v)}",
                          e.span, hint=f"use gather({st.name}, {self.text(e.span)}, dim={dim})"
                          if picks else None)
            return v

        items = []
        for i, it in enumerate(st.items):
            if it is Ellipsis:
                items.append("...")
            elif isinstance(it, tuple):
                items.append(tuple(None if e is None else integer(e) for e in it))
            else:
                after = Ellipsis in st.items[:i]  # x[..., i]: an axis from the end
                items.append(integer(it, i - len(st.items) if after else i))
        return self.node(REGISTRY["index"], {"items": tuple(items)}, [bound], st.span, prefix,
                         st.alias, {})

    def apply(self, name, args, rep, alias, span, name_span, env, inp, prefix, call_form=False,
              chained=False):
        bound = env.get(name)
        if isinstance(bound, Word) and (bound.name in REGISTRY or bound.name in self.scope.blocks):
            name = bound.name  # a layer-valued block parameter: ``act=gelu``, then ``| act``
        elif name not in REGISTRY and name not in self.scope.blocks \
                and (prefix, name) in self.instances:
            return self.reuse(self.instances[(prefix, name)], args, rep, alias, span, env, inp,
                              prefix, call_form, chained)
        ev = Evaluator(self.loader, self.scope)
        values = []
        for a in args:
            v = self.expr(a.value, env, prefix) if has_tensor_syntax(a.value) else \
                ev.value(a.value, env)
            values.append((a, v))
        inputs: list = []
        if call_form or name in self.scope.blocks:
            # leading tensor arguments are explicit inputs
            while values and values[0][0].key is None and (
                    isinstance(values[0][1], Tensor) or values[0][1] is POISON):
                inputs.append(values.pop(0)[1])
        sourceless = name in REGISTRY and REGISTRY[name].arity == 0
        if sourceless and chained:
            self.discarded(span)  # x | param [d]: a learned tensor takes no input
        if not inputs:
            inputs = [] if sourceless else [inp]
        elif chained:
            self.discarded(span)
        n = 1
        if rep is not None:
            n = ev.value(rep, env)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n > MAX_REPEAT:
                self.fail("E039", f"a repeat count must be an integer from 1 to {MAX_REPEAT}, "
                          f"got {describe(n)}", rep.span)
            if sourceless:
                self.fail("E041", f"{name} takes no input, so it cannot be repeated",
                          rep.span, hint="write one per tensor you need, each with its name")
        if name in REGISTRY:
            make = self.layer
        elif name in self.scope.blocks:
            if name in self.scope.broken:
                return POISON  # its error is reported where it is defined
            make = self.block
        else:
            self.unknown(name, name_span, env, values, span)
        if any(v is POISON for v in inputs):
            # the input failed (and said so): still check this stage's own arguments, so
            # that every independent error is reported in one run
            if make == self.layer:
                self.layer_params(REGISTRY[name], name, values, span)
            return POISON
        for x in inputs:
            if not isinstance(x, Tensor):
                self.fail("E040", f"{name} needs a tensor input, got {describe(x)}", span)
        if n > 1 and len(inputs) > 1:
            self.fail("E041", "only a single-input stage can be repeated", rep.span)
        self.budget(span)
        if alias is None or self.replay is not None:
            return self.make(make, name, values, inputs, n, span, alias, prefix)
        # a named layer or block: record the names it takes, to apply it again by its name
        inst = Instance(name, values, n, [], span, alias)
        self.instances.setdefault((prefix, alias), inst)  # a second `as` of it fails below
        self.recording.append(inst.names)
        try:
            out = self.make(make, name, values, inputs, n, span, alias, prefix)
        except BaseException:
            inst.broken = True
            raise
        finally:
            self.recording.remove(inst.names)
        inst.broken = out is POISON
        return out

    def expr(self, e, env, prefix):
        if isinstance(e, S.CallExpr) and e.name not in REGISTRY and e.name not in env \
                and e.name not in self.scope.blocks and e.name not in _inits.NAMES:
            best = suggest(e.name, _inits.NAMES)  # init=normall(0, 1): not a layer call
            if best is not None and suggest(e.name, REGISTRY) is None:
                self.fail("E073", f"unknown initialiser {e.name!r}", e.name_span,
                          hint=f"did you mean {best}(...)?")
        if isinstance(e, S.Index):  # concat(h[:, 1:], h[:, :1], dim=1)
            return self.index(e, env, prefix, False)
        if isinstance(e, S.CallExpr) and e.name in SCALAR_FUNCTIONS:
            number = self.scalar_call(e, env)  # log(16) of a number; log(x) of a tensor
            if number is not None:
                return number
        if isinstance(e, S.CallExpr) and not _is_initializer(e, self.scope):
            return self.apply(e.name, e.args, None, None, e.span, e.name_span, env, None,
                              prefix, call_form=True)
        if isinstance(e, S.BinOp) and has_tensor_syntax(e):
            a = self.expr(e.left, env, prefix)
            b = self.expr(e.right, env, prefix)
            if isinstance(a, Tensor) or isinstance(b, Tensor) or POISON in (a, b):
                ops = {"+": "add", "-": "sub", "*": "mul", "/": "div", **_COMPARE}
                if e.op not in ops:
                    self.fail("E057", "tensors support + - * / and the comparisons "
                              f"< > <= >= == != (element-wise), not {e.op}", e.span)
                number = next((v for v in (a, b) if _is_number(v)), None)
                if number is not None and POISON not in (a, b):
                    op = ops[e.op]
                    if number is a and e.op in _COMPARE:  # 0 < x is x > 0
                        return self.scalar_op(_COMPARE[_FLIP[e.op]], b, number, False,
                                              e.span, prefix)
                    return self.scalar_op(op, b if number is a else a, number,
                                          number is a, e.span, prefix)
                return self.elementwise(ops[e.op], [a, b], e.span, prefix)
            return Evaluator(self.loader, self.scope).arith(e, a, b)
        v = Evaluator(self.loader, self.scope).value(e, env)
        return v

    def scalar_call(self, e, env):
        """``log(n)`` of a number in a body: its value; None when the argument is not a
        number (a tensor: the layer)."""
        if len(e.args) != 1 or e.args[0].key is not None:
            return None
        ev = Evaluator(self.loader, self.scope)
        try:
            v = ev.value(e.args[0].value, env)
        except Failure:
            return None
        if not _is_number(v):
            return None
        return ev.scalar_call(e, env)

    def scalar_op(self, op, x, number: int | float, reverse: bool, span, prefix):
        """``(x * 0.5)``, ``(1 - x)``: one tensor and a number (first when ``reverse``)."""
        if not isinstance(x, Tensor):
            self.fail("E058", f"{op} needs a tensor, got {describe(x)}", span)
        kind = REGISTRY[op]
        commutes = "reverse" not in kind.Params.model_fields
        p = kind.Params(other=number) if commutes else kind.Params(other=number, reverse=reverse)
        return self.node(kind, p, [x], span, prefix, None, {})

    def elementwise(self, op, vals, span, prefix):
        if any(v is POISON for v in vals):
            return POISON
        for v in vals:
            if not isinstance(v, Tensor):
                self.fail("E058", f"{op} needs tensors, got {describe(v)}", span)
        return self.layer(op, [], vals, span, None, prefix)


#: a comparison of tensors is its kind (nnspec/layers/consts.py): 1 where it holds, else 0
_COMPARE = {"<": "lt", ">": "gt", "<=": "le", ">=": "ge", "==": "eq", "!=": "ne"}
_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "==": "==", "!=": "!="}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_initializer(e: S.CallExpr, scope) -> bool:
    """``normal(0, 0.02)`` as an argument is an initialiser, unless a block of that name
    exists (layer kinds and initialisers have no name in common)."""
    return e.name in _inits.NAMES and e.name not in scope.blocks

