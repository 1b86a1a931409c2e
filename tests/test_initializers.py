"""Initialisers as data in the spec (``init=normal(0, 0.02)``, ``bias_init=zeros``): the
distributions are torch.nn.init's (fans, gains and bounds compared with torch's own
functions), one seed gives the same weights in both backends, the emitted source calls
nn.init as a person would, the IR stores them as text, and every misuse is located."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import nnspec
from nnspec.backends import weights as draw_mod
from nnspec.layers import initializers as I
from nnspec.backends.numpy import NumpyModel
from nnspec.backends.torch import build_module, emit_source
from nnspec.ir import Program
from nnspec.layers.base import W

from _util import import_source

# ---- the text form: names, aliases, defaults, round trip ----------------------------------


@pytest.mark.parametrize("text, name, args, mode", [
    ("normal(0, 0.02)", "normal", (0.0, 0.02), "fan_in"),
    ("normal", "normal", (0.0, 1.0), "fan_in"),
    ("gaussian(1)", "normal", (1.0, 1.0), "fan_in"),
    ("uniform(-0.1, 0.1)", "uniform", (-0.1, 0.1), "fan_in"),
    ("xavier", "xavier_uniform", (1.0,), "fan_in"),
    ("glorot_normal(2)", "xavier_normal", (2.0,), "fan_in"),
    ("he_normal(mode=fan_out)", "kaiming_normal", (0.0,), "fan_out"),
    ("kaiming(0.2)", "kaiming_uniform", (0.2,), "fan_in"),
    ("orthogonal(1.5)", "orthogonal", (1.5,), "fan_in"),
    ("trunc_normal(0, 0.02, -0.04, 0.04)", "trunc_normal", (0.0, 0.02, -0.04, 0.04), "fan_in"),
    ("constant(0.1)", "constant", (0.1,), "fan_in"),
    ("zeros", "zeros", (), "fan_in"),
    ("normal(std=2, mean=1)", "normal", (1.0, 2.0), "fan_in"),
])
def test_text_form_reads_and_round_trips(text, name, args, mode):
    got = I.parse(text)
    assert (got.name, got.args, got.mode) == (name, args, mode)
    assert I.parse(str(got)) == got


def test_canonical_text_drops_trailing_defaults():
    assert str(I.parse("normal(0, 0.02)")) == "normal(0, 0.02)"
    assert str(I.parse("normal(0, 1)")) == "normal"
    assert str(I.parse("xavier(1)")) == "xavier_uniform"
    assert str(I.parse("kaiming_normal(0, mode=fan_out)")) == "kaiming_normal(mode=fan_out)"
    assert str(I.parse("constant(0)")) == "constant(0)"  # a required argument stays


@pytest.mark.parametrize("text, message", [
    ("normal(0, -1)", "normal's std must be >= 0, got -1"),
    ("uniform(1, 0)", "uniform(a, b) needs a <= b, got a=1 > b=0"),
    ("constant", "constant needs its argument value: constant(value)"),
    ("normal(1, 2, 3)", "normal takes at most 2 arguments (mean, std), got 3"),
    ("xavier(gain=x)", "xavier_uniform's gain must be a number, got 'x'"),
    ("kaiming(mode=sideways)", "kaiming_uniform's mode must be fan_in or fan_out"),
    ("orthogonal(mode=fan_out)", "orthogonal has no argument 'mode'"),
    ("trunc_normal(0, 1, 2, 1)", "trunc_normal needs a < b"),
    ("__import__('os')", "unknown initialiser '__import__'"),
    ("normal(0, os.getcwd())", "not an initialiser argument: 'os.getcwd()'"),
    ("normal(0, 1); import os", "not an initialiser"),
    ("nomral", "unknown initialiser 'nomral'"),
])
def test_bad_text_is_refused_with_the_reason(text, message):
    with pytest.raises(I.InitError, match=None) as e:
        I.parse(text)
    assert message in str(e.value)


# ---- the distributions are torch.nn.init's ---------------------------------------------


@pytest.mark.parametrize("shape", [(64, 32), (16, 8, 3, 3), (8, 4, 5), (6, 3, 2, 2, 2)])
def test_fans_are_torchs(shape):
    t = torch.empty(shape)
    assert I.fans(shape) == nn.init._calculate_fan_in_and_fan_out(t)


def _torch_bound(fn, shape, **kw) -> float:
    """The bound (uniform) or std (normal) torch uses, read off a large draw of its own."""
    t = torch.empty(shape)
    fn(t, **kw)
    return t


@pytest.mark.parametrize("text, fn, kw, kind", [
    ("xavier", nn.init.xavier_uniform_, {}, "uniform"),
    ("xavier(2)", nn.init.xavier_uniform_, {"gain": 2.0}, "uniform"),
    ("xavier_normal(0.5)", nn.init.xavier_normal_, {"gain": 0.5}, "normal"),
    ("kaiming", nn.init.kaiming_uniform_, {"nonlinearity": "relu"}, "uniform"),
    ("kaiming(0.2)", nn.init.kaiming_uniform_, {"a": 0.2}, "uniform"),
    ("kaiming_normal(mode=fan_out)", nn.init.kaiming_normal_,
     {"mode": "fan_out", "nonlinearity": "relu"}, "normal"),
])
@pytest.mark.parametrize("shape", [(200, 300), (64, 32, 3, 3)])
def test_fan_based_scales_equal_torchs(text, fn, kw, kind, shape):
    dist = I.parse(text).dist(shape)
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    if "xavier" in text:
        gain = kw.get("gain", 1.0)
        want = gain * math.sqrt((6.0 if kind == "uniform" else 2.0) / (fan_in + fan_out))
    else:
        gain = nn.init.calculate_gain("leaky_relu", kw.get("a", 0.0))
        fan = fan_out if kw.get("mode") == "fan_out" else fan_in
        want = gain * (math.sqrt(3.0 / fan) if kind == "uniform" else 1.0 / math.sqrt(fan))
    assert dist == (kind, pytest.approx(want, rel=1e-12))
    torch.manual_seed(0)
    t = _torch_bound(fn, shape, **kw)
    got = draw_mod.draw({"w": W(shape, dist)}, seed=0, dtype=np.float64)["w"]
    if kind == "uniform":  # torch's and nnspec's draws fill the same interval
        assert t.abs().max().item() <= want and np.abs(got).max() <= want
        assert t.abs().max().item() > 0.99 * want and np.abs(got).max() > 0.99 * want
    else:
        assert t.std().item() == pytest.approx(want, rel=0.03)
        assert got.std() == pytest.approx(want, rel=0.03)


def test_orthogonal_rows_or_columns_are_orthonormal_times_gain():
    for shape in [(8, 20), (20, 8), (6, 3, 2, 2)]:
        w = draw_mod.draw({"w": W(shape, I.parse("orthogonal(2)").dist(shape))},
                          seed=1, dtype=np.float64)["w"].reshape(shape[0], -1)
        small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        np.testing.assert_allclose(small, 4.0 * np.eye(small.shape[0]), atol=1e-12)


def test_trunc_normal_stays_within_its_bounds_with_torchs_moments():
    shape = (400, 500)
    dist = I.parse("trunc_normal(0.5, 1, -1, 1.5)").dist(shape)
    got = draw_mod.draw({"w": W(shape, dist)}, seed=2, dtype=np.float64)["w"]
    t = torch.empty(shape)
    torch.manual_seed(0)
    nn.init.trunc_normal_(t, 0.5, 1.0, -1.0, 1.5)
    assert got.min() >= -1.0 and got.max() <= 1.5
    assert got.mean() == pytest.approx(t.mean().item(), abs=0.01)
    assert got.std() == pytest.approx(t.std().item(), rel=0.01)


def test_plain_distributions():
    shape = (300, 400)
    for text, check in [
        ("normal(0, 0.02)", lambda a: a.std() == pytest.approx(0.02, rel=0.01)),
        ("normal(1, 0.02)", lambda a: a.mean() == pytest.approx(1.0, abs=1e-3)),
        ("uniform(2, 3)", lambda a: 2.0 <= a.min() and a.max() < 3.0 and a.max() > 2.99),
        ("constant(0.25)", lambda a: np.all(a == 0.25)),
        ("ones", lambda a: np.all(a == 1.0)),
    ]:
        a = draw_mod.draw({"w": W(shape, I.parse(text).dist(shape))}, seed=0,
                          dtype=np.float64)["w"]
        assert check(a), text


# ---- in specs: per weight, both backends, emitted source ----------------------------------

DCGAN_LIKE = """
const W0 = normal(0, 0.02)
block Up(x, c, w=W0) {
    convtranspose c k=4 s=2 p=1 bias=false init=w | batchnorm init=normal(1, 0.02) | relu
}
model G(z: [N, 8, 1, 1]) -> [N, 3, 16, 16] {
    convtranspose 16 k=4 bias=false init=W0      : [N, 16, 4, 4]
    batchnorm init=normal(1, 0.02) | relu
    Up(8)                                        : [N, 8, 8, 8]
    convtranspose 3 k=4 s=2 p=1 init=orthogonal bias_init=constant(0.1)
    tanh
}
"""


def test_initialisers_reach_each_weight():
    spec = nnspec.loads(DCGAN_LIKE, "g.nn")
    shapes = spec.state_shapes()
    assert shapes["convtranspose_0.weight"].init == ("normal", 0.02)
    assert shapes["batchnorm_0.weight"].init == ("gauss", 1.0, 0.02)
    assert shapes["batchnorm_0.bias"].init == ("zeros",)  # the default, untouched
    assert shapes["batchnorm_0.running_var"].init == ("ones",)  # buffers never change
    assert shapes["up_0.convtranspose_0.weight"].init == ("normal", 0.02)
    assert shapes["convtranspose_1.weight"].init == ("orthogonal", 1.0)
    assert shapes["convtranspose_1.bias"].init == ("constant", 0.1)


def test_same_seed_same_weights_in_both_backends():
    spec = nnspec.loads(DCGAN_LIKE, "g.nn")
    mod = build_module(spec, seed=7, dtype=torch.float64)
    ref = NumpyModel(spec, seed=7, dtype=np.float64)
    state = mod.state_dict()
    assert list(state) == list(ref.params)
    for k, v in ref.params.items():
        np.testing.assert_array_equal(state[k].numpy(), v)
    w = ref.params["convtranspose_0.weight"]
    assert w.std() == pytest.approx(0.02, rel=0.1)
    assert ref.params["batchnorm_0.weight"].mean() == pytest.approx(1.0, abs=0.02)
    np.testing.assert_array_equal(ref.params["convtranspose_1.bias"], 0.1)


def test_emitted_source_calls_nn_init(tmp_path):
    spec = nnspec.loads(DCGAN_LIKE, "g.nn")
    text = emit_source(spec)
    for line in [
        "nn.init.normal_(self.convtranspose_0.weight, 0.0, 0.02)",
        "nn.init.normal_(self.batchnorm_0.weight, 1.0, 0.02)",
        "nn.init.orthogonal_(self.convtranspose_1.weight)",
        "nn.init.constant_(self.convtranspose_1.bias, 0.1)",
    ]:
        assert line in text
    # the block's own layer, initialised in its class (the model's and Up's convtranspose_0)
    assert "class Up(nn.Module)" in text
    assert text.count("nn.init.normal_(self.convtranspose_0.weight, 0.0, 0.02)") == 2
    assert "batchnorm_0.bias" not in text  # only what the spec sets
    (tmp_path / "gen_g.py").write_text(text)
    gen = import_source(tmp_path / "gen_g.py", "gen_g")
    torch.manual_seed(0)
    net = gen.G()
    assert torch.all(net.convtranspose_1.bias == 0.1)
    assert net.convtranspose_0.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert net.batchnorm_0.weight.mean().item() == pytest.approx(1.0, abs=0.02)
    w = net.convtranspose_1.weight.detach().reshape(8, -1)
    np.testing.assert_allclose((w @ w.T).numpy(), np.eye(8), atol=1e-5)


def test_ir_stores_initialisers_as_text_and_reads_them_back():
    spec = nnspec.loads(DCGAN_LIKE, "g.nn")
    text = spec.program.to_json()
    assert '"init": "normal(1, 0.02)"' in text
    assert '"bias_init": "constant(0.1)"' in text
    back = Program.from_json(text)
    assert back.model_dump() == spec.program.model_dump()


def test_ir_with_a_bad_initialiser_is_a_located_error(tmp_path, capsys):
    spec = nnspec.loads(DCGAN_LIKE, "g.nn")
    text = spec.program.to_json().replace('"normal(1, 0.02)"', '"__import__(\'os\').system(1)"',
                                          1)
    path = tmp_path / "g.json"
    path.write_text(text)
    from nnspec.tools.cli import main

    rc = main(["check", str(path)])
    assert rc == 1
    cap = capsys.readouterr()
    err = cap.out + cap.err
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "__import__" in t)
    assert f"g.json:{line}:7: error: models[0].nodes[1].params.init: invalid argument for " \
        "batchnorm: unknown initialiser '__import__'; known: default, zeros" in err


ERRORS = """
model M(x: [N, 8, 4, 4]) {
    a = x | batchnorm init=xavier
    b = x | dense 4 bias=false bias_init=zeros
    c = x | dense 4 init=normall(0, 1)
    d = x | dense 4 init=uniform(1, 0)
    e = x | dense 4 init=(1, 2)
    x | layernorm affine=false init=ones
}
"""


def test_misuse_is_located():
    spec = nnspec.loads(ERRORS, "e.nn", strict=False)
    got = {(d.span.line, d.span.col, d.code): d.message for d in spec.diagnostics}
    assert got[(3, 23, "E340")] == (
        "xavier_uniform needs a weight of rank 2 or more (fan in and fan out are undefined "
        "for rank 1), but batchnorm's weight is [8]")
    assert got[(4, 32, "E340")] == ("bias_init=zeros initialises nothing: this dense has no "
                                    "bias")
    assert got[(5, 26, "E073")] == "unknown initialiser 'normall'"
    assert got[(6, 26, "E073")] == "uniform(a, b) needs a <= b, got a=1 > b=0"
    assert (7, 21, "E046") in got and "an initialiser is a name" in got[(7, 21, "E046")]
    assert got[(8, 32, "E340")] == ("init=ones initialises nothing: this layernorm has no "
                                    "trainable weight")
    assert len(spec.diagnostics) == 6
