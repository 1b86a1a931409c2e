"""Symbolic tensor dimensions and the convolution/pooling output-size formula.

A :class:`Dim` is an integer-valued expression over named symbols (``N``, ``T``,
``H`` ...): a polynomial with integer coefficients whose atoms are symbol names
or floor/ceil division atoms (:class:`FloorDiv`, :class:`CeilDiv`).  Expressions
are kept in a canonical form so that equal expressions built in different ways
usually compare equal (the form is complete for polynomials; for floor/ceil atoms
it normalises the common cases, see :meth:`Dim.floordiv`).

Only the standard library is imported: this module sits on the CLI start-up path.

The output-size formula for convolutions and pooling lives here, once:
:func:`conv_out`, :func:`transposed_conv_out` and their renderings for errors,
:func:`conv_formula` and :func:`transposed_conv_formula`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from math import gcd
from types import MappingProxyType

__all__ = [
    "CeilDiv",
    "Dim",
    "DimTooComplex",
    "FloorDiv",
    "as_dim",
    "conv_formula",
    "conv_out",
    "transposed_conv_formula",
    "transposed_conv_out",
]

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
    """Base of the floor/ceil division atoms: ``op(poly / k)`` with ``k >= 2``."""

    __slots__ = ("_hash", "_key", "_text", "depth", "k", "poly")
    _kind = 0
    _name = ""

    def __init__(self, poly: Dim, k: int) -> None:
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


# --------------------------------------------------------------------------- Dim


def _to_int(x: object) -> int | None:
    """Return ``x`` as an int if it is int-like (has ``__index__``), else None."""
    if isinstance(x, int):
        return int(x)
    try:
        return operator.index(x)  # type: ignore[arg-type]
    except TypeError:
        return None


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
        return _Parser(text).parse()


_CONST_CACHE: dict[int, Dim] = {}
_SYM_CACHE: dict[str, Dim] = {}
_ZERO = Dim.const(0)


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


# --------------------------------------------------------------------------- parser

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_]*)|(//|[-+*/()]))")


class _Parser:
    """Recursive descent over::

    expr    := term (('+' | '-') term)*
    term    := unary (('*' unary) | ('//' unary))*
    unary   := '-' unary | '+' unary | primary
    primary := INT | NAME | '(' expr ')'
             | ('floor' | 'ceil') '(' expr '/' unary ')'
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[tuple[str, str, int]] = []
        pos = 0
        n = len(text)
        while True:
            while pos < n and text[pos].isspace():
                pos += 1
            if pos >= n:
                break
            m = _TOKEN.match(text, pos)
            if m is None:
                raise ValueError(f"bad dimension expression {text!r}: unexpected {text[pos]!r}")
            if m.group(1) is not None:
                self.toks.append(("int", m.group(1), m.start(1)))
            elif m.group(2) is not None:
                self.toks.append(("name", m.group(2), m.start(2)))
            else:
                self.toks.append(("op", m.group(3), m.start(3)))
            pos = m.end()
        self.i = 0

    def _err(self, what: str) -> ValueError:
        if self.i < len(self.toks):
            where = f"at {self.toks[self.i][1]!r} (column {self.toks[self.i][2] + 1})"
        else:
            where = "at end of input"
        return ValueError(f"bad dimension expression {self.text!r}: {what} {where}")

    def _peek(self) -> str | None:
        if self.i < len(self.toks):
            return self.toks[self.i][1]
        return None

    def _expect(self, op: str) -> None:
        if self._peek() != op or self.toks[self.i][0] != "op":
            raise self._err(f"expected {op!r}")
        self.i += 1

    def parse(self) -> Dim:
        if not self.toks:
            raise ValueError(f"bad dimension expression {self.text!r}: empty")
        d = self.expr()
        if self.i != len(self.toks):
            raise self._err("unexpected token")
        return d

    def expr(self) -> Dim:
        d = self.term()
        while True:
            t = self._peek()
            if t == "+":
                self.i += 1
                d = d + self.term()
            elif t == "-":
                self.i += 1
                d = d - self.term()
            else:
                return d

    def _divisor(self) -> int:
        start = self.i
        v = self.unary()
        if not v.is_const or v.value < 1:
            self.i = start
            raise self._err("divisor must be a positive integer")
        return v.value

    def term(self) -> Dim:
        d = self.unary()
        while True:
            t = self._peek()
            if t == "*":
                self.i += 1
                d = d * self.unary()
            elif t == "//":
                self.i += 1
                d = d.floordiv(self._divisor())
            else:
                return d

    def unary(self) -> Dim:
        t = self._peek()
        if t == "-" and self.toks[self.i][0] == "op":
            self.i += 1
            return -self.unary()
        if t == "+" and self.toks[self.i][0] == "op":
            self.i += 1
            return self.unary()
        return self.primary()

    def primary(self) -> Dim:
        if self.i >= len(self.toks):
            raise self._err("expected a value")
        kind, text, _ = self.toks[self.i]
        if kind == "int":
            self.i += 1
            return Dim.const(int(text))
        if kind == "name":
            self.i += 1
            if text in _RESERVED:
                self._expect("(")
                inner = self.expr()
                self._expect("/")
                k = self._divisor()
                self._expect(")")
                return inner.floordiv(k) if text == "floor" else inner.ceildiv(k)
            return Dim.sym(text)
        if text == "(":
            self.i += 1
            d = self.expr()
            self._expect(")")
            return d
        raise self._err("expected a value")


