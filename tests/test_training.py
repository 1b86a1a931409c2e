"""The train section: parsed, lowered to the IR, shape-checked (targets must fit the loss),
emitted as ``loss`` / ``configure_optimizer`` / ``clip_gradients`` in both the source and
build_module, and the NumPy reference gradients of the declared loss against autograd."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nnspec
from nnspec.backends.numpy import NumpyModel
from nnspec.backends.torch import build_module, emit_source

from _util import import_source

CLASSIFIER = """
model Net(x: [N, 6]) -> [N, 4] {
    dense 8 | tanh
    dense 4
}
train Net(label: [N] int) {
    loss cross_entropy(output, label, label_smoothing=0.1) + 0.5 * mse(output, soft)
    optimizer adam lr=0.002 betas=(0.8, 0.99)
    clip norm=1.5
    schedule cosine steps=100 warmup=10
}
"""
# the second term needs a target: declared below by replacing the header
CLASSIFIER = CLASSIFIER.replace("train Net(label: [N] int)",
                                "train Net(label: [N] int, soft: [N, 4])")

AE = """
model AE(x: [N, 5]) -> [N, 5] {
    dense 3 | relu
    dense 5 | sigmoid
}
train AE {
    loss mse(output, x, reduction=sum)
    optimizer sgd lr=0.1 momentum=0.9 nesterov
}
"""


def test_the_section_is_in_the_ir():
    spec = nnspec.loads(CLASSIFIER, "c.nn")
    (t,) = spec.program.trainings
    assert t.model == "Net"
    assert [(x.name, x.shape, x.dtype) for x in t.targets] == [
        ("label", ["N"], "int"), ("soft", ["N", "4"], "float")]
    assert [(x.weight, x.loss, x.args, x.params) for x in t.terms] == [
        (1.0, "cross_entropy", ["output", "label"], {"label_smoothing": 0.1}),
        (0.5, "mse", ["output", "soft"], {})]
    assert (t.optimizer, t.optimizer_params) == ("adam", {"lr": 0.002, "betas": [0.8, 0.99]})
    assert t.clip == {"norm": 1.5}
    assert t.schedule == {"kind": "cosine", "steps": 100, "warmup": 10}
    back = nnspec.Spec.from_ir(spec.program.to_json()) if hasattr(nnspec.Spec, "from_ir") \
        else None
    data = json.loads(spec.program.to_json())
    assert data["trainings"][0]["terms"][1]["weight"] == 0.5
    del back


@pytest.mark.parametrize("section, line, col, code, message", [
    ("train Net(label: [N, 4] int) {\n    loss cross_entropy(output, label)\n}", 7, 10, "E350",
     None),
    ("train Net(label: [N] int) {\n    loss mse(output, label)\n}", 7, 10, "E350", None),
    ("train Nett(label: [N] int) {\n    loss mse(output, label)\n}", 6, 7, "E074",
     "train names no model: there is no model 'Nett'"),
    ("train Net(label: [N] int) {\n    loss crossentropy(output, label)\n}", 7, 10, "E077",
     "unknown loss 'crossentropy'"),
    ("train Net(label: [N] int) {\n    loss cross_entropy(output, lable)\n}", 7, 32, "E077",
     "'lable' is no value of the train section (its values: output, x, label)"),
    ("train Net(label: [N] int) {\n    loss cross_entropy(output, label)\n"
     "    optimizer adamm lr=0.1\n}", 8, 15, "E078", "unknown optimizer 'adamm'"),
    ("train Net(label: [N] int) {\n    loss cross_entropy(output, label)\n"
     "    optimizer adam lr=-1\n}", 8, 20, "E078", None),
    ("train Net(label: [N] int) {\n    loss cross_entropy(output, label)\n"
     "    clip norm=1 value=2\n}", 8, 5, "E078",
     "clip takes one of norm=<max total norm> or value=<max element>"),
    ("train Net(label: [N] int) {\n    loss cross_entropy(output, label)\n"
     "    schedule cosine\n}", 8, 5, "E078",
     "a cosine schedule needs steps=<steps to the minimum>"),
    ("train Net(label: [N] int) {\n    loss cross_entropy(output, label)\n"
     "    optimiser adam\n}", 8, 5, "E076", "unknown train setting 'optimiser'"),
    ("train Net(label: [N] int) {\n    optimizer adam\n}", 6, 7, "E075",
     "train Net has no loss"),
    ("train Net(label: [N] int) {\n    loss label\n}", 7, 10, "E075", None),
])
def test_errors_are_located(section, line, col, code, message):
    text = "model Net(x: [N, 6]) -> [N, 4] {\n    dense 8 | tanh\n    dense 4\n}\n\n" + section
    spec = nnspec.loads(text + "\n", "t.nn", strict=False)
    assert spec.diagnostics, "expected an error"
    d = spec.diagnostics[0]
    assert (d.span.line, d.span.col, d.code) == (line, col, code), d.render(spec.sources)
    if message is not None:
        assert d.message == message


def test_loss_and_optimizer_in_the_emitted_source(tmp_path):
    spec = nnspec.loads(CLASSIFIER, "c.nn")
    text = emit_source(spec)
    assert "    def loss(self, output, label, soft):" in text
    assert "F.cross_entropy(output, label, label_smoothing=0.1) + 0.5 * " in text
    assert "optimizer = torch.optim.Adam(self.parameters(), lr=0.002, betas=(0.8, 0.99))" \
        in text
    assert "torch.nn.utils.clip_grad_norm_(self.parameters(), 1.5)" in text
    path = tmp_path / "gen_c.py"
    path.write_text(text)
    gen = import_source(path, "gen_c")
    net = gen.Net()
    ref = build_module(spec, seed=0)
    net.load_state_dict(ref.state_dict())
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((5, 6)).astype(np.float32))
    label = torch.from_numpy(rng.integers(0, 4, 5))
    soft = torch.from_numpy(rng.standard_normal((5, 4)).astype(np.float32))
    out = ref(x)
    want = F.cross_entropy(out, label, label_smoothing=0.1) + 0.5 * F.mse_loss(out, soft)
    torch.testing.assert_close(net.loss(net(x), label, soft), want)
    torch.testing.assert_close(ref.loss(out, label, soft), want)
    for mod in (net, ref):
        opt, sched = mod.configure_optimizer()
        assert isinstance(opt, torch.optim.Adam) and opt.defaults["betas"] == (0.8, 0.99)
        assert isinstance(sched, torch.optim.lr_scheduler.SequentialLR)


def test_numpy_gradients_of_the_declared_loss_equal_autograd():
    spec = nnspec.loads(CLASSIFIER, "c.nn")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 6))
    label = rng.integers(0, 4, 5)
    soft = rng.standard_normal((5, 4))
    mod = build_module(spec, seed=3, dtype=torch.float64)
    ref = NumpyModel(spec, params={k: v.detach().numpy().copy()
                                   for k, v in mod.state_dict().items()}, dtype=np.float64)
    got = ref.grad(x, targets={"label": label, "soft": soft})
    xt = torch.tensor(x, requires_grad=True)
    st = torch.tensor(soft, requires_grad=True)
    loss = mod.loss(mod(xt), torch.from_numpy(label), st)
    loss.backward()
    assert got.loss == pytest.approx(loss.item(), rel=1e-12)
    for k, p in mod.named_parameters():
        np.testing.assert_allclose(got.params[k], p.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.inputs[0], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.targets["soft"], st.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert got.targets["label"] is None


def test_an_autoencoder_loss_reads_the_input_as_its_target():
    spec = nnspec.loads(AE, "ae.nn")
    x = np.random.default_rng(2).random((4, 5))
    mod = build_module(spec, seed=1, dtype=torch.float64)
    ref = NumpyModel(spec, params={k: v.detach().numpy().copy()
                                   for k, v in mod.state_dict().items()}, dtype=np.float64)
    got = ref.grad(x)
    xt = torch.tensor(x, requires_grad=True)
    loss = mod.loss(mod(xt), xt)
    loss.backward()
    assert got.loss == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(got.inputs[0], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    opt = mod.configure_optimizer()
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] is True
    assert "def loss(self, output, x):" in emit_source(spec)


def test_a_model_without_a_section_has_no_loss():
    spec = nnspec.loads("model M(x: [N, 2]) {\n    dense 2\n}\n", "m.nn")
    assert "def loss" not in emit_source(spec)
    with pytest.raises(AttributeError, match="model M has no train section"):
        build_module(spec).loss(torch.zeros(1, 2))


def test_a_layer_named_loss_still_works_with_a_section():
    spec = nnspec.loads("""
