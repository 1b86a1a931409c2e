"""Reference NumPy kernels: what the layer kinds' NumPy forward and backward (and the losses)
compute with, for the NumPy back end's interpreter. A leaf: imports nothing of nnspec.

Every kernel follows PyTorch's layout conventions (images ``[N, C, *spatial]``,
weights exactly as they appear in a PyTorch ``state_dict``) and PyTorch's
numerical semantics, so that a model compiled to NumPy reproduces the PyTorch
model to round-off.  All kernels accept float32 and float64 arrays and return
results of the input dtype (parameters are cast to the input dtype, never the
other way round).

Only NumPy is imported here.  Everything is vectorised: the only Python loops
are over spatial dimensions and kernel offsets in the pooling kernels, where a
sequence of strided elementwise ``maximum``/``add`` passes measured 20-40x
faster than reducing a sliding-window view.

The package's modules: :mod:`.windows` (padding, convolutions, pooling and their
backward), :mod:`.functions` (linear, normalisation, erf, activations) and
:mod:`.common` (argument coercion, below both). Import the kernels from here; the
package imports nothing of nnspec, so that the layer kinds may call it.
"""

from __future__ import annotations

from .functions import (
    batch_norm,
    dropout,
    elu,
    erf,
    erfc,
    gelu,
    layer_norm,
    leaky_relu,
    linear,
    log_softmax,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from .windows import (  # noqa: F401  (the backward kernels are public, not in __all__)
    adaptive_avg_pool_global,
    avg_pool_nd,
    avg_pool_nd_backward,
    conv_nd,
    conv_nd_backward,
    conv_transpose_nd,
    conv_transpose_nd_backward,
    conv_weight_grad,
    gather_backward,
    max_pool_nd,
    max_pool_nd_backward,
    pad_nd,
    pool_output_size,
)

__all__ = [
    "adaptive_avg_pool_global",
    "avg_pool_nd",
    "batch_norm",
    "conv_nd",
    "conv_transpose_nd",
    "dropout",
    "elu",
    "erf",
    "erfc",
    "gelu",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log_softmax",
    "max_pool_nd",
    "pad_nd",
    "pool_output_size",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]

