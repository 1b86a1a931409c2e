"""Recurrent layers (rnn, gru, lstm, last) and embedding: against PyTorch's own modules
with copied weights (float64, 1e-10) through both backends, the Cho GRU against a
hand-computed example, emitted source, shape errors, parameter counts and MACs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from _util import import_source
import nnspec
from nnspec.backends import weights as nninit
from nnspec.backends.numpy import NumpyModel
from nnspec.layers import REGISTRY

torch = pytest.importorskip("torch")
nn = torch.nn

from nnspec.backends.torch import build_module, emit_source  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"
TOL = dict(rtol=1e-10, atol=1e-12)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def to_np(v):
    if isinstance(v, (tuple, list)):
        return tuple(to_np(x) for x in v)
    return v.detach().numpy()


def assert_close(a, b, what=""):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{what}[{i}]")
        return
    assert a.shape == b.shape, (what, a.shape, b.shape)
    np.testing.assert_allclose(a, b, err_msg=what, **TOL)


def both_traces(spec, xs, params, model=None):
    """{value id: value} from NumpyModel and from build_module (float64, eval)."""
    ref = NumpyModel(spec, model, params=params, dtype=np.float64)
    mod = build_module(spec, model, params=params, dtype=torch.float64).eval()
    with torch.no_grad():
        got = mod.trace(*[torch.from_numpy(x) for x in xs])
    return ref(*xs, trace=True), {k: to_np(v) for k, v in got.items()}, mod


def torch_twin(cls, name: str, params: dict, **kw):
    """PyTorch's own module with the spec's weights for layer ``name`` copied in."""
    m = cls(batch_first=True, **kw).double().eval()
    prefix = name + "."
    m.load_state_dict({k[len(prefix):]: torch.from_numpy(v) for k, v in params.items()
                       if k.startswith(prefix)}, strict=True)
    return m


# ---- each kind against PyTorch's module --------------------------------------------------

# (spec arguments, torch class, torch kwargs, with h0, with c0)
CASES = [
    ("rnn 6", nn.RNN, {}, False, False),
    ("rnn 6 nonlinearity=relu", nn.RNN, {"nonlinearity": "relu"}, False, False),
    ("rnn 6 act=relu layers=2 bidirectional", nn.RNN,
     {"nonlinearity": "relu", "num_layers": 2, "bidirectional": True}, True, False),
    ("rnn 6 layers=3 bias=false", nn.RNN, {"num_layers": 3, "bias": False}, True, False),
    ("gru 6", nn.GRU, {}, False, False),
    ("gru 6 layers=2", nn.GRU, {"num_layers": 2}, True, False),
    ("gru 6 bidirectional", nn.GRU, {"bidirectional": True}, True, False),
    ("gru 6 layers=3 bidirectional bias=false dropout=0.3", nn.GRU,
     {"num_layers": 3, "bidirectional": True, "bias": False, "dropout": 0.3}, True, False),
    ("lstm 6", nn.LSTM, {}, False, False),
    ("lstm 6 layers=2 bidirectional", nn.LSTM, {"num_layers": 2, "bidirectional": True},
     True, True),
    ("lstm 6 layers=2 bias=false", nn.LSTM, {"num_layers": 2, "bias": False}, True, True),
    ("lstm 6 bidirectional", nn.LSTM, {"bidirectional": True}, False, False),
]


@pytest.mark.parametrize("args, cls, kw, with_h0, with_c0", CASES, ids=[c[0] for c in CASES])
def test_matches_pytorch_module(args, cls, kw, with_h0, with_c0):
    kind = args.split()[0]
    layers, dirs = kw.get("num_layers", 1), 2 if kw.get("bidirectional") else 1
    states = f"[{layers * dirs}, N, 6]"
    inputs = "x: [N, T, 5]" + (f", h: {states}" if with_h0 else "") + \
        (f", c: {states}" if with_c0 else "")
    extra = (" h0=h" if with_h0 else "") + (" c0=c" if with_c0 else "")
    names = "y, hn, cn" if kind == "lstm" else "y, hn"
    text = f"""
