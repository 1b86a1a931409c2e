"""The stochastic layers (bernoulli, sample_gaussian, gaussian_noise): their modes, the noise
both backends share, gradients against autograd and hand-written float64 torch, the VAE spec
through crosscheck and the emitted source, and the located errors."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

import nnspec
from nnspec.backends.numpy import NumpyModel
from nnspec.layers.stochastic import Noise

torch = pytest.importorskip("torch")
from nnspec.backends.torch import build_module  # noqa: E402
from nnspec.layers.torch.stochastic import use_noise  # noqa: E402

F = torch.nn.functional

SPEC = """
model Mix(x: [N, 6]) {
    p = x | dense 4 as fc | sigmoid
    b = p | bernoulli as coin
    mu = x | dense 3 as enc_mu
    logvar = x | dense 3 as enc_logvar
    z = sample_gaussian(mu, logvar) as reparam
    n = z | gaussian_noise 0.3 as jitter
    return b, n
}
"""


@pytest.fixture(scope="module")
def mix():
    spec = nnspec.loads(SPEC, "mix.nn")
    spec.raise_for_errors()
    nm = NumpyModel(spec, seed=0, dtype=np.float64)
    mod = build_module(spec, params=nm.params, dtype=torch.float64)
    x = np.random.default_rng(1).standard_normal((5, 6))
    return spec, nm, mod, x


def _by_hand(nm, x, noise):
    """The model written in float64 torch, its draws taken from ``noise`` as the layers take
    them (layer name, part)."""
    p = {k: torch.from_numpy(v) for k, v in nm.params.items()}
    xt = torch.from_numpy(x)
    prob = torch.sigmoid(xt @ p["fc.weight"].T + p["fc.bias"])
    u = torch.from_numpy(noise.draw("coin", "u", prob.shape, False))
    b = (u < prob).double()
    mu = xt @ p["enc_mu.weight"].T + p["enc_mu.bias"]
    lv = xt @ p["enc_logvar.weight"].T + p["enc_logvar.bias"]
    eps = torch.from_numpy(noise.draw("reparam", "eps", mu.shape, True))
    z = mu + torch.exp(0.5 * lv) * eps
    n = z + 0.3 * torch.from_numpy(noise.draw("jitter", "eps", z.shape, True))
    return b, n, prob, mu


def test_noise_is_a_pure_function_of_seed_name_part_and_count():
    a, b = Noise(3), Noise(3)
    first = a.draw("l", "u", (4,), False)
    assert np.array_equal(first, b.draw("l", "u", (4,), False))
    again = a.draw("l", "u", (4,), False)  # the second draw of (l, u): another number
    assert not np.array_equal(first, again)
    assert np.array_equal(again, b.draw("l", "u", (4,), False))
    assert np.all((0 <= first) & (first < 1))
    assert not np.array_equal(Noise(3).draw("l", "v", (4,), False), first)
    assert not np.array_equal(Noise(4).draw("l", "u", (4,), False), first)
    x32 = Noise(3).draw("l", "u", (4,), False, np.float32)
    assert x32.dtype == np.float32 and np.array_equal(x32, first.astype(np.float32))
    assert np.array_equal(Noise(-1).draw("l", "u", (2,), True),
                          Noise(2**64 - 1).draw("l", "u", (2,), True))


@pytest.mark.parametrize("sample", [False, True], ids=["eval", "sampled"])
def test_both_backends_and_torch_by_hand_agree_on_the_same_noise(mix, sample):
    spec, nm, mod, x = mix
    force = True if sample else None
    b_np, n_np = nm(x, noise=Noise(11), sample=force)
    use_noise(mod.eval(), Noise(11), force)
    with torch.no_grad():
        b_t, n_t = mod(torch.from_numpy(x))
    use_noise(mod, None)
    b_h, n_h, prob, mu = _by_hand(nm, x, Noise(11))
    if sample:
        assert set(np.unique(b_np)) <= {0.0, 1.0} and 0 < b_np.sum() < b_np.size
        np.testing.assert_array_equal(b_np, b_h.numpy())
        np.testing.assert_allclose(n_np, n_h.numpy(), rtol=1e-14, atol=1e-14)
    else:  # the means: the probabilities, mu (the noise layer is the identity)
        np.testing.assert_allclose(b_np, prob.numpy(), rtol=1e-14)
        np.testing.assert_allclose(n_np, mu.numpy(), rtol=1e-14, atol=1e-15)
    # binary samples are equal, probabilities within rounding
    np.testing.assert_allclose(b_np, b_t.numpy(), rtol=1e-15 if sample else 1e-14, atol=0)
    np.testing.assert_allclose(n_np, n_t.numpy(), rtol=1e-14, atol=1e-15)


def test_modes_train_always_never():
    text = """
