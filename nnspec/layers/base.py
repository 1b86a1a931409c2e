"""The contract every layer kind fulfils, and the registry of kinds.

A layer kind is one class in one module of this package:

- ``Params``: a pydantic model (extra="forbid") of the arguments the language accepts;
  ``positional`` names the fields that may be given without ``key=``; boolean fields
  may be given as bare words (``avgpool global``, ``maxpool k=3 ceil``).
- ``infer(p, ins)``: the pure shape rule, from input types to the output type;
  raises :class:`ShapeError` naming the argument at fault.
- ``weights(p, ins, out)``: the state_dict entries (names and layouts as PyTorch's
  module for the same layer) with their default initialisation.
- ``macs(p, ins, out)``: multiply-accumulates, computed analytically.
- ``torch(p, ins, out)``: how the torch backend builds and calls it (data, not code:
  the same description is instantiated in-process and rendered as source).
- ``numpy(p, w, xs, ctx)``: the reference NumPy kernel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Strict,
    field_validator,
)

from ..core.dims import Dim
from . import initializers as _inits
from .plan import (  # noqa: F401  (the kinds' names for what they hand the back ends)
    FLOAT,
    MODULE,
    In,
    InputDevice,
    NumpyCtx,
    ParamRef,
    Prev,
    SymDim,
    TorchCall,
    TorchModule,
    TorchPlan,
    W,
)

# Strict scalars: `bias=1` or `out="6"` is an error, never silently converted.
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]


def _to_dim(v):
    if isinstance(v, Dim):
        return v
    if isinstance(v, bool):
        raise ValueError("a dimension must be an integer or a symbol")
    if isinstance(v, int):
        return Dim.const(v)
    if isinstance(v, str):
        return Dim.parse(v)
    raise ValueError("a dimension must be an integer or a symbol")


INT = "int"


def _to_init(v):
    try:
        return _inits.coerce(v)
    except _inits.InitError as e:
        raise ValueError(str(e)) from None


class _Coerced:
    """``Annotated`` metadata of an argument that ``func`` turns into a ``cls`` (or raises
    ValueError), stored as its text: the core schema that a BeforeValidator over ``cls``
    with a ``PlainSerializer(str)`` gives, made directly (pydantic would first build, and
    then keep unused, a schema of ``cls`` itself: of every field of a dataclass)."""

    __slots__ = ("func", "cls")

    def __init__(self, func, cls):
        self.func, self.cls = func, cls

    def __get_pydantic_core_schema__(self, source, handler):
        from pydantic_core import core_schema as cs

        return cs.no_info_before_validator_function(
            self.func, cs.is_instance_schema(self.cls),
            serialization=cs.plain_serializer_function_ser_schema(
                str, info_arg=False, return_schema=cs.str_schema()))


# A dimension argument (reshape targets): symbolic; stored as text in the IR.
DimArg = Annotated[Dim, _Coerced(_to_dim, Dim)]

# An initialiser argument (``init=normal(0, 0.02)``, ``bias_init=zeros``): stored as its
# text in the IR. Every kind with weights declares ``init`` and ``bias_init`` fields of
# this type; LayerKind.state applies them to its weights (see nnspec.layers.initializers).
InitArg = Annotated[_inits.Init, _Coerced(_to_init, _inits.Init)]
DEFAULT_INIT = _inits.DEFAULT


class _LazyNpops:
    """``nnspec.layers.kernels`` imported on first use, so that checking a spec
    never loads numpy."""

    def __getattr__(self, name):
        from . import kernels as mod

        return getattr(mod, name)


npops = _LazyNpops()


class TensorType:
    """A tensor's static type: a shape of symbolic dims and an element kind."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype: str = FLOAT):
        self.shape: tuple[Dim, ...] = tuple(
            d if d.__class__ is Dim else Dim.const(d) for d in shape)
        self.dtype = dtype

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __eq__(self, other) -> bool:
        return (isinstance(other, TensorType) and self.dtype == other.dtype
                and self.shape == other.shape)

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype))

    def __str__(self) -> str:
        s = "[" + ", ".join(str(d) for d in self.shape) + "]"
        return s if self.dtype == FLOAT else f"{s} {self.dtype}"

    __repr__ = __str__

    def dims_text(self) -> list[str]:
        return [str(d) for d in self.shape]