model M({inputs}) {{
    {names} = {args}{extra} state as rec
    y | last
}}
model Plain({inputs}) {{
    {args}{extra} as rec                  : [N, T, {6 * dirs}]
}}
"""
    spec = nnspec.loads(text, "t.nn")
    params = nninit.draw(spec.state_shapes("M"), 5, np.float64)
    n, t = 3, 4
    xs = [rand(n, t, 5, seed=1)]
    if with_h0:
        xs.append(rand(layers * dirs, n, 6, seed=2))
    if with_c0:
        xs.append(rand(layers * dirs, n, 6, seed=3))

    twin = torch_twin(cls, "rec", params, input_size=5, hidden_size=6, **kw)
    targs = [torch.from_numpy(xs[0])]
    if with_c0:
        targs.append((torch.from_numpy(xs[1]), torch.from_numpy(xs[2])))
    elif with_h0:
        targs.append(torch.from_numpy(xs[1]))
    with torch.no_grad():
        out = twin(*targs)
    want = to_np((out[0],) + tuple(out[1]) if cls is nn.LSTM else out)
    assert len(want) == (3 if kind == "lstm" else 2)

    ours, theirs, mod = both_traces(spec, xs, params, "M")
    (node,) = [nd for nd in spec.model("M").nodes if nd.name == "rec"]
    assert list(mod.state_dict()) == list(spec.state_shapes("M")) == [
        f"rec.{k}" for k in twin.state_dict()]
    assert_close(ours[node.id], want, "numpy")
    assert_close(theirs[node.id], want, "torch")
    out_id = spec.model("M").output
    assert_close(ours[out_id], want[0][:, -1], "last")

    # without `state`: the output alone, in both backends
    ours, theirs, _ = both_traces(spec, xs, params, "Plain")
    out_id = spec.model("Plain").output
    assert_close(ours[out_id], want[0], "numpy plain")
    assert_close(theirs[out_id], want[0], "torch plain")


@pytest.mark.parametrize("given", ["h0", "c0"])
def test_lstm_with_only_one_initial_state(given, tmp_path):
    text = f"""
