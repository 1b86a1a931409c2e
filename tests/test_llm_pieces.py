"""The pieces of current LLMs that are layer kinds: rmsnorm (torch.nn.RMSNorm) and silu,
and SwiGLU written with them; both backends and the reference backward against torch."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from nnspec.backends.numpy import NumpyModel

from _gradcheck import check_autograd

torch = pytest.importorskip("torch")
from nnspec.backends.torch import build_module  # noqa: E402

SWIGLU = """
# LLaMA's feed-forward: w2(silu(w1 x) * w3 x), pre-normed with RMSNorm, residual
block FeedForward(x, d, ff) {
    h = x | rmsnorm eps=1e-5 as norm
    g = h | dense ff bias=false as w1 | silu
    u = h | dense ff bias=false as w3
    f = (g * u) | dense d bias=false as w2
    return x + f
}
model M(x: [N, 3, 8]) {
    FeedForward(8, 12) as ff
    rms_norm axes=2 | swish
}
"""


def test_state_dict_and_outputs_equal_hand_written_pytorch():
    spec = nnspec.loads(SWIGLU, "s.nn")
    assert list(spec.state_shapes("M")) == ["ff.norm.weight", "ff.w1.weight", "ff.w3.weight",
                                            "ff.w2.weight", "rmsnorm_0.weight"]
    net = build_module(spec, seed=0, dtype=torch.float64).eval()
    sd = {k: v.detach() for k, v in net.state_dict().items()}
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    norm = torch.nn.RMSNorm(8, eps=1e-5).double()
    norm.weight.data = sd["ff.norm.weight"]
    h = norm(x)
    f = (torch.nn.functional.silu(h @ sd["ff.w1.weight"].T) * (h @ sd["ff.w3.weight"].T)) \
        @ sd["ff.w2.weight"].T
    y = x + f
    # torch's default eps (None) is the dtype's machine epsilon
    y = torch.nn.functional.rms_norm(y, (3, 8), sd["rmsnorm_0.weight"], eps=None)
    want = torch.nn.functional.silu(y).detach()
    torch.testing.assert_close(net(x).detach(), want, rtol=0, atol=1e-14)
    ref = NumpyModel(spec, params={k: v.numpy() for k, v in sd.items()}, dtype=np.float64)
    np.testing.assert_allclose(ref(x.numpy()), want.numpy(), rtol=0, atol=1e-13)


def test_reference_gradients_agree_with_torch_autograd():
    spec = nnspec.loads(SWIGLU, "s.nn")
    check_autograd(spec, [np.random.default_rng(0).standard_normal((2, 3, 8))])


def test_rmsnorm_needs_concrete_normalised_dims():
    spec = nnspec.loads("model M(x: [N, T]) {\n    rmsnorm\n}", "r.nn", strict=False)
    (d,) = spec.diagnostics
    assert "rmsnorm's normalised dims" in d.message
