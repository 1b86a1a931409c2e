"""Text -> syntax tree (Lark LALR with an inline transformer). Build only; no validation."""

from __future__ import annotations

import re
import threading

from ...core.diagnostics import Diagnostic, SpecError
from ...core.limits import MAX_NESTING, MAX_WORDS, first_too_deep, line_col
from ...core.source import Source, Span
from ...core.util import gc_paused
from . import syntax as S
from .lalr import Driver, Reject
from .tables import (  # noqa: F401  (parse.write_tables() regenerates the tables)
    _from_json,
    _to_json,
    grammar_path,
    grammar_text,
    load_driver,
    load_tables,
    tables_json,
    tables_path,
    write_tables,
)

_parser = None  # the Lark parser, built on first need
_driver: Driver | None | bool = None  # the driver of the shipped tables (False: none fit)
_lock = threading.Lock()

# Human names for the grammar's terminals, for "expected ..." messages.
_TERMINAL_WORDS = {
    "NAME": "a name", "CALL": "a call like name(", "INDEX": "an index like name[",
    "ELLIPSIS": "'...'", "INT": "an integer", "FLOAT": "a number",
    "STRING": 'a string in "quotes"', "_NL": "end of line", "$END": "end of file",
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['",
    "RSQB": "']'", "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "VBAR": "'|'",
    "_PIPE_NL": "'|'", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'",
    "__ANON_0": "'->'", "__ANON_1": "'//'", "MODEL": "'model'", "BLOCK": "'block'",
    "CONST": "'const'", "USE": "'use'", "CHECK": "'check'", "RETURN": "'return'", "AS": "'as'",
}


def parser():
    """The LALR parser with the syntax-tree builder inlined (no parse tree is built).

    Built once per process. Analysing the grammar costs ~0.1 s, a fifth of the cold-start
    budget of ``check``, so its LALR tables ship precomputed next to it, as JSON (plain data:
    loading it cannot run code). They are used only when they were made from this very
    grammar by this very Lark version; otherwise the parser is built from the grammar.
    Lark's own ``cache=True`` is not used: it unpickles a file at a predictable path in the
    shared temp directory, so whoever can write there would run code in every ``nnspec
    check``. Nothing is read from outside the package.
    """
    global _parser
    if _parser is None:
        text = grammar_text()
        _parser = _load_tables(text)
        if _parser is None:
            from lark import Lark

            _parser = Lark(text, parser="lalr", maybe_placeholders=True, transformer=_builder)
    return _parser


def _load_tables(text: str):
    return load_tables(text, _builder)


def driver() -> Driver | None:
    """The parser of text that parses (``lalr.Driver``: Lark's tables without Lark), or None
    when the shipped tables do not fit the grammar and Lark; Lark's parser (:func:`parser`)
    parses what it rejects, and says why."""
    global _driver
    if _driver is None:
        data = load_driver(grammar_text())
        _driver = Driver(data, _builder) if data is not None else False
    return _driver or None


def _span(file: str, meta) -> Span:
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tspan(file: str, tok) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


def _tok_span(file: str, tok) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


def _start(x):
    """(line, col) where a child starts, or None. (The only strings among the children are
    tokens: Lark's, or the driver's.)"""
    if isinstance(x, str):
        return x.line, x.column
    span = getattr(x, "span", None)
    if span is not None:
        return span.line, span.col
    if isinstance(x, list):
        for y in x:
            s = _start(y)
            if s is not None:
                return s
    return None


def _end(x):
    if isinstance(x, str):
        return x.end_line, x.end_column
    span = getattr(x, "span", None)
    if span is not None:
        return span.end_line, span.end_col
    if isinstance(x, list):
        for y in reversed(x):
            e = _end(y)
            if e is not None:
                return e
    return None


class _Build:
    """Inline LALR callbacks: children -> syntax nodes. Spans come from token positions
    (delimiters are named terminals so they stay among the children). A rule without a
    method is Lark's default, a tree (an ``_inlined`` rule's, spliced into its parent)."""

    def __init__(self):
        self.file = "<string>"

    def _sp(self, c) -> Span:
        """From where the first child that has a place starts to where the last one ends
        (``_start`` and ``_end``, with a token's and a node's read in place)."""
        for x in c:
            if x is None:
                continue
            if isinstance(x, str):
                line, col = x.line, x.column
                break
            span = getattr(x, "span", None)
            if span is not None:
                line, col = span.line, span.col
                break
            first = _start(x)
            if first is not None:
                line, col = first
                break
        else:
            return Span(self.file, 0, 0, 0, 0)
        for x in reversed(c):
            if x is None:
                continue
            if isinstance(x, str):
                return Span(self.file, line, col, x.end_line, x.end_column)
            span = getattr(x, "span", None)
            if span is not None:
                return Span(self.file, line, col, span.end_line, span.end_col)
            last = _end(x)
            if last is not None:
                return Span(self.file, line, col, last[0], last[1])
        raise AssertionError("a child with a start has an end")  # as _end finds the same

    # expressions
    def int(self, c):
        t = c[0]
        return S.Num(_int(t), Span(self.file, t.line, t.column, t.end_line, t.end_column))

    def float(self, c):
        return S.Num(float(c[0]), _tok_span(self.file, c[0]))

    def neg_int(self, c):
        v = _int(c[1])
        return S.Num(-v if isinstance(v, int) else v, self._sp(c))

    def neg_float(self, c):
        return S.Num(-float(c[1]), self._sp(c))

    def ref(self, c):
        t = c[0]
        return S.Ref(str(t), Span(self.file, t.line, t.column, t.end_line, t.end_column))

    def paren(self, c):
        """``(n - 1)`` as a layer argument or repeat count: the expression, its span widened
        to the parentheses (the stage's span, and its text in comments, ends at the ``)``)."""
        e = c[1]
        if getattr(e, "span", None) is not None:
            try:
                e.span = Span(self.file, c[0].line, c[0].column, c[2].end_line,
                              c[2].end_column)
            except AttributeError:
                pass
        return e

    def dotted(self, c):
        return S.Dotted(str(c[0]).split("."), _tok_span(self.file, c[0]))

    def string(self, c):
        return S.Str(str(c[0])[1:-1], _tok_span(self.file, c[0]))

    def _bin(op):  # noqa: N805 - a method factory
        def f(self, c):
            return S.BinOp(op, c[0], c[1], self._sp(c))
        return f

    add, sub, mul, div, floordiv = (_bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("//"))
    lt, gt, le, ge, eq, ne = (_bin("<"), _bin(">"), _bin("<="), _bin(">="), _bin("=="),
                              _bin("!="))

    def neg(self, c):
        return S.Neg(c[1], self._sp(c))

    def tuple(self, c):
        return S.TupleLit([x for x in c[1:-1] if x is not None], self._sp(c))

    def shape(self, c):
        return S.ShapeLit([x for x in c[1:-1] if x is not None], self._sp(c))

    def cargs(self, c):
        return [x for x in c if x is not None]

    def carg(self, c):
        return S.Arg(None, c[0], c[0].span)

    def ckwarg(self, c):
        return S.Arg(str(c[0]), c[1], self._sp(c))

    arg = carg
    kwarg = ckwarg

    def _callname(self, tok):
        name = str(tok)[:-1]
        sp = Span(self.file, tok.line, tok.column, tok.line, tok.column + len(name))
        return name, sp

    def ecall(self, c):
        name, nsp = self._callname(c[0])
        return S.CallExpr(name, c[1] or [], self._sp(c), nsp)

    # stages
    def rep(self, c):
        return c[0]

    def alias(self, c):
        return c[0]  # the NAME token (a str with a position)

    def layer(self, c):
        tok = c[0]
        rep, alias = c[-2], c[-1]
        return S.Layer(str(tok), list(c[1:-2]), rep, str(alias) if alias is not None else None,
                       self._sp(c),
                       Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column))

    def call(self, c):
        name, nsp = self._callname(c[0])
        alias = c[4]
        return S.Call(name, c[1] or [], c[3], str(alias) if alias is not None else None,
                      self._sp(c), nsp)

    def group(self, c):
        alias = c[4]
        return S.Group(c[1], c[3], str(alias) if alias is not None else None, self._sp(c))

    def index(self, c):
        tok = c[0]
        name = str(tok)[:-1]
        nsp = Span(self.file, tok.line, tok.column, tok.line, tok.column + len(name))
        alias = c[3]
        return S.Index(name, c[1], str(alias) if alias is not None else None, self._sp(c), nsp)

    def subscripts(self, c):
        return [x for x in c if x is not None]

    def sub_index(self, c):
        return c[0]

    def sub_slice(self, c):
        # [start] ":" [stop] [":" [step]]: five children, None where a part is absent
        return (c[0], c[2], c[4])

    def sub_ellipsis(self, c):
        return Ellipsis

    def plus(self, c):
        return S.Plus(c[0], c[1], self._sp(c))

    def pipeline(self, c):
        """Stages with an optional annotation after each (None where there is none)."""
        stages = c[0::2]
        annots = [S.Annot(i, a) for i, a in enumerate(c[1::2]) if a is not None]
        return S.Pipeline(stages, self._sp(stages), annots)

    def eindex(self, c):
        return self.index([*c, None])

    def annot(self, c):
        return c[0]

    def targets(self, c):
        return list(c)

    def assign(self, c):
        names = [str(t) for t in c[0]]
        target = names[0] if len(names) == 1 else names
        annot = _final_annot(c[1])
        return S.Stmt("assign", target, c[1], annot, self._sp([*c, annot]))

    def ret(self, c):
        annot = _final_annot(c[-1])
        return S.Stmt("return", None, c[1], annot, self._sp([*c, annot]), list(c[2:]))

    def pipe(self, c):
        annot = _final_annot(c[0])
        return S.Stmt("pipe", None, c[0], annot, self._sp([c[0], annot]))

    def body(self, c):
        return list(c)

    # top level
    def param(self, c):
        return S.Param(str(c[0]), c[1], self._sp(c))

    def params(self, c):
        return list(c)

    def input(self, c):
        dt = c[2]
        return S.Input(str(c[0]), c[1], str(dt) if dt is not None else None, self._sp(c),
                       _tok_span(self.file, dt) if dt is not None else None)

    inputs = params

    def _split_header(self, c):
        tok = c[0]
        if tok.type == "CALL":
            name, sp = self._callname(tok)
            return name, sp, c[1:]
        return str(tok), _tok_span(self.file, tok), c[1:]

    def block(self, c):
        name, sp, rest = self._split_header(c)
        return S.Block(name, rest[0] or [], rest[1], sp, self.file)

    def model(self, c):
        name, sp, rest = self._split_header(c)
        return S.Model(name, rest[0] or [], rest[1], rest[2], sp, self.file)

    def const(self, c):
        return S.Const(str(c[0]), c[1], self._sp(c))

    def tloss(self, c):
        return ("loss", c[1], self._sp(c))

    def tset(self, c):
        return S.Setting(str(c[0]), [a for a in c[1:] if a is not None], self._sp(c),
                         _tok_span(self.file, c[0]))

    def train(self, c):
        tok = c[0]
        if tok.type == "CALL":
            name, sp = self._callname(tok)
            targets, rest = c[1] or [], c[2:]
        else:
            name, sp = str(tok), _tok_span(self.file, tok)
            targets, rest = [], c[1:]
        losses = [(x[1], x[2]) for x in rest if isinstance(x, tuple)]
        settings = [x for x in rest if isinstance(x, S.Setting)]
        return S.Train(name, targets, losses, settings, sp, sp, self.file)

    def use(self, c):
        return S.Use(str(c[0])[1:-1], _tok_span(self.file, c[0]))

    def check(self, c):
        ret = c[1] if len(c) > 1 else None
        if isinstance(ret, str):  # -> x (a token): an input of the innermost model
            ret = S.Ref(str(ret), _tok_span(self.file, ret))
        return S.Check(c[0], c[0].span, ret)

    def start(self, c):
        return list(c)


