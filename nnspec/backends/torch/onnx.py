"""A spec's model as ONNX (:func:`export_onnx`): the module of :func:`build_module` through
``torch.onnx.export``'s dynamo path (``torch.export``), each input dim that is a bare symbol
(``N``, ``T``, ``H``) a dynamic axis of that name, every other dim baked.

    >>> import nnspec
    >>> from nnspec.backends.torch.onnx import export_onnx
    >>> out = export_onnx(nnspec.load("specs/lenet5.nn"), seed=0)
    >>> out.inputs
    [OnnxValue(name='x', dtype='float32', dims=['N', 1, 32, 32])]
    >>> data = out.to_bytes()                            # the .onnx file's content

torch may specialise a symbol to the size it traced at (a recurrent layer's sequence length
in some models): that symbol is then baked, and :attr:`OnnxExport.fixed` says so.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...ir.spec import Spec
from .module import build_module

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "ExportError", "OnnxExport", "OnnxValue",
           "example_dims", "export_onnx", "max_opset"]

#: The opset written by default, and the oldest one the dynamo exporter writes directly.
DEFAULT_OPSET = 18
MIN_OPSET = 18
#: One protobuf message holds at most 2 GiB: a larger model needs external data.
MAX_PROTO_BYTES = 2**31 - 1
#: A layer's ``sample=`` value that draws random numbers in eval mode too.
_SAMPLES_ALWAYS = "always"


class ExportError(ValueError):
    """The model cannot be exported as asked; the message is one line for the user."""


@dataclass
class OnnxValue:
    """A graph input or output: its name, element type and dims (a name for a dynamic axis,
    an int for a baked one)."""

    name: str
    dtype: str
    dims: list


@dataclass
class OnnxExport:
    """What :func:`export_onnx` made: the ModelProto and a description of it."""

    model: str
    proto: Any  # onnx.ModelProto
    opset: int
    inputs: list[OnnxValue]
    outputs: list[OnnxValue]
    #: the sizes the model was traced at, one per symbol of its inputs
    dims: dict[str, int]
    #: the symbols torch specialised while tracing: baked at their traced size
    fixed: dict[str, int] = field(default_factory=dict)
    #: the model draws random numbers in eval mode (``sample=always``): its output is random
    samples: bool = False

    def to_bytes(self) -> bytes:
        return self.proto.SerializeToString()


def max_opset() -> int:
    """The newest opset both torch's exporter and the installed onnx know."""
    import onnx
    from torch.onnx import _constants

    return min(_constants.ONNX_MAX_OPSET, onnx.defs.onnx_opset_version())


def example_dims(spec: Spec, model: str | None = None,
                 dims: dict[str, int] | None = None) -> dict[str, int]:
    """The size of every symbol of the model's inputs to trace at: from ``dims``, else 2, 3,
    4, ... in the order the symbols first appear (distinct sizes, so that no two symbols
    look equal to the tracer). A name that is no symbol of the model raises ExportError."""
    m = spec.model(model)
    syms: list[str] = []
    for inp in m.inputs:
        for d in inp.dims():
            for s in sorted(d.symbols(), key=lambda s: (s != str(d), s)):
                if s not in syms:
                    syms.append(s)
    dims = dict(dims or {})
    unknown = sorted(set(dims) - set(syms))
    if unknown:
        have = ", ".join(syms) if syms else "none: every input size is concrete"
        raise ExportError(f"model {m.name} has no dim {unknown[0]} (its symbols: {have})")
    for k, v in dims.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ExportError(f"the dim {k} must be an int >= 1, got {v!r}")
    taken = set(dims.values())
    size = 2
    out = {}
    for s in syms:
        if s not in dims:
            while size in taken:
                size += 1
            dims[s] = size
            taken.add(size)
        out[s] = dims[s]
    return out


def _example_inputs(m, env: dict[str, int], seed: int) -> tuple:
    gen = torch.Generator().manual_seed(seed + 1)
    xs = []
    for inp in m.inputs:
        shape = [d.evaluate(env) for d in inp.dims()]
        if inp.dtype == "int":
            xs.append(torch.randint(0, 2, shape, generator=gen))
        else:
            xs.append(torch.randn(shape, generator=gen))
    return tuple(xs)


