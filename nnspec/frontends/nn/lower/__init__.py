"""Syntax -> IR: resolve names, constants, imports and blocks; validate layer arguments.

Blocks are expanded inline (each call gets its own module-name prefix, so the state_dict
reads ``layer1.0.conv1.weight``). Errors are collected, not raised one by one: a failing
statement poisons the value it defines, later uses of a poisoned value stay silent, and
every independent error in a file is reported in one run.

The modules, bottom up: ``values`` (Tensor, Word, POISON, FileScope), ``evaluate``
(constant expressions, int64 arithmetic), ``loader`` (files, ``use``, top-level names,
``--const``), ``base`` (the model builder's state, errors, limits, layer names), the
builder's parts ``arguments``, ``blocks``, ``pipelines`` and ``statements``, ``builder``
(ModelBuilder, assembled from them) and ``program`` (lower_scope, lower_text, lower_file).
"""

from ....stdlib import STDLIB
from .base import MAX_DEPTH, MAX_REPEAT
from .builder import ModelBuilder
from .evaluate import Evaluator
from .loader import Loader
from .program import lower_file, lower_scope, lower_text
from .values import POISON, FileScope, Tensor, Word, describe

__all__ = [
    "MAX_DEPTH", "MAX_REPEAT", "POISON", "STDLIB", "Evaluator", "FileScope", "Loader",
    "ModelBuilder", "Tensor", "Word", "describe", "lower_file", "lower_scope", "lower_text",
]
