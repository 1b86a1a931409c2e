"""Lowering of a ``train`` section to :class:`nnspec.ir.Training`.

The loss is a weighted sum of loss functions over named values (the model's ``output``,
its inputs, the section's typed targets): ``loss mse(output, x) + 0.5 * kl_normal(mu,
logvar)`` is linearised into terms (weight, loss, args, params); the other lines are
settings validated by the schemas of :mod:`nnspec.ir.training`, and a setting that cannot
take effect (a schedule without an optimizer, ``nesterov`` without momentum) is an error
located at its argument.
"""

from __future__ import annotations

from pydantic import ValidationError

from ...core.diagnostics import Failure, suggest
from ...ir import model as ir
from ...ir import training as T
from ...layers.losses import LOSSES
from . import syntax as S

_WHAT = ("a loss is a weighted sum of loss functions, e.g. loss cross_entropy(output, label) "
         "or loss mse(output, x) + 0.5 * kl_normal(mu, logvar)")


def lower_training(loader, scope, item: S.Train, ev) -> ir.Training | None:
    """The section as IR, or None after reporting its errors."""
    before = len(loader.diags)
    if item.model not in scope.models:
        best = suggest(item.model, scope.models)
        loader.error("E074", f"train names no model: there is no model {item.model!r}",
                     item.name_span, hint=f"did you mean {best!r}?" if best else None)
        return None
    syn = scope.models[item.model]
    returned = [n for n in S.returned_names(syn.body) if n]
    names = ["output"] + [i.name for i in syn.inputs] + returned
    targets = []
    for t in item.targets:
        if t.name in names:
            loader.error("E074", f"the target {t.name!r} has the name of "
                         + ("the model's output" if t.name == "output" else
                            f"a value {item.model} returns" if t.name in returned else
                            f"an input of {item.model}"), t.span)
            continue
        try:
            dims = ev.shape(t.shape, {})
        except Failure as f:
            loader.diags.append(f.diag)
            continue
        dtype = t.dtype or "float"
        if dtype not in ("float", "int"):
            loader.error("E074", f"a target's dtype is float or int, not {dtype!r}",
                         t.dtype_span or t.span)
            continue
        names.append(t.name)
        targets.append(ir.Input(name=t.name, id=f"target_{t.name}", shape=[str(d) for d in dims],
                                dtype=dtype, span=t.span.to_json()))
    if not item.loss:
        loader.error("E075", f"train {item.model} has no loss", item.span,
                     hint="add a line such as: loss cross_entropy(output, label)")
    if len(item.loss) > 1:
        loader.error("E075", "a train section has one loss line (add terms with +)",
                     item.loss[1][1])
    terms = []
    for expr, _ in item.loss[:1]:
        try:
            terms = _terms(expr, 1.0, names, ev)
        except Failure as f:
            loader.diags.append(f.diag)
    out = {"model": item.model, "targets": targets, "terms": terms,
           "span": item.span.to_json()}
    seen: dict = {}
    lines: dict[str, S.Setting] = {}
    for s in item.settings:
        if s.name not in T.SETTINGS:
            best = suggest(s.name, T.SETTINGS)
            loader.error("E076", f"unknown train setting {s.name!r}", s.name_span,
                         hint=f"did you mean {best!r}?" if best else
                         "a train section has loss, optimizer, clip and schedule lines")
            continue
        if s.name in seen:
            loader.error("E076", f"{s.name} given twice (first on line {seen[s.name]})",
                         s.name_span)
            continue
        seen[s.name] = s.span.line
        try:
            out.update(_setting(s, ev))
            lines[s.name] = s
        except Failure as f:
            loader.diags.append(f.diag)
    if len(loader.diags) != before:
        return None
    for name, key, message in T.section_problems(out.get("optimizer"),
                                                 out.get("optimizer_params", {}),
                                                 out.get("schedule")):
        s = lines[name]
        loader.error("E078", message, _arg_span(s, key) if key else s.name_span,
                     hint="add a line such as: optimizer adam lr=0.001"
                     if name == "schedule" and key is None else None)
    if len(loader.diags) != before:
        return None
    # every field was made valid above (the targets are validated Inputs, each setting's
    # arguments passed its schema): set as given, without building Training's validator
    return ir.Training.model_construct(**out)


