"""Layer kinds: one module per family, each class one kind (see base.py)."""

from . import (  # noqa: F401,E402  # noqa: F401,E402
    activation,
    adaptive,
    attention,  # noqa: F401,E402
    capsule,
    conv,
    convtranspose,
    dense,
    dropout,
    embedding,
    merge,
    norm,
    padcrop,
    pixelshuffle,
    pool,
    rbm,
    recurrent,
    reshape,
    rope,
    sdpa,
    split,
    stochastic,
    tensorops,
    upsample,
)
from .base import REGISTRY, LayerKind, ShapeError, TensorType  # noqa: F401
