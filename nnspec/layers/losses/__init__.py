"""The loss functions of a ``train`` section, one class per loss: its arguments (pydantic,
torch's names and defaults), the shape rule, the NumPy value and gradients, and the
PyTorch expression a person writes.

Every loss is a scalar: ``reduction=mean`` (torch's default) or ``sum``; ``kl_div`` also
takes ``batchmean``. The gradients are those torch autograd gives, targets included where
torch differentiates them (mse, l1, huber, smooth_l1, bce targets, probability targets of
cross_entropy, kl_div's target); an int target gets None.

Never imports numpy or torch at import time (``nnspec check`` validates train sections).

One module per family: :mod:`.elementwise` (mse, l1, huber, smooth_l1, bce,
bce_with_logits), :mod:`.classification` (cross_entropy, nll, margin),
:mod:`.divergence` (kl_div, kl_normal, cosine_embedding) and :mod:`.metric` (contrastive,
triplet), over :mod:`.kind` (:class:`LossKind`). This package gathers them in
:data:`LOSSES`, by name and alias; ``nnspec losses`` lists them with their arguments.
"""

from __future__ import annotations

from .classification import NLL, CrossEntropy, Margin
from .divergence import CosineEmbedding, KLDiv, KLNormal
from .elementwise import BCE, L1, MSE, BCEWithLogits, Huber, SmoothL1
from .kind import LossKind
from .metric import Contrastive, Triplet

LOSSES: dict[str, LossKind] = {}
for _cls in (MSE, L1, Huber, SmoothL1, BCE, BCEWithLogits, CrossEntropy, NLL, KLDiv, KLNormal,
             Margin, CosineEmbedding, Contrastive, Triplet):
    _inst = _cls()
    for _key in (_cls.name, *_cls.aliases):
        LOSSES[_key] = _inst

__all__ = ["LOSSES", "LossKind"]
