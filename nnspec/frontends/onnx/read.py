"""Reading an ONNX file safely: size limits, external data kept to the file's folder, the
ONNX checker, shape inference, and the dims and constants the converter asks for.

Nothing in the file is run: its graph is only read. Tensors stored outside the file
(``external_data``) are read only from regular files inside the model's own folder, and
only when a value is needed (a reshape's target while importing; every weight when the
weights are loaded).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

#: The largest .onnx file read (a protobuf message cannot be larger).
MAX_FILE_BYTES = 2 * 1024**3
#: The most bytes of external data (``.onnx.data`` files beside the model) read in all.
MAX_EXTERNAL_BYTES = 16 * 1024**3
#: The oldest opset of the default domain imported.
MIN_OPSET = 13

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: words of the .nn language that cannot name a symbol or a value
RESERVED = frozenset({"true", "false", "return", "use", "const", "check", "train", "model",
                      "block", "loss", "as", "int", "float", "None"})
ONNX_EXTRA = "this needs the onnx extra: pip install 'nnspec[onnx]'"


class OnnxImportError(Exception):
    """An ONNX file nnspec cannot import, with the reason. ``usage``: the command line was at
    fault (a missing file, a --dim naming no symbol), not the file."""

    def __init__(self, message: str, usage: bool = False):
        super().__init__(message)
        self.usage = usage


def need_onnx():
    """The onnx module, or a clear error when the extra is not installed."""
    try:
        import onnx
    except ImportError:
        raise OnnxImportError(ONNX_EXTRA, usage=True) from None
    return onnx


@dataclass
class Value:
    """A graph value's static type from shape inference: dims are ints, symbol names (the
    model's input symbols) or None (not known statically); ``rank`` None when unknown."""

    dims: list | None
    elem: int = 0

    @property
    def rank(self) -> int | None:
        return None if self.dims is None else len(self.dims)


@dataclass
class OnnxGraph:
    """The checked model: its main graph, initializers by name, inferred value types and
    the input signature (names, dims with symbols, dtypes)."""

    model: object
    path: str
    base: str
    opset: int
    inits: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)  # (name, dims, "float"|"int")
    symbols: dict = field(default_factory=dict)  # dim_param in the file -> spec symbol

    @property
    def graph(self):
        return self.model.graph

    def array(self, tensor) -> np.ndarray:
        """A TensorProto's values; external data read from inside the model's folder."""
        onnx = need_onnx()
        from onnx import numpy_helper

        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _external_path(tensor, self.base)
            return numpy_helper.to_array(tensor, self.base)
        return numpy_helper.to_array(tensor)


def _external_path(tensor, base: str) -> str:
    info = {e.key: e.value for e in tensor.external_data}
    loc = info.get("location", "")
    if not loc or os.path.isabs(loc) or "\\" in loc or ".." in loc.split("/"):
        raise OnnxImportError(f"tensor {tensor.name!r}: its external data {loc!r} is not a "
                              "file in the model's folder (refused)")
    real_base = os.path.realpath(base)
    path = os.path.realpath(os.path.join(real_base, loc))
    if os.path.commonpath([real_base, path]) != real_base or not os.path.isfile(path):
        raise OnnxImportError(f"tensor {tensor.name!r}: its external data {loc!r} is not a "
                              "regular file in the model's folder (refused)")
    return path


def _check_external(model, base: str) -> None:
    from onnx import TensorProto

    total = 0
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        tensors += [a.t for a in node.attribute if a.HasField("t")]
    for t in tensors:
        if t.data_location != TensorProto.EXTERNAL:
            continue
        path = _external_path(t, base)
        info = {e.key: e.value for e in t.external_data}
        try:
            total += int(info.get("length") or os.path.getsize(path))
        except ValueError:
            raise OnnxImportError(f"tensor {t.name!r}: external data length "
                                  f"{info.get('length')!r} is not a number") from None
    if total > MAX_EXTERNAL_BYTES:
        raise OnnxImportError(f"{total:,} bytes of external data: more than nnspec reads "
                              f"({MAX_EXTERNAL_BYTES:,})")