model M(x: [N, 4]) {
    a = x | gaussian_noise 1.0 as a
    b = x | gaussian_noise 1.0 sample=always as b
    c = x | gaussian_noise 1.0 sample=never as c
    return a, b, c
}
"""
    spec = nnspec.loads(text, "m.nn")
    nm = NumpyModel(spec, dtype=np.float64)
    mod = build_module(spec, dtype=torch.float64)
    x = np.zeros((2, 4))
    xt = torch.from_numpy(x)
    moved = {}
    for training in (False, True):
        a, b, c = nm(x, training=training, rng=np.random.default_rng(0))
        with torch.no_grad():
            ta, tb, tc = mod.train(training)(xt)
        moved[training] = [bool(np.any(v != 0)) for v in (a, b, c)]
        assert moved[training] == [bool(torch.any(v != 0)) for v in (ta, tb, tc)]
    assert moved == {False: [False, True, False], True: [True, True, False]}
    # sample=True / False overrides the mode of the `train` layers only
    a, b, c = nm(x, training=False, sample=True)
    assert [bool(np.any(v != 0)) for v in (a, b, c)] == [True, True, False]
    a, b, c = nm(x, training=True, sample=False)
    assert [bool(np.any(v != 0)) for v in (a, b, c)] == [False, True, False]


def test_the_torch_module_draws_from_torchs_generator():
    spec = nnspec.loads(SPEC, "mix.nn")
    mod = build_module(spec, seed=0, dtype=torch.float64).train()
    x = torch.randn(4000, 6, dtype=torch.float64)
    torch.manual_seed(5)
    b1, n1 = mod(x)
    torch.manual_seed(5)
    b2, n2 = mod(x)
    assert torch.equal(b1, b2) and torch.equal(n1, n2)
    b3, _ = mod(x)
    assert not torch.equal(b1, b3)
    with torch.no_grad():
        p = torch.sigmoid(mod.fc(x))
        mu = mod.enc_mu(x)
        sd = torch.sqrt(torch.exp(mod.enc_logvar(x)) + 0.09)
    # the samples follow their distributions: E[b] = p, (n - mu) / sd ~ N(0, 1)
    assert abs((b1 - p).mean().item()) < 0.02
    std = ((n1 - mu) / sd).detach()
    assert abs(std.mean().item()) < 0.05 and abs(std.std().item() - 1) < 0.05


def test_gradients_treat_the_draws_as_constants(mix):
    """The reparameterised sample has gradients to mu and logvar, the Bernoulli sample none
    to its probabilities: NumPy's backward against autograd on the same draws."""
    spec, nm, mod, x = mix
    rng = np.random.default_rng(2)
    cot = (rng.standard_normal((5, 4)), rng.standard_normal((5, 3)))
    got = nm.vjp(x, cotangent=cot, training=True, noise=Noise(4))
    xt = torch.from_numpy(x).requires_grad_(True)
    use_noise(mod.train(), Noise(4))
    mod.zero_grad()
    b, n = mod(xt)
    use_noise(mod, None)
    assert not b.requires_grad  # nothing flows through the coin
    ((n * torch.from_numpy(cot[1])).sum()).backward()
    named = dict(mod.named_parameters())
    for k, g in got.params.items():
        want = named[k].grad
        want = np.zeros_like(g) if want is None else want.numpy()
        np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-14, err_msg=k)
    assert np.all(got.params["fc.weight"] == 0)
    np.testing.assert_allclose(got.inputs[0], xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    # by hand: dz/dlogvar = 0.5 exp(0.5 logvar) eps
    p = {k: torch.from_numpy(v) for k, v in nm.params.items()}
    lv = torch.from_numpy(x) @ p["enc_logvar.weight"].T + p["enc_logvar.bias"]
    eps = torch.from_numpy(Noise(4).draw("reparam", "eps", (5, 3), True))
    g_lv = torch.from_numpy(cot[1]) * 0.5 * torch.exp(0.5 * lv) * eps
    np.testing.assert_allclose(got.params["enc_logvar.bias"], g_lv.sum(0).numpy(), rtol=1e-12)


# ---- the VAE ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vae():
    return nnspec.load("specs/vae.nn")


def test_vae_layout_and_parameter_count(vae):
    shapes = vae.state_shapes("VAE")
    # Keras' example: encoder 320 + 18,496 + 50,192 + 2 * 34, decoder 9,408 + 36,928 +
    # 18,464 + 289
    counts = {k: int(np.prod(w.shape)) for k, w in shapes.items()}
    enc = sum(v for k, v in counts.items() if not k.startswith("decoder."))
    assert (enc, sum(counts.values()) - enc) == (1 * 32 * 9 + 32 + 32 * 64 * 9 + 64
                                                 + 3136 * 16 + 16 + 2 * (16 * 2 + 2),
                                                 2 * 3136 + 3136 + 64 * 64 * 9 + 64
                                                 + 64 * 32 * 9 + 32 + 32 * 9 + 1)
    assert sum(counts.values()) == 134_165
    assert vae.model("VAE").output_names == ["recon", "mu", "logvar"]


def test_vae_loss_gradient_with_the_reparameterisation_against_autograd(vae):
    """The train section's loss (bce + KL, summed) and its NumPy gradients in training mode,
    on the same eps, against torch autograd on the emitted module's loss."""
    nm = NumpyModel(vae, "VAE", seed=0, dtype=np.float64)
    x = np.random.default_rng(3).uniform(0, 1, (2, 1, 28, 28))
    got = nm.grad(x, training=True, noise=Noise(9))
    net = build_module(vae, "VAE", params=nm.params, dtype=torch.float64).train()
    use_noise(net, Noise(9))
    xt = torch.from_numpy(x)
    recon, mu, logvar = net(xt)
    eps = torch.from_numpy(Noise(9).draw("sample_gaussian_0", "eps", (2, 2), True))
    with torch.no_grad():  # the sample the decoder saw: mu + exp(logvar / 2) eps
        z = mu + torch.exp(0.5 * logvar) * eps
        d = net.decoder
        h = torch.relu(d.fc(z)).reshape(-1, 64, 7, 7)
        h = torch.relu(d.deconv2(torch.relu(d.deconv1(h))))
        torch.testing.assert_close(recon, torch.sigmoid(d.deconv3(h)), rtol=1e-13, atol=1e-13)
    want = F.binary_cross_entropy(recon, xt, reduction="sum") + (
        -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum()
    loss = net.loss((recon, mu, logvar), xt)
    torch.testing.assert_close(loss, want, rtol=1e-13, atol=0)
    assert got.loss == pytest.approx(want.item(), rel=1e-12)
    loss.backward()
    for k, p in net.named_parameters():
        np.testing.assert_allclose(got.params[k], p.grad.numpy(), rtol=1e-9, atol=1e-11,
                                   err_msg=k)


@pytest.mark.parametrize("sample", [False, True], ids=["eval", "sampled"])
def test_crosscheck_of_the_vae(vae, sample):
    from nnspec.tools.crosscheck import crosscheck, crosscheck_grad

    report = crosscheck(vae, "VAE", sample=sample)
    assert report.ok, report.render()
    row = next(r for r in report.rows if r.kind == "sample_gaussian")
    mu = next(r for r in report.rows if r.name == "z_mean")
    assert ("stochastic layers sampled" in report.render()) is sample
    grad = crosscheck_grad(vae, "VAE", sample=sample)
    assert grad.ok, grad.render()
    assert row.shape == mu.shape == (2, 2)


def test_crosscheck_sample_differs_from_eval_and_is_reproducible(vae):
    from nnspec.tools.crosscheck import crosscheck

    spec = nnspec.loads(SPEC, "mix.nn")
    evals = crosscheck(spec)
    sampled = crosscheck(spec, sample=True)
    assert evals.ok and sampled.ok, sampled.render()
    assert sampled.render() == crosscheck(spec, sample=True).render()


def test_crosscheck_sample_from_the_command_line(tmp_path, capsys):
    from nnspec.tools.cli import main

    path = tmp_path / "mix.nn"
    path.write_text(SPEC)
    assert main(["crosscheck", "--sample", str(path)]) == 0
    out = capsys.readouterr().out
    assert "stochastic layers sampled" in out and "ok: both backends agree" in out
    assert main(["crosscheck", "--grad", "--sample", "--seed", "3", str(path)]) == 0


# ---- the emitted source -------------------------------------------------------------------


#: the helper classes' constructor signatures, as nnspec.backends.emit.NN_SIGNATURES lists them
SIGNATURES = {
    "nnspec.layers.torch.stochastic:Bernoulli": ("sample='train'",),
    "nnspec.layers.torch.stochastic:GaussianSample": ("sample='train'",),
    "nnspec.layers.torch.stochastic:GaussianNoise": ("std", "sample='train'"),
    "nnspec.layers.torch.rbm:RBM": ("visible", "hidden", "k=1", "output='hidden'",
                                    "sample_visible=False", "sample='train'"),
}


def _frozen(parts):
    import ast

    from nnspec.backends.emit import constructors as emit

    return tuple((n, emit._R if not d else ast.literal_eval(d))
                 for n, _, d in (p.partition("=") for p in parts))


@pytest.fixture
def signatures(monkeypatch):
    """The helpers' signatures in nnspec.backends.emit.NN_SIGNATURES (until emit.py lists them)."""
    from nnspec.backends.emit.constructors import NN_SIGNATURES

    for ref, parts in SIGNATURES.items():
        if ref not in NN_SIGNATURES:
            monkeypatch.setitem(NN_SIGNATURES, ref, _frozen(parts))
        assert NN_SIGNATURES[ref] == _frozen(parts), ref


def test_the_helper_signatures_are_the_classes_own():
    import inspect

    from nnspec.backends.emit import constructors as emit
    from nnspec.backends.torch.calls import _helper

    for ref, parts in SIGNATURES.items():
        params = inspect.signature(_helper(ref).__init__).parameters
        assert tuple((k, emit._R if q.default is q.empty else q.default)
                     for k, q in params.items() if k != "self") == _frozen(parts), ref


def import_source(path, name):
    found = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(found)
    sys.modules[name] = mod
    found.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path,model,shape", [
    ("specs/vae.nn", "VAE", (2, 1, 28, 28)),
    ("specs/dbn.nn", "DBN", (3, 784)),
    ("specs/dbn.nn", "SampledDBN", (3, 784)),
    ("specs/dbn.nn", "RBM1", (3, 784)),
])
def test_the_emitted_source_equals_build_module(signatures, tmp_path, path, model, shape):
    from nnspec.backends.emit import emit_source

    spec = nnspec.load(path)
    src = emit_source(spec, model)
    assert max(len(line) for line in src.splitlines()) <= 100
    name = f"gen_{model.lower()}"
    file = tmp_path / f"{name}.py"
    file.write_text(src)
    net = getattr(import_source(file, name), model)().double()
    ref = build_module(spec, model, seed=0, dtype=torch.float64)
    net.load_state_dict(ref.state_dict())
    x = torch.rand(shape, dtype=torch.float64)
    with torch.no_grad():
        for sample in (None, True):  # eval, then sampled on the same noise
            use_noise(net.eval(), Noise(1), sample)
            use_noise(ref.eval(), Noise(1), sample)
            a, b = net(x), ref(x)
            for u, v in zip(a if isinstance(a, tuple) else (a,),
                            b if isinstance(b, tuple) else (b,)):
                torch.testing.assert_close(u, v, rtol=1e-13, atol=1e-13)


