"""Weight sharing: a named layer or block applied again (``x2 | tower``), weights tied to
another layer's (``weight=wte.weight``) or its transpose (``weight=enc.weight.T``); blocks
and models returning several values; layer-valued block parameters.

Each is checked against torch written by hand with the same weights (float64), for
parameter counts computed by hand, and for really shared tensors (an update of one is seen
through the other)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nnspec
from nnspec.backends.numpy import NumpyModel
from tests._util import import_source

torch = pytest.importorskip("torch")
F = torch.nn.functional

from nnspec.backends.torch import build_module  # noqa: E402
from nnspec.tools.crosscheck import crosscheck, crosscheck_grad  # noqa: E402

SPEC = """
block Tower(x) {
  x | dense 8 | relu | dense 4
}

model Siamese(a: [N, 6], b: [N, 6]) {
  u = a | Tower as tower
  v = b | tower
  return u, v
}

model Tied(x: [N, 20]) {
  h = x | dense 8 as enc | relu
  return h | dense 20 weight=enc.weight.T
}

model LM(t: [N, T] int) {
  h = t | embedding 50 16 as wte
  return h | dense 50 bias=false weight=wte.weight
}

model Albert(x: [N, 8]) {
  y = x | dense 8 as fc | relu
  return y | fc * 3
}
"""


@pytest.fixture(scope="module")
def spec():
    return nnspec.loads(SPEC, "sharing.nn")


def _np(t):
    return t.detach().numpy()


def _both(spec, name, *xs):
    """(torch module, NumPy model) with the same float64 weights, and their outputs."""
    net = build_module(spec, name, seed=1, dtype=torch.float64)
    nm = NumpyModel(spec, name, params={k: _np(v) for k, v in net.state_dict().items()},
                    dtype=np.float64)
    return net, nm, net(*xs), nm(*[x.numpy() for x in xs])


def test_a_block_instance_applied_again_is_one_set_of_weights(spec):
    # 6*8+8 + 8*4+4 = 92, counted once although the tower runs twice
    assert spec.param_count("Siamese") == 92
    assert list(spec.state_shapes("Siamese")) == [
        "tower.dense_0.weight", "tower.dense_0.bias", "tower.dense_1.weight",
        "tower.dense_1.bias"]
    a, b = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    net, _, (u, v), (nu, nv) = _both(spec, "Siamese", a, b)
    s = net.state_dict()

    def tower(x):  # by hand
        h = F.relu(x @ s["tower.dense_0.weight"].T + s["tower.dense_0.bias"])
        return h @ s["tower.dense_1.weight"].T + s["tower.dense_1.bias"]

    for got, np_got, x in ((u, nu, a), (v, nv, b)):
        torch.testing.assert_close(got, tower(x), rtol=0, atol=1e-14)
        np.testing.assert_allclose(np_got, _np(tower(x)), rtol=0, atol=1e-14)
    assert len(list(net.parameters())) == 4
    # the MACs count each application
    assert str(spec.macs("Siamese")) == "160*N"


def test_a_layer_applied_n_times_shares_its_weights(spec):
    assert spec.param_count("Albert") == 72
    x = torch.randn(2, 8, dtype=torch.float64)
    net, _, y, ny = _both(spec, "Albert", x)
    w, b = net.fc.weight, net.fc.bias
    h = F.relu(x @ w.T + b)
    for _ in range(3):
        h = h @ w.T + b
    torch.testing.assert_close(y, h, rtol=0, atol=1e-14)
    np.testing.assert_allclose(ny, _np(h), rtol=0, atol=1e-14)


def test_a_tied_weight_is_one_parameter_listed_under_both_keys(spec):
    assert spec.param_count("LM") == 50 * 16
    assert list(spec.state_shapes("LM")) == ["wte.weight", "dense_0.weight"]
    net = build_module(spec, "LM", seed=0, dtype=torch.float64)
    assert list(net.state_dict()) == ["wte.weight", "dense_0.weight"]
    assert [n for n, _ in net.named_parameters()] == ["wte.weight"]
    assert net.dense_0.weight is net.wte.weight
    with torch.no_grad():  # update one, the other changes
        net.wte.weight[3] += 1.0
    assert torch.equal(net.dense_0.weight[3], net.wte.weight[3])
    for conv in (lambda m: m.float(), lambda m: m.to("meta").to_empty(device="cpu")):
        conv(net)
        assert net.dense_0.weight is net.wte.weight  # still tied after a conversion
    t = torch.randint(0, 50, (2, 5))
    net, _, y, ny = _both(spec, "LM", t)
    e = net.wte.weight
    torch.testing.assert_close(y, e[t] @ e.T, rtol=0, atol=1e-13)
    np.testing.assert_allclose(ny, _np(e[t] @ e.T), rtol=0, atol=1e-13)


def test_numpy_and_torch_take_a_state_dict_with_either_or_both_tied_keys(spec):
    e = np.random.default_rng(0).standard_normal((50, 16))
    t = np.array([[1, 2, 3]])
    want = e[t] @ e.T
    for params in ({"wte.weight": e}, {"dense_0.weight": e},
                   {"wte.weight": e, "dense_0.weight": e.copy()}):
        np.testing.assert_allclose(NumpyModel(spec, "LM", params=params, dtype=np.float64)(t),
                                   want, rtol=1e-12)
        net = build_module(spec, "LM", params=params, dtype=torch.float64)
        np.testing.assert_allclose(_np(net(torch.from_numpy(t))), want, rtol=1e-12)
    bad = {"wte.weight": e, "dense_0.weight": e + 1}
    with pytest.raises(ValueError, match="tied parameters dense_0.weight and wte.weight differ"):
        NumpyModel(spec, "LM", params=bad)
    with pytest.raises(ValueError, match="differ"):
        build_module(spec, "LM", params=bad)


def test_a_transposed_tie_uses_the_other_layers_matrix(spec):
    # enc: 20*8+8; the decoder has only its bias (20)
    assert spec.param_count("Tied") == 168 + 20
    assert list(spec.state_shapes("Tied")) == ["enc.weight", "enc.bias", "dense_0.bias"]
    x = torch.randn(4, 20, dtype=torch.float64)
    net, _, y, ny = _both(spec, "Tied", x)
    s = net.state_dict()
    want = F.linear(F.relu(F.linear(x, s["enc.weight"], s["enc.bias"])), s["enc.weight"].t(),
                    s["dense_0.bias"])
    torch.testing.assert_close(y, want, rtol=0, atol=1e-14)
    np.testing.assert_allclose(ny, _np(want), rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", ["Siamese", "Tied", "LM", "Albert"])
def test_gradients_of_shared_weights_agree_with_autograd(spec, name):
    assert crosscheck(spec, name).ok
    report = crosscheck_grad(spec, name)
    assert report.ok, report
    # one gradient per parameter, summed over every use
    assert sorted(r.name for r in report.params if r.kind == "param") == sorted(
        k for k, w in spec.state_shapes(name).items() if not w.tied)


def test_the_tied_gradient_sums_both_uses(spec):
    x = np.random.default_rng(2).standard_normal((3, 20))
    nm = NumpyModel(spec, "Tied", seed=0, dtype=np.float64)
    g = nm.vjp(x, cotangent=np.ones((3, 20)))
    net = build_module(spec, "Tied", params=nm.params, dtype=torch.float64)
    net(torch.from_numpy(x)).sum().backward()
    np.testing.assert_allclose(g.params["enc.weight"], _np(net.enc.weight.grad), rtol=1e-12)


def test_the_emitted_source_shares_and_ties_as_written_by_hand(spec, tmp_path):
    from nnspec.backends.emit import emit_source

    src = emit_source(spec, all_models=True)
    assert "self.dense_0.weight = self.wte.weight" in src
    assert "self.dense_0(h, self.enc.weight)" in src
    assert src.count("self.tower = Tower()") == 1
    assert "v = self.tower(b)" in src and "return u, v" in src
    assert src.count("self.fc = nn.Linear(8, 8)") == 1
    file = tmp_path / "gen_sharing.py"
    file.write_text(src)
    gen = import_source(file, "gen_sharing")
    lm = gen.LM()
    assert lm.dense_0.weight is lm.wte.weight
    xs = {"Siamese": (torch.randn(2, 6), torch.randn(2, 6)), "Tied": (torch.randn(2, 20),),
          "LM": (torch.randint(0, 50, (2, 4)),), "Albert": (torch.randn(2, 8),)}
    for name, inputs in xs.items():
        ref = build_module(spec, name, seed=0)
        net = getattr(gen, name)()
        assert list(net.state_dict()) == list(ref.state_dict())
        net.load_state_dict(ref.state_dict())
        want, got = ref(*inputs), net(*inputs)
        for a, b in zip(*(v if isinstance(v, tuple) else (v,) for v in (want, got))):
            torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_sharing_round_trips_through_the_json_ir(spec):
    text = spec.program.to_json()
    back = nnspec.from_ir(text)
    assert back.ok, back.diagnostics
    assert back.param_count("LM") == spec.param_count("LM")
    assert back.state_shapes("Tied") == spec.state_shapes("Tied")
    nodes = json.loads(text)["models"][0]["nodes"]
    assert [n["shared"] for n in nodes][:3] == [False, False, False]
    assert any(n["shared"] for n in nodes)


def _codes(text: str) -> list[str]:
    return [d.code for d in nnspec.loads(text, "bad.nn", strict=False).diagnostics]


def _errors(text: str) -> list:
    return nnspec.loads(text, "bad.nn", strict=False).diagnostics


def test_a_tie_of_the_wrong_shape_names_both_and_suggests_the_transpose():
    (d,) = _errors("model A(x: [N, 20]) {\n  h = x | dense 8 as enc\n"
                   "  h | dense 20 weight=enc.weight\n}\n")
    assert d.code == "E342" and (d.span.line, d.span.col) == (3, 16)
    assert "[20, 8]" in d.message and "enc.weight is [8, 20]" in d.message
    assert d.hint == "tie it transposed: weight=enc.weight.T"


@pytest.mark.parametrize("body, code, where, words", [
    ("h = x | dense 8 as enc\n  h | dense 20 weight=enx.weight", "E079", (3, 23), "'enx'"),
    ("h = x | dense 8 as enc\n  h | dense 20 weight=enc.wieght", "E342", (3, 16), "'wieght'"),
    ("h = x | dense 8 as enc\n  h | enc 5", "E080", (3, 11), "its own arguments"),
    ("h = x | dense 8 as enc\n  h | enc as again", "E080", (3, 7), "names a layer"),
    ("h = x | dense 8 as enc\n  h | dense 8 bias=enc.bias.T", "E342", (3, 15),
     "only a matrix"),
    ("h = x | dense 8 as enc\n  h | dense 20 enc.weight", "E079", (3, 16), "key=layer.key"),
    ("h = x | batchnorm as bn\n  h | batchnorm bias=bn.running_mean", "E342", (3, 17),
     "only parameters"),
])
def test_bad_sharing_is_a_located_error(body, code, where, words):
    diags = _errors(f"model A(x: [N, 20]) {{\n  {body}\n}}\n")
    assert [d.code for d in diags] == [code], diags
    d = diags[0]
    assert (d.span.line, d.span.col) == where and words in d.message


def test_a_shared_layer_given_inputs_of_another_size_is_located():
    (d,) = _errors("model A(x: [N, 20], y: [N, 10]) {\n  h = x | dense 8 as enc\n"
                   "  y | enc\n}\n")
    assert d.code == "E341" and d.span.line == 3
    assert "[8, 10]" in d.message and "[8, 20]" in d.message


def test_a_transposed_tie_other_than_denses_weight_is_refused():
    (d,) = _errors("model A(x: [N, 4, 8]) {\n  h = x | conv 4 k=1 as c\n"
                   "  h | conv 4 k=1 weight=c.weight.T\n}\n")
    assert d.code == "E342"  # conv's weight is 3-d: not a matrix
    (d,) = _errors("model A(x: [N, 8] int) {\n  h = x | embedding 10 8 as e\n"
                   "  x | embedding 8 10 weight=e.weight.T\n}\n")
    assert d.code == "E343" and "embedding" in d.message


def test_an_ir_that_shares_a_layer_it_does_not_have_is_refused(spec):
    prog = json.loads(spec.program.to_json())
    nodes = prog["models"][3]["nodes"]  # Albert: fc, relu, fc, fc, fc
    nodes[2]["params"] = {"out": 8, "bias": False}
    got = nnspec.from_ir(json.dumps(prog))
    bad = [d for d in got.diagnostics if d.code == "E072"]
    assert len(bad) == 1 and "applied as dense" in bad[0].message
    prog = json.loads(spec.program.to_json())
    prog["models"][2]["nodes"][1]["ties"] = {"weight": ["nowhere", "weight", False]}
    assert [d.code for d in nnspec.from_ir(json.dumps(prog)).diagnostics] == ["E072"]


MULTI = """
block Heads(x, act=relu) {
  h = x | dense 8 | act
  s = h | dense 3
  p = h | dense 1 | sigmoid
  return s, p
}