# --------------------------------------------------------------------------- conv formula


def _pads(pad) -> tuple[int, int]:
    if isinstance(pad, int):
        return pad, pad
    try:
        before, after = pad
    except (TypeError, ValueError):
        raise TypeError(f"pad must be an int or a (before, after) pair, got {pad!r}") from None
    return operator.index(before), operator.index(after)


def _check_pos(name: str, v: int) -> int:
    v = operator.index(v)
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    return v


def _conv_out(f: Dim, k: int, s: int, before: int, after: int, d: int, ceil: bool):
    """Returns (out, note): note is None, "dropped" (PyTorch's ceil-mode -1 applies) or
    "starts" (ceil mode over a symbolic size: the count of window starts, see conv_out)."""
    ke = d * (k - 1) + 1
    num = f + (before + after - ke)
    if not ceil:
        return num.floordiv(s) + 1, None
    out = num.ceildiv(s) + 1
    # PyTorch: the last window must start inside the input or the left padding.
    # cond = (out - 1)*s - (f + before) >= 0  ->  out -= 1.
    cond = (out - 1) * s - (f + before)
    if cond._c is not None:
        return (out - 1, "dropped") if cond._c >= 0 else (out, None)
    # s*ceil(y/s) lies in [y, y + s - 1], so cond lies in [r, r + s - 1]
    r = after - ke
    if r >= 0:
        return out - 1, "dropped"
    if r + s - 1 < 0:
        return out, None
    return _window_starts(f, s, before), "starts"


def _window_starts(f: Dim, s: int, before: int) -> Dim:
    """``floor((f + before - 1)/s) + 1``: how many windows start at a padded position in
    ``[0, f + before - 1]`` (inside the input or the left padding), stepping ``s``.

    This is the exact ceil-mode size whenever ``0 < p_after - ke + s < s``, for every
    value of ``f``. Proof, with ``x = f + before - 1``, ``A = floor(x/s) + 1`` and
    ``B = ceil((f + before + after - ke)/s) + 1 = floor((x + delta)/s) + 1`` where
    ``delta = after - ke + s``: PyTorch gives ``B``, less one when ``(B - 1)*s > x``.
    As ``0 < delta < s``, ``B - 1`` is ``floor(x/s)`` or ``floor(x/s) + 1``. In the first
    case ``(B - 1)*s <= x``, nothing is dropped and the size is ``B = A``; in the second
    ``(B - 1)*s > x``, the last window is dropped and the size is ``B - 1 = A``.
    """
    return (f + (before - 1)).floordiv(s) + 1


def conv_out(
    f_in: Dim | int,
    k: int,
    s: int = 1,
    pad: tuple[int, int] | int = (0, 0),
    d: int = 1,
    ceil: bool = False,
) -> Dim:
    """Output size of a convolution / pooling window along one axis.

    With the effective kernel ``ke = d*(k - 1) + 1``::

        floor mode:  F_out = floor((F_in + p_before + p_after - ke) / s) + 1
        ceil mode:   F_out = ceil((F_in + p_before + p_after - ke) / s) + 1
                     and, as in PyTorch, F_out -= 1 if (F_out - 1)*s >= F_in + p_before
                     (the last window must start inside the input or the left padding)

    ``f_in`` may be symbolic, and the result is exact for every value of the symbols.
    In ceil mode ``(F_out - 1)*s - F_in - p_before`` lies in
    ``[p_after - ke, p_after - ke + s - 1]``: when that range is all ``>= 0`` or all
    ``< 0`` the correction is decided; otherwise whether it applies depends on ``F_in``
    mod ``s``, and the size is the count of windows that start inside the input or the
    left padding, ``floor((F_in + p_before - 1) / s) + 1``, which equals PyTorch's
    result for every ``F_in`` (see :func:`_window_starts`).
    ``pad`` is ``(before, after)`` or one int for both.
    The result may be ``< 1`` for constants; the caller reports that error.
    """
    k = _check_pos("kernel size", k)
    s = _check_pos("stride", s)
    d = _check_pos("dilation", d)
    before, after = _pads(pad)
    return _conv_out(as_dim(f_in), k, s, before, after, d, ceil)[0]


