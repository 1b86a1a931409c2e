"""ModelBuilder: one model lowered to an IR model, its blocks expanded inline. It is
assembled from its parts: statements (inputs, statements, annotations), pipelines (stages,
tensor expressions), blocks (block calls, repetition, instance reuse) and arguments (a layer
kind's arguments), on the state and bookkeeping of base (errors, limits, layer names)."""

from __future__ import annotations

from .arguments import Arguments
from .blocks import Blocks
from .pipelines import Pipelines
from .statements import Statements


class ModelBuilder(Statements, Pipelines, Blocks, Arguments):
    """Lowers one model body (blocks expanded inline) to an IR model."""
