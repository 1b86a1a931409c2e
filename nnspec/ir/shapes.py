"""Static shape inference over the IR; errors carry the span of the node at fault."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.diagnostics import Diagnostic, suggest
from ..core.dims import Dim, DimTooComplex, max_abs_coeff
from ..core.limits import MAX_INT
from ..core.record import Record
from ..core.source import Span
from ..layers import REGISTRY, ShapeError, TensorType
from ..layers.base import DEFAULT_INIT, TupleType
from . import model as ir

_NEW: Any = object()  # a field's default: a new empty dict or list


@dataclass(init=False, repr=False, eq=False)
class ModelTypes(Record):
    """The inferred type of every value of one model (None where inference failed). (A
    record class, see core/record.py.)"""

    model: ir.Model
    types: dict[str, TensorType | None] = field(default_factory=dict)
    diags: list[Diagnostic] = field(default_factory=list)

    def __init__(self, model: ir.Model, types: dict[str, TensorType | None] = _NEW,
                 diags: list[Diagnostic] = _NEW):
        self.model = model
        self.types = {} if types is _NEW else types
        self.diags = [] if diags is _NEW else diags

    @property
    def ok(self) -> bool:
        return not self.diags

    def output(self) -> TensorType | None:
        return self.types.get(self.model.output)

    def inputs(self) -> list[TensorType | None]:
        return [self.types.get(i.id) for i in self.model.inputs]


def _origin(model: ir.Model, producers: dict, value: str) -> str:
    node = producers.get(value)
    if node is None:
        for i in model.inputs:
            if i.id == value:
                return f"model input {i.name}"
        return "?"
    line = node.span[1] if node.span else "?"
    return f"line {line}: {node.text}" if node.text else f"line {line}"


def infer_model(model: ir.Model) -> ModelTypes:
    """Infer every value's type; collect all independent errors."""
    res = ModelTypes(model)
    types = res.types
    for inp in model.inputs:
        types[inp.id] = TensorType(inp.dims(), inp.dtype) if inp.known else None
    producers = {}
    seen: set = set()
    for node in model.nodes:
        producers[node.id] = node
        # IR built in Python may break what validation guarantees: a diagnostic, not a crash
        missing = next((i for i in node.inputs if i not in types), None)
        kind = REGISTRY.get(node.op)
        if missing is not None or kind is None:
            types[node.id] = None
            what = (f"uses the value {missing!r}, which no input or earlier layer defines"
                    if missing is not None else f"has the unknown layer kind {node.op!r}")
            res.diags.append(Diagnostic("E217", f"layer {node.name} {what}", node.where(),
                                        node.call_notes()))
            continue
        ins = [types[i] for i in node.inputs]
        if any(t is None for t in ins):
            types[node.id] = None
            continue
        p = node.p
        try:
            kind.check_inputs(p, ins)
            if node.op != "item":
                for t, src in zip(ins, node.inputs):
                    if isinstance(t, TupleType):
                        what = f" ({', '.join(t.names)})" if t.names else ""
                        raise ShapeError(
                            f"{_origin(model, producers, src)} returns {len(t.items)} "
                            f"values{what}; name them before use",
                            hint="y, h = ... gives each value a name")
            try:
                out = kind.infer(p, ins)
            except DimTooComplex as x:
                raise ShapeError(f"the output shape is too complex to infer: {x}") from None
            types[node.id] = _within_int64(out)
            if _has_init(p):
                kind.state(p, ins, out)  # the spec's initialisers fit the weights
        except ShapeError as e:
            types[node.id] = None
            notes = list(e.notes)
            for t, src in zip(ins, node.inputs):
                notes.append(f"input here is {t} (from {_origin(model, producers, src)})")
            notes += node.call_notes()
            d = Diagnostic(e.code, e.message, node.arg_where(e.arg), notes, e.hint)
            key = (d.code, d.message, d.span)
            if key not in seen:  # `a, b = <one-value layer>` fails once, not per name
                seen.add(key)
                res.diags.append(d)
    if model.output and model.output not in types:  # "": lowering reported the body's error
        span = Span.from_json(model.span) if model.span else None
        res.diags.append(Diagnostic("E217", f"the output of model {model.name} is the value "
                                    f"{model.output!r}, which the model does not define", span))
    for a in model.asserts:
        t = types.get(a.value)
        if t is None:
            continue
        d = check_assert(t, a, _origin(model, producers, a.value))
        if d is not None:
            res.diags.append(d)
    if any(n.shared or n.ties for n in model.nodes):
        res.diags += sharing_diagnostics(model, types)
    return res


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def sharing_diagnostics(model: ir.Model, types: dict) -> list[Diagnostic]:
    """A layer applied again (``shared``) needs the weights it has where it is defined; a
    tie (``weight=wte.weight``) names a parameter of the layer it ties to, of the same shape
    (transposed with ``.T``, which the layer kind must support)."""
    out: list[Diagnostic] = []
    first: dict[str, ir.Node] = {}
    states: dict = {}

    def state(node):
        if node.id not in states:
            ins = [types.get(i) for i in node.inputs]
            t = types.get(node.id)
            states[node.id] = None if t is None or any(x is None for x in ins) else \
                REGISTRY[node.op].state(node.p, ins, t)
        return states[node.id]

    def where(node) -> str:
        return f"line {node.span[1]}: {node.text}" if node.span else node.name

    for node in model.nodes:
        if node.shared:
            orig = first.get(node.name)
            a = state(orig) if orig is not None else None
            b = state(node) if a is not None else None
            bad = None if b is None else next(
                (k for k in a.keys() | b.keys() if k not in a or k not in b
                 or a[k].shape != b[k].shape), None)
            if bad is not None:
                ins = ", ".join(str(types[i]) for i in node.inputs)
                out.append(Diagnostic(
                    "E341", f"the shared layer {node.name} would need the {bad} "
                    f"{_shape(b[bad].shape) if bad in b else '(none)'} for its input {ins} "
                    f"here, but its {bad} is {_shape(a[bad].shape) if bad in a else '(none)'}",
                    node.where(), [f"the layer is defined at {where(orig)}",
                                   *node.call_notes()],
                    "a layer applied again keeps its weights: give it inputs of the same "
                    "size, or write a new layer"))
            continue
        first.setdefault(node.name, node)
        for key, (owner, okey, transposed) in node.ties.items():
            o = first.get(owner)
            mine, theirs = state(node), state(o) if o is not None else None
            if mine is None or theirs is None:
                continue
            d = _tie_problem(node, key, mine, o, okey, theirs, transposed)
            if d is not None:
                d.notes += [f"{owner} is defined at {where(o)}", *node.call_notes()]
                out.append(d)
    return out


