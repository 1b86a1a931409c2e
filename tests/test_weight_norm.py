"""``weight_norm=<dim>`` of conv and dense: the torch helpers against
torch.nn.utils.weight_norm (parameters, keys, their order and values, the forward), Hugging
Face's legacy ``weight_g``/``weight_v`` checkpoints loading both ways, the NumPy forward and
backward against autograd and finite differences, the emitted source, and the errors."""

from __future__ import annotations

import inspect
import pickle
import warnings

import numpy as np
import pytest

import nnspec
from nnspec.core.diagnostics import SpecError

torch = pytest.importorskip("torch")
nn = torch.nn
from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module, emit_source  # noqa: E402
from nnspec.layers.torch import weightnorm as W  # noqa: E402

RNG = np.random.default_rng(11)


def _legacy(module, dim):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the function is deprecated
        return nn.utils.weight_norm(module, dim=dim)


@pytest.mark.parametrize("make, helper, dim, x", [
    (lambda: nn.Conv1d(8, 6, 5, padding=2, groups=2), W.WeightNormConv1d, 2, (2, 8, 11)),
    (lambda: nn.Conv2d(4, 6, 3, stride=2), W.WeightNormConv2d, 0, (2, 4, 7, 6)),
    (lambda: nn.Conv3d(2, 3, 2, bias=False), W.WeightNormConv3d, 1, (1, 2, 4, 3, 5)),
    (lambda: nn.Linear(5, 3), W.WeightNormLinear, 0, (4, 5)),
    (lambda: nn.Linear(5, 3), W.WeightNormLinear, 1, (4, 5)),
])
def test_the_helpers_are_torchs_legacy_weight_norm(make, helper, dim, x):
    torch.manual_seed(0)
    want = _legacy(make(), dim)
    sig = inspect.signature(helper)
    torch.manual_seed(0)
    args = {k: getattr(want, k) for k in ("in_channels", "out_channels", "kernel_size",
                                          "stride", "padding", "dilation", "groups",
                                          "in_features", "out_features")
            if k in sig.parameters}
    got = helper(**args, bias=want.bias is not None, dim=dim)
    assert list(got.state_dict()) == list(want.state_dict())  # bias, weight_g, weight_v
    for k, v in want.state_dict().items():
        torch.testing.assert_close(got.state_dict()[k], v, rtol=0, atol=0)
    got, want = got.double(), want.double()
    with torch.no_grad():  # a magnitude that is no longer the direction's norm
        want.weight_g.mul_(1.7)
    got.load_state_dict(want.state_dict())  # a checkpoint's weight_g / weight_v
    xt = torch.tensor(RNG.standard_normal(x))
    torch.testing.assert_close(got(xt), want(xt), rtol=1e-13, atol=1e-14)
    modern = nn.utils.parametrizations.weight_norm(make().double(), dim=dim)
    modern.load_state_dict(got.state_dict())  # its hook renames the legacy keys
    torch.testing.assert_close(modern(xt), got(xt), rtol=1e-13, atol=1e-14)
    copy = pickle.loads(pickle.dumps(got))
    torch.testing.assert_close(copy(xt), got(xt))


SPEC = """
model Pos(x: [N, 8, 20]) {
    conv 8 k=5 p=2 groups=2 weight_norm=2 as pos | gelu
    transpose 1 2 | dense 6 weight_norm=0 as fc | relu
    dense 3 weight_norm=1 bias=false as head
}
"""


