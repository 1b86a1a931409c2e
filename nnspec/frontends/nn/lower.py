"""Syntax -> IR: resolve names, constants, imports and blocks; validate layer arguments.

Blocks are expanded inline (each call gets its own module-name prefix, so the state_dict
reads ``layer1.0.conv1.weight``). Errors are collected, not raised one by one: a failing
statement poisons the value it defines, later uses of a poisoned value stay silent, and
every independent error in a file is reported in one run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ...core.diagnostics import Diagnostic, Failure, suggest, unreadable
from ...core.dims import Dim, DimTooComplex
from ...core.limits import (
    MAX_EXPANSIONS,
    MAX_INT,
    MAX_MODEL_ERRORS,
    MAX_NESTING,
    MAX_NODES,
)
from ...core.source import Source, Span, UnreadableSource, read_source
from ...ir import model as ir
from ...ir.names import child_name_problem
from ...layers import REGISTRY, ShapeError, TensorType
from ...layers import initializers as _inits
from ...layers.base import TupleType
from ...stdlib import STDLIB
from . import syntax as S
from .nesting import nesting_errors, tainted_items
from .parse import parse_recover

MAX_DEPTH = 64
MAX_REPEAT = MAX_NODES


@dataclass(frozen=True, slots=True)
class Tensor:
    """A tensor value during lowering: the id of the IR value that holds it."""

    id: str


@dataclass(frozen=True, slots=True)
class Word:
    """A bare name that is bound to nothing: a flag (``global``) or a keyword (``same``)."""

    name: str


class _Poison:
    """The value of anything whose definition failed (its error is already reported)."""

    def __repr__(self):
        return "<error>"


POISON = _Poison()
_BOOLS = {"true": True, "false": False, "True": True, "False": False}


@dataclass
class FileScope:
    path: str
    consts: dict = field(default_factory=dict)
    const_spans: dict = field(default_factory=dict)
    blocks: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)  # name -> syntax Model
    imported: set = field(default_factory=set)  # names that came in through `use`
    # models and blocks whose text has an error already reported (a syntax error, say):
    # they are not lowered, and using them is silent
    broken: set = field(default_factory=set)


class Loader:
    """Reads files, follows ``use``, and owns the sources for error excerpts."""

    def __init__(self, consts: dict | None = None):
        self.sources: dict[str, Source] = {}
        self.scopes: dict[str, FileScope] = {}
        self.diags: list[Diagnostic] = []
        self.reported: set = set()  # (code, message, span) of the errors in diags
        self._loading: list[str] = []
        # constants set from outside (--const): they replace the `const` statements of the
        # first file loaded, the spec itself; the files it uses keep theirs, so that a
        # library means the same in every spec that uses it
        from .overrides import check_values

        self.overrides: dict = check_values(consts)
        # the spec's consts computed from overridden ones: name -> (their names, value)
        self.derived: dict[str, tuple] = {}

    def error(self, code, msg, span, notes=(), hint=None):
        self.diags.append(Diagnostic(code, msg, span, list(notes), hint))

    def load_text(self, text: str, path: str) -> FileScope | None:
        self.sources[path] = Source(path, text if text.endswith("\n") else text + "\n")
        module, errors, blanked = parse_recover(text, path)
        self.diags.extend(errors)
        if module is None:
            return None
        tainted, consts = tainted_items(module, text, blanked)
        for i, span in nesting_errors(module):
            self.error("E029", f"this is nested more than {MAX_NESTING} levels deep "
                       "(operators, brackets and calls)", span,
                       hint="split it into named constants or several statements")
            tainted.add(i)
        scope = FileScope(path)
        for name in consts:
            scope.consts[name] = POISON
        self.scopes[os.path.abspath(path)] = scope
        self._loading.append(os.path.abspath(path))
        try:
            self._collect(module, scope, tainted)
        finally:
            self._loading.pop()
        return scope

    def load_file(self, path: str, span: Span | None = None) -> FileScope | None:
        """Read and collect one file; ``span`` is the ``use`` that imports it, if any.

        An imported file must be named ``*.nn`` (and so must a link's target): anything
        else is refused unread, so that ``use`` cannot show another file's contents in error
        excerpts. Files that are not regular, too large or not UTF-8 are located errors
        (see source.read_source); a file named on the command line is located at 1:1.
        """
        key = os.path.abspath(path)
        if key in self.scopes:
            return self.scopes[key]
        try:
            target = os.path.realpath(path)
        except ValueError:  # a NUL in the name: read_source reports it
            target = path
        if span is not None and not (path.endswith(".nn") and target.endswith(".nn")):
            self.error("E007", f"use imports .nn spec files only, not {path}", span,
                       hint="a spec file's name ends with .nn (a link's target's too)")
            return None
        try:
            text = read_source(path)
        except (OSError, ValueError, UnreadableSource) as e:  # ValueError: a NUL in the name
            diag, shown = unreadable(path, e, span)
            self.diags.append(diag)
            if shown is not None:
                self.sources[path] = shown
            return None
        return self.load_text(text, path)

    def _resolve_use(self, use: S.Use, here: str) -> str | None:
        """The file a ``use`` names: next to the importing file, else in the bundled
        library. Something there that cannot be read as a spec (a folder, a name too long
        for the OS, not ``.nn``) is still returned, for load_file to refuse at the line."""
        cand = Path(here).parent / use.path
        local = os.path.relpath(cand) if not os.path.isabs(use.path) else str(cand)
        if not use.path.endswith(".nn"):
            return local
        try:
            os.stat(cand)
            if not _same_file(cand, here):
                return local
            # specs/gpt2.nn's `use "gpt2.nn"`: not itself, the bundled library's file
        except (FileNotFoundError, NotADirectoryError):
            pass
        except (OSError, ValueError):  # ValueError: a NUL in the name
            return local
        std = STDLIB / use.path
        try:
            if std.is_file():
                return str(std)
        except (OSError, ValueError):
            pass
        return None

    def _collect(self, module: S.Module, scope: FileScope, tainted: set = frozenset()):
        ev = Evaluator(self, scope)
        for index, item in enumerate(module.items):
            if index in tainted:
                if isinstance(item, S.Const):
                    self._define(scope, "consts", item.name, POISON, item.span, item.span)
                elif isinstance(item, (S.Block, S.Model)):
                    table = "blocks" if isinstance(item, S.Block) else "models"
                    self._define(scope, table, item.name, item, item.span)
                    scope.broken.add(item.name)
                continue
            if isinstance(item, S.Use):
                path = self._resolve_use(item, module.path)
                if path is None:
                    self.error("E002", f"cannot find {item.path!r} (looked next to "
                               f"{module.path} and in the standard library)", item.span)
                    continue
                if os.path.abspath(path) in self._loading:
                    chain = " -> ".join(os.path.basename(p) for p in self._loading)
                    self.error("E003", f"import cycle: {chain} -> {os.path.basename(path)}",
                               item.span)
                    continue
                other = self.load_file(path, item.span)
                if other is None:
                    continue
                for table in ("consts", "blocks", "models"):
                    for name, value in getattr(other, table).items():
                        self._define(scope, table, name, value, item.span,
                                     other.const_spans.get(name) if table == "consts" else None,
                                     imported=True)
                scope.broken |= {n for n in other.broken if n in scope.imported}
            elif isinstance(item, S.Const):
                own = len(self._loading) == 1  # a const of the spec itself
                if own and item.name in self.overrides:
                    value = self.overrides[item.name]
                else:
                    try:
                        value = ev.const(item.expr)
                    except Failure as f:
                        self.diags.append(f.diag)
                        value = POISON
                    if own and self.overrides:
                        self._track(item, value)
                self._define(scope, "consts", item.name, value, item.span, item.span)
            elif isinstance(item, S.Block):
                self._define(scope, "blocks", item.name, item, item.span)
            elif isinstance(item, S.Model):
                self._define(scope, "models", item.name, item, item.span)
            elif isinstance(item, S.Check):
                scope.__dict__.setdefault("checks", []).append(item)
            elif isinstance(item, S.Train):
                scope.__dict__.setdefault("trainings", []).append(item)

    def _track(self, item: S.Const, value):
        """Record which overridden constants ``item`` is computed from (``const ff = d * 4``
        follows ``--const d=64``), so that errors where it is used can say so."""
        roots: set = set()
        todo = [item.expr]
        while todo:
            e = todo.pop()
            if isinstance(e, S.Ref):
                if e.name in self.overrides:
                    roots.add(e.name)
                roots |= self.derived.get(e.name, (set(), None))[0]
            elif isinstance(e, (list, tuple)):
                todo.extend(e)
            elif hasattr(e, "__dataclass_fields__"):
                todo.extend(getattr(e, f) for f in e.__dataclass_fields__)
        if roots and value is not POISON:
            self.derived[item.name] = (roots, value)

    def check_overrides(self, scope: FileScope | None) -> None:
        """Raise ConstError unless every overridden name is a ``const`` of the spec itself
        (a misspelt name would otherwise change nothing, silently)."""
        from .overrides import ConstError

        if scope is None or not self.overrides:
            return  # the spec did not parse: its errors say why
        own = [n for n in scope.consts if n not in scope.imported]
        name = os.path.basename(scope.path)
        for key in self.overrides:
            if key in own:
                continue
            if key in scope.consts:
                where = scope.const_spans.get(key)
                other = os.path.basename(where.file) if where else "a file it uses"
                raise ConstError(f"--const {key}: {key} is defined in {other}, which {name} "
                                 f"uses; only the constants of {name} itself can be set")
            best = suggest(key, own)
            mean = f" (did you mean {best}?)" if best else ""
            shown = ", ".join(own[:20]) + (", ..." if len(own) > 20 else "")
            have = f"its constants: {shown}" if own else "it defines no constants"
            raise ConstError(f"--const {key}: {name} has no constant {key}{mean}; {have}")

    def note_overrides(self, diags: list[Diagnostic]) -> None:
        """Add to each diagnostic a note on the overridden constants it may come from: the
        ones its span mentions (or consts computed from them), else all of them."""
        import re

        from .overrides import show

        if not self.overrides:
            return
        flags = ", ".join(f"--const {k}={show(v)}" for k, v in self.overrides.items())
        names = set(self.overrides) | set(self.derived)
        for d in diags:
            text = self._span_text(d.span) if d.span is not None else ""
            # a whole word, and not a keyword argument's name (`conv 6 d=2`)
            found = [n for n in sorted(names) if re.search(
                rf"(?<![A-Za-z0-9_.]){re.escape(n)}(?![A-Za-z0-9_])(?!\s*=(?!=))", text)]
            notes = []
            for n in found:
                if n in self.overrides:
                    notes.append(f"{n} is {show(self.overrides[n])} here, from --const "
                                 f"{n}={show(self.overrides[n])}")
                else:
                    roots, value = self.derived[n]
                    flag = ", ".join(f"--const {r}={show(self.overrides[r])}"
                                     for r in sorted(roots))
                    notes.append(f"{n} is {show(value)} here, computed from {flag}")
            d.notes.extend(notes or [f"the spec was loaded with {flags}"])

    def _span_text(self, span: Span) -> str:
        src = self.sources.get(span.file)
        if src is None:
            return ""
        lines = [src.line_text(i) for i in range(span.line, span.end_line + 1)]
        if not lines:
            return ""
        if len(lines) == 1:
            return lines[0][span.col - 1:span.end_col - 1]
        return "\n".join([lines[0][span.col - 1:], *lines[1:-1], lines[-1][:span.end_col - 1]])

    def _define(self, scope: FileScope, table: str, name: str, value, span: Span,
                vspan: Span | None = None, imported: bool = False):
        """Bind a top-level name. A file's own definition shadows an imported one (in
        either order); two definitions of the same name in one file are an error."""
        for other in ("consts", "blocks", "models"):
            prev = getattr(scope, other).get(name)
            if prev is not None and prev is not value:
                if imported and name not in scope.imported:
                    return  # the file's own definition wins
                if not imported and name in scope.imported:
                    del getattr(scope, other)[name]
                    scope.imported.discard(name)
                    continue
                where = getattr(prev, "span", None) or scope.const_spans.get(name)
                self.error("E010", f"{name!r} is defined twice", span,
                           [f"first defined at {where}"] if where else [])
                return
        if name in REGISTRY:
            self.error("E011", f"{name!r} is a layer kind; choose another name", span)
            return
        getattr(scope, table)[name] = value
        if imported:
            scope.imported.add(name)
        if vspan is not None:
            scope.const_spans[name] = vspan


def _same_file(a, b) -> bool:
    """Whether path a is the file b (False when b is no file: a spec given as text)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