def _final_annot(pl: S.Pipeline) -> S.ShapeLit | None:
    """Take a statement's final annotation (after its last stage) out of its pipeline."""
    if pl.annots and pl.annots[-1].after == len(pl.stages) - 1:
        return pl.annots.pop().shape
    return None


_builder = _Build()

# Integer literals longer than this are kept as text: int() refuses more than 4,300 digits,
# and no size in a spec comes close (the evaluator reports anything beyond int64).
_MAX_INT_DIGITS = 40


def _int(tok):
    text = str(tok).lstrip("0") or "0"
    if len(text) > _MAX_INT_DIGITS:
        return S.BigInt(len(text))
    return int(text)


def _expected(exc) -> str:
    names = sorted({_TERMINAL_WORDS.get(t, t) for t in (getattr(exc, "expected", None) or
                                                         getattr(exc, "allowed", None) or [])
                    if not t.startswith("__ANON") or t in _TERMINAL_WORDS})
    if not names:
        return ""
    if len(names) > 8:
        names = names[:8] + ["..."]
    return "expected " + ", ".join(names)


MAX_SYNTAX_ERRORS = 20
# Recovery parses the file again after each syntax error: it stops once that would have
# read this many characters in all (a few parses of a large file, 20 of a small one).
MAX_RECOVERY_CHARS = 200_000


