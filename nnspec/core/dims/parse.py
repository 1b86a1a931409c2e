"""The parser of a dimension's text form, behind :meth:`Dim.parse`.

Reads what ``str(dim)`` writes: ints, names, ``+ - *``, parentheses, ``floor(E/int)``,
``ceil(E/int)`` and ``E // int``, by recursive descent (:class:`_Parser`). It builds its
values only through the ``const`` and ``sym`` functions it is given (``Dim.const`` and
``Dim.sym``) and their operators, so it imports nothing of :mod:`.algebra`, which imports
it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Generic, TypeVar

from .terms import _RESERVED

#: a dimension (a :class:`Dim`), built by the ``const`` and ``sym`` passed to the parser
D = TypeVar("D")

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_]*)|(//|[-+*/()]))")


class _Parser(Generic[D]):
    """Recursive descent over::

    expr    := term (('+' | '-') term)*
    term    := unary (('*' unary) | ('//' unary))*
    unary   := '-' unary | '+' unary | primary
    primary := INT | NAME | '(' expr ')'
             | ('floor' | 'ceil') '(' expr '/' unary ')'
    """

    def __init__(self, text: str, const: Callable[[int], D],
                 sym: Callable[[str], D]) -> None:
        self.text = text
        self.const = const
        self.sym = sym
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

    def parse(self) -> D:
        if not self.toks:
            raise ValueError(f"bad dimension expression {self.text!r}: empty")
        d = self.expr()
        if self.i != len(self.toks):
            raise self._err("unexpected token")
        return d

    def expr(self) -> D:
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

    def term(self) -> D:
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

    def unary(self) -> D:
        t = self._peek()
        if t == "-" and self.toks[self.i][0] == "op":
            self.i += 1
            return -self.unary()
        if t == "+" and self.toks[self.i][0] == "op":
            self.i += 1
            return self.unary()
        return self.primary()

    def primary(self) -> D:
        if self.i >= len(self.toks):
            raise self._err("expected a value")
        kind, text, _ = self.toks[self.i]
        if kind == "int":
            self.i += 1
            return self.const(int(text))
        if kind == "name":
            self.i += 1
            if text in _RESERVED:
                self._expect("(")
                inner = self.expr()
                self._expect("/")
                k = self._divisor()
                self._expect(")")
                return inner.floordiv(k) if text == "floor" else inner.ceildiv(k)
            return self.sym(text)
        if text == "(":
            self.i += 1
            d = self.expr()
            self._expect(")")
            return d
        raise self._err("expected a value")