class Evaluator:
    """Evaluates expressions of constants and integer arithmetic in a file's scope."""

    def __init__(self, loader: Loader, scope: FileScope):
        self.loader = loader
        self.scope = scope

    def const(self, e):
        v = self.value(e, {})
        if isinstance(v, (Tensor, Word)):
            raise Failure("E020", "a constant must be a number, string or tuple", e.span)
        return v

    def lookup(self, name: str, env: dict, span: Span):
        if name in env:
            return env[name]
        if name in self.scope.consts:
            return self.scope.consts[name]
        if name in _BOOLS:
            return _BOOLS[name]
        return Word(name)

    def value(self, e, env: dict, shape_ctx: bool = False):
        """Evaluate a syntax expression to a Python value (int, float, str, bool, tuple,
        Dim, list of Dims for a shape literal, Tensor or Word)."""
        if isinstance(e, S.Num):
            v = e.value
            if isinstance(v, S.BigInt) or (isinstance(v, int) and abs(v) > MAX_INT):
                digits = v.digits if isinstance(v, S.BigInt) else len(str(abs(v)))
                raise Failure("E019", f"integer literal too large ({digits:,} digits); sizes "
                              "and counts are int64 (at most 9,223,372,036,854,775,807)",
                              e.span)
            return v
        if isinstance(e, S.Str):
            return e.value
        if isinstance(e, S.Ref):
            v = self.lookup(e.name, env, e.span)
            if shape_ctx and isinstance(v, Word):
                if e.name in ("floor", "ceil"):
                    raise Failure("E023", f"{e.name} is a function, not a dimension", e.span,
                                  hint=f"write {e.name}(a / b)")
                return Dim.sym(e.name)
            return v
        if isinstance(e, S.Neg):
            v = self.value(e.operand, env, shape_ctx)
            if isinstance(v, (int, float, Dim)) and not isinstance(v, bool):
                return -v
            raise Failure("E021", f"cannot negate {describe(v)}", e.span)
        if isinstance(e, S.BinOp):
            a = self.value(e.left, env, shape_ctx)
            b = self.value(e.right, env, shape_ctx)
            return self.arith(e, a, b)
        if isinstance(e, S.TupleLit):
            return tuple(self.value(x, env, shape_ctx) for x in e.items)
        if isinstance(e, S.ShapeLit):
            return self.shape(e, env)
        if isinstance(e, S.CallExpr) and e.name in ("floor", "ceil"):
            return self.rounding(e, env, shape_ctx)
        if isinstance(e, S.CallExpr) and e.name in _inits.NAMES and not shape_ctx:
            return self.initializer(e, env)
        if isinstance(e, S.CallExpr):
            best = suggest(e.name, _inits.NAMES)
            if best is not None:
                raise Failure("E022", f"{e.name}(...) is not allowed here", e.name_span,
                              hint=f"did you mean the initialiser {best}(...)?")
            raise Failure("E022", f"{e.name}(...) is not allowed here", e.span,
                          hint="calls of layers and blocks belong in a model or block body")
        if isinstance(e, S.Dotted):
            return e  # ``wte.weight``: a layer's parameter, resolved where a layer uses it
        raise Failure("E999", f"unsupported expression {type(e).__name__}", e.span)

    def initializer(self, e: S.CallExpr, env: dict) -> _inits.Init:
        """``normal(0, 0.02)``, ``kaiming_normal(mode=fan_out)``: an initialiser value."""
        args, kwargs = [], {}
        for a in e.args:
            v = self.value(a.value, env)
            if isinstance(v, Word):
                v = v.name  # kaiming_normal(mode=fan_out)
            if isinstance(v, (Tensor, tuple, list, _inits.Init)) or v is POISON:
                raise Failure("E073", f"{e.name}'s arguments are numbers, got {describe(v)}",
                              a.span)
            if a.key is None:
                if kwargs:
                    raise Failure("E073", "a positional argument after a keyword argument",
                                  a.span)
                args.append(v)
            elif a.key in kwargs:
                raise Failure("E050", f"argument {a.key!r} given twice", a.span)
            else:
                kwargs[a.key] = v
        try:
            return _inits.Init.make(e.name, tuple(args), kwargs)
        except _inits.InitError as x:
            raise Failure("E073", str(x), e.span,
                          hint="the initialisers and their arguments are those of "
                               "torch.nn.init: normal(mean, std), uniform(a, b), "
                               "kaiming_normal(a, mode=fan_out), ...") from None

    def rounding(self, e: S.CallExpr, env: dict, shape_ctx: bool):
        """floor(a / b) and ceil(a / b): integer division rounded down or up."""
        arg = e.args[0].value if len(e.args) == 1 and e.args[0].key is None else None
        if not (isinstance(arg, S.BinOp) and arg.op == "/"):
            raise Failure("E028", f"{e.name} takes one division: {e.name}(a / b)", e.span)
        a = self.value(arg.left, env, shape_ctx)
        b = self.value(arg.right, env, shape_ctx)
        if isinstance(b, Dim) and b.is_const:
            b = b.value
        if isinstance(b, bool) or not isinstance(b, int) or b <= 0:
            raise Failure("E028", f"{e.name}(a / b) needs a positive integer b", arg.span)
        if isinstance(a, int) and not isinstance(a, bool):
            return a // b if e.name == "floor" else -(-a // b)
        if isinstance(a, Dim):
            return a.floordiv(b) if e.name == "floor" else a.ceildiv(b)
        raise Failure("E028", f"cannot round {describe(a)}", arg.span)

    def shape(self, e: S.ShapeLit, env: dict) -> list:
        dims = []
        for d in e.dims:
            if isinstance(d, S.Ref) and d.name == "_":
                dims.append("_")
                continue
            v = self.value(d, env, shape_ctx=True)
            if isinstance(v, bool) or not isinstance(v, (int, Dim)):
                raise Failure("E023", f"a dimension must be an integer or a symbol, "
                              f"got {describe(v)}", d.span)
            dims.append(Dim.const(v) if isinstance(v, int) else v)
        return dims

    def arith(self, e: S.BinOp, a, b):
        if a is POISON or b is POISON:
            return POISON
        nums = (int, float, Dim)
        if (isinstance(a, nums) and isinstance(b, nums) and not isinstance(a, bool)
                and not isinstance(b, bool)):
            return _arith(e, a, b)
        raise Failure("E024", f"cannot compute {describe(a)} {e.op} {describe(b)}", e.span)


