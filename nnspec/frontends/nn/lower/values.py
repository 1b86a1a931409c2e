"""What lowering computes with: a Tensor (the id of an IR value), a Word (a bare name bound
to nothing, such as a flag), POISON (the value of anything whose definition failed, its error
already reported), a file's top-level names (FileScope), and describe, which names any of
them in an error message."""

from __future__ import annotations

from dataclasses import dataclass, field

from ....core.dims import Dim
from ....core.record import FrozenRecord, Record, set_field
from ....layers import initializers as _inits
from .. import syntax as S


@dataclass(init=False, repr=False, eq=False)
class Tensor(FrozenRecord):
    """A tensor value during lowering: the id of the IR value that holds it."""

    __slots__ = ("id",)
    id: str

    def __init__(self, id: str):
        set_field(self, "id", id)

    def __eq__(self, other):
        return self.id == other.id if other.__class__ is Tensor else NotImplemented

    def __hash__(self) -> int:
        return hash((self.id,))


@dataclass(init=False, repr=False, eq=False)
class Word(FrozenRecord):
    """A bare name that is bound to nothing: a flag (``global``) or a keyword (``same``)."""

    __slots__ = ("name",)
    name: str

    def __init__(self, name: str):
        set_field(self, "name", name)

    def __eq__(self, other):
        return self.name == other.name if other.__class__ is Word else NotImplemented

    def __hash__(self) -> int:
        return hash((self.name,))


class _Poison:
    """The value of anything whose definition failed (its error is already reported)."""

    def __repr__(self):
        return "<error>"


POISON = _Poison()
_NEW = object()  # a field's default: a new empty dict or set


@dataclass(init=False, repr=False, eq=False)
class FileScope(Record):
    path: str
    consts: dict = field(default_factory=dict)
    const_spans: dict = field(default_factory=dict)
    blocks: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)  # name -> syntax Model
    imported: set = field(default_factory=set)  # names that came in through `use`
    # models and blocks whose text has an error already reported (a syntax error, say):
    # they are not lowered, and using them is silent
    broken: set = field(default_factory=set)
    # the broken models cut before their syntax error, still lowered to check what is there
    partial: dict = field(default_factory=dict)

    def __init__(self, path: str, consts=_NEW, const_spans=_NEW, blocks=_NEW, models=_NEW,
                 imported=_NEW, broken=_NEW, partial=_NEW):
        self.path = path
        self.consts = {} if consts is _NEW else consts
        self.const_spans = {} if const_spans is _NEW else const_spans
        self.blocks = {} if blocks is _NEW else blocks
        self.models = {} if models is _NEW else models
        self.imported = set() if imported is _NEW else imported
        self.broken = set() if broken is _NEW else broken
        self.partial = {} if partial is _NEW else partial


def describe(v) -> str:
    if isinstance(v, Tensor):
        return "a tensor"
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if isinstance(v, Word):
        return f"the undefined name {v.name!r}"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, tuple):
        return "a tuple"
    if isinstance(v, _inits.Init):
        return f"the initialiser {v}"
    if isinstance(v, list):
        return "a shape"
    if isinstance(v, Dim):
        return f"the dimension {v}"
    if isinstance(v, S.Dotted):
        return f"the parameter {'.'.join(v.parts)}"
    return str(v)
