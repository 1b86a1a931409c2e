"""nnspec: a declarative model-spec compiler.

``.nn`` text -> Lark parser -> validated IR (pydantic) -> static shapes -> PyTorch module
or NumPy interpreter. See :mod:`nnspec.api` for the Python API.
"""

from .api import LayerInfo, Spec, from_ir, load, loads  # noqa: F401
from .core.diagnostics import ConstError, Diagnostic, SpecError  # noqa: F401

__version__ = "0.1.0"