model M(x: [N, 2]) -> [N, 2] {
    dense 2 as loss
}
train M(y: [N, 2]) {
    loss mse(output, y)
}
""", "m.nn")
    text = emit_source(spec)
    assert 'self._modules["loss"](x)' in text
    mod = build_module(spec, seed=0)
    x = torch.ones(3, 2)
    torch.testing.assert_close(mod.loss(mod(x), x), F.mse_loss(mod(x), x))


def test_overfit_batch_falls_and_reports(tmp_path, capsys):
    from nnspec.tools.cli import main

    path = tmp_path / "c.nn"
    path.write_text(CLASSIFIER)
    assert main(["train", str(path), "--overfit-batch", "--steps", "60"]) == 0
    out = capsys.readouterr().out
    assert "train --overfit-batch Net: 60 steps on one batch" in out
    assert "ok: the loss falls and every parameter gets a gradient" in out


def test_overfit_batch_finds_the_dead_weight_of_last_after_a_bidirectional_gru():
    """`last` after a bidirectional GRU reads the reverse direction's first step, computed
    from the zero state: its recurrent weight gets no gradient (gru_sentiment.nn says so)."""
    from nnspec.tools.trainer import overfit

    text = """model GRUSentiment(tokens: [N, T] int) -> [N, 2] {
    embedding 50 8 padding=0 as embed
    gru 6 layers=2 bidirectional as gru
    last
    dense 2 as classifier
}
train GRUSentiment(label: [N] int) {
    loss cross_entropy(output, label)
    optimizer adam lr=0.01
}
"""
    assert "gru 256 layers=2 bidirectional as gru" in (SPECS / "gru_sentiment.nn").read_text()
    report = overfit(nnspec.loads(text, "gru.nn"), steps=15)
    assert report.falls
    assert report.no_grad == ["gru.weight_hh_l1_reverse"]


def test_overfit_batch_finds_a_dead_branch():
    from nnspec.tools.trainer import overfit

    spec = nnspec.loads("""
