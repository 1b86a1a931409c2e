"""relu6, hardtanh, hardswish, hardsigmoid, clamp, prelu, mish and softplus: values and
gradients as torch's (at the kinks too), finite differences, the emitted source, the
located errors of their arguments; and the did-you-mean of an unknown kind, offered only
for a plausible misspelling."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from nnspec.core.diagnostics import misspelt
from nnspec.layers import REGISTRY, TensorType
from nnspec.layers.activation import NOT_MISSPELT

from _gradcheck import check_autograd, check_kind

torch = pytest.importorskip("torch")
F = torch.nn.functional

# every kink of the kinds below, exactly, and values on both sides of them
KINKS = np.array([-7.0, -6.0, -3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 6.0, 7.0,
                  -2.9, 2.9, 5.9, 6.1, 0.25, 9.9, 10.1, 20.0, 20.5])

# (spec stage, torch's function of x, state_dict of the layer)
CASES = [
    ("relu6", F.relu6),
    ("hardtanh", F.hardtanh),
    ("hardtanh -2 0.5", lambda x: F.hardtanh(x, -2.0, 0.5)),
    ("hardtanh min=-0.5 max=-0.5", lambda x: F.hardtanh(x, -0.5, -0.5)),
    ("hardswish", F.hardswish),
    ("hardsigmoid", F.hardsigmoid),
    ("clamp 0 6", lambda x: torch.clamp(x, 0.0, 6.0)),
    ("clamp min=-1", lambda x: torch.clamp(x, min=-1.0)),
    ("clamp max=2", lambda x: torch.clamp(x, max=2.0)),
    ("clamp 1 1", lambda x: torch.clamp(x, 1.0, 1.0)),
    ("mish", F.mish),
    ("softplus", F.softplus),
    ("softplus 2 threshold=20", lambda x: F.softplus(x, beta=2.0, threshold=20.0)),
    ("softplus beta=0.5 threshold=5", lambda x: F.softplus(x, beta=0.5, threshold=5.0)),
]


def _spec(stage: str, shape: str = "[N, 22]"):
    return nnspec.loads(f"model M(x: {shape}) {{\n    {stage}\n}}\n", "act.nn")


@pytest.mark.parametrize("stage, fn", CASES, ids=[c[0] for c in CASES])
def test_values_and_gradients_are_torchs_at_the_kinks(stage, fn):
    from nnspec.backends.numpy import NumpyModel

    x = np.stack([KINKS, KINKS * 0.5, -KINKS])
    spec = _spec(stage)
    got = NumpyModel(spec, dtype=np.float64)(x)
    xt = torch.tensor(x, requires_grad=True)
    want = fn(xt)
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-14, atol=0)
    c = np.random.default_rng(0).standard_normal(x.shape)
    (want * torch.from_numpy(c)).sum().backward()
    grads = NumpyModel(spec, dtype=np.float64).vjp(x, cotangent=c)
    np.testing.assert_allclose(grads.inputs[0], xt.grad.numpy(), rtol=1e-14, atol=0)
    check_autograd(spec, [x], rtol=1e-14, atol=0)  # the torch back end's module too


def test_the_kink_gradients_are_the_ones_torch_gives():
    """Written out, so that a change of torch's rule shows here: none at relu6's 0 and 6
    nor at hardtanh's bounds, clamp's bounds inclusive, hardswish 0 at -3 and 1 at 3."""
    from nnspec.backends.numpy import NumpyModel

    x = np.array([[-3.0, -1.0, 0.0, 1.0, 3.0, 6.0]])
    ones = np.ones_like(x)

    def grad(stage):
        return NumpyModel(_spec(stage, "[N, 6]"), dtype=np.float64).vjp(
            x, cotangent=ones).inputs[0][0].tolist()

    assert grad("relu6") == [0, 0, 0, 1, 1, 0]
    assert grad("hardtanh") == [0, 0, 1, 0, 0, 0]
    assert grad("clamp -1 3") == [0, 1, 1, 1, 1, 0]
    assert grad("hardswish") == [0, -1 / 3 + 0.5, 0.5, 1 / 3 + 0.5, 1, 1]
    assert grad("hardsigmoid")[1:4] == [float(np.float32(1 / 6))] * 3  # torch's constant
    assert grad("hardsigmoid")[::4] == [0, 0]


@pytest.mark.parametrize("name, args, shape", [
    ("relu6", {}, (3, 5)),
    ("hardtanh", {"min_val": -0.3, "max_val": 0.4}, (4, 5)),
    ("hardswish", {}, (4, 6)),
    ("hardsigmoid", {}, (4, 6)),
    ("clamp", {"min": -0.2}, (3, 5)),
    ("clamp", {"max": 0.1}, (3, 5)),
    ("mish", {}, (3, 5)),
    ("softplus", {"beta": 3.0, "threshold": 0.5}, (4, 5)),
    ("prelu", {}, (3, 5)),
    ("prelu", {"num_parameters": 4}, (2, 4, 3)),
    ("prelu", {"num_parameters": 3, "init": "normal(0, 1)"}, (2, 3, 2, 2)),
])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_backward_matches_finite_differences(name, args, shape, training):
    def scale(xs, w):  # spread over the kinks (±3, 6) and softplus's threshold
        xs[0] *= 4.0

    errors = check_kind(REGISTRY[name], args, [TensorType(shape)], training=training,
                        prepare=scale)
    assert errors and all(e < 1e-6 for e in errors.values())


def test_prelu_is_nn_prelu_with_its_weight():
    from nnspec.backends.numpy import NumpyModel

    spec = _spec("prelu 3 | prelu", "[N, 3, 4]")
    shapes = spec.state_shapes()
    assert {k: w.shape for k, w in shapes.items()} == {"prelu_0.weight": (3,),
                                                       "prelu_1.weight": (1,)}
    assert spec.param_count() == 4
    a, b = torch.nn.PReLU(3).double(), torch.nn.PReLU().double()
    with torch.no_grad():
        a.weight.copy_(torch.tensor([0.1, -0.5, 2.0]))
    x = np.random.default_rng(1).standard_normal((2, 3, 4))
    params = {"prelu_0.weight": a.weight.detach().numpy().copy(),
              "prelu_1.weight": b.weight.detach().numpy().copy()}
    assert params["prelu_1.weight"].tolist() == [0.25]  # nn.PReLU's init, as nnspec draws
    got = NumpyModel(spec, params=params, dtype=np.float64)(x)
    want = b(a(torch.from_numpy(x))).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-15)
    from nnspec.backends.weights import draw

    drawn = draw(shapes, seed=0)
    assert drawn["prelu_0.weight"].tolist() == [0.25] * 3


def test_the_emitted_source_reads_as_torch_and_runs():
    from nnspec.backends.emit import emit_source
    from nnspec.backends.numpy import NumpyModel

    spec = _spec("relu6 | hardtanh -2 2 | hardswish | hardsigmoid | clamp max=1 | prelu 3 "
                 "| mish | softplus 2 | clamp 0 6 | hardtanh", "[N, 3, 5]")
    src = emit_source(spec)
    for line in ("x = F.relu6(x)", "x = F.hardtanh(x, min_val=-2.0, max_val=2.0)",
                 "x = F.hardswish(x)", "x = F.hardsigmoid(x)", "x = torch.clamp(x, max=1.0)",
                 "self.prelu_0 = nn.PReLU(3)", "x = F.mish(x)", "x = F.softplus(x, beta=2.0)",
                 "x = torch.clamp(x, min=0.0, max=6.0)", "x = F.hardtanh(x)"):
        assert line in src, line
    ns: dict = {}
    exec(compile(src, "emitted.py", "exec"), ns)
    module = ns["M"]().double().eval()
    params = {"prelu_0.weight": np.array([0.5, -1.0, 3.0])}
    module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    x = np.random.default_rng(2).standard_normal((2, 3, 5)) * 4
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    want = NumpyModel(spec, params=params, dtype=np.float64)(x)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


def test_torch_names_are_synonyms():
    for written, kind in [("hard_swish", "hardswish"), ("Hardswish", "hardswish"),
                          ("hard_sigmoid", "hardsigmoid"), ("ReLU6", "relu6"),
                          ("hard_tanh min=-2 max=2", "hardtanh"), ("clip 0 1", "clamp"),
                          ("PReLU 3", "prelu"), ("Mish", "mish"), ("Softplus", "softplus"),
                          ("prelu num_parameters=3", "prelu")]:
        spec = _spec(written, "[N, 3, 5]")
        assert [n.op for n in spec.program.models[0].nodes] == [kind], written
    p = _spec("hard_tanh min=-2 max=2").program.models[0].nodes[0].p
    assert (p.min_val, p.max_val) == (-2.0, 2.0)


def _diags(stage: str, shape: str = "[N, 3, 5]"):
    text = f"model M(x: {shape}) {{\n    {stage}\n}}\n"
    spec = nnspec.loads(text, "bad.nn", strict=False)
    return [(d.code, d.message, d.hint, d.span.line, d.span.col) for d in spec.diagnostics]


@pytest.mark.parametrize("stage, want", [
    ("hardtanh 2 -2", ("E046", "invalid max_val for hardtanh: must be >= min_val (2.0): the "
                       "range is empty (received max_val=-2)", None, 2, 16)),
    ("hardtanh 3", ("E046", "invalid max_val for hardtanh: must be >= min_val (3.0): the range "
                    "is empty", None, 2, 5)),
    ("clamp", ("E046", "invalid arguments for clamp: give min=, max= or both",
               "usage: clamp <min> <max>", 2, 5)),
    ("clamp 1 max=0", ("E046", "invalid max for clamp: must be >= min (1.0): the range is "
                       "empty (received max=0)", None, 2, 13)),
    ("softplus beta=0", ("E046", "invalid beta for softplus: must be > 0 (received beta=0)",
                         None, 2, 14)),
    ("prelu 4", ("E300", "prelu 4 needs 4 channels on axis 1, got 3 ([N, 3, 5])",
                 "use prelu 3 (one slope per channel) or prelu (one shared slope)", 2, 11)),
    ("prelu 0", ("E046", "invalid num_parameters for prelu: must be >= 1 (received "
                 "num_parameters=0)", None, 2, 11)),
])
def test_bad_arguments_are_located_errors(stage, want):
    assert _diags(stage) == [want]


def test_prelu_per_channel_needs_a_channel_axis():
    (code, message, hint, line, col), = _diags("prelu 3", "[N]")
    assert (code, line, col) == ("E300", 2, 11)
    assert message == ("prelu 3 learns one slope per channel (axis 1) and needs a rank >= 2 "
                       "input, got [N]")
    (code, message, *_), = _diags("prelu 3", "[N, C, 4]")
    assert message.startswith("prelu's channels (axis 1) must be a concrete size, but it is C")


# ---- did you mean: only a plausible misspelling ---------------------------------------------


@pytest.mark.parametrize("word, want", [
    ("hardtahn", "hardtanh"), ("tanhh", "tanh"), ("rleu", "relu"), ("maxpol", "maxpool"),
    ("batchnrom", "batchnorm"), ("lyaernrom", "layernorm"), ("Relu", "relu"),
    ("LeakyReLU", "leaky_relu"), ("hard-swish", "hardswish"), ("Conv2D", "conv2d"),
    ("relu7", None), ("elu6", None), ("conv4d", None), ("tanhx2", None),
    ("selu", None), ("rrelu", None), ("glu", None), ("softmin", None), ("minpool2d", None),
    ("nelu", None), ("LayerNorm2d", None), ("wish", None),
])
def test_a_suggestion_is_a_plausible_misspelling(word, want):
    assert misspelt(word, REGISTRY, NOT_MISSPELT) == want


def test_new_kinds_are_no_longer_misspellings_of_old_ones():
    """relu6 and hardtanh were once 'did you mean relu?' and 'tanh' plus argument errors."""
    assert _diags("relu6 | hardtanh -2 2") == []
    assert misspelt("relu6", [k for k in REGISTRY if k not in ("relu6", "ReLU6")]) is None
    assert misspelt("hardtanh", ["tanh", "relu"]) is None


def test_an_unknown_kind_without_suggestion_has_no_argument_errors():
    assert _diags("relu7 2 3 bogus=1") == [
        ("E043", "unknown layer kind 'relu7'", "see `nnspec layers` for the list of layer kinds",
         2, 5)]
    assert _diags("selu 1.5") == [
        ("E043", "unknown layer kind 'selu'", "see `nnspec layers` for the list of layer kinds",
         2, 5)]


def test_a_misspelt_kind_is_suggested_and_its_arguments_checked_as_the_suggestions():
    assert _diags("hardtahn -2 2") == [
        ("E043", "unknown layer kind 'hardtahn'", "did you mean 'hardtanh'?", 2, 5)]
    got = _diags("hardtahn -2 2 bogus=1")
    assert [d[:2] for d in got] == [("E043", "unknown layer kind 'hardtahn'"),
                                    ("E049", "unknown argument 'bogus' for hardtanh")]
    assert got[1][3:] == (2, 19)


def test_a_block_name_is_suggested_up_to_case():
    text = "block ResBlock(x) {\n    x | relu\n}\nmodel M(x: [N, 4]) {\n    Resblock\n}\n"
    d, = nnspec.loads(text, "b.nn", strict=False).diagnostics
    assert (d.code, d.hint) == ("E043", "did you mean 'ResBlock'?")


def test_the_json_ir_suggests_only_misspellings():
    import json

    spec = _spec("relu | dense 4")
    data = json.loads(spec.program.model_dump_json())
    for op, hint in [("rleu", "did you mean 'relu'?"), ("relu7", "nnspec layers lists the kinds")]:
        data["models"][0]["nodes"][0]["op"] = op
        d = nnspec.from_ir(json.dumps(data), "bad.json").diagnostics[0]
        assert (d.code, d.hint) == ("E208", hint)


def test_nnspec_layers_lists_the_new_kinds(capsys):
    from nnspec.tools import cli

    assert cli.main(["layers"]) == 0
    out = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for name in ("relu6", "hardtanh", "hardswish", "hardsigmoid", "clamp", "prelu", "mish",
                 "softplus"):
        assert REGISTRY[name].summary in out[name], name
    assert "(also hard_swish, Hardswish)" in out["hardswish"]