def _tie_problem(node, key, mine, owner, okey, theirs, transposed) -> Diagnostic | None:
    span = node.arg_where(key)
    ref = f"{owner.name}.{okey}{'.T' if transposed else ''}"
    kind = REGISTRY[node.op]
    for have, k, layer in ((mine, key, node), (theirs, okey, owner)):
        if k not in have:
            best = suggest(k, list(have))
            return Diagnostic("E342", f"{layer.op} {layer.name} has no parameter {k!r}"
                              f"{' to tie' if layer is node else ''} (its parameters: "
                              f"{', '.join(have) or 'none'})", span,
                              hint=f"did you mean {best!r}?" if best else None)
    w, o = mine[key], theirs[okey]
    if not (w.trainable and o.trainable) or w.dtype != o.dtype:
        return Diagnostic("E342", f"only parameters can be tied: {node.name}.{key} and {ref} "
                          "are not both trainable float parameters", span)
    have = tuple(reversed(o.shape)) if transposed else tuple(o.shape)
    if transposed and len(o.shape) != 2:
        return Diagnostic("E342", f"{owner.name}.{okey} is {_shape(o.shape)}: only a matrix "
                          "can be tied transposed", span)
    if have != tuple(w.shape):
        flip = not transposed and len(o.shape) == 2 and tuple(reversed(o.shape)) == w.shape
        return Diagnostic(
            "E342", f"the {key} of {node.op} {node.name} is {_shape(w.shape)}, but {ref} is "
            f"{_shape(have)}", span,
            hint=f"tie it transposed: {key}={owner.name.split('.')[-1]}.{okey}.T" if flip
            else "a tied parameter has the shape of the one it is tied to")
    if transposed and kind.transposed_tie != key:
        what = (f"only its {kind.transposed_tie}" if kind.transposed_tie else "none of its "
                "parameters")
        return Diagnostic("E343", f"{node.op} cannot use a transposed parameter as its {key}: "
                          f"{what} can be tied transposed", span,
                          hint="dense's weight can: dense <out> weight=<layer>.weight.T")
    return None


