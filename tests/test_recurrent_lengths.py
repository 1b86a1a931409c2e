"""Recurrent layers over padded sequences of given lengths (``lengths=l``) and the LSTM's
projection (``proj_size=``): both backends and the emitted source against torch's
pack_padded_sequence(enforce_sorted=False) → nn.RNN / GRU / LSTM → pad_packed_sequence
(float64), the NumPy backward against finite differences and torch autograd, and the
shape rule's errors."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from _gradcheck import check_autograd, check_kind
from _util import import_source
from nnspec.backends import weights as nninit
from nnspec.backends.numpy import NumpyModel
from nnspec.layers import REGISTRY
from nnspec.layers.base import INT, TensorType

torch = pytest.importorskip("torch")
nn = torch.nn
pack = nn.utils.rnn.pack_padded_sequence
unpack = nn.utils.rnn.pad_packed_sequence

from nnspec.backends.torch import build_module, emit_source  # noqa: E402

TOL = dict(rtol=1e-10, atol=1e-12)
N, T, F = 4, 5, 3
LENGTHS = np.array([2, T, 1, 4])  # unsorted, with a length of 1 and one of T


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def flat(out) -> tuple:
    """A torch RNN's (output, h_n) or (output, (h_n, c_n)) as a flat tuple of arrays."""
    y, state = out
    states = state if isinstance(state, tuple) else (state,)
    return tuple(v.detach().numpy() for v in (y, *states))


