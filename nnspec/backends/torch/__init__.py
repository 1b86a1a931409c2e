"""The torch back end: a spec's model as an ``nn.Module`` built in-process
(:func:`build_module`), and the same module as source (:func:`emit_source`, written by the
torch-free ``nnspec.backends.emit``).

    >>> import nnspec, torch
    >>> from nnspec.backends.torch import build_module, emit_source
    >>> spec = nnspec.load("specs/lenet5.nn")
    >>> net = build_module(spec, seed=0)
"""

from ..emit import emit_source, write_source  # noqa: F401
from ..inputs import InputError  # noqa: F401
from .module import SpecModule, build_module  # noqa: F401

__all__ = ["SpecModule", "build_module", "emit_source", "write_source", "InputError"]
