"""Layer kinds: one module per family, each class one kind (see base.py)."""

from . import (  # noqa: F401,E402  # noqa: F401,E402
    activation,
    attention,  # noqa: F401,E402
    conv,
    dense,
    dropout,
    embedding,
    merge,
    norm,
    pool,
    recurrent,
    reshape,
)
from .base import REGISTRY, LayerKind, ShapeError, TensorType  # noqa: F401
