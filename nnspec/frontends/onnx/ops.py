"""The ONNX op types nnspec imports, each with its converter (layerops.py: layers with
weights or windows; recurrent.py: GRU and LSTM; tensorops.py: the
rest)."""

from __future__ import annotations

from .attention import find_sdpa
from .elementwise import find_activations
from .layerops import LAYER_OPS
from .norms import find_norms
from .positions import find_positional
from .recurrent import RECURRENT_OPS
from .rotary import find_rope
from .tensorops import TENSOR_OPS
from .unrolled import find_unrolled_rnn

#: op type (default domain) -> converter(converter, node, inputs, index) -> Op | None
OPS = {**TENSOR_OPS, **LAYER_OPS, **RECURRENT_OPS}

#: the groups of nodes found before the walk (each: converter -> None)
GROUPS = (find_sdpa, find_norms, find_rope, find_positional, find_unrolled_rnn,
          find_activations)

__all__ = ["GROUPS", "OPS"]