model M(x: [N, 4]) -> [N, 2] {
    dead = x | dense 3
    x | dense 2
}
train M(y: [N, 2]) {
    loss mse(output, y)
    optimizer sgd lr=0.1
}
""", "m.nn")
    report = overfit(spec, steps=30)
    assert report.falls
    assert report.no_grad == ["dense_0.weight", "dense_0.bias"]
    assert not report.ok
    assert "2 parameter(s) never received a gradient: dense_0.weight, dense_0.bias" \
        in report.render()


def test_overfit_batch_usage_errors(tmp_path, capsys):
    from nnspec.tools.cli import main

    path = tmp_path / "m.nn"
    path.write_text("model M(x: [N, 2]) {\n    dense 2\n}\n")
    assert main(["train", str(path), "--overfit-batch"]) == 2
    assert "has no train section" in capsys.readouterr().err
    assert main(["train", str(path)]) == 2


SPECS = Path(__file__).resolve().parent.parent / "specs"
TRAINED_SPECS = sorted(p for p in SPECS.glob("*.nn") if "\ntrain " in p.read_text())


def test_bundled_specs_have_training_sections():
    assert {p.name for p in TRAINED_SPECS} >= {"lenet5.nn", "dqn.nn", "seq2seq_gru.nn",
                                               "autoencoder_mlp.nn"}


@pytest.mark.parametrize("path", TRAINED_SPECS, ids=lambda p: p.name)
def test_bundled_specs_loss_gradients_equal_autograd(path):
    """NumpyModel.grad of each bundled train section (its loss over the output, targets and
    inputs) against autograd through the module's own loss(), float64, small dims."""
    if path.name == "vgg16.nn":
        pytest.skip("15 GMACs an image in float64 NumPy; VGG's layers are checked in "
                    "test_crosscheck.py")
    if path.name == "gpt2.nn":
        pytest.skip("124 M parameters in float64 NumPy; test_llms.py checks its loss "
                    "gradients at a tiny configuration")
    from nnspec.ir import training as T
    from nnspec.tools.crosscheck import bind_dims, concrete_inputs
    from nnspec.tools.trainer import _as_targets, _symbols, _targets

    spec = nnspec.load(str(path))
    for t in spec.program.trainings:
        m = spec.model(t.model)
        env = bind_dims(spec, m.name, {s: 3 for s in _symbols(m)})
        rng = np.random.default_rng(5)
        inputs = _as_targets(t, m, concrete_inputs(spec, m.name, env, np.float64, 1), rng)
        targets = [a.astype(np.float64) if a.dtype.kind == "f" else a
                   for a in _targets(spec, t, env, rng)]
        mod = build_module(spec, m.name, seed=2, dtype=torch.float64).eval()
        ref = NumpyModel(spec, m.name, dtype=np.float64,
                         params={k: v.detach().numpy().copy()
                                 for k, v in mod.state_dict().items()})
        got = ref.grad(*inputs, targets={tg.name: a for tg, a in zip(t.targets, targets)})
        xs = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
        by_name = {i.name: x for i, x in zip(m.inputs, xs)}
        used = T.loss_args(t, m)[1 + len(t.targets):]
        loss = mod.loss(mod(*xs), *[torch.from_numpy(a) for a in targets],
                        *[by_name[n] for n in used])
        loss.backward()
        assert got.loss == pytest.approx(loss.item(), rel=1e-10)
        for k, p in mod.named_parameters():
            np.testing.assert_allclose(got.params[k], p.grad.numpy(), rtol=1e-8, atol=1e-12,
                                       err_msg=f"{path.name}: {k}")
        for g, x in zip(got.inputs, xs):
            if x.requires_grad:
                np.testing.assert_allclose(g, x.grad.numpy(), rtol=1e-8, atol=1e-12)