model Two(x: [N, 5]) {
  s, p = Heads(x, act=gelu)
  return p, s
}
"""


def test_a_block_returns_several_values_and_takes_a_layer_as_argument():
    spec = nnspec.loads(MULTI, "multi.nn")
    assert str(spec.output_type("Two")) == "([N, 1], [N, 3])"
    x = torch.randn(4, 5, dtype=torch.float64)
    net, _, (p, s), (np_p, np_s) = _both(spec, "Two", x)
    w = net.state_dict()
    h = F.gelu(x @ w["heads_0.dense_0.weight"].T + w["heads_0.dense_0.bias"])
    want_s = h @ w["heads_0.dense_1.weight"].T + w["heads_0.dense_1.bias"]
    want_p = torch.sigmoid(h @ w["heads_0.dense_2.weight"].T + w["heads_0.dense_2.bias"])
    for got, np_got, want in ((s, np_s, want_s), (p, np_p, want_p)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-14)
        np.testing.assert_allclose(np_got, _np(want), rtol=0, atol=1e-14)
    assert crosscheck_grad(spec, "Two").ok
    from nnspec.backends.emit import emit_source

    src = emit_source(spec)
    assert "s, p = self.heads_0(x)" in src and "return s, p" in src and "return p, s" in src


@pytest.mark.parametrize("text, code", [
    ("const n = 3\nmodel A(x: [N, 5]) {\n  return x, n\n}\n", "E038"),
    ("model A(x: [N, 5]) {\n  return x, x : [N, 5]\n}\n", "E081"),
    ("model A(x: [N, 5]) {\n  a, b = x | dense 3\n  return a\n}\n", "E300"),
    ("block B(x, act=relu) {\n  x | act\n}\nmodel A(x: [N, 5]) {\n  x | B act=gelux\n}\n",
     "E043"),
])
def test_bad_multiple_values_are_located(text, code):
    assert code in _codes(text)


def test_names_an_annotation_binds_are_usable_later():
    spec = nnspec.loads("model M(x: [N, 3, 32, 32]) {\n"
                        "  y = x | conv 16 k=3 p=1 | maxpool k=2 : [_, C, H, W]\n"
                        "  y | flatten | dense (C * H * W // 64) | relu | dense C\n}\n", "a.nn")
    # conv 3*16*9 + 16, dense 4096*64 + 64, dense 64*16 + 16
    assert spec.param_count() == 448 + 262_208 + 1_040
    assert str(spec.output_type()) == "[N, 16]"
    # a symbolic dim binds as a dim; the model's own symbols (N) stay themselves
    spec = nnspec.loads("model M(x: [N, 3, H, W]) {\n  y = x | conv 8 k=3 : [N, C, A, B]\n"
                        "  y | reshape [N, C * A * B]\n}\n", "b.nn")
    assert str(spec.output_type()) == "[N, 8*H*W - 16*H - 16*W + 32]"
    # bound once, an annotation name is an assertion afterwards
    (d,) = nnspec.loads("model M(x: [N, 4]) {\n  y = x | dense 8 : [N, C]\n"
                        "  y | dense 5 : [N, C]\n}\n", "c.nn", strict=False).diagnostics
    assert d.span.line == 3 and "8" in d.message


VAE = """
model VAE(x: [N, 8]) {
  h = x | dense 6 | relu
  mu = h | dense 2
  logvar = h | dense 2
  recon = mu | dense 8 | sigmoid
  return recon, mu, logvar
}