def reference(cls, kw: dict, params: dict, x, lengths, hx=None) -> tuple:
    """PyTorch's own module with the layer ``rec``'s weights: packed, run and unpacked."""
    m = cls(input_size=x.shape[2], batch_first=True, **kw).double().eval()
    m.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in params.items()
                       if k.startswith("rec.")}, strict=True)
    packed = pack(torch.from_numpy(x), torch.as_tensor(lengths, dtype=torch.int64),
                  batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        y, state = m(packed, hx)
    y, _ = unpack(y, batch_first=True, total_length=x.shape[1])
    return flat((y, state))


def layer_spec(args: str, states: dict[str, int], size: dict[str, int]) -> str:
    """``y, ... = <args> <states>=... lengths=l state as rec`` over x: [N, T, F]."""
    decl = "".join(f", {s}: [{n}, N, {size[s]}]" for s, n in states.items())
    extra = "".join(f" {s}={s}" for s in states)
    names = "y, hn, cn" if args.startswith("lstm") else "y, hn"
    return (f"model M(x: [N, T, {F}], l: [N] int{decl}) {{\n"
            f"    {names} = {args}{extra} lengths=l state as rec\n    y\n}}\n")


def both_backends(spec, xs, params) -> tuple[tuple, tuple]:
    """The node ``rec``'s value from NumpyModel and from build_module (float64, eval)."""
    (node,) = [nd for nd in spec.model().nodes if nd.name == "rec"]
    ours = NumpyModel(spec, params=params, dtype=np.float64)(*xs, trace=True)[node.id]
    mod = build_module(spec, params=params, dtype=torch.float64).eval()
    with torch.no_grad():
        theirs = mod.trace(*[torch.from_numpy(a) for a in xs])[node.id]
    return ours, tuple(v.numpy() for v in theirs)


def assert_all_close(got: tuple, want: tuple, what: str) -> None:
    assert len(got) == len(want), what
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape, (what, i, a.shape, b.shape)
        np.testing.assert_allclose(a, b, err_msg=f"{what}[{i}]", **TOL)


# (spec arguments, torch class, torch kwargs, initial states given: name -> layers*dirs)
CASES = [
    ("rnn 4", nn.RNN, {"hidden_size": 4}, {}),
    ("rnn 4 nonlinearity=relu layers=2 bidirectional", nn.RNN,
     {"hidden_size": 4, "nonlinearity": "relu", "num_layers": 2, "bidirectional": True},
     {"h0": 4}),
    ("gru 4 bidirectional", nn.GRU, {"hidden_size": 4, "bidirectional": True}, {}),
    ("gru 4 layers=2 bias=false", nn.GRU,
     {"hidden_size": 4, "num_layers": 2, "bias": False}, {"h0": 2}),
    ("lstm 4 layers=2 bidirectional", nn.LSTM,
     {"hidden_size": 4, "num_layers": 2, "bidirectional": True}, {"h0": 4, "c0": 4}),
    ("lstm 4 proj_size=2", nn.LSTM, {"hidden_size": 4, "proj_size": 2}, {}),
    ("lstm 5 proj_size=3 layers=2 bidirectional", nn.LSTM,
     {"hidden_size": 5, "proj_size": 3, "num_layers": 2, "bidirectional": True},
     {"h0": 4, "c0": 4}),
]


@pytest.mark.parametrize("args, cls, kw, states", CASES, ids=[c[0] for c in CASES])
def test_both_backends_match_packed_torch(args, cls, kw, states):
    size = {"h0": kw.get("proj_size") or kw["hidden_size"], "c0": kw["hidden_size"]}
    spec = nnspec.loads(layer_spec(args, states, size), "t.nn")
    params = nninit.draw(spec.state_shapes(), 3, np.float64)
    assert [k[4:] for k in params] == list(cls(F, batch_first=True, **kw).state_dict())
    xs = [rand(N, T, F, seed=1), LENGTHS] + [rand(n, N, size[s], seed=2 + i)
                                              for i, (s, n) in enumerate(states.items())]
    hx = [torch.from_numpy(a) for a in xs[2:]]
    want = reference(cls, kw, params, xs[0], LENGTHS,
                     None if not hx else hx[0] if cls is not nn.LSTM else tuple(hx))
    ours, theirs = both_backends(spec, xs, params)
    assert_all_close(ours, want, "numpy")
    assert_all_close(theirs, want, "torch")
    y = want[0]
    for n, length in enumerate(LENGTHS):
        assert not y[n, length:].any() and y[n, :length].any(axis=-1).all()


def test_lengths_may_be_any_int_tensor():
    """torch packs with int64 lengths on the CPU: int32, int16 and uint8 lengths give the
    same values in both backends."""
    spec = nnspec.loads(layer_spec("gru 3 bidirectional", {}, {}), "t.nn")
    params = nninit.draw(spec.state_shapes(), 0, np.float64)
    x = rand(N, T, F, seed=4)
    want = reference(nn.GRU, {"hidden_size": 3, "bidirectional": True}, params, x, LENGTHS)
    mod = build_module(spec, params=params, dtype=torch.float64).eval()
    ref = NumpyModel(spec, params=params, dtype=np.float64)
    for dtype in (np.int64, np.int32, np.int16, np.uint8):
        lengths = LENGTHS.astype(dtype)
        with torch.no_grad():
            y = mod(torch.from_numpy(x), torch.from_numpy(lengths)).numpy()
        np.testing.assert_allclose(y, want[0], **TOL)
        np.testing.assert_allclose(ref(x, lengths), want[0], **TOL)


@pytest.mark.parametrize("args", ["gru 3 reset=before layers=2 bidirectional",
                                  "rnn 3 bidirectional", "lstm 4 proj_size=2 bidirectional"])
def test_each_sequence_as_if_run_alone(args):
    """The value of a padded sequence is the layer's value on that sequence cut to its
    length (the Cho GRU, which torch cannot pack, included); the rest are zeros."""
    spec = nnspec.loads(layer_spec(args, {}, {}), "t.nn")
    alone = nnspec.loads(f"model M(x: [N, T, {F}]) {{\n    y, *s = {args} state as rec\n"
                         "    y\n}\n".replace("*s", "hn, cn" if "lstm" in args else "hn"),
                         "a.nn")
    params = nninit.draw(spec.state_shapes(), 2, np.float64)
    x = rand(N, T, F, seed=5)
    ours, theirs = both_backends(spec, [x, LENGTHS], params)
    for n, length in enumerate(LENGTHS):
        one, _ = both_backends(alone, [np.ascontiguousarray(x[n:n + 1, :length])], params)
        for got in (ours, theirs):
            np.testing.assert_allclose(got[0][n, :length], one[0][0], **TOL)
            assert not got[0][n, length:].any()
            for g, o in zip(got[1:], one[1:]):
                np.testing.assert_allclose(g[:, n], o[:, 0], **TOL)


def test_an_empty_sequence_keeps_its_initial_state():
    """Torch cannot pack a length of 0; here it is a sequence without steps: zero outputs,
    h_n = h0 and c_n = c0, in both backends."""
    states = {"h0": 2, "c0": 2}
    spec = nnspec.loads(layer_spec("lstm 4 proj_size=3 bidirectional", states,
                                   {"h0": 3, "c0": 4}), "t.nn")
    params = nninit.draw(spec.state_shapes(), 1, np.float64)
    lengths = np.array([0, 3, T, 0])
    xs = [rand(N, T, F, seed=6), lengths, rand(2, N, 3, seed=7), rand(2, N, 4, seed=8)]
    ours, theirs = both_backends(spec, xs, params)
    for got in (ours, theirs):
        y, h, c = got
        assert not y[[0, 3]].any() and np.abs(y[1, :3]).min() > 0
        np.testing.assert_array_equal(h[:, [0, 3]], xs[2][:, [0, 3]])
        np.testing.assert_array_equal(c[:, [0, 3]], xs[3][:, [0, 3]])
    assert_all_close(ours, theirs, "numpy vs torch")


@pytest.mark.parametrize("bad", [[1, T + 1, 2, 2], [1, -1, 2, 2]])
def test_a_length_out_of_range_is_refused_by_both_backends(bad):
    spec = nnspec.loads(layer_spec("rnn 2", {}, {}), "t.nn")
    xs = [rand(N, T, F), np.array(bad)]
    with pytest.raises(ValueError, match=rf"lengths must be in \[0, {T}\]"):
        NumpyModel(spec, dtype=np.float64)(*xs)
    mod = build_module(spec, dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"lengths must be in \[0, {T}\]"):
        mod(*[torch.from_numpy(a) for a in xs])


# ---- LSTM proj_size without lengths ------------------------------------------------------


@pytest.mark.parametrize("given", ["", "h0", "c0", "h0 c0"])
def test_lstm_projection_matches_torch(given):
    states = {s: 2 for s in given.split()}
    decl = "".join(f", {s}: [2, N, {2 if s == 'h0' else 5}]" for s in states)
    extra = "".join(f" {s}={s}" for s in states)
    spec = nnspec.loads(f"model M(x: [N, T, {F}]{decl}) {{\n"
                        f"    y, hn, cn = lstm 5 proj_size=2 bidirectional{extra} state as rec"
                        "\n    y\n}\n", "t.nn")
    twin = nn.LSTM(F, 5, proj_size=2, bidirectional=True, batch_first=True).double()
    assert spec.param_count() == sum(p.numel() for p in twin.parameters())
    params = nninit.draw(spec.state_shapes(), 4, np.float64)
    twin.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in params.items()})
    xs = [rand(N, T, F, seed=9)] + [rand(2, N, 2 if s == "h0" else 5, seed=10 + i)
                                    for i, s in enumerate(states)]
    zeros = {"h0": torch.zeros(2, N, 2), "c0": torch.zeros(2, N, 5)}
    hx = tuple(torch.from_numpy(xs[1 + list(states).index(s)]) if s in states
               else zeros[s].double() for s in ("h0", "c0"))
    with torch.no_grad():
        want = flat(twin(torch.from_numpy(xs[0]), hx))
    assert want[0].shape == (N, T, 4) and want[1].shape == (2, N, 2)
    ours, theirs = both_backends(spec, xs, params)
    assert_all_close(ours, want, "numpy")
    assert_all_close(theirs, want, "torch")


