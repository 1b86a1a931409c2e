"""The Python API: load a spec, read shapes, parameter counts and MACs.

    >>> import nnspec
    >>> spec = nnspec.load("specs/lenet5.nn")
    >>> spec.output_type("LeNet5")
    [N, 10]
    >>> spec.param_count("LeNet5")
    61706

The backends are separate imports: ``nnspec.backends.torch`` (needs torch) and
``nnspec.backends.numpy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import ir
from .diagnostics import Diagnostic, SpecError
from .dims import Dim
from .layers import REGISTRY, TensorType
from .layers.base import W
from .lower import lower_file, lower_text
from .names import layer_name_diagnostics
from .parse import gc_paused
from .shapes import ModelTypes, infer_program
from .source import Source


@dataclass
class LayerInfo:
    """One row of a summary: a node with its inferred output and costs."""

    node: ir.Node
    inputs: list[TensorType]
    output: TensorType
    weights: dict[str, W]
    params: int
    macs: Dim

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def kind(self) -> str:
        return self.node.op


@dataclass
class Spec:
    """A loaded spec: its IR, the inferred types and any diagnostics."""

    program: ir.Program | None
    results: dict[str, ModelTypes] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, Source] = field(default_factory=dict)
    _rows: dict = field(default_factory=dict, repr=False, compare=False)

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
            ws = kind.state(node.p, ins, out)
            count = 0
            for w in ws.values():
                if w.trainable:
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

    def state_shapes(self, name: str | None = None) -> dict[str, W]:
        """Every state_dict entry of the model: key -> W (shape, init, trainable)."""
        out = {}
        for r in self.layers(name):
            for k, w in r.weights.items():
                out[f"{r.name}.{k}"] = w
        return out


def _finish(prog, loader) -> Spec:
    diags = list(loader.diags)
    results = {}
    if prog is not None:
        results, more = infer_program(prog)
        diags.extend(more)
    diags.sort(key=lambda d: (d.span.file, d.span.line, d.span.col) if d.span else ("", 0, 0))
    return Spec(prog, results, diags, loader.sources)


def load(path: str, strict: bool = True) -> Spec:
    """Load, lower and shape-check a .nn file. With strict, raise SpecError on any error."""
    with gc_paused():
        prog, loader = lower_file(str(path))
        spec = _finish(prog, loader)
    return spec.raise_for_errors() if strict else spec


def loads(text: str, path: str = "<string>", strict: bool = True) -> Spec:
    """Like :func:`load`, from text."""
    with gc_paused():
        prog, loader = lower_text(text, path)
        spec = _finish(prog, loader)
    return spec.raise_for_errors() if strict else spec


def from_ir(prog: ir.Program | str | bytes | dict, path: str = "<ir>") -> Spec:
    """A Spec from an IR program: a Program, or its JSON (text, or already decoded).

    The IR is an input like a spec's text: it is validated first (see irvalidate), every
    problem is a diagnostic located at ``path`` (with the JSON path of the value at fault),
    and a model with an error in its IR is left out before shape inference.
    """
    from .irvalidate import validate

    valid, diags = validate(prog, path)
    with gc_paused():
        results, more = infer_program(valid)
    diags += more
    diags += layer_name_diagnostics(valid)  # lowering checks them in a .nn file
    return Spec(valid, results, diags, {})
