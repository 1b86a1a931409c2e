"""The IR validator's checks of one model: its inputs, nodes, output and assertions.

:class:`_ModelChecks` checks a model's inputs (names, dtypes, sizes), that value ids are
unique and every reference names a value defined before it, and each node: its kind
exists, its arguments validate against the kind's pydantic schema (int64 integers,
finite floats, :meth:`_ModelChecks.param_values`) and it gets the number of inputs it
takes, tensor arguments included (:meth:`_ModelChecks.arity`).
"""

from __future__ import annotations

import math

from pydantic import ValidationError

from ..core.diagnostics import misspelt
from ..core.limits import MAX_INT, MAX_NODES
from ..layers import REGISTRY, LayerKind
from ..layers.activation import NOT_MISSPELT
from . import model as ir
from .json_text import _first_line
from .validate_fields import (
    _BAD,
    _dim_problem,
    _FieldChecks,
    _is,
    _lower,
    _short,
    _type_name,
    show_path,
)

_DTYPES = ("float", "int")
_WHAT = ("annotation", "output")


class _ModelChecks(_FieldChecks):
    """The checks of one model and its nodes."""

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
            best = misspelt(op, REGISTRY, NOT_MISSPELT)
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
        own = type(kind).input_count_problem is not LayerKind.input_count_problem
        if p is not None and own:  # the kind's own rule: `(x * 0.5)` is mul of one tensor
            problem = kind.input_count_problem(p, n_pos)
            if problem is not None:
                self.err(where + ("inputs",), "E209", f"{op}: {problem}{with_args}")
                return
        elif kind.arity is None:
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