def transposed_conv_out(
    f_in: Dim | int,
    k: int,
    s: int = 1,
    pad: tuple[int, int] | int = (0, 0),
    d: int = 1,
    output_padding: int = 0,
) -> Dim:
    """Output size of a transposed convolution along one axis::

    F_out = (F_in - 1)*s - p_before - p_after + d*(k - 1) + output_padding + 1
    """
    k = _check_pos("kernel size", k)
    s = _check_pos("stride", s)
    d = _check_pos("dilation", d)
    before, after = _pads(pad)
    output_padding = operator.index(output_padding)
    if output_padding < 0:
        raise ValueError(f"output_padding must be >= 0, got {output_padding}")
    return (as_dim(f_in) - 1) * s + (d * (k - 1) + output_padding + 1 - before - after)


def conv_formula(
    f_in: Dim | int,
    k: int,
    s: int,
    pad: tuple[int, int] | int,
    d: int = 1,
    ceil: bool = False,
) -> str:
    """Render the :func:`conv_out` formula with the numbers substituted, for errors.

    Symmetric padding and ``d == 1``::

        F_out = floor((F_in - k + 2p) / s) + 1 = floor((5 - 7 + 2*0) / 1) + 1 = -1

    otherwise::

        F_out = floor((F_in + p_before + p_after - d*(k - 1) - 1) / s) + 1
              = floor((5 + 1 + 2 - 2*(3 - 1) - 1) / 1) + 1 = 4

    (on one line).  ``ceil`` replaces ``floor`` in ceil mode; when PyTorch's
    ceil-mode correction applies, ``- 1 (...)`` is appended with the reason.
    A symbolic ``f_in`` is substituted as text (parenthesised unless it is a
    single name) and the result is symbolic.
    """
    k = _check_pos("kernel size", k)
    s = _check_pos("stride", s)
    d = _check_pos("dilation", d)
    before, after = _pads(pad)
    f = as_dim(f_in)
    ft = str(f)
    if not (f.is_const or _IDENT.match(ft)):
        ft = f"({ft})"
    fn = "ceil" if ceil else "floor"
    if before == after and d == 1:
        generic = f"{fn}((F_in - k + 2p) / s) + 1"
        concrete = f"{fn}(({ft} - {k} + 2*{before}) / {s}) + 1"
    else:
        generic = f"{fn}((F_in + p_before + p_after - d*(k - 1) - 1) / s) + 1"
        concrete = f"{fn}(({ft} + {before} + {after} - {d}*({k} - 1) - 1) / {s}) + 1"
    out, note = _conv_out(f, k, s, before, after, d, ceil)
    if note == "starts":
        return (
            f"F_out = {generic} = {concrete}, less 1 when the last window would start in"
            f" the right padding = floor(({ft} + {before} - 1) / {s}) + 1 = {out}"
            " (the windows that start inside the input or the left padding)"
        )
    if note == "dropped":
        return (
            f"F_out = {generic} = {concrete} = {out + 1} - 1 = {out}"
            " (the last window would start in the right padding, so it is dropped)"
        )
    return f"F_out = {generic} = {concrete} = {out}"


def transposed_conv_formula(
    f_in: Dim | int,
    k: int,
    s: int,
    pad: tuple[int, int] | int,
    d: int = 1,
    output_padding: int = 0,
) -> str:
    """Render the :func:`transposed_conv_out` formula with the numbers substituted::

        F_out = (F_in - 1)*s - 2p + d*(k - 1) + output_padding + 1
              = (1 - 1)*1 - 2*3 + 1*(3 - 1) + 0 + 1 = -3

    (on one line); ``p_before + p_after`` replaces ``2p`` for asymmetric padding. A
    symbolic ``f_in`` is substituted as text, parenthesised unless it is a single name.
    """
    out = transposed_conv_out(f_in, k, s, pad, d, output_padding)
    before, after = _pads(pad)
    f = as_dim(f_in)
    ft = str(f)
    if not (f.is_const or _IDENT.match(ft)):
        ft = f"({ft})"
    if before == after:
        generic = "(F_in - 1)*s - 2p + d*(k - 1) + output_padding + 1"
        pads = f"2*{before}"
    else:
        generic = "(F_in - 1)*s - p_before - p_after + d*(k - 1) + output_padding + 1"
        pads = f"{before} - {after}"
    return (f"F_out = {generic} = ({ft} - 1)*{s} - {pads} + {d}*({k} - 1) + "
            f"{output_padding} + 1 = {out}")
