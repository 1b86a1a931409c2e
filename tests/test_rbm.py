"""The rbm kind: its forward (up-pass, Gibbs reconstruction, free energy) and CD-k pass
against hand-written float64 torch on the same random numbers, the free energy against its
definition by enumeration, CD-1 learning, the DBN spec and the located errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import nnspec
from nnspec.backends.numpy import NumpyModel
from nnspec.layers.rbm import cd_statistics, free_energy
from nnspec.layers.stochastic import Noise

torch = pytest.importorskip("torch")
from nnspec.backends.torch import build_module  # noqa: E402
from nnspec.layers.torch.stochastic import use_noise  # noqa: E402

V, H = 6, 4


def _spec(args: str):
    return nnspec.loads(f"model M(x: [N, {V}]) {{\n    rbm {H} {args} as r\n}}\n", "r.nn")


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {"r.weight": rng.standard_normal((H, V)), "r.bias": rng.standard_normal(H),
            "r.visible_bias": rng.standard_normal(V)}


def _data(n=5, seed=1):
    return (np.random.default_rng(seed).random((n, V)) < 0.5).astype(np.float64)


def _chain_by_hand(p, v, k, sample, sample_visible, noise, name="r"):
    """k Gibbs steps written out in torch: returns the last v_prob."""
    w, b, c = (torch.from_numpy(p[f"{name}.{k_}"]) for k_ in ("weight", "bias",
                                                               "visible_bias"))
    v = torch.from_numpy(v)
    for i in range(k):
        ph = torch.sigmoid(v @ w.T + b)
        if sample:
            u = torch.from_numpy(noise.draw(name, f"h{i}", ph.shape, False))
            h = (u < ph).double()
        else:
            h = ph
        pv = torch.sigmoid(h @ w + c)
        if sample and sample_visible and i < k - 1:
            v = (torch.from_numpy(noise.draw(name, f"v{i}", pv.shape, False)) < pv).double()
        else:
            v = pv
    return pv


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("sample,sample_visible", [(False, False), (True, False),
                                                   (True, True)],
                         ids=["mean-field", "sampled", "sampled-visible"])
def test_reconstruction_matches_a_gibbs_chain_by_hand(k, sample, sample_visible):
    args = f"k={k} output=visible" + (" sample_visible" if sample_visible else "")
    spec = _spec(args)
    p, v = _params(), _data()
    nm = NumpyModel(spec, params=p, dtype=np.float64)
    mod = build_module(spec, params=p, dtype=torch.float64).eval()
    force = True if sample else None
    got = nm(v, noise=Noise(2), sample=force)
    use_noise(mod, Noise(2), force)
    with torch.no_grad():
        theirs = mod(torch.from_numpy(v)).numpy()
    want = _chain_by_hand(p, v, k, sample, sample_visible, Noise(2)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(theirs, want, rtol=1e-13, atol=1e-15)
    if sample and k > 1:  # the chain did sample: the mean-field chain differs
        mean = _chain_by_hand(p, v, k, False, False, None).numpy()
        assert np.abs(mean - want).max() > 1e-3


def test_the_up_pass_is_nn_linear_then_a_sample():
    spec = _spec("")
    p, v = _params(), _data()
    lin = torch.nn.Linear(V, H).double()
    lin.load_state_dict({"weight": torch.from_numpy(p["r.weight"]),
                         "bias": torch.from_numpy(p["r.bias"])})
    with torch.no_grad():
        ph = torch.sigmoid(lin(torch.from_numpy(v))).numpy()
    nm = NumpyModel(spec, params=p, dtype=np.float64)
    np.testing.assert_allclose(nm(v), ph, rtol=1e-14)
    sampled = nm(v, sample=True, noise=Noise(0))
    u = Noise(0).draw("r", "h0", ph.shape, False)
    np.testing.assert_array_equal(sampled, (u < ph).astype(np.float64))
    assert list(spec.state_shapes()) == ["r.weight", "r.bias", "r.visible_bias"]
    shapes = spec.state_shapes()
    assert shapes["r.weight"].shape == (H, V) and shapes["r.weight"].init == ("normal", 0.01)
    assert shapes["r.visible_bias"].init == ("zeros",)


def test_free_energy_is_minus_log_sum_over_hidden_states():
    """F(v) = -log Σ_h exp(-E(v, h)), E(v, h) = -v·b_v - h·b_h - hᵀ W v, summed over all
    2^H hidden states; and -v·b_v - Σ softplus(v Wᵀ + b_h) in torch."""
    spec = _spec("output=free_energy")
    p, v = _params(), _data()
    got = NumpyModel(spec, params=p, dtype=np.float64)(v)
    w, b, c = p["r.weight"], p["r.bias"], p["r.visible_bias"]
    states = np.array(list(itertools.product([0.0, 1.0], repeat=H)))  # [2^H, H]
    energies = -(v @ c)[:, None] - (states @ b)[None, :] - v @ w.T @ states.T
    want = -np.log(np.exp(-energies).sum(axis=1))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    vt = torch.from_numpy(v)
    by_torch = -(vt @ torch.from_numpy(c)) - torch.nn.functional.softplus(
        vt @ torch.from_numpy(w).T + torch.from_numpy(b)).sum(-1)
    np.testing.assert_allclose(got, by_torch.numpy(), rtol=1e-13)
    np.testing.assert_allclose(free_energy({k[2:]: a for k, a in p.items()}, v), got)
    mod = build_module(spec, params=p, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(mod(vt).numpy(), got, rtol=1e-13)


def _cd_by_hand(p, v, k, noise):
    """CD-k written out in torch: positive phase at the data, negative at the chain's end."""
    w, b = torch.from_numpy(p["r.weight"]), torch.from_numpy(p["r.bias"])
    v0 = torch.from_numpy(v)
    ph0 = torch.sigmoid(v0 @ w.T + b)
    vk = _chain_by_hand(p, v, k, True, False, noise)
    phk = torch.sigmoid(vk @ w.T + b)
    n = v.shape[0]
    pos = {"weight": ph0.T @ v0 / n, "bias": ph0.mean(0), "visible_bias": v0.mean(0)}
    neg = {"weight": phk.T @ vk / n, "bias": phk.mean(0), "visible_bias": vk.mean(0)}
    return {key: (pos[key] - neg[key]).numpy() for key in pos}


