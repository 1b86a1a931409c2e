"""The parts a :class:`Dim` is made of: atoms, monomials, their order and their text.

A dimension's canonical form is a mapping ``monomial -> coefficient``; a monomial is a
sorted tuple of atoms, and an atom is a symbol name or a floor/ceil division atom
(:class:`FloorDiv`, :class:`CeilDiv`). This module owns those atoms, the order monomials
sort and print in (:func:`_render`), the size limits past which an expression is refused
(:data:`MAX_TERMS`, :data:`MAX_ATOM_DEPTH`, :class:`DimTooComplex`), the identifier rule
for symbol names and :func:`_to_int`. It builds no :class:`Dim`: the algebra that does
(:mod:`.algebra`) sits above it.
"""

from __future__ import annotations

import operator
import re

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED = frozenset({"floor", "ceil"})

#: Terms of one dimension expression, and floor/ceil atoms nested in one another. Real
#: networks stay far below both; past them an expression would only grow without bound
#: (a product of sums doubling its terms per layer), so it is refused instead.
MAX_TERMS = 256
MAX_ATOM_DEPTH = 64


class DimTooComplex(ValueError):
    """A dimension expression beyond MAX_TERMS terms or MAX_ATOM_DEPTH nested atoms."""


# --------------------------------------------------------------------------- atoms


class _DivAtom:
    """Base of the floor/ceil division atoms: ``op(poly / k)`` with ``k >= 2`` (``poly``
    a :class:`Dim`)."""

    __slots__ = ("_hash", "_key", "_text", "depth", "k", "poly")
    _kind = 0
    _name = ""

    def __init__(self, poly, k: int) -> None:
        depth = 1
        for mono in poly._terms:
            for a in mono:
                if a.__class__ is not str and a.depth >= depth:
                    depth = a.depth + 1
        if depth > MAX_ATOM_DEPTH:
            raise DimTooComplex(f"dimension expression nests floor/ceil more than "
                                f"{MAX_ATOM_DEPTH} levels deep")
        self.depth = depth
        self.poly = poly
        self.k = k
        self._hash = hash((self._kind, poly, k))
        self._text: str | None = None
        self._key: tuple | None = None

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if other.__class__ is not self.__class__:
            return False
        return self.k == other.k and self.poly == other.poly  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        if self._text is None:
            t = self.poly._terms
            inner = str(self.poly)
            if not (len(t) == 1 and _single_atom_coeff_one(t)):
                inner = f"({inner})"
            self._text = f"{self._name}({inner}/{self.k})"
        return self._text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.poly!r}, {self.k})"

    def sort_key(self) -> tuple:
        if self._key is None:
            self._key = (self._kind, str(self.poly), self.k)
        return self._key

    def __reduce__(self):
        return (type(self), (self.poly, self.k))


class FloorDiv(_DivAtom):
    """Atom ``floor(poly / k)`` (``k >= 2``, ``poly`` already normalised)."""

    __slots__ = ()
    _kind = 1
    _name = "floor"


class CeilDiv(_DivAtom):
    """Atom ``ceil(poly / k)`` (``k >= 2``, ``poly`` already normalised)."""

    __slots__ = ()
    _kind = 2
    _name = "ceil"


def _single_atom_coeff_one(terms: dict) -> bool:
    ((mono, c),) = terms.items()
    return c == 1 and len(mono) == 1


def _akey(atom) -> tuple:
    if atom.__class__ is str:
        return (0, atom, 0)
    return atom.sort_key()


def _mono_mul(m1: tuple, m2: tuple) -> tuple:
    if not m1:
        return m2
    if not m2:
        return m1
    return tuple(sorted(m1 + m2, key=_akey))


def _term_order(item) -> tuple:
    mono = item[0]
    return (-len(mono), tuple(_akey(a) for a in mono))



def _to_int(x: object) -> int | None:
    """Return ``x`` as an int if it is int-like (has ``__index__``), else None."""
    if isinstance(x, int):
        return int(x)
    try:
        return operator.index(x)  # type: ignore[arg-type]
    except TypeError:
        return None


def _render(terms: dict) -> str:
    items = sorted(terms.items(), key=_term_order)
    parts: list[str] = []
    for i, (mono, c) in enumerate(items):
        if mono:
            body = "*".join(str(a) for a in mono)
            ac = abs(c)
            text = body if ac == 1 else f"{ac}*{body}"
        else:
            text = str(abs(c))
        if i == 0:
            parts.append(f"-{text}" if c < 0 else text)
        else:
            parts.append(f" - {text}" if c < 0 else f" + {text}")
    return "".join(parts)
