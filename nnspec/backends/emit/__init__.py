"""The PyTorch source emitter: a spec's model as the ``nn.Module`` source a person would
write (``nnspec compile``), rendered from the same torch plans the torch back end
instantiates. Torch-free, so that ``nnspec compile -o model.py`` never imports torch.

Its modules, from the top down: ``emitter`` (the file, the train section), ``classes`` (the
class writer), ``folding`` (which instances share a class), ``structure`` (block instances
and the forward flow), ``naming`` (reserved names, child access), ``constructors``
(submodule constructors, ``NN_SIGNATURES``), ``helpers`` (the layer families' torch helpers
as text), ``literals`` (literals and expressions), ``layout`` (line width and breaking)."""

from .constructors import NN_SIGNATURES  # noqa: F401
from .emitter import emit_source, write_source  # noqa: F401
