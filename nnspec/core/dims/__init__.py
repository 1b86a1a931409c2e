"""Symbolic tensor dimensions and the convolution/pooling output-size formula.

A :class:`Dim` is an integer-valued expression over named symbols (``N``, ``T``,
``H`` ...): a polynomial with integer coefficients whose atoms are symbol names
or floor/ceil division atoms (:class:`FloorDiv`, :class:`CeilDiv`).  Expressions
are kept in a canonical form so that equal expressions built in different ways
usually compare equal (the form is complete for polynomials; for floor/ceil atoms
it normalises the common cases, see :meth:`Dim.floordiv`).

Only the standard library is imported: this package sits on the CLI start-up path.

The output-size formula for convolutions and pooling lives here, once:
:func:`conv_out`, :func:`transposed_conv_out` and their renderings for errors,
:func:`conv_formula` and :func:`transposed_conv_formula`.

The package's modules, bottom up: :mod:`.terms` (atoms, monomials, limits), :mod:`.parse`
(the text form's parser), :mod:`.algebra` (:class:`Dim` itself) and :mod:`.formula` (the
output-size formula). Import the names from here.
"""

from __future__ import annotations

from .algebra import Dim, as_dim, max_abs_coeff
from .formula import conv_formula, conv_out, transposed_conv_formula, transposed_conv_out
from .terms import MAX_ATOM_DEPTH, MAX_TERMS, CeilDiv, DimTooComplex, FloorDiv  # noqa: F401

__all__ = [
    "CeilDiv",
    "Dim",
    "DimTooComplex",
    "FloorDiv",
    "as_dim",
    "conv_formula",
    "conv_out",
    "max_abs_coeff",
    "transposed_conv_formula",
    "transposed_conv_out",
]
