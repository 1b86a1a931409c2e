"""Validation of an IR program that comes from outside (a JSON file, or a Program built in
Python): the IR is an input like a spec's text, so every problem in it is a diagnostic,
never an exception in a shape rule.

Everything shape inference and the backends rely on is checked here, with the JSON path of
the value at fault (``models[0].nodes[3].inputs[1]: unknown value 'v9'``) and its line and
column in the file: the structure and the type of every field, the version, that value ids
are unique and every reference (node inputs, outputs, assertions) names a value defined
before it, that each node's kind exists and gets the number of inputs it takes, its
arguments (the kind's own pydantic schema, int64 integers, finite floats) and its tensor
arguments' indices, input shapes and annotations (dim expressions that parse, with sane
sizes), dtypes, spans, and the models named by compositions. A model with an error is left
out of the program handed to shape inference; the other models are still inferred.

Layer names are checked by :func:`nnspec.ir.names.layer_name_diagnostics`, as in a spec.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic import ValidationError

from ..core.diagnostics import Diagnostic, suggest
from ..core.dims import Dim
from ..core.limits import MAX_INT, MAX_NESTING, MAX_NODES, first_too_deep, line_col
from ..core.source import Span
from ..layers import REGISTRY
from . import model as ir

#: JSON nesting the IR may have (it needs about eight levels: a per-side pad tuple).
MAX_JSON_DEPTH = 32
#: Characters of one dim expression (an input size, an annotation, a reshape target).
MAX_DIM_TEXT = 1000

_DTYPES = ("float", "int")
_WHAT = ("annotation", "output")
_LONG_INT = re.compile(r"\d{20,}")
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+', re.S)


class IRError(ValueError):
    """An IR program that does not validate; ``diagnostics`` says where and why."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        first = diagnostics[0].message if diagnostics else "invalid IR"
        n = len(diagnostics) - 1
        more = f" (and {n} more error{'s' if n != 1 else ''})" if n > 0 else ""
        super().__init__(first + more)


def validate(data: Any, path: str = "<ir>") -> tuple[ir.Program, list[Diagnostic]]:
    """(the program's valid models and checks, diagnostics) for IR given as JSON text,
    bytes, already decoded JSON, or an :class:`ir.Program`."""
    text = None
    if isinstance(data, ir.Program):
        try:
            data = data.model_dump(mode="json")
        except Exception as e:  # a Program built with model_construct may hold anything
            return ir.Program(), [Diagnostic("E201", f"the IR program cannot be read: "
                                             f"{_first_line(e)}", Span(path, 1, 1, 1, 2))]
    elif isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            return ir.Program(), [Diagnostic("E200", f"the IR is not UTF-8 text (byte "
                                             f"{e.start})", Span(path, 1, 1, 1, 2))]
    if isinstance(data, str):
        text = data
        data, diag = _decode(text, path)
        if diag is not None:
            return ir.Program(), [diag]
    v = _Validator(path, text)
    prog = v.program(data)
    return prog, v.diagnostics()


def load(text: str, path: str = "<ir>") -> ir.Program:
    """The program of a JSON IR text; :class:`IRError` if anything in it is invalid."""
    prog, diags = validate(text, path)
    if diags:
        raise IRError(diags)
    return prog


# ---- JSON text -------------------------------------------------------------------------------


def _decode(text: str, path: str) -> tuple[Any, Diagnostic | None]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return None, Diagnostic("E200", f"not valid JSON: {e.msg}",
                                Span(path, e.lineno, e.colno, e.lineno, e.colno + 1))
    except RecursionError:
        line, col = _deep_position(text)
        return None, Diagnostic("E200", f"the JSON nests more than {MAX_JSON_DEPTH} levels "
                                "deep", Span(path, line, col, line, col + 1))
    except ValueError as e:  # an integer longer than Python's int-string limit
        m = _LONG_INT.search(text)
        line, col = _line_col(text, m.start()) if m else (1, 1)
        what = "an integer too large for int64" if m else _first_line(e)
        return None, Diagnostic("E200", f"not valid JSON: {what}", Span(path, line, col, line,
                                                                        col + 1))
    if _too_deep(data):
        line, col = _deep_position(text)
        return None, Diagnostic("E200", f"the JSON nests more than {MAX_JSON_DEPTH} levels "
                                "deep", Span(path, line, col, line, col + 1))
    return data, None