@pytest.mark.parametrize("k", [1, 3])
def test_cd_statistics_match_cd_k_by_hand(k):
    p, v = _params(), _data(8)
    want = _cd_by_hand(p, v, k, Noise(5))
    got = cd_statistics({key[2:]: a for key, a in p.items()}, v, k, noise=Noise(5), name="r")
    mod = build_module(_spec(f"k={k}"), params=p, dtype=torch.float64)
    use_noise(mod, Noise(5))
    theirs = mod.r.cd_statistics(torch.from_numpy(v))
    assert set(got) == set(theirs) == {"weight", "bias", "visible_bias"}
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-14, err_msg=key)
        np.testing.assert_allclose(theirs[key].numpy(), want[key], rtol=1e-12, atol=1e-14)
    # the generator path draws too: the same statistics from the same seed
    again = cd_statistics({key[2:]: a for key, a in p.items()}, v, k,
                          rng=np.random.default_rng(0))
    same = cd_statistics({key[2:]: a for key, a in p.items()}, v, k,
                         rng=np.random.default_rng(0))
    assert all(np.array_equal(again[key], same[key]) for key in again)


def test_cd_1_learns_two_patterns():
    """CD-1 ascent lowers the reconstruction error of a toy data set and the free energy of
    the data relative to other vectors."""
    patterns = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=np.float64)
    data = patterns[np.arange(40) % 2]
    rng = np.random.default_rng(0)
    params = {"weight": rng.normal(0, 0.01, (H, V)), "bias": np.zeros(H),
              "visible_bias": np.zeros(V)}
    spec = _spec("output=visible")

    def error():
        nm = NumpyModel(spec, params={f"r.{k}": a for k, a in params.items()},
                        dtype=np.float64)
        return float(((nm(data) - data) ** 2).mean())

    before = error()
    for _ in range(300):
        stats = cd_statistics(params, data, 1, rng)
        for key in params:
            params[key] = params[key] + 0.1 * stats[key]
    assert error() < 0.2 * before
    other = np.array([[1, 0, 1, 0, 1, 0]], dtype=np.float64)
    assert free_energy(params, patterns).max() < free_energy(params, other).min()


