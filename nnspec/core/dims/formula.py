"""The convolution/pooling output-size formula, once: sizes and their renderings.

:func:`conv_out` and :func:`transposed_conv_out` give the output size along one axis of a
convolution or pooling window (and of a transposed convolution), exact for symbolic input
sizes too, PyTorch's ceil-mode rule included (:func:`_conv_out`, :func:`_window_starts`);
:func:`conv_formula` and :func:`transposed_conv_formula` render the same formula with the
numbers substituted, for error messages.
"""

from __future__ import annotations

import operator

from .algebra import Dim, as_dim
from .terms import _IDENT


def _pads(pad) -> tuple[int, int]:
    if isinstance(pad, int):
        return pad, pad
    try:
        before, after = pad
    except (TypeError, ValueError):
        raise TypeError(f"pad must be an int or a (before, after) pair, got {pad!r}") from None
    return operator.index(before), operator.index(after)


def _check_pos(name: str, v: int) -> int:
    v = operator.index(v)
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    return v


def _conv_out(f: Dim, k: int, s: int, before: int, after: int, d: int, ceil: bool):
    """Returns (out, note): note is None, "dropped" (PyTorch's ceil-mode -1 applies) or
    "starts" (ceil mode over a symbolic size: the count of window starts, see conv_out)."""
    ke = d * (k - 1) + 1
    num = f + (before + after - ke)
    if not ceil:
        return num.floordiv(s) + 1, None
    out = num.ceildiv(s) + 1
    # PyTorch: the last window must start inside the input or the left padding.
    # cond = (out - 1)*s - (f + before) >= 0  ->  out -= 1.
    cond = (out - 1) * s - (f + before)
    if cond._c is not None:
        return (out - 1, "dropped") if cond._c >= 0 else (out, None)
    # s*ceil(y/s) lies in [y, y + s - 1], so cond lies in [r, r + s - 1]
    r = after - ke
    if r >= 0:
        return out - 1, "dropped"
    if r + s - 1 < 0:
        return out, None
    return _window_starts(f, s, before), "starts"


def _window_starts(f: Dim, s: int, before: int) -> Dim:
    """``floor((f + before - 1)/s) + 1``: how many windows start at a padded position in
    ``[0, f + before - 1]`` (inside the input or the left padding), stepping ``s``.

    This is the exact ceil-mode size whenever ``0 < p_after - ke + s < s``, for every
    value of ``f``. Proof, with ``x = f + before - 1``, ``A = floor(x/s) + 1`` and
    ``B = ceil((f + before + after - ke)/s) + 1 = floor((x + delta)/s) + 1`` where
    ``delta = after - ke + s``: PyTorch gives ``B``, less one when ``(B - 1)*s > x``.
    As ``0 < delta < s``, ``B - 1`` is ``floor(x/s)`` or ``floor(x/s) + 1``. In the first
    case ``(B - 1)*s <= x``, nothing is dropped and the size is ``B = A``; in the second
    ``(B - 1)*s > x``, the last window is dropped and the size is ``B - 1 = A``.
    """
    return (f + (before - 1)).floordiv(s) + 1


def conv_out(
    f_in: Dim | int,
    k: int,
    s: int = 1,
    pad: tuple[int, int] | int = (0, 0),
    d: int = 1,
    ceil: bool = False,
) -> Dim:
    """Output size of a convolution / pooling window along one axis.

    With the effective kernel ``ke = d*(k - 1) + 1``::

        floor mode:  F_out = floor((F_in + p_before + p_after - ke) / s) + 1
        ceil mode:   F_out = ceil((F_in + p_before + p_after - ke) / s) + 1
                     and, as in PyTorch, F_out -= 1 if (F_out - 1)*s >= F_in + p_before
                     (the last window must start inside the input or the left padding)

    ``f_in`` may be symbolic, and the result is exact for every value of the symbols.
    In ceil mode ``(F_out - 1)*s - F_in - p_before`` lies in
    ``[p_after - ke, p_after - ke + s - 1]``: when that range is all ``>= 0`` or all
    ``< 0`` the correction is decided; otherwise whether it applies depends on ``F_in``
    mod ``s``, and the size is the count of windows that start inside the input or the
    left padding, ``floor((F_in + p_before - 1) / s) + 1``, which equals PyTorch's
    result for every ``F_in`` (see :func:`_window_starts`).
    ``pad`` is ``(before, after)`` or one int for both.
    The result may be ``< 1`` for constants; the caller reports that error.
    """
    k = _check_pos("kernel size", k)
    s = _check_pos("stride", s)
    d = _check_pos("dilation", d)
    before, after = _pads(pad)
    return _conv_out(as_dim(f_in), k, s, before, after, d, ceil)[0]


