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

This module is the public face (:func:`validate`, :func:`load`, :class:`IRError`) and
checks the program as a whole: its version, its models, composition checks and train
sections. Below it: one model's checks (:mod:`.validate_models`), the validator's
reporting and field checks (:mod:`.validate_fields`) and the JSON text
(:mod:`.json_text`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..core.diagnostics import Diagnostic, suggest
from ..core.source import Span
from . import model as ir

# MAX_JSON_DEPTH, MAX_DIM_TEXT and show_path: public here, as before the validator was split
from .json_text import MAX_JSON_DEPTH, _decode, _first_line  # noqa: F401
from .validate_fields import _BAD, MAX_DIM_TEXT, _short, _type_name, show_path  # noqa: F401
from .validate_models import _ModelChecks


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


class _Validator(_ModelChecks):
    """The checks of a whole program: its models, composition checks and train sections."""

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
