"""Tests for nnspec.core.dims: symbolic dimensions and the conv/pool output-size formula."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnspec.core.dims import (CeilDiv, Dim, FloorDiv, as_dim, conv_formula, conv_out,
                               transposed_conv_out)

H = Dim.sym("H")
W = Dim.sym("W")
N = Dim.sym("N")
T = Dim.sym("T")


# --------------------------------------------------------------------------- constants


def test_const_basics():
    assert Dim.const(3) == 3
    assert 3 == Dim.const(3)
    assert Dim.const(3) != 4
    assert hash(Dim.const(3)) == hash(3)
    assert Dim.const(3) + 4 == 7
    assert 4 - Dim.const(3) == 1
    assert Dim.const(3) * Dim.const(5) == 15
    assert -Dim.const(3) == -3
    assert Dim.const(7).value == 7
    assert Dim.const(7).is_const
    assert Dim.const(0).symbols() == frozenset()
    assert as_dim(5) == Dim.const(5)
    assert as_dim(H) is H
    assert Dim.const(-2).is_positive_known() is False
    assert Dim.const(2).is_positive_known() is True
    assert H.is_positive_known() is None
    assert str(Dim.const(-4)) == "-4"
    assert repr(Dim.const(0)) == "Dim('0')"


def test_const_div():
    assert Dim.const(7).floordiv(2) == 3
    assert Dim.const(-7).floordiv(2) == -4
    assert Dim.const(7).ceildiv(2) == 4
    assert Dim.const(-7).ceildiv(2) == -3
    assert Dim.const(8).exact_div(4) == 2
    with pytest.raises(ValueError, match="7 is not divisible by 2"):
        Dim.const(7).exact_div(2)


def test_errors():
    with pytest.raises(ValueError):
        H.floordiv(0)
    with pytest.raises(ValueError):
        H.ceildiv(-2)
    with pytest.raises(ValueError):
        Dim.const(4).floordiv(0)
    with pytest.raises(ValueError, match="symbolic"):
        _ = H.value
    with pytest.raises(ValueError):
        Dim.sym("1x")
    with pytest.raises(ValueError):
        Dim.sym("floor")
    with pytest.raises(TypeError):
        as_dim("H")
    with pytest.raises(TypeError):
        as_dim(2.0)


# --------------------------------------------------------------------------- symbolic


def test_str_forms():
    assert str((H - 1).floordiv(2) + 1) == "floor((H - 1)/2) + 1"
    assert str(W.ceildiv(2)) == "ceil(W/2)"
    assert str(16 * H * W) == "16*H*W"
    assert str(2 * N) == "2*N"
    assert str(N * T) == "N*T"
    assert str(H - 1) == "H - 1"
    assert str(-H + 3) == "-H + 3"
    assert str(H * H + 2 * H - 3) == "H*H + 2*H - 3"
    assert str(N * T + H + 1) == "N*T + H + 1"
    assert repr(H + 1) == "Dim('H + 1')"


def test_floordiv_simplification():
    assert (2 * H + 2).floordiv(2) == H + 1
    assert str((2 * H + 2).floordiv(2)) == "H + 1"
    assert (2 * H + 1).floordiv(2) == H
    assert (2 * H - 1).floordiv(2) == H - 1
    assert (H + 3).floordiv(2) == (H + 1).floordiv(2) + 1
    assert (H + 1).floordiv(2) == (H - 1).floordiv(2) + 1
    assert (2 * H).floordiv(4) == H.floordiv(2)
    assert H.floordiv(2).floordiv(2) == H.floordiv(4)
    assert (H.floordiv(2) - 1).floordiv(3) == (H - 2).floordiv(6)
    assert H.floordiv(1) is H
    assert (H - 2).floordiv(2) + 1 == H.floordiv(2)
    assert (W - 2).ceildiv(2) + 1 == W.ceildiv(2)
    assert H.ceildiv(2).ceildiv(3) == H.ceildiv(6)
    assert (3 * H).floordiv(2) == H + H.floordiv(2)


def test_exact_div():
    assert (2 * H + 4).exact_div(2) == H + 2
    assert (6 * N * T).exact_div(3) == 2 * N * T
    with pytest.raises(ValueError, match=r"H \+ 1 is not divisible by 2"):
        (H + 1).exact_div(2)
    with pytest.raises(ValueError):
        H.exact_div(0)


def test_equal_built_differently():
    assert (H + 1) * (H - 1) == H * H - 1
    assert hash((H + 1) * (H - 1)) == hash(H * H - 1)
    assert H * W == W * H
    assert (H + W) - W == H
    assert ((H + W) - H - W) == 0
    assert 2 * (H - 1).floordiv(2) == (H - 1).floordiv(2) * 2
    a = (H * W + 3).floordiv(2)
    b = (W * H + 1).floordiv(2) + 1
    assert a == b and hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert H != W
    assert H != "H"


def test_symbols_subs_evaluate():
    e = (H * W - 1).floordiv(2) + N.ceildiv(3) + 4
    assert e.symbols() == frozenset({"H", "W", "N"})
    assert e.evaluate({"H": 3, "W": 5, "N": 7}) == (15 - 1) // 2 + 3 + 4
    assert e.subs({"H": 3, "W": 5, "N": 7}) == 14
    part = e.subs({"H": 2})
    assert part == (2 * W - 1).floordiv(2) + N.ceildiv(3) + 4
    assert part == W - 1 + N.ceildiv(3) + 4
    assert e.subs({"N": 3 * T}) == (H * W - 1).floordiv(2) + T + 4
    assert H.subs({"H": W + 1}) == W + 1
    with pytest.raises(ValueError, match="'W'"):
        e.evaluate({"H": 1, "N": 1})


def test_parse():
    assert Dim.parse("H") == H
    assert Dim.parse("16*H*W") == 16 * H * W
    assert Dim.parse("floor((H - 1)/2) + 1") == (H - 1).floordiv(2) + 1
    assert Dim.parse("ceil(W/2)") == W.ceildiv(2)
    assert Dim.parse("(H + 1) // 2") == (H + 1).floordiv(2)
    assert Dim.parse("H // 2 // 2") == H.floordiv(4)
    assert Dim.parse(" -H + 3 ") == 3 - H
    assert Dim.parse("2*(N - 1)*T") == 2 * N * T - 2 * T
    assert Dim.parse("42") == 42
    for bad in [
        "",
        "H +",
        "floor(H)",
        "floor(H/0)",
        "H // W",
        "(H",
        "H)",
        "3 $ 4",
        "H W",
        "ceil(H/-2)",
        "floor",
    ]:
        with pytest.raises(ValueError):
            Dim.parse(bad)


def test_immutable_helpers():
    e = (H - 1).floordiv(2) + 1
    assert copy.deepcopy(e) is e
    assert pickle.loads(pickle.dumps(e)) == e
    atom = next(iter(next(iter(H.floordiv(2).terms))))
    assert isinstance(atom, FloorDiv) and atom.k == 2 and atom.poly == H
    atom = next(iter(next(iter(H.ceildiv(3).terms))))
    assert isinstance(atom, CeilDiv)


# --------------------------------------------------------------------------- hypothesis

SYMS = ["H", "W", "N"]


@st.composite
def exprs(draw, depth=3):
    """(Dim, evaluator) pairs."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        if draw(st.booleans()):
            c = draw(st.integers(-6, 6))
            return Dim.const(c), (lambda env, c=c: c)
        s = draw(st.sampled_from(SYMS))
        return Dim.sym(s), (lambda env, s=s: env[s])
    op = draw(
        st.sampled_from(
            ["add", "sub", "mul", "neg", "floor", "ceil", "floor", "ceil", "cmul", "cadd"]
        )
    )
    a, fa = draw(exprs(depth=depth - 1))
    if op in ("floor", "ceil"):
        k = draw(st.integers(1, 5))
        if op == "floor":
            return a.floordiv(k), (lambda env: fa(env) // k)
        return a.ceildiv(k), (lambda env: -((-fa(env)) // k))
    if op == "neg":
        return -a, (lambda env: -fa(env))
    if op == "cmul":
        c = draw(st.integers(-4, 4))
        return c * a, (lambda env: c * fa(env))
    if op == "cadd":
        c = draw(st.integers(-9, 9))
        return a + c, (lambda env: fa(env) + c)
    b, fb = draw(exprs(depth=depth - 1))
    if op == "add":
        return a + b, (lambda env: fa(env) + fb(env))
    if op == "sub":
        return a - b, (lambda env: fa(env) - fb(env))
    return a * b, (lambda env: fa(env) * fb(env))


envs = st.fixed_dictionaries({s: st.integers(-20, 20) for s in SYMS})


@settings(max_examples=200, deadline=None)
@given(exprs(), st.lists(envs, min_size=1, max_size=4))
def test_hypothesis_semantics_and_roundtrip(pair, points):
    d, f = pair
    for env in points:
        assert d.evaluate(env) == f(env)
        assert d.subs(env) == f(env)
    text = str(d)
    back = Dim.parse(text)
    assert back == d, (text, str(back))
    assert hash(back) == hash(d)
    assert str(back) == text
    assert d.symbols() <= set(SYMS)


@settings(max_examples=80, deadline=None)
@given(exprs(), exprs(), envs)
def test_hypothesis_partial_subs(p1, p2, env):
    d, f = p1
    r, fr = p2
    # substitute H -> r (an expression in H, W, N), then evaluate
    sub = d.subs({"H": r})
    env2 = dict(env, H=fr(env))
    assert sub.evaluate(env) == f(env2)


# --------------------------------------------------------------------------- conv formula


def test_conv_hand_cases():
    assert conv_out(32, 5) == 28  # LeNet conv1
    assert conv_out(28, 2, 2) == 14  # LeNet pool
    assert conv_out(224, 11, 4, (2, 2)) == 55  # AlexNet conv1
    assert conv_out(55, 3, 2) == 27  # AlexNet maxpool
    assert conv_out(5, 7, 1, (0, 0)) == -1  # seed example
    assert conv_out(10, 3, 1, (0, 0), d=2) == 6  # dilation: ke = 5
    assert conv_out(7, 3, 1, (2, 2), d=2) == 7  # "same" dilated conv
    assert conv_out(5, 3, 1, (1, 2), d=2) == 4
    assert conv_out(8, 3, 2, 1) == 4  # int pad = symmetric


def test_conv_ceil_mode():
    assert conv_out(5, 2, 2, ceil=True) == 3  # floor mode would give 2
    assert conv_out(5, 2, 2) == 2
    # 4, k=3, s=2, p=1: ceil((4 + 2 - 3)/2) + 1 = 3; (3-1)*2 = 4 < 4 + 1 -> no correction
    assert conv_out(4, 3, 2, (1, 1), ceil=True) == 3
    # 5, k=2, s=2, p=1: ceil(5/2) + 1 = 4; (4-1)*2 = 6 >= 5 + 1 -> 3
    assert conv_out(5, 2, 2, (1, 1), ceil=True) == 3
    # 6, k=3, s=3, p=1: ceil(5/3)+1 = 3; (3-1)*3 = 6 >= 7? no -> 3
    assert conv_out(6, 3, 3, (1, 1), ceil=True) == 3


def test_transposed_conv():
    assert transposed_conv_out(4, 4, 2, (1, 1)) == 8
    assert transposed_conv_out(7, 3, 2, (1, 1), output_padding=1) == 14
    assert transposed_conv_out(H, 4, 2, (1, 1)) == 2 * H
    assert transposed_conv_out(5, 3, 1, (0, 0), d=2) == 9


def test_conv_formula_text():
    assert conv_formula(5, 7, 1, (0, 0)) == (
        "F_out = floor((F_in - k + 2p) / s) + 1 = floor((5 - 7 + 2*0) / 1) + 1 = -1"
    )
    assert conv_formula(5, 3, 1, (1, 2), d=2) == (
        "F_out = floor((F_in + p_before + p_after - d*(k - 1) - 1) / s) + 1"
        " = floor((5 + 1 + 2 - 2*(3 - 1) - 1) / 1) + 1 = 4"
    )
    assert conv_formula(5, 2, 2, (0, 0), ceil=True) == (
        "F_out = ceil((F_in - k + 2p) / s) + 1 = ceil((5 - 2 + 2*0) / 2) + 1 = 3"
    )
    txt = conv_formula(5, 2, 2, (1, 1), ceil=True)
    assert txt.startswith("F_out = ceil((F_in - k + 2p) / s) + 1 = ceil((5 - 2 + 2*1) / 2) + 1")
    assert "= 4 - 1 = 3" in txt
    assert conv_formula(H, 3, 2, (1, 1)) == (
        "F_out = floor((F_in - k + 2p) / s) + 1 = floor((H - 3 + 2*1) / 2) + 1"
        " = floor((H - 1)/2) + 1"
    )
    assert "floor(((H - 1) - 3 + 2*1) / 2) + 1 = floor(H/2)" in conv_formula(H - 1, 3, 2, 1)


def test_conv_symbolic():
    assert conv_out(H, 3, 1, (1, 1)) == H
    assert conv_out(H, 2, 2) == H.floordiv(2)
    assert str(conv_out(H, 3, 2, (1, 1))) == "floor((H - 1)/2) + 1"
    assert conv_out(H, 2, 2, ceil=True) == H.ceildiv(2)
    assert conv_out(conv_out(H, 2, 2), 2, 2) == H.floordiv(4)
    assert conv_out(2 * H, 2, 2) == H


def _brute_floor(n, k, s, b, a, d):
    ke = d * (k - 1) + 1
    return len(range(-b, n + a - ke + 1, s))


def test_conv_out_bruteforce_floor():
    for n in range(20):
        for k in range(1, 6):
            for s in range(1, 5):
                for d in range(1, 3):
                    for b in range(3):
                        for a in range(3):
                            got = conv_out(n, k, s, (b, a), d).value
                            assert max(got, 0) == _brute_floor(n, k, s, b, a, d)
                            sym = conv_out(H, k, s, (b, a), d)
                            assert sym.evaluate({"H": n}) == got


def test_conv_out_symbolic_ceil_consistent():
    for k in range(1, 6):
        for s in range(1, 5):
            for p in range(k // 2 + 1):
                sym = conv_out(H, k, s, (p, p), ceil=True)
                r = p - k  # p_after - ke
                decidable = r >= 0 or r + s - 1 < 0
                for n in range(max(1, k - 2 * p), 30):
                    c = conv_out(n, k, s, (p, p), ceil=True).value
                    v = sym.evaluate({"H": n})
                    if decidable:
                        assert v == c, (n, k, s, p)
                    else:
                        assert v in (c, c + 1), (n, k, s, p)


def test_conv_out_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for n in range(1, 12):
        x = torch.zeros(1, 1, n)
        for k in range(1, 6):
            for s in range(1, 5):
                for p in range(k // 2 + 1):
                    for d in (1, 2):
                        for ceil in (False, True):
                            ours = conv_out(n, k, s, (p, p), d, ceil=ceil).value
                            try:
                                y = F.max_pool1d(x, k, s, p, dilation=d, ceil_mode=ceil)
                            except RuntimeError:
                                assert ours < 1, (n, k, s, p, d, ceil)
                                continue
                            assert ours == y.shape[-1], (n, k, s, p, d, ceil)


def test_conv_validation():
    with pytest.raises(ValueError):
        conv_out(5, 0)
    with pytest.raises(ValueError):
        conv_out(5, 3, 0)
    with pytest.raises(ValueError):
        conv_out(5, 3, 1, (0, 0), d=0)
    with pytest.raises(TypeError):
        conv_out(5, 3, 1, (1, 2, 3))
