"""The NumPy back end: the reference interpreter (``interpreter``), which runs each node with
its kind's ``numpy`` and ``backward`` (computed with ``nnspec.layers.kernels``). Never
imports torch."""

from .interpreter import Gradients, InputError, NoBackward, NumpyModel, bind_dims  # noqa: F401
