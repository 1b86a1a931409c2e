"""What the reference page of a layer kind says, read from the registry
(:data:`nnspec.layers.REGISTRY`): its arguments with their types and defaults, its shape rule
as a formula (the kind's own ``infer`` run on symbolic inputs), an example spec written from
the kind's sample (checked: a kind whose example does not check stops the build), the
example's summary table and the PyTorch source ``nnspec compile`` writes for it."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field

from ...core.dims import Dim
from ...layers import REGISTRY, LayerKind, ShapeError, TensorType
from ...layers.base import TupleType
from ...layers.initializers import Init

#: the names given to the dims of a symbolic input, by rank
_SYMBOLS = {1: ("N",), 2: ("N", "F"), 3: ("N", "T", "F"), 4: ("N", "C", "H", "W"),
            5: ("N", "C", "D", "H", "W")}

#: the families whose rank-3 input is [N, C, L] (channels first) rather than [N, T, F]
_CHANNELS_FIRST = {"adaptive", "conv", "convtranspose", "groupnorm", "norm", "padcrop", "pool",
                   "upsample"}

#: kinds whose sample, written as one statement, would not be how a spec uses them
#: (no input of their own, or a value the language makes for you): their example by hand
CURATED = {
    "item": "model Example(x: [N, 5, 4]) {\n    _y, h = x | gru 8 state\n    return h\n}\n",
    "pack": "model Example(x: [N, 5, 4]) {\n    y, h = x | gru 8 state\n    return y, h\n}\n",
    "param": "model Example(x: [N, 3, 4]) {\n    pos = param [1, 3, 4] init=normal(0, 0.02)\n"
             "    return x + pos\n}\n",
    "arange": "model Example(x: [N, T, 8]) {\n    return arange(T)\n}\n",
    "buffer": "model Example(x: [N, 4]) {\n    pos = to_float(arange(4)) | buffer persistent "
              "as positions\n    return x + pos\n}\n",
}


@dataclass
class Argument:
    name: str
    type: str
    default: str  # "" for a required argument
    required: bool
    positional: bool
    flag: bool
    tensor: bool
    long_names: list[str] = field(default_factory=list)


@dataclass
class KindDoc:
    """Everything a kind's page shows."""

    name: str
    family: str
    aliases: tuple[str, ...]
    usage: str
    about: str
    layout: str
    arity: str
    arguments: list[Argument]
    formula: str  # "x: [N, C, H, W] -> [N, 6, ...]", or "" where none could be found
    formula_args: str  # the arguments the formula is computed with
    example: str
    summary: str
    torch: str
    has_backward: bool


def unique_kinds() -> list[LayerKind]:
    """Every registered kind once (aliases folded), in the registry's order."""
    seen: dict[int, LayerKind] = {}
    for kind in REGISTRY.load_all().values():
        seen.setdefault(id(kind), kind)
    return list(seen.values())


def family(kind: LayerKind) -> str:
    return type(kind).__module__.rsplit(".", 1)[-1]


def type_text(t) -> str:
    """A Params field's annotation as a reader would say it: ``int or (int, ...)``."""
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a) for a in args if a is not type(None)]
        text = " or ".join(dict.fromkeys(parts))
        return f"{text} or none" if type(None) in args else text
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"({type_text(args[0])}, ...)"
        return "(" + ", ".join(type_text(a) for a in args) + ")"
    if t is type(None):
        return "none"
    return {int: "int", float: "float", bool: "bool", str: "name", Dim: "size",
            Init: "initialiser"}.get(t, getattr(t, "__name__", str(t)))


