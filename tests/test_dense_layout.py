"""``dense <out> layout=in_out``: the weight stored [in, out] as Hugging Face's Conv1D
(GPT-2) stores it, so that such checkpoints load by key; both back ends and the compiled
source equal Conv1D's own forward, the gradients autograd's."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module, emit_source  # noqa: E402
from nnspec.core.diagnostics import SpecError  # noqa: E402

SPEC = """
model M(x: [N, T, 5]) {
    return x | dense 7 layout=in_out as proj
}
"""


def _conv1d(w, b, x):  # transformers.pytorch_utils.Conv1D.forward
    return torch.addmm(b, x.view(-1, x.size(-1)), w).view(x.size()[:-1] + (w.size(-1),))


def test_weight_is_in_out_and_outputs_equal_conv1d():
    spec = nnspec.loads(SPEC)
    m = build_module(spec).double()
    assert tuple(m.proj.weight.shape) == (5, 7)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 7, generator=g, dtype=torch.float64)
    b = torch.randn(7, generator=g, dtype=torch.float64)
    m.load_state_dict({"proj.weight": w, "proj.bias": b}, strict=True)
    x = torch.randn(2, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    want = _conv1d(w, b, x)
    assert torch.allclose(m(x), want, rtol=0, atol=1e-12)
    ns: dict = {}
    exec(compile(emit_source(spec), "<emitted>", "exec"), ns)  # noqa: S102
    e = ns["M"]().double()
    e.load_state_dict({"proj.weight": w, "proj.bias": b}, strict=True)
    assert torch.allclose(e(x), want, rtol=0, atol=1e-12)
    nm = NumpyModel(spec, params={"proj.weight": w.numpy(), "proj.bias": b.numpy()})
    assert np.abs(nm(x.detach().numpy()) - want.detach().numpy()).max() <= 1e-12
    # the NumPy backward equals autograd's, the weight's gradient in its [in, out] layout
    gy = torch.randn(2, 3, 7, generator=g, dtype=torch.float64)
    w.requires_grad_(True)
    _conv1d(w, b, x).backward(gy)
    grads = nm.vjp(x.detach().numpy(), cotangent=gy.numpy())
    assert grads.params["proj.weight"].shape == (5, 7)
    assert np.abs(grads.params["proj.weight"] - w.grad.numpy()).max() <= 1e-12
    assert np.abs(grads.inputs[0] - x.grad.numpy()).max() <= 1e-12


def test_weight_norm_with_in_out_is_a_located_error():
    with pytest.raises(SpecError, match="weight_norm= with layout=in_out"):
        nnspec.loads(SPEC.replace("layout=in_out", "layout=in_out weight_norm=0"))
