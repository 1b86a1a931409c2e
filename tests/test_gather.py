"""gather(x, index, dim): entries picked by an int index tensor, DQN's Q(s, a). Values
against NumPy's fancy indexing and torch.gather, Python's negative indices, out-of-range
indices refused at run time by both backends, the scatter-add backward against finite
differences and torch autograd, the emitted source, and located errors."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from nnspec.layers import REGISTRY, TensorType

from _gradcheck import check_autograd, check_kind
from _util import import_source

torch = pytest.importorskip("torch")
from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module, emit_source  # noqa: E402

DQN = """
model Q(q: [N, 4], action: [N] int) {
    gather(q, action, dim=1)
}
"""

FULL = """
model G(x: [2, 5, 3], index: [2, 4, 3] int) {
    gather(x, index, dim=-2)
}
"""


def _both(spec, *xs):
    """The NumPy interpreter's output and the torch module's, float64."""
    ref = NumpyModel(spec, dtype=np.float64)(*xs)
    mod = build_module(spec, dtype=torch.float64)
    with torch.no_grad():
        got = mod(*[torch.from_numpy(np.asarray(x)) for x in xs]).numpy()
    return ref, got


def test_dqn_picks_the_q_value_of_each_action_negative_ones_from_the_end():
    spec = nnspec.loads(DQN, "q.nn")
    assert str(spec.output_type()) == "[N]"
    q = np.random.default_rng(0).standard_normal((5, 4))
    action = np.array([0, 3, -1, -4, 2])
    ref, got = _both(spec, q, action)
    want = q[np.arange(5), action]  # Python's indexing: -1 is the last action
    np.testing.assert_array_equal(ref, want)
    np.testing.assert_array_equal(got, want)


def test_an_index_of_x_rank_is_torch_gather():
    spec = nnspec.loads(FULL, "g.nn")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 3))
    index = rng.integers(-5, 5, (2, 4, 3))
    ref, got = _both(spec, x, index)
    want = torch.gather(torch.from_numpy(x), 1, torch.from_numpy(index % 5)).numpy()
    np.testing.assert_array_equal(ref, want)
    np.testing.assert_array_equal(got, want)


def test_an_index_smaller_than_x_on_the_other_axes_reads_the_leading_entries():
    spec = nnspec.loads("model S(x: [3, 5], i: [2, 4] int) {\n    gather(x, i, dim=0)\n}",
                        "s.nn")
    assert str(spec.output_type()) == "[2, 4]"
    x = np.arange(15.0).reshape(3, 5)
    i = np.array([[2, 0, 1, 1], [0, 2, 2, 0]])
    ref, got = _both(spec, x, i)
    want = torch.gather(torch.from_numpy(x), 0, torch.from_numpy(i)).numpy()
    np.testing.assert_array_equal(ref, want)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bad", [4, -5])
def test_an_index_out_of_range_raises_in_both_backends(bad):
    spec = nnspec.loads(DQN, "q.nn")
    q, action = np.zeros((2, 4)), np.array([0, bad])
    with pytest.raises(IndexError, match=f"index {bad} is out of range for dim 1 of size 4"):
        NumpyModel(spec, dtype=np.float64)(q, action)
    with pytest.raises(RuntimeError, match="out of bounds"):
        build_module(spec, dtype=torch.float64)(torch.from_numpy(q), torch.from_numpy(action))


@pytest.mark.parametrize("args, ins, index", [
    ({"dim": 1}, [TensorType((3, 4)), TensorType((3,), "int")], [1, -1, 1]),
    ({"dim": -1}, [TensorType((2, 3, 3)), TensorType((2, 3, 4), "int")],
     [[[0, 0, -1, 2]] * 3, [[1, 1, 1, -3]] * 3]),
    ({"dim": 0}, [TensorType((3, 5)), TensorType((4, 2), "int")],
     [[0, 0], [2, -1], [0, 1], [-3, 1]]),
])
def test_backward_scatter_adds_and_matches_finite_differences(args, ins, index):
    kind = REGISTRY["gather"]

    def prepare(xs, w):  # repeated entries: each pick adds its gradient
        xs[1] = np.array(index)

    check_kind(kind, args, ins, prepare=prepare)


def test_repeated_picks_add_their_gradients():
    kind = REGISTRY["gather"]
    p = kind.Params(dim=1)
    x, index = np.zeros((2, 3)), np.array([[2, 2, -1], [0, 1, 0]])
    (gx, gi), gw = kind.backward(p, {}, [x, index], None, np.ones((2, 3)), None)
    np.testing.assert_array_equal(gx, [[0, 0, 3], [2, 1, 0]])
    assert gi is None and gw == {}


def test_reference_gradients_agree_with_torch_autograd():
    spec = nnspec.loads("""
