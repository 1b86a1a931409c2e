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

A family's module is imported when one of its losses is first looked up in :data:`LOSSES`
(a check imports only the families its train sections use), as the layer kinds' registry
does; ``NAMES`` lists each family's classes with their names and aliases, and
tests/test_cold_start.py fails when it and the classes disagree. Listing the table
(``iter``, ``len``, ``items``) imports every family.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module

from .kind import LossKind

#: the losses in the listing's order: (family module, class, its name and aliases)
NAMES = (
    ("elementwise", "MSE", "mse mse_loss l2"),
    ("elementwise", "L1", "l1 mae l1_loss"),
    ("elementwise", "Huber", "huber huber_loss"),
    ("elementwise", "SmoothL1", "smooth_l1 smooth_l1_loss"),
    ("elementwise", "BCE", "bce binary_cross_entropy"),
    ("elementwise", "BCEWithLogits",
     "bce_with_logits bce_logits binary_cross_entropy_with_logits"),
    ("classification", "CrossEntropy", "cross_entropy ce cross_entropy_loss"),
    ("classification", "NLL", "nll nll_loss"),
    ("divergence", "KLDiv", "kl_div kl kl_divergence"),
    ("divergence", "KLNormal", "kl_normal vae_kl kl_gaussian"),
    ("classification", "Margin", "margin margin_loss capsule_margin"),
    ("divergence", "CosineEmbedding", "cosine_embedding cosine_embedding_loss"),
    ("metric", "Contrastive", "contrastive contrastive_loss"),
    ("metric", "Triplet", "triplet triplet_margin triplet_margin_loss"),
)


class LossTable(Mapping):
    """The losses by name and alias (read-only), one instance per loss class; a family's
    module is imported on the first lookup of one of its names."""

    def __init__(self, rows):
        self._rows = tuple(rows)
        self._where = {n: (m, c) for m, c, names in self._rows for n in names.split()}
        self._made: dict[tuple[str, str], LossKind] = {}
        self._all: dict[str, LossKind] | None = None

    def _kind(self, module: str, cls: str) -> LossKind:
        kind = self._made.get((module, cls))
        if kind is None:
            kind = self._made[module, cls] = getattr(
                import_module(f"{__name__}.{module}"), cls)()
        return kind

    def get(self, name, default=None):
        where = self._where.get(name)
        return default if where is None else self._kind(*where)

    def __getitem__(self, name) -> LossKind:
        where = self._where.get(name)
        if where is None:
            raise KeyError(name)
        return self._kind(*where)

    def __contains__(self, name) -> bool:
        return name in self._where

    def _every(self) -> dict[str, LossKind]:
        if self._all is None:
            self._all = {n: self._kind(m, c) for m, c, names in self._rows
                         for n in names.split()}
        return self._all

    def __iter__(self):
        return iter(self._every())

    def __len__(self) -> int:
        return len(self._where)


LOSSES: Mapping[str, LossKind] = LossTable(NAMES)


def __getattr__(name: str):
    """A loss class or family module as an attribute of the package
    (``nnspec.layers.losses.MSE``), imported then."""
    for module, cls, _ in NAMES:
        if name in (cls, module):
            mod = import_module(f"{__name__}.{module}")
            return mod if name == module else getattr(mod, cls)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LOSSES", "LossKind"]
