"""Record classes: what ``@dataclass`` generates, written once instead of per class.

``@dataclass`` writes each class's ``__init__``, ``__repr__``, ``__eq__`` (and, frozen,
``__setattr__`` and ``__hash__``) as source and compiles it when the class is made: about a
millisecond a class, paid by every ``nnspec check`` for each one on its path. A record class
spells out its ``__init__`` and takes the rest from :class:`Record` or :class:`FrozenRecord`,
which read the fields that ``@dataclass(init=False, repr=False, eq=False)`` records (that
decorator generates no code): ``dataclasses.fields`` and ``replace`` work as before, and
``repr``, ``==`` and ``hash`` give what the generated methods gave.

    @dataclass(init=False, repr=False, eq=False)
    class Span(FrozenRecord):
        __slots__ = ("file", "line")
        file: str
        line: int

        def __init__(self, file, line):
            set_field(self, "file", file)
            set_field(self, "line", line)
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields

#: how a frozen record's ``__init__`` sets a field (its own ``__setattr__`` refuses)
set_field = object.__setattr__

_NAMES: dict[type, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {}


def _names(cls) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(the fields ``repr`` shows, those ``==`` and ``hash`` compare, every field) of a
    record class, in order."""
    got = _NAMES.get(cls)
    if got is None:
        fs = fields(cls)
        got = _NAMES[cls] = (tuple(f.name for f in fs if f.repr),
                             tuple(f.name for f in fs if f.compare),
                             tuple(f.name for f in fs))
    return got


class Record:
    """A mutable record: ``repr`` and ``==`` over its fields, unhashable (as a dataclass
    with ``eq=True``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return (f"{self.__class__.__qualname__}("
                + ", ".join(f"{k}={getattr(self, k)!r}" for k in _names(self.__class__)[0])
                + ")")

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        names = _names(self.__class__)[1]
        return (tuple(getattr(self, k) for k in names)
                == tuple(getattr(other, k) for k in names))

    __hash__ = None  # type: ignore[assignment]


class FrozenRecord(Record):
    """An immutable record (as ``frozen=True``): assigning a field raises
    FrozenInstanceError; hashable by its fields. Copies and pickles through its
    ``__init__``, which takes its fields in order."""

    __slots__ = ()

    def __setattr__(self, name, value):
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, k) for k in _names(self.__class__)[1]))

    def __reduce__(self):
        return (self.__class__, tuple(getattr(self, k) for k in _names(self.__class__)[2]))