def _arg_span(s: S.Setting, key: str):
    """The span of argument ``key`` of a setting (keyword or flag), else the line's."""
    for a in s.args:
        if a.key == key or (a.key is None and isinstance(a.value, S.Ref)
                            and a.value.name == key):
            return a.span
    return s.span


def _terms(e, weight: float, names: list, ev) -> list:
    if isinstance(e, S.BinOp) and e.op in ("+", "-"):
        right = _terms(e.right, -weight if e.op == "-" else weight, names, ev)
        return _terms(e.left, weight, names, ev) + right
    if isinstance(e, S.BinOp) and e.op in ("*", "/"):
        num, other = (e.left, e.right) if e.op == "*" and _numeric(e.left, names) else \
            (e.right, e.left)
        if not _numeric(num, names) or (e.op == "/" and num is e.left):
            raise Failure("E075", "a loss term is scaled by a number: 0.5 * mse(a, b) or "
                          "mse(a, b) / 2", e.span, hint=_WHAT)
        k = ev.value(num, {})
        if isinstance(k, bool) or not isinstance(k, (int, float)):
            raise Failure("E075", "a loss term's weight must be a number", num.span)
        if e.op == "/":
            if k == 0:
                raise Failure("E075", "division of a loss by zero", num.span)
            k = 1.0 / k
        return _terms(other, weight * float(k), names, ev)
    if isinstance(e, S.Neg):
        return _terms(e.operand, -weight, names, ev)
    if isinstance(e, S.CallExpr):
        return [_call(e, weight, names, ev)]
    raise Failure("E075", f"not a loss: {_what(e)}", e.span, hint=_WHAT)


def _numeric(e, names: list) -> bool:
    """A weight: numbers and constants, no call and no tensor value."""
    if isinstance(e, S.CallExpr):
        return False
    if isinstance(e, S.Ref):
        return e.name not in names
    if isinstance(e, S.BinOp):
        return _numeric(e.left, names) and _numeric(e.right, names)
    if isinstance(e, S.Neg):
        return _numeric(e.operand, names)
    return isinstance(e, S.Num)


def _what(e) -> str:
    if isinstance(e, S.Ref):
        return f"the value {e.name!r} alone (give it to a loss function: mse({e.name}, ...))"
    if isinstance(e, S.Num):
        return f"the number {e.value}"
    return "this expression"


def _call(e: S.CallExpr, weight: float, names: list, ev) -> ir.LossTerm:
    kind = LOSSES.get(e.name)
    if kind is None:
        best = suggest(e.name, LOSSES)
        raise Failure("E077", f"unknown loss {e.name!r}", e.name_span,
                      hint=f"did you mean {best!r}?" if best else
                      "losses: " + ", ".join(sorted({k.name for k in LOSSES.values()})))
    args, params = [], {}
    for a in e.args:
        if a.key is None:
            if not isinstance(a.value, S.Ref):
                raise Failure("E077", f"{kind.name}'s tensors are named values ("
                              f"{', '.join(names)})", a.span)
            if a.value.name not in names:
                best = suggest(a.value.name, names)
                raise Failure("E077", f"{a.value.name!r} is no value of the train section "
                              f"(its values: {', '.join(names)})", a.span,
                              hint=f"did you mean {best!r}?" if best else
                              "declare a target: train Model(label: [N] int) { ... }")
            if params:
                raise Failure("E077", "a tensor after a keyword argument", a.span)
            args.append(a.value.name)
        else:
            if a.key in params:
                raise Failure("E050", f"argument {a.key!r} given twice", a.span)
            v = ev.value(a.value, {})
            params[a.key] = getattr(v, "name", v)  # a bare word: reduction=sum
    if len(args) != kind.arity:
        raise Failure("E077", f"{kind.name} takes {kind.arity} tensors, got {len(args)}",
                      e.span, hint=kind.summary or None)
    try:
        p = kind.Params.model_validate(params)
    except ValidationError as x:
        er = x.errors()[0]
        key = er["loc"][0] if er["loc"] else None
        raise Failure("E077", f"invalid {key} for {kind.name}: {er['msg']}"
                      if key else f"invalid arguments for {kind.name}: {er['msg']}",
                      next((a.span for a in e.args if a.key == key), e.span)) from None
    # valid by construction (a float weight, a known loss, named values, validated params)
    return ir.LossTerm.model_construct(weight=weight, loss=kind.name, args=args,
                                       params=p.model_dump(mode="json", exclude_defaults=True),
                                       span=e.span.to_json())


