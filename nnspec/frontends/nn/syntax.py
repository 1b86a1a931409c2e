"""Syntax-tree node types built by the parser. Every node carries its span."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.source import Span


class _Node:
    """What ``@dataclass`` would add to a node, written once: its fields' repr and equality.
    (Each node class spells out ``__slots__`` and ``__init__``; the decorator, without
    generating code, only records the fields, for ``dataclasses.fields``. Generating them
    took most of the module's import, a cost every ``nnspec check`` pays.)"""

    __slots__ = ()

    def __repr__(self) -> str:
        return (f"{type(self).__qualname__}("
                + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")")

    def __eq__(self, other) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (tuple(getattr(self, k) for k in self.__slots__)
                == tuple(getattr(other, k) for k in other.__slots__))

    __hash__ = None  # type: ignore[assignment]  (mutable, as a dataclass with eq)


_NEW = object()  # a list field's default: a new empty list

# ---- expressions -------------------------------------------------------------


@dataclass(init=False, repr=False, eq=False)
class Num(_Node):
    """Num(value, span)."""

    __slots__ = ("value", "span")
    value: int | float
    span: Span

    def __init__(self, value, span):
        self.value = value
        self.span = span


@dataclass(frozen=True, slots=True)
class BigInt:
    """An integer literal too long to be a size: only its digit count is kept."""

    digits: int


@dataclass(init=False, repr=False, eq=False)
class Str(_Node):
    """Str(value, span)."""

    __slots__ = ("value", "span")
    value: str
    span: Span

    def __init__(self, value, span):
        self.value = value
        self.span = span


@dataclass(init=False, repr=False, eq=False)
class Ref(_Node):
    """Ref(name, span)."""

    __slots__ = ("name", "span")
    name: str
    span: Span

    def __init__(self, name, span):
        self.name = name
        self.span = span


@dataclass(init=False, repr=False, eq=False)
class Dotted(_Node):
    """``wte.weight``, ``encoder.fc.weight.T``: a parameter of a layer (a weight tie)."""

    __slots__ = ("parts", "span")
    parts: list
    span: Span

    def __init__(self, parts, span):
        self.parts = parts
        self.span = span


@dataclass(init=False, repr=False, eq=False)
class BinOp(_Node):
    """BinOp(op, left, right, span)."""

    __slots__ = ("op", "left", "right", "span")
    op: str  # + - * / //
    left: object
    right: object
    span: Span

    def __init__(self, op, left, right, span):
        self.op = op
        self.left = left
        self.right = right
        self.span = span


@dataclass(init=False, repr=False, eq=False)
class Neg(_Node):
    """Neg(operand, span)."""

    __slots__ = ("operand", "span")
    operand: object
    span: Span

    def __init__(self, operand, span):
        self.operand = operand
        self.span = span


@dataclass(init=False, repr=False, eq=False)
class TupleLit(_Node):
    """TupleLit(items, span)."""

    __slots__ = ("items", "span")
    items: list
    span: Span

    def __init__(self, items, span):
        self.items = items
        self.span = span


@dataclass(init=False, repr=False, eq=False)
class ShapeLit(_Node):
    """ShapeLit(dims, span)."""

    __slots__ = ("dims", "span")
    dims: list
    span: Span

    def __init__(self, dims, span):
        self.dims = dims
        self.span = span


@dataclass(init=False, repr=False, eq=False)
class Arg(_Node):
    """One argument: positional when ``key`` is None."""

    __slots__ = ("key", "value", "span")
    key: str | None
    value: object
    span: Span

    def __init__(self, key, value, span):
        self.key = key
        self.value = value
        self.span = span


@dataclass(init=False, repr=False, eq=False)
class CallExpr(_Node):
    """``name(args)`` inside an expression (``relu(y + x)``, ``D(G)``)."""

    __slots__ = ("name", "args", "span", "name_span")
    name: str
    args: list[Arg]
    span: Span
    name_span: Span

    def __init__(self, name, args, span, name_span):
        self.name = name
        self.args = args
        self.span = span
        self.name_span = name_span


# ---- pipeline stages ---------------------------------------------------------


@dataclass(init=False, repr=False, eq=False)
class Layer(_Node):
    """``name arg arg k=v`` — a layer, a block, or a reference to a named value."""

    __slots__ = ("name", "args", "rep", "alias", "span", "name_span")
    name: str
    args: list[Arg]
    rep: object | None
    alias: str | None
    span: Span
    name_span: Span

    def __init__(self, name, args, rep, alias, span, name_span):
        self.name = name
        self.args = args
        self.rep = rep
        self.alias = alias
        self.span = span
        self.name_span = name_span


@dataclass(init=False, repr=False, eq=False)
class Call(_Node):
    """``name(args)`` as a pipeline stage."""

    __slots__ = ("name", "args", "rep", "alias", "span", "name_span")
    name: str
    args: list[Arg]
    rep: object | None
    alias: str | None
    span: Span
    name_span: Span

    def __init__(self, name, args, rep, alias, span, name_span):
        self.name = name
        self.args = args
        self.rep = rep
        self.alias = alias
        self.span = span
        self.name_span = name_span


@dataclass(init=False, repr=False, eq=False)
class Group(_Node):
    """``(expr)`` as a pipeline stage."""

    __slots__ = ("expr", "rep", "alias", "span")
    expr: object
    rep: object | None
    alias: str | None
    span: Span

    def __init__(self, expr, rep, alias, span):
        self.expr = expr
        self.rep = rep
        self.alias = alias
        self.span = span


@dataclass(init=False, repr=False, eq=False)
class Index(_Node):
    """``name[subscripts]`` as a pipeline stage: Python's indexing of a named value. Each
    subscript is an expression (an index), a (start, stop, step) tuple of expressions or
    None, or ``...``."""

    __slots__ = ("name", "items", "alias", "span", "name_span")
    name: str
    items: list
    alias: str | None
    span: Span
    name_span: Span

    def __init__(self, name, items, alias, span, name_span):
        self.name = name
        self.items = items
        self.alias = alias
        self.span = span
        self.name_span = name_span


@dataclass(init=False, repr=False, eq=False)
class Plus(_Node):
    """``a + b`` at pipeline level: element-wise sum of two stages."""

    __slots__ = ("left", "right", "span")
    left: object
    right: object
    span: Span

    def __init__(self, left, right, span):
        self.left = left
        self.right = right
        self.span = span


@dataclass(init=False, repr=False, eq=False)
class Annot(_Node):
    """``: [dims]`` inside a pipeline, after its stage number ``after``."""

    __slots__ = ("after", "shape")
    after: int
    shape: ShapeLit

    def __init__(self, after, shape):
        self.after = after
        self.shape = shape


@dataclass(init=False, repr=False, eq=False)
class Pipeline(_Node):
    """Pipeline(stages, span, annots)."""

    __slots__ = ("stages", "span", "annots")
    stages: list
    span: Span
    # the annotations inside the pipeline (Annot); a statement's final annotation is its
    # Stmt.annot instead
    annots: list

    def __init__(self, stages, span, annots=_NEW):
        self.stages = stages
        self.span = span
        self.annots = [] if annots is _NEW else annots


@dataclass(init=False, repr=False, eq=False)
class Stmt(_Node):
    """Stmt(kind, target, pipeline, annot, span, more)."""

    __slots__ = ("kind", "target", "pipeline", "annot", "span", "more")
    kind: str  # "pipe" | "assign" | "return"
    target: str | list[str] | None  # a list for `y, h = ...`
    pipeline: Pipeline
    annot: ShapeLit | None
    span: Span
    more: list  # `return a, b`: the pipelines after the first

    def __init__(self, kind, target, pipeline, annot, span, more=_NEW):
        self.kind = kind
        self.target = target
        self.pipeline = pipeline
        self.annot = annot
        self.span = span
        self.more = [] if more is _NEW else more


def returned_names(body: list) -> list[str]:
    """The names of the values a body returns with ``return a, b`` (its last such
    statement): one per value, "" where a returned pipeline is more than a bare name; []
    for a body that returns one value."""
    for st in reversed(body):
        if st.kind == "return" and st.more:
            out = []
            for pl in [st.pipeline, *st.more]:
                only = pl.stages[0] if len(pl.stages) == 1 else None
                bare = (type(only) is Layer and not only.args and only.rep is None
                        and only.alias is None)
                out.append(only.name if bare else "")
            return out
    return []


# ---- top level ---------------------------------------------------------------


@dataclass(init=False, repr=False, eq=False)
class Param(_Node):
    """Param(name, default, span)."""

    __slots__ = ("name", "default", "span")
    name: str
    default: object | None
    span: Span

    def __init__(self, name, default, span):
        self.name = name
        self.default = default
        self.span = span


@dataclass(init=False, repr=False, eq=False)
class Input(_Node):
    """Input(name, shape, dtype, span, dtype_span)."""

    __slots__ = ("name", "shape", "dtype", "span", "dtype_span")
    name: str
    shape: ShapeLit
    dtype: str | None
    span: Span
    dtype_span: Span | None

    def __init__(self, name, shape, dtype, span, dtype_span=None):
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.span = span
        self.dtype_span = dtype_span


@dataclass(init=False, repr=False, eq=False)
class Block(_Node):
    """Block(name, params, body, span, file)."""

    __slots__ = ("name", "params", "body", "span", "file")
    name: str
    params: list[Param]
    body: list[Stmt]
    span: Span
    file: str

    def __init__(self, name, params, body, span, file=""):
        self.name = name
        self.params = params
        self.body = body
        self.span = span
        self.file = file


@dataclass(init=False, repr=False, eq=False)
class Model(_Node):
    """Model(name, inputs, out_shape, body, span, file)."""

    __slots__ = ("name", "inputs", "out_shape", "body", "span", "file")
    name: str
    inputs: list[Input]
    out_shape: ShapeLit | None
    body: list[Stmt]
    span: Span
    file: str

    def __init__(self, name, inputs, out_shape, body, span, file=""):
        self.name = name
        self.inputs = inputs
        self.out_shape = out_shape
        self.body = body
        self.span = span
        self.file = file


@dataclass(init=False, repr=False, eq=False)
class Const(_Node):
    """Const(name, expr, span)."""

    __slots__ = ("name", "expr", "span")
    name: str
    expr: object
    span: Span

    def __init__(self, name, expr, span):
        self.name = name
        self.expr = expr
        self.span = span


@dataclass(init=False, repr=False, eq=False)
class Use(_Node):
    """Use(path, span)."""

    __slots__ = ("path", "span")
    path: str
    span: Span

    def __init__(self, path, span):
        self.path = path
        self.span = span


@dataclass(init=False, repr=False, eq=False)
class Check(_Node):
    """Check(expr, span, returns)."""

    __slots__ = ("expr", "span", "returns")
    expr: object
    span: Span
    # ``check Dec(Enc) -> [N, 1, 28, 28]`` (a ShapeLit) or ``-> x`` (a Ref: the innermost
    # model's input of that name, or ``input`` for its only input); None without ``->``
    returns: object

    def __init__(self, expr, span, returns=None):
        self.expr = expr
        self.span = span
        self.returns = returns


@dataclass(init=False, repr=False, eq=False)
class Setting(_Node):
    """A line of a train section other than the loss: ``optimizer adam lr=1e-3``."""

    __slots__ = ("name", "args", "span", "name_span")
    name: str
    args: list  # Arg
    span: Span
    name_span: Span

    def __init__(self, name, args, span, name_span):
        self.name = name
        self.args = args
        self.span = span
        self.name_span = name_span


@dataclass(init=False, repr=False, eq=False)
class Train(_Node):
    """``train Model(targets...) { loss ...; optimizer ...; ... }``."""

    __slots__ = ("model", "targets", "loss", "settings", "span", "name_span", "file")
    model: str
    targets: list  # Input
    loss: list  # (expr, span) per ``loss`` line
    settings: list  # Setting
    span: Span
    name_span: Span
    file: str

    def __init__(self, model, targets, loss, settings, span, name_span, file=""):
        self.model = model
        self.targets = targets
        self.loss = loss
        self.settings = settings
        self.span = span
        self.name_span = name_span
        self.file = file


@dataclass(init=False, repr=False, eq=False)
class Module(_Node):
    """One parsed .nn file."""

    __slots__ = ("path", "items")
    path: str
    items: list

    def __init__(self, path, items=_NEW):
        self.path = path
        self.items = [] if items is _NEW else items