# ---- located errors ---------------------------------------------------------------------


@pytest.mark.parametrize("body,where,message", [
    ("x | bernoulli", "3:9", "bernoulli samples from a float tensor, got [N, 4] int"),
    ("x | gaussian_noise 0.1", "3:9", "gaussian_noise samples from a float tensor"),
    ("sample_gaussian(x, x)", "3:5", "sample_gaussian's mu samples from a float tensor"),
])
def test_sampling_an_int_tensor_is_a_located_error(body, where, message):
    spec = nnspec.loads(f"\nmodel M(x: [N, 4] int) {{\n    {body}\n}}\n", "bad.nn",
                        strict=False)
    text = _render(spec)
    assert f"bad.nn:{where}: error: {message}" in text, text


def _render(spec) -> str:
    from nnspec.core.diagnostics import SpecError

    try:
        spec.raise_for_errors()
    except SpecError as e:
        return e.render()
    return ""


@pytest.mark.parametrize("body,message", [
    ("mu = x | dense 3\n    lv = x | dense 2\n    sample_gaussian(mu, lv)",
     "sample_gaussian's mu [N, 3] and logvar [N, 2] differ in shape"),
    ("x | gaussian_noise 0.0", "std"),
    ("x | gaussian_noise", "std"),
    ("x | bernoulli sample=sometimes", "sample"),
    ("x | bernoulli 0.5", "bernoulli"),
])
def test_bad_arguments_are_located_errors(body, message):
    spec = nnspec.loads(f"model M(x: [N, 4]) {{\n    {body}\n}}\n", "bad.nn", strict=False)
    text = _render(spec)
    assert "bad.nn:" in text and ": error: " in text and message in text, text
    assert "Traceback" not in text