def _too_deep(data) -> bool:
    stack = [(data, 1)]
    while stack:
        x, d = stack.pop()
        if d > MAX_JSON_DEPTH:
            return True
        if isinstance(x, dict):
            stack.extend((y, d + 1) for y in x.values())
        elif isinstance(x, list):
            stack.extend((y, d + 1) for y in x)
    return False


def _deep_position(text: str) -> tuple[int, int]:
    at = first_too_deep(_JSON_TOKEN, text, "[{", "]}", MAX_JSON_DEPTH)
    return (1, 1) if at is None else _line_col(text, at)


_line_col = line_col


def _positions(text: str, wanted: set[tuple]) -> dict[tuple, tuple[int, int]]:
    """(offset, length) in the JSON text of the values (or object keys) at the given paths.

    An object member is located at its key; an array element at its value. The text is
    known to be valid JSON, so a token scan with a stack of open containers is enough.
    """
    out: dict[tuple, tuple[int, int]] = {}
    if () in wanted:
        m = _JSON_TOKEN.search(text)
        out[()] = (m.start(), len(m.group())) if m else (0, 1)
    frames: list[list] = []  # [is object, current key or index, expecting a key]
    for m in _JSON_TOKEN.finditer(text):
        if len(out) == len(wanted):
            break
        tok = m.group()
        c = tok[0]
        if c == ",":
            top = frames[-1]
            if top[0]:
                top[2] = True
            else:
                top[1] += 1
            continue
        if c == ":":
            frames[-1][2] = False
            continue
        if c in "]}":
            frames.pop()
            continue
        if frames:
            top = frames[-1]
            if top[0] and top[2]:  # an object key
                try:
                    top[1] = json.loads(tok)
                except ValueError:
                    top[1] = None
                where: tuple | None = tuple(f[1] for f in frames)
            elif not top[0]:
                where = tuple(f[1] for f in frames)
            else:
                where = None
            if where is not None and where in wanted and where not in out:
                out[where] = (m.start(), len(tok))
        if c in "[{":
            frames.append([c == "{", None if c == "{" else 0, True])
    return out


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


# ---- the validator ---------------------------------------------------------------------------

_BAD = object()  # a field that is missing or of the wrong type (already reported)


def _type_name(x) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, int):
        return "an integer"
    if isinstance(x, float):
        return "a number"
    if isinstance(x, str):
        return "a string"
    if isinstance(x, list):
        return "a list"
    if isinstance(x, dict):
        return "an object"
    return type(x).__name__


_KINDS = {str: "a string", int: "an integer", list: "a list", dict: "an object",
          bool: "a boolean"}


def _is(x, t) -> bool:
    if t is int:
        return isinstance(x, int) and not isinstance(x, bool)
    return isinstance(x, t)


