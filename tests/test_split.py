"""split and chunk: the pieces' shapes against torch.split / torch.chunk over many sizes,
located errors where torch would give another count of pieces (or fail only when run),
both backends and the emitted source against torch, and the reference backward against
autograd in float64 (a piece no layer reads gets zeros)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import nnspec
from nnspec.core.dims import Dim
from nnspec.layers import REGISTRY, ShapeError, TensorType

from _gradcheck import check_autograd, check_kind

torch = pytest.importorskip("torch")


def _pieces(kind: str, args: dict, shape: tuple) -> list[tuple]:
    k = REGISTRY[kind]
    out = k.infer(k.Params.model_validate(args), [TensorType(shape)])
    return [tuple(d.value for d in t.shape) for t in out.items]


def _diag(text: str):
    spec = nnspec.loads(text, "e.nn", strict=False)
    assert len(spec.diagnostics) == 1, spec.diagnostics
    return spec.diagnostics[0]


# ---- shapes against torch ---------------------------------------------------------------


def test_chunk_gives_torchs_pieces_or_refuses_another_count():
    accepted = refused = 0
    for size in range(1, 14):
        x = torch.zeros(2, size, 3)
        for n in range(2, 8):
            want = [tuple(t.shape) for t in torch.chunk(x, n, dim=1)]
            if len(want) == n:
                assert _pieces("chunk", {"chunks": n}, (2, size, 3)) == want
                accepted += 1
            else:
                with pytest.raises(ShapeError) as e:
                    _pieces("chunk", {"chunks": n}, (2, size, 3))
                assert e.value.arg == "chunks" and e.value.code == "E376"
                assert f"into {len(want)} piece" in e.value.message or len(want) == 0
                refused += 1
    assert accepted > 20 and refused > 20  # both sides of the rule were exercised


def test_chunk_of_an_uneven_axis_has_a_smaller_last_piece_as_torch():
    assert _pieces("chunk", {"chunks": 2, "dim": -1}, (4, 5)) == [(4, 3), (4, 2)]
    assert _pieces("chunk", {"chunks": 3, "dim": 0}, (7,)) == [(3,), (3,), (1,)]


def test_split_with_one_size_gives_torchs_pieces_when_it_divides():
    for size in range(1, 13):
        x = torch.zeros(size, 2)
        for k in range(1, 7):
            want = [tuple(t.shape) for t in torch.split(x, k, dim=0)]
            if size % k == 0 and size // k >= 2:
                assert _pieces("split", {"sizes": k, "dim": 0}, (size, 2)) == want
            else:
                with pytest.raises(ShapeError) as e:
                    _pieces("split", {"sizes": k, "dim": 0}, (size, 2))
                assert e.value.arg == "sizes" and e.value.code == "E376"


@pytest.mark.parametrize("sizes, dim", [((2, 3, 1), 1), ((5, 1), -1), ((1, 1, 1, 3), 1),
                                        ((4, 2), 2)])
def test_split_with_sizes_gives_torchs_pieces(sizes, dim):
    shape = (2, 6, 6)
    want = [tuple(t.shape) for t in torch.split(torch.zeros(shape), list(sizes), dim=dim)]
    assert _pieces("split", {"sizes": sizes, "dim": dim}, shape) == want


def test_the_default_axis_is_concats():
    assert _pieces("split", {"sizes": (1, 2)}, (4, 3, 5)) == [(4, 1, 5), (4, 2, 5)]
    assert _pieces("chunk", {"chunks": 3}, (4, 3, 5)) == [(4, 1, 5)] * 3


def test_a_symbolic_axis_chunks_when_the_count_divides_every_term():
    spec = nnspec.loads("model M(x: [N, T, 3*D + 6]) {\n"
                        "    q, k, v = x | chunk 3 dim=-1\n    return q, v\n}\n", "m.nn")
    assert str(spec.output_type()) == "([N, T, D + 2], [N, T, D + 2])"
    spec = nnspec.loads("model M(x: [N, T, 4]) {\n    a, b = x | split (3, 1) dim=-1\n"
                        "    return b\n}\n", "m.nn")
    assert str(spec.output_type()) == "[N, T, 1]"  # a concrete axis beside symbolic ones


# ---- located errors ---------------------------------------------------------------------


@pytest.mark.parametrize("decl, line, code, message, at", [
    ("x: [N, 5, 8]", "a, b, c, d = x | chunk 4", "E376",
     "chunk 4: dim 1 of [N, 5, 8] is 5, which torch.chunk splits into 3 pieces of at most 2, "
     "not 4", "4"),
    ("x: [N, 2, 8]", "a, b, c = x | chunk 3", "E376",
     "chunk 3: dim 1 of [N, 2, 8] is 2, which torch.chunk splits into 2 pieces of at most 1, "
     "not 3", "3"),
    ("x: [N, T, 8]", "a, b = x | chunk 2 dim=1", "E377",
     "chunk 2: dim 1 of [N, T, 8] is T, which is not a multiple of 2 for every value of T",
     "2 dim"),
    ("x: [N, 5, 96]", "a, b = x | split (64, 30) dim=-1", "E376",
     "split sizes (64, 30) sum to 94, but dim -1 of [N, 5, 96] is 96", "(64"),
    ("x: [N, C, 4]", "a, b = x | split (2, 2)", "E376",
     "split sizes (2, 2) sum to 4, but dim 1 of [N, C, 4] is C (symbolic: split needs it "
     "concrete)", "(2"),
    ("x: [N, 5, 8]", "a, b = x | split 2", "E376",
     "split 2: dim 1 of [N, 5, 8] is 5, not a multiple of 2 (torch would give a last piece "
     "of 1)", "2"),
    ("x: [N, T, 8]", "a, b = x | split 2", "E377",
     "split 2: dim 1 of [N, T, 8] is T, so the count of pieces depends on T", "2"),
    ("x: [N, 5, 8]", "a, b = x | split 5", "E376",
     "split 5 of 5 gives one piece, the input itself", "5"),
    ("x: [N, 5, 8]", "a, b = x | split (5,)", "E376",
     "split (5,) gives one piece, the input itself", "(5"),
    ("x: [N, 5, 8]", "a, b = x | chunk 2 dim=3", "E360",
     "chunk: dim 3 is out of range for a rank-3 input [N, 5, 8] (axes -3 to 2)", "dim=3"),
    ("x: [N, 5, 8]", "a, b = x | split 1 dim=-1 | relu", "E300",
     "line 2: split 1 dim=-1 returns 8 values; name them before use", "relu"),
])
def test_errors_are_located(decl, line, code, message, at):
    d = _diag(f"model M({decl}) {{\n    {line}\n    return a\n}}")
    assert (d.code, d.message) == (code, message)
    assert d.span.line == 2 and d.span.col == 5 + line.index(at, line.index("|"))


@pytest.mark.parametrize("line, fragment", [
    ("chunk 1", "invalid chunks for chunk: chunk gives two or more pieces, not 1"),
    ("split (0, 5)", "invalid sizes for split: a piece size must be >= 1, got 0"),
    ("split -2", "invalid sizes for split: a piece size must be >= 1, got -2"),
    ("split [T, 2]", "split sizes must be integers, not the symbol T"),
    ("split 2.5", "invalid sizes for split: split takes a size or a tuple of sizes, not 2.5"),
    ("split (2, x)", "invalid sizes for split: split sizes must be integers, not a tensor"),
    ("chunk 2 dims=1", "unknown"),
])
def test_bad_arguments_are_refused(line, fragment):
    d = _diag(f"model M(x: [N, 4, 8]) {{\n    a, b = x | {line}\n    return a\n}}")
    assert fragment in d.message
    assert d.span.line == 2


def test_a_huge_count_of_pieces_is_refused_before_it_is_built():
    d = _diag("model M(x: [N, 4, 100000]) {\n    a, b = x | split 1 dim=-1\n    return a\n}")
    assert d.code == "E376" and "100000 pieces" in d.message
    k = REGISTRY["chunk"]
    with pytest.raises(ShapeError, match="pieces, more than"):
        k.infer(k.Params(chunks=10**15), [TensorType((2, Dim.parse("D") * 10**15))])


# ---- both backends, the emitted source -------------------------------------------------

SPLITS = """
model M(x: [N, 6, 12], t: [N, 5] int) {
    q, k, v = x | chunk 3 dim=-1
    a, b = x | split (8, 4) dim=-1
    c, d = x | chunk 2
    e, f, g = x | split 2
    i, j = t | split (3, 2) axis=1
    u = concat((q * k), v, b, dim=-1) | dense 3
    w = concat(e, g, dim=1)
    return u, a, w, (c - d), i
}
"""


def _inputs(n: int = 2):
    rng = np.random.default_rng(0)
    return [rng.standard_normal((n, 6, 12)), rng.integers(0, 9, size=(n, 5))]


def test_both_backends_agree_with_torch_split_and_chunk():
    from nnspec.backends.numpy import NumpyModel
    from nnspec.backends.torch import build_module

    spec = nnspec.loads(SPLITS, "s.nn")
    x, t = _inputs()
    mod = build_module(spec, seed=0, dtype=torch.float64).eval()
    ref = NumpyModel(spec, params={k: v.numpy() for k, v in mod.state_dict().items()},
                     dtype=np.float64)
    got = ref(x, t)
    with torch.no_grad():
        out = mod(torch.from_numpy(x), torch.from_numpy(t))
    tx = torch.from_numpy(x)
    q, k, v = torch.chunk(tx, 3, dim=-1)
    a, b = torch.split(tx, [8, 4], dim=-1)
    c, d = torch.chunk(tx, 2, dim=1)
    e, _, g = torch.split(tx, 2, dim=1)
    i, _ = torch.split(torch.from_numpy(t), [3, 2], dim=1)
    lin = mod.dense_0
    with torch.no_grad():
        u = lin(torch.cat((q * k, v, b), dim=-1))
    want = [u, a, torch.cat((e, g), dim=1), c - d, i]
    for mine, theirs, exp in zip(got, out, want):
        np.testing.assert_allclose(mine, exp.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(theirs.numpy(), exp.numpy(), rtol=0, atol=0)
    assert got[4].dtype.kind == "i"


def test_a_symbolic_axis_runs_at_the_bound_sizes():
    from nnspec.backends.numpy import NumpyModel
    from nnspec.backends.torch import build_module

    spec = nnspec.loads("model M(x: [N, T, 3*D]) {\n    q, k, v = x | chunk 3 dim=-1\n"
                        "    return (q * k), v\n}\n", "m.nn")
    x = np.random.default_rng(1).standard_normal((2, 3, 12))
    got = NumpyModel(spec, dtype=np.float64)(x)
    with torch.no_grad():
        out = build_module(spec, dtype=torch.float64)(torch.from_numpy(x))
    q, k, v = torch.chunk(torch.from_numpy(x), 3, dim=-1)
    for mine, theirs, exp in zip(got, out, ((q * k), v)):
        assert mine.shape == (2, 3, 4)
        np.testing.assert_allclose(mine, exp.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(theirs.numpy(), exp.numpy(), rtol=0, atol=0)


def test_the_emitted_source_runs_and_matches_build_module(tmp_path):
    from nnspec.backends.torch import build_module
    from nnspec.backends.emit import emit_source

    from _util import import_source

    spec = nnspec.loads(SPLITS, "s.nn")
    src = emit_source(spec)
    assert "torch.chunk(x, 3, dim=-1)" in src
    assert "torch.split(x, (8, 4), dim=-1)" in src
    assert "torch.split(t, (3, 2), dim=1)" in src
    file = tmp_path / "gen_split.py"
    file.write_text(src)
    net = import_source(file, "gen_split").M()
    ref = build_module(spec, seed=0, dtype=torch.float64).eval()
    assert list(net.state_dict()) == list(ref.state_dict())
    net.load_state_dict(ref.state_dict(), assign=True)
    net.eval()
    xs = [torch.from_numpy(a) for a in _inputs(3)]
    with torch.no_grad():
        for mine, theirs in zip(net(*xs), ref(*xs)):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


def test_ir_json_round_trip_keeps_the_sizes():
    spec = nnspec.loads(SPLITS, "s.nn")
    again = nnspec.from_ir(json.dumps(json.loads(spec.program.to_json())))
    assert str(again.output_type()) == str(spec.output_type())
    sizes = [r.node.p.sizes for r in again.layers() if r.kind == "split"]
    assert sizes == [(8, 4), 2, (3, 2)]


def test_check_never_imports_torch_or_numpy():
    code = ("import sys, nnspec\n"
            f"nnspec.loads({SPLITS!r}, 's.nn')\n"
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, "
            "sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy'))\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- the reference backward -------------------------------------------------------------


def test_backward_matches_autograd_with_pieces_unused_and_reused():
    spec = nnspec.loads(SPLITS, "s.nn")
    got = check_autograd(spec, _inputs())
    assert got.inputs[1] is None  # the int input
    # b is never read: its half of x gets zeros, as torch gives it
    spec = nnspec.loads("model M(x: [N, 3, 4]) {\n    a, b = x | chunk 2 dim=-1\n"
                        "    return (a * a)\n}\n", "m.nn")
    x = np.random.default_rng(2).standard_normal((2, 3, 4))
    got = check_autograd(spec, [x])
    assert not got.inputs[0][..., 2:].any() and got.inputs[0][..., :2].all()


def test_backward_of_an_unread_piece_is_zeros():
    k = REGISTRY["chunk"]
    p = k.Params(chunks=2, dim=1)
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    y = k.numpy(p, {}, [x], None)
    g = np.ones_like(y[1])
    (gx,), gw = k.backward(p, {}, [x], y, (None, g), None)
    tx = torch.from_numpy(x).requires_grad_()
    torch.chunk(tx, 2, dim=1)[1].sum().backward()
    np.testing.assert_array_equal(gx, tx.grad.numpy())
    assert gw == {} and not gx[:, :3].any()


@pytest.mark.parametrize("kind, args, shape", [
    ("chunk", {"chunks": 4, "dim": -2}, (2, 7, 3)),
    ("split", {"sizes": (1, 4, 2), "dim": 1}, (3, 7)),
    ("split", {"sizes": 3, "dim": 0}, (6, 2)),
])
def test_backward_matches_finite_differences(kind, args, shape):
    check_kind(REGISTRY[kind], args, [TensorType(shape)])