def parse(text: str, path: str = "<string>") -> S.Module:
    """Parse one .nn file. Raises SpecError with the file's syntax errors, each located."""
    module, errors, _ = parse_recover(text, path)
    if errors:
        raise SpecError(errors, {path: Source(path, text if text.endswith("\n") else text + "\n")})
    return module


def parse_recover(text: str, path: str = "<string>"
                  ) -> tuple[S.Module | None, list[Diagnostic], list[int]]:
    """Parse one .nn file, recovering from syntax errors line by line.

    Returns (module, errors, blanked lines). After a syntax error inside a body, the
    statement's line is blanked and the file is parsed again, so that independent syntax
    errors on later lines are reported in the same run; the module is then the parse of
    the text with those lines blanked (the caller must not trust the items that contained
    them). Recovery stops at a line that opens or closes a model or block (blanking it would
    only produce follow-on errors) and when an error does not move forward; the module is
    None then.
    """
    if not text.endswith("\n"):
        text += "\n"
    deep = _too_many_words(text, path) or _too_many_brackets(text, path)
    if deep is not None:
        return None, [deep], []
    fast = driver()
    errors: list = []
    blanked: list[int] = []
    work = text
    items = None
    parsed = 0
    with _lock, gc_paused():
        _builder.file = path
        if fast is not None:
            try:
                items = fast.parse(work)
            except Reject:  # a syntax error: Lark's parser finds it and says what it is
                pass
        if items is None:
            from lark.exceptions import UnexpectedInput

            p = parser()
        while items is None:
            try:
                items = p.parse(work)
                break
            except UnexpectedInput as exc:
                d = _syntax_diag(exc, text, path)
                if errors and d.span.line <= errors[-1].span.line:
                    break
                errors.append(d)
                parsed += len(work)
                work = _blank_line(work, d.span.line)
                if (work is None or len(errors) >= MAX_SYNTAX_ERRORS
                        or parsed + len(work) > MAX_RECOVERY_CHARS):
                    break
                blanked.append(d.span.line)
    module = S.Module(path, items) if items is not None else None
    return module, errors, blanked