model M(x: [N, T, 3], s: [1, N, 4]) {{
    y, h, c = lstm 4 {given}=s state as rec
    y
}}
"""
    spec = nnspec.loads(text, "t.nn")
    params = nninit.draw(spec.state_shapes(), 1, np.float64)
    xs = [rand(2, 5, 3, seed=1), rand(1, 2, 4, seed=2)]
    twin = torch_twin(nn.LSTM, "rec", params, input_size=3, hidden_size=4)
    s = torch.from_numpy(xs[1])
    zero = torch.zeros_like(s)
    with torch.no_grad():
        y, (h, c) = twin(torch.from_numpy(xs[0]), (s, zero) if given == "h0" else (zero, s))
    ours, theirs, _ = both_traces(spec, xs, params)
    (node,) = [nd for nd in spec.model().nodes if nd.name == "rec"]
    assert_close(ours[node.id], to_np((y, h, c)))
    assert_close(theirs[node.id], to_np((y, h, c)))
    # the emitted source carries the helpers and computes the same
    path = tmp_path / f"gen_lstm_{given}.py"
    path.write_text(emit_source(spec))
    gen = import_source(path, f"gen_lstm_{given}")
    assert "def lstm_initial_state(h0, c0):" in path.read_text()
    net = gen.M().double().eval()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    with torch.no_grad():
        np.testing.assert_allclose(net(*[torch.from_numpy(x) for x in xs]).numpy(),
                                   y.numpy(), **TOL)


# ---- the Cho GRU (reset=before) ------------------------------------------------------------

CHO = """
model G(x: [N, 2, 1], h: [1, N, 1]) {
    y, hn = gru 1 reset=RESET h0=h state as gru
    y
}
"""


def hand_weights():
    # gates stacked r, z, n (nn.GRU's layout); input and hidden size 1
    return {
        "gru.weight_ih_l0": np.array([[0.0], [0.0], [1.0]]),   # W_ir, W_iz, W_in
        "gru.weight_hh_l0": np.array([[0.0], [0.0], [2.0]]),   # W_hr, W_hz, W_hn
        "gru.bias_ih_l0": np.array([-math.log(3), math.log(3), 0.0]),  # b_ir, b_iz, b_in
        "gru.bias_hh_l0": np.array([0.0, 0.0, 0.2]),           # b_hr, b_hz, b_hn
    }


def test_cho_gru_hand_computed():
    # x = (0.3, -0.5), h0 = 0.4. Every step: r = σ(-ln 3) = 1/(1 + 3) = 1/4 and
    # z = σ(ln 3) = 3/(3 + 1) = 3/4; h' = (1 - z) n + z h = n/4 + 3h/4.
    # reset=before (Cho et al.): n = tanh(W_in x + b_in + W_hn (r h) + b_hn)
    #   step 1: n1 = tanh(0.3 + 2*(0.4/4) + 0.2) = tanh(0.7)          (≈ 0.604368)
    #           h1 = tanh(0.7)/4 + 0.3                                 (≈ 0.451092)
    #   step 2: n2 = tanh(-0.5 + 2*(h1/4) + 0.2) = tanh(h1/2 - 0.3)    (≈ -0.074317)
    #           h2 = n2/4 + 3*h1/4                                     (≈ 0.319739)
    # reset=after (PyTorch): n = tanh(W_in x + b_in + r (W_hn h + b_hn))
    #   step 1: n1 = tanh(0.3 + (2*0.4 + 0.2)/4) = tanh(0.55);  h1 = tanh(0.55)/4 + 0.3
    #   step 2: n2 = tanh(-0.5 + (2*h1 + 0.2)/4) = tanh(h1/2 - 0.45);  h2 = n2/4 + 3*h1/4
    b1 = math.tanh(0.7) / 4 + 0.3
    b2 = math.tanh(b1 / 2 - 0.3) / 4 + 3 * b1 / 4
    a1 = math.tanh(0.55) / 4 + 0.3
    a2 = math.tanh(a1 / 2 - 0.45) / 4 + 3 * a1 / 4
    assert abs(b1 - 0.451092) < 1e-6 and abs(b2 - 0.319739) < 1e-6
    xs = [np.array([[[0.3], [-0.5]]]), np.array([[[0.4]]])]
    for reset, (h1, h2) in [("before", (b1, b2)), ("after", (a1, a2))]:
        spec = nnspec.loads(CHO.replace("RESET", reset), "t.nn")
        ours, theirs, _ = both_traces(spec, xs, hand_weights())
        (node,) = [nd for nd in spec.model().nodes if nd.op == "gru"]
        want = (np.array([[[h1], [h2]]]), np.array([[[h2]]]))
        assert_close(ours[node.id], want, f"numpy {reset}")
        assert_close(theirs[node.id], want, f"torch {reset}")
    # and nn.GRU itself is the `after` formulation
    twin = torch_twin(nn.GRU, "gru", hand_weights(), input_size=1, hidden_size=1)
    with torch.no_grad():
        y, _ = twin(torch.from_numpy(xs[0]), torch.from_numpy(xs[1]))
    np.testing.assert_allclose(y.numpy().ravel(), [a1, a2], **TOL)


CHO_DEEP = """
model G(x: [N, T, 5], h: [4, N, 6]) {
    y, hn = gru 6 reset=before layers=2 bidirectional h0=h state as gru
    y
}
model A(x: [N, T, 5], h: [4, N, 6]) {
    y, hn = gru 6 reset=after layers=2 bidirectional h0=h state as gru
    y
}
"""


def test_reset_before_differs_from_after_and_backends_agree(tmp_path):
    spec = nnspec.loads(CHO_DEEP, "t.nn")
    assert spec.state_shapes("G").keys() == spec.state_shapes("A").keys()
    params = nninit.draw(spec.state_shapes("G"), 3, np.float64)
    xs = [rand(3, 5, 5, seed=1), rand(4, 3, 6, seed=2)]
    before, before_t, mod = both_traces(spec, xs, params, "G")
    after, _, _ = both_traces(spec, xs, params, "A")
    out_b, out_a = before[spec.model("G").output], after[spec.model("A").output]
    assert_close(before_t[spec.model("G").output], out_b)
    assert np.abs(out_b - out_a).max() > 1e-3
    assert type(mod.gru).__name__ == "ChoGRU"
    assert list(mod.gru.state_dict()) == list(
        torch_twin(nn.GRU, "gru", params, input_size=5, hidden_size=6, num_layers=2,
                   bidirectional=True).state_dict())
    # the emitted source (ChoGRU copied into it) computes what build_module computes
    path = tmp_path / "gen_cho.py"
    text = emit_source(spec, "G")
    path.write_text(text)
    assert "class ChoGRU(nn.Module):" in text and "nnspec" not in text.split("\n", 3)[3]
    gen = import_source(path, "gen_cho")
    net = gen.G().double().eval()
    net.load_state_dict(mod.state_dict())
    with torch.no_grad():
        got = net(*[torch.from_numpy(x) for x in xs])
        assert torch.equal(got, mod(*[torch.from_numpy(x) for x in xs]))
    # the generated module initialises as nn.GRU: uniform(-1/sqrt(6), 1/sqrt(6))
    w = gen.G().gru.weight_hh_l1_reverse
    assert w.shape == (18, 6) and 0 < w.abs().max() <= 1 / math.sqrt(6)


def test_cho_gru_dropout_between_layers_only_in_training():
    from nnspec.layers.torch.recurrent import ChoGRU

    torch.manual_seed(0)
    m = ChoGRU(3, 4, num_layers=2, dropout=0.5).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(m.eval()(x)[0], m(x)[0])
        assert not torch.equal(m.train()(x)[0], m.eval()(x)[0])


def test_numpy_dropout_between_layers():
    spec = nnspec.loads("model M(x: [N, T, 3]) {\n    gru 4 layers=2 dropout=0.5\n}\n", "t.nn")
    ref = NumpyModel(spec, seed=0, dtype=np.float64)
    x = rand(2, 5, 3)
    assert np.array_equal(ref(x), ref(x))
    trained = ref(x, training=True, rng=np.random.default_rng(0))
    assert not np.allclose(trained, ref(x))


# ---- last and embedding -------------------------------------------------------------------


def test_last_of_a_bidirectional_layer():
    # forward half: the forward direction's last step (= its h_n); backward half: the
    # backward direction's FIRST step (it has seen x[:, -1] only), not its h_n
    text = """