def read(path: str, dims: dict | None = None) -> OnnxGraph:
    """The model in ``path``, checked and with inferred shapes; ``dims`` fix input symbols
    to sizes (``{"N": 1}``)."""
    onnx = need_onnx()
    if not os.path.exists(path):
        raise OnnxImportError(f"{path}: no such file", usage=True)
    if not os.path.isfile(path):
        raise OnnxImportError(f"{path}: not a regular file", usage=True)
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise OnnxImportError(f"{size:,} bytes: larger than the {MAX_FILE_BYTES:,} bytes an "
                              "ONNX file can hold (larger models keep their weights as "
                              "external data)")
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf's decode errors have no common base
        raise OnnxImportError(f"not an ONNX model ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'cannot decode'})"
                              ) from None
    if not model.HasField("graph") or not model.opset_import:
        raise OnnxImportError("not an ONNX model (no graph or no opset)")
    base = os.path.dirname(os.path.abspath(path))
    _check_external(model, base)
    try:
        onnx.checker.check_model(path)  # by path: external data relative to its folder
    except Exception as e:  # noqa: BLE001 - ValidationError and protobuf errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnnxImportError(f"not a valid ONNX model: {first}") from None
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                default=0)
    if opset < MIN_OPSET:
        raise OnnxImportError(f"opset {opset}: nnspec imports opset {MIN_OPSET} and later "
                              "(convert it with onnx.version_converter)")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False,
                                                     strict_mode=False, data_prop=True)
    except Exception as e:  # noqa: BLE001 - shape inference errors are InferenceError
        raise OnnxImportError(f"ONNX shape inference fails: {str(e).splitlines()[0]}"
                              ) from None
    g = OnnxGraph(inferred, path, base, opset)
    g.inits = {t.name: t for t in inferred.graph.initializer}
    _signature(g, dims or {})
    for v in list(inferred.graph.value_info) + list(inferred.graph.output) + \
            list(inferred.graph.input):
        if v.name not in g.values:
            g.values[v.name] = _value(v, g.symbols, dims or {})
    return g


def _signature(g: OnnxGraph, dims: dict) -> None:
    used: set = set()
    fresh = 0
    for v in g.graph.input:
        if v.name in g.inits:
            continue  # an initializer listed as an input (IR < 4): a constant
        t = v.type.tensor_type if v.type.HasField("tensor_type") else None
        if t is None or not t.HasField("shape"):
            raise OnnxImportError(f"input {v.name!r}: not a tensor of known rank")
        out = []
        for d in t.shape.dim:
            if d.HasField("dim_value"):
                if int(d.dim_value) < 1:
                    raise OnnxImportError(f"input {v.name!r} has a dim of size "
                                          f"{int(d.dim_value)} (an empty tensor)")
                out.append(int(d.dim_value))
                continue
            key = d.dim_param if d.HasField("dim_param") else f"\x00{fresh}"
            if key not in g.symbols:
                g.symbols[key] = _symbol(d.dim_param if d.HasField("dim_param") else "",
                                         used)
                fresh += 1
            out.append(g.symbols[key])
        out = [dims.get(d, d) if isinstance(d, str) else d for d in out]
        g.inputs.append((v.name, out, "int" if t.elem_type in _INT_TYPES else "float"))
        g.values[v.name] = Value(out, t.elem_type)
    names = set(g.symbols.values())
    unknown = sorted(set(dims) - names)
    if unknown:
        have = ", ".join(sorted(names)) or "none"
        raise OnnxImportError(f"--dim {unknown[0]}: no input dim is named so (the symbols: "
                              f"{have})", usage=True)


def _symbol(param: str, used: set) -> str:
    base = re.sub(r"\W", "_", param).strip("_")
    if not base or not _IDENT.fullmatch(base) or base in RESERVED:
        base = f"D{len(used)}" if not base else f"D_{base}"
        base = base if _IDENT.fullmatch(base) else f"D{len(used)}"
    name, i = base, 2
    while name in used:
        name, i = f"{base}{i}", i + 1
    used.add(name)
    return name


# the ONNX integer element types, and bool (a mask: an int in nnspec, nonzero true)
_INT_TYPES = {2, 3, 4, 5, 6, 7, 9, 12, 13}


def _value(v, symbols: dict, dims: dict) -> Value:
    t = v.type.tensor_type if v.type.HasField("tensor_type") else None
    if t is None or not t.HasField("shape"):
        return Value(None, t.elem_type if t is not None else 0)
    out: list = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param in symbols:
            s = symbols[d.dim_param]
            out.append(dims.get(s, s))
        else:
            out.append(None)
    return Value(out, t.elem_type)


def is_int(elem: int) -> bool:
    return elem in _INT_TYPES