_BRACKETS = re.compile(r'[(\[]|[)\]]|#[^\n]*|"[^"\n]*"?')
#: Brackets open at once. Deeper input is refused before parsing: the syntax tree could not
#: be lowered anyway (limits.MAX_NESTING), and parsing 50,000 levels alone takes seconds.
MAX_BRACKET_DEPTH = 2 * MAX_NESTING


def _too_many_words(text: str, path: str) -> Diagnostic | None:
    """A file of more than MAX_WORDS words is refused before parsing (parsing alone would
    take seconds; a spec at the layer limit has a few tens of thousands)."""
    if len(text.split()) <= MAX_WORDS:
        return None
    for i, m in enumerate(re.finditer(r"\S+", text)):
        if i == MAX_WORDS:
            line, col = line_col(text, m.start())
            return Diagnostic("E029", f"the file has more than {MAX_WORDS:,} words; nnspec "
                              f"reads specs of at most {MAX_WORDS:,}",
                              Span(path, line, col, line, col + 1))
    return None  # pragma: no cover - split() and the regex count the same words


def _too_many_brackets(text: str, path: str) -> Diagnostic | None:
    at = first_too_deep(_BRACKETS, text, "([", ")]", MAX_BRACKET_DEPTH)
    if at is not None:
        line, col = line_col(text, at)
        return Diagnostic("E029", f"brackets nested more than {MAX_BRACKET_DEPTH} levels deep",
                          Span(path, line, col, line, col + 1),
                          hint="split the expression into named constants")
    m = _MINUS_RUN.search(text)
    if m is not None:
        line, col = line_col(text, m.start())
        return Diagnostic("E029", f"more than {MAX_BRACKET_DEPTH} minus signs in a row",
                          Span(path, line, col, line, col + 1))
    return None


_MINUS_RUN = re.compile(r"(?:-[ \t\f]*){%d}" % (MAX_BRACKET_DEPTH + 1))


def _blank_line(text: str, line: int) -> str | None:
    """The text with one statement line replaced by spaces, or None where blanking it
    cannot help (a model/block header or a brace line)."""
    lines = text.split("\n")
    if not 0 < line <= len(lines):
        return None
    code = lines[line - 1].split("#", 1)[0]
    if "{" in code or "}" in code or code.lstrip().startswith(("model", "block")):
        return None
    lines[line - 1] = " " * len(lines[line - 1])
    return "\n".join(lines)


def _syntax_diag(exc, text: str, path: str) -> Diagnostic:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

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
    word = _hyphenated(exc, text)
    if word is not None:  # mode=nearest-exact: a bare name has no '-'
        a, b = word.rsplit("-", 1)
        exp = (f"a name cannot contain '-': write {word.replace('-', '_')} or "
               f"\"{word}\" (or ({a} - {b}) for a difference)")
    return Diagnostic("E100", f"syntax error: {msg}", Span(path, line, col, line, col + width),
                      hint=exp or None)


def _hyphenated(exc, text: str) -> str | None:
    """``nearest-exact`` when the unexpected token is the name after ``name-``."""
    from lark.exceptions import UnexpectedToken

    if not (isinstance(exc, UnexpectedToken) and exc.token.type == "NAME"):
        return None
    start = exc.token.start_pos
    if start is None or start < 2 or text[start - 1] != "-" or not (
            text[start - 2].isalnum() or text[start - 2] == "_"):
        return None
    i = start - 1
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
        i -= 1
    if not (text[i].isalpha() or text[i] == "_"):
        return None
    return text[i:start] + str(exc.token)
