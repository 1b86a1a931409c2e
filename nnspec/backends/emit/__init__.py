"""The PyTorch source emitter: a spec's model as the ``nn.Module`` source a person would
write (``nnspec compile``), rendered from the same torch plans the torch back end
instantiates. Torch-free, so that ``nnspec compile -o model.py`` never imports torch."""

from .emitter import emit_source, write_source  # noqa: F401
