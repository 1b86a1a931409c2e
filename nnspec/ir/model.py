"""The validated intermediate representation (pydantic; round-trips through JSON).

A program is a list of models; a model is a flat, topologically ordered list of layer
nodes in SSA form (each node defines one value, ``id``), with the blocks of the spec
already expanded. Every node keeps its source span. Dims are stored as text
(``"N"``, ``"floor((H - 1)/2) + 1"``) and parsed back with :meth:`Dim.parse`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator, model_validator

from ..core.dims import Dim
from ..core.source import Span

IR_VERSION = 1


class _Base(BaseModel):
    # validators built on first use: lowering builds most nodes without one
    model_config = ConfigDict(extra="forbid", defer_build=True)


def _check_dims(v: list[str]) -> list[str]:
    for d in v:
        if d != "_":
            Dim.parse(d)
    return v


class Input(_Base):
    name: str
    id: str
    shape: list[str]
    dtype: str = "float"
    span: list = []

    _check = field_validator("shape")(classmethod(lambda cls, v: _check_dims(v)))
    # an input whose declared shape had an error (reported by lowering): it has no type, so
    # that the layers after it do not repeat the error; shape [] is otherwise a rank-0 input
    _unknown: bool = PrivateAttr(default=False)

    @classmethod
    def unknown(cls, name: str, id: str, dtype: str, span: list) -> "Input":
        inp = cls(name=name, id=id, shape=[], dtype=dtype, span=span)
        inp._unknown = True
        return inp

    @property
    def known(self) -> bool:
        return not self._unknown

    def dims(self) -> list[Dim]:
        return [Dim.parse(d) for d in self.shape]


class Node(_Base):
    """One layer application: ``id = op[name](inputs; params)``."""

    id: str
    op: str
    name: str
    inputs: list[str]
    params: dict[str, Any] = {}
    span: list = []
    arg_spans: dict[str, list] = {}
    text: str = ""
    # block calls this node was expanded from, innermost first: [block name, *call span]
    called_from: list[list] = []
    # weight sharing: ``shared`` applies again the layer of the earlier node with the same
    # name (its weights: ``x2 | tower`` after ``x1 | Tower as tower``); ``ties`` maps a
    # state_dict key of this layer to [owner layer name, owner key, transposed]: the same
    # tensor as an earlier layer's (``weight=wte.weight``, ``weight=enc.weight.T``)
    shared: bool = False
    ties: dict[str, list] = {}
    _p: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _validate_params(self):
        from ..layers import REGISTRY

        kind = REGISTRY.get(self.op)
        if kind is None:
            raise ValueError(f"unknown layer kind {self.op!r}")
        self._p = kind.Params.model_validate(self.params)
        return self

    @property
    def p(self):
        return self.__pydantic_private__["_p"]  # what self._p reads, without __getattr__

    @property
    def kind(self):
        from ..layers import REGISTRY

        return REGISTRY[self.op]

    def call_notes(self) -> list[str]:
        """'in block X, called at file:line:col' for each block this node came from."""
        return [f"in block {c[0]}, called at {c[1]}:{c[2]}:{c[3]}" for c in self.called_from]

    def where(self) -> Span | None:
        return Span.from_json(self.span) if self.span else None

    def arg_where(self, arg: str | None) -> Span | None:
        if arg and arg in self.arg_spans:
            return Span.from_json(self.arg_spans[arg])
        return self.where()

    @classmethod
    def build(cls, id: str, op: str, name: str, inputs: list[str], p, span: Span,
              arg_spans: dict[str, Span], text: str, called_from=(), shared: bool = False,
              ties: dict | None = None) -> "Node":
        """Construct from already-validated params (the lowering pass validates them).

        Every field is given, so the instance is set up as ``model_construct`` would set it,
        without its per-field default resolution (a third of lowering's time at 10,000
        layers); ``_FAST_BUILD`` falls back to ``model_construct`` if pydantic's layout
        ever differs."""
        values = dict(
            id=id, op=op, name=name, inputs=inputs,
            params=p.model_dump(mode="json", exclude_defaults=True),
            span=span.to_json(), arg_spans={k: s.to_json() for k, s in arg_spans.items()},
            text=text, called_from=[[b, *s.to_json()] for b, s in called_from],
            shared=shared, ties=ties or {})
        if _FAST_BUILD is None:
            _decide_fast_build()
        return _fast_node(cls, values, p) if _FAST_BUILD else _slow_node(cls, values, p)


def _slow_node(cls, values: dict, p) -> Node:
    node = cls.model_construct(**values)
    node._p = p
    return node


def _fast_node(cls, values: dict, p) -> Node:
    node = cls.__new__(cls)
    object.__setattr__(node, "__dict__", values)
    object.__setattr__(node, "__pydantic_fields_set__", set(values))
    object.__setattr__(node, "__pydantic_extra__", None)
    object.__setattr__(node, "__pydantic_private__", {"_p": p})
    return node


_FAST_BUILD: bool | None = None


def _decide_fast_build() -> None:
    """Use the field-by-field set-up only if it gives what ``model_construct`` gives."""
    global _FAST_BUILD
    from ..layers import REGISTRY

    p = REGISTRY["relu"].Params.model_construct()  # any params: only kept, never read
    values = dict(id="v1", op="relu", name="relu_0", inputs=["in_x"], params={},
                  span=["f", 1, 1, 1, 2], arg_spans={}, text="relu",
                  called_from=[["B", "f", 1, 1, 1, 2]], shared=False, ties={})
    try:
        slow = _slow_node(Node, dict(values), p)
        fast = _fast_node(Node, dict(values), p)
        # every slot of a pydantic instance, set alike (compared without building Node's
        # validator or serialiser: a check never needs them)
        _FAST_BUILD = (fast == slow and fast.p is p and all(
            getattr(fast, a, _UNSET) == getattr(slow, a, _UNSET)
            for a in BaseModel.__slots__))
    except Exception:
        _FAST_BUILD = False


_UNSET = object()


class Assert(_Base):
    """A static shape assertion on a value: a ``: [..]`` annotation or a model's ``->``."""

    value: str
    dims: list[str]
    span: list = []
    what: str = "annotation"

    _check = field_validator("dims")(classmethod(lambda cls, v: _check_dims(v)))