def show_path(path: tuple) -> str:
    """``models[0].nodes[3].inputs[1]``."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "the IR"


class _Validator:
    def __init__(self, path: str, text: str | None):
        self.path = path
        self.text = text
        self.errors: list[tuple[tuple, str, str, str | None]] = []

    # ---- reporting ---------------------------------------------------------------------

    def err(self, where: tuple, code: str, message: str, hint: str | None = None) -> None:
        self.errors.append((where, code, message, hint))

    def diagnostics(self) -> list[Diagnostic]:
        found: dict[tuple, tuple[int, int]] = {}
        if self.text is not None and self.errors:
            wanted = {w[:i] for w, *_ in self.errors for i in range(len(w) + 1)}
            found = _positions(self.text, wanted)
        out = []
        for where, code, message, hint in self.errors:
            span = Span(self.path, 1, 1, 1, 2)
            for i in range(len(where), -1, -1):  # the value, or the nearest thing holding it
                if where[:i] in found:
                    offset, length = found[where[:i]]
                    line, col = _line_col(self.text, offset)
                    span = Span(self.path, line, col, line, col + max(1, length))
                    break
            out.append(Diagnostic(code, f"{show_path(where)}: {message}", span, hint=hint))
        return out

    # ---- fields ------------------------------------------------------------------------

    def fields(self, obj, where: tuple, required: tuple, optional: tuple) -> bool:
        """obj is an object with the required keys and no others."""
        if not isinstance(obj, dict):
            self.err(where, "E201", f"must be an object, got {_type_name(obj)}")
            return False
        ok = True
        for k in required:
            if k not in obj:
                self.err(where, "E202", f"missing field {k!r}")
                ok = False
        known = required + optional
        for k in obj:
            if k not in known:
                best = suggest(str(k), known)
                self.err(where + (k,), "E203", f"unknown field {k!r}",
                         f"did you mean {best!r}?" if best else f"the fields are "
                         f"{', '.join(known)}")
                ok = False
        return ok

    def get(self, obj: dict, key: str, where: tuple, t, default=_BAD):
        if key not in obj:
            return default
        x = obj[key]
        if not _is(x, t):
            self.err(where + (key,), "E201", f"must be {_KINDS[t]}, got {_type_name(x)}")
            return _BAD
        if t is int and abs(x) > MAX_INT:
            self.err(where + (key,), "E201", "integer beyond int64")
            return _BAD
        return x

    def strings(self, obj: dict, key: str, where: tuple, default=_BAD, nullable=False):
        xs = self.get(obj, key, where, list, default)
        if xs is _BAD or xs is default:
            return xs
        ok = True
        for i, x in enumerate(xs):
            if not (isinstance(x, str) or (nullable and x is None)):
                want = "a string or null" if nullable else "a string"
                self.err(where + (key, i), "E201", f"must be {want}, got {_type_name(x)}")
                ok = False
        return xs if ok else _BAD

    def span(self, x, where: tuple, empty_ok: bool = True) -> bool:
        if isinstance(x, list) and not x and empty_ok:
            return True
        if (isinstance(x, list) and len(x) == 5 and isinstance(x[0], str)
                and all(_is(v, int) and 0 <= v <= MAX_INT for v in x[1:])):
            return True
        self.err(where, "E214", "a span is [file, line, column, end line, end column]"
                 + (" or []" if empty_ok else "") + f", got {_short(x)}")
        return False

    def opt_span(self, obj: dict, where: tuple) -> bool:
        return "span" not in obj or self.span(obj["span"], where + ("span",))

    def dim_text(self, s: str, where: tuple, wildcard: bool, size: bool) -> bool:
        """s parses as a dim expression within the limits (size: a declared input size,
        whose constant must be >= 0)."""
        if s == "_":
            if wildcard:
                return True
            self.err(where, "E212", "an input shape cannot use the wildcard _")
            return False
        problem = _dim_problem(s)
        if problem is None:
            try:
                d = Dim.parse(s)
            except (ValueError, TypeError, ArithmeticError, RecursionError) as e:
                problem = _first_line(e)
            else:
                if d.max_abs_coeff() > MAX_INT:
                    problem = "a number in it is beyond int64"
                elif size and d.is_const and d.value < 0:
                    problem = f"a size must be >= 0, got {d.value}"
        if problem is not None:
            self.err(where, "E212", f"invalid dimension {_short(s)}: {problem}")
            return False
        return True

    def dims(self, obj: dict, key: str, where: tuple, wildcard: bool, size: bool) -> bool:
        xs = self.strings(obj, key, where)
        if xs is _BAD:
            return False
        ok = True
        for i, s in enumerate(xs):
            ok &= self.dim_text(s, where + (key, i), wildcard, size)
        return ok

    # ---- program -----------------------------------------------------------------------

    def program(self, data) -> ir.Program:
        if not self.fields(data, (), (), ("version", "models", "checks", "trainings")):
            if not isinstance(data, dict):
                return ir.Program()
        version = self.get(data, "version", (), int, ir.IR_VERSION)
        if version is not _BAD and version != ir.IR_VERSION:
            self.err(("version",), "E204", f"IR version {version} is not supported (this "
                     f"nnspec reads version {ir.IR_VERSION})",
                     "write the IR again with this nnspec: nnspec compile spec.nn -o x.json")
        if version is _BAD or version != ir.IR_VERSION:
            return ir.Program()
        models = self.get(data, "models", (), list, [])
        checks = self.get(data, "checks", (), list, [])
        good: list[ir.Model] = []
        all_names: set[str] = set()
        broken: set[str] = set()
        for i, m in enumerate(models if models is not _BAD else []):
            before = len(self.errors)
            name = m.get("name") if isinstance(m, dict) else None
            model = self.model(m, ("models", i))
            if isinstance(name, str):
                if name in all_names:
                    self.err(("models", i, "name"), "E215", f"a model named {name!r} is "
                             "already defined")
                    broken.add(name)
                all_names.add(name)
            if model is not None and len(self.errors) == before:
                good.append(model)
            elif isinstance(name, str):
                broken.add(name)
        good = [m for m in good if m.name not in broken]
        ok_checks = []
        for j, c in enumerate(checks if checks is not _BAD else []):
            check = self.check(c, ("checks", j), all_names, broken)
            if check is not None:
                ok_checks.append(check)
        ok_trainings = []
        trainings = self.get(data, "trainings", (), list, [])
        for j, t in enumerate(trainings if trainings is not _BAD else []):
            got = self.training(t, ("trainings", j), all_names, broken)
            if got is not None:
                ok_trainings.append(got)
        return ir.Program(version=ir.IR_VERSION, models=good, checks=ok_checks,
                          trainings=ok_trainings)

    def training(self, t, where: tuple, names: set, broken: set) -> ir.Training | None:
        """A train section: its model exists, its targets' shapes parse, each loss is known
        with valid parameters, and the settings fit nnspec.ir.training's schemas."""
        from ..layers.losses import LOSSES
        from . import training as T

        before = len(self.errors)
        if not isinstance(t, dict):
            self.err(where, "E201", f"must be an object, got {_type_name(t)}")
            return None
        try:
            got = ir.Training.model_validate(t)
        except ValidationError as e:
            self.pydantic_errors(e, where)
            return None
        if got.model not in names:
            self.err(where + ("model",), "E216", f"unknown model {_short(got.model)}")
        self.opt_span(t, where)
        for key in ("targets", "terms"):  # every span a diagnostic may point at
            for i, x in enumerate(t.get(key, [])):
                self.opt_span(x, where + (key, i))
        for i, tg in enumerate(t.get("targets", [])):
            self.dims(tg, "shape", where + ("targets", i), wildcard=False, size=True)
        for i, term in enumerate(got.terms):
            at = where + ("terms", i)
            kind = LOSSES.get(term.loss)
            if kind is None:
                self.err(at + ("loss",), "E216", f"unknown loss {_short(term.loss)}")
                continue
            if len(term.args) != kind.arity:
                self.err(at + ("args",), "E216", f"{kind.name} takes {kind.arity} tensors, "
                         f"got {len(term.args)}")
            try:
                kind.Params.model_validate(term.params)
            except ValidationError as e:
                self.pydantic_errors(e, at + ("params",))
        checks = []
        if got.optimizer is not None:
            if got.optimizer not in T.OPTIMIZERS:
                self.err(where + ("optimizer",), "E216",
                         f"unknown optimizer {_short(got.optimizer)}")
            else:
                checks.append((T.OPTIMIZERS[got.optimizer], got.optimizer_params,
                               "optimizer_params", None))
        if got.clip is not None:
            checks.append((T.Clip, got.clip, "clip", T.check_clip))
        if got.schedule is not None:
            checks.append((T.Schedule, got.schedule, "schedule", T.check_schedule))
        for schema, value, key, rule in checks:
            try:
                p = schema.model_validate(value)
            except ValidationError as e:
                self.pydantic_errors(e, where + (key,))
                continue
            problem = rule(p) if rule else None
            if problem:
                self.err(where + (key,), "E216", problem)
        if len(self.errors) != before or got.model in broken:
            return None
        return got

    def model(self, m, where: tuple) -> ir.Model | None:
        before = len(self.errors)
        if not self.fields(m, where, ("name", "inputs", "nodes", "output"),
                           ("file", "asserts", "span", "output_names")):
            if not isinstance(m, dict):
                return None
        name = self.get(m, "name", where, str)
        if name is not _BAD and not name:
            self.err(where + ("name",), "E201", "a model name cannot be empty")
        self.get(m, "file", where, str, "")
        self.opt_span(m, where)
        names = self.get(m, "output_names", where, list, [])
        for i, n in enumerate(names if names is not _BAD else ()):
            if not isinstance(n, str):
                self.err(where + ("output_names", i), "E201",
                         f"must be a string, got {_type_name(n)}")
        defined: dict[str, tuple] = {}  # value id -> where it is defined

        def define(vid, at: tuple) -> None:
            if vid in defined:
                self.err(at, "E205", f"the value id {vid!r} is already defined at "
                         f"{show_path(defined[vid])}")
            else:
                defined[vid] = at[:-1]

        inputs = self.get(m, "inputs", where, list)
        for i, inp in enumerate(inputs if inputs is not _BAD else []):
            at = where + ("inputs", i)
            if not self.fields(inp, at, ("name", "id", "shape"), ("dtype", "span")):
                if not isinstance(inp, dict):
                    continue
            self.get(inp, "name", at, str)
            dtype = self.get(inp, "dtype", at, str, "float")
            if dtype is not _BAD and dtype not in _DTYPES:
                self.err(at + ("dtype",), "E213", f"unknown dtype {dtype!r}", "use float or int")
            self.dims(inp, "shape", at, wildcard=False, size=True)
            self.opt_span(inp, at)
            vid = self.get(inp, "id", at, str)
            if vid is not _BAD:
                define(vid, at + ("id",))
        if inputs is not _BAD and not inputs:
            self.err(where + ("inputs",), "E201", "a model needs at least one input")

        nodes = self.get(m, "nodes", where, list)
        if nodes is not _BAD and len(nodes) > MAX_NODES:
            self.err(where + ("nodes",), "E219", f"{len(nodes):,} layers, more than the "
                     f"{MAX_NODES:,} nnspec builds per model")
            nodes = _BAD
        later = {}
        for k, n in enumerate(nodes if nodes is not _BAD else []):
            if isinstance(n, dict) and isinstance(n.get("id"), str):
                later.setdefault(n["id"], k)
        for k, n in enumerate(nodes if nodes is not _BAD else []):
            self.node(n, where + ("nodes", k), defined, later, define)

        out = self.get(m, "output", where, str)
        if out is not _BAD and out not in defined:
            self.err(where + ("output",), "E206", f"the output is an unknown value {out!r}")
        asserts = self.get(m, "asserts", where, list, [])
        for j, a in enumerate(asserts if asserts is not _BAD else []):
            at = where + ("asserts", j)
            if not self.fields(a, at, ("value", "dims"), ("span", "what")):
                if not isinstance(a, dict):
                    continue
            value = self.get(a, "value", at, str)
            if value is not _BAD and value not in defined:
                self.err(at + ("value",), "E206", f"unknown value {value!r}")
            what = self.get(a, "what", at, str, "annotation")
            if what is not _BAD and what not in _WHAT:
                self.err(at + ("what",), "E201", f"must be one of {', '.join(_WHAT)}, got "
                         f"{_short(what)}")
            self.dims(a, "dims", at, wildcard=True, size=False)
            self.opt_span(a, at)
        if len(self.errors) != before:
            return None
        try:
            return ir.Model.model_validate(m)
        except (ValidationError, ValueError, TypeError, RecursionError) as e:
            self.pydantic_errors(e, where)  # a gap in the checks above: still a diagnostic
            return None

    def node(self, n, where: tuple, defined: dict, later: dict, define) -> None:
        if not self.fields(n, where, ("id", "op", "name", "inputs"),
                           ("params", "span", "arg_spans", "text", "called_from", "shared",
                            "ties")):
            if not isinstance(n, dict):
                return
        self.get(n, "name", where, str)
        self.get(n, "text", where, str, "")
        self.opt_span(n, where)
        arg_spans = self.get(n, "arg_spans", where, dict, {})
        if arg_spans is not _BAD:
            for k, s in arg_spans.items():
                self.span(s, where + ("arg_spans", k), empty_ok=False)
        calls = self.get(n, "called_from", where, list, [])
        for j, c in enumerate(calls if calls is not _BAD else []):
            if not (isinstance(c, list) and len(c) == 6 and isinstance(c[0], str)):
                self.err(where + ("called_from", j), "E214", "a block call is [block name, "
                         f"file, line, column, end line, end column], got {_short(c)}")
            else:
                self.span(c[1:], where + ("called_from", j), empty_ok=False)

        self.get(n, "shared", where, bool, False)
        ties = self.get(n, "ties", where, dict, {})
        for k, t in (ties.items() if ties is not _BAD else ()):
            if not (isinstance(t, list) and len(t) == 3 and isinstance(t[0], str)
                    and isinstance(t[1], str) and isinstance(t[2], bool)):
                self.err(where + ("ties", k), "E201", "a tie is [owner layer name, owner "
                         f"state_dict key, transposed], got {_short(t)}")
        inputs = self.strings(n, "inputs", where)
        if inputs is not _BAD:
            for i, vid in enumerate(inputs):
                if vid in defined:
                    continue
                if vid in later:
                    self.err(where + ("inputs", i), "E207", f"the value {vid!r} is used before "
                             f"it is defined (at nodes[{later[vid]}])",
                             "nodes are in order: each uses the model's inputs or earlier nodes")
                else:
                    self.err(where + ("inputs", i), "E206", f"unknown value {vid!r}")
        vid = self.get(n, "id", where, str)
        if vid is not _BAD:
            define(vid, where + ("id",))

        op = self.get(n, "op", where, str)
        if op is _BAD:
            return
        kind = REGISTRY.get(op)
        if kind is None:
            best = suggest(op, REGISTRY)
            self.err(where + ("op",), "E208", f"unknown layer kind {_short(op)}",
                     f"did you mean {best!r}?" if best else "nnspec layers lists the kinds")
            return
        params = self.get(n, "params", where, dict, {})
        p = None
        if params is not _BAD and self.param_values(params, where + ("params",)):
            try:
                p = kind.Params.model_validate(params)
            except ValidationError as e:
                for er in e.errors():
                    loc = where + ("params",) + tuple(er["loc"])
                    msg = er["msg"]
                    if msg.startswith("Value error, "):
                        msg = msg[len("Value error, "):]
                    if er["type"] == "missing":
                        self.err(where + ("params",), "E210", f"{op} needs the argument "
                                 f"{er['loc'][0]!r}" if er["loc"] else f"{op}: {msg}")
                    elif er["type"] == "extra_forbidden":
                        self.err(loc, "E210", f"unknown argument {er['loc'][0]!r} for {op}")
                    else:
                        self.err(loc, "E210", f"invalid argument for {op}: {_lower(msg)}")
            except (ValueError, TypeError, RecursionError) as e:
                self.err(where + ("params",), "E210", f"invalid arguments for {op}: "
                         f"{_first_line(e)}")
        if inputs is not _BAD:
            self.arity(kind, op, p, inputs, where)

    def param_values(self, params: dict, where: tuple) -> bool:
        """Integers int64, floats finite, strings short enough to parse as dims."""
        ok = True
        stack = [(v, where + (k,)) for k, v in params.items()]
        while stack:
            x, at = stack.pop()
            if isinstance(x, list):
                stack.extend((y, at + (i,)) for i, y in enumerate(x))
            elif isinstance(x, dict):
                stack.extend((y, at + (k,)) for k, y in x.items())
            elif isinstance(x, bool):
                continue
            elif isinstance(x, int) and abs(x) > MAX_INT:
                self.err(at, "E210", "integer beyond int64",
                         "sizes and counts are int64 (at most 9,223,372,036,854,775,807)")
                ok = False
            elif isinstance(x, float) and not math.isfinite(x):
                self.err(at, "E210", f"must be a finite number, not {x}")
                ok = False
            elif isinstance(x, str):
                problem = _dim_problem(x)
                if problem is not None:
                    self.err(at, "E210", f"invalid argument {_short(x)}: {problem}")
                    ok = False
        return ok

    def arity(self, kind, op: str, p, inputs: list, where: tuple) -> None:
        """len(inputs) is the kind's arity plus one per tensor argument given, and the
        tensor arguments point at those extra inputs (as lowering lays them out)."""
        targs = [(a, getattr(p, a)) for a in kind.tensor_args
                 if p is not None and getattr(p, a, None) is not None]
        n = len(inputs)
        n_pos = n - len(targs)
        with_args = (f" plus one per tensor argument ({', '.join(a for a, _ in targs)})"
                     if targs else "")
        if kind.arity is None:
            if n_pos < 2:
                self.err(where + ("inputs",), "E209", f"{op} takes two or more input tensors"
                         f"{with_args}, got {n} input{'s' if n != 1 else ''}")
                return
        elif n_pos != kind.arity:
            self.err(where + ("inputs",), "E209", f"{op} takes {kind.arity} input tensor"
                     f"{'s' if kind.arity != 1 else ''}{with_args}, got {n} input"
                     f"{'s' if n != 1 else ''}")
            return
        seen: dict[int, str] = {}
        for a, i in targs:
            if not _is(i, int) or not n_pos <= i < n:
                rng = str(n_pos) if n - n_pos == 1 else f"{n_pos} to {n - 1}"
                self.err(where + ("params", a), "E211", f"the tensor argument {a} is input "
                         f"{_short(i)}, but its input is the extra one at index {rng}")
            elif i in seen:
                self.err(where + ("params", a), "E211", f"the tensor arguments {seen[i]} and "
                         f"{a} are both input {i}")
            else:
                seen[i] = a

    def check(self, c, where: tuple, names: set, broken: set) -> ir.Check | None:
        before = len(self.errors)
        if not self.fields(c, where, ("chain",), ("inputs", "span", "returns",
                                                  "returns_input", "returns_span")):
            if not isinstance(c, dict):
                return None
        chain = self.strings(c, "chain", where)
        inputs = self.strings(c, "inputs", where, default=[], nullable=True)
        self.opt_span(c, where)
        if c.get("returns") is not None:
            self.dims(c, "returns", where, wildcard=True, size=False)
        if c.get("returns_input") is not None:
            self.get(c, "returns_input", where, str)
        if "returns_span" in c:
            self.span(c["returns_span"], where + ("returns_span",))
        if c.get("returns") is not None and c.get("returns_input") is not None:
            self.err(where + ("returns_input",), "E216", "a check's contract is a shape "
                     "(returns) or an input's type (returns_input), not both")
        if chain is not _BAD:
            if len(chain) < 2:
                self.err(where + ("chain",), "E216", "a composition check names two or more "
                         f"models, got {len(chain)}")
            for i, name in enumerate(chain):
                if name not in names:
                    best = suggest(name, names)
                    self.err(where + ("chain", i), "E216", f"unknown model {_short(name)}",
                             f"did you mean {best!r}?" if best else None)
            if inputs is not _BAD and inputs and len(inputs) != len(chain) - 1:
                self.err(where + ("inputs",), "E216", f"{len(inputs)} input name"
                         f"{'s' if len(inputs) != 1 else ''} for a chain "
                         f"of {len(chain)} models (one per model but the innermost, or [])")
        if len(self.errors) != before or any(name in broken for name in chain):
            return None
        return ir.Check.model_validate(c)

    def pydantic_errors(self, e: BaseException, where: tuple) -> None:
        if isinstance(e, ValidationError):
            for er in e.errors():
                self.err(where + tuple(er["loc"]), "E201", _lower(er["msg"]))
        else:
            self.err(where, "E201", _first_line(e))


def _dim_problem(s: str) -> str | None:
    """Why the text is not worth parsing as a dim expression, or None."""
    if len(s) > MAX_DIM_TEXT:
        return f"longer than {MAX_DIM_TEXT} characters"
    if _LONG_INT.search(s):
        return "a number in it is beyond int64"
    depth = top = 0
    for ch in s:
        if ch == "(":
            depth += 1
            top = max(top, depth)
        elif ch == ")":
            depth -= 1
    if top > MAX_NESTING:
        return f"nested more than {MAX_NESTING} levels deep"
    return None


def _short(x, limit: int = 60) -> str:
    """repr(x), cut to about limit characters (a string keeps its closing quote)."""
    s = repr(x)
    if len(s) <= limit:
        return s
    return s[:limit - 4] + "..." + (s[0] if isinstance(x, str) else "")


def _lower(msg: str) -> str:
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if len(msg) > 1 and msg[1].isupper():  # an acronym
        return msg
    return msg[:1].lower() + msg[1:]
