"""The metric-learning losses: contrastive against a torch reference written from Hadsell
et al.'s formula (label 0: similar, 1: dissimilar), triplet against torch's own
F.triplet_margin_loss; NumPy values and gradients equal to autograd (float64) in general
position and at the edges (coinciding embeddings, eps=0, distances on the margin, swap's
ties), in a Siamese model's train section through both backends and the emitted source,
and ``nnspec losses``, the listing of every loss from the registry."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from nnspec.core.dims import Dim
from nnspec.layers.base import ShapeError, TensorType
from nnspec.layers.losses import LOSSES

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(3)
A, B, C = (RNG.standard_normal((6, 4)) for _ in range(3))
LABEL = np.array([0, 1, 1, 0, 1, 0])


def _hadsell(x1, x2, y, margin=1.0, eps=1e-6, reduction="mean"):
    """½ (1 - y) D² + ½ y max(0, m - D)², D = ‖x1 - x2 + eps‖₂, written out (the norm's
    gradient at 0 is torch's 0)."""
    dist = torch.linalg.vector_norm(x1 - x2 + eps, dim=-1)
    per = 0.5 * (1 - y) * dist ** 2 + 0.5 * y * torch.clamp(margin - dist, min=0) ** 2
    return per.sum() if reduction == "sum" else per.mean()


def _check(name, kw, xs, reference):
    """value and gradients of the NumPy loss, its in-process torch form and its emitted
    expression against ``reference`` and autograd through it."""
    kind = LOSSES[name]
    p = kind.Params(**kw)
    ts = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in xs]
    want = reference(*ts)
    grads = torch.autograd.grad(want, [t for t in ts if t.requires_grad])
    with np.errstate(all="raise", under="ignore"):
        value = kind.numpy(p, [a.copy() for a in xs])
        got = kind.backward(p, [a.copy() for a in xs])
    np.testing.assert_allclose(value, want.item(), rtol=1e-13, atol=1e-15)
    wanted = iter(grads)
    for g, t in zip(got, ts):
        if not t.requires_grad:
            assert g is None
            continue
        np.testing.assert_allclose(g, next(wanted).numpy(), rtol=1e-11, atol=1e-15)
    plain = [torch.tensor(a) for a in xs]
    assert kind.torch(p, plain).item() == pytest.approx(want.item(), rel=1e-13, abs=1e-15)
    names = ["a", "b", "c"]
    src = kind.torch_src(p, names)
    got_src = eval(src, {"F": F, "torch": torch, **dict(zip(names, plain))})
    assert got_src.item() == pytest.approx(want.item(), rel=1e-13, abs=1e-15)
    return value, got


@pytest.mark.parametrize("kw", [{}, {"margin": 2.5}, {"reduction": "sum"}, {"eps": 0.0}])
def test_contrastive_is_hadsells_formula(kw):
    _check("contrastive", kw, [A, B, LABEL], lambda a, b, y: _hadsell(a, b, y, **kw))
    _check("contrastive", kw, [A, B, LABEL.astype(float)],
           lambda a, b, y: _hadsell(a, b, y, **kw))


def test_contrastive_label_convention():
    """A similar pair (0) is pulled together: its loss is ½ D²; a dissimilar one (1) costs
    only inside the margin."""
    kind = LOSSES["contrastive"]
    p = kind.Params(margin=2.0, eps=0.0)
    x1, x2 = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])  # D = 5
    assert kind.numpy(p, [x1, x2, np.array([0])]) == pytest.approx(12.5)
    assert kind.numpy(p, [x1, x2, np.array([1])]) == 0.0
    assert kind.numpy(p, [x1, x1 + [[0.6, 0.8]], np.array([1])]) == pytest.approx(0.5)


def test_contrastive_at_zero_distance_and_on_the_margin():
    same = np.concatenate([A[:3], A[:3]])
    x2 = same.copy()
    x2[3:] += np.array([0.6, 0.8, 0.0, 0.0])  # D = 1, the margin, with eps=0
    y = np.array([0, 1, 1, 1, 0, 1])
    for kw in ({}, {"eps": 0.0}):
        _check("contrastive", kw, [same, x2, y], lambda a, b, t, kw=kw: _hadsell(a, b, t, **kw))
    ga, gb, _ = LOSSES["contrastive"].backward(
        LOSSES["contrastive"].Params(eps=0.0), [same, x2, y])
    assert not np.any(ga[:3]) and not np.any(gb[:3])  # D = 0: autograd's masked 0
    assert not np.any(ga[3])  # a dissimilar pair at exactly the margin


TRIPLET_KW = [{}, {"margin": 0.3}, {"p": 1.0}, {"p": 3.0}, {"p": 1.5, "swap": True},
              {"swap": True}, {"eps": 0.0, "reduction": "sum"}, {"p": 0.5}]


@pytest.mark.parametrize("kw", TRIPLET_KW, ids=[str(k) for k in TRIPLET_KW])
def test_triplet_is_torchs(kw):
    _check("triplet", kw, [A, B, C], lambda a, b, c: F.triplet_margin_loss(a, b, c, **kw))


@pytest.mark.parametrize("kw", [{}, {"eps": 0.0}, {"swap": True}, {"swap": True, "eps": 0.0},
                                {"p": 1.0, "eps": 0.0}, {"p": 3.0, "eps": 0.0}])
