"""Torch helper of gather: Python's negative indices, which torch.gather refuses.

The source emitter copies this definition into generated files: inside it only the names
torch, nn, F and math are used.
"""

from __future__ import annotations

import torch


def wrap_index(index, size):
    """``index`` with its negative entries counted from the end of an axis of ``size``, as
    Python's (-1 is the last). An entry outside [-size, size) stays out of range, so that
    gather refuses it."""
    return torch.where(index < 0, index + size, index)
