"""Layer kinds: one module per family, each class one kind (see base.py)."""

from . import (  # noqa: F401
    activation,
    adaptive,
    attention,
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
    positional,
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