# ---- the emitted source --------------------------------------------------------------------

SOURCE = f"""
model M(x: [N, T, {F}], l: [N] int, c: [2, N, 6]) {{
    y, hn, cn = lstm 6 bidirectional proj_size=3 c0=c lengths=l state as rec
    z = y | gru 4 reset=before lengths=l
    z | rnn 4 lengths=l
}}
"""


def test_emitted_source_packs_and_matches(tmp_path):
    spec = nnspec.loads(SOURCE, "t.nn")
    path = tmp_path / "gen_lengths.py"
    text = emit_source(spec)
    path.write_text(text)
    assert "self.rec = PackedLSTM(3, 6, batch_first=True, bidirectional=True, proj_size=3)" \
        in text
    assert "self.rec(x, lstm_projected_state(None, c, 6, 3), lengths=l_)" in text
    assert "nn.utils.rnn.pack_padded_sequence(" in text and "self.gru_0(y, lengths=l_)" in text
    gen = import_source(path, "gen_lengths")
    params = nninit.draw(spec.state_shapes(), 5, np.float64)
    net = gen.M().double().eval()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    xs = [rand(N, T, F, seed=11), np.array([3, 0, T, 1]), rand(2, N, 6, seed=12)]
    want = NumpyModel(spec, params=params, dtype=np.float64)(*xs)
    with torch.no_grad():
        got = net(*[torch.from_numpy(a) for a in xs]).numpy()
        again = net(torch.from_numpy(xs[0]), torch.from_numpy(xs[1]).int(),
                    torch.from_numpy(xs[2])).numpy()
    np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_array_equal(again, got)