class _Prefixed(nn.Module):
    """The module one level down (``model.code.weight``): torch.export's graph module
    cannot hold a top-level layer named like one of its own attributes (``code``)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.model = net

    def forward(self, *inputs):
        return self.model(*inputs)


def _output_names(m) -> list[str]:
    names = list(m.output_names) or [""]
    taken = {inp.name for inp in m.inputs}
    out = []
    for i, n in enumerate(names):
        n = n or ("output" if len(names) == 1 else f"output_{i}")
        while n in taken:
            n = f"{n}_out"
        taken.add(n)
        out.append(n)
    return out


def _describe(values) -> list[OnnxValue]:
    import onnx

    out = []
    for v in values:
        t = v.type.tensor_type
        dims = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in t.shape.dim]
        out.append(OnnxValue(v.name, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                             dims))
    return out


@contextlib.contextmanager
def _quiet():
    """torch.onnx's progress lines and warnings off (its errors still raise)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export",
                                              "onnxscript", "torch.fx.experimental")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _first_line(e: BaseException) -> str:
    """The cause torch names in an export failure ("## Exception summary"), else the first
    line of the message."""
    text = str(e)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if "## Exception summary" in text:
        after = text.split("## Exception summary", 1)[1]
        lines = [ln.strip() for ln in after.splitlines() if ln.strip()] or lines
    line = lines[0] if lines else type(e).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def export_onnx(spec: Spec, model: str | None = None, *, dims: dict[str, int] | None = None,
                opset: int = DEFAULT_OPSET, seed: int = 0, params: dict | None = None,
                check: bool = True) -> OnnxExport:
    """Export the model (default: the spec's last) as ONNX at ``opset``.

    The weights are ``build_module``'s (``params``, else drawn from ``seed``); the model is
    traced in eval mode at ``dims`` (:func:`example_dims`). Each bare-symbol input dim is a
    dynamic axis named after its symbol, unless torch specialises it (then it is baked and
    listed in ``fixed``). With ``check``, ``onnx.checker`` checks the result. Raises
    ExportError (bad dims or opset, a model over 2 GiB, a failure of the exporter) with a
    one-line message.
    """
    import onnx

    spec.raise_for_errors()
    m = spec.model(model)
    top = max_opset()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= top:
        raise ExportError(f"opset {opset!r} is out of range: the exporter writes opsets "
                          f"{MIN_OPSET} to {top}")
    size = spec.param_count(m.name) * 4
    if size > MAX_PROTO_BYTES:
        raise ExportError(f"model {m.name} has {size / 2**30:,.1f} GiB of float32 weights: "
                          "one ONNX file holds at most 2 GiB")
    env = example_dims(spec, m.name, dims)
    net = build_module(spec, m.name, seed=seed, params=params).eval()
    xs = _example_inputs(m, env, seed)
    names = {k.split(".")[0] for k in net.state_dict()}
    prefixed = bool(names & set(dir(torch.fx.GraphModule)))
    root = _Prefixed(net).eval() if prefixed else net
    baked: dict[str, int] = {}
    for _ in range(len(env) + 1):
        proto = _export(root, net, m, xs, opset, baked, prefixed)
        inputs = _describe(proto.graph.input)
        outputs = _describe(proto.graph.output)
        fixed = _fixed(m, inputs) | baked
        # an axis the spec infers symbolic but the file declares static: the trace
        # specialised it past the inputs, so that symbol is baked throughout
        stale = _stale(spec, m, outputs, fixed) - set(baked)
        if not stale:
            break
        baked.update({s: env[s] for s in stale})
    if check:
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as e:
            raise ExportError(f"the ONNX model of {m.name} fails onnx.checker: "
                              f"{_first_line(e)}") from e
    samples = any(n.params.get("sample") == _SAMPLES_ALWAYS for n in m.nodes)
    return OnnxExport(m.name, proto, opset, inputs, outputs, env, fixed, samples)


def _export(root: nn.Module, net, m, xs: tuple, opset: int, baked: dict, prefixed: bool):
    """torch.onnx's dynamo export, each bare-symbol dim dynamic unless ``baked``."""
    dynamic = net.dynamic_shapes(**{s: None for s in baked})
    try:
        with _quiet():
            program = torch.onnx.export(
                root, xs, dynamo=True, opset_version=opset, dynamic_shapes=dynamic,
                input_names=[inp.name for inp in m.inputs], output_names=_output_names(m),
                verbose=False)
    except Exception as e:
        raise ExportError(f"torch could not export model {m.name}: {_first_line(e)}") from e
    if prefixed:
        for name, value in list(program.model.graph.initializers.items()):
            if name.startswith("model."):
                value.name = name[len("model."):]
                if value.const_value is not None:
                    value.const_value.name = value.name
    return program.model_proto


def _fixed(m, inputs: list[OnnxValue]) -> dict[str, int]:
    """The symbols of bare input dims that the file declares static, with their sizes."""
    fixed = {}
    for inp, v in zip(m.inputs, inputs):
        for d, got in zip(inp.dims(), v.dims):
            if not d.is_const and str(d) in d.symbols() and isinstance(got, int):
                fixed[str(d)] = got
    return fixed


def _stale(spec: Spec, m, outputs: list[OnnxValue], fixed: dict[str, int]) -> set[str]:
    """The symbols of output axes that the spec infers symbolic (after ``fixed``) but the
    file declares static."""
    typ = spec.output_type(m.name)
    out: set[str] = set()
    for t, v in zip(getattr(typ, "items", (typ,)), outputs):
        for d, got in zip(t.shape, v.dims):
            d = d.subs(fixed)
            if not d.is_const and isinstance(got, int):
                out |= d.symbols()
    return out
