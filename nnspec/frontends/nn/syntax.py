"""Syntax-tree node types built by the parser. Every node carries its span."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...core.source import Span

# ---- expressions -------------------------------------------------------------


@dataclass(slots=True)
class Num:
    value: int | float
    span: Span


@dataclass(frozen=True, slots=True)
class BigInt:
    """An integer literal too long to be a size: only its digit count is kept."""

    digits: int


@dataclass(slots=True)
class Str:
    value: str
    span: Span


@dataclass(slots=True)
class Ref:
    name: str
    span: Span


@dataclass(slots=True)
class Dotted:
    """``wte.weight``, ``encoder.fc.weight.T``: a parameter of a layer (a weight tie)."""

    parts: list
    span: Span


@dataclass(slots=True)
class BinOp:
    op: str  # + - * / //
    left: object
    right: object
    span: Span


@dataclass(slots=True)
class Neg:
    operand: object
    span: Span


@dataclass(slots=True)
class TupleLit:
    items: list
    span: Span


@dataclass(slots=True)
class ShapeLit:
    dims: list
    span: Span


@dataclass(slots=True)
class Arg:
    """One argument: positional when ``key`` is None."""

    key: str | None
    value: object
    span: Span


@dataclass(slots=True)
class CallExpr:
    """``name(args)`` inside an expression (``relu(y + x)``, ``D(G)``)."""

    name: str
    args: list[Arg]
    span: Span
    name_span: Span


# ---- pipeline stages ---------------------------------------------------------


@dataclass(slots=True)
class Layer:
    """``name arg arg k=v`` — a layer, a block, or a reference to a named value."""

    name: str
    args: list[Arg]
    rep: object | None
    alias: str | None
    span: Span
    name_span: Span


@dataclass(slots=True)
class Call:
    """``name(args)`` as a pipeline stage."""

    name: str
    args: list[Arg]
    rep: object | None
    alias: str | None
    span: Span
    name_span: Span


@dataclass(slots=True)
class Group:
    """``(expr)`` as a pipeline stage."""

    expr: object
    rep: object | None
    alias: str | None
    span: Span


@dataclass(slots=True)
class Index:
    """``name[subscripts]`` as a pipeline stage: Python's indexing of a named value. Each
    subscript is an expression (an index), a (start, stop, step) tuple of expressions or
    None, or ``...``."""

    name: str
    items: list
    alias: str | None
    span: Span
    name_span: Span


@dataclass(slots=True)
class Plus:
    """``a + b`` at pipeline level: element-wise sum of two stages."""

    left: object
    right: object
    span: Span


@dataclass(slots=True)
class Annot:
    """``: [dims]`` inside a pipeline, after its stage number ``after``."""

    after: int
    shape: ShapeLit


@dataclass(slots=True)
class Pipeline:
    stages: list
    span: Span
    # the annotations inside the pipeline (Annot); a statement's final annotation is its
    # Stmt.annot instead
    annots: list = field(default_factory=list)


@dataclass(slots=True)
class Stmt:
    kind: str  # "pipe" | "assign" | "return"
    target: str | list[str] | None  # a list for `y, h = ...`
    pipeline: Pipeline
    annot: ShapeLit | None
    span: Span
    more: list = field(default_factory=list)  # `return a, b`: the pipelines after the first


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


@dataclass(slots=True)
class Param:
    name: str
    default: object | None
    span: Span


@dataclass(slots=True)
class Input:
    name: str
    shape: ShapeLit
    dtype: str | None
    span: Span
    dtype_span: Span | None = None


@dataclass(slots=True)
class Block:
    name: str
    params: list[Param]
    body: list[Stmt]
    span: Span
    file: str = ""


@dataclass(slots=True)
class Model:
    name: str
    inputs: list[Input]
    out_shape: ShapeLit | None
    body: list[Stmt]
    span: Span
    file: str = ""


@dataclass(slots=True)
class Const:
    name: str
    expr: object
    span: Span


@dataclass(slots=True)
class Use:
    path: str
    span: Span


@dataclass(slots=True)
class Check:
    expr: object
    span: Span
    # ``check Dec(Enc) -> [N, 1, 28, 28]`` (a ShapeLit) or ``-> x`` (a Ref: the innermost
    # model's input of that name, or ``input`` for its only input); None without ``->``
    returns: object = None


@dataclass(slots=True)
class Setting:
    """A line of a train section other than the loss: ``optimizer adam lr=1e-3``."""

    name: str
    args: list  # Arg
    span: Span
    name_span: Span


@dataclass(slots=True)
class Train:
    """``train Model(targets...) { loss ...; optimizer ...; ... }``."""

    model: str
    targets: list  # Input
    loss: list  # (expr, span) per ``loss`` line
    settings: list  # Setting
    span: Span
    name_span: Span
    file: str = ""


@dataclass(slots=True)
class Module:
    """One parsed .nn file."""

    path: str
    items: list = field(default_factory=list)
