"""Back ends, one folder each, all reading a checked :class:`nnspec.ir.spec.Spec`:
``torch`` builds an ``nn.Module`` in-process (imports torch), ``emit`` writes the same
module as PyTorch source (torch-free), ``numpy`` is the reference interpreter with its
kernels. What they share sits beside them: the torch plans of a model (``plans``) and
the initial weights drawn with NumPy (``weights``)."""
