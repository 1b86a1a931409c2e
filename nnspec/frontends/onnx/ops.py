"""The ONNX op types nnspec imports, each with its converter (layerops.py: layers with
weights or windows; recurrent.py: GRU and LSTM; tensorops.py: the
rest)."""

from __future__ import annotations

from .layerops import LAYER_OPS
from .recurrent import RECURRENT_OPS
from .tensorops import TENSOR_OPS

#: op type (default domain) -> converter(converter, node, inputs, index) -> Op | None
OPS = {**TENSOR_OPS, **LAYER_OPS, **RECURRENT_OPS}

__all__ = ["OPS"]
