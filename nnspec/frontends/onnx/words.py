"""How numbers, tuples and paddings are written in the stages an import makes."""

from __future__ import annotations

import math

import numpy as np


class NotFinite(ValueError):
    """A float attribute that is inf or NaN: no .nn literal holds it."""


def num(v, dtype=np.float32) -> str:
    """A float as the shortest text that reads back as the same value of ``dtype``
    (ONNX attributes are float32: 0.2, not 0.20000000298023224)."""
    f = float(v)
    if not math.isfinite(f):
        raise NotFinite(str(f))
    text = str(np.dtype(dtype).type(f))
    if "e" in text and "." not in text.split("e")[0]:
        mant, exp = text.split("e")
        text = f"{mant}.0e{exp}"
    return text if ("." in text or "e" in text) else text + ".0"


def scalar(v: np.ndarray) -> str:
    """A constant of one element, written as the .nn number it is."""
    x = np.asarray(v).reshape(-1)[0]
    if np.issubdtype(np.asarray(v).dtype, np.integer):
        return str(int(x))
    return num(x, np.asarray(v).dtype if np.asarray(v).dtype != object else np.float64)


def ints(v) -> str:
    """Sizes per spatial dim: one number when all are equal, else a tuple."""
    v = tuple(int(x) for x in v)
    if len(set(v)) == 1:
        return str(v[0])
    return tup(v)


def tup(v) -> str:
    return "(" + ", ".join(str(int(x)) for x in v) + ("," if len(v) == 1 else "") + ")"


def pads(before, after) -> str | None:
    """ONNX pads as a ``p=`` value: None for none, one number, a tuple per dim, or
    ``((before, after), ...)`` where they differ."""
    before, after = [int(x) for x in before], [int(x) for x in after]
    if not any(before) and not any(after):
        return None
    if before == after:
        return ints(before)
    pairs = ", ".join(f"({b}, {a})" for b, a in zip(before, after))
    return f"({pairs},)" if len(before) == 1 else f"({pairs})"


def dims(values) -> str:
    """A shape argument: ``[N, 16, -1]``."""
    return "[" + ", ".join(str(d) for d in values) + "]"
