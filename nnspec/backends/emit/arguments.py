"""A block's parameters as its class's constructor parameters: a literal of the class that
equals an expression of the block's arguments in every instance of the class is written as
that expression (``nn.Linear(d, 3 * d)``, ``q.reshape(N, T, self.heads, self.d //
self.heads)``), and the caller passes the spec's values (``CausalSelfAttention(d=768,
heads=12, p=0.1)``), also for a block used once.

Which expression: the spec's text of the layer says. A literal written in it (``k=3``)
stays a literal; a value it computes from the names it mentions (``dense (3 * d)``,
``reshape [B, T, heads, d/heads]``) is the first of ``p``, ``k * p``, ``p // q``,
``p * q``, ``p // k`` over those names that fits every instance. A size the layer infers
from its input (a Linear's ``in_features``, a norm's ``num_features``) is the first of
``p`` and ``k * p`` over all the block's parameters that fits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...core.dims import Dim

_WORD = re.compile(r"[A-Za-z_]\w*")
_NUMBER = re.compile(r"(?<![\w.])[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?(?![\w.])")

# the constructor arguments a layer infers from its input's shape rather than its text
INFERRED = frozenset({"in_features", "in_channels", "num_features", "normalized_shape",
                      "num_channels", "embed_dim", "input_size", "in_caps", "in_dim",
                      "visible", "embedding_dim", "n", "size"})
_FACTORS = range(2, 9)


@dataclass(frozen=True)
class Expr:
    """``p``, ``k * p``, ``p // q``, ``p * q`` or ``p // k`` over block parameters;
    ``wrap`` makes it a one-element tuple (``(d,)``)."""

    form: str
    names: tuple
    k: int = 0
    wrap: bool = False

    def value(self, env: dict):
        a = env[self.names[0]]
        if self.form == "p":
            v = a
        elif self.form == "kp":
            v = self.k * a
        elif self.form == "pk":
            v = a // self.k
        elif self.form == "div":
            v = a // env[self.names[1]]
        else:
            v = a * env[self.names[1]]
        return (v,) if self.wrap else v

    def src(self, ref, bare_tuple: bool = False) -> str:
        """The expression with each parameter written by ``ref(name)``."""
        a = ref(self.names[0])
        text = {"p": a, "kp": f"{self.k} * {a}", "pk": f"{a} // {self.k}",
                "div": f"{a} // {ref(self.names[-1])}",
                "mul": f"{a} * {ref(self.names[-1])}"}[self.form]
        if self.wrap and not bare_tuple:
            return f"({text},)"
        return text

    @property
    def compound(self) -> bool:
        return self.form != "p" and not self.wrap


def _plain(v):
    if isinstance(v, Dim) and v.is_const:
        return v.value
    if isinstance(v, tuple) and len(v) == 1:
        return (_plain(v[0]),)
    return v


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b


def _scalar(v) -> bool:
    return isinstance(v, (int, float, str, bool))


def spec_text(note: str | None) -> str:
    """The spec's text of a forward line's note (``file:line  text``)."""
    return note.split("  ", 1)[1] if note and "  " in note else ""


def find(values: list, envs: list, text: str, slot_name: str) -> Expr | None:
    """The expression of the block parameters equal to ``values`` (one per instance) in
    every instance's arguments ``envs``, or None where a literal is what the spec wrote."""
    if not envs or any(e is None for e in envs) or not values:
        return None
    values = [_plain(v) for v in values]
    wrap = all(isinstance(v, tuple) and len(v) == 1 for v in values)
    if wrap:
        values = [v[0] for v in values]
    if not all(_scalar(v) for v in values):
        return None
    names = [n for n in envs[0] if all(n in e and _scalar(e[n]) for e in envs)]
    words = set(_WORD.findall(text))
    numbers = _NUMBER.findall(text)
    v0 = values[0]
    if all(_same(v, v0) for v in values) and isinstance(v0, (int, float)) and \
            not isinstance(v0, bool) and repr(abs(v0)) in numbers:
        return None  # a literal the spec wrote
    mentioned = [n for n in names if n in words]
    natural = sorted(names, key=lambda n: n != slot_name)

    def fits(e: Expr) -> bool:
        try:
            return all(_same(e.value(env), v) for env, v in zip(envs, values))
        except (TypeError, ZeroDivisionError, ArithmeticError):
            return False

    def first(cands):
        for e in cands:
            if fits(e):
                return Expr(e.form, e.names, e.k, wrap)
        return None

    ints = [n for n in names if type(envs[0][n]) is int]
    consts = [int(x) for x in numbers if x.isdigit() and int(x) > 1]
    if slot_name in INFERRED or not all(_same(v, v0) for v in values):
        # a size from the input, or a value that differs between instances: any parameter
        got = first([Expr("p", (n,)) for n in natural] +
                    [Expr("kp", (n,), k) for k in _FACTORS for n in natural
                     if n in ints and slot_name in INFERRED])
        if got is not None or not mentioned or slot_name in INFERRED:
            return got
    # a product or quotient only for a value that no coincidence gives (not 0, 1)
    m_ints = [n for n in natural if n in mentioned and n in ints] if all(
        type(v) is int and abs(v) > 1 for v in values) else []
    return first([Expr("p", (n,)) for n in natural if n in mentioned] +
                 [Expr("kp", (n,), k) for k in dict.fromkeys(consts + list(_FACTORS))
                  for n in m_ints] +
                 [Expr("div", (a, b)) for a in m_ints for b in m_ints if a != b] +
                 [Expr("mul", (a, b)) for a in m_ints for b in m_ints if a < b] +
                 [Expr("pk", (n,), k) for k in consts for n in m_ints])


def in_forward(code: str, start: int, end: int, text: str) -> str:
    """``text`` placed at ``code[start:end]``, in parentheses where an operator beside it
    would bind it otherwise."""
    before = code[:start].rstrip()[-1:]
    after = code[end:].lstrip()[:1]
    if (before in ("", "(", "[", ",", "=", ":") and after in ("", ")", "]", ",", ":")) or \
            " " not in text:
        return text
    return f"({text})"
