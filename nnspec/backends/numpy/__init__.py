"""The NumPy back end: the reference interpreter (``interpreter``) over the kernels
(``kernels``). Never imports torch."""

from .interpreter import Gradients, InputError, NoBackward, NumpyModel, bind_dims  # noqa: F401
