"""groupnorm, instancenorm and layernorm over any axes (``dim=1``: channels first, as
ConvNeXt's LayerNorm2d): values and running statistics as torch's modules give them,
gradients by finite differences and torch autograd, the emitted source, located errors."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from nnspec.layers import REGISTRY, TensorType

from _gradcheck import check_autograd, check_kind

torch = pytest.importorskip("torch")
nn = torch.nn


def _spec(stage: str, shape: str):
    return nnspec.loads(f"model M(x: {shape}) {{\n    {stage}\n}}\n", "norm.nn")


def _random_params(spec, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for k, w in spec.state_shapes().items():
        if w.dtype == "int":
            out[k] = np.zeros(w.shape, np.int64)
        elif k.endswith("running_var"):
            out[k] = rng.uniform(0.5, 2.0, w.shape)
        else:
            out[k] = rng.standard_normal(w.shape)
    return out


def _against_module(spec, module, x, training: bool):
    """Run the spec's one layer in NumPy and ``module`` (loaded with the same random
    state_dict, by the keys nnspec gives it) on x; compare outputs and the state after."""
    from nnspec.backends.numpy import NumpyModel

    params = _random_params(spec)
    prefix = spec.program.models[0].nodes[0].name + "."
    module = module.double().train(training)
    module.load_state_dict({k[len(prefix):]: torch.from_numpy(v.copy())
                            for k, v in params.items()})
    ref = NumpyModel(spec, params=params, dtype=np.float64)
    got = ref(x, training=training)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    for k, v in module.state_dict().items():
        np.testing.assert_allclose(ref.params[prefix + k], v.numpy(), rtol=1e-14, atol=1e-15,
                                   err_msg=k)
    return got


@pytest.mark.parametrize("stage, shape, module", [
    ("groupnorm 2", (2, 4, 3, 5), nn.GroupNorm(2, 4)),
    ("groupnorm 3 eps=1e-3", (3, 6, 7), nn.GroupNorm(3, 6, eps=1e-3)),
    ("groupnorm 1 affine=false", (2, 5), nn.GroupNorm(1, 5, affine=False)),
    ("GroupNorm 4", (2, 4, 2, 2, 3), nn.GroupNorm(4, 4)),
    ("group_norm num_groups=2", (2, 4, 3), nn.GroupNorm(2, 4)),
])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_groupnorm_is_nn_groupnorm(stage, shape, module, training):
    spec = _spec(stage, "[N, " + ", ".join(map(str, shape[1:])) + "]")
    x = np.random.default_rng(0).standard_normal(shape) * 3 + 1
    _against_module(spec, module, x, training)


@pytest.mark.parametrize("stage, shape, module", [
    ("instancenorm", (2, 3, 6), nn.InstanceNorm1d(3)),
    ("instancenorm1d affine", (2, 3, 6), nn.InstanceNorm1d(3, affine=True)),
    ("instancenorm track momentum=0.3", (3, 2, 4, 5),
     nn.InstanceNorm2d(2, momentum=0.3, track_running_stats=True)),
    ("InstanceNorm2d affine track eps=1e-3", (2, 3, 4, 2),
     nn.InstanceNorm2d(3, eps=1e-3, affine=True, track_running_stats=True)),
    ("instancenorm3d track_running_stats=true", (2, 2, 2, 3, 2),
     nn.InstanceNorm3d(2, track_running_stats=True)),
    ("instance_norm", (2, 2, 2, 3, 2), nn.InstanceNorm3d(2)),
])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_instancenorm_is_nn_instancenorm_running_stats_included(stage, shape, module,
                                                                  training):
    spec = _spec(stage, "[N, " + ", ".join(map(str, shape[1:])) + "]")
    x = np.random.default_rng(0).standard_normal(shape) * 2 - 1
    _against_module(spec, module, x, training)


def test_instancenorm_updates_running_stats_by_the_batch_mean_of_each_samples():
    """mean over the batch of each sample's channel mean and unbiased variance; torch's
    instance norm leaves num_batches_tracked at 0."""
    from nnspec.backends.numpy import NumpyModel

    spec = _spec("instancenorm track momentum=0.5", "[N, 2, 3]")
    x = np.array([[[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]], [[3.0, 3.0, 3.0], [1.0, 1.0, 1.0]]])
    ref = NumpyModel(spec, dtype=np.float64)
    ref(x, training=True)
    p = ref.params
    assert p["instancenorm_0.running_mean"].tolist() == [0.5 * 0 + 0.5 * (2 + 3) / 2,
                                                         0.5 * (1 + 1) / 2]
    assert p["instancenorm_0.running_var"].tolist() == [0.5 + 0.5 * (1 + 0) / 2,
                                                        0.5 + 0.5 * (3 + 0) / 2]
    assert p["instancenorm_0.num_batches_tracked"] == 0


def test_layernorm_dim_1_is_convnexts_layernorm2d():
    from _torchvision import models

    models()
    from torchvision.models.convnext import LayerNorm2d

    spec = _spec("layernorm dim=1 eps=1e-6", "[N, 6, 4, 5]")
    assert {k: w.shape for k, w in spec.state_shapes().items()} == {
        "layernorm_0.weight": (6,), "layernorm_0.bias": (6,)}
    x = np.random.default_rng(0).standard_normal((2, 6, 4, 5))
    _against_module(spec, LayerNorm2d(6, eps=1e-6), x, training=True)


@pytest.mark.parametrize("dim, perm", [((1, 3), (0, 2, 1, 3)), ((0, 2), (1, 3, 0, 2)),
                                       ((-3,), (0, 2, 3, 1)), ((2, 3), (0, 1, 2, 3))])
def test_layernorm_over_any_axes_is_layer_norm_of_those_axes_moved_last(dim, perm):
    from nnspec.backends.numpy import NumpyModel

    shape = (2, 3, 4, 5)
    text = f"({', '.join(map(str, dim))}{',' if len(dim) == 1 else ''})"
    spec = _spec(f"layernorm dim={text}", "[2, 3, 4, 5]")
    axes = sorted(d % 4 for d in dim)
    params = _random_params(spec)
    w, b = params["layernorm_0.weight"], params["layernorm_0.bias"]
    assert w.shape == tuple(shape[a] for a in axes)
    x = np.random.default_rng(0).standard_normal(shape)
    moved = torch.from_numpy(x).permute(perm)
    want = nn.functional.layer_norm(moved, w.shape, torch.from_numpy(w), torch.from_numpy(b))
    want = want.permute(tuple(np.argsort(perm))).numpy()
    got = NumpyModel(spec, params=params, dtype=np.float64)(x)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    check_autograd(spec, [x])


def test_layernorm_of_the_last_axes_is_unchanged():
    a = _spec("layernorm dim=(-2, -1)", "[N, 3, 4, 5]")
    b = _spec("layernorm 2", "[N, 3, 4, 5]")
    assert a.state_shapes() == b.state_shapes()
    from nnspec.backends.emit import emit_source

    assert "x = self.layernorm_0(x)" in emit_source(a)


@pytest.mark.parametrize("name, args, shape", [
    ("groupnorm", {"groups": 2}, (2, 4, 3)),
    ("groupnorm", {"groups": 3, "affine": False}, (2, 6, 2, 2)),
    ("groupnorm", {"groups": 1}, (3, 2)),
    ("instancenorm", {"affine": True}, (2, 3, 4)),
    ("instancenorm", {"affine": True, "track": True}, (2, 3, 2, 3)),
    ("instancenorm", {"track": True}, (2, 2, 3)),
    ("layernorm", {"dim": 1}, (2, 3, 2, 2)),
    ("layernorm", {"dim": (0, 2), "bias": False}, (2, 3, 4)),
    ("layernorm", {"dim": -1, "affine": False}, (3, 4)),
])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_backward_matches_finite_differences(name, args, shape, training):
    errors = check_kind(REGISTRY[name], args, [TensorType(shape)], training=training)
    assert errors and all(e < 1e-6 for e in errors.values())


NET = """
model M(x: [N, 4, 5, 6]) {
    groupnorm 2 | relu6 | instancenorm affine track | prelu 4 | layernorm dim=1 | hardswish
}
"""


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_a_model_of_them_agrees_with_torch_autograd(training):
    x = np.random.default_rng(3).standard_normal((2, 4, 5, 6))
    check_autograd(nnspec.loads(NET, "net.nn"), [x], training=training)


def test_the_emitted_source_reads_as_torch_and_runs():
    from nnspec.backends.emit import emit_source
    from nnspec.backends.numpy import NumpyModel

    spec = nnspec.loads(NET, "net.nn")
    src = emit_source(spec)
    for line in ("self.groupnorm_0 = nn.GroupNorm(2, 4)",
                 "self.instancenorm_0 = nn.InstanceNorm2d(4, affine=True, "
                 "track_running_stats=True)",
                 "self.layernorm_0 = nn.LayerNorm((4,))",
                 "x = self.layernorm_0(x.movedim(1, -1)).movedim(-1, 1)"):
        assert line in src, line
    ns: dict = {}
    exec(compile(src, "emitted.py", "exec"), ns)
    params = _random_params(spec)
    x = np.random.default_rng(4).standard_normal((2, 4, 5, 6))
    for training in (False, True):
        module = ns["M"]().double().train(training)
        module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
        with torch.no_grad():
            got = module(torch.from_numpy(x)).numpy()
        want = NumpyModel(spec, params=params, dtype=np.float64)(x, training=training)
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)


def _diags(stage: str, shape: str):
    spec = nnspec.loads(f"model M(x: {shape}) {{\n    {stage}\n}}\n", "bad.nn", strict=False)
    return [(d.code, d.message, d.hint, d.span.line, d.span.col) for d in spec.diagnostics]


@pytest.mark.parametrize("stage, shape, want", [
    ("groupnorm 3", "[N, 8, 4, 4]",
     ("E300", "groupnorm 3 splits the channels into 3 groups, but 8 channels ([N, 8, 4, 4]) "
              "are not divisible by 3", "use a divisor of the channels: 1, 2, 4, 8", 2, 15)),
    ("groupnorm 4", "[N, 4]",
     ("E300", "groupnorm 4 of [N, 4] normalises one value per group: every output would be "
              "its bias (torch refuses it for a batch of one)",
      "use fewer groups, or batchnorm or layernorm for this input", 2, 15)),
    ("groupnorm", "[N, 4]",
     ("E045", "groupnorm needs the argument 'groups'",
      "usage: groupnorm <groups> [eps=1e-05] [affine] [init=default] [bias_init=default]",
      2, 5)),
    ("instancenorm2d", "[N, 3, 8]",
     ("E300", "instancenorm2d expects a rank-4 input ([N, C, H, W]), got [N, 3, 8] (rank 3)",
      None, 2, 5)),
    ("instancenorm", "[N, 3]",
     ("E300", "instancenorm expects a rank-3 or 4 or 5 input ([N, C, L], [N, C, H, W], "
              "[N, C, D, H, W]), got [N, 3] (rank 2)", None, 2, 5)),
    ("instancenorm", "[N, 3, 1, 1]",
     ("E300", "instancenorm of [N, 3, 1, 1] normalises one value per channel: every output "
              "would be 0 (torch refuses it in training)",
      "instancenorm needs more than one position per channel; for [N, C] inputs use "
      "batchnorm or layernorm", 2, 5)),
    ("instancenorm momentum=2", "[N, 3, 4]",
     ("E046", "invalid momentum for instancenorm: must be in [0, 1] (received momentum=2)",
      None, 2, 18)),
    ("layernorm dim=4", "[N, 3, 4, 5]",
     ("E300", "dim 4 is out of range for a rank-4 input [N, 3, 4, 5]", "use dims from -4 to 3",
      2, 15)),
    ("layernorm dim=(1, -3)", "[N, 3, 4, 5]",
     ("E300", "dim (1, -3) names an axis of [N, 3, 4, 5] twice", None, 2, 15)),
    ("layernorm dim=1", "[N, C, 4]",
     ("E300", "layernorm's normalised dims must be a concrete size, but it is C (depends on "
              "symbol C)", "give the input a concrete size for that dimension", 2, 15)),
    ("layernorm dim=1.5", "[N, 3, 4]",
     ("E046", "invalid dim for layernorm: must be an axis or a tuple of axes: dim=1, "
              "dim=(1, 2) (received dim=1.5)", None, 2, 15)),
])
def test_bad_input_is_a_located_error(stage, shape, want):
    assert _diags(stage, shape) == [want]


def test_axes_and_dim_together_are_refused():
    (code, message, hint, line, col), = _diags("layernorm 2 dim=1", "[N, 3, 4, 5]")
    assert (code, line, col) == ("E046", 2, 5)
    assert message == ("invalid arguments for layernorm: give axes (the last axes) or dim "
                       "(the axes named), not both")
    assert hint.startswith("usage: layernorm <axes> [dim=None]")


def test_a_groupnorm_symbolic_channel_count_is_named():
    (code, message, *_), = _diags("groupnorm 2", "[N, C, 4]")
    assert message.startswith("groupnorm's channels (axis 1) must be a concrete size")


def test_layernorm_dim_survives_the_json_ir():
    spec = _spec("layernorm dim=1", "[N, 3, 4, 5]")
    again = nnspec.from_ir(spec.program.model_dump_json(), "ir.json")
    assert again.ok and again.state_shapes() == spec.state_shapes()
    assert again.program.models[0].nodes[0].p.dim == (1,)