# ---- gradients --------------------------------------------------------------------------------

KIND_CASES = [
    ("rnn", {"hidden": 2, "bidirectional": True, "state": True}),
    ("gru", {"hidden": 2, "layers": 2, "h0": 2, "state": True}),
    ("gru", {"hidden": 2, "reset": "before", "bidirectional": True}),
    ("lstm", {"hidden": 3, "proj_size": 2, "layers": 2, "bidirectional": True, "h0": 2,
              "c0": 3, "state": True}),
    ("lstm", {"hidden": 3, "proj_size": 1, "bias": False}),
]


@pytest.mark.parametrize("name, args", KIND_CASES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(KIND_CASES)])
def test_backward_against_finite_differences(name, args):
    kind = REGISTRY[name]
    layers, dirs = args.get("layers", 1), 2 if args.get("bidirectional") else 1
    h = args.get("proj_size") or args["hidden"]
    x = TensorType((3, 4, 2))
    ins = [x, TensorType((3,), INT)]
    if "h0" in args:
        ins.append(TensorType((layers * dirs, 3, h)))
    if "c0" in args:
        ins.append(TensorType((layers * dirs, 3, args["hidden"])))

    def lengths(xs, w):
        xs[1][:] = [4, 1, 3]

    errors = check_kind(kind, {**args, "lengths": 1}, ins, max_coords=24, prepare=lengths)
    assert {"x0", "weight_ih_l0", "weight_hh_l0"} <= set(errors)
    if args.get("proj_size"):
        assert "weight_hr_l0" in errors


AUTOGRAD = {
    "rnn_relu_deep": ("rnn 3 nonlinearity=relu layers=2 bidirectional", {"h0": (4, 3)}),
    "gru": ("gru 3 bidirectional", {}),
    "gru_before": ("gru 3 reset=before layers=2", {"h0": (2, 3)}),
    "lstm": ("lstm 3 layers=2 bidirectional", {"h0": (4, 3), "c0": (4, 3)}),
    "lstm_proj": ("lstm 4 proj_size=2 bidirectional", {"h0": (2, 2), "c0": (2, 4)}),
}


