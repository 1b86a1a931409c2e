"""A checked program: the IR with its inferred types and diagnostics (:class:`Spec`),
the per-layer rows every tool reads (weights, parameter counts, MACs), and
:func:`from_ir`, which checks an IR program that comes from outside (JSON, or a Program
built in Python) as a front end's output is checked.

The back ends and tools take a Spec; the front ends make one (see :func:`nnspec.load`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..core.diagnostics import ConstError, Diagnostic, SpecError
from ..core.record import Record
from ..core.dims import Dim
from ..core.source import Source
from ..core.util import gc_paused
from ..layers import REGISTRY, TensorType
from ..layers.base import W
from . import model as ir
from .names import layer_name_diagnostics
from .shapes import ModelTypes, infer_program

if TYPE_CHECKING:
    from .summary import ModelSummary

_NEW: Any = object()  # a field's default: a new empty dict or list


@dataclass(init=False, repr=False, eq=False)
class LayerInfo(Record):
    """One row of a summary: a node with its inferred output and costs. (A record class,
    see core/record.py.)"""

    node: ir.Node
    inputs: list[TensorType]
    output: TensorType
    weights: dict[str, W]
    params: int
    macs: Dim

    def __init__(self, node: ir.Node, inputs: list[TensorType], output: TensorType,
                 weights: dict[str, W], params: int, macs: Dim):
        self.node = node
        self.inputs = inputs
        self.output = output
        self.weights = weights
        self.params = params
        self.macs = macs

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def kind(self) -> str:
        return self.node.op


@dataclass(init=False, repr=False, eq=False)
class Spec(Record):
    """A loaded spec: its IR, the inferred types and any diagnostics. (A record class, see
    core/record.py.)"""

    program: ir.Program | None
    results: dict[str, ModelTypes] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, Source] = field(default_factory=dict)
    _rows: dict = field(default_factory=dict, repr=False, compare=False)
    # what may be a mistake but is no error (W001: a value never used); never raised
    warnings: list[Diagnostic] = field(default_factory=list)

    def __init__(self, program: ir.Program | None, results: dict[str, ModelTypes] = _NEW,
                 diagnostics: list[Diagnostic] = _NEW, sources: dict[str, Source] = _NEW,
                 _rows: dict = _NEW, warnings: list[Diagnostic] = _NEW):
        self.program = program
        self.results = {} if results is _NEW else results
        self.diagnostics = [] if diagnostics is _NEW else diagnostics
        self.sources = {} if sources is _NEW else sources
        self._rows = {} if _rows is _NEW else _rows
        self.warnings = [] if warnings is _NEW else warnings

    @property
    def ok(self) -> bool:
        return not self.diagnostics

    def raise_for_errors(self) -> "Spec":
        if self.diagnostics:
            raise SpecError(self.diagnostics, self.sources)
        return self

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.program.models] if self.program else []

    def model(self, name: str | None = None) -> ir.Model:
        """The named model, or the only/last model of the file when name is None."""
        if self.program is None or not self.program.models:
            raise KeyError("the spec has no models")
        if name is None:
            local = [m for m in self.program.models]
            return local[-1]
        return self.program.model(name)

    def types(self, name: str | None = None) -> ModelTypes:
        return self.results[self.model(name).name]

    def output_type(self, name: str | None = None) -> TensorType | None:
        return self.types(name).output()

    def layers(self, name: str | None = None) -> list[LayerInfo]:
        """Per-layer output shape, weights, parameter count and MACs (analytic)."""
        m = self.model(name)
        rows = self._rows.get(m.name)
        if rows is None:
            rows = self._rows[m.name] = self._layer_rows(m)
        return list(rows)

    def _layer_rows(self, m: ir.Model) -> list[LayerInfo]:
        types = self.results[m.name].types
        rows = []
        for node in m.nodes:
            ins = [types.get(i) for i in node.inputs]
            out = types.get(node.id)
            if out is None or any(t is None for t in ins):
                continue
            kind = REGISTRY[node.op]
            ws = {} if node.shared else kind.state(node.p, ins, out)  # a layer applied again
            if node.ties:
                ws = _tied(ws, node.ties)
            count = 0
            for w in ws.values():
                if w.trainable and not w.tied:
                    n = 1
                    for s in w.shape:
                        n *= s
                    count += n
            macs = kind.macs(node.p, ins, out)
            rows.append(LayerInfo(node, ins, out, ws, count,
                                  macs if isinstance(macs, Dim) else Dim.const(macs)))
        return rows

    def param_count(self, name: str | None = None) -> int:
        return sum(r.params for r in self.layers(name))

    def macs(self, name: str | None = None) -> Dim:
        total = Dim.const(0)
        for r in self.layers(name):
            total = total + r.macs
        return total

    def summary(self, name: str | None = None, dtype: str = "float32",
                depth: int | None = None, dims: dict[str, int] | None = None
                ) -> "ModelSummary":
        """The summary of a model: rows (folded to ``depth`` dotted name parts if given),
        parameter and buffer totals, weight and per-sample activation bytes in ``dtype``
        (see :class:`ModelSummary`)."""
        from .summary import summarise

        return summarise(self, name, dtype, depth, dims)

    def state_shapes(self, name: str | None = None) -> dict[str, W]:
        """Every state_dict entry of the model: key -> W (shape, init, trainable)."""
        out = {}
        for r in self.layers(name):
            for k, w in r.weights.items():
                # key "": the layer is a parameter itself (``param``), keyed by its name
                out[f"{r.name}.{k}" if k else r.name] = w
        return _module_order(out)


def _module_order(shapes: dict[str, W]) -> dict[str, W]:
    """The entries in torch's state_dict order: a module's own tensors (the last part of a
    key) before its children's, children in the order they first appear. Layers list their
    entries so already; a ``param`` in a block (``encoder.pos_embedding``) is an own tensor
    of that block's module, before the layers of the block."""
    tree: dict = {}
    for key in shapes:
        node = tree
        for part in key.split(".")[:-1]:
            node = node.setdefault(part, {})
        node.setdefault("", []).append(key)
    out: dict[str, W] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        for key in node.get("", ()):
            out[key] = shapes[key]
        stack += reversed([v for k, v in node.items() if k])
    return out