class TupleType:
    """The type of a layer that returns several tensors (a recurrent layer's output and
    final state): named with ``y, h = ...``, which lowers to ``item`` nodes."""

    __slots__ = ("items", "names")
    dtype = "tuple"

    def __init__(self, items, names=()):
        self.items: tuple[TensorType, ...] = tuple(items)
        self.names: tuple[str, ...] = tuple(names)

    @property
    def shape(self):
        return self.items[0].shape

    @property
    def rank(self) -> int:
        return self.items[0].rank

    def __eq__(self, other) -> bool:
        return isinstance(other, TupleType) and self.items == other.items

    def __hash__(self) -> int:
        return hash(self.items)

    def __str__(self) -> str:
        return "(" + ", ".join(str(t) for t in self.items) + ")"

    __repr__ = __str__

    def dims_text(self) -> list:
        return [t.dims_text() for t in self.items]


class ShapeError(Exception):
    """A layer's shape rule rejects its input. ``arg`` names the argument at fault."""

    def __init__(self, message: str, arg: str | None = None, notes=(), hint: str | None = None,
                 code: str = "E300"):
        super().__init__(message)
        self.message = message
        self.arg = arg
        self.notes = list(notes)
        self.hint = hint
        self.code = code


class Params(BaseModel):
    """Base of every layer's argument schema. Each kind's validator is built on its first
    use (``defer_build``), so that importing nnspec builds none of them and a check builds
    those of the kinds it meets; a subclass inherits this."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True,
                              defer_build=True)

    @field_validator("*")
    @classmethod
    def _finite(cls, v):
        # NaN or an infinity (1e309) is no layer's argument: a rate, eps or slope that is
        # not finite would only give NaN or inf outputs (and torch and NumPy disagree there)
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"must be a finite number, not {v}")
        return v


def _check_positive(cls, v):
    if v is not None and v < 1:
        raise ValueError("must be >= 1")
    return v


def _check_probability(cls, v):
    if not 0.0 <= v < 1.0:
        raise ValueError("must be in [0, 1)")
    return v


def positive(*fields):
    """A Params validator: the fields (ints, or None) must be >= 1.
    Use a distinct attribute name per validator: ``_sizes = positive("out", "groups")``."""
    return field_validator(*fields)(_check_positive)


def probability(*fields):
    """A Params validator: the fields must be in [0, 1) (dropout rates)."""
    return field_validator(*fields)(_check_probability)


_FIELDS: dict = {}
_FLAGS: dict = {}


class LayerKind:
    """Base class of the layer kinds; see the module docstring."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type[BaseModel]] = Params
    positional: ClassVar[tuple[str, ...]] = ()
    synonyms: ClassVar[dict[str, str]] = {}
    arity: ClassVar[int | None] = 1  # tensor inputs; None means two or more
    # keyword arguments that take a tensor (`gru 256 h0=h`, `attention kv=mem`): the tensor
    # becomes an extra input of the node and the field holds its index in the inputs
    tensor_args: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    # ranks the first input may have, (least, most) with most None for no limit, and its
    # layout for the message ("[N, T, E]"): checked by check_inputs (window layers check
    # theirs from their spatial rank, see _window.spatial_rank)
    ranks: ClassVar[tuple[int, int | None]] = (0, None)
    layout: ClassVar[str] = ""

    def input_count_problem(self, p, n: int) -> str | None:
        """Why ``n`` input tensors (tensor arguments aside) do not fit, or None."""
        if self.arity is not None and n != self.arity:
            return (f"{self.name} takes {self.arity} input tensor"
                    f"{'s' if self.arity != 1 else ''}, got {n}")
        if self.arity is None and n < 2:
            return f"{self.name} takes two or more input tensors, got {n}"
        return None

    def check_inputs(self, p, ins: list) -> None:
        """What ``infer`` may assume of its inputs, checked before it: the kind's arity plus
        one input per tensor argument given, each tensor argument's index among those extra
        inputs, and the first input's rank. Lowering and the IR validation guarantee the
        count; this keeps a shape rule from ever indexing past its inputs or axes."""
        given = [a for a in self.tensor_args if getattr(p, a, None) is not None]
        n = len(ins) - len(given)
        if (n < 2) if self.arity is None else (n != self.arity):
            want = "two or more input tensors" if self.arity is None else (
                f"{self.arity} input tensor{'s' if self.arity != 1 else ''}")
            more = f" (and one per tensor argument: {', '.join(given)})" if given else ""
            raise ShapeError(f"{self.name} takes {want}{more}, got {len(ins)}")
        for a in given:
            i = getattr(p, a)
            if not (isinstance(i, int) and n <= i < len(ins)):
                raise ShapeError(f"{self.name}'s tensor argument {a} refers to input {i}, "
                                 "which is not one of its extra inputs", arg=a)
        x = ins[0]
        least, most = self.ranks
        if isinstance(x, TensorType) and not (least <= x.rank and (most is None
                                                                   or x.rank <= most)):
            if most is not None:
                need_rank(x, range(least, most + 1), self.name, self.layout)
            lay = f" ({self.layout})" if self.layout else ""
            raise ShapeError(f"{self.name} expects an input of rank {least} or more{lay}, "
                             f"got {x} (rank {x.rank})")

    def infer(self, p, ins: list[TensorType]) -> TensorType:
        raise NotImplementedError

    def weights(self, p, ins: list[TensorType], out: TensorType) -> dict[str, W]:
        return {}

    def state(self, p, ins: list[TensorType], out: TensorType) -> dict[str, W]:
        """``weights`` with the spec's initialisers (``init=``, ``bias_init=``) applied: the
        state_dict entries as both backends draw them. Raises ShapeError when an
        initialiser cannot apply (xavier on a rank-1 weight)."""
        ws = self.weights(p, ins, out)
        if getattr(p, "init", DEFAULT_INIT).is_default and \
                getattr(p, "bias_init", DEFAULT_INIT).is_default:
            return ws
        used = set()
        for key, w in ws.items():
            chosen = self.init_for(p, key, w)
            if chosen is None:
                continue
            used.add(_inits.targets(key))
            try:
                chosen.check_shape(w.shape, f"{self.name}'s {key}")
            except _inits.InitError as e:
                raise ShapeError(str(e), arg=_inits.targets(key), code="E340") from None
            ws[key] = replace(w, init=chosen.dist(w.shape))
        for arg in ("init", "bias_init"):
            chosen = getattr(p, arg, DEFAULT_INIT)
            if not chosen.is_default and arg not in used:
                what = "bias" if arg == "bias_init" else "trainable weight"
                raise ShapeError(f"{arg}={chosen} initialises nothing: this {self.name} has no "
                                 f"{what}", arg=arg, code="E340",
                                 hint="remove it, or give the layer its "
                                      f"{'bias' if arg == 'bias_init' else 'weights'}")
        return ws

    def init_for(self, p, key: str, w: W):
        """The spec's initialiser of one state_dict entry, or None for the default."""
        if not w.trainable or w.dtype == INT:
            return None
        chosen = getattr(p, _inits.targets(key), None)
        return None if chosen is None or chosen.is_default else chosen

    def macs(self, p, ins: list[TensorType], out: TensorType) -> Dim | int:
        return 0

    def torch(self, p, ins: list[TensorType], out: TensorType) -> TorchPlan:
        raise NotImplementedError

    #: the state_dict key that may be tied to another layer's matrix transposed
    #: (``weight=enc.weight.T``), with ``torch_tied`` its torch form; "" for none
    transposed_tie: ClassVar[str] = ""

    def torch_tied(self, p, ins: list[TensorType], out: TensorType, ref: "ParamRef"
                   ) -> TorchPlan:
        """The torch plan when ``transposed_tie`` is another layer's parameter ``ref``
        (transposed): a module without that parameter, called with ``ref`` as an argument."""
        raise NotImplementedError(self.name)

    def numpy(self, p, w: dict, xs: list, ctx: NumpyCtx):
        raise NotImplementedError

    def backward(self, p, w: dict, xs: list, y, gy, ctx: NumpyCtx) -> tuple[list, dict]:
        """The reference gradients: given ``gy`` = dL/dy for the forward's output ``y``
        (a tuple with None entries for a layer returning several values), return dL/dx per
        input (None for an int input or one that gets none) and {weight suffix: dL/dw}
        for the trainable weights. ``ctx.saved`` is what ``numpy`` stored."""
        raise NotImplementedError(f"{self.name} has no backward")

    @property
    def has_backward(self) -> bool:
        return type(self).backward is not LayerKind.backward

    def detail(self, p, ins: list[TensorType]) -> str:
        """The arguments as the summary shows them (explicit, resolved values)."""
        return " ".join(f"{k}={_show(v)}" for k, v in p.model_dump(exclude_defaults=True).items())

    # used by the registry test: a valid argument set and input for this kind
    def sample(self) -> tuple[dict, list[TensorType]]:
        raise NotImplementedError

    def samples(self) -> list[tuple[dict, list[TensorType]]]:
        """``sample()`` and, where arguments exclude one another (a target size or an
        explicit output_padding), more samples that give the others: the registry test
        exercises each argument in the first sample that gives it."""
        return [self.sample()]

    def fields(self) -> dict:
        """The Params fields (pydantic's ``model_fields`` costs ~25 us a read: cached)."""
        got = _FIELDS.get(self.Params)
        if got is None:
            got = _FIELDS[self.Params] = dict(self.Params.model_fields)
        return got

    def flags(self) -> tuple[str, ...]:
        """The boolean fields (given as bare words: ``maxpool k=3 ceil``), cached."""
        got = _FLAGS.get(self.Params)
        if got is None:
            got = _FLAGS[self.Params] = tuple(
                n for n, f in self.fields().items() if f.annotation is bool)
        return got

    def extra(self, p, ins: list, name: str):
        """The tensor given as keyword argument ``name`` (see tensor_args), or None."""
        i = getattr(p, name, None)
        return ins[i] if i is not None else None