_RING = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def _arith(e: S.BinOp, a, b):
    """Integer (and float) arithmetic of constants and dims; `/` must be exact on ints.
    Integers stay within int64 (checked on every result, so nothing ever grows large)."""
    try:
        v = _arith_raw(e, a, b)
    except DimTooComplex as x:
        raise Failure("E018", str(x), e.span) from None
    _check_int64(v, e.span)
    return v


def _check_int64(v, span: Span) -> None:
    if isinstance(v, int) and not isinstance(v, bool):
        if abs(v) > MAX_INT:
            raise Failure("E019", f"this evaluates to {_magnitude(v)}, beyond int64", span,
                          hint="sizes and counts are int64 (at most 9,223,372,036,854,775,807)")
    elif isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise Failure("E019", f"this evaluates to {v}, not a finite number", span)
    elif isinstance(v, Dim):
        big = v.max_abs_coeff()
        if big > MAX_INT:
            raise Failure("E019", f"a coefficient of this dimension is {_magnitude(big)}, "
                          "beyond int64", span,
                          hint="sizes and counts are int64 (at most 9,223,372,036,854,775,807)")


def _magnitude(v: int) -> str:
    """A huge integer by its size, without converting it to decimal text."""
    bits = abs(v).bit_length()
    if bits <= 64:
        return f"{v:,}"
    digits = int(bits * 0.30103) + 1
    return f"{'-' if v < 0 else ''}about 10^{digits - 1}"


def _arith_raw(e: S.BinOp, a, b):
    op = e.op
    symbolic = isinstance(a, Dim) or isinstance(b, Dim)
    if symbolic and (isinstance(a, float) or isinstance(b, float)):
        raise Failure("E025", "dimensions are integers; got a float", e.span)
    if op in _RING:
        return _RING[op](a, b)
    if symbolic and not isinstance(b, int) and not (isinstance(b, Dim) and b.is_const):
        raise Failure("E025", f"can only divide a dimension by an integer, not {b}", e.span)
    k = b.value if isinstance(b, Dim) else b
    if k == 0:
        raise Failure("E026", "division by zero", e.span)
    if symbolic:
        a = a if isinstance(a, Dim) else Dim.const(a)
        if op == "//":
            return a.floordiv(k)
        try:
            return a.exact_div(k)
        except ValueError:
            raise Failure("E027", f"{a} / {k} is not exact", e.span,
                          hint="use // for floor division") from None
    if op == "//":
        return a // k
    if isinstance(a, int) and isinstance(k, int):
        if a % k:
            raise Failure("E027", f"{a} / {k} is not exact (= {a / k:g})", e.span,
                          hint=f"use {a} // {k} for floor division")
        return a // k
    return a / k


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


class _Reported(Exception):
    """A stage whose errors are already reported: its statement's value is poisoned."""


class _Abort(Exception):
    """Stops lowering one model: a limit was reached (its diagnostic says which)."""

    def __init__(self, diag: Diagnostic):
        super().__init__(diag.message)
        self.diag = diag


@dataclass
class _Instance:
    """A layer or block application given a name (``as tower``), which may be applied again
    by that name with the same weights: what it was and the layer names it took."""

    kind: str            # layer kind or block name
    values: list         # its arguments, as bound the first time
    n: int               # its repetition count
    names: list[str]     # every name it took, in order (replayed by name_for)
    span: Span
    alias: str
    broken: bool = False


