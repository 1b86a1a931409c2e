"""A layer's written arguments bound to its kind: positional arguments, flags, keywords and
their synonyms, tensor arguments, weight ties (``weight=wte.weight``), validation by the
kind's Params with every bad argument reported, and the hints that go with the errors
(did-you-mean, usage lines), an unknown layer kind's included."""

from __future__ import annotations

from pydantic import ValidationError

from ....core.diagnostics import Failure, misspelt, suggest
from ....core.dims import Dim
from ....core.limits import MAX_MODEL_ERRORS
from ....layers import REGISTRY
from ....layers.activation import NOT_MISSPELT
from .. import syntax as S
from .base import BuilderBase, Reported
from .values import POISON, Tensor, Word, describe


class Arguments(BuilderBase):
    """ModelBuilder's part that applies a layer kind to its arguments."""

    def unknown(self, name, span, env, values=(), stage_span=None):
        if name in self.scope.models:
            self.fail("E042", f"{name!r} is a model; models cannot be used as layers", span,
                      hint=f"use a block, or check a composition with `check {name}(...)`")
        choices = list(REGISTRY) + list(self.scope.blocks) + list(env)
        # only a plausible misspelling is suggested (relu6 is not a misspelt relu), so that
        # the suggestion is what was meant
        best = misspelt(name, choices, NOT_MISSPELT)
        diag = Failure("E043", f"unknown layer kind {name!r}", span,
                       hint=f"did you mean {best!r}?" if best else
                       "see `nnspec layers` for the list of layer kinds").diag
        if best in REGISTRY and values:
            # the arguments of a misspelt kind are checked as the suggestion's, so that a
            # typo in one is reported in the same run
            self.report(diag)
            self.layer_params(REGISTRY[best], best, values, stage_span or span)
            raise Reported()
        raise Failure(diag.code, diag.message, diag.span, diag.notes, diag.hint)

    def layer(self, kind_name, values, inputs, span, alias, prefix):
        kind = REGISTRY[kind_name]
        inputs = list(inputs)
        p, arg_spans, extra, ties = self.layer_params(kind, kind_name, values, span,
                                                      len(inputs))
        if p is POISON:
            return POISON
        problem = kind.input_count_problem(p, len(inputs))
        if problem is not None:
            self.fail("E044", problem.replace(kind.name, kind_name, 1), span)
        self.unbound_symbols(p, kind_name, arg_spans, span)
        inputs.extend(extra.values())
        tied = {key: self.tie(d, prefix) for key, d in ties.items()}
        return self.node(kind, p, inputs, span, prefix, alias, arg_spans, tied)

    def unbound_symbols(self, p, kind_name: str, arg_spans: dict, span) -> None:
        """A size argument's symbols are read from the model's inputs when it runs:
        ``expand(c, [M, -1])`` where no input has a dim M is an error here, not then."""
        for field, v in p.__dict__.items():  # the fields, as iterating the model gives them
            if v.__class__ in _NO_DIMS:
                continue
            for d in _dims(v):
                extra = d.symbols() - self.input_symbols
                if extra:
                    have = ", ".join(sorted(self.input_symbols)) or "none"
                    self.fail("E082", f"{kind_name}'s {field} uses the symbol "
                              f"{sorted(extra)[0]}, which is not a dim of the model's inputs",
                              arg_spans.get(field, span),
                              hint=f"the symbols of the inputs: {have}; use one of them, a "
                                   "constant, or a name an annotation binds (: [N, T, K])")

    def tie(self, d: S.Dotted, prefix: str) -> list:
        """``wte.weight`` / ``encoder.fc.weight.T`` -> [owner layer, its key, transposed]: the
        longest leading part that names a layer of this scope is the layer (a block
        instance's layers are reached through its name), the rest its state_dict key."""
        parts = list(d.parts)
        transposed = len(parts) > 2 and parts[-1] == "T"
        if transposed:
            parts = parts[:-1]
        for j in range(len(parts) - 1, 0, -1):
            owner = prefix + ".".join(parts[:j])
            if owner in self.by_name:
                return [owner, ".".join(parts[j:]), transposed]
        here = sorted({n[len(prefix):].split(".")[0] for n in self.by_name
                       if n.startswith(prefix)})
        best = suggest(parts[0], here)
        self.fail("E079", f"{'.'.join(d.parts)}: no layer named {parts[0]!r} before this "
                  "point in this scope", d.span,
                  hint=f"did you mean {best!r}?" if best else
                  "tie to a layer named earlier in the same model or block: "
                  "`embedding 50257 768 as wte` ... `dense 50257 weight=wte.weight`")

    def layer_params(self, kind, kind_name, values, span, n_inputs=1):
        """Bind and validate a layer's arguments: (Params, arg spans, tensor arguments), or
        POISON first when a tensor argument failed. Every bad argument is reported; the
        last one is raised."""
        params, arg_spans, extra, ties = self.bind_args(kind, kind_name, values, span)
        if any(x is POISON for x in extra.values()):
            return POISON, arg_spans, extra, ties
        for i, key in enumerate(extra):
            params[key] = n_inputs + i
        try:
            p = kind.Params.model_validate(params)
        except ValidationError as e:
            fails = []
            for err in e.errors()[:MAX_MODEL_ERRORS]:
                loc = str(err["loc"][0]) if err["loc"] else None
                msg = err["msg"]
                if msg.startswith("Value error, "):
                    msg = msg[len("Value error, "):]
                got = params.get(loc, None) if loc else None
                received = f" (received {loc}={_show(got)})" if loc in params else ""
                if err["type"] == "missing":
                    fails.append(Failure("E045", f"{kind_name} needs the argument {loc!r}",
                                         span, hint=_usage(kind, kind_name)))
                elif loc is None:  # a rule of several arguments together
                    fails.append(Failure("E046", f"invalid arguments for {kind_name}: {msg}",
                                         span, hint=_usage(kind, kind_name)))
                else:
                    fails.append(Failure("E046", f"invalid {loc} for {kind_name}: "
                                         f"{msg}{received}", arg_spans.get(loc, span)))
            self.raise_all(fails)
        return p, arg_spans, extra, ties

    def raise_all(self, fails: list) -> None:
        """Report every failure but the last, and raise the last (the statement's error)."""
        for f in fails[:-1]:
            self.report(f.diag)
        if fails:
            raise fails[-1]

    def bind_args(self, kind, kind_name, values, span):
        """Match written arguments to the kind's fields. Every bad argument is reported
        (all but the last here, the last raised), not just the first."""
        params: dict = {}
        arg_spans: dict = {}
        positional = list(kind.positional)
        flags = kind.flags()
        fields = kind.fields()
        extra: dict = {}
        ties: dict = {}
        fails: list[Failure] = []
        poisoned = False
        for a, v in values:
            if len(fails) >= MAX_MODEL_ERRORS:
                break  # the model's lowering stops at this many errors anyway
            if isinstance(v, S.Dotted):
                if a.key is None:
                    fails.append(Failure("E079", f"{'.'.join(v.parts)} is a layer's parameter: "
                                         "a tie is written key=layer.key", a.span,
                                         hint="e.g. weight=wte.weight, or weight=enc.weight.T "
                                         "for the transpose"))
                elif a.key in ties:
                    fails.append(Failure("E050", f"argument {a.key!r} given twice", a.span))
                else:
                    ties[a.key] = v
                    arg_spans[a.key] = a.span
                continue
            key = kind.synonyms.get(a.key, a.key) if a.key else None
            if v is POISON and key not in kind.tensor_args:
                poisoned = True  # the argument's own error is reported already
                continue
            if key in kind.tensor_args:
                if not (isinstance(v, Tensor) or v is POISON):
                    fails.append(Failure("E064", f"{key} takes a tensor (a named value), got "
                                         f"{describe(v)}", a.span))
                elif key in extra:
                    fails.append(Failure("E050", f"argument {key!r} given twice", a.span))
                else:
                    extra[key] = v
                    arg_spans[key] = a.span
                continue
            if isinstance(v, Tensor) or v is POISON:
                hint = (f"tensor arguments of {kind_name}: {', '.join(kind.tensor_args)}"
                        if kind.tensor_args else None)
                fails.append(Failure("E047", f"{kind_name} takes one input tensor from the "
                                     "pipeline; extra tensors are not arguments", a.span,
                                     hint=hint))
                continue
            if a.key is None:
                if isinstance(v, Word) and v.name in flags:
                    key, v = kind.synonyms.get(v.name, v.name), True
                elif positional:
                    key = positional.pop(0)
                    while key in params and positional:
                        key = positional.pop(0)
                elif isinstance(v, Word):
                    best = suggest(v.name, flags)
                    more = f"; did you mean {best!r}?" if best else ""
                    fails.append(Failure("E048", f"unknown name {v.name!r} in {kind_name}{more}",
                                         a.span, hint=_usage(kind, kind_name)))
                    continue
                else:
                    fails.append(Failure(
                        "E048", f"{kind_name} takes {len(kind.positional)} positional argument"
                        f"{'s' if len(kind.positional) != 1 else ''}, got more", a.span,
                        hint=_usage(kind, kind_name)))
                    continue
            else:
                key = kind.synonyms.get(a.key, a.key)
                if key not in fields:
                    fails.append(Failure("E049", f"unknown argument {a.key!r} for {kind_name}",
                                         a.span, hint=_arg_hint(kind, kind_name, a.key)))
                    continue
                if key in params:
                    fails.append(Failure("E050", f"argument {key!r} given twice", a.span))
                    continue
            if isinstance(v, Word):
                v = v.name  # a keyword value such as p=same; the schema validates it
            if isinstance(v, list):
                v = tuple(v)
            if isinstance(v, tuple):
                v = _words_to_names(v)  # `(7, None)`: the schema sees "None", not a Word
            params[key] = v
            arg_spans[key] = a.span
        self.raise_all(fails)
        if poisoned:
            raise Reported()
        return params, arg_spans, extra, ties