def test_rbm_backward_against_autograd_in_every_output():
    from nnspec.tools.crosscheck import crosscheck_grad

    text = f"""
model M(x: [N, {V}]) {{
    h = x | rbm {H} as up
    v = x | rbm {H} k=2 output=visible as recon
    e = x | rbm {H} output=free_energy as energy
    return h, v, e
}}
"""
    spec = nnspec.loads(text, "m.nn")
    for sample in (False, True):
        report = crosscheck_grad(spec, dims={"N": 3}, sample=sample)
        assert report.ok, report.render()


# ---- the DBN ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dbn():
    return nnspec.load("specs/dbn.nn")


def test_dbn_parameter_count_and_layout(dbn):
    rbms = [(784, 500), (500, 500), (500, 2000)]
    count = sum(v * h + h + v for v, h in rbms) + 2000 * 10 + 10
    assert count == 1_666_794
    for model in ("DBN", "SampledDBN"):
        shapes = dbn.state_shapes(model)
        assert sum(int(np.prod(w.shape)) for w in shapes.values()) == count
        assert shapes["rbm1.weight"].shape == (500, 784)
        assert shapes["rbm3.visible_bias"].shape == (500,)
    assert list(dbn.state_shapes("RBM1")) == ["rbm1.weight", "rbm1.bias", "rbm1.visible_bias"]


def test_dbn_up_pass_deterministic_and_sampled(dbn):
    x = np.random.default_rng(0).random((3, 784))
    det = NumpyModel(dbn, "DBN", seed=0, dtype=np.float64)
    sampled = NumpyModel(dbn, "SampledDBN", params=det.params, dtype=np.float64)
    values = det(x, trace=True)
    h = values[det.model.nodes[2].id]
    assert np.all((h > 0) & (h < 1))  # probabilities
    trace = sampled(x, trace=True, noise=Noise(0))
    hs = trace[sampled.model.nodes[2].id]
    assert set(np.unique(hs)) == {0.0, 1.0}
    # the same noise in training mode of DBN gives SampledDBN's pass
    np.testing.assert_array_equal(det(x, training=True, noise=Noise(0)),
                                  sampled(x, noise=Noise(0)))


@pytest.mark.parametrize("sample", [False, True], ids=["eval", "sampled"])
def test_crosscheck_of_the_dbn(dbn, sample):
    from nnspec.tools.crosscheck import crosscheck, crosscheck_grad

    for model in ("DBN", "RBM1"):
        report = crosscheck(dbn, model, sample=sample)
        assert report.ok, report.render()
    grad = crosscheck_grad(dbn, "DBN", sample=sample)
    assert grad.ok, grad.render()


# ---- located errors -------------------------------------------------------------------------


@pytest.mark.parametrize("line,message", [
    ("rbm 3", "rbm samples from a float tensor, got [N, 4] int"),
])
def test_rbm_of_an_int_tensor(line, message):
    spec = nnspec.loads(f"model M(x: [N, 4] int) {{\n    {line}\n}}\n", "bad.nn",
                        strict=False)
    assert [(d.span.line, d.span.col) for d in spec.diagnostics] == [(2, 5)]
    assert message in spec.diagnostics[0].message


@pytest.mark.parametrize("line,arg,message", [
    ("rbm 0", "hidden", "must be >= 1"),
    ("rbm 3 k=0", "k", "must be >= 1"),
    ("rbm 3 output=energy", "output", "'hidden', 'visible' or 'free_energy'"),
    ("rbm 3 output=free_energy sample=always", "sample", "the free energy is deterministic"),
    ("rbm 3 sample_visible=1", "sample_visible", "bool"),
])
def test_rbm_bad_arguments(line, arg, message):
    text = f"model M(x: [N, 4]) {{\n    x | {line}\n}}\n"
    spec = nnspec.loads(text, "bad.nn", strict=False)
    (d,) = spec.diagnostics
    col = text.splitlines()[1].index(arg if arg != "hidden" else "0") + 1
    assert (d.span.line, d.span.col) == (2, col), d
    assert message in d.message


def test_rbm_needs_a_concrete_visible_size():
    spec = nnspec.loads("model M(x: [N, T]) {\n    rbm 3\n}\n", "bad.nn", strict=False)
    (d,) = spec.diagnostics
    assert "rbm's visible size (the input's last dim) must be a concrete size" in d.message