def _has_init(p) -> bool:
    return not (getattr(p, "init", DEFAULT_INIT).is_default
                and getattr(p, "bias_init", DEFAULT_INIT).is_default)


def _within_int64(t):
    """The inferred type, or a ShapeError when a size of it (or a coefficient of a symbolic
    size) is beyond int64, as torch's sizes are."""
    for x in (t.items if isinstance(t, TupleType) else [t]):
        if max_abs_coeff(x.shape) <= MAX_INT:
            continue
        for d in x.shape:
            if d.max_abs_coeff() > MAX_INT:
                raise ShapeError(f"the output size {d} is beyond int64",
                                 hint="sizes are int64 (at most 9,223,372,036,854,775,807)")
    return t


def unify(pattern: list, actual: tuple, binding: dict) -> int | None:
    """Match declared dims (with ``_`` wildcards) against inferred ones.

    A declared bare symbol not yet bound binds to the actual dim; everything else must
    be equal after substitution. Returns the index of the first mismatch, or None.
    """
    for i, (p, a) in enumerate(zip(pattern, actual)):
        if p == "_":
            continue
        if not p.is_const and len(p.symbols()) == 1 and str(p) in p.symbols():
            name = str(p)
            if name in binding:
                if binding[name] != a:
                    return i
                continue
            if a == p:
                binding[name] = a
                continue
            binding[name] = a
            continue
        if p.subs(binding) != a:
            return i
    return None


def _declared(dims: list[str]) -> list:
    return ["_" if d == "_" else Dim.parse(d) for d in dims]


def check_assert(t: TensorType, a: ir.Assert, origin: str) -> Diagnostic | None:
    want = _declared(a.dims)
    shown = "[" + ", ".join(a.dims) + "]"
    what = "declared output shape" if a.what == "output" else "shape annotation"
    span = Span.from_json(a.span) if a.span else None
    if len(want) != t.rank:
        return Diagnostic("E310", f"{what} {shown} has rank {len(want)}, but the value is {t} "
                          f"(rank {t.rank})", span, [f"the value comes from {origin}"])
    # model symbols keep their meaning: N in an annotation is the input's N
    binding = {s: Dim.sym(s) for d in t.shape for s in d.symbols()}
    bad = unify(want, t.shape, binding)
    if bad is not None:
        return Diagnostic("E311", f"{what} {shown} does not match the inferred shape {t}", span,
                          [f"dim {bad}: declared {a.dims[bad]}, inferred {t.shape[bad]}",
                           f"the value comes from {origin}"])
    return None


def infer_program(prog: ir.Program) -> tuple[dict[str, ModelTypes], list[Diagnostic]]:
    """Infer all models, then check the compositions (``check D(G)``)."""
    results = {m.name: infer_model(m) for m in prog.models}
    diags = [d for r in results.values() for d in r.diags]
    for c in prog.checks:
        diags.extend(check_composition(c, results))
    for t in getattr(prog, "trainings", ()):
        diags.extend(check_training(t, results))
    return results, diags