model M(x: [N, T, 3]) {
    y, h = gru 4 bidirectional state
    a = y | last
    a
}
"""
    spec = nnspec.loads(text, "t.nn")
    params = nninit.draw(spec.state_shapes(), 0, np.float64)
    ours, _, _ = both_traces(spec, [rand(2, 5, 3)], params)
    y, h = ours[[n.id for n in spec.model().nodes if n.op == "gru"][0]]
    last = ours[spec.model().output]
    assert last.shape == (2, 8)
    assert_close(last[:, :4], h[0])
    assert_close(y[:, 0, 4:], h[1])
    assert np.abs(last[:, 4:] - h[1]).max() > 1e-6


EMB = """
model E(tokens: [N, T] int) {
    embedding 11 4 padding=PAD as emb         : [N, T, 4]
}
"""


@pytest.mark.parametrize("pad", [0, 3, -1])
def test_embedding_matches_torch(pad, tmp_path):
    spec = nnspec.loads(EMB.replace("PAD", str(pad)), "t.nn")
    w = spec.state_shapes()["emb.weight"]
    assert w.shape == (11, 4) and w.init[:2] == ("normal", 1.0)
    params = nninit.draw(spec.state_shapes(), 2, np.float64)
    ids = np.random.default_rng(0).integers(0, 11, size=(3, 7))
    ours, theirs, mod = both_traces(spec, [ids], params)
    twin = nn.Embedding(11, 4, padding_idx=pad).double()
    twin.load_state_dict({"weight": torch.from_numpy(params["emb.weight"])})
    with torch.no_grad():
        want = twin(torch.from_numpy(ids)).numpy()
    out = spec.model().output
    assert_close(ours[out], want)
    assert_close(theirs[out], want)
    assert mod.emb.padding_idx == pad % 11
    # PyTorch's initialisation (in the emitted module): normal(0, 1), the padding row zero
    path = tmp_path / f"gen_emb{pad + 1}.py"
    path.write_text(emit_source(spec))
    net = import_source(path, f"gen_emb{pad + 1}").E()
    assert torch.count_nonzero(net.emb.weight[pad]) == 0
    assert 0.5 < net.emb.weight.std() < 1.5


def test_embedding_feeds_a_recurrent_stack():
    text = """
