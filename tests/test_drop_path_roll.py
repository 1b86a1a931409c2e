"""drop_path (stochastic depth) and roll: torch's semantics in both backends, dropout's
contract for drop_path (a sample per example, scaled by 1/(1 - p), the identity in eval
mode, the same draws in both backends given one Noise), backward by finite differences,
the located errors and the emitted source."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from _gradcheck import check_kind
from _util import import_source
from nnspec.backends.numpy import NumpyModel
from nnspec.layers import REGISTRY, TensorType
from nnspec.layers.base import NumpyCtx
from nnspec.layers.stochastic import Noise

torch = pytest.importorskip("torch")
from nnspec.backends.torch import build_module  # noqa: E402
from nnspec.layers.torch.stochastic import use_noise  # noqa: E402
from nnspec.tools.crosscheck import crosscheck, crosscheck_grad  # noqa: E402

# a Swin-style block: a cyclic shift of the windows, a residual branch dropped per example,
# and the shift undone
SWIN = """
model Shifted(x: [N, 4, 4, 6]) -> [N, 4, 4, 6] {
    s = x | roll (-2, -2) dims=(1, 2)
    y = s | dense 6 as fc | gelu | drop_path 0.5 as drop
    z = s + y
    roll (2, 2) dims=(1, 2)
}
"""


def _one_error(body: str, inputs: str = "x: [N, 3, 4]"):
    spec = nnspec.loads(f"model M({inputs}) {{\n    {body}\n}}\n", "m.nn", strict=False)
    assert len(spec.diagnostics) == 1, [d.message for d in spec.diagnostics]
    return spec.diagnostics[0]


# ---- roll ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,shifts,dims", [
    ((2, 3, 4), (-1, 2), (1, -1)),
    ((2, 3, 4), 5, 2),
    ((2, 3, 4), 7, None),          # the flattened tensor
    ((2, 3, 4), (1, 2), (1, 1)),   # one axis twice: the shifts add up, as torch
    ((5,), -13, 0),
])
def test_roll_is_torch_roll(shape, shifts, dims):
    kind = REGISTRY["roll"]
    args = {"shifts": shifts} if dims is None else {"shifts": shifts, "dims": dims}
    p = kind.Params.model_validate(args)
    x = np.random.default_rng(0).standard_normal(shape)
    want = torch.roll(torch.from_numpy(x), **args).numpy()
    np.testing.assert_array_equal(kind.numpy(p, {}, [x], NumpyCtx()), want)
    assert str(kind.infer(p, [TensorType(shape)])) == str(TensorType(shape))
    check_kind(kind, args, [TensorType(shape)])


def test_roll_errors_are_located():
    d = _one_error("roll (1, 2) dims=1")
    assert d.code == "E362" and "roll gives 2 shifts for 1 axis" in d.message
    assert (d.span.line, d.span.col) == (2, 17)  # at dims=
    d = _one_error("roll (1, 1) dims=(1, 3)")
    assert d.code == "E360" and "axis 3 is out of range for a rank-3 input" in d.message
    d = _one_error("roll (1, 2)")
    assert "without dims rolls the flattened tensor by one shift" in d.message
    assert d.hint == "give one axis per shift: dims=(1, 2)"


# ---- drop_path ----------------------------------------------------------------------------


def test_drop_path_drops_whole_examples_in_training_only():
    kind = REGISTRY["drop_path"]
    p = kind.Params.model_validate({"p": 0.25})
    x = np.random.default_rng(0).standard_normal((4000, 3, 2)) + 5.0  # never zero
    assert kind.numpy(p, {}, [x], NumpyCtx(training=False)) is x
    y = kind.numpy(p, {}, [x], NumpyCtx(training=True, rng=np.random.default_rng(1)))
    # one draw per example: a row is x / (1 - p) or zeros
    kept = np.all(y == x * (1 / 0.75), axis=(1, 2))
    assert np.all(kept | np.all(y == 0, axis=(1, 2)))
    assert abs(kept.mean() - 0.75) < 5 * np.sqrt(0.75 * 0.25 / len(x))
    # torch's module, with torch's generator, keeps the same contract
    mod = build_module(nnspec.loads("model D(x: [N, 3, 2]) {\n    drop_path 0.25\n}\n",
                                    "d.nn"), dtype=torch.float64)
    t = torch.from_numpy(x)
    assert mod.eval()(t) is t
    torch.manual_seed(0)
    y = mod.train()(t).numpy()
    kept = np.all(y == x * (1 / 0.75), axis=(1, 2))
    assert np.all(kept | np.all(y == 0, axis=(1, 2)))
    assert abs(kept.mean() - 0.75) < 5 * np.sqrt(0.75 * 0.25 / len(x))
    # p = 0 is the identity in training too
    p0 = kind.Params.model_validate({"p": 0.0})
    assert kind.numpy(p0, {}, [x], NumpyCtx(training=True, rng=np.random.default_rng(1))) is x


def test_drop_path_is_torchvisions_stochastic_depth_given_its_mask():
    """torchvision.ops.stochastic_depth(x, p, "row") draws bernoulli(1 - p) per row: with
    the same rows kept, the outputs are equal."""
    from _torchvision import models

    models()
    from torchvision.ops import stochastic_depth

    x = torch.randn(64, 3, 5, dtype=torch.float64)
    mod = build_module(nnspec.loads("model D(x: [N, 3, 5]) {\n    drop_path 0.3\n}\n",
                                    "d.nn"), dtype=torch.float64).train()
    torch.manual_seed(0)
    ours = mod(x)
    kept = ours.reshape(64, -1).abs().sum(1) > 0
    torch.manual_seed(1)
    theirs = stochastic_depth(x, 0.3, "row", training=True)
    theirs_kept = theirs.reshape(64, -1).abs().sum(1) > 0
    both = kept & theirs_kept
    assert both.any() and (~kept).any()
    torch.testing.assert_close(ours[both], theirs[both], rtol=0, atol=0)
    assert torch.equal(stochastic_depth(x, 0.3, "row", training=False), mod.eval()(x))


def test_both_backends_draw_the_same_examples_from_one_noise():
    spec = nnspec.loads(SWIN, "swin.nn")
    x = np.random.default_rng(2).standard_normal((8, 4, 4, 6))
    ref = NumpyModel(spec, seed=0, dtype=np.float64)
    mod = build_module(spec, seed=0, dtype=torch.float64).eval()
    use_noise(mod, Noise(5), sample=True)
    with torch.no_grad():
        got = mod.trace(torch.from_numpy(x))
    want = ref(x, trace=True, noise=Noise(5), sample=True)
    drop = next(n.id for n in spec.model().nodes if n.op == "drop_path")
    rows = np.abs(want[drop]).reshape(8, -1).sum(1)
    assert (rows == 0).any() and (rows > 0).any()  # some examples dropped, some kept
    # the same examples dropped (the values equal to rounding: dense and gelu before)
    np.testing.assert_array_equal(np.abs(got[drop].numpy()).reshape(8, -1).sum(1) == 0,
                                  rows == 0)
    np.testing.assert_allclose(got[drop].numpy(), want[drop], rtol=1e-13, atol=1e-15)
    use_noise(mod, None)
    # and crosscheck says so, layer by layer and for the gradients
    for sample in (False, True):
        assert crosscheck(spec, dims={"N": 6}, sample=sample).ok
        assert crosscheck_grad(spec, dims={"N": 6}, sample=sample).ok


def test_drop_path_backward_uses_the_forward_s_mask():
    check_kind(REGISTRY["drop_path"], {"p": 0.5}, [TensorType((6, 3, 2))], training=True)
    check_kind(REGISTRY["drop_path"], {"p": 0.5}, [TensorType((6, 3, 2))], training=False)


@pytest.mark.parametrize("body,inputs,code,message", [
    ("drop_path 1.0", "x: [N, 3]", "E046", "must be in [0, 1)"),
    ("drop_path 0.1", "x: [N, 3] int", "E300", "drop_path samples from a float tensor"),
    ("sum | drop_path 0.1", "x: [N, 3]", "E300", "rank 1 or more ([N, ...])"),
])
def test_drop_path_errors_are_located(body, inputs, code, message):
    d = _one_error(body, inputs)
    assert d.code == code and message in d.message, d.message


# ---- the emitted source -------------------------------------------------------------------


def test_emitted_source_rolls_and_drops_as_build_module_does(tmp_path):
    from nnspec.backends.emit.emitter import emit_source

    spec = nnspec.loads(SWIN, "swin.nn")
    src = emit_source(spec)
    assert "s = torch.roll(x, shifts=(-2, -2), dims=(1, 2))" in src
    assert "self.drop = DropPath(0.5)" in src and "class DropPath(StochasticLayer):" in src
    file = tmp_path / "gen_swin.py"
    file.write_text(src)
    net = import_source(file, "gen_swin").Shifted().double()
    ref = build_module(spec, seed=0, dtype=torch.float64)
    net.load_state_dict(ref.state_dict())
    x = torch.randn(16, 4, 4, 6, dtype=torch.float64)
    for mode in (False, True):  # training: the same draws from torch's generator
        torch.manual_seed(3)
        a = net.train(mode)(x)
        torch.manual_seed(3)
        torch.testing.assert_close(a, ref.train(mode)(x), rtol=0, atol=0)
    # the shift is undone: with the branch dropped for every example, the output is x
    net.drop.p = 0.999999
    torch.manual_seed(0)
    torch.testing.assert_close(net.train()(x), x, rtol=0, atol=0)
