"""Text -> syntax tree (Lark LALR with an inline transformer). Build only; no validation."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import syntax as S
from .diagnostics import Diagnostic, SpecError
from .source import Source, Span

_GRAMMAR_FILE = "nnspec.lark"
_parser: Lark | None = None

# Human names for the grammar's terminals, for "expected ..." messages.
_TERMINAL_WORDS = {
    "NAME": "a name", "CALL": "a call like name(", "INT": "an integer", "FLOAT": "a number",
    "STRING": 'a string in "quotes"', "_NL": "end of line", "$END": "end of file",
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['",
    "RSQB": "']'", "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "VBAR": "'|'",
    "_PIPE_NL": "'|'", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'",
    "__ANON_0": "'->'", "__ANON_1": "'//'", "MODEL": "'model'", "BLOCK": "'block'",
    "CONST": "'const'", "USE": "'use'", "CHECK": "'check'", "RETURN": "'return'", "AS": "'as'",
}


def grammar_path() -> Path:
    """The grammar file: inside the installed package, or in the source tree's grammar/."""
    here = Path(__file__).resolve().parent
    for cand in (here / "grammar" / _GRAMMAR_FILE, here.parent / "grammar" / _GRAMMAR_FILE):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"nnspec grammar {_GRAMMAR_FILE} not found next to {here}")


def grammar_text() -> str:
    return grammar_path().read_text()