model S(tokens: [N, T] int) -> [N, 2] {
    embedding 30 8                 : [N, T, 8]
    lstm 5 layers=2                : [N, T, 5]
    gru 4 bidirectional            : [N, T, 8]
    rnn 3 reset=before as bad
}
"""
    spec = nnspec.loads(text, "t.nn", strict=False)
    (d,) = spec.diagnostics
    assert "unknown argument 'reset' for rnn" in d.message and d.span.line == 6
    spec = nnspec.loads(text.replace("rnn 3 reset=before as bad", "last | dense 2"), "t.nn")
    params = nninit.draw(spec.state_shapes(), 0, np.float64)
    ids = np.random.default_rng(1).integers(0, 30, size=(2, 6))
    ours, theirs, _ = both_traces(spec, [ids], params)
    out = spec.model().output
    assert ours[out].shape == (2, 2)
    assert_close(theirs[out], ours[out])


def test_float32_stays_float32():
    text = """
model M(tokens: [N, T] int) {
    embedding 10 6
    a = rnn 4 | last
    b = tokens | embedding 10 6 | gru 4 reset=before bidirectional | last
    c = tokens | embedding 10 6 | lstm 4 layers=2 | last
    concat(a, b, c)
}
"""
    spec = nnspec.loads(text, "t.nn")
    ids = np.random.default_rng(1).integers(0, 10, size=(2, 6))
    got = NumpyModel(spec, seed=0, dtype=np.float32)(ids, trace=True)
    for k, v in got.items():
        if k != spec.model().inputs[0].id:
            assert v.dtype == np.float32, k
    ref = build_module(spec, seed=0).eval()
    with torch.no_grad():
        want = ref(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(got[spec.model().output], want, rtol=1e-4, atol=1e-5)


# ---- errors ---------------------------------------------------------------------------------


def errors(text):
    spec = nnspec.loads(text, "t.nn", strict=False)
    return [(d.span.line, " ".join([d.message, *d.notes, d.hint or ""]), d.span.col)
            for d in spec.diagnostics]


def test_rank_2_input_to_gru():
    (err,) = errors("model M(x: [N, 8]) {\n    dense 4\n    gru 8\n}\n")
    assert err[0] == 3 and "gru expects a rank-3 input" in err[1] and "[N, 4]" in err[1]


def test_int_input_to_lstm():
    (err,) = errors("model M(t: [N, T] int) {\n    lstm 8\n}\n")
    assert err[0] == 2 and "lstm needs a float input" in err[1]
    assert "embedding layer first" in err[1]


def test_float_input_to_embedding_and_bad_padding():
    (err,) = errors("model M(t: [N, T]) {\n    embedding 100 8\n}\n")
    assert err[0] == 2 and "embedding takes int token ids, got [N, T]" in err[1]
    (err,) = errors("model M(t: [N, T] int) {\n    embedding 100 8 padding=100\n}\n")
    assert err[0] == 2 and "padding must be a row of the table, in [-100, 99], but it is 100" \
        in err[1] and err[2] == 21


def test_h0_with_the_wrong_shape():
    text = """
model M(x: [N, T, 5], h: [1, N, 6]) {
    gru 8 layers=2 h0=h
}
"""
    (err,) = errors(text)
    assert err[0] == 3 and err[2] == 20  # at the h0 argument
    assert "h0 must be [layers*directions, N, hidden] = [2, N, 8], but it is [1, N, 6]" \
        in err[1]
    text = """
