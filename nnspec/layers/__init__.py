"""Layer kinds: one module per family, each class one kind (see base.py)."""

from .base import REGISTRY, LayerKind, ShapeError, TensorType  # noqa: F401
from . import activation, conv, dense, dropout, merge, norm, pool, reshape  # noqa: F401,E402
from . import attention  # noqa: F401,E402
from . import embedding, recurrent  # noqa: F401,E402