def _show(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, tuple):
        return "(" + ", ".join(_show(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return str(v)


class KindRegistry(Mapping):
    """The layer kinds by name and alias (read-only). A kind's module is imported when one of
    its names is first looked up, as the static table ``names`` (name -> module, in order)
    says; a name not in it imports the modules it does not list, so that a family added since
    is found all the same. Listing the names (``iter``, ``len``) imports every module."""

    def __init__(self):
        self._kinds: dict[str, LayerKind] = {}
        self.configure("", (), {})

    def configure(self, package: str, modules, names: dict[str, str]) -> None:
        """The package of the kind modules, every one of them, and the static name table."""
        self._package, self._modules, self._names = package, tuple(modules), dict(names)
        listed = set(self._names.values())
        self._unlisted = tuple(m for m in self._modules if m not in listed)
        self._complete = False

    def add(self, key: str, kind: LayerKind) -> None:
        if key in self._kinds:
            raise RuntimeError(f"layer kind {key!r} registered twice")
        self._kinds[key] = kind

    def _find(self, name) -> LayerKind | None:
        module = self._names.get(name)
        if module is None and (self._complete or not self._unlisted):
            return None  # a block's name, a misspelling: nothing to import
        from importlib import import_module

        for m in (module,) if module is not None else self._unlisted:
            import_module(f"{self._package}.{m}")
        return self._kinds.get(name)

    def load_all(self) -> dict[str, LayerKind]:
        """Every kind module imported: the kinds by name, in the table's order."""
        if not self._complete:
            from importlib import import_module

            for m in self._modules:
                import_module(f"{self._package}.{m}")
            order = {n: i for i, n in enumerate(self._names)}
            self._kinds = dict(sorted(self._kinds.items(),
                                      key=lambda kv: order.get(kv[0], len(order))))
            self._complete = True
        return self._kinds

    def __getitem__(self, name) -> LayerKind:
        kind = self._kinds.get(name) or self._find(name)
        if kind is None:
            raise KeyError(name)
        return kind

    def get(self, name, default=None):
        kind = self._kinds.get(name) or self._find(name)
        return default if kind is None else kind

    def __contains__(self, name) -> bool:
        return name in self._kinds or self._find(name) is not None

    def __iter__(self):
        return iter(self.load_all())

    def __len__(self) -> int:
        return len(self.load_all())


REGISTRY = KindRegistry()


def register(cls):
    """Class decorator: register a LayerKind under its name and aliases."""
    inst = cls()
    for key in (cls.name, *cls.aliases):
        REGISTRY.add(key, inst)
    return cls


# ---- helpers shared by the layer modules -------------------------------------


def need_rank(t: TensorType, ranks, what: str, layout: str = "") -> None:
    if t.rank not in ranks:
        want = " or ".join(str(r) for r in sorted(ranks))
        lay = f" ({layout})" if layout else ""
        raise ShapeError(f"{what} expects a rank-{want} input{lay}, got {t} (rank {t.rank})")


def need_float(t: TensorType, what: str) -> None:
    if t.dtype != FLOAT:
        raise ShapeError(f"{what} needs a float input, got {t}",
                         hint="token ids need an embedding layer first")


def concrete(d: Dim, what: str, arg: str | None = None) -> int:
    """The int value of a dim that a layer needs to know (channels, features)."""
    if d.is_const:
        return d.value
    syms = ", ".join(sorted(d.symbols()))
    raise ShapeError(f"{what} must be a concrete size, but it is {d} "
                     f"(depends on symbol{'s' if len(d.symbols()) > 1 else ''} {syms})",
                     arg=arg, hint="give the input a concrete size for that dimension")


def prod(values) -> Dim | int:
    out = 1
    for v in values:
        out = v * out
    return out


def fan_in_bound(fan_in: int) -> float:
    """PyTorch's default bound for Linear/Conv weights and biases: 1/sqrt(fan_in).

    kaiming_uniform_(a=sqrt(5)) gives gain sqrt(2/(1+5)) and bound gain*sqrt(3/fan_in)
    = 1/sqrt(fan_in); the bias uses the same bound.
    """
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