def _setting(s: S.Setting, ev) -> dict:
    pos, kw = [], {}
    for a in s.args:
        v = ev.value(a.value, {})
        v = getattr(v, "name", v)  # bare words: adam, cosine, nesterov
        if a.key is None:
            pos.append((v, a.span))
        elif a.key in kw:
            raise Failure("E050", f"argument {a.key!r} given twice", a.span)
        else:
            kw[a.key] = (v, a.span)
    if s.name == "optimizer":
        if not pos or not isinstance(pos[0][0], str) or pos[0][0] not in T.OPTIMIZERS:
            got = pos[0][0] if pos else None
            best = suggest(str(got), T.OPTIMIZERS) if got is not None else None
            raise Failure("E078", f"unknown optimizer {got!r}" if got is not None else
                          "optimizer needs a name: optimizer adam lr=0.001",
                          pos[0][1] if pos else s.span,
                          hint=f"did you mean {best!r}?" if best else
                          "optimizers: " + ", ".join(T.OPTIMIZERS))
        name = pos[0][0]
        schema = T.OPTIMIZERS[name]
        flags = {k for k, f in schema.model_fields.items() if f.annotation is bool}
        for v, span in pos[1:]:
            if v in flags:
                kw[v] = (True, span)
            else:
                raise Failure("E078", f"optimizer {name} takes keyword arguments "
                              f"({', '.join(schema.model_fields)})", span)
        p = _validate(schema, kw, f"optimizer {name}", s)
        problem = T.optimizer_problem(p)
        if problem:
            raise Failure("E078", problem[1], _arg_span(s, problem[0]))
        return {"optimizer": name,
                "optimizer_params": p.model_dump(mode="json", exclude_defaults=True)}
    if s.name == "clip":
        if pos:
            raise Failure("E078", "clip takes norm=<max norm> or value=<max element>",
                          pos[0][1])
        p = _validate(T.Clip, kw, "clip", s)
        problem = T.check_clip(p)
        if problem:
            raise Failure("E078", problem, s.span)
        return {"clip": p.model_dump(exclude_none=True)}
    if len(pos) > 1:
        raise Failure("E078", "schedule takes one kind (constant, step, cosine) and keyword "
                      "arguments", pos[1][1])
    if pos:
        kw["kind"] = pos[0]
    p = _validate(T.Schedule, kw, "schedule", s)
    problem = T.schedule_problem(p)
    if problem:
        raise Failure("E078", problem[1], _arg_span(s, problem[0]) if problem[0] else s.span)
    return {"schedule": p.model_dump(exclude_defaults=True)}


def _validate(schema, kw: dict, what: str, s: S.Setting):
    for k, (_, span) in kw.items():
        if k not in schema.model_fields:
            best = suggest(k, schema.model_fields)
            raise Failure("E078", f"unknown argument {k!r} for {what}", span,
                          hint=f"did you mean {best!r}?" if best else
                          f"its arguments: {', '.join(schema.model_fields)}")
    try:
        return schema.model_validate({k: v for k, (v, _) in kw.items()})
    except ValidationError as x:
        er = x.errors()[0]
        key = er["loc"][0] if er["loc"] else None
        span = kw[key][1] if key in kw else s.span
        raise Failure("E078", f"invalid {key} for {what}: {er['msg']}", span) from None