def training_types(t: ir.Training, results: dict[str, ModelTypes]) -> dict | None:
    """The types of a train section's named values (``output``, the model's inputs, the
    targets), or None when the model's own types are unknown."""
    res = results.get(t.model)
    if res is None:
        return None
    out = res.output()
    if out is None:
        return None
    types = {"output": out}
    if isinstance(out, TupleType):  # return recon, mu, logvar: each by its name
        for name, ty in zip(res.model.output_names, out.items):
            if name:
                types[name] = ty
    for inp, ty in zip(res.model.inputs, res.inputs()):
        types[inp.name] = ty
    for tg in t.targets:
        types[tg.name] = TensorType(tg.dims(), tg.dtype)
    return types


def check_training(t: ir.Training, results: dict[str, ModelTypes]) -> list[Diagnostic]:
    """Every loss term's tensors fit its loss (class indices [N] int for logits [N, C],
    equal shapes for mse, ...); a located error per term."""
    from ..layers.losses import LOSSES

    span = Span.from_json(t.span) if t.span else None
    if t.model not in results:
        return [Diagnostic("E216", f"train: there is no model {t.model!r}", span)]
    types = training_types(t, results)
    if types is None:
        return []
    out = []
    for term in t.terms:
        where = Span.from_json(term.span) if term.span else span
        kind = LOSSES.get(term.loss)
        missing = next((a for a in term.args if a not in types), None)
        if kind is None or missing is not None:
            what = f"unknown loss {term.loss!r}" if kind is None else (
                f"{term.loss} uses {missing!r}, which is no value of the section")
            out.append(Diagnostic("E216", f"train {t.model}: {what}", where))
            continue
        ins = [types[a] for a in term.args]
        if any(x is None for x in ins):
            continue
        if any(isinstance(x, TupleType) for x in ins):
            out.append(Diagnostic("E350", f"{term.loss} takes tensors, but a value has "
                                  "several (name them in the model and return one)", where))
            continue
        try:
            kind.check(kind.Params.model_validate(term.params), ins)
        except ShapeError as e:
            notes = [f"{a} is {x}" for a, x in zip(term.args, ins)] + list(e.notes)
            out.append(Diagnostic("E350" if e.code == "E300" else e.code, e.message, where,
                                  notes, e.hint))
        except ValueError as e:  # IR built in Python: parameters the schema refuses
            out.append(Diagnostic("E216", f"train {t.model}: {term.loss}: {e}", where))
    return out


def check_composition(c: ir.Check, results: dict[str, ModelTypes]) -> list[Diagnostic]:
    span = Span.from_json(c.span) if c.span else None
    # IR built in Python may break what validation guarantees: a diagnostic, not a crash
    shown = "(".join(c.chain) + ")" * (len(c.chain) - 1)
    unknown = next((n for n in c.chain if n not in results), None)
    if unknown is not None:
        return [Diagnostic("E216", f"check {shown}: there is no model {unknown!r}", span)]
    if len(c.chain) < 2 or (c.inputs and len(c.inputs) != len(c.chain) - 1):
        return [Diagnostic("E216", f"check {shown}: a check needs two or more models, and one "
                           "input name (or none) per model but the innermost", span)]
    chain = list(reversed(c.chain))  # innermost first
    names = list(reversed(c.inputs or [None] * (len(c.chain) - 1)))
    t = results[chain[0]].output()
    if not isinstance(t, TensorType):
        return []
    for i, name in enumerate(chain[1:]):
        outer = results[name]
        m = outer.model
        want_name = names[i]
        if want_name is None:
            if len(m.inputs) != 1:
                listed = ", ".join(x.name for x in m.inputs)
                return [Diagnostic("E320", f"{name} takes {len(m.inputs)} inputs ({listed}); "
                                   "say which one receives the inner model's output", span,
                                   hint=f"check {name}({m.inputs[-1].name}=...)"
                                   if m.inputs else None)]
            k = 0
        else:
            idx = [x.name for x in m.inputs]
            if want_name not in idx:
                return [Diagnostic("E322", f"{name} has no input {want_name!r} "
                                   f"(its inputs: {', '.join(idx)})", span)]
            k = idx.index(want_name)
        want = outer.inputs()[k]
        if want is None:
            return []
        binding: dict = {}
        ok = want.rank == t.rank and want.dtype == t.dtype
        bad = unify(list(want.shape), t.shape, binding) if ok else None
        if not ok or bad is not None:
            inner = " ∘ ".join(reversed(chain[:i + 1]))
            notes = [f"{name} expects {want} (its input {m.inputs[k].name})",
                     f"{inner} gives {t}"]
            if bad is not None:
                notes.append(f"dim {bad}: expected {want.shape[bad]}, got {t.shape[bad]}")
            return [Diagnostic("E321", f"{name}'s input {m.inputs[k].name} does not fit the "
                               f"output of {inner}", span, notes)]
        out = outer.output()
        if not isinstance(out, TensorType):
            return []
        t = TensorType([d.subs(binding) for d in out.shape], out.dtype)
    return _check_contract(c, shown, results[chain[0]], t)


