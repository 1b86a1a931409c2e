"""Differential test over random tensor-operation chains and broadcasting (hypothesis).

Random chains of transpose / permute / reductions (with and without keepdim) / subscripts /
matmul, and element-wise arithmetic of two inputs of random shapes, written as specs: when
nnspec accepts one, every inferred shape must equal the shape PyTorch produces for the same
operations written with torch's own functions, and the NumPy interpreter must agree with
PyTorch; when nnspec rejects one, PyTorch must fail too (broadcasting is NumPy's rule in
both).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import nnspec

torch = pytest.importorskip("torch")
from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module  # noqa: E402


@st.composite
def op(draw, rank: int):
    """(nnspec stage, torch function of a tensor, the rank after it)."""
    kind = draw(st.sampled_from(["transpose", "permute", "reduce", "index", "slice",
                                 "matmul", "scalar"]))
    if kind == "transpose" and rank >= 2:
        a, b = draw(st.integers(-rank, rank - 1)), draw(st.integers(-rank, rank - 1))
        return f"transpose {a} {b}", lambda t: t.transpose(a, b), rank
    if kind == "permute" and rank >= 2:
        perm = draw(st.permutations(range(rank)))
        return (f"permute ({', '.join(map(str, perm))})", lambda t: t.permute(*perm), rank)
    if kind == "reduce" and rank >= 2:
        fn = draw(st.sampled_from(["mean", "sum", "amax", "amin"]))
        dim = draw(st.integers(-rank, rank - 1))
        keep = draw(st.booleans())
        text = f"{fn} dim={dim}" + (" keepdim" if keep else "")
        return text, lambda t: getattr(torch, fn)(t, dim=dim, keepdim=keep), \
            rank if keep else rank - 1
    if kind == "index" and rank >= 2:
        ax = draw(st.integers(0, rank - 1))
        i = draw(st.integers(-3, 2))  # may be out of range: both must refuse it
        sub = [":"] * ax + [str(i)]
        return f"[{', '.join(sub)}]", lambda t: t[(slice(None),) * ax + (i,)], rank - 1
    if kind == "slice":
        start = draw(st.one_of(st.none(), st.integers(-3, 3)))
        stop = draw(st.one_of(st.none(), st.integers(-3, 4)))
        step = draw(st.one_of(st.none(), st.integers(1, 2)))
        text = ":".join("" if v is None else str(v) for v in (start, stop)) + (
            "" if step is None else f":{step}")
        return f"[..., {text}]", lambda t: t[..., slice(start, stop, step)], rank
    if kind == "matmul" and rank >= 2:  # x @ xᵀ over the last two axes
        return "matmul_self", lambda t: torch.matmul(t, t.transpose(-2, -1)), rank
    c = draw(st.sampled_from(["0.5", "2", "3"]))
    return f"scale {c}", lambda t: t * float(c), rank


@st.composite
def chain(draw):
    rank = draw(st.integers(2, 4))
    shape = [draw(st.integers(1, 4)) for _ in range(rank)]
    steps = []
    for _ in range(draw(st.integers(1, 4))):
        if rank < 1:
            break
        text, fn, rank = draw(op(rank))
        steps.append((text, fn))
    return shape, steps


def _spec_of(shape, steps) -> str:
    lines, prev = [], "x"
    for i, (text, _) in enumerate(steps):
        name = f"v{i}"
        if text.startswith("["):
            lines.append(f"{name} = {prev}{text}")
        elif text == "matmul_self":
            lines.append(f"t{i} = {prev} | transpose -2 -1")
            lines.append(f"{name} = matmul({prev}, t{i})")
        elif text.startswith("scale"):
            lines.append(f"{name} = ({prev} * {text.split()[1]})")
        else:
            lines.append(f"{name} = {prev} | {text}")
        prev = name
    body = "\n".join(f"    {ln}" for ln in lines + [f"return {prev}"])
    return f"model R(x: [{', '.join(map(str, shape))}]) {{\n{body}\n}}\n"


def _check(spec, xs, want_fn):
    """nnspec's verdict, shapes and values against torch's own."""
    try:
        with torch.no_grad():
            want = want_fn(*[torch.from_numpy(x) for x in xs])
    except (RuntimeError, IndexError, ValueError):
        want = None
    event("rejected" if not spec.ok else "accepted")
    if not spec.ok:
        assert all(d.code.startswith("E3") for d in spec.diagnostics), spec.diagnostics
        assert want is None, "nnspec refused what torch runs"
        return
    assert want is not None, "torch refused what nnspec accepted"
    assert tuple(int(d) for d in spec.output_type().dims_text()) == tuple(want.shape)
    mod = build_module(spec, seed=0, dtype=torch.float64)
    with torch.no_grad():
        got = mod(*[torch.from_numpy(x) for x in xs])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    ours = NumpyModel(spec, dtype=np.float64)(*xs)
    np.testing.assert_allclose(ours, want.numpy(), rtol=1e-10, atol=1e-12)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain())
def test_tensor_op_chains_match_torch(case):
    shape, steps = case
    spec = nnspec.loads(_spec_of(shape, steps), "ops.nn", strict=False)
    x = np.random.default_rng(0).standard_normal(shape)

    def want(t):
        for _, fn in steps:
            t = fn(t)
            if 0 in t.shape:  # nnspec refuses an empty tensor where torch makes one
                raise ValueError("empty")
        return t

    _check(spec, [x], want)


@st.composite
def two_shapes(draw):
    """Shapes that broadcast or not: each dim of b is a's, 1, or another size."""
    a = [draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 4)))]
    b = [draw(st.sampled_from([d, 1, d + 1])) for d in a[draw(st.integers(0, len(a) - 1)):]]
    if draw(st.booleans()):
        b = [draw(st.integers(1, 3))] + b  # b of the higher rank
    return (a, b) if draw(st.booleans()) else (b, a)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(two_shapes(), st.sampled_from(["+", "-", "*", "/"]))
def test_broadcasting_is_numpys_rule(shapes, sym):
    a, b = shapes
    text = (f"model R(a: [{', '.join(map(str, a))}], b: [{', '.join(map(str, b))}]) {{\n"
            f"    (a {sym} b)\n}}\n")
    spec = nnspec.loads(text, "bcast.nn", strict=False)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal(a), rng.uniform(0.5, 2.0, b)]
    fns = {"+": torch.add, "-": torch.sub, "*": torch.mul, "/": torch.div}
    _check(spec, xs, fns[sym])
    if not spec.ok:
        # the error names the dims that do not broadcast
        assert any(d.code == "E363" for d in spec.diagnostics), spec.diagnostics