def _cache_path(text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    import lark

    return os.path.join(tempfile.gettempdir(),
                        f"nnspec-lark-{lark.__version__}-{digest}-{os.getuid()}.cache")


def parser() -> Lark:
    """The LALR parser, built once per process and cached on disk between runs."""
    global _parser
    if _parser is None:
        text = grammar_text()
        _parser = Lark(text, parser="lalr", propagate_positions=True,
                       maybe_placeholders=True, cache=_cache_path(text))
    return _parser


def _span(file: str, meta) -> Span:
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tspan(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


@v_args(meta=True)
class _Build(Transformer):
    """Parse tree -> syntax nodes with spans."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _s(self, meta) -> Span:
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    # expressions
    def int(self, meta, c):
        return S.Num(int(c[0]), self._s(meta))

    def float(self, meta, c):
        return S.Num(float(c[0]), self._s(meta))

    def neg_int(self, meta, c):
        return S.Num(-int(c[0]), self._s(meta))

    def neg_float(self, meta, c):
        return S.Num(-float(c[0]), self._s(meta))

    def ref(self, meta, c):
        return S.Ref(str(c[0]), self._s(meta))

    def string(self, meta, c):
        return S.Str(str(c[0])[1:-1], self._s(meta))

    def _bin(op):  # noqa: N805 - a method factory
        def f(self, meta, c):
            return S.BinOp(op, c[0], c[1], self._s(meta))
        return f

    add, sub, mul, div, floordiv = (_bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("//"))

    def neg(self, meta, c):
        return S.Neg(c[0], self._s(meta))

    def tuple(self, meta, c):
        return S.TupleLit([x for x in c if x is not None], self._s(meta))

    def shape(self, meta, c):
        return S.ShapeLit([x for x in c if x is not None], self._s(meta))

    def cargs(self, meta, c):
        return [x for x in c if x is not None]

    def carg(self, meta, c):
        return S.Arg(None, c[0], self._s(meta))

    def ckwarg(self, meta, c):
        return S.Arg(str(c[0]), c[1], self._s(meta))

    arg = carg
    kwarg = ckwarg

    def _callname(self, tok: Token):
        name = str(tok)[:-1]
        sp = Span(self.file, tok.line, tok.column, tok.line, tok.column + len(name))
        return name, sp

    def ecall(self, meta, c):
        name, nsp = self._callname(c[0])
        return S.CallExpr(name, c[1] or [], self._s(meta), nsp)

    # stages
    def rep(self, meta, c):
        return c[0]

    def alias(self, meta, c):
        return str(c[0])

    def layer(self, meta, c):
        tok = c[0]
        rep, alias = c[-2], c[-1]
        return S.Layer(str(tok), list(c[1:-2]), rep, alias, self._s(meta),
                       _tspan(self.file, tok))

    def call(self, meta, c):
        name, nsp = self._callname(c[0])
        return S.Call(name, c[1] or [], c[2], c[3], self._s(meta), nsp)

    def group(self, meta, c):
        return S.Group(c[0], c[1], c[2], self._s(meta))

    def plus(self, meta, c):
        return S.Plus(c[0], c[1], self._s(meta))

    def pipeline(self, meta, c):
        return S.Pipeline(list(c), self._s(meta))

    def annot(self, meta, c):
        return c[0]

    def assign(self, meta, c):
        return S.Stmt("assign", str(c[0]), c[1], c[2], self._s(meta))

    def ret(self, meta, c):
        return S.Stmt("return", None, c[0], c[1], self._s(meta))

    def pipe(self, meta, c):
        return S.Stmt("pipe", None, c[0], c[1], self._s(meta))

    def body(self, meta, c):
        return list(c)

    # top level
    def param(self, meta, c):
        return S.Param(str(c[0]), c[1], self._s(meta))

    def params(self, meta, c):
        return list(c)

    def input(self, meta, c):
        dt = c[2]
        return S.Input(str(c[0]), c[1], str(dt) if dt is not None else None, self._s(meta),
                       _tspan(self.file, dt) if dt is not None else None)

    inputs = params

    def _header(self, c):
        tok = c[0]
        if tok.type == "CALL":
            return self._callname(tok)[0], c[1:]
        return str(tok), c[1:]

    def block(self, meta, c):
        name, rest = self._header(c)
        return S.Block(name, rest[0] or [], rest[1], self._s(meta), self.file)

    def model(self, meta, c):
        name, rest = self._header(c)
        return S.Model(name, rest[0] or [], rest[1], rest[2], self._s(meta), self.file)

    def const(self, meta, c):
        return S.Const(str(c[0]), c[1], self._s(meta))

    def use(self, meta, c):
        return S.Use(str(c[0])[1:-1], self._s(meta))

    def check(self, meta, c):
        return S.Check(c[0], self._s(meta))

    def start(self, meta, c):
        return list(c)


def _expected(exc: UnexpectedInput) -> str:
    names = sorted({_TERMINAL_WORDS.get(t, t) for t in (getattr(exc, "expected", None) or
                                                         getattr(exc, "allowed", None) or [])
                    if not t.startswith("__ANON") or t in _TERMINAL_WORDS})
    if not names:
        return ""
    if len(names) > 8:
        names = names[:8] + ["..."]
    return "expected " + ", ".join(names)


def parse(text: str, path: str = "<string>") -> S.Module:
    """Parse one .nn file. Raises SpecError with one located diagnostic on a syntax error."""
    if not text.endswith("\n"):
        text += "\n"
    try:
        tree = parser().parse(text)
    except UnexpectedInput as exc:
        raise SpecError(_syntax_diag(exc, text, path), {path: Source(path, text)}) from None
    return S.Module(path, _Build(path).transform(tree))


def _syntax_diag(exc: UnexpectedInput, text: str, path: str) -> Diagnostic:
    line, col = max(exc.line, 1), max(exc.column, 1)
    width = 1
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type in ("_NL", "$END"):
            what = "end of line" if tok.type == "_NL" else "end of file"
            # point just after the last character of the line
            line = tok.line if tok.line else line
            col = tok.column if tok.column else col
        elif tok.type == "_PIPE_NL":
            what = "'|'"
            lines = str(tok).split("\n")
            line = tok.line + len(lines) - 1
            col = len(lines[-1])
        else:
            what = repr(str(tok))
            width = max(1, len(str(tok)))
        msg = f"unexpected {what}"
    elif isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else "?"
        msg = f"unexpected character {ch!r}"
    elif isinstance(exc, UnexpectedEOF):
        msg = "unexpected end of file"
    else:  # pragma: no cover - other Lark errors
        msg = str(exc).splitlines()[0]
    exp = _expected(exc)
    return Diagnostic("E100", f"syntax error: {msg}", Span(path, line, col, line, col + width),
                      hint=exp or None)
