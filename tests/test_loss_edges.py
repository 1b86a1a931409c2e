"""Every loss at its edge cases: the NumPy value and gradients equal torch's function and
autograd (float64), NaN and infinities included: every target ignored, logits of -inf
outside the targets, bce's predictions at 0 and 1, kl_div's zero and negative targets,
the kinks of l1, huber, smooth_l1, margin and cosine_embedding, saturated logits, the zero
distances and margins of contrastive and triplet."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnspec.layers.losses import LOSSES

torch = pytest.importorskip("torch")

INF = np.inf
X = np.array([[0.3, -1.2, 2.0], [0.5, 0.1, -0.4]])
ALL_IGNORED = np.array([-100, -100])
XINF = np.array([[0.3, -INF, 2.0], [-INF, 0.1, -0.4]])
HIT = np.array([0, 1])  # never a -inf logit of XINF
LOGP = np.log(np.array([[0.2, 0.3, 0.5], [0.6, 0.4, 1e-300]]))
ZERO_T = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
PRED = np.array([0.0, 1.0, 0.0, 1.0, 1e-50, 1 - 1e-16, 0.5, 0.25])
PRED_T = np.array([0.0, 1.0, 1.0, 0.0, 0.3, 0.2, 0.5, 0.25])
V = np.array([[0.9, 0.1, 0.5], [0.0, 1.0, 0.1]])  # lengths at m_plus and m_minus
A = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
B = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])  # cos 0, 0 (zero x1), 1, 0

CLASS = []
for kw in ({}, {"label_smoothing": 0.2}, {"reduction": "sum"}, {"ignore_index": 7},
           {"ignore_index": 7, "label_smoothing": 0.1}):
    y = ALL_IGNORED if "ignore_index" not in kw else np.array([7, 7])
    CLASS += [("cross_entropy", kw, [X, y]),
              ("cross_entropy", {**kw, "dim": -1}, [X[None], y[None]])]
    if "label_smoothing" not in kw:
        CLASS += [("nll", kw, [X, y]), ("nll", {**kw, "dim": -1}, [X[None], y[None]])]

CASES = CLASS + [
    ("cross_entropy", {}, [XINF, HIT]), ("cross_entropy", {"label_smoothing": 0.1}, [XINF, HIT]),
    ("cross_entropy", {}, [XINF, np.array([0, -100])]), ("nll", {}, [XINF, HIT]),
    ("bce", {}, [PRED, PRED_T]), ("bce", {"reduction": "sum"}, [PRED, PRED_T]),
    ("bce_with_logits", {}, [np.array([-800.0, 800.0, 0.0, 40.0]),
                             np.array([0.0, 1.0, 0.5, 0.2])]),
    ("kl_div", {}, [LOGP, ZERO_T]), ("kl_div", {"reduction": "sum"}, [LOGP, ZERO_T]),
    ("kl_div", {"reduction": "mean"}, [LOGP, ZERO_T]),
    ("kl_div", {}, [LOGP, np.array([[-0.1, 0.5, 0.6], [1.0, 0.0, 0.0]])]),
    ("kl_div", {}, [np.array([[-INF, 0.0]]), np.array([[0.0, 1.0]])]),
    ("kl_div", {"log_target": True}, [LOGP, np.array([[-INF, 0.0, -1.0], [0.0, -INF, -2.0]])]),
    ("mse", {}, [X, X]), ("l1", {}, [X, X]), ("l1", {"reduction": "sum"}, [X, X + 1]),
    ("huber", {"delta": 0.5}, [X, X + 0.5]), ("huber", {"delta": 0.5}, [X, X - 0.5]),
    ("smooth_l1", {"beta": 0.5}, [X, X + 0.5]), ("smooth_l1", {"beta": 0.5}, [X, X]),
    ("smooth_l1", {"beta": 0.5}, [X, X - 0.5]),
    ("kl_normal", {}, [X, X]), ("kl_normal", {}, [X, np.array([[30.0, -800.0, 0.0], [0, 0, 0]])]),
    ("margin", {}, [V, np.array([0, 1])]), ("margin", {"lam": 0.3}, [V, np.eye(3)[:2]]),
] + [("cosine_embedding", {"margin": m}, [A, B, y])
     for m in (0.0, 0.5) for y in (np.ones(4), -np.ones(4), np.array([0.0, 1.0, -1.0, -1.0]))
] + [("contrastive", kw, [A, A + B * 0.6, np.array([0, 1, 1, 0])])  # D 0 (row 1), 1 (row 3)
     for kw in ({}, {"eps": 0.0}, {"margin": 0.6, "eps": 0.0})
] + [("triplet", kw, [A, np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [2.0, 0.0]]), B])
     for kw in ({}, {"eps": 0.0}, {"swap": True, "eps": 0.0}, {"p": 1.0, "eps": 0.0})]


def _case_id(case) -> str:
    name, kw, _ = case
    return name + "".join(f"-{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("name,kw,xs", CASES, ids=[_case_id(c) for c in CASES])
def test_value_and_gradients_equal_autograd_at_the_edges(name, kw, xs):
    loss = LOSSES[name]
    p = loss.Params(**kw)
    float_in = [np.issubdtype(a.dtype, np.floating) and (i < 2 or name == "triplet")
                for i, a in enumerate(xs)]
    ts = [torch.tensor(a, requires_grad=f) for a, f in zip(xs, float_in)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's mean over no target
        want = loss.torch(p, ts)
    grads = torch.autograd.grad(want, [t for t in ts if t.requires_grad], allow_unused=True)
    with np.errstate(all="raise", under="ignore"):  # its edges computed without a warning
        value = loss.numpy(p, [a.copy() for a in xs])
        got = loss.backward(p, [a.copy() for a in xs])
    np.testing.assert_array_equal(np.isnan(value), np.isnan(want.item()))
    np.testing.assert_allclose(value, want.item(), rtol=1e-13, atol=0, equal_nan=True)
    wanted = iter(grads)
    for a, g, differentiable in zip(xs, got, float_in):
        if not differentiable:
            assert g is None or not np.any(g)
            continue
        w = next(wanted)
        w = np.zeros_like(a) if w is None else w.numpy()
        assert g is not None and g.shape == a.shape
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_array_equal(np.isinf(g) * np.sign(g), np.isinf(w) * np.sign(w))
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-300, equal_nan=True)


def test_the_sweep_covers_every_loss():
    assert {type(LOSSES[name]).__name__ for name, _, _ in CASES} == {
        type(v).__name__ for v in LOSSES.values()}


def test_every_target_ignored_gives_a_nan_mean_and_zero_gradients():
    """torch's mean over no target is 0 / 0; its gradient is 0, not NaN."""
    for name in ("cross_entropy", "nll"):
        loss = LOSSES[name]
        p = loss.Params()
        assert np.isnan(loss.numpy(p, [X, ALL_IGNORED]))
        (gx, _) = loss.backward(p, [X, ALL_IGNORED])
        assert np.array_equal(gx, np.zeros_like(X))


def test_bce_target_gradient_is_the_unclamped_logit():
    """The loss clamps each log at -100; the target's gradient -logit(x) does not (torch's
    autograd): +-inf at predictions 0 and 1, 115.1 at 1e-50."""
    loss = LOSSES["bce"]
    _, gt = loss.backward(loss.Params(reduction="sum"), [PRED, PRED_T])
    assert list(gt[:4]) == [INF, -INF, INF, -INF]
    assert gt[4] == pytest.approx(50 * np.log(10))


def test_kl_div_target_gradient_at_zero_is_nan():
    loss = LOSSES["kl_div"]
    _, gt = loss.backward(loss.Params(reduction="sum"), [LOGP, ZERO_T])
    assert np.array_equal(np.isnan(gt), ZERO_T == 0)
    assert gt[0, 1] == pytest.approx(np.log(0.5) + 1 - LOGP[0, 1])
