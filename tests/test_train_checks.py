"""A train section's settings mean what they say: one that cannot take effect is a located
error, and ``train --overfit-batch`` trains at the declared rate, on targets each loss can
fit, reports a divergence as one, and passes every bundled spec with a train section."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.ir import training as T

MODEL = "model M(x: [N, 6]) {\n    dense 3\n}\n"

# a schedule without an optimizer: check passed it, and configure_optimizer() raised
SCHEDULE_WITHOUT_OPTIMIZER = """model M(x: [N, 6]) {
    dense 3
}
train M(y: [N, 3]) {
    loss mse(output, y)
    schedule cosine steps=10 warmup=2
}
"""


def _diags(settings: str) -> list:
    text = MODEL + "train M(y: [N, 3]) {\n    loss mse(output, y)\n" + "".join(
        f"    {line}\n" for line in settings.splitlines()) + "}\n"
    return nnspec.loads(text, "t.nn", strict=False).diagnostics


def test_a_schedule_without_an_optimizer_is_a_located_error():
    spec = nnspec.loads(SCHEDULE_WITHOUT_OPTIMIZER, "s.nn", strict=False)
    (d,) = spec.diagnostics
    assert (d.code, d.span.line, d.span.col, d.span.end_col) == ("E078", 6, 5, 13)
    assert d.message == ("a schedule sets the optimizer's learning rate, and this section "
                         "has no optimizer line")
    assert d.hint == "add a line such as: optimizer adam lr=0.001"


@pytest.mark.parametrize("settings, col, message", [
    ("optimizer sgd lr=0.1 nesterov", 26,
     "nesterov needs momentum > 0 and dampening=0 (torch.optim.SGD refuses it otherwise)"),
    ("optimizer sgd lr=0.1 momentum=0.9 dampening=0.1 nesterov=true", 53,
     "nesterov needs momentum > 0 and dampening=0 (torch.optim.SGD refuses it otherwise)"),
    ("optimizer sgd lr=0.1 dampening=0.5", 26,
     "dampening damps the momentum: without momentum= it does nothing"),
    ("optimizer adam\nschedule cosine steps=10 gamma=0.5", 30,
     "gamma= belongs to a step schedule, not a cosine one"),
    ("optimizer adam\nschedule step size=10 min_lr=0.0", 27,
     "min_lr= belongs to a cosine schedule, not a step one"),
    ("optimizer adam\nschedule constant steps=10", 23,
     "steps= belongs to a cosine schedule, not a constant one"),
    ("optimizer adam\nschedule step size=10 gamma=1", 27, "gamma=1 never changes the rate"),
    ("optimizer adam\nschedule step size=10 start=0.1", 27,
     "start= is where a warm-up begins: it needs warmup=<steps>"),
    ("optimizer adam\nschedule cosine steps=10 warmup=5 start=1.0", 39,
     "a warm-up from start=1 never changes the rate"),
    ("optimizer adam lr=0.01\nschedule cosine steps=10 min_lr=0.01", 30,
     "min_lr=0.01 is not below the optimizer's lr=0.01: the cosine schedule would not "
     "decay"),
])
def test_a_setting_that_cannot_take_effect_is_a_located_error(settings, col, message):
    (d,) = _diags(settings)
    line = 5 + len(settings.splitlines())
    assert (d.code, d.span.line, d.span.col, d.message) == ("E078", line, col, message)


@pytest.mark.parametrize("settings", [
    "optimizer sgd lr=0.1 momentum=0.9 nesterov",
    "optimizer sgd lr=0.1 momentum=0.9 dampening=0.5",
    "optimizer adam\nschedule constant warmup=5 start=0.1",
    "optimizer adam lr=0.01\nschedule cosine steps=10 min_lr=0.001 warmup=2",
    "optimizer rmsprop\nschedule step size=3 gamma=0.5",
    "clip norm=1.0",
])
def test_settings_that_take_effect_pass_and_build(settings):
    torch = pytest.importorskip("torch")
    from nnspec.backends.torch import build_module

    assert _diags(settings) == []
    text = MODEL + "train M(y: [N, 3]) {\n    loss mse(output, y)\n" + "".join(
        f"    {line}\n" for line in settings.splitlines()) + "}\n"
    mod = build_module(nnspec.loads(text, "t.nn"), seed=0)
    if "optimizer" in settings:
        got = mod.configure_optimizer()
        opt = got[0] if isinstance(got, tuple) else got
        assert isinstance(opt, torch.optim.Optimizer)
        assert isinstance(got, tuple) == ("schedule" in settings)


def test_the_section_helpers_name_each_problem():
    assert T.section_problems(None, {}, {"kind": "step", "size": 3})[0][:2] == (
        "schedule", None)
    assert T.section_problems("adam", {"lr": 0.1}, {"kind": "cosine", "steps": 5,
                                                    "min_lr": 0.01}) == []
    assert T.check_schedule(T.Schedule(kind="cosine", steps=3, gamma=0.5)) == (
        "gamma= belongs to a step schedule, not a cosine one")
    assert T.optimizer_problem(T.SGD(momentum=0.9, nesterov=True)) is None


# -- train --overfit-batch -----------------------------------------------------------------

REGRESSION = """model R(x: [N, 6]) -> [N, 3] {
    dense 16 | tanh
    dense 3
}
train R(y: [N, 3]) {
    loss mse(output, y)
    optimizer adam lr=LR
SCHEDULE}
"""


def _regression(lr: str, schedule: str = "") -> nnspec.Spec:
    return nnspec.loads(REGRESSION.replace("LR", lr).replace("SCHEDULE", schedule), "r.nn")


def test_overfit_trains_at_the_declared_rate_without_the_warm_up():
    pytest.importorskip("torch")
    from nnspec.tools.trainer import overfit

    warm = overfit(_regression("0.01", "    schedule cosine steps=100000 warmup=2000\n"),
                   steps=12)
    plain = overfit(_regression("0.01"), steps=12)
    # the first step of the warm-up: the rate it starts from
    slow = overfit(_regression("0.0001"), steps=12)
    assert warm.losses == plain.losses
    assert warm.losses[-1] < slow.losses[-1] - 0.01
    assert warm.render().splitlines()[1] == (
        "  adam at the declared lr=0.01, held constant: no 2000-step warm-up, no cosine decay")
    assert plain.render().splitlines()[1] == "  adam at the declared lr=0.01, held constant"


def test_overfit_reports_a_divergence_with_its_step_and_rate(tmp_path, capsys):
    pytest.importorskip("torch")
    from nnspec.tools.cli import main
    from nnspec.tools.trainer import overfit

    text = REGRESSION.replace("adam lr=LR", "sgd lr=1000000").replace("SCHEDULE", "")
    report = overfit(nnspec.loads(text, "r.nn"), steps=50)
    k = report.nonfinite[0]
    assert report.diverged and not report.ok and len(report.losses) == k + 1
    assert all(np.isfinite(report.losses[:k])) and not np.isfinite(report.losses[k])
    path = tmp_path / "r.nn"
    path.write_text(text)
    assert main(["train", str(path), "--overfit-batch"]) == 1
    out = capsys.readouterr().out
    bad = f"{report.losses[k]:g}"
    assert f"  loss {report.losses[0]:.6g} -> {bad} at step {k}\n" in out
    assert (f"FAILED: the loss diverged: {bad} at step {k} with sgd lr=1e+06 (a smaller lr, "
            "or clip norm=1.0, may train)") in out


def test_a_loss_that_is_not_finite_from_the_start_is_not_called_a_divergence():
    pytest.importorskip("torch")
    from nnspec.tools.trainer import overfit

    report = overfit(nnspec.loads("""model R(x: [N, 6]) -> [N, 3] {
    h = x | dense 3 init=constant(1e38)
    (h * 1e38)
}
train R(y: [N, 3]) {
    loss mse(output, y)
}
""", "r.nn"), steps=5)
    assert report.losses == [float("inf")] and report.no_grad == []
    assert report.render().splitlines()[1:] == [
        "  adam lr=0.001 (the section names no optimizer), held constant",
        "  loss inf -> inf at step 0",
        "FAILED: the loss is inf before any update: the model or its loss, not the "
        "learning rate"]


def test_binary_cross_entropy_gets_binary_targets():
    from nnspec.tools.crosscheck import concrete_inputs
    from nnspec.tools.trainer import _as_targets, _targets

    spec = nnspec.loads("""model B(x: [N, 8]) -> [N, 8] {
    dense 8 | sigmoid
}
train B(y: [N, 8], z: [N, 8], w: [N, 8]) {
    loss bce(output, x) + bce_with_logits(output, y) + mse(output, z) + kl_div(output, w)
}
""", "b.nn")
    t, m = spec.program.trainings[0], spec.model("B")
    rng = np.random.default_rng(0)
    (x,) = _as_targets(t, m, concrete_inputs(spec, "B", {"N": 16}, np.float32, 0), rng)
    y, z, w = _targets(spec, t, {"N": 16}, rng)
    for a in (x, y):
        assert set(np.unique(a)) == {0.0, 1.0}
    for a in (z, w):
        assert len(np.unique(a)) > 100 and 0 <= a.min() and a.max() < 1


SPECS = Path(__file__).resolve().parent.parent / "specs"
TRAINED = sorted(p for p in SPECS.glob("*.nn") if "\ntrain " in p.read_text())

# the tiny configurations the specs' comments give (the README's sizes for a CPU)
SIZES = {
    "gpt2.nn": {"layers": 2, "d": 32, "heads": 4, "vocab": 100, "context": 16},
    "causal_lm.nn": {"layers": 2, "d": 32, "heads": 4, "context": 16},
}
# the specs the check used to fail (a warm-up, bce against uniform targets) run always; the
# others take seconds to minutes each on two CPU cores at the default 50 steps (224-pixel
# images, capsule routing, an 8,000-word vocabulary; test_training.py trains the quicker
# ones for 25 steps): NNSPEC_SLOW_TESTS=1 runs them all
ALWAYS = {"causal_lm.nn", "gpt2.nn", "vae.nn"}


def test_every_spec_with_a_train_section_is_checked():
    assert {p.name for p in TRAINED} == ALWAYS | {
        "alexnet.nn", "autoencoder_mlp.nn", "capsnet.nn", "cnn_small.nn", "dqn.nn",
        "lenet5.nn", "resnet18.nn", "seq2seq_gru.nn", "superres.nn", "vgg16.nn"}


@pytest.mark.parametrize("path", TRAINED, ids=lambda p: p.name)
def test_bundled_specs_pass_the_overfit_check_at_the_readme_sizes(path):
    pytest.importorskip("torch")
    from nnspec.tools.trainer import overfit

    if path.name not in ALWAYS and not os.environ.get("NNSPEC_SLOW_TESTS"):
        pytest.skip("slow on a CPU: NNSPEC_SLOW_TESTS=1 runs it")
    spec = nnspec.load(str(path), consts=SIZES.get(path.name))
    for t in spec.program.trainings:
        report = overfit(spec, t.model)
        assert report.ok, report.render()