def test_triplet_edges(kw):
    """A positive equal to its anchor (distance 0 with eps=0), a negative equal to the
    positive (swap's tie), and a triplet exactly on the margin (clamp_min passes its
    gradient)."""
    a = np.array([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0], [0.5, -1.0]])
    pos = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, -1.0]])
    neg = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [0.5, 3.0]])  # row 2: gap 0 at eps=0
    _check("triplet", kw, [a, pos, neg], lambda x, y, z: F.triplet_margin_loss(x, y, z, **kw))
    if kw == {"eps": 0.0}:
        (ga, _, _) = LOSSES["triplet"].backward(LOSSES["triplet"].Params(eps=0.0), [a, pos, neg])
        assert np.any(ga[2])  # on the margin: the gradient passes


def _t(*dims, dtype="float"):
    return TensorType([Dim.parse(str(d)) for d in dims], dtype)


@pytest.mark.parametrize("name, ins, message", [
    ("contrastive", [_t("N", 8), _t("N", 8), _t("N", 8)],
     "contrastive takes a label [N] (0 similar, 1 dissimilar) for embeddings [N, 8], got "
     "[N, 8]"),
    ("contrastive", [_t("N", 8), _t("N", 4), _t("N", dtype="int")],
     "contrastive needs x1's shape [N, 8], got [N, 4]"),
    ("contrastive", [_t("N", 8, dtype="int"), _t("N", 8), _t("N")],
     "contrastive's x1 must be a float tensor, got [N, 8] int"),
    ("triplet", [_t("N", 8), _t("N", 8), _t("M", 8)],
     "triplet needs anchor's shape [N, 8], got [M, 8]"),
])
def test_shape_rules(name, ins, message):
    kind = LOSSES[name]
    with pytest.raises(ShapeError) as e:
        kind.check(kind.Params(), ins)
    assert e.value.message == message
    LOSSES["contrastive"].check(LOSSES["contrastive"].Params(),
                                [_t("N", 8), _t("N", 8), _t("N", dtype="int")])


def test_parameters_are_validated():
    with pytest.raises(ValueError, match="must be > 0"):
        LOSSES["triplet"].Params(margin=0.0)  # torch's F.triplet_margin_loss refuses it too
    with pytest.raises(ValueError, match="must be > 0"):
        LOSSES["contrastive"].Params(margin=-1.0)
    with pytest.raises(ValueError, match="must be >= 0"):
        LOSSES["triplet"].Params(eps=-1e-6)


SIAMESE = """
block Tower(x) {
    dense 6 as fc1 | relu | dense 3 as fc2
}

model Siamese(a: [N, 5], b: [N, 5], c: [N, 5]) {
    u = a | Tower() as tower
    v = b | tower
    w = c | tower
    return u, v, w
}

train Siamese(same: [N] int) {
    loss contrastive(u, v, same, margin=2.0) + 0.5 * triplet(u, v, w, swap=true)
}
"""


def test_in_a_train_section_both_backends_and_the_emitted_source_agree(tmp_path):
    from nnspec.backends.numpy import NumpyModel
    from nnspec.backends.torch import build_module, emit_source

    spec = nnspec.loads(SIAMESE, "siamese.nn")
    xs = [RNG.standard_normal((4, 5)) for _ in range(3)]
    same = np.array([0, 1, 0, 1])
    nm = NumpyModel(spec, seed=0, dtype=np.float64)
    got = nm.grad(*xs, targets={"same": same})
    net = build_module(spec, params=nm.params, dtype=torch.float64)
    ts = [torch.tensor(x) for x in xs]
    u, v, w = net(*ts)
    y = torch.tensor(same)
    want = _hadsell(u, v, y, margin=2.0) + 0.5 * F.triplet_margin_loss(u, v, w, swap=True)
    assert got.loss == pytest.approx(want.item(), rel=1e-12)
    assert net.loss(net(*ts), y).item() == pytest.approx(want.item(), rel=1e-12)
    want.backward()
    for k, prm in net.named_parameters():
        np.testing.assert_allclose(got.params[k], prm.grad.numpy(), rtol=1e-9, atol=1e-12)
    src = emit_source(spec)
    assert "F.pairwise_distance(u, v)" in src and "F.triplet_margin_loss(u, v, w, swap=True)" \
        in src
    env: dict = {}
    exec(compile(src, "siamese.py", "exec"), env)
    mod = env["Siamese"]().double()
    mod.load_state_dict(net.state_dict())
    assert mod.loss(mod(*ts), y).item() == pytest.approx(want.item(), rel=1e-12)


def test_unknown_arguments_and_arity_are_located_errors():
    bad = SIAMESE.replace("margin=2.0", "margn=2.0")
    d = nnspec.loads(bad, "s.nn", strict=False).diagnostics
    assert any("margn" in x.message for x in d)
    bad = SIAMESE.replace("contrastive(u, v, same,", "contrastive(u, v,")
    (e,) = [x for x in nnspec.loads(bad, "s.nn", strict=False).diagnostics]
    assert "contrastive takes 3 tensors" in e.message and "contrastive(x1, x2, label" in e.hint


def test_losses_command_lists_every_loss_from_the_registry(capsys):
    from nnspec.tools.cli import main

    assert main(["losses"]) == 0
    out = capsys.readouterr().out
    for kind in {id(k): k for k in LOSSES.values()}.values():
        assert kind.signature() in out
        for alias in kind.aliases:
            assert alias in out
    assert "contrastive(x1, x2, label, margin=1.0, eps=1e-06, reduction=mean|sum)" in out
    assert ("triplet(anchor, positive, negative, margin=1.0, p=2.0, eps=1e-06, swap=false, "
            "reduction=mean|sum)") in out