def transposed_conv_out(
    f_in: Dim | int,
    k: int,
    s: int = 1,
    pad: tuple[int, int] | int = (0, 0),
    d: int = 1,
    output_padding: int = 0,
) -> Dim:
    """Output size of a transposed convolution along one axis::

    F_out = (F_in - 1)*s - p_before - p_after + d*(k - 1) + output_padding + 1
    """
    k = _check_pos("kernel size", k)
    s = _check_pos("stride", s)
    d = _check_pos("dilation", d)
    before, after = _pads(pad)
    output_padding = operator.index(output_padding)
    if output_padding < 0:
        raise ValueError(f"output_padding must be >= 0, got {output_padding}")
    return (as_dim(f_in) - 1) * s + (d * (k - 1) + output_padding + 1 - before - after)


def conv_formula(
    f_in: Dim | int,
    k: int,
    s: int,
    pad: tuple[int, int] | int,
    d: int = 1,
    ceil: bool = False,
) -> str:
    """Render the :func:`conv_out` formula with the numbers substituted, for errors.

    Symmetric padding and ``d == 1``::

        F_out = floor((F_in - k + 2p) / s) + 1 = floor((5 - 7 + 2*0) / 1) + 1 = -1

    otherwise::

        F_out = floor((F_in + p_before + p_after - d*(k - 1) - 1) / s) + 1
              = floor((5 + 1 + 2 - 2*(3 - 1) - 1) / 1) + 1 = 4

    (on one line).  ``ceil`` replaces ``floor`` in ceil mode; when PyTorch's
    ceil-mode correction applies, ``- 1 (...)`` is appended with the reason.
    A symbolic ``f_in`` is substituted as text (parenthesised unless it is a
    single name) and the result is symbolic.
    """
    k = _check_pos("kernel size", k)
    s = _check_pos("stride", s)
    d = _check_pos("dilation", d)
    before, after = _pads(pad)
    f = as_dim(f_in)
    ft = str(f)
    if not (f.is_const or _IDENT.match(ft)):
        ft = f"({ft})"
    fn = "ceil" if ceil else "floor"
    if before == after and d == 1:
        generic = f"{fn}((F_in - k + 2p) / s) + 1"
        concrete = f"{fn}(({ft} - {k} + 2*{before}) / {s}) + 1"
    else:
        generic = f"{fn}((F_in + p_before + p_after - d*(k - 1) - 1) / s) + 1"
        concrete = f"{fn}(({ft} + {before} + {after} - {d}*({k} - 1) - 1) / {s}) + 1"
    out, note = _conv_out(f, k, s, before, after, d, ceil)
    if note == "starts":
        return (
            f"F_out = {generic} = {concrete}, less 1 when the last window would start in"
            f" the right padding = floor(({ft} + {before} - 1) / {s}) + 1 = {out}"
            " (the windows that start inside the input or the left padding)"
        )
    if note == "dropped":
        return (
            f"F_out = {generic} = {concrete} = {out + 1} - 1 = {out}"
            " (the last window would start in the right padding, so it is dropped)"
        )
    return f"F_out = {generic} = {concrete} = {out}"


def transposed_conv_formula(
    f_in: Dim | int,
    k: int,
    s: int,
    pad: tuple[int, int] | int,
    d: int = 1,
    output_padding: int = 0,
) -> str:
    """Render the :func:`transposed_conv_out` formula with the numbers substituted::

        F_out = (F_in - 1)*s - 2p + d*(k - 1) + output_padding + 1
              = (1 - 1)*1 - 2*3 + 1*(3 - 1) + 0 + 1 = -3

    (on one line); ``p_before + p_after`` replaces ``2p`` for asymmetric padding. A
    symbolic ``f_in`` is substituted as text, parenthesised unless it is a single name.
    """
    out = transposed_conv_out(f_in, k, s, pad, d, output_padding)
    before, after = _pads(pad)
    f = as_dim(f_in)
    ft = str(f)
    if not (f.is_const or _IDENT.match(ft)):
        ft = f"({ft})"
    if before == after:
        generic = "(F_in - 1)*s - 2p + d*(k - 1) + output_padding + 1"
        pads = f"2*{before}"
    else:
        generic = "(F_in - 1)*s - p_before - p_after + d*(k - 1) + output_padding + 1"
        pads = f"{before} - {after}"
    return (f"F_out = {generic} = ({ft} - 1)*{s} - {pads} + {d}*({k} - 1) + "
            f"{output_padding} + 1 = {out}")