train VAE {
  loss bce(recon, x) + 0.5 * kl_normal(mu, logvar)
}
"""


def test_a_loss_names_the_values_a_model_returns(tmp_path):
    spec = nnspec.loads(VAE, "vae.nn")
    assert spec.model().output_names == ["recon", "mu", "logvar"]
    x = np.random.default_rng(0).uniform(0, 1, (3, 8))
    nm = NumpyModel(spec, seed=0, dtype=np.float64)
    got = nm.grad(x)
    net = build_module(spec, params=nm.params, dtype=torch.float64)
    xt = torch.from_numpy(x)
    recon, mu, logvar = net(xt)
    want = F.binary_cross_entropy(recon, xt) + 0.5 * (
        -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(dim=1).mean()
    loss = net.loss((recon, mu, logvar), xt)
    torch.testing.assert_close(loss, want, rtol=1e-14, atol=0)
    assert got.loss == pytest.approx(want.item(), rel=1e-13)
    loss.backward()
    for k, p in net.named_parameters():
        np.testing.assert_allclose(got.params[k], _np(p.grad), rtol=1e-10, atol=1e-14)
    from nnspec.backends.emit import emit_source

    src = emit_source(spec)
    assert "recon, mu, logvar = output" in src
    file = tmp_path / "gen_vae.py"
    file.write_text(src)
    gen = import_source(file, "gen_vae").VAE().double()
    gen.load_state_dict(net.state_dict())
    torch.testing.assert_close(gen.loss(gen(xt), xt), want, rtol=1e-6, atol=1e-7)


def test_a_target_cannot_take_a_returned_name():
    text = VAE.replace("train VAE {", "train VAE(mu: [N, 2]) {")
    (d,) = _errors(text)
    assert d.code == "E074" and "a value VAE returns" in d.message