class ModelBuilder:
    """Lowers one model body (blocks expanded inline) to an IR model."""

    def __init__(self, loader: Loader, scope: FileScope, model: S.Model):
        self.loader = loader
        self.scope = scope
        self.syn = model
        self.nodes: list[ir.Node] = []
        self.asserts: list[ir.Assert] = []
        self.counter = 0
        self.depth = 0
        self.taken: dict[str, set] = {}
        self.counts: dict[tuple, int] = {}
        self.calls: list[tuple[str, Span]] = []  # the block calls being expanded
        # for the source emitter's names (ir.Model._value_names, _block_args)
        self.value_names: dict[tuple[str, str], str] = {}
        self.block_args: dict[str, tuple] = {}
        self.expansions = 0
        self.n_errors = 0
        # weight sharing: the named layers and block instances of each scope, the names each
        # one's first application took (replayed when it is applied again), and the layer
        # of each name (the owners of tied weights)
        self.instances: dict[tuple[str, str], _Instance] = {}
        self.recording: list[list[str]] = []
        self.replay: list[str] | None = None
        self.by_name: dict[str, ir.Node] = {}
        # inferred while lowering, for the names annotations bind (see bind_symbols)
        self.types: dict = {}
        self.typed = 0
        self.input_symbols: set[str] = set()

    # ---- helpers -------------------------------------------------------------
    def fail(self, code, msg, span, notes=(), hint=None):
        raise Failure(code, msg, span, list(notes), hint)

    def report(self, diag: Diagnostic) -> None:
        """Record an error of this model (with the block calls that lead to it). The same
        error reached through another call of the same block is reported once."""
        key = (diag.code, diag.message, diag.span)
        if key in self.loader.reported:
            return
        self.loader.reported.add(key)
        diag.notes += [f"in block {b}, called at {sp}" for b, sp in reversed(self.calls)]
        self.loader.diags.append(diag)
        self.n_errors += 1
        if self.n_errors >= MAX_MODEL_ERRORS:
            raise _Abort(Diagnostic("E066", f"more than {MAX_MODEL_ERRORS} errors in model "
                                    f"{self.syn.name}; stopping here", self.syn.span))

    def budget(self, span: Span) -> None:
        """Count one layer or block expansion; refuse a model that expands without bound."""
        self.expansions += 1
        if self.expansions > MAX_EXPANSIONS or len(self.nodes) >= MAX_NODES:
            what = (f"more than {MAX_NODES:,} layers" if len(self.nodes) >= MAX_NODES
                    else f"more than {MAX_EXPANSIONS:,} layer and block expansions")
            notes = [f"in block {b}, called at {sp}" for b, sp in reversed(self.calls)]
            raise _Abort(Diagnostic(
                "E059", f"model {self.syn.name} expands to {what}", span, notes,
                hint=f"nnspec builds at most {MAX_NODES:,} layers per model: check the "
                "repetition counts (`* n`) and blocks that call blocks several times"))

    def text(self, span: Span) -> str:
        src = self.loader.sources.get(span.file)
        if src is None:
            return ""
        line = src.line_text(span.line)
        end = span.end_col - 1 if span.end_line == span.line else len(line)
        t = line[span.col - 1:end].strip()
        if span.end_line != span.line:
            t += " ..."
        return t

    def new_id(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def name_for(self, prefix: str, base: str, alias: str | None, span: Span) -> str:
        if self.replay:
            return self.replay.pop(0)  # a shared layer applied again: its names once more
        name = self._new_name(prefix, base, alias, span)
        for names in self.recording:
            names.append(name)
        return name

    def _new_name(self, prefix: str, base: str, alias: str | None, span: Span) -> str:
        taken = self.taken.setdefault(prefix, set())
        if alias is not None:
            # a name torch.nn.Module keeps data under (``training``): see nnspec.ir.names
            bad = child_name_problem(alias)
            if bad is not None:
                self.loader.error("E070", bad[0], span, hint=bad[1])
            if alias in taken:
                self.fail("E030", f"the name {alias!r} is already used in this scope", span)
            taken.add(alias)
            return prefix + alias
        key = (prefix, base)
        i = self.counts.get(key, 0)
        while f"{base}_{i}" in taken:
            i += 1
        self.counts[key] = i + 1
        taken.add(f"{base}_{i}")
        return f"{prefix}{base}_{i}"

    # ---- model -----------------------------------------------------------------
    def build(self) -> ir.Model:
        syn = self.syn
        ev = Evaluator(self.loader, self.scope)
        env: dict = {}
        inputs = []
        seen_inputs: set = set()
        for inp in syn.inputs:
            if inp.name in seen_inputs:
                self.loader.error("E069", f"model {syn.name} has two inputs named {inp.name!r}",
                                  inp.span)
            seen_inputs.add(inp.name)
            try:
                dims = ev.shape(inp.shape, {})
            except Failure as f:
                self.loader.diags.append(f.diag)
                dims = None
            dtype = inp.dtype or "float"
            if dtype not in ("float", "int"):
                self.loader.error("E031", f"unknown input dtype {dtype!r}",
                                  inp.dtype_span or inp.span, hint="use float or int")
                dtype = "float"
            if dims is not None and "_" in dims:
                self.loader.error("E032", "input shapes cannot use the wildcard _", inp.span)
                dims = None
            bad = next((d for d in dims or () if d.is_const and d.value < 1), None)
            if bad is not None:
                self.loader.error("E068", f"input {inp.name} has the size {bad}; sizes of an "
                                  "input must be at least 1", inp.shape.span)
                dims = None
            tid = f"in_{inp.name}"
            if dims is None:
                env[inp.name] = POISON
                inputs.append(ir.Input.unknown(name=inp.name, id=tid, dtype=dtype,
                                               span=inp.span.to_json()))
                continue
            inputs.append(ir.Input(name=inp.name, id=tid, shape=[str(d) for d in dims],
                                   dtype=dtype, span=inp.span.to_json()))
            env[inp.name] = Tensor(tid)
            self.types[tid] = TensorType(dims, dtype)
            for d in dims:
                self.input_symbols |= d.symbols()
        if not syn.inputs:
            self.loader.error("E033", f"model {syn.name} has no inputs", syn.span)
        current = env[syn.inputs[0].name] if syn.inputs else POISON
        try:
            out = self.body(syn.body, env, current, "")
        except _Abort as a:
            self.loader.diags.append(a.diag)
            self.nodes, self.asserts, out = [], [], POISON
        output = out.id if isinstance(out, Tensor) else ""
        if syn.out_shape is not None and isinstance(out, Tensor):
            try:
                dims = ev.shape(syn.out_shape, {})
                self.asserts.append(ir.Assert(value=output, dims=[str(d) for d in dims],
                                              span=syn.out_shape.span.to_json(), what="output"))
            except Failure as f:
                self.loader.diags.append(f.diag)
        names = S.returned_names(syn.body) if isinstance(out, Tensor) else []
        model = ir.Model.model_construct(
            name=syn.name, file=syn.file, inputs=inputs, nodes=self.nodes, output=output,
            asserts=self.asserts, span=syn.span.to_json(), output_names=names)
        model._value_names, model._block_args = self.value_names, self.block_args
        return model

    def body(self, stmts: list[S.Stmt], env: dict, current, prefix: str):
        ev = Evaluator(self.loader, self.scope)
        result = None
        for st in stmts:
            if result is not None:
                self.loader.error("E034", "statement after return is never reached", st.span)
                break
            first = len(self.nodes)
            try:
                v = self.pipeline(st.pipeline, env, current, prefix)
                if st.more:  # return a, b
                    if st.annot is not None:
                        self.loader.error("E081", "a shape annotation needs a single value; "
                                          "annotate each returned value on a line of its own",
                                          st.annot.span)
                    vals = [v] + [self.pipeline(pl, env, current, prefix) for pl in st.more]
                    bad = next((x for x in vals if not isinstance(x, Tensor) and x is not POISON),
                               None)
                    if bad is not None:
                        self.fail("E081", f"return gives {describe(bad)}; a block or model "
                                  "returns tensors", st.span)
                    v = POISON if POISON in vals else self.node(
                        REGISTRY["pack"], {}, vals, st.span, prefix, None, {})
            except _Reported:
                v = POISON
            except Failure as f:
                self.report(f.diag)
                v = POISON
            if st.annot is not None and isinstance(v, Tensor) and not isinstance(st.target, list) \
                    and not st.more:
                try:
                    dims = ev.shape(st.annot, env)
                    self.asserts.append(ir.Assert(value=v.id, dims=[
                        d if d == "_" else str(d) for d in dims], span=st.annot.span.to_json()))
                    self.bind_symbols(st.annot, v, env)
                except Failure as f:
                    self.report(f.diag)
            if st.kind == "assign" and isinstance(st.target, list):
                v = self.unpack(st, v, env, prefix)
            elif st.kind == "assign":
                if self.bad_target(st.target, st.span):
                    pass
                else:
                    env[st.target] = v
                    self.name_values(prefix, first, v, st.target)
            current = v
            if st.kind == "return":
                result = v
        return current if result is None else result

    def bind_symbols(self, annot: S.ShapeLit, v: Tensor, env: dict) -> None:
        """``x : [_, C, H, W]``: a name the annotation binds (not a value, constant or symbol
        of the model's inputs) is the inferred dim from here on (an int when concrete), so
        that ``dense (C * 4)`` can follow."""
        new = [(i, e.name) for i, e in enumerate(annot.dims) if isinstance(e, S.Ref)
               and e.name != "_" and e.name not in env and e.name not in self.scope.consts
               and e.name not in self.input_symbols]
        if not new:
            return
        t = self.type_of(v.id)
        if not isinstance(t, TensorType) or t.rank != len(annot.dims):
            return  # the assertion reports the mismatch
        for i, name in new:
            d = t.shape[i]
            env[name] = d.value if d.is_const else d

    def type_of(self, vid: str):
        """The inferred type of a value made so far (None where inference fails: the shape
        pass reports why), inferring the nodes added since the last call."""
        types = self.types
        for node in self.nodes[self.typed:]:
            ins = [types.get(i) for i in node.inputs]
            out = None
            if all(isinstance(t, (TensorType, TupleType)) for t in ins):
                kind = REGISTRY[node.op]
                try:
                    kind.check_inputs(node.p, ins)
                    out = kind.infer(node.p, ins)
                except (ShapeError, DimTooComplex, ValueError, ArithmeticError):
                    out = None
            types[node.id] = out
        self.typed = len(self.nodes)
        return types.get(vid)

    def bad_target(self, name: str, span: Span) -> bool:
        if name in REGISTRY or name in self.scope.blocks:
            what = "layer kind" if name in REGISTRY else "block"
            self.loader.error("E035", f"cannot assign to {name!r}: it is a {what}", span,
                              hint="choose another name")
            return True
        return False

    def unpack(self, st: S.Stmt, v, env: dict, prefix: str):
        """``y, h = gru 64 state``: one ``item`` node per name; the first is the value."""
        if st.annot is not None:
            self.loader.error("E062", "a shape annotation needs a single value; annotate each "
                              "name on a line of its own", st.annot.span)
        if len(set(st.target)) != len(st.target):
            self.loader.error("E063", "the same name appears twice on the left of =", st.span)
        t = self.type_of(v.id) if isinstance(v, Tensor) else None
        if isinstance(t, TupleType) and len(t.items) != len(st.target):
            what = f" ({', '.join(t.names)})" if t.names else ""
            self.report(Failure("E063", f"this returns {len(t.items)} values{what}, but "
                                f"{len(st.target)} names are given", st.span,
                                hint="give one name per value, as Python unpacks a tuple").diag)
            v = POISON
        first = POISON
        for i, name in enumerate(st.target):
            if self.bad_target(name, st.span):
                continue
            if isinstance(v, Tensor):
                item = self.node(REGISTRY["item"], {"index": i}, [v], st.span, prefix)
            else:
                item = POISON
            env[name] = item
            if isinstance(item, Tensor):
                self.value_names.setdefault((prefix, item.id), name)
            if i == 0:
                first = item
        return first

    def name_values(self, prefix: str, first: int, v, name: str) -> None:
        """Record ``name`` for the statement's value and for the layers it made in this
        scope (nodes[first:] outside nested blocks): ``y = x | conv | relu`` in the emitted
        forward is ``y = self.conv(x)``, ``y = F.relu(y)``."""
        depth = len(self.calls)
        for node in self.nodes[first:]:
            if len(node.called_from) == depth:
                self.value_names.setdefault((prefix, node.id), name)
        if isinstance(v, Tensor):
            self.value_names.setdefault((prefix, v.id), name)

    # ---- pipelines -------------------------------------------------------------
    def pipeline(self, pl: S.Pipeline, env: dict, current, prefix: str):
        v = current
        for i, stage in enumerate(pl.stages):
            v = self.stage(stage, env, v, prefix, chained=i > 0)
        return v

    def discarded(self, span: Span):
        """A stage after `|` that takes its input from elsewhere would drop the piped value."""
        self.fail("E065", "this stage ignores the value piped into it", span,
                  hint="start a new statement for it, or drop the `|` before it")

    def stage(self, st, env: dict, inp, prefix: str, chained: bool = False):
        if isinstance(st, S.Plus):
            a = self.stage(st.left, env, inp, prefix)
            b = self.stage(st.right, env, inp, prefix)
            return self.elementwise("add", [a, b], st.span, prefix)
        if isinstance(st, S.Group):
            if st.rep is not None or st.alias is not None:
                self.fail("E036", "a parenthesised expression cannot be repeated or named",
                          st.span)
            if chained:
                self.discarded(st.span)
            return self.expr(st.expr, env, prefix)
        if isinstance(st, S.Index):
            return self.index(st, env, prefix, chained)
        if isinstance(st, S.Layer):
            bound = env.get(st.name, self.scope.consts.get(st.name))
            layer_valued = isinstance(bound, Word) and (
                bound.name in REGISTRY or bound.name in self.scope.blocks)
            reused = chained and (prefix, st.name) in self.instances
            if isinstance(bound, Word) and not layer_valued and (chained or st.args):
                self.unknown(bound.name, st.name_span, env)  # act=gelux, then | act
            if (st.name in env or st.name in self.scope.consts) and not (layer_valued or reused):
                if st.args or st.rep is not None or st.alias is not None:
                    self.fail("E037", f"{st.name!r} is a value, not a layer or block",
                              st.name_span)
                if chained:
                    self.discarded(st.span)
                if isinstance(bound, Tensor) or bound is POISON:
                    return bound
                self.fail("E038", f"{st.name!r} is {describe(bound)}, not a tensor", st.name_span)
        return self.apply(st.name, st.args, st.rep, st.alias, st.span, st.name_span,
                          env, inp, prefix, call_form=isinstance(st, S.Call), chained=chained)

    def index(self, st: S.Index, env: dict, prefix: str, chained: bool):
        """``x[:, 0]``: an index node of the named value x."""
        if st.name not in env:
            best = suggest(st.name, [k for k, v in env.items() if isinstance(v, Tensor)])
            self.fail("E048", f"unknown name {st.name!r}: only named values can be indexed",
                      st.name_span, hint=f"did you mean {best!r}?" if best else None)
        if chained:
            self.discarded(st.span)
        bound = env[st.name]
        if bound is POISON:
            return POISON
        if not isinstance(bound, Tensor):
            self.fail("E038", f"{st.name!r} is {describe(bound)}, not a tensor", st.name_span)
        ev = Evaluator(self.loader, self.scope)

        def integer(e):
            v = ev.value(e, env)
            if isinstance(v, bool) or not isinstance(v, int):
                self.fail("E046", f"an index or slice bound is an integer, got {describe(v)}",
                          e.span)
            return v

        items = []
        for it in st.items:
            if it is Ellipsis:
                items.append("...")
            elif isinstance(it, tuple):
                items.append(tuple(None if e is None else integer(e) for e in it))
            else:
                items.append(integer(it))
        return self.node(REGISTRY["index"], {"items": tuple(items)}, [bound], st.span, prefix,
                         st.alias, {})

    def apply(self, name, args, rep, alias, span, name_span, env, inp, prefix, call_form=False,
              chained=False):
        bound = env.get(name)
        if isinstance(bound, Word) and (bound.name in REGISTRY or bound.name in self.scope.blocks):
            name = bound.name  # a layer-valued block parameter: ``act=gelu``, then ``| act``
        elif name not in REGISTRY and name not in self.scope.blocks \
                and (prefix, name) in self.instances:
            return self.reuse(self.instances[(prefix, name)], args, rep, alias, span, env, inp,
                              prefix, call_form, chained)
        ev = Evaluator(self.loader, self.scope)
        values = []
        for a in args:
            v = self.expr(a.value, env, prefix) if _has_tensor_syntax(a.value) else \
                ev.value(a.value, env)
            values.append((a, v))
        inputs: list = []
        if call_form or name in self.scope.blocks:
            # leading tensor arguments are explicit inputs
            while values and values[0][0].key is None and (
                    isinstance(values[0][1], Tensor) or values[0][1] is POISON):
                inputs.append(values.pop(0)[1])
        if not inputs:
            inputs = [inp]
        elif chained:
            self.discarded(span)
        n = 1
        if rep is not None:
            n = ev.value(rep, env)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n > MAX_REPEAT:
                self.fail("E039", f"a repeat count must be an integer from 1 to {MAX_REPEAT}, "
                          f"got {describe(n)}", rep.span)
        if name in REGISTRY:
            make = self.layer
        elif name in self.scope.blocks:
            if name in self.scope.broken:
                return POISON  # its error is reported where it is defined
            make = self.block
        else:
            self.unknown(name, name_span, env, values, span)
        if any(v is POISON for v in inputs):
            # the input failed (and said so): still check this stage's own arguments, so
            # that every independent error is reported in one run
            if make == self.layer:
                self.layer_params(REGISTRY[name], name, values, span)
            return POISON
        for x in inputs:
            if not isinstance(x, Tensor):
                self.fail("E040", f"{name} needs a tensor input, got {describe(x)}", span)
        if n > 1 and len(inputs) > 1:
            self.fail("E041", "only a single-input stage can be repeated", rep.span)
        self.budget(span)
        if alias is None or self.replay is not None:
            return self.make(make, name, values, inputs, n, span, alias, prefix)
        # a named layer or block: record the names it takes, to apply it again by its name
        inst = _Instance(name, values, n, [], span, alias)
        self.instances.setdefault((prefix, alias), inst)  # a second `as` of it fails below
        self.recording.append(inst.names)
        try:
            out = self.make(make, name, values, inputs, n, span, alias, prefix)
        except BaseException:
            inst.broken = True
            raise
        finally:
            self.recording.remove(inst.names)
        inst.broken = out is POISON
        return out

    def make(self, make, name, values, inputs, n, span, alias, prefix):
        """Apply a layer kind or block (``make``) n times, the first time to ``inputs``."""
        if n == 1:
            return make(name, values, inputs, span, alias, prefix)
        scope_prefix = prefix
        if alias is not None:
            scope_prefix = self.name_for(prefix, "", alias, span) + "."
        v = inputs
        for i in range(n):
            if i:
                self.budget(span)
            sub = str(i) if alias is not None else None
            out = make(name, values, v, span, sub, scope_prefix)
            v = [out]
        return v[0]

    def reuse(self, inst: "_Instance", args, rep, alias, span, env, inp, prefix, call_form,
              chained):
        """``x2 | tower``, ``tower(x2)``, ``x | fc * 3``: the layer or block instance named
        ``tower`` applied again with the same weights. Its nodes take the names of the first
        application and are marked shared."""
        where = f"line {inst.span.line}" if inst.span.file == span.file else \
            f"{os.path.basename(inst.span.file)}:{inst.span.line}"
        inputs: list = []
        for a in args:
            v = self.expr(a.value, env, prefix) if _has_tensor_syntax(a.value) else \
                Evaluator(self.loader, self.scope).value(a.value, env)
            if call_form and a.key is None and (isinstance(v, Tensor) or v is POISON):
                inputs.append(v)
                continue
            self.fail("E080", f"the layer {'.'.join(filter(None, [prefix[:-1], inst.alias]))} "
                      f"(named at {where}) is applied again with its own arguments; "
                      "it takes only its input tensors here", a.span,
                      hint="to build another layer like it, write the layer again")
        if alias is not None:
            self.fail("E080", f"{inst.alias} names a layer already (at {where}); applying it "
                      "again gives no new name", span)
        if not inputs:
            inputs = [inp]
        elif chained:
            self.discarded(span)
        n = 1
        if rep is not None:
            n = Evaluator(self.loader, self.scope).value(rep, env)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n > MAX_REPEAT:
                self.fail("E039", f"a repeat count must be an integer from 1 to {MAX_REPEAT}, "
                          f"got {describe(n)}", rep.span)
        if inst.broken or any(v is POISON for v in inputs):
            return POISON
        for x in inputs:
            if not isinstance(x, Tensor):
                self.fail("E040", f"{inst.alias} needs a tensor input, got {describe(x)}", span)
        if n > 1 and len(inputs) > 1:
            self.fail("E041", "only a single-input stage can be repeated", rep.span)
        make = self.layer if inst.kind in REGISTRY else self.block
        v = inputs
        for _ in range(n):
            self.budget(span)
            self.replay = list(inst.names)
            try:
                out = self.make(make, inst.kind, inst.values, v, inst.n, span, inst.alias,
                                prefix)
            finally:
                self.replay = None
            v = [out]
        return v[0]

    def unknown(self, name, span, env, values=(), stage_span=None):
        if name in self.scope.models:
            self.fail("E042", f"{name!r} is a model; models cannot be used as layers", span,
                      hint=f"use a block, or check a composition with `check {name}(...)`")
        choices = list(REGISTRY) + list(self.scope.blocks) + list(env)
        best = suggest(name, choices)
        diag = Failure("E043", f"unknown layer kind {name!r}", span,
                       hint=f"did you mean {best!r}?" if best else
                       "see `nnspec layers` for the list of layer kinds").diag
        if best in REGISTRY and values:
            # check the arguments as if the suggestion had been written, so that a typo in
            # an argument of a misspelt layer is reported in the same run
            self.report(diag)
            self.layer_params(REGISTRY[best], best, values, stage_span or span)
            raise _Reported()
        raise Failure(diag.code, diag.message, diag.span, diag.notes, diag.hint)

    def layer(self, kind_name, values, inputs, span, alias, prefix):
        kind = REGISTRY[kind_name]
        inputs = list(inputs)
        p, arg_spans, extra, ties = self.layer_params(kind, kind_name, values, span,
                                                      len(inputs))
        if p is POISON:
            return POISON
        problem = kind.input_count_problem(p, len(inputs))
        if problem is not None:
            self.fail("E044", problem.replace(kind.name, kind_name, 1), span)
        inputs.extend(extra.values())
        tied = {key: self.tie(d, prefix) for key, d in ties.items()}
        return self.node(kind, p, inputs, span, prefix, alias, arg_spans, tied)

    def tie(self, d: S.Dotted, prefix: str) -> list:
        """``wte.weight`` / ``encoder.fc.weight.T`` -> [owner layer, its key, transposed]: the
        longest leading part that names a layer of this scope is the layer (a block
        instance's layers are reached through its name), the rest its state_dict key."""
        parts = list(d.parts)
        transposed = len(parts) > 2 and parts[-1] == "T"
        if transposed:
            parts = parts[:-1]
        for j in range(len(parts) - 1, 0, -1):
            owner = prefix + ".".join(parts[:j])
            if owner in self.by_name:
                return [owner, ".".join(parts[j:]), transposed]
        here = sorted({n[len(prefix):].split(".")[0] for n in self.by_name
                       if n.startswith(prefix)})
        best = suggest(parts[0], here)
        self.fail("E079", f"{'.'.join(d.parts)}: no layer named {parts[0]!r} before this "
                  "point in this scope", d.span,
                  hint=f"did you mean {best!r}?" if best else
                  "tie to a layer named earlier in the same model or block: "
                  "`embedding 50257 768 as wte` ... `dense 50257 weight=wte.weight`")

    def layer_params(self, kind, kind_name, values, span, n_inputs=1):
        """Bind and validate a layer's arguments: (Params, arg spans, tensor arguments), or
        POISON first when a tensor argument failed. Every bad argument is reported; the
        last one is raised."""
        params, arg_spans, extra, ties = self.bind_args(kind, kind_name, values, span)
        if any(x is POISON for x in extra.values()):
            return POISON, arg_spans, extra, ties
        for i, key in enumerate(extra):
            params[key] = n_inputs + i
        try:
            p = kind.Params.model_validate(params)
        except ValidationError as e:
            fails = []
            for err in e.errors()[:MAX_MODEL_ERRORS]:
                loc = str(err["loc"][0]) if err["loc"] else None
                msg = err["msg"]
                if msg.startswith("Value error, "):
                    msg = msg[len("Value error, "):]
                got = params.get(loc, None) if loc else None
                received = f" (received {loc}={_show(got)})" if loc in params else ""
                if err["type"] == "missing":
                    fails.append(Failure("E045", f"{kind_name} needs the argument {loc!r}",
                                         span, hint=_usage(kind, kind_name)))
                else:
                    fails.append(Failure("E046", f"invalid {loc} for {kind_name}: "
                                         f"{msg}{received}", arg_spans.get(loc, span)))
            self.raise_all(fails)
        return p, arg_spans, extra, ties

    def raise_all(self, fails: list) -> None:
        """Report every failure but the last, and raise the last (the statement's error)."""
        for f in fails[:-1]:
            self.report(f.diag)
        if fails:
            raise fails[-1]

    def node(self, kind, p, inputs, span, prefix, alias=None, arg_spans=None, ties=None):
        """Append an IR node (p: validated params, or a dict to validate)."""
        if isinstance(p, dict):
            p = kind.Params.model_validate(p)
        if len(self.nodes) >= MAX_NODES:
            self.budget(span)
        shared = self.replay is not None
        name = self.name_for(prefix, kind.name, alias, span)
        node = ir.Node.build(self.new_id(), kind.name, name, [x.id for x in inputs], p, span,
                             arg_spans or {}, self.text(span), reversed(self.calls), shared,
                             ties)
        self.nodes.append(node)
        self.by_name.setdefault(name, node)
        return Tensor(node.id)

    def bind_args(self, kind, kind_name, values, span):
        """Match written arguments to the kind's fields. Every bad argument is reported
        (all but the last here, the last raised), not just the first."""
        params: dict = {}
        arg_spans: dict = {}
        positional = list(kind.positional)
        flags = kind.flags()
        fields = kind.fields()
        extra: dict = {}
        ties: dict = {}
        fails: list[Failure] = []
        poisoned = False
        for a, v in values:
            if len(fails) >= MAX_MODEL_ERRORS:
                break  # the model's lowering stops at this many errors anyway
            if isinstance(v, S.Dotted):
                if a.key is None:
                    fails.append(Failure("E079", f"{'.'.join(v.parts)} is a layer's parameter: "
                                         "a tie is written key=layer.key", a.span,
                                         hint="e.g. weight=wte.weight, or weight=enc.weight.T "
                                         "for the transpose"))
                elif a.key in ties:
                    fails.append(Failure("E050", f"argument {a.key!r} given twice", a.span))
                else:
                    ties[a.key] = v
                    arg_spans[a.key] = a.span
                continue
            key = kind.synonyms.get(a.key, a.key) if a.key else None
            if v is POISON and key not in kind.tensor_args:
                poisoned = True  # the argument's own error is reported already
                continue
            if key in kind.tensor_args:
                if not (isinstance(v, Tensor) or v is POISON):
                    fails.append(Failure("E064", f"{key} takes a tensor (a named value), got "
                                         f"{describe(v)}", a.span))
                elif key in extra:
                    fails.append(Failure("E050", f"argument {key!r} given twice", a.span))
                else:
                    extra[key] = v
                    arg_spans[key] = a.span
                continue
            if isinstance(v, Tensor) or v is POISON:
                hint = (f"tensor arguments of {kind_name}: {', '.join(kind.tensor_args)}"
                        if kind.tensor_args else None)
                fails.append(Failure("E047", f"{kind_name} takes one input tensor from the "
                                     "pipeline; extra tensors are not arguments", a.span,
                                     hint=hint))
                continue
            if a.key is None:
                if isinstance(v, Word) and v.name in flags:
                    key, v = kind.synonyms.get(v.name, v.name), True
                elif positional:
                    key = positional.pop(0)
                    while key in params and positional:
                        key = positional.pop(0)
                elif isinstance(v, Word):
                    best = suggest(v.name, flags)
                    more = f"; did you mean {best!r}?" if best else ""
                    fails.append(Failure("E048", f"unknown name {v.name!r} in {kind_name}{more}",
                                         a.span, hint=_usage(kind, kind_name)))
                    continue
                else:
                    fails.append(Failure(
                        "E048", f"{kind_name} takes {len(kind.positional)} positional argument"
                        f"{'s' if len(kind.positional) != 1 else ''}, got more", a.span,
                        hint=_usage(kind, kind_name)))
                    continue
            else:
                key = kind.synonyms.get(a.key, a.key)
                if key not in fields:
                    fails.append(Failure("E049", f"unknown argument {a.key!r} for {kind_name}",
                                         a.span, hint=_arg_hint(kind, kind_name, a.key)))
                    continue
                if key in params:
                    fails.append(Failure("E050", f"argument {key!r} given twice", a.span))
                    continue
            if isinstance(v, Word):
                v = v.name  # a keyword value such as p=same; the schema validates it
            if isinstance(v, list):
                v = tuple(v)
            if isinstance(v, tuple):
                v = _words_to_names(v)  # `(7, None)`: the schema sees "None", not a Word
            params[key] = v
            arg_spans[key] = a.span
        self.raise_all(fails)
        if poisoned:
            raise _Reported()
        return params, arg_spans, extra, ties

    def block(self, name, values, inputs, span, alias, prefix):
        blk: S.Block = self.scope.blocks[name]
        chain = [b for b, _ in self.calls]
        if name in chain:
            cycle = " -> ".join(chain[chain.index(name):] + [name])
            self.fail("E067", f"block {name} calls itself ({cycle})", span,
                      hint="blocks are expanded inline, so a recursive block never ends; "
                      "repeat a stage with `* n` instead")
        if self.depth >= MAX_DEPTH:
            self.fail("E051", f"blocks nest deeper than {MAX_DEPTH} (does {name} call itself?)",
                      span)
        env: dict = {}
        params = list(blk.params)
        names = [prm.name for prm in params]
        dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if dup is not None:
            self.fail("E069", f"block {name} has two parameters named {dup!r}", blk.span)
        if not params:
            self.fail("E052", f"block {name} has no input parameter", blk.span)
        n_in = len(inputs)
        if n_in > len(params):
            self.fail("E053", f"block {name} takes {len(params)} parameters, got {n_in} inputs",
                      span)
        for prm, x in zip(params, inputs):
            env[prm.name] = x
        rest = params[n_in:]
        given: dict = {}
        pos = [p.name for p in rest]
        for a, v in values:
            if a.key is None:
                if not pos:
                    self.fail("E054", f"block {name} takes {len(params) - 1} argument"
                              f"{'s' if len(params) != 2 else ''} after its input, got more",
                              a.span)
                key = pos.pop(0)
            else:
                key = a.key
                if key not in [p.name for p in rest]:
                    best = suggest(key, [p.name for p in rest])
                    self.fail("E055", f"block {name} has no parameter {key!r}", a.span,
                              hint=f"did you mean {best!r}?" if best else None)
                if key in pos:
                    pos.remove(key)
            if key in given:
                self.fail("E050", f"argument {key!r} given twice", a.span)
            given[key] = v
        ev = Evaluator(self.loader, self.scope)
        for prm in rest:
            if prm.name in given:
                env[prm.name] = given[prm.name]
            elif prm.default is not None:
                env[prm.name] = ev.value(prm.default, env)
            else:
                self.fail("E056", f"block {name} needs the argument {prm.name!r}", span)
        inst = self.name_for(prefix, name.lower(), alias, span)
        self.block_args[inst] = self.block_args.get(inst) or (
            name, {k: v.id for k, v in env.items() if isinstance(v, Tensor)},
            {k: v for k, v in env.items() if not isinstance(v, Tensor) and v is not POISON})
        self.depth += 1
        self.calls.append((name, span))
        try:
            out = self.body(blk.body, env, inputs[0], inst + ".")
        finally:
            self.depth -= 1
            self.calls.pop()
        return out

    # ---- tensor expressions ------------------------------------------------------
    def expr(self, e, env, prefix):
        if isinstance(e, S.CallExpr) and e.name not in REGISTRY and e.name not in env \
                and e.name not in self.scope.blocks and e.name not in _inits.NAMES:
            best = suggest(e.name, _inits.NAMES)  # init=normall(0, 1): not a layer call
            if best is not None and suggest(e.name, REGISTRY) is None:
                self.fail("E073", f"unknown initialiser {e.name!r}", e.name_span,
                          hint=f"did you mean {best}(...)?")
        if isinstance(e, S.CallExpr) and not _is_initializer(e, self.scope):
            return self.apply(e.name, e.args, None, None, e.span, e.name_span, env, None,
                              prefix, call_form=True)
        if isinstance(e, S.BinOp) and _has_tensor_syntax(e):
            a = self.expr(e.left, env, prefix)
            b = self.expr(e.right, env, prefix)
            if isinstance(a, Tensor) or isinstance(b, Tensor) or POISON in (a, b):
                ops = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
                if e.op not in ops:
                    self.fail("E057", f"tensors support + - * / (element-wise), not {e.op}",
                              e.span)
                number = next((v for v in (a, b) if _is_number(v)), None)
                if number is not None and POISON not in (a, b):
                    return self.scalar_op(ops[e.op], b if number is a else a, float(number),
                                          number is a, e.span, prefix)
                return self.elementwise(ops[e.op], [a, b], e.span, prefix)
            return Evaluator(self.loader, self.scope).arith(e, a, b)
        v = Evaluator(self.loader, self.scope).value(e, env)
        return v

    def scalar_op(self, op, x, number: float, reverse: bool, span, prefix):
        """``(x * 0.5)``, ``(1 - x)``: one tensor and a number (first when ``reverse``)."""
        if not isinstance(x, Tensor):
            self.fail("E058", f"{op} needs a tensor, got {describe(x)}", span)
        kind = REGISTRY[op]
        commutes = "reverse" not in kind.Params.model_fields
        p = kind.Params(other=number) if commutes else kind.Params(other=number, reverse=reverse)
        return self.node(kind, p, [x], span, prefix, None, {})

    def elementwise(self, op, vals, span, prefix):
        if any(v is POISON for v in vals):
            return POISON
        for v in vals:
            if not isinstance(v, Tensor):
                self.fail("E058", f"{op} needs tensors, got {describe(v)}", span)
        return self.layer(op, [], vals, span, None, prefix)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_initializer(e: S.CallExpr, scope) -> bool:
    """``normal(0, 0.02)`` as an argument is an initialiser, unless a block of that name
    exists (layer kinds and initialisers have no name in common)."""
    return e.name in _inits.NAMES and e.name not in scope.blocks


def _has_tensor_syntax(e) -> bool:
    """True if the expression may produce a tensor (it contains a reference or a call)."""
    if isinstance(e, (S.Ref, S.CallExpr)):
        return True
    if isinstance(e, S.BinOp):
        return _has_tensor_syntax(e.left) or _has_tensor_syntax(e.right)
    return False


def _arg_hint(kind, kind_name: str, key: str) -> str:
    """'did you mean' for a misspelt argument, naming the field's short and long names
    (``kernal`` -> did you mean 'kernel_size' / 'k'?), then the usage line."""
    import difflib

    fields = list(kind.fields())
    found = difflib.get_close_matches(key, fields + list(kind.synonyms), n=1, cutoff=0.5)
    usage = _usage(kind, kind_name)
    if not found:
        return usage
    target = kind.synonyms.get(found[0], found[0])
    names = [found[0]] + [n for n in [target] + [s for s, f in kind.synonyms.items()
                                                 if f == target] if n != found[0]]
    names = list(dict.fromkeys(names))
    return "did you mean " + " / ".join(repr(n) for n in names) + "? " + usage


def _words_to_names(v: tuple) -> tuple:
    """A tuple argument with its bare words (at any depth) as their names."""
    return tuple(x.name if isinstance(x, Word) else _words_to_names(x)
                 if isinstance(x, tuple) else x for x in v)


def _show(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, tuple):  # as written: (3, foo), [H, 2] -> (H, 2), not reprs
        return "(" + ", ".join(_show(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return str(v)


def _usage(kind, name) -> str:
    fields = kind.fields()
    parts = []
    for f in kind.positional:
        parts.append(f"<{f}>")
    for f, info in fields.items():
        if f in kind.positional:
            continue
        # a field named after a Python keyword (global_) is written without the _
        f = f[:-1] if f.endswith("_") and kind.synonyms.get(f[:-1]) == f else f
        if info.is_required():
            parts.append(f"{f}=<{f}>")
        elif info.annotation is bool:
            parts.append(f"[{f}]")
        else:
            parts.append(f"[{f}={_show(info.default)}]")
    return f"usage: {name} " + " ".join(parts)


def lower_scope(loader: Loader, scope: FileScope, models=None) -> ir.Program:
    out = []
    local = models if models is not None else [
        m for m in scope.models.values() if m.file == scope.path]
    for m in local:
        if m.name not in scope.broken:
            out.append(ModelBuilder(loader, scope, m).build())
    checks = []
    for c in scope.__dict__.get("checks", []):
        found = _check_chain(c.expr, loader)
        if found is None:
            continue
        chain, inputs = found
        bad = [n for n in chain if n not in scope.models]
        if bad:
            best = suggest(bad[0], scope.models)
            loader.error("E060", f"unknown model {bad[0]!r} in check", c.span,
                         hint=f"did you mean {best!r}?" if best else None)
            continue
        if any(n in scope.broken for n in chain):
            continue  # a model of the chain has an error already reported
        ret: dict = {}
        if isinstance(c.returns, S.ShapeLit):
            try:
                dims = Evaluator(loader, scope).shape(c.returns, {})
            except Failure as f:
                loader.diags.append(f.diag)
                continue
            ret = {"returns": [str(d) for d in dims]}
        elif isinstance(c.returns, S.Ref):
            ret = {"returns_input": c.returns.name}
        if ret:
            ret["returns_span"] = c.returns.span.to_json()
        checks.append(ir.Check(chain=chain, inputs=inputs, span=c.span.to_json(), **ret))
    trainings = []
    for t in scope.__dict__.get("trainings", []):
        if t.model in scope.broken:
            continue  # the model's errors are reported already
        from .trainlower import lower_training

        got = lower_training(loader, scope, t, Evaluator(loader, scope))
        if got is not None:
            trainings.append(got)
    prog = ir.Program.model_construct(version=ir.IR_VERSION, models=out, checks=checks,
                                      trainings=trainings)
    # models referenced by checks but defined in used files
    names = {m.name for m in out}
    for c in checks + trainings:
        for n in (c.chain if isinstance(c, ir.Check) else [c.model]):
            if n not in names:
                syn = scope.models[n]
                prog.models.append(ModelBuilder(loader, scope, syn).build())
                names.add(n)
    return prog


def _check_chain(e, loader: Loader):
    """``check A(B(C))`` or ``check Dec(h0=Enc)``: (models outer first, input names)."""
    chain, inputs = [], []
    while isinstance(e, S.CallExpr):
        chain.append(e.name)
        if len(e.args) != 1:
            loader.error("E061", "check takes one model inside each call: check Outer(Inner) "
                         "or check Outer(input=Inner)", e.span)
            return None
        inputs.append(e.args[0].key)
        e = e.args[0].value
    if isinstance(e, S.Ref):
        chain.append(e.name)
    else:
        loader.error("E061", "check takes a composition of models: check Outer(Inner)", e.span)
        return None
    if len(chain) < 2:
        loader.error("E061", "check needs at least two models: check Outer(Inner)", e.span)
        return None
    return chain, inputs


def lower_text(text: str, path: str = "<string>", consts: dict | None = None
               ) -> tuple[ir.Program | None, Loader]:
    """Parse and lower one spec given as text; diagnostics are in ``loader.diags``.

    ``consts`` replaces the values of the spec's own ``const`` statements (constants
    computed from them follow); a name the spec does not define raises ConstError."""
    loader = Loader(consts)
    scope = loader.load_text(text, path)
    loader.check_overrides(scope)
    if scope is None:
        return None, loader
    return lower_scope(loader, scope), loader


def lower_file(path: str, consts: dict | None = None) -> tuple[ir.Program | None, Loader]:
    """Like :func:`lower_text`, from a file."""
    loader = Loader(consts)
    scope = loader.load_file(path)
    loader.check_overrides(scope)
    if scope is None:
        return None, loader
    return lower_scope(loader, scope), loader
