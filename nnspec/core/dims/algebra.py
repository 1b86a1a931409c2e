"""The :class:`Dim` algebra: construction, arithmetic, division, substitution, equality.

:class:`Dim` keeps an integer-valued expression in canonical polynomial form (the parts
it is made of live in :mod:`.terms`); its arithmetic (``+ - *``), the exact floor/ceil
division that normalises the common cases (:meth:`Dim.floordiv`, :func:`_div`),
substitution and evaluation are here, with :func:`as_dim`. :meth:`Dim.parse` reads the
text form back through :mod:`.parse`.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import gcd
from types import MappingProxyType

from .parse import _Parser
from .terms import (
    _IDENT,
    _RESERVED,
    MAX_TERMS,
    CeilDiv,
    DimTooComplex,
    FloorDiv,
    _mono_mul,
    _render,
    _to_int,
)


class Dim:
    """An integer-valued symbolic dimension in canonical polynomial form.

    Internally a mapping ``monomial -> int coefficient`` where a monomial is a
    sorted tuple of atoms (with multiplicity; ``()`` is the constant term) and an
    atom is a symbol name or a :class:`FloorDiv` / :class:`CeilDiv`.  Zero
    coefficients are never stored.  Constants additionally keep their value in a
    slot so constant arithmetic is a plain int operation.

    Instances are immutable and hashable; ``Dim.const(3) == 3`` and
    ``hash(Dim.const(3)) == hash(3)``.
    """

    __slots__ = ("_c", "_h", "_s", "_terms")

    # ----------------------------------------------------------- construction
    @staticmethod
    def _new(terms: dict) -> Dim:
        """Wrap an already-canonical terms dict (no zero coefficients)."""
        n = len(terms)
        if n == 0:
            return _ZERO
        if n == 1 and () in terms:
            return Dim.const(terms[()])
        if n > MAX_TERMS:
            raise DimTooComplex(f"dimension expression has more than {MAX_TERMS} terms")
        d = object.__new__(Dim)
        d._terms = terms
        d._c = None
        d._h = None
        d._s = None
        return d

    @staticmethod
    def const(n: int) -> Dim:
        """The constant dimension ``n``."""
        if n.__class__ is int:
            d = _CONST_CACHE.get(n)
            if d is not None:
                return d
        else:
            v = _to_int(n)
            if v is None:
                raise TypeError(f"Dim.const expects an int, got {type(n).__name__}")
            n = int(v)
        d = object.__new__(Dim)
        d._terms = {(): n} if n else {}
        d._c = n
        d._h = hash(n)
        d._s = None
        if -1024 <= n <= 65536:
            _CONST_CACHE[n] = d
        return d

    @staticmethod
    def sym(name: str) -> Dim:
        """The symbolic dimension named ``name`` (an identifier, not floor/ceil)."""
        d = _SYM_CACHE.get(name)
        if d is not None:
            return d
        if not isinstance(name, str) or not _IDENT.match(name) or name in _RESERVED:
            raise ValueError(f"invalid dimension symbol name: {name!r}")
        d = Dim._new({(name,): 1})
        _SYM_CACHE[name] = d
        return d

    # ----------------------------------------------------------- properties
    @property
    def is_const(self) -> bool:
        """True when the dimension has no symbols."""
        return self._c is not None

    @property
    def value(self) -> int:
        """The int value of a constant dimension; ValueError if symbolic."""
        if self._c is None:
            raise ValueError(f"dimension {self} is symbolic, not a constant")
        return self._c

    @property
    def terms(self) -> Mapping[tuple, int]:
        """Read-only view of the canonical ``monomial -> coefficient`` mapping."""
        return MappingProxyType(self._terms)

    def symbols(self) -> frozenset[str]:
        """All symbol names, including those inside floor/ceil atoms."""
        if self._c is not None:
            return frozenset()
        out: set[str] = set()
        for mono in self._terms:
            for a in mono:
                if a.__class__ is str:
                    out.add(a)
                else:
                    out |= a.poly.symbols()
        return frozenset(out)

    def max_abs_coeff(self) -> int:
        """The largest absolute coefficient (inside floor/ceil atoms too)."""
        if self._c is not None:
            return abs(self._c)
        best = 0
        for mono, c in self._terms.items():
            best = max(best, abs(c))
            for a in mono:
                if a.__class__ is not str:
                    best = max(best, a.poly.max_abs_coeff(), a.k)
        return best

    def is_positive_known(self) -> bool | None:
        """``value > 0`` for a constant; ``None`` (unknown) when symbolic."""
        if self._c is None:
            return None
        return self._c > 0

    # ----------------------------------------------------------- arithmetic
    def __add__(self, other: Dim | int) -> Dim:
        if other.__class__ is Dim:
            sc = self._c
            oc = other._c  # type: ignore[union-attr]
            if sc is not None and oc is not None:
                return Dim.const(sc + oc)
            if oc == 0:
                return self
            if sc == 0:
                return other  # type: ignore[return-value]
            return _add_terms(self._terms, other._terms, 1)  # type: ignore[union-attr]
        o = _to_int(other)
        if o is None:
            return NotImplemented
        if self._c is not None:
            return Dim.const(self._c + o)
        if o == 0:
            return self
        return _add_terms(self._terms, {(): o}, 1)

    __radd__ = __add__

    def __sub__(self, other: Dim | int) -> Dim:
        if other.__class__ is Dim:
            sc = self._c
            oc = other._c  # type: ignore[union-attr]
            if sc is not None and oc is not None:
                return Dim.const(sc - oc)
            if oc == 0:
                return self
            return _add_terms(self._terms, other._terms, -1)  # type: ignore[union-attr]
        o = _to_int(other)
        if o is None:
            return NotImplemented
        if self._c is not None:
            return Dim.const(self._c - o)
        if o == 0:
            return self
        return _add_terms(self._terms, {(): -o}, 1)

    def __rsub__(self, other: int) -> Dim:
        o = _to_int(other)
        if o is None:
            return NotImplemented
        if self._c is not None:
            return Dim.const(o - self._c)
        return _add_terms({(): o} if o else {}, self._terms, -1)

    def __neg__(self) -> Dim:
        if self._c is not None:
            return Dim.const(-self._c)
        return Dim._new({m: -c for m, c in self._terms.items()})

    def __pos__(self) -> Dim:
        return self

    def __mul__(self, other: Dim | int) -> Dim:
        if other.__class__ is Dim:
            sc = self._c
            oc = other._c  # type: ignore[union-attr]
            if sc is not None and oc is not None:
                return Dim.const(sc * oc)
            if oc is not None:
                return self._scale(oc)
            if sc is not None:
                return other._scale(sc)  # type: ignore[union-attr]
            out: dict = {}
            for m1, c1 in self._terms.items():
                for m2, c2 in other._terms.items():  # type: ignore[union-attr]
                    m = _mono_mul(m1, m2)
                    v = out.get(m, 0) + c1 * c2
                    if v:
                        out[m] = v
                    else:
                        out.pop(m, None)
            return Dim._new(out)
        o = _to_int(other)
        if o is None:
            return NotImplemented
        if self._c is not None:
            return Dim.const(self._c * o)
        return self._scale(o)

    __rmul__ = __mul__

    def _scale(self, k: int) -> Dim:
        if k == 1:
            return self
        if k == 0:
            return _ZERO
        return Dim._new({m: c * k for m, c in self._terms.items()})

    def __floordiv__(self, k: int) -> Dim:
        o = _to_int(k)
        if o is None:
            if k.__class__ is Dim and k.is_const:  # type: ignore[union-attr]
                o = k.value  # type: ignore[union-attr]
            else:
                return NotImplemented
        return self.floordiv(o)

    # ----------------------------------------------------------- division
    def floordiv(self, k: int) -> Dim:
        """Exact ``floor(self / k)`` for an int ``k >= 1``.

        Simplification: write ``self = k*Q + R`` where every non-constant
        coefficient of ``R`` lies in ``[0, k)`` and its constant term in
        ``(-k, 0]``; then ``floor(self/k) = Q + floor(R/k)`` (``Q`` is
        integer-valued).  A constant ``R`` gives an int; otherwise ``R`` is
        divided by ``gcd(R's coefficients, k)`` and becomes the atom
        ``FloorDiv(R, k')``.  Nested ``floor((floor(P/a) + c)/b)`` becomes
        ``floor((P + c*a)/(a*b))``.  So ``floor((H - 1)/2) + 1`` stays as
        written, ``floor((H + 1)/2)`` prints the same way, and
        ``floor((2*H + 1)/2) == H``.  ``k == 1`` returns ``self``; ``k <= 0``
        raises ValueError.
        """
        if self._c is not None:
            if k <= 0:
                raise ValueError(f"floordiv by non-positive {k}")
            return Dim.const(self._c // k)
        return _div(self, k, floor=True)

    def ceildiv(self, k: int) -> Dim:
        """Exact ``ceil(self / k)`` for an int ``k >= 1``.

        Same normal form as :meth:`floordiv` (``ceil((k*Q + R)/k) = Q +
        ceil(R/k)``, remainder constant in ``(-k, 0]``), with the atom
        :class:`CeilDiv`.  ``ceil((W - 2)/2) + 1 == ceil(W/2)``.
        """
        if self._c is not None:
            if k <= 0:
                raise ValueError(f"ceildiv by non-positive {k}")
            return Dim.const(-((-self._c) // k))
        return _div(self, k, floor=False)

    def exact_div(self, k: int) -> Dim:
        """``self / k`` when every coefficient is divisible by ``k``, else ValueError."""
        if k <= 0:
            raise ValueError(f"division by non-positive {k}")
        if self._c is not None:
            if self._c % k:
                raise ValueError(f"{self} is not divisible by {k}")
            return Dim.const(self._c // k)
        if k == 1:
            return self
        out = {}
        for m, c in self._terms.items():
            q, r = divmod(c, k)
            if r:
                raise ValueError(f"{self} is not divisible by {k}")
            out[m] = q
        return Dim._new(out)

    # ----------------------------------------------------------- substitution
    def subs(self, mapping: Mapping[str, Dim | int]) -> Dim:
        """Substitute symbols (also inside floor/ceil atoms) and re-simplify."""
        if self._c is not None or not mapping:
            return self
        cache: dict = {}
        return _subs(self, mapping, cache)

    def evaluate(self, env: Mapping[str, int]) -> int:
        """The int value with every symbol bound by ``env``.

        Raises ValueError naming the first unbound symbol.
        """
        if self._c is not None:
            return self._c
        total = 0
        for mono, c in self._terms.items():
            v = c
            for a in mono:
                if a.__class__ is str:
                    try:
                        x = env[a]
                    except KeyError:
                        raise ValueError(f"unbound symbol {a!r} while evaluating {self}") from None
                    xi = _to_int(x)
                    if xi is None:
                        if isinstance(x, Dim):
                            xi = x.value
                        else:
                            raise TypeError(f"symbol {a!r} bound to non-int {x!r}")
                    v *= xi
                else:
                    p = a.poly.evaluate(env)
                    v *= p // a.k if a._kind == 1 else -((-p) // a.k)
            total += v
        return total

    # ----------------------------------------------------------- comparison
    def __eq__(self, other: object) -> bool:
        if other.__class__ is Dim:
            if self is other:
                return True
            sc = self._c
            if sc is not None:
                return sc == other._c  # type: ignore[attr-defined]
            if other._c is not None:  # type: ignore[attr-defined]
                return False
            return self._terms == other._terms  # type: ignore[attr-defined]
        if isinstance(other, int):
            return self._c == other
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        r = self.__eq__(other)
        if r is NotImplemented:
            return r
        return not r

    def __hash__(self) -> int:
        h = self._h
        if h is None:
            h = self._h = hash(frozenset(self._terms.items()))
        return h

    # ----------------------------------------------------------- text
    def __str__(self) -> str:
        if self._c is not None:
            return str(self._c)
        s = self._s
        if s is None:
            s = self._s = _render(self._terms)
        return s

    def __repr__(self) -> str:
        return f"Dim({str(self)!r})"

    def __copy__(self) -> Dim:
        return self

    def __deepcopy__(self, memo: dict) -> Dim:
        return self

    def __reduce__(self):
        return (Dim.parse, (str(self),))

    @staticmethod
    def parse(text: str) -> Dim:
        """Parse the :func:`str` format back: ints, names, ``+ - *``, parentheses,
        ``floor(E/int)``, ``ceil(E/int)`` and ``E // int``.  ValueError on bad text."""
        if not isinstance(text, str):
            raise TypeError(f"Dim.parse expects str, got {type(text).__name__}")
        return _Parser(text, Dim.const, Dim.sym).parse()


_CONST_CACHE: dict[int, Dim] = {}
_SYM_CACHE: dict[str, Dim] = {}
_ZERO = Dim.const(0)


def max_abs_coeff(dims) -> int:
    """The largest absolute coefficient of several dims (``Dim.max_abs_coeff`` of each; a
    shape of constants is read without a call per dim)."""
    best = 0
    for d in dims:
        c = d._c
        m = (c if c >= 0 else -c) if c is not None else d.max_abs_coeff()
        if m > best:
            best = m
    return best


def as_dim(x: int | Dim) -> Dim:
    """Coerce an int (or int-like) or a :class:`Dim` to a :class:`Dim`."""
    if x.__class__ is Dim:
        return x  # type: ignore[return-value]
    if isinstance(x, bool):
        raise TypeError("cannot use a bool as a dimension")
    v = _to_int(x)
    if v is None:
        raise TypeError(f"cannot use {type(x).__name__} {x!r} as a dimension")
    return Dim.const(v)


# --------------------------------------------------------------------------- helpers


def _add_terms(a: dict, b: dict, sign: int) -> Dim:
    out = dict(a)
    get = out.get
    for m, c in b.items():
        v = get(m, 0) + sign * c
        if v:
            out[m] = v
        else:
            del out[m]
    return Dim._new(out)


def _div(p: Dim, k: int, floor: bool) -> Dim:
    if not isinstance(k, int):
        kk = _to_int(k)
        if kk is None:
            raise TypeError(f"divisor must be an int, got {type(k).__name__}")
        k = kk
    if k <= 0:
        raise ValueError(f"{'floor' if floor else 'ceil'} division by non-positive {k}")
    if k == 1:
        return p
    q: dict = {}
    r: dict = {}
    for m, c in p._terms.items():
        if m:
            qq, rr = divmod(c, k)  # rr in [0, k)
        else:
            qq = -((-c) // k)  # ceil -> rr in (-k, 0]
            rr = c - qq * k
        if qq:
            q[m] = qq
        if rr:
            r[m] = rr
    quotient = Dim._new(q)
    rc = r.get((), 0)
    if len(r) - (1 if rc else 0) == 0:  # remainder is a constant
        part = rc // k if floor else -((-rc) // k)
        return quotient + part
    # reduce common factor: floor(g*A/(g*m)) == floor(A/m)
    g = k
    for c in r.values():
        g = gcd(g, c)
        if g == 1:
            break
    if g > 1:
        r = {m: c // g for m, c in r.items()}
        k //= g
        if k == 1:
            return quotient + Dim._new(r)
    # nested: floor((floor(P/a) + c)/b) == floor((P + c*a)/(a*b)) (same for ceil)
    cls = FloorDiv if floor else CeilDiv
    if len(r) - (1 if () in r else 0) == 1:
        for m, c in r.items():
            if m and c == 1 and len(m) == 1 and m[0].__class__ is cls:
                inner = m[0]
                rc = r.get((), 0)
                return quotient + _div(inner.poly + rc * inner.k, inner.k * k, floor)
    return quotient + Dim._new({(cls(Dim._new(r), k),): 1})


def _subs(d: Dim, mapping: Mapping, cache: dict) -> Dim:
    if d._c is not None:
        return d
    total = _ZERO
    for mono, c in d._terms.items():
        v: Dim = Dim.const(c)
        for a in mono:
            key = a
            x = cache.get(key)
            if x is None:
                if a.__class__ is str:
                    x = as_dim(mapping[a]) if a in mapping else Dim.sym(a)
                else:
                    inner = _subs(a.poly, mapping, cache)
                    x = inner.floordiv(a.k) if a._kind == 1 else inner.ceildiv(a.k)
                cache[key] = x
            v = v * x
        total = total + v
    return total