def literal(v) -> str:
    """A Python value as spec source."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "_"
    if isinstance(v, (Dim, Init)):
        return str(v)
    if isinstance(v, tuple):
        if v and all(isinstance(x, Dim) for x in v):
            return "[" + ", ".join(str(x) for x in v) + "]"
        inner = ", ".join(literal(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    return str(v)


def arguments(kind: LayerKind) -> list[Argument]:
    longs: dict[str, list[str]] = {}
    for long, short in kind.synonyms.items():
        longs.setdefault(short, []).append(long)
    out = []
    for name, f in kind.fields().items():
        required = f.is_required()
        tensor = name in kind.tensor_args
        shown = name.rstrip("_")  # `global_` is written `global`
        default = "" if required else "none" if f.default is None else literal(f.default)
        out.append(Argument(shown, "tensor (a named value)" if tensor else type_text(f.annotation),
                            default, required, name in kind.positional,
                            f.annotation is bool or typing.get_args(f.annotation)[:1] == (bool,),
                            tensor, longs.get(name, [])))
    return out


def _type_text(t) -> str:
    if isinstance(t, TupleType):
        return "(" + ", ".join(str(i) for i in t.items) + ")"
    return str(t)


def _infers(kind: LayerKind, p, ins: list) -> object | None:
    try:
        kind.check_inputs(p, ins)
        return kind.infer(p, ins)
    except (ShapeError, ValueError, TypeError, ArithmeticError, IndexError, KeyError):
        return None


def _with_dim(t, j: int, d: Dim):
    if isinstance(t, TupleType):
        return t
    shape = list(t.shape)
    shape[j] = d
    return TensorType(shape, t.dtype)


def _base_names(kind: LayerKind, rank: int) -> tuple[str, ...]:
    if rank == 3 and family(kind) in _CHANNELS_FIRST:
        return ("N", "C", "L")
    return _SYMBOLS.get(rank, tuple(f"D{j}" for j in range(rank)))


def _key(t, j: int) -> tuple:
    """Dims that are probably one size in a sample: equal values at the batch axis, or at the
    same place counted from the end."""
    return (t.shape[j].value, "batch" if j == 0 else t.rank - j)


def symbolic(kind: LayerKind, args: dict, ins: list) -> tuple[list, object] | None:
    """The sample's inputs with as many dims made symbols as the shape rule allows (each
    kept only where ``infer`` still succeeds), and the output type then: the rule as a
    formula. A dim is tried in every input that has it at once (a batch shared by a tensor
    and its index), then alone. None when the sample itself does not infer."""
    p = kind.Params.model_validate(args)
    out = _infers(kind, p, ins)
    if out is None:
        return None
    ins = list(ins)
    for i in range(len(ins)):
        if isinstance(ins[i], TupleType):
            continue
        base = _base_names(kind, ins[i].rank)
        for j in range(ins[i].rank):
            t = ins[i]
            if not t.shape[j].is_const:
                continue
            key = _key(t, j)
            sym = Dim.parse(base[j] if i == 0 else f"{base[j]}{i}")
            together = [(a, b) for a, u in enumerate(ins) if isinstance(u, TensorType)
                        for b in range(u.rank) if u.shape[b].is_const and _key(u, b) == key]
            for group in (together, [(i, j)]):
                trial = list(ins)
                for a, b in group:
                    trial[a] = _with_dim(trial[a], b, sym)
                got = _infers(kind, p, trial)
                if got is not None:
                    ins, out = trial, got
                    break
    return ins, out


def subscript(items) -> str:
    """An ``index`` kind's items as Python's subscript: ``:, -1, 1::2``."""
    def one(it):
        if it == "...":
            return "..."
        if isinstance(it, tuple):
            start, stop, step = ("" if v is None else str(v) for v in it)
            return f"{start}:{stop}" + (f":{step}" if step else "")
        return str(it)
    return ", ".join(one(it) for it in items)


def _input_names(n: int) -> list[str]:
    return ["x"] if n == 1 else [f"x{i}" for i in range(n)]


def example_spec(kind: LayerKind, args: dict, ins: list) -> str:
    """The sample as a spec: one model whose body is the layer, written as a person would
    (positional arguments first, true booleans as bare words, tensor arguments by name)."""
    if kind.name in CURATED:
        return CURATED[kind.name]
    # the batch dim as the symbol N where the rule allows it
    if ins and isinstance(ins[0], TensorType) and ins[0].rank:
        p = kind.Params.model_validate(args)
        n = Dim.parse("N")
        trial = [_with_dim(t, 0, n) if isinstance(t, TensorType) and t.rank
                 and t.shape[0] == ins[0].shape[0] else t for t in ins]
        if _infers(kind, p, trial) is not None:
            ins = trial
    names = _input_names(len(ins))
    sig = ", ".join(f"{n}: {_type_text(t)}" for n, t in zip(names, ins))
    tensor_idx = {args[k] for k in kind.tensor_args if args.get(k) is not None}
    flags = {a.name for a in arguments(kind) if a.flag}
    words: list[str] = []
    kws: list[tuple[str, str, bool]] = []  # (name, value, a flag given as a bare word)
    for key, v in args.items():
        if v is None:
            continue
        shown = key.rstrip("_")
        if key in kind.tensor_args:
            kws.append((shown, names[v], False))
        elif not kws and kind.positional[len(words):len(words) + 1] == (key,):
            words.append(literal(v))
        else:
            kws.append((shown, literal(v), v is True and shown in flags))
    main = [n for i, n in enumerate(names) if i not in tensor_idx]
    if kind.name == "index":
        line = f"return {main[0]}[{subscript(args['items'])}]"
    elif kind.arity == 1 and len(main) == 1:
        line = " ".join([kind.name, *words, *(k if flag else f"{k}={v}" for k, v, flag in kws)])
    else:  # a call: its first arguments are the tensors
        line = f"{kind.name}({', '.join(main + words + [f'{k}={v}' for k, v, _ in kws])})"
    p = kind.Params.model_validate(args)
    out = _infers(kind, p, ins)
    if isinstance(out, TupleType) and not line.startswith("return"):
        outs = [f"y{i}" for i in range(len(out.items))]
        line = f"{', '.join(outs)} = {line}\n    return {', '.join(outs)}"
    return f"model Example({sig}) {{\n    {line}\n}}\n"


class ExampleError(Exception):
    """A kind's example spec does not check: the reference would show a broken example."""


