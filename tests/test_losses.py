"""Every loss of nnspec.layers.losses: its value and gradients equal torch's own functions and
autograd (float64), its emitted expression computes the same, and its shape rule refuses
what torch would refuse, with a message naming both shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nnspec.core.dims import Dim
from nnspec.layers.base import ShapeError, TensorType
from nnspec.layers.losses import LOSSES

RNG = np.random.default_rng(0)
X = RNG.standard_normal((4, 3))
Y = RNG.standard_normal((4, 3))
P = RNG.random((4, 3)) * 0.9 + 0.05
T = RNG.random((4, 3))
IDX = np.array([0, 2, 1, 2])
IDX_IGN = np.array([0, -100, 1, 2])
LOGITS3 = RNG.standard_normal((2, 3, 5))
IDX3 = RNG.integers(0, 3, (2, 5))
TOKENS = RNG.standard_normal((2, 5, 3))  # per-token scores [N, T, C]
TOKENS_IDX = np.array([[0, 2, 1, -100, 2], [1, 1, 0, 2, -100]])
PROBS = np.exp(X) / np.exp(X).sum(1, keepdims=True)
LOGP = np.log(PROBS)
V = RNG.random((4, 3))
SIGN = np.array([1.0, -1.0, 1.0, -1.0])

CASES = [
    ("mse", {}, [X, Y]), ("mse", {"reduction": "sum"}, [X, Y]),
    ("l1", {}, [X, Y]), ("huber", {"delta": 0.5}, [X, Y]), ("smooth_l1", {"beta": 0.7}, [X, Y]),
    ("bce", {}, [P, T]), ("bce_with_logits", {"reduction": "sum"}, [X, T]),
    ("cross_entropy", {}, [X, IDX]), ("cross_entropy", {"label_smoothing": 0.2}, [X, IDX]),
    ("cross_entropy", {"ignore_index": -100, "label_smoothing": 0.1}, [X, IDX_IGN]),
    ("cross_entropy", {"ignore_index": 2}, [X, IDX]),
    ("cross_entropy", {}, [LOGITS3, IDX3]),
    ("cross_entropy", {"label_smoothing": 0.3}, [X, PROBS]),
    ("cross_entropy", {"dim": -1, "label_smoothing": 0.1}, [TOKENS, TOKENS_IDX]),
    ("cross_entropy", {"dim": 2, "reduction": "sum"}, [TOKENS, TOKENS_IDX]),
    ("nll", {}, [LOGP, IDX_IGN]), ("nll", {"reduction": "sum"}, [LOGP, IDX]),
    ("nll", {"dim": -1}, [TOKENS, TOKENS_IDX]),
    ("kl_div", {"reduction": "batchmean"}, [LOGP, T / T.sum(1, keepdims=True)]),
    ("kl_div", {"log_target": True}, [LOGP, np.log(T)]),
    ("kl_div", {"reduction": "mean"}, [LOGP, T]),
    ("kl_normal", {}, [X, Y]), ("kl_normal", {"reduction": "sum"}, [X, Y]),
    ("margin", {}, [V, IDX]), ("margin", {"lam": 0.3, "m_plus": 0.8}, [V, PROBS]),
    ("cosine_embedding", {"margin": -0.2}, [X, Y, SIGN]),
]


def _torch_reference(name, p, ts):
    if "dim" in p:  # written out as a person does: the class axis moved to torch's 1
        x, y = ts
        return _torch_reference(name, {k: v for k, v in p.items() if k != "dim"},
                                [x.transpose(1, 2), y])
    if name == "kl_normal":
        mu, lv = ts
        per = -0.5 * (1 + lv - mu.pow(2) - lv.exp())
        return per.sum() if p.get("reduction") == "sum" else per.sum(1).mean()
    if name == "kl_div":
        return F.kl_div(*ts, **{"reduction": "batchmean", **p})
    if name == "margin":
        v, y = ts
        t = F.one_hot(y, 3).double() if not y.is_floating_point() else y
        per = (t * F.relu(p.get("m_plus", 0.9) - v) ** 2
               + p.get("lam", 0.5) * (1 - t) * F.relu(v - 0.1) ** 2)
        return per.sum(1).mean()
    fn = {"mse": F.mse_loss, "l1": F.l1_loss, "huber": F.huber_loss,
          "smooth_l1": F.smooth_l1_loss, "bce": F.binary_cross_entropy,
          "bce_with_logits": F.binary_cross_entropy_with_logits,
          "cross_entropy": F.cross_entropy, "nll": F.nll_loss, "kl_div": F.kl_div,
          "cosine_embedding": F.cosine_embedding_loss}[name]
    return fn(*ts, **p)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")
@pytest.mark.parametrize("name, params, xs", CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)])
def test_value_and_gradients_equal_torch(name, params, xs):
    kind = LOSSES[name]
    p = kind.Params.model_validate(params)
    ts = [torch.tensor(a, requires_grad=np.issubdtype(a.dtype, np.floating)) for a in xs]
    want = _torch_reference(name, params, ts)
    want.backward()
    assert kind.numpy(p, xs) == pytest.approx(want.item(), rel=1e-12, abs=1e-14)
    got = kind.backward(p, xs)
    for i, (g, t) in enumerate(zip(got, ts)):
        if not t.requires_grad or (name == "cosine_embedding" and i == 2):
            assert g is None, f"{name}: argument {i} gets no gradient"
            continue
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-10, atol=1e-13,
                                   err_msg=f"{name} d/darg{i}")
    # the in-process torch computation and the emitted expression agree with torch
    ts2 = [torch.tensor(a) for a in xs]
    assert kind.torch(p, ts2).item() == pytest.approx(want.item(), rel=1e-12, abs=1e-14)
    names = [f"a{i}" for i in range(len(xs))]
    src = kind.torch_src(p, names)
    env = {"F": F, "torch": torch, **dict(zip(names, ts2))}
    assert eval(src, env).item() == pytest.approx(want.item(), rel=1e-12, abs=1e-14)


def test_emitted_expressions_read_as_written():
    def src(name, **kw):
        kind = LOSSES[name]
        return kind.torch_src(kind.Params.model_validate(kw), ["out", "y"])

    assert src("cross_entropy", label_smoothing=0.1) == \
        "F.cross_entropy(out, y, label_smoothing=0.1)"
    assert src("smooth_l1") == "F.smooth_l1_loss(out, y)"
    assert src("cross_entropy", dim=-1) == "F.cross_entropy(out.movedim(-1, 1), y)"
    assert src("mse", reduction="sum") == 'F.mse_loss(out, y, reduction="sum")'
    assert src("kl_normal") == "(-0.5 * (1 + y - out.pow(2) - y.exp())).flatten(1).sum(dim=1)" \
        ".mean()"


def _t(*dims, dtype="float"):
    return TensorType([Dim.parse(str(d)) for d in dims], dtype)


@pytest.mark.parametrize("name, ins, message", [
    ("cross_entropy", [_t("N", 10), _t("N", 10, dtype="int")],
     "cross_entropy takes class indices [N] int for [N, 10], got [N, 10] int"),
    ("cross_entropy", [_t("N", 10), _t("N", 5)],
     "cross_entropy takes class indices [N] int or class probabilities [N, 10] for [N, 10], "
     "got [N, 5]"),
    ("cross_entropy", [_t("N", 10), _t("M", dtype="int")],
     "cross_entropy takes class indices [N] int for [N, 10], got [M] int"),
    ("nll", [_t("N", 10), _t("N", 10)], "nll takes class indices [N] int for [N, 10], got "
     "[N, 10]"),
    ("mse", [_t("N", 10), _t("N", 1, 10)], "mse needs the target's shape [N, 10], got "
     "[N, 1, 10]"),
    ("bce", [_t("N", 1), _t("N", 1, dtype="int")], "bce's target must be a float tensor, got "
     "[N, 1] int"),
    ("margin", [_t("N", 10, 16), _t("N", dtype="int")],
     "margin takes capsule lengths [N, K], got [N, 10, 16]"),
])
def test_shape_rules(name, ins, message):
    kind = LOSSES[name]
    with pytest.raises(ShapeError) as e:
        kind.check(kind.Params(), ins)
    assert e.value.message == message


@pytest.mark.parametrize("dim, ins, message", [
    (-1, [_t("N", "T", 10), _t("N", "T", 10)],
     "cross_entropy with dim=-1 takes class indices [N, T] int; class probabilities need the "
     "class axis at 1, got [N, T, 10]"),
    (-1, [_t("N", "T", 10), _t("N", 10, dtype="int")],
     "cross_entropy takes class indices [N, T] int for [N, T, 10], got [N, 10] int"),
    (0, [_t("N", 10), _t("N", dtype="int")],
     "cross_entropy's class axis dim=0 is not an axis 1 to 1 of [N, 10]"),
    (3, [_t("N", "T", 10), _t("N", "T", dtype="int")],
     "cross_entropy's class axis dim=3 is not an axis 1 to 2 of [N, T, 10]"),
])
def test_class_axis_rules(dim, ins, message):
    kind = LOSSES["cross_entropy"]
    with pytest.raises(ShapeError) as e:
        kind.check(kind.Params(dim=dim), ins)
    assert e.value.message == message


def test_per_token_indices_hint_at_the_class_axis():
    kind = LOSSES["cross_entropy"]
    with pytest.raises(ShapeError) as e:
        kind.check(kind.Params(), [_t("N", "T", 10), _t("N", "T", dtype="int")])
    assert e.value.message == ("cross_entropy takes class indices [N, 10] int for [N, T, 10], "
                               "got [N, T] int")
    assert "dim=-1" in e.value.hint


def test_symbolic_shapes_that_fit():
    LOSSES["cross_entropy"].check(LOSSES["cross_entropy"].Params(),
                                  [_t("N", 7, "T"), _t("N", "T", dtype="int")])
    LOSSES["mse"].check(LOSSES["mse"].Params(), [_t("N", "H", 3), _t("N", "H", 3)])


def test_parameters_are_validated():
    with pytest.raises(ValueError, match="must be in"):
        LOSSES["cross_entropy"].Params(label_smoothing=1.5)
    with pytest.raises(ValueError, match="must be > 0"):
        LOSSES["huber"].Params(delta=0)
    with pytest.raises(ValueError):
        LOSSES["mse"].Params(reduction="none")


def test_margin_checks_class_indices_and_probabilities():
    n = Dim.sym("N")
    kind = LOSSES["margin"]
    p = kind.Params.model_validate({})
    kind.check(p, [TensorType((n, 10)), TensorType((n,), "int")])
    kind.check(p, [TensorType((n, 10)), TensorType((n, 10))])
    with pytest.raises(ShapeError, match=r"class indices \[N\] int"):
        kind.check(p, [TensorType((n, 10)), TensorType((n, 3), "int")])