def test_both_backends_and_the_emitted_source_agree(tmp_path):
    spec = nnspec.loads(SPEC, "pos.nn")
    nm = NumpyModel(spec, seed=0, dtype=np.float64)
    assert {k: v.shape for k, v in nm.params.items()} == {
        "pos.bias": (8,), "pos.weight_g": (1, 1, 5), "pos.weight_v": (8, 4, 5),
        "fc.bias": (6,), "fc.weight_g": (6, 1), "fc.weight_v": (6, 8),
        "head.weight_g": (1, 6), "head.weight_v": (3, 6)}
    net = build_module(spec, params=nm.params, dtype=torch.float64)
    assert list(net.state_dict()) == list(nm.params)
    x = RNG.standard_normal((2, 8, 20))
    xt = torch.tensor(x)
    want = net(xt)
    np.testing.assert_allclose(nm(x), want.detach().numpy(), rtol=1e-12, atol=1e-14)
    c = RNG.standard_normal(want.shape)
    (want * torch.tensor(c)).sum().backward()
    got = nm.vjp(x, cotangent=c)
    for k, prm in net.named_parameters():
        np.testing.assert_allclose(got.params[k], prm.grad.numpy(), rtol=1e-10, atol=1e-13,
                                   err_msg=k)
    src = emit_source(spec)
    assert "self.pos = WeightNormConv1d(8, 8, kernel_size=5, padding=2, groups=2, dim=2)" \
        in src
    assert "self.fc = WeightNormLinear(8, 6)" in src
    assert "self.head = WeightNormLinear(6, 3, bias=False, dim=1)" in src
    env: dict = {}
    exec(compile(src, "pos.py", "exec"), env)
    mod = env["Pos"]().double()
    mod.load_state_dict(net.state_dict())
    torch.testing.assert_close(mod(xt), want, rtol=1e-12, atol=1e-14)
    copy = pickle.loads(pickle.dumps(net))
    torch.testing.assert_close(copy(xt), want)


def test_the_gradients_of_g_and_v_equal_finite_differences():
    spec = nnspec.loads(SPEC, "pos.nn")
    nm = NumpyModel(spec, seed=1, dtype=np.float64)
    x = RNG.standard_normal((2, 8, 20))
    c = RNG.standard_normal(nm(x).shape)
    got = nm.vjp(x, cotangent=c).params
    h = 1e-6
    for key in ("pos.weight_g", "pos.weight_v", "fc.weight_g", "head.weight_v"):
        base = nm.params[key]
        for i in RNG.choice(base.size, size=3, replace=False):
            vals = []
            for sign in (1, -1):
                params = dict(nm.params)
                params[key] = base.copy()
                params[key].flat[i] += sign * h
                vals.append(float((NumpyModel(spec, params=params, dtype=np.float64)(x)
                                   * c).sum()))
            assert got[key].flat[i] == pytest.approx((vals[0] - vals[1]) / (2 * h),
                                                     rel=1e-6, abs=1e-8), key


def test_g_starts_near_the_norm_of_v():
    """torch takes g from the initial weight; nnspec draws it at the norm v's default
    draw is expected to have."""
    nm = NumpyModel(nnspec.loads(SPEC, "pos.nn"), seed=0, dtype=np.float64)
    v, g = nm.params["pos.weight_v"], nm.params["pos.weight_g"]
    norm = np.sqrt((v * v).sum(axis=(0, 1), keepdims=True))
    np.testing.assert_allclose(g, norm, rtol=0.3)
    assert len(np.unique(g)) == 1


@pytest.mark.parametrize("layer, message", [
    ("conv 8 k=3 weight_norm=3", "weight_norm=3 is not a dim of conv's weight (rank 3: 0 to 2)"),
    ("dense 4 weight_norm=2", "weight_norm=2 is not a dim of dense's weight (rank 2: 0 to 1)"),
    ("conv 8 k=3 weight_norm=-1", "weight_norm=-1 is not a dim of conv's weight"),
    ("dense 4 weight_norm=0 init=xavier", "init=xavier_uniform with weight_norm"),
])
def test_errors_are_located_at_the_argument(layer, message):
    text = f"model M(x: [N, 8, 16]) {{\n    {layer}\n}}\n"
    with pytest.raises(SpecError) as e:
        nnspec.loads(text, "m.nn")
    (d,) = e.value.diagnostics
    assert message in d.message
    assert d.span.line == 2
    arg = "init" if "init=" in message else "weight_norm"
    assert text.splitlines()[1][d.span.col - 1:].startswith(arg)