def _check_contract(c: ir.Check, shown: str, inner: ModelTypes, t: TensorType) -> list:
    """``check Dec(Enc) -> x`` / ``-> [N, 1, 28, 28]``: the composition returns exactly that
    type, in the innermost model's symbols (an autoencoder gives back its input's type)."""
    if c.returns is None and c.returns_input is None:
        return []
    span = Span.from_json(c.returns_span or c.span) if (c.returns_span or c.span) else None
    m = inner.model
    if c.returns_input is not None:
        names = [x.name for x in m.inputs]
        if c.returns_input == "input" and "input" not in names:
            if len(names) != 1:
                return [Diagnostic("E323", f"{m.name} has {len(names)} inputs "
                                   f"({', '.join(names)}); say which one the composition "
                                   "returns", span, hint=f"check {shown} -> {names[0]}")]
            k = 0
        elif c.returns_input in names:
            k = names.index(c.returns_input)
        else:
            return [Diagnostic("E322", f"{m.name} has no input {c.returns_input!r} (its "
                               f"inputs: {', '.join(names)})", span,
                               hint="the contract names an input of the innermost model")]
        want = inner.inputs()[k]
        if want is None:
            return []
        what = f"{m.name}'s input {names[k]}"
        dims = [str(d) for d in want.shape]
        pattern = list(want.shape)
        dtype = want.dtype
    else:
        dims = list(c.returns)
        pattern = _declared(dims)
        what = "the declared shape"
        dtype = t.dtype
    shown_want = "[" + ", ".join(dims) + "]" + ("" if dtype == "float" else f" {dtype}")
    notes = [f"{shown} gives {t}", f"{what} is {shown_want}"]
    if len(pattern) != t.rank:
        return [Diagnostic("E323", f"{shown} returns a rank-{t.rank} tensor, but {what} has "
                           f"rank {len(pattern)}", span, notes)]
    if dtype != t.dtype:
        return [Diagnostic("E323", f"{shown} returns {t.dtype} values, but {what} is {dtype}",
                           span, notes)]
    # exact: the symbols are the innermost model's (N stays N), `_` matches anything
    binding = {s: Dim.sym(s) for d in t.shape for s in d.symbols()}
    for d in pattern:
        if d != "_":
            binding.update({s: Dim.sym(s) for s in d.symbols()})
    bad = unify(pattern, t.shape, binding)
    if bad is not None:
        notes.append(f"dim {bad}: {what} has {dims[bad]}, the composition gives "
                     f"{t.shape[bad]}")
        return [Diagnostic("E323", f"{shown} does not return {what} {shown_want}: it gives "
                           f"{t}", span, notes)]
    return []
