"""The ONNX front end: an ONNX model (opset 13 and later, as ``torch.onnx.export`` and other
frameworks write them) as a .nn spec, and its initializers as the spec's state_dict.

    >>> text = import_onnx("model.onnx")                     # the .nn text
    >>> spec = nnspec.loads(text)
    >>> params = load_onnx_weights("model.onnx", spec)       # state_dict key -> array

Input dims with a ``dim_param`` become symbols of the model's signature (``x: [N, 3, H,
W]``); ``dims`` fixes some of them to sizes. Layers are named after their initializers
where those are module paths (``layer1.0.conv1.weight``: ``as layer1.0.conv1``), else
after the module path in the node's name, else ``conv_0``. Ops map to kinds as the ONNX
operator specification defines them (ops.py); anything else is one
:class:`OnnxImportError` naming the node, and nothing is written.

Limits (read.py): an .onnx file of at most 2 GiB, external data only from regular files in
the model's own folder and at most 16 GiB of it; nothing of the file is executed (a custom
op is an error). Needs the ``onnx`` extra, and never imports torch.
"""

from __future__ import annotations

import os
import re

import numpy as np

from . import read as _reader
from .blocks import form as form_blocks
from .convert import Converter
from .ops import GROUPS, OPS
from .read import MAX_EXTERNAL_BYTES, MAX_FILE_BYTES, RESERVED, OnnxImportError
from .write import Names, body, model

__all__ = ["MAX_EXTERNAL_BYTES", "MAX_FILE_BYTES", "OnnxImportError", "import_onnx",
           "load_onnx_weights"]


def _convert(path: str, dims: dict | None):
    g = _reader.read(path, dims)
    cx = Converter(g)
    return g, cx, cx.run(OPS, GROUPS)


def import_onnx(path: str, dims: dict[str, int] | None = None, name: str | None = None) -> str:
    """The .nn text of the ONNX model in ``path``; ``dims`` binds input symbols to sizes,
    ``name`` names the model (default: from the file name)."""
    g, cx, ops = _convert(path, dims)
    names = Names(set())
    env, inputs = {}, []
    for n, d, t in g.inputs:
        env[n] = names.fresh(n if n not in g.symbols.values() else f"{n}_in")
        inputs.append((env[n], d, t))
    taken = {op.layer for op in ops if op.again and op.layer and "." not in op.layer}
    outputs = [cx.resolve(o) for o in cx.outputs]
    ops, blocks = form_blocks(ops, outputs, cx.dims)
    lines = body(ops, env, outputs, taken | names.taken)
    result = None
    if len(outputs) == 1:
        v = g.values.get(cx.outputs[0])
        symbols = set(g.symbols.values())
        if v is not None and v.dims is not None and all(
                isinstance(d, int) or d in symbols for d in v.dims):
            result = v.dims
    return model(name or _model_name(path, g), os.path.basename(path), inputs, result, lines,
                 blocks)


def _model_name(path: str, g) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", stem) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts)
    if not name or not name[0].isalpha() or name in RESERVED:
        name = "Model" + name
    return name


def load_onnx_weights(path: str, spec, model: str | None = None) -> dict[str, np.ndarray]:
    """The initializers of the ONNX model in ``path`` as the state_dict of ``spec`` (the
    spec :func:`import_onnx` wrote for it): key -> array, Gemm and MatMul weights
    transposed to ``[out, in]``, BatchNorm's ``num_batches_tracked`` added as 0, so that
    ``NumpyModel(spec, params=...)`` and ``build_module(spec).load_state_dict(...,
    strict=True)`` take it."""
    _, cx, ops = _convert(path, None)
    found: dict[str, np.ndarray] = {}
    for op in ops:
        if op.layer is None or op.again:
            continue
        for key, (src, how) in op.weights.items():
            a = cx.value(src)
            if callable(how):
                a = how(a)
            elif how == "T":
                a = a.T
            found[f"{op.layer}.{key}" if key else op.layer] = a
    want = spec.state_shapes(model)
    out: dict[str, np.ndarray] = {}
    for key, w in want.items():
        if key in found:
            a = found.pop(key)
            if tuple(a.shape) != tuple(w.shape):
                if a.size != int(np.prod(w.shape)):
                    raise OnnxImportError(f"{key}: the ONNX file has {list(a.shape)}, the "
                                          f"spec wants {list(w.shape)}")
                a = a.reshape(w.shape)
            out[key] = np.array(a, copy=True, order="C")
        elif key.endswith("num_batches_tracked"):
            out[key] = np.zeros(w.shape, dtype=np.int64)
        elif not w.tied:
            raise OnnxImportError(f"{key}: the spec has this weight and the ONNX file has "
                                  "none for it (is the spec imported from this file?)")
    for key, w in want.items():
        if key not in out and w.tied and w.tied in out:
            out[key] = out[w.tied]  # torch lists a tied parameter under both keys
    if found:
        raise OnnxImportError(f"{sorted(found)[0]}: the ONNX file has this weight and the "
                              "spec has none (is the spec imported from this file?)")
    return out