model M(x: [N, T, 5], h: [2, N, 8], c: [1, N, 8]) {
    lstm 8 bidirectional h0=h c0=c
}
"""
    (err,) = errors(text)
    assert "c0 must be [layers*directions, N, hidden] = [2, N, 8], but it is [1, N, 8]" in err[1]


def test_too_many_names_and_no_names():
    (err,) = errors("model M(x: [N, T, 5]) {\n    y, h, c = gru 8 state\n    y\n}\n")
    assert err[0] == 2 and "returns 2 values (output, h_n), but 3 names are given" in err[1]
    text = "model M(x: [N, T, 5]) {\n    gru 8 state\n    last\n}\n"
    (err,) = errors(text)
    assert err[0] == 3 and "line 2: gru 8 state returns 2 values (output, h_n)" in err[1]
    assert "name them before use" in err[1]
    (err,) = errors("model M(x: [N, T, 5]) {\n    y, h = gru 8\n    y\n}\n")
    assert err[0] == 2 and "returns one value" in err[1]


def test_dropout_needs_stacked_layers():
    (err,) = errors("model M(x: [N, T, 5]) {\n    lstm 8 dropout=0.2\n}\n")
    assert err[0] == 2 and "dropout is applied between stacked layers" in err[1]
    assert err[2] == 12


# ---- parameter counts and MACs ------------------------------------------------------------


def test_parameter_counts_follow_torch_not_keras():
    rnn = nnspec.load(str(SPECS / "keras_simplernn.nn"))
    (row,) = [r for r in rnn.layers() if r.kind == "rnn"]
    keras = 100 * 64 + 64 * 64 + 64  # Keras' SimpleRNN: one bias vector
    assert keras == 10_560
    assert row.params == sum(p.numel() for p in nn.RNN(100, 64).parameters()) == 10_624
    assert rnn.param_count() == 10_624 + 650
    lstm = nnspec.load(str(SPECS / "keras_lstm.nn"))
    (row,) = [r for r in lstm.layers() if r.kind == "lstm"]
    assert 4 * (100 * 64 + 64 * 64 + 64) == 42_240  # Keras' LSTM
    assert row.params == sum(p.numel() for p in nn.LSTM(100, 64).parameters()) == 42_496
    gru = nnspec.loads("model M(x: [N, T, 7]) {\n    gru 5 layers=3 bidirectional "
                       "bias=false\n}\n", "t.nn")
    ref = nn.GRU(7, 5, num_layers=3, bidirectional=True, bias=False)
    assert gru.param_count() == sum(p.numel() for p in ref.parameters())
    assert {k: w.shape for k, w in gru.state_shapes().items()} == {
        f"gru_0.{k}": tuple(v.shape) for k, v in ref.state_dict().items()}


def test_macs_per_step_and_per_sequence():
    spec = nnspec.load(str(SPECS / "keras_simplernn.nn"))
    (row,) = [r for r in spec.layers() if r.kind == "rnn"]
    per_step = 100 * 64 + 64 * 64  # 10,496
    assert row.macs.subs({"N": 1}).value == 10 * per_step == 104_960
    assert "per step 10,496 MACs" in REGISTRY["rnn"].detail(row.node.p, row.inputs)
    # lstm 64 on 128 features: 4 * (128*64 + 64*64) = 49,152 per step; symbolic in N, T
    spec = nnspec.loads("model M(x: [N, T, 128]) {\n    lstm 64\n}\n", "t.nn")
    (row,) = spec.layers()
    assert str(row.macs) == "49152*N*T"
    assert "per step 49,152 MACs" in row.node.kind.detail(row.node.p, row.inputs)
    # 2-layer bidirectional GRU 256 on 128 features (gru_sentiment.nn):
    # layer 0: 2 * 3 * (128*256 + 256*256) = 589,824; layer 1: 2 * 3 * (512*256 + 256*256)
    # = 1,179,648; 1,769,472 per step
    spec = nnspec.load(str(SPECS / "gru_sentiment.nn"))
    (row,) = [r for r in spec.layers() if r.kind == "gru"]
    assert row.macs.subs({"N": 1, "T": 1}).value == 589_824 + 1_179_648 == 1_769_472
    assert spec.param_count() == 4_336_642


def test_bundled_specs_shapes_and_composition():
    spec = nnspec.load(str(SPECS / "gru_sentiment.nn"))
    assert str(spec.output_type()) == "[N, 2]"
    s2s = nnspec.load(str(SPECS / "seq2seq_gru.nn"))
    assert str(s2s.output_type("Encoder")) == "[1, N, 256]"
    assert str(s2s.output_type("Decoder")) == "[N, T, 8000]"
    bad = (SPECS / "seq2seq_gru.nn").read_text().replace("h0: [1, N, 256]", "h0: [2, N, 256]")
    msgs = " ".join(d.message for d in nnspec.loads(bad, "s.nn", strict=False).diagnostics)
    assert "h0 must be" in msgs and "Decoder's input h0 does not fit" in msgs


def test_cho_gru_exports_with_a_dynamic_batch():
    text = """
model M(x: [N, 6, 3], h: [2, N, 4]) {
    _, hn = gru 4 layers=2 reset=before h0=h state
    hn | last
}
"""
    m = build_module(nnspec.loads(text, "t.nn"), seed=0).eval()
    ep = torch.export.export(m, (torch.randn(3, 6, 3), torch.randn(2, 3, 4)),
                             dynamic_shapes=m.dynamic_shapes())
    x, h = torch.randn(5, 6, 3), torch.randn(2, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x, h), m(x, h))