# a forward and backward pass of these takes seconds on a CPU: 40 steps do not fit the
# suite (their sections are checked, and their loss gradients cross-checked below)
SLOW_TO_TRAIN = {"alexnet.nn", "capsnet.nn", "causal_lm.nn", "gpt2.nn", "resnet18.nn",
                 "vgg16.nn"}


@pytest.mark.parametrize("path", TRAINED_SPECS, ids=lambda p: p.name)
def test_bundled_specs_overfit_one_batch(path):
    from nnspec.tools.trainer import overfit

    if path.name in SLOW_TO_TRAIN:
        pytest.skip("slow on a CPU: run nnspec train --overfit-batch on it")
    if path.name == "vae.nn":
        # bce (summed) of random images in [0, 1) is mostly their own entropy, which no
        # model removes, and the latent is sampled: its loss falls ~5% in 25 steps
        pytest.skip("the loss on random images is irreducible; gradients are checked above")
    spec = nnspec.load(str(path))
    for t in spec.program.trainings:
        report = overfit(spec, t.model, steps=25)
        assert report.ok, report.render()


def test_the_ir_round_trips_and_is_validated(tmp_path, capsys):
    from nnspec.tools.cli import main
    from nnspec.ir import Program

    spec = nnspec.loads(CLASSIFIER, "c.nn")
    text = spec.program.to_json()
    assert Program.from_json(text).model_dump() == spec.program.model_dump()
    data = json.loads(text)
    data["trainings"][0]["terms"][0]["loss"] = "cross_entropi"
    data["trainings"][0]["optimizer_params"]["lr"] = -1.0
    data["trainings"][0]["clip"] = {"norm": 1.0, "value": 2.0}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data, indent=1))
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr()
    err = out.out + out.err
    assert "trainings[0].terms[0].loss: unknown loss 'cross_entropi' [E216]" in err
    assert "trainings[0].optimizer_params.lr" in err
    assert "clip takes one of norm=<max total norm> or value=<max element> [E216]" in err