class Model(_Base):
    name: str
    file: str = ""
    inputs: list[Input]
    nodes: list[Node]
    output: str
    asserts: list[Assert] = []
    span: list = []
    # a model that returns several values (``return recon, mu, logvar``): their names, which
    # a train section's loss may use ("" for a returned value without a name)
    output_names: list[str] = []
    # What lowering knows and the IR does not keep, for the source emitter's names (not
    # serialised: empty for an IR read from JSON). value_names: (scope prefix, value id) ->
    # the spec name the value was assigned to there; block_args: block instance prefix ->
    # (block name, {tensor parameter: value id}, {other parameter: value}).
    _value_names: dict = PrivateAttr(default_factory=dict)
    _block_args: dict = PrivateAttr(default_factory=dict)

    def __eq__(self, other) -> bool:
        """The IR's fields only: a model read back from JSON equals the one lowered."""
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def node_map(self) -> dict[str, Node]:
        return {n.id: n for n in self.nodes}


class Check(_Base):
    """``check Outer(Inner)``: Inner's output must fit Outer's input. chain is outer first;
    inputs[i] names the input of chain[i] that receives the next model's output (None: the
    model's only input), as in ``check Decoder(h0=Encoder)``."""

    chain: list[str]
    inputs: list[str | None] = []
    span: list = []
    # the contract on the composition's output (``check Dec(Enc) -> ...``): its exact shape
    # (dims as text), or the name of an input of the innermost model whose type it returns
    # ("input": its only input); returns_span locates the contract
    returns: list[str] | None = None
    returns_input: str | None = None
    returns_span: list = []

    _check = field_validator("returns")(classmethod(
        lambda cls, v: v if v is None else _check_dims(v)))


class LossTerm(_Base):
    """``weight * loss(args..., params)`` of a train section's loss; args name the model's
    output (``output``), its inputs or the section's targets."""

    weight: float = 1.0
    loss: str
    args: list[str]
    params: dict[str, Any] = {}
    span: list = []


class Training(_Base):
    """``train Model(targets...) { loss ...; optimizer ...; clip ...; schedule ... }``; the
    optimiser, clip and schedule are the arguments of nnspec.training's schemas."""

    model: str
    targets: list[Input] = []
    terms: list[LossTerm] = []
    optimizer: str | None = None
    optimizer_params: dict[str, Any] = {}
    clip: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None
    span: list = []


class Program(_Base):
    version: int = IR_VERSION
    models: list[Model] = []
    checks: list[Check] = []
    trainings: list[Training] = []

    def model(self, name: str) -> Model:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def to_json(self, indent: int | None = 1) -> str:
        return self.model_dump_json(indent=indent)

    # ``Program.from_json(text, path)``: defined by the package (nnspec/ir/__init__.py),
    # since the validation that it runs (``validate``) builds these classes


def json_schema() -> dict:
    """JSON Schema of the IR."""
    return Program.model_json_schema()