@pytest.mark.parametrize("case", sorted(AUTOGRAD))
def test_backward_against_torch_autograd(case):
    args, states = AUTOGRAD[case]
    decl = "".join(f", {s}: [{n}, N, {k}]" for s, (n, k) in states.items())
    extra = "".join(f" {s}={s}" for s in states)
    names = "y, hn, cn" if args.startswith("lstm") else "y, hn"
    spec = nnspec.loads(f"model M(x: [N, T, {F}], l: [N] int{decl}) {{\n"
                        f"    {names} = {args}{extra} lengths=l state\n"
                        f"    return y, hn\n}}\n", "t.nn")
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((N, T, F)), LENGTHS] + [
        rng.standard_normal((n, N, k)) for n, k in states.values()]
    got = check_autograd(spec, inputs, rtol=1e-9, atol=1e-11)
    gx = got.inputs[0]
    assert got.inputs[1] is None
    for n, length in enumerate(LENGTHS):
        assert not gx[n, length:].any() and np.abs(gx[n, :length]).min() > 0
    if "proj" in case:
        assert np.abs(got.params["lstm_0.weight_hr_l0_reverse"]).min() > 0


def test_lstm_projection_backward_without_lengths():
    spec = nnspec.loads(f"model M(x: [N, T, {F}], c: [2, N, 4]) {{\n"
                        "    y, hn, cn = lstm 4 proj_size=3 layers=2 c0=c state\n"
                        "    return hn, cn\n}\n", "t.nn")
    rng = np.random.default_rng(8)
    got = check_autograd(spec, [rng.standard_normal((2, T, F)), rng.standard_normal((2, 2, 4))])
    assert set(got.params) >= {"lstm_0.weight_hr_l0", "lstm_0.weight_hr_l1"}


# ---- shape rule ------------------------------------------------------------------------------


def errors(text):
    spec = nnspec.loads(text, "t.nn", strict=False)
    return [(d.span.line, d.span.col, " ".join([d.message, *d.notes, d.hint or ""]))
            for d in spec.diagnostics]


@pytest.mark.parametrize("decl, msg", [
    ("l: [N]", "lengths must be [N] int, one length per sequence of the batch, so [N] int "
               "for the input [N, T, 3], but it is [N]"),
    ("l: [N, 1] int", "but it is [N, 1] int"),
    ("l: [2] int", "so [N] int for the input [N, T, 3], but it is [2] int"),
])
def test_lengths_must_be_one_int_per_sequence(decl, msg):
    (err,) = errors(f"model M(x: [N, T, 3], {decl}) {{\n    gru 4 lengths=l\n}}\n")
    assert err[:2] == (2, 11) and msg in err[2] and "lengths: [N] int" in err[2]


def test_proj_size_must_be_below_hidden():
    (err,) = errors("model M(x: [N, T, 3]) {\n    lstm 4 proj_size=4\n}\n")
    assert err[:2] == (2, 12)
    assert "proj_size has to be smaller than hidden_size, but it is 4 for hidden 4" in err[2]
    (err,) = errors("model M(x: [N, T, 3]) {\n    lstm 4 proj_size=-1\n}\n")
    assert err[0] == 2 and "proj_size" in err[2] and "0 for no projection" in err[2]
    (err,) = errors("model M(x: [N, T, 3]) {\n    gru 4 proj_size=2\n}\n")
    assert err[0] == 2 and "proj_size" in err[2]


def test_initial_states_of_a_projected_lstm():
    text = ("model M(x: [N, T, 3], h: [1, N, 4], c: [1, N, 4]) {\n"
            "    lstm 4 proj_size=2 h0=h c0=c\n}\n")
    (err,) = errors(text)
    assert err[0] == 2 and "h0 must be [layers*directions, N, proj_size] = [1, N, 2], " \
        "but it is [1, N, 4]" in err[2]
    assert not errors(text.replace("h: [1, N, 4]", "h: [1, N, 2]"))
