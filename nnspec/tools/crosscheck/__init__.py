"""Run a model in both backends with shared weights and inputs; compare layer by layer.

Before anything is allocated, the symbols are bound (``--dim``, default 2), the model's
shape rules run again at those sizes (so that every static rule, a ``max_len`` say,
applies to them) and the peak memory is estimated and compared with what the machine
has. Then, per layer, both backends' outputs must have the inferred shape at the bound
dims and agree within the tolerance.

The parts: ``sizes`` binds the dims, makes the inputs and estimates the memory;
``forward`` compares the layers' outputs; ``grad`` compares the gradients.
"""

from .forward import TOLERANCE, Report, Row, _errors, crosscheck  # noqa: F401
from .grad import GRAD_TOLERANCE, GradReport, GradRow, crosscheck_grad
from .sizes import (
    MAX_DIM,
    MemoryEstimate,
    UnknownDims,
    available_memory,
    bind_dims,
    check_at_dims,
    check_memory,
    concrete_inputs,
    estimate_memory,
    model_symbols,
)

__all__ = ["GRAD_TOLERANCE", "MAX_DIM", "TOLERANCE", "GradReport", "GradRow", "MemoryEstimate",
           "Report", "Row", "UnknownDims", "available_memory", "bind_dims", "check_at_dims",
           "check_memory", "concrete_inputs", "crosscheck", "crosscheck_grad",
           "estimate_memory", "model_symbols"]
