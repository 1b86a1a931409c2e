"""Reference gradients of the sequence layers (rnn, gru, lstm, last, attention, positional,
embedding): each kind's backward against central finite differences (training mode with
the same dropout masks included), and NumpyModel.vjp against torch autograd on small
specs (float64)."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from _gradcheck import check_autograd, check_kind
from nnspec.layers import REGISTRY
from nnspec.layers.base import INT, NumpyCtx, TensorType

pytest.importorskip("torch")

SEQUENCE = ("rnn", "gru", "lstm", "last", "attention", "positional", "embedding")


def _avoid_padding(kind, args):
    """An embedding's padding row gets no gradient although the forward reads it (torch's
    rule), so finite differences only agree when no id is the padding row: those ids
    become another row. (The padding row itself is tested against torch below.)"""
    if kind.name != "embedding" or args.get("padding") is None:
        return None
    pad = args["padding"] % args["vocab"]

    def prepare(xs, w):
        xs[0][xs[0] == pad] = (pad + 1) % args["vocab"]
    return prepare


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", SEQUENCE)
def test_registry_samples(name, training):
    kind = REGISTRY[name]
    for args, ins in kind.samples():
        errors = check_kind(kind, args, ins, training=training,
                            prepare=_avoid_padding(kind, args))
        assert errors


X = TensorType((2, 3, 3))
H1 = TensorType((1, 2, 2))
H2 = TensorType((2, 2, 2))
H4 = TensorType((4, 2, 2))


def _recurrent_cases():
    cases = []
    for nl in ("tanh", "relu"):
        cases.append(("rnn", {"hidden": 2, "nonlinearity": nl}, [X]))
        cases.append(("rnn", {"hidden": 2, "nonlinearity": nl, "bidirectional": True,
                              "state": True}, [X]))
    for reset in ("after", "before"):
        cases += [
            ("gru", {"hidden": 2, "reset": reset}, [X]),
            ("gru", {"hidden": 2, "reset": reset, "bias": False, "h0": 1, "state": True},
             [X, H1]),
            ("gru", {"hidden": 2, "reset": reset, "layers": 2, "dropout": 0.4,
                     "bidirectional": True, "h0": 1, "state": True}, [X, H4]),
        ]
    cases += [
        ("lstm", {"hidden": 2}, [X]),
        ("lstm", {"hidden": 2, "h0": 1, "state": True}, [X, H1]),
        ("lstm", {"hidden": 2, "c0": 1, "bidirectional": True, "state": True}, [X, H2]),
        ("lstm", {"hidden": 2, "layers": 2, "dropout": 0.3, "h0": 1, "c0": 2, "bias": False},
         [X, H2, H2]),
        ("rnn", {"hidden": 2, "layers": 3, "dropout": 0.5, "h0": 1}, [X, TensorType((3, 2, 2))]),
    ]
    return cases


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name,args,ins", _recurrent_cases(),
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(_recurrent_cases())])
def test_recurrent_configurations(name, args, ins, training):
    errors = check_kind(REGISTRY[name], args, ins, training=training, max_coords=15)
    assert set(errors) >= {"x0", "weight_ih_l0", "weight_hh_l0"}


def _forward(kind, args, ins, seed=0):
    """Forward of one kind with drawn inputs and weights (float64), saving for backward:
    (backward(gy) -> its gradients, the output)."""
    rng = np.random.default_rng(seed)
    p = kind.Params.model_validate(args)
    out = kind.infer(p, ins)
    xs = [rng.integers(0, 3, [d.value for d in t.shape]) if t.dtype == INT
          else rng.standard_normal([d.value for d in t.shape]) for t in ins]
    w = {k: rng.standard_normal(s.shape) for k, s in kind.state(p, ins, out).items()}
    ctx = NumpyCtx(rng=np.random.default_rng(seed + 1), saved={})
    y = kind.numpy(p, w, xs, ctx)
    return (lambda gy: kind.backward(p, w, xs, y, gy, ctx)), y


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_state_cotangent_with_none_entries(name):
    """A final state nobody reads arrives as None: the same gradients as a zero one."""
    kind = REGISTRY[name]
    args = {"hidden": 2, "layers": 2, "bidirectional": True, "state": True, "h0": 1}
    backward, y = _forward(kind, args, [X, H4])
    rng = np.random.default_rng(5)
    gy = [rng.standard_normal(v.shape) for v in y]
    for keep in [(0,), (1,), (0, len(y) - 1)]:
        with_none = backward(tuple(g if i in keep else None for i, g in enumerate(gy)))
        zeros = backward(tuple(g if i in keep else np.zeros_like(g) for i, g in enumerate(gy)))
        for a, b in zip(with_none[0], zeros[0]):
            np.testing.assert_array_equal(a, b)
        assert set(with_none[1]) == set(zeros[1])
        for k in with_none[1]:
            np.testing.assert_array_equal(with_none[1][k], zeros[1][k])
    # the output's gradient alone reaches h0 and every weight
    (gx, gh0), gw = backward((gy[0],) + (None,) * (len(y) - 1))
    assert np.abs(gh0).max() > 0 and all(np.abs(g).max() > 0 for g in gw.values())


@pytest.mark.parametrize("name,args,ins", [
    ("gru", {"hidden": 2, "layers": 2, "dropout": 0.5, "h0": 1, "state": True}, [X, H2]),
    ("lstm", {"hidden": 2, "layers": 2, "dropout": 0.5, "c0": 1}, [X, H2]),
    ("attention", {"heads": 1, "dropout": 0.5, "causal": True}, [TensorType((2, 3, 2))]),
])
def test_saving_for_backward_keeps_the_forward(name, args, ins):
    """The forward gives the same values (and draws the same masks) whether or not it
    stores what its backward needs."""
    kind = REGISTRY[name]
    p = kind.Params.model_validate(args)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal([d.value for d in t.shape]) for t in ins]
    w = {k: rng.standard_normal(s.shape) for k, s in kind.state(p, ins, kind.infer(p, ins)).items()}
    for training in (False, True):
        plain = kind.numpy(p, w, xs, NumpyCtx(training, np.random.default_rng(3)))
        saved: dict = {}
        kept = kind.numpy(p, w, xs, NumpyCtx(training, np.random.default_rng(3), saved=saved))
        for a, b in zip(*(v if isinstance(v, tuple) else (v,) for v in (plain, kept))):
            np.testing.assert_array_equal(a, b)
        assert saved


@pytest.mark.parametrize("name", SEQUENCE)
def test_float32_gradients_keep_the_dtype(name):
    kind = REGISTRY[name]
    args, ins = kind.sample()
    rng = np.random.default_rng(0)
    p = kind.Params.model_validate(args)
    out = kind.infer(p, ins)
    xs = [rng.integers(0, 3, [d.value for d in t.shape]) if t.dtype == INT else
          rng.standard_normal([d.value for d in t.shape]).astype(np.float32) for t in ins]
    w = {k: rng.standard_normal(s.shape).astype(np.float32)
         for k, s in kind.state(p, ins, out).items()}
    ctx = NumpyCtx(training=True, rng=np.random.default_rng(1), saved={})
    y = kind.numpy(p, w, xs, ctx)
    gy = tuple(np.ones_like(v) for v in y) if isinstance(y, tuple) else np.ones_like(y)
    gxs, gw = kind.backward(p, w, xs, y, gy, ctx)
    for t, g in zip(ins, gxs):
        assert (g is None) == (t.dtype == INT)
        if g is not None:
            assert g.dtype == np.float32
    assert all(g.dtype == np.float32 for g in gw.values())


def test_backward_without_saved_forward_recomputes_it():
    """An evaluation-mode backward may be called without a stored forward; a training one
    with dropout may not (its masks cannot be drawn again)."""
    for name, args, ins in [("gru", {"hidden": 2, "layers": 2, "dropout": 0.5}, [X]),
                            ("attention", {"heads": 1, "dropout": 0.5},
                             [TensorType((2, 3, 2))])]:
        kind = REGISTRY[name]
        p = kind.Params.model_validate(args)
        rng = np.random.default_rng(0)
        xs = [rng.standard_normal([d.value for d in t.shape]) for t in ins]
        w = {k: rng.standard_normal(s.shape)
             for k, s in kind.state(p, ins, kind.infer(p, ins)).items()}
        ctx = NumpyCtx(saved={})
        y = kind.numpy(p, w, xs, ctx)
        gy = np.ones_like(y)
        want = kind.backward(p, w, xs, y, gy, ctx)
        got = kind.backward(p, w, xs, y, gy, NumpyCtx())
        np.testing.assert_array_equal(got[0][0], want[0][0])
        for k in want[1]:
            np.testing.assert_array_equal(got[1][k], want[1][k])
        with pytest.raises(ValueError, match="dropout mask"):
            kind.backward(p, w, xs, y, gy, NumpyCtx(training=True))


def test_attention_masked_queries_and_keys():
    """A padded key gets no gradient through the scores, and a query that sees no key
    (all its keys padded) only reaches the output bias."""
    kind = REGISTRY["attention"]
    args = {"heads": 2, "mask": 1}
    ins = [TensorType((2, 3, 4)), TensorType((2, 3), INT)]
    p = kind.Params.model_validate(args)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4))
    pad = np.array([[0, 1, 0], [1, 1, 1]])
    w = {k: rng.standard_normal(s.shape)
         for k, s in kind.state(p, ins, kind.infer(p, ins)).items()}
    ctx = NumpyCtx(saved={})
    y = kind.numpy(p, w, [x, pad], ctx)
    gy = rng.standard_normal(y.shape)
    (gx, gmask), gw = kind.backward(p, w, [x, pad], y, gy, ctx)
    assert gmask is None
    np.testing.assert_array_equal(gx[1], 0.0)  # sample 1 attends to nothing
    np.testing.assert_allclose(gw["out_proj.bias"], gy.sum(axis=(0, 1)))
    assert np.abs(gx[0]).min() > 0


def test_embedding_scatter_add_and_padding_row():
    kind = REGISTRY["embedding"]
    args = {"vocab": 5, "width": 2, "padding": 3}
    p = kind.Params.model_validate(args)
    ids = np.array([[0, 3, 0], [4, 3, 0]])
    gy = np.arange(12, dtype=np.float64).reshape(2, 3, 2)
    (gids,), gw = kind.backward(p, {"weight": np.ones((5, 2))}, [ids], None, gy, NumpyCtx())
    assert gids is None
    want = np.zeros((5, 2))
    want[0] = gy[0, 0] + gy[0, 2] + gy[1, 2]
    want[4] = gy[1, 0]
    np.testing.assert_array_equal(gw["weight"], want)


# ---- against torch autograd -----------------------------------------------------------

def _inputs(rng, shapes, ints=()):
    return [rng.integers(0, 2, s) if i in ints else rng.standard_normal(s)
            for i, s in enumerate(shapes)]


AUTOGRAD = {
    "rnn_tanh": ("model M(x: [N, T, 3]) {\n    rnn 4\n}\n", [(2, 5, 3)]),
    "rnn_relu_deep": (
        "model M(x: [N, T, 3], h: [4, N, 3]) {\n"
        "    rnn 3 nonlinearity=relu layers=2 bidirectional bias=false h0=h state\n}\n",
        [(2, 4, 3), (4, 2, 3)]),
    "gru_after": (
        "model M(x: [N, T, 3], h: [4, N, 3]) {\n"
        "    gru 3 layers=2 bidirectional dropout=0.5 h0=h state\n}\n",
        [(2, 4, 3), (4, 2, 3)]),
    "gru_before": (
        "model M(x: [N, T, 3], h: [4, N, 3]) {\n"
        "    gru 3 reset=before layers=2 bidirectional dropout=0.5 h0=h state\n}\n",
        [(2, 4, 3), (4, 2, 3)]),
    "gru_before_nobias": (
        "model M(x: [N, T, 3]) {\n    gru 3 reset=before bias=false | last\n}\n",
        [(2, 4, 3)]),
    "lstm_full": (
        "model M(x: [N, T, 3], h: [4, N, 2], c: [4, N, 2]) {\n"
        "    lstm 2 layers=2 bidirectional dropout=0.5 h0=h c0=c state\n}\n",
        [(2, 4, 3), (4, 2, 2), (4, 2, 2)]),
    "lstm_c0_only_final_h": (
        "model M(x: [N, T, 3], c: [1, N, 2]) {\n"
        "    y, h, cn = lstm 2 c0=c state\n    return h\n}\n",
        [(2, 4, 3), (1, 2, 2)]),
    "lstm_h0_only": (
        "model M(x: [N, T, 3], h: [2, N, 2]) {\n    lstm 2 bidirectional h0=h\n}\n",
        [(2, 4, 3), (2, 2, 2)]),
    "attention_self": (
        "model M(x: [N, T, 4]) {\n    attention heads=2\n}\n", [(2, 3, 4)]),
    "attention_cross_masked": (
        "model M(x: [N, T, 4], m: [N, S, 4], pad: [N, S] int) {\n"
        "    attention heads=2 kv=m mask=pad dropout=0.2\n}\n",
        [(3, 3, 4), (3, 5, 4), (3, 5)]),
    "attention_causal_masked_nobias": (
        "model M(x: [N, T, 4], pad: [N, T] int) {\n"
        "    attention heads=1 causal mask=pad bias=false\n}\n",
        [(3, 4, 4), (3, 4)]),
    "positional": (
        "model M(x: [N, T, 4]) {\n    positional scale | positional learned max_len=6\n}\n",
        [(2, 3, 4)]),
    "embedding": (
        "model M(tok: [N, T] int) {\n    embedding 5 3 padding=1 | positional\n}\n",
        [(2, 6)]),
}


@pytest.mark.parametrize("case", sorted(AUTOGRAD))
def test_against_torch_autograd(case):
    text, shapes = AUTOGRAD[case]
    spec = nnspec.loads(text, "t.nn")
    rng = np.random.default_rng(7)
    ints = {i for i, inp in enumerate(spec.model("M").inputs) if inp.dtype == "int"}
    inputs = _inputs(rng, shapes, ints)
    if case == "embedding":
        inputs[0] = np.array([[0, 1, 2, 1, 4, 0], [1, 1, 3, 2, 0, 4]])
    if "masked" in case:
        inputs[-1][0] = 1  # a sequence whose keys are all padded
        inputs[-1][1] = 0
    got = check_autograd(spec, inputs, model="M", rtol=1e-9, atol=1e-11)
    assert got.params and all(np.isfinite(g).all() for g in got.params.values())
    for inp, g in zip(spec.model("M").inputs, got.inputs):
        assert (g is None) == (inp.dtype == "int")
    if case == "embedding":
        assert not got.params["embedding_0.weight"][1].any()  # the padding row
        assert got.params["embedding_0.weight"][[0, 2, 3, 4]].all()