def _tied(ws: dict[str, W], ties: dict) -> dict[str, W]:
    """A layer's state_dict entries with its ties: an entry tied as it is stays, naming the
    entry it is (torch lists a tied parameter under both keys); one tied transposed is not
    the layer's at all (it takes the other layer's matrix as an argument)."""
    out = {}
    for k, w in ws.items():
        tie = ties.get(k)
        if tie is None:
            out[k] = w
        elif not tie[2]:
            out[k] = replace(w, tied=f"{tie[0]}.{tie[1]}")
    return out



def from_ir(prog: ir.Program | str | bytes | dict, path: str = "<ir>",
            consts: dict | None = None) -> Spec:
    """A Spec from an IR program: a Program, or its JSON (text, or already decoded).

    The IR is an input like a spec's text: it is validated first (see nnspec.ir.validate), every
    problem is a diagnostic located at ``path`` (with the JSON path of the value at fault),
    and a model with an error in its IR is left out before shape inference. Its constants
    were resolved when it was made, so ``consts`` (if not empty) raises ConstError.
    """
    from .validate import validate

    if consts:
        raise ConstError(f"--const {next(iter(consts))}: {path} is IR, whose constants are "
                         "resolved already; constants are set on a .nn spec")

    valid, diags = validate(prog, path)
    with gc_paused():
        results, more = infer_program(valid)
    diags += more
    diags += layer_name_diagnostics(valid)  # lowering checks them in a .nn file
    return Spec(valid, results, diags, {})


