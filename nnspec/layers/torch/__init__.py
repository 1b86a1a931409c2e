"""The torch side of the layer kinds whose plans call code torch.nn lacks: one module per
family, named as the family's module in ``nnspec/layers/``. The source emitter copies these
definitions into generated files, so they use only torch, nn, F and math."""
