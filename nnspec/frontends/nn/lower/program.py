"""A file's lowering, and its entry points: lower_text and lower_file load a spec (Loader),
and lower_scope lowers its models (ModelBuilder), its ``check`` compositions and its
``train`` sections into an IR Program."""

from __future__ import annotations

from ....core.diagnostics import Failure, suggest
from ....ir import model as ir
from .. import syntax as S
from .builder import ModelBuilder
from .evaluate import Evaluator
from .loader import Loader
from .values import FileScope


def lower_scope(loader: Loader, scope: FileScope, models=None) -> ir.Program:
    out = []
    local = models if models is not None else [
        m for m in scope.models.values() if m.file == scope.path]
    for m in local:
        if m.name not in scope.broken:
            out.append(ModelBuilder(loader, scope, m).build())
        elif m.name in scope.partial:
            builder = ModelBuilder(loader, scope, scope.partial[m.name])
            builder.warn = False  # what the missing statements use would look unused
            out.append(builder.build())
    checks = []
    for c in scope.__dict__.get("checks", []):
        found = _check_chain(c.expr, loader)
        if found is None:
            continue
        chain, inputs = found
        bad = [n for n in chain if n not in scope.models]
        if bad:
            best = suggest(bad[0], scope.models)
            loader.error("E060", f"unknown model {bad[0]!r} in check", c.span,
                         hint=f"did you mean {best!r}?" if best else None)
            continue
        if any(n in scope.broken for n in chain):
            continue  # a model of the chain has an error already reported
        ret: dict = {}
        if isinstance(c.returns, S.ShapeLit):
            try:
                dims = Evaluator(loader, scope).shape(c.returns, {})
            except Failure as f:
                loader.diags.append(f.diag)
                continue
            ret = {"returns": [str(d) for d in dims]}
        elif isinstance(c.returns, S.Ref):
            ret = {"returns_input": c.returns.name}
        if ret:
            ret["returns_span"] = c.returns.span.to_json()
        checks.append(ir.Check(chain=chain, inputs=inputs, span=c.span.to_json(), **ret))
    trainings = []
    for t in scope.__dict__.get("trainings", []):
        if t.model in scope.broken:
            continue  # the model's errors are reported already
        from ..trainlower import lower_training

        got = lower_training(loader, scope, t, Evaluator(loader, scope))
        if got is not None:
            trainings.append(got)
    prog = ir.Program.model_construct(version=ir.IR_VERSION, models=out, checks=checks,
                                      trainings=trainings)
    # models referenced by checks but defined in used files
    names = {m.name for m in out}
    for c in checks + trainings:
        for n in (c.chain if isinstance(c, ir.Check) else [c.model]):
            if n not in names:
                syn = scope.models[n]
                prog.models.append(ModelBuilder(loader, scope, syn).build())
                names.add(n)
    return prog


def _check_chain(e, loader: Loader):
    """``check A(B(C))`` or ``check Dec(h0=Enc)``: (models outer first, input names)."""
    chain, inputs = [], []
    while isinstance(e, S.CallExpr):
        chain.append(e.name)
        if len(e.args) != 1:
            loader.error("E061", "check takes one model inside each call: check Outer(Inner) "
                         "or check Outer(input=Inner)", e.span)
            return None
        inputs.append(e.args[0].key)
        e = e.args[0].value
    if isinstance(e, S.Ref):
        chain.append(e.name)
    else:
        loader.error("E061", "check takes a composition of models: check Outer(Inner)", e.span)
        return None
    if len(chain) < 2:
        loader.error("E061", "check needs at least two models: check Outer(Inner)", e.span)
        return None
    return chain, inputs


def lower_text(text: str, path: str = "<string>", consts: dict | None = None
               ) -> tuple[ir.Program | None, Loader]:
    """Parse and lower one spec given as text; diagnostics are in ``loader.diags``.

    ``consts`` replaces the values of the spec's own ``const`` statements (constants
    computed from them follow); a name the spec does not define raises ConstError."""
    loader = Loader(consts)
    scope = loader.load_text(text, path)
    loader.check_overrides(scope)
    if scope is None:
        return None, loader
    return lower_scope(loader, scope), loader


def lower_file(path: str, consts: dict | None = None) -> tuple[ir.Program | None, Loader]:
    """Like :func:`lower_text`, from a file."""
    loader = Loader(consts)
    scope = loader.load_file(path)
    loader.check_overrides(scope)
    if scope is None:
        return None, loader
    return lower_scope(loader, scope), loader