#: argument values that hold no symbolic size (most of them: skipped without a look inside)
_NO_DIMS = frozenset({int, float, bool, str, type(None)})


def _dims(v):
    """The symbolic sizes in an argument's value (a Dim, or tuples of them)."""
    if isinstance(v, Dim):
        yield v
    elif isinstance(v, (tuple, list)):
        for x in v:
            yield from _dims(x)


def _arg_hint(kind, kind_name: str, key: str) -> str:
    """'did you mean' for a misspelt argument, naming the field's short and long names
    (``kernal`` -> did you mean 'kernel_size' / 'k'?), then the usage line."""
    import difflib

    fields = list(kind.fields())
    found = difflib.get_close_matches(key, fields + list(kind.synonyms), n=1, cutoff=0.5)
    usage = _usage(kind, kind_name)
    if not found:
        return usage
    target = kind.synonyms.get(found[0], found[0])
    names = [found[0]] + [n for n in [target] + [s for s, f in kind.synonyms.items()
                                                 if f == target] if n != found[0]]
    names = list(dict.fromkeys(names))
    return "did you mean " + " / ".join(repr(n) for n in names) + "? " + usage


def _words_to_names(v: tuple) -> tuple:
    """A tuple argument with its bare words (at any depth) as their names."""
    return tuple(x.name if isinstance(x, Word) else _words_to_names(x)
                 if isinstance(x, tuple) else x for x in v)


def _show(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, tuple):  # as written: (3, foo), [H, 2] -> (H, 2), not reprs
        return "(" + ", ".join(_show(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return str(v)


def _usage(kind, name) -> str:
    fields = kind.fields()
    parts = []
    for f in kind.positional:
        parts.append(f"<{f}>")
    for f, info in fields.items():
        if f in kind.positional:
            continue
        # a field named after a Python keyword (global_) is written without the _
        f = f[:-1] if f.endswith("_") and kind.synonyms.get(f[:-1]) == f else f
        if info.is_required():
            parts.append(f"{f}=<{f}>")
        elif info.annotation is bool:
            parts.append(f"[{f}]")
        else:
            parts.append(f"[{f}={_show(info.default)}]")
    return f"usage: {name} " + " ".join(parts)