model D(x: [N, 6], a: [N] int) {
    q = x | dense 4 | tanh
    (gather(q, a, dim=1) * 2.0)
}
""", "d.nn")
    rng = np.random.default_rng(2)
    got = check_autograd(spec, [rng.standard_normal((5, 6)), np.array([0, 3, -1, 3, -2])])
    assert got.inputs[1] is None  # the index gets no gradient
    check_autograd(nnspec.loads(FULL, "g.nn"),
                   [rng.standard_normal((2, 5, 3)), rng.integers(-5, 5, (2, 4, 3))])


def test_the_emitted_source_gathers_as_written_by_hand(tmp_path):
    spec = nnspec.loads(DQN, "q.nn")
    src = emit_source(spec)
    assert "q = q.gather(1, wrap_index(action, 4).unsqueeze(1)).squeeze(1)" in src
    assert "return torch.where(index < 0, index + size, index)" in src
    full = emit_source(nnspec.loads(FULL, "g.nn"))
    assert "x.gather(-2, wrap_index(index, 5))" in full
    file = tmp_path / "gen_gather.py"
    file.write_text(src)
    net = import_source(file, "gen_gather").Q()
    q = torch.randn(3, 4, dtype=torch.float64)
    action = torch.tensor([1, -1, 0])
    torch.testing.assert_close(net(q, action), q[torch.arange(3), action], rtol=0, atol=0)


def test_a_symbolic_axis_is_wrapped_by_its_bound_size(tmp_path):
    spec = nnspec.loads("model A(q: [N, A], i: [N] int) {\n    gather(q, i, dim=-1)\n}",
                        "a.nn")
    q = np.random.default_rng(3).standard_normal((2, 7))
    i = np.array([-1, 5])
    ref, got = _both(spec, q, i)
    np.testing.assert_array_equal(ref, q[[0, 1], i])
    np.testing.assert_array_equal(got, q[[0, 1], i])
    assert "wrap_index(i, A)" in emit_source(spec)


def _error(text: str):
    spec = nnspec.loads(text, "e.nn", strict=False)
    assert spec.diagnostics, "the spec must be refused"
    return spec.diagnostics[0]


@pytest.mark.parametrize("inputs, call, code, message", [  # at the call, or at dim=
    ("q: [N, 4], a: [N]", "gather(q, a, dim=1)", "E300",
     "gather takes an int index, got [N]"),
    ("q: [N, 4], a: [M] int", "gather(q, a, dim=1)", "E300",
     "gather along dim 1 of [N, 4]: the index [M] int has dim M where x has N (axis 0 of "
     "the index)"),
    ("q: [N, 4], a: [N, 4, 2] int", "gather(q, a)", "E300",
     "gather of [N, 4] takes an index of rank 1 (one entry per position of the other axes) "
     "or 2 (torch.gather's), got [N, 4, 2] int (rank 3)"),
    ("q: [N, 4], a: [M, 2] int", "gather(q, a)", "E300",
     "gather along dim 1 of [N, 4]: the index [M, 2] int has dim M on axis 0, which is not "
     "at most x's N"),
    ("q: [N, 4], a: [N] int", "gather(q, a, dim=2)", "E360",
     "gather: axis 2 is out of range for a rank-2 input (axes -2 to 1)"),
])
def test_bad_gathers_are_located_errors(inputs, call, code, message):
    d = _error(f"model M({inputs}) {{\n    {call}\n}}\n")
    assert (d.code, d.message) == (code, message)
    assert (d.span.line, d.span.col) == (2, call.find("dim=2") + 5 if "dim=2" in call else 5)


def test_a_tensor_subscript_points_to_gather():
    d = _error("model M(q: [N, 4], action: [N] int) {\n    q[:, action]\n}\n")
    assert d.code == "E046"
    assert d.hint == "use gather(q, action, dim=1)"
    assert (d.span.line, d.span.col) == (2, 10)
    d = _error("model M(x: [N, 3, 4], i: [N, 3] int) {\n    x[..., i]\n}\n")
    assert d.hint == "use gather(x, i, dim=-1)"
