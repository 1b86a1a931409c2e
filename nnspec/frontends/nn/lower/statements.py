"""A model's and a block's statements: the model's inputs and output (build), each statement
of a body (an assignment, ``return``, ``return a, b``, unpacking ``y, h = gru 64 state``),
shape annotations as assertions and the names they bind, and the names recorded for values,
so that the emitted forward reads ``y = self.conv(x)``."""

from __future__ import annotations

from ....core.diagnostics import Diagnostic, Failure
from ....core.dims import DimTooComplex
from ....core.source import Span
from ....ir import model as ir
from ....layers import REGISTRY, ShapeError, TensorType
from ....layers.base import TupleType
from .. import syntax as S
from .base import Abort, BuilderBase, Reported
from .evaluate import Evaluator
from .values import POISON, Tensor, describe


class Statements(BuilderBase):
    """ModelBuilder's part that lowers a model's inputs and a body's statements."""

    def build(self) -> ir.Model:
        syn = self.syn
        ev = Evaluator(self.loader, self.scope)
        env: dict = {}
        inputs = []
        seen_inputs: set = set()
        for inp in syn.inputs:
            if inp.name in seen_inputs:
                self.loader.error("E069", f"model {syn.name} has two inputs named {inp.name!r}",
                                  inp.span)
            seen_inputs.add(inp.name)
            try:
                dims = ev.shape(inp.shape, {})
            except Failure as f:
                self.loader.diags.append(f.diag)
                dims = None
            dtype = inp.dtype or "float"
            if dtype not in ("float", "int"):
                self.loader.error("E031", f"unknown input dtype {dtype!r}",
                                  inp.dtype_span or inp.span, hint="use float or int")
                dtype = "float"
            if dims is not None and "_" in dims:
                self.loader.error("E032", "input shapes cannot use the wildcard _", inp.span)
                dims = None
            bad = next((d for d in dims or () if d.is_const and d.value < 1), None)
            if bad is not None:
                self.loader.error("E068", f"input {inp.name} has the size {bad}; sizes of an "
                                  "input must be at least 1", inp.shape.span)
                dims = None
            tid = f"in_{inp.name}"
            if dims is None:
                env[inp.name] = POISON
                inputs.append(ir.Input.unknown(name=inp.name, id=tid, dtype=dtype,
                                               span=inp.span.to_json()))
                continue
            inputs.append(ir.Input(name=inp.name, id=tid, shape=[str(d) for d in dims],
                                   dtype=dtype, span=inp.span.to_json()))
            env[inp.name] = Tensor(tid)
            self.types[tid] = TensorType(dims, dtype)
            for d in dims:
                self.input_symbols |= d.symbols()
        if not syn.inputs:
            self.loader.error("E033", f"model {syn.name} has no inputs", syn.span)
        current = env[syn.inputs[0].name] if syn.inputs else POISON
        n_diags = len(self.loader.diags)
        try:
            out = self.body(syn.body, env, current, "")
        except Abort as a:
            self.loader.diags.append(a.diag)
            self.nodes, self.asserts, out = [], [], POISON
        if isinstance(out, Tensor) and len(self.loader.diags) == n_diags:
            self.warn_unused(out.id)
        elif out is not POISON and out is not None and len(self.loader.diags) == n_diags:
            self.loader.error("E083", f"model {syn.name} returns {describe(out)}, not a "
                              "tensor", syn.body[-1].span if syn.body else syn.span,
                              hint="a model's value is a tensor: the output of a layer or "
                                   "an input")
        output = out.id if isinstance(out, Tensor) else ""
        if syn.out_shape is not None and isinstance(out, Tensor):
            try:
                dims = ev.shape(syn.out_shape, {})
                self.asserts.append(ir.Assert(value=output, dims=[str(d) for d in dims],
                                              span=syn.out_shape.span.to_json(), what="output"))
            except Failure as f:
                self.loader.diags.append(f.diag)
        names = S.returned_names(syn.body) if isinstance(out, Tensor) else []
        model = ir.Model.model_construct(
            name=syn.name, file=syn.file, inputs=inputs, nodes=self.nodes, output=output,
            asserts=self.asserts, span=syn.span.to_json(), output_names=names)
        model._value_names, model._block_args = self.value_names, self.block_args
        return model

    def body(self, stmts: list[S.Stmt], env: dict, current, prefix: str):
        result = None
        made: list[tuple] = []  # see values_made
        for st in stmts:
            if result is not None:
                self.loader.error("E034", "statement after return is never reached", st.span)
                break
            first = len(self.nodes)
            try:
                v = self.pipeline(st.pipeline, env, current, prefix)
                if st.more:  # return a, b
                    if st.annot is not None:
                        self.loader.error("E081", "a shape annotation needs a single value; "
                                          "annotate each returned value on a line of its own",
                                          st.annot.span)
                    vals = [v] + [self.pipeline(pl, env, current, prefix) for pl in st.more]
                    for pl in [st.pipeline, *st.more[:-1]]:
                        if pl.annots and pl.annots[-1].after == len(pl.stages) - 1:
                            self.loader.error("E081", "a shape annotation needs a single "
                                              "value; annotate each returned value on a "
                                              "line of its own", pl.annots[-1].shape.span)
                    bad = next((x for x in vals if not isinstance(x, Tensor) and x is not POISON),
                               None)
                    if bad is not None:
                        self.fail("E081", f"return gives {describe(bad)}; a block or model "
                                  "returns tensors", st.span)
                    v = POISON if POISON in vals else self.node(
                        REGISTRY["pack"], {}, vals, st.span, prefix, None, {})
            except Reported:
                v = POISON
            except Failure as f:
                self.report(f.diag)
                v = POISON
            if st.annot is not None and not isinstance(st.target, list) and not st.more:
                self.annotate(st.annot, v, env)
            if st.kind == "assign" and isinstance(st.target, list):
                v = self.unpack(st, v, env, prefix)
            elif st.kind == "assign":
                if self.bad_target(st.target, st.span):
                    pass
                else:
                    env[st.target] = v
                    self.name_values(prefix, first, v, st.target)
            current = v
            if st.kind == "return":
                result = v
            self.values_made(st, v, env, first, made)
        out = current if result is None else result
        if isinstance(out, Tensor):
            self.made.extend(x for x in made if x[2] != out.id)
        return out

    def values_made(self, st: S.Stmt, v, env: dict, first: int, made: list) -> None:
        """Record the values a statement computed, to warn about those never used (W001):
        each name of ``y, h = ...`` but those that start with ``_``, else its one value."""
        if v is POISON:
            self.poisoned = True
            return
        new = {n.id for n in self.nodes[first:]}
        layers = frozenset(n.name for n in self.nodes[first:])
        if st.kind == "assign" and isinstance(st.target, list):
            made.extend((st, n, env[n].id, layers) for n in st.target
                        if not n.startswith("_") and isinstance(env.get(n), Tensor)
                        and env[n].id in new)
        elif isinstance(v, Tensor) and v.id in new and st.kind != "return":
            made.append((st, st.target if st.kind == "assign" else None, v.id, layers))

    def warn_unused(self, output: str) -> None:
        """W001 for each value a statement computed that no layer takes and that is not
        returned (once per statement, however often its block is expanded). A statement
        whose layer is applied again by name, or has a weight another layer ties to, is
        there for that layer: its value may go unused."""
        if self.poisoned or not self.warn:
            return
        used = {i for n in self.nodes for i in n.inputs} | {output}
        kept = {n.name for n in self.nodes if n.shared}
        kept |= {t[0] for n in self.nodes for t in n.ties.values()}
        live = {output}  # what reaches the output, through any chain of layers
        for n in reversed(self.nodes):
            if n.id in live or n.name in kept:
                live.update(n.inputs)
        for st, name, vid, layers in self.made:
            key = (st.span, name)
            if vid in live or key in self.loader.warned or layers & kept:
                continue
            self.loader.warned.add(key)
            what = f"the value {name!r} is" if name else "this value is"
            if vid in used:  # read only by values that are themselves never used
                self.loader.warnings.append(Diagnostic(
                    "W001", f"{what} computed but never reaches an output (only values that "
                    "are never used read it)", st.span, severity="warning",
                    hint="use what is computed from it, or drop the statements"))
                continue
            hint = (f"write _{name} in its place if it is not needed"
                    if isinstance(st.target, list) else
                    "use it, return it, or drop the statement" if name else
                    "name it and use it, or drop the statement: the next statement does not "
                    "take it")
            self.loader.warnings.append(Diagnostic(
                "W001", f"{what} computed but never used", st.span, hint=hint,
                severity="warning"))

    def annotate(self, annot: S.ShapeLit, v, env: dict) -> None:
        """``: [N, 8, H, W]`` after a stage: an assertion on its value (and the names it
        binds); a value that failed already is not asserted on."""
        if not isinstance(v, Tensor):
            return
        try:
            dims = Evaluator(self.loader, self.scope).shape(annot, env)
            self.asserts.append(ir.Assert(value=v.id, dims=[
                d if d == "_" else str(d) for d in dims], span=annot.span.to_json()))
            self.bind_symbols(annot, v, env)
        except Failure as f:
            self.report(f.diag)

    def bind_symbols(self, annot: S.ShapeLit, v: Tensor, env: dict) -> None:
        """``x : [_, C, H, W]``: a name the annotation binds (not a value, constant or symbol
        of the model's inputs) is the inferred dim from here on (an int when concrete), so
        that ``dense (C * 4)`` can follow."""
        new = [(i, e.name) for i, e in enumerate(annot.dims) if isinstance(e, S.Ref)
               and e.name != "_" and e.name not in env and e.name not in self.scope.consts
               and e.name not in self.input_symbols]
        if not new:
            return
        t = self.type_of(v.id)
        if not isinstance(t, TensorType) or t.rank != len(annot.dims):
            return  # the assertion reports the mismatch
        for i, name in new:
            d = t.shape[i]
            env[name] = d.value if d.is_const else d

    def type_of(self, vid: str):
        """The inferred type of a value made so far (None where inference fails: the shape
        pass reports why), inferring the nodes added since the last call."""
        types = self.types
        for node in self.nodes[self.typed:]:
            ins = [types.get(i) for i in node.inputs]
            out = None
            if all(isinstance(t, (TensorType, TupleType)) for t in ins):
                kind = REGISTRY[node.op]
                try:
                    kind.check_inputs(node.p, ins)
                    out = kind.infer(node.p, ins)
                except (ShapeError, DimTooComplex, ValueError, ArithmeticError):
                    out = None
            types[node.id] = out
        self.typed = len(self.nodes)
        return types.get(vid)

    def bad_target(self, name: str, span: Span) -> bool:
        if name in REGISTRY or name in self.scope.blocks:
            what = "layer kind" if name in REGISTRY else "block"
            self.loader.error("E035", f"cannot assign to {name!r}: it is a {what}", span,
                              hint="choose another name")
            return True
        return False

    def unpack(self, st: S.Stmt, v, env: dict, prefix: str):
        """``y, h = gru 64 state``: one ``item`` node per name; the first is the value."""
        if st.annot is not None:
            self.loader.error("E062", "a shape annotation needs a single value; annotate each "
                              "name on a line of its own", st.annot.span)
        if len(set(st.target)) != len(st.target):
            self.loader.error("E063", "the same name appears twice on the left of =", st.span)
        t = self.type_of(v.id) if isinstance(v, Tensor) else None
        if isinstance(t, TupleType) and len(t.items) != len(st.target):
            what = f" ({', '.join(t.names)})" if t.names else ""
            self.report(Failure("E063", f"this returns {len(t.items)} values{what}, but "
                                f"{len(st.target)} names are given", st.span,
                                hint="give one name per value, as Python unpacks a tuple").diag)
            v = POISON
        first = POISON
        for i, name in enumerate(st.target):
            if self.bad_target(name, st.span):
                continue
            if isinstance(v, Tensor):
                item = self.node(REGISTRY["item"], {"index": i}, [v], st.span, prefix)
            else:
                item = POISON
            env[name] = item
            if isinstance(item, Tensor):
                self.value_names.setdefault((prefix, item.id), name)
            if i == 0:
                first = item
        return first

    def name_values(self, prefix: str, first: int, v, name: str) -> None:
        """Record ``name`` for the statement's value and for the layers it made in this
        scope (nodes[first:] outside nested blocks): ``y = x | conv | relu`` in the emitted
        forward is ``y = self.conv(x)``, ``y = F.relu(y)``."""
        depth = len(self.calls)
        for node in self.nodes[first:]:
            if len(node.called_from) == depth:
                self.value_names.setdefault((prefix, node.id), name)
        if isinstance(v, Tensor):
            self.value_names.setdefault((prefix, v.id), name)
