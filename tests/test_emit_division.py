"""A number over a tensor in the emitted source: ``torch.div(7.0, x)``, the quotient
build_module and NumPy compute; Python's ``7.0 / x`` is torch's ``7 * reciprocal(x)``, an
ulp away."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec.backends.torch import build_module, emit_source  # noqa: E402


def test_a_number_over_a_tensor_is_the_exact_quotient():
    spec = nnspec.loads("model M(x: [N, 4]) {\n    return (7 / x) + (x / 3)\n}\n")
    src = emit_source(spec)
    assert "torch.div(7.0, x)" in src and "x / 3" in src
    ns: dict = {}
    exec(compile(src, "<emitted>", "exec"), ns)  # noqa: S102
    x = torch.rand(4000, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = x + 0.1
    want = 7 / x.numpy() + x.numpy() / 3
    assert np.array_equal(ns["M"]().double()(x).numpy(), want)
    assert np.array_equal(build_module(spec).double()(x).numpy(), want)