def check_example(name: str, text: str):
    """The example loaded and shape-checked; ExampleError (with check's output) when it has
    any error or warning."""
    from ... import api
    from ...core.diagnostics import render_all

    spec = api.loads(text, f"{name}.nn", strict=False)
    problems = list(spec.diagnostics) + list(spec.warnings)
    if problems:
        raise ExampleError(f"the example of {name} does not check:\n{text}\n"
                           + render_all(problems, spec.sources, None))
    return spec


def summary_text(spec) -> str:
    from ..summary import _summary_text

    s = spec.summary(spec.model_names[0])
    return "\n".join(_summary_text(s, "binary", None, True))


def torch_text(spec) -> str:
    """The PyTorch source ``nnspec compile`` writes for the example, less its header."""
    from ...backends.emit import emit_source

    lines = emit_source(spec).splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines) + "\n"


def kind_doc(kind: LayerKind) -> KindDoc:
    args, ins = kind.sample()
    sym = symbolic(kind, args, ins)
    formula = ""
    if sym is not None and kind.name not in ("item", "pack"):
        s_ins, s_out = sym
        names = _input_names(len(s_ins))
        left = ", ".join(f"{n}: {_type_text(t)}" for n, t in zip(names, s_ins)) or "(no input)"
        formula = f"{left}  ->  {_type_text(s_out)}"
    example = example_spec(kind, args, ins)
    spec = check_example(kind.name, example)
    shown_args = " ".join(f"{k.rstrip('_')}={literal(v)}" for k, v in args.items()
                          if v is not None and k not in kind.tensor_args)
    arity = ("two or more tensors" if kind.arity is None else
             "no tensor input" if kind.arity == 0 else
             f"{kind.arity} tensor{'s' if kind.arity != 1 else ''}")
    return KindDoc(
        name=kind.name, family=family(kind), aliases=tuple(kind.aliases),
        usage=kind.summary, about=" ".join((kind.__doc__ or "").split()),
        layout=kind.layout, arity=arity, arguments=arguments(kind), formula=formula,
        formula_args=shown_args, example=example, summary=summary_text(spec),
        torch=torch_text(spec), has_backward=kind.has_backward)
