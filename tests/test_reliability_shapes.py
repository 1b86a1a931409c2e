"""Symbolic shapes exactly torch's, pooling rules exactly torch's, and crosscheck correctness:
ceil-mode pooling, padding bounds, per-layer shape checks, fully masked attention rows,
near-zero tolerance, bound-dim rules and the memory estimate."""

from __future__ import annotations

import time

import numpy as np
import pytest

import nnspec
from nnspec.tools import cli
from nnspec.core.dims import formula as D
from nnspec.tools.crosscheck import _errors, bind_dims, estimate_memory
from nnspec.core.dims import Dim
from nnspec.backends.weights import TooLarge
from nnspec.layers import REGISTRY, TensorType

torch = pytest.importorskip("torch")
F = torch.nn.functional
from nnspec.tools.crosscheck import crosscheck  # noqa: E402

H, W = Dim.sym("H"), Dim.sym("W")


def _infer(kind: str, args: dict, shape) -> TensorType:
    k = REGISTRY[kind]
    return k.infer(k.Params(**args), [TensorType(shape)])


# ---- ceil-mode pooling: symbolic == concrete == torch -----------------------------------


def _torch_size(fn, *args, **kwargs):
    try:
        return tuple(fn(*args, **kwargs).shape)
    except RuntimeError:
        return None


def test_pool1d_symbolic_equals_concrete_equals_torch_on_a_grid():
    checked = 0
    for mode in ("max", "avg"):
        for k in range(1, 5):
            for s in range(1, 5):
                for p in range(k // 2 + 1):
                    for d in ((1, 2, 3) if mode == "max" else (1,)):
                        for ceil in (False, True):
                            args = {"k": k, "s": s, "p": p, "ceil": ceil}
                            if mode == "max":
                                args["d"] = d
                            sym = _infer(f"{mode}pool1d", args, (1, 1, H)).shape[2]
                            for n in range(1, 17):
                                x = torch.zeros(1, 1, n)
                                if mode == "max":
                                    want = _torch_size(F.max_pool1d, x, k, s, p,
                                                       dilation=d, ceil_mode=ceil)
                                else:
                                    want = _torch_size(F.avg_pool1d, x, k, s, p,
                                                       ceil_mode=ceil)
                                v = sym.evaluate({"H": n})
                                if want is None:
                                    assert v < 1, (mode, k, s, p, d, ceil, n)
                                    continue
                                assert v == want[-1], (mode, k, s, p, d, ceil, n, str(sym))
                                conc = _infer(f"{mode}pool1d", args, (1, 1, n)).shape[2]
                                assert conc == want[-1]
                                checked += 1
    assert checked > 2000


def test_pool2d_symbolic_equals_torch_per_axis():
    for mode in ("max", "avg"):
        for (kh, kw) in ((1, 2), (3, 1), (2, 3)):
            for (sh, sw) in ((2, 3), (3, 2)):
                for (ph, pw) in ((0, 0), (kh // 2, kw // 2)):
                    args = {"k": (kh, kw), "s": (sh, sw), "p": (ph, pw), "ceil": True}
                    if mode == "max":
                        args["d"] = (1, 2)
                    out = _infer(f"{mode}pool2d", args, (2, 3, H, W)).shape
                    for h in range(3, 11):
                        for w in range(5, 11):
                            x = torch.zeros(2, 3, h, w)
                            if mode == "max":
                                y = F.max_pool2d(x, (kh, kw), (sh, sw), (ph, pw),
                                                 dilation=(1, 2), ceil_mode=True)
                            else:
                                y = F.avg_pool2d(x, (kh, kw), (sh, sw), (ph, pw),
                                                 ceil_mode=True)
                            got = tuple(d.evaluate({"H": h, "W": w}) for d in out)
                            assert got == tuple(y.shape), (mode, args, h, w)


def test_ceil_pool_of_the_issue():
    # maxpool k=1 s=2 ceil on H = 10: torch gives 5 (ceil((H - 1)/2) + 1 would give 6)
    out = _infer("maxpool", {"k": 1, "s": 2, "ceil": True}, (1, 3, H, W)).shape
    assert str(out[2]) == "floor((H - 1)/2) + 1"
    assert out[2].evaluate({"H": 10}) == 5 == F.max_pool2d(
        torch.zeros(1, 3, 10, 10), 1, 2, ceil_mode=True).shape[2]
    assert D.conv_formula(H, 1, 2, 0, ceil=True).endswith(
        "= floor((H + 0 - 1) / 2) + 1 = floor((H - 1)/2) + 1 (the windows that start inside "
        "the input or the left padding)")


# ---- reproducers (symbolic shapes that differed from torch at their dims) ----------------

SHAPE_CASES = [
    ("model R(x: [N, 1, H, 4]) {\n    maxpool k=1 s=3 ceil\n}\n", {"N": 1, "H": 11}),
    ("model R(x: [N, 4, L]) -> [N, 4] {\n    v1 = x | maxpool k=1 s=2 d=2 ceil\n"
     "    v2 = v1 | batchnorm eps=0.001\n    maxpool global   : [N, 4, 1]\n    flatten\n"
     "    v5 = batchnorm1d   : [N, 4]\n}\n", {"N": 1, "L": 10}),
    ("model R(x: [N, 2, L]) {\n    v1 = x | conv1d 4 k=3 s=1 as enc0\n"
     "    v2 = maxpool1d k=3 s=3 p=1\n"
     "    v3 = v2 | conv1d 6 k=1 s=2 p=valid groups=2 bias=false\n"
     "    v4 = v3 | avgpool k=2 s=3 p=1 ceil count_include_pad=false\n"
     "    v5 = v4 | maxpool global\n    flatten\n    dense 2\n}\n", {"N": 2, "L": 7}),
    ("model R(x: [N, 1, H, W]) {\n    v1 = x | conv2d 6 k=(1, 2) s=(2, 3) p=((0, 0), (2, 1))\n"
     "    v2 = v1 | conv 3 k=2 s=2 p=((0, 2), (2, 0)) groups=3 as conv0\n"
     "    v3 = v2 | conv2d 2 k=(3, 2) s=(2, 1) p=2 d=(1, 2)\n"
     "    v5 = v3 | maxpool k=1 s=2 d=2 ceil\n    v6 = v5 | batchnorm affine=false\n}\n",
     {"N": 2, "H": 6, "W": 5}),
    ("model R(x: [N, 1, 4, W]) {\n    v1 = x | avgpool2d 2 s=3 p=1 ceil\n"
     "    v2 = v1 | conv 1 k=1\n    v3 = concat(v1, v2, dim=-3)\n}\n", {"N": 3, "W": 10}),
]


def _old_conv_out(real):
    """The ceil-mode rule before the fix: the plain ceil form where the correction
    depends on F mod s."""
    def conv_out(f, k, s, before, after, d, ceil):
        out, note = real(f, k, s, before, after, d, ceil)
        if note == "starts":
            return (f + (before + after - d * (k - 1) - 1)).ceildiv(s) + 1, None
        return out, note
    return conv_out


@pytest.mark.parametrize("text,dims", SHAPE_CASES)
def test_shape_reproducers_agree_with_torch_and_crosscheck_checks_shapes(text, dims,
                                                                         monkeypatch):
    spec = nnspec.loads(text)
    report = crosscheck(spec, "R", "float64", dims=dims)
    assert report.ok, report.render()
    assert all(r.expected == r.shape_torch == r.shape_numpy for r in report.rows)
    # with the old symbolic rule, crosscheck must catch the shape (the outputs agree)
    monkeypatch.setattr(D, "_conv_out", _old_conv_out(D._conv_out))
    spec = nnspec.loads(text)
    report = crosscheck(spec, "R", "float64", dims=dims)
    bad = report.first_divergence
    assert bad is not None and not bad.shape_ok and "pool" in bad.kind
    assert bad.shape_torch == bad.shape_numpy != bad.expected
    assert f"FAILED: first shape mismatch at {bad.name} [{bad.kind}]" in report.render()


# ---- pooling rules ------------------------------------------------------------------------


def test_pool_padding_past_torchs_rule_is_lowered_with_an_explicit_pad():
    """PyTorch's pooling refuses p > k // 2 (the kernel as written, whatever the dilation);
    nnspec takes it and lowers it as F.pad (-inf) and the pool with padding 0."""
    from nnspec.backends.torch import build_module

    spec = nnspec.loads("model M(x: [N, 1, 8]) {\n    maxpool k=3 p=2 d=2\n}\n", path="r10.nn")
    assert str(spec.output_type()) == "[N, 1, 3]"
    x = torch.randn(2, 1, 8, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="at most half of kernel size"):
        F.max_pool1d(x, 3, 3, 2, dilation=2)
    want = F.max_pool1d(F.pad(x, (2, 2), value=-np.inf), 3, 3, 0, dilation=2)
    got = build_module(spec, dtype=torch.float64)(x)
    assert torch.equal(got, want)
    assert crosscheck(spec, "M", "float64").ok
    for kind in ("maxpool2d", "avgpool2d"):
        assert str(_infer(kind, {"k": (3, 5), "p": (1, 3)}, (1, 1, 8, 8))) == "[1, 1, 3, 2]"


def test_window_wholly_in_padding_is_minus_inf_in_both_backends():
    spec = nnspec.loads("model M(x: [N, 1, 1, 4]) {\n    maxpool k=2 p=1 d=2\n}\n")
    x = torch.randn(2, 1, 1, 4, dtype=torch.float64)
    y = F.max_pool2d(x, 2, 2, 1, dilation=2)
    assert torch.isinf(y).all() and (y < 0).all()
    report = crosscheck(spec, "M", "float64")
    assert report.ok and report.rows[0].max_abs == 0.0


# ---- attention: a fully masked key-padding row --------------------------------------------


def _masked_attention(text):
    from nnspec.backends.numpy import NumpyModel
    from nnspec.backends.torch import build_module

    spec = nnspec.loads(text)
    mod = build_module(spec, "M", seed=1, dtype=torch.float64)
    with torch.no_grad():
        mod.attention_0.out_proj.bias.copy_(torch.tensor([0.5, -1.0, 2.0, 0.25]))
    ref = NumpyModel(spec, "M", params={k: v.numpy().copy() for k, v in
                                        mod.state_dict().items()}, dtype="float64")
    return spec, mod, ref


@pytest.mark.parametrize("extra", ["", " causal"])
def test_fully_masked_row_gives_the_output_bias_in_every_mode(extra):
    text = f"model M(x: [N, 3, 4], m: [N, 3] int) {{\n    attention heads=2 mask=m{extra}\n}}\n"
    spec, mod, ref = _masked_attention(text)
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    m = np.array([[1, 1, 1], [1, 0, 0]])  # batch 0 fully masked; with causal, (1, 0) too
    want = ref(x, m)
    bias = mod.attention_0.out_proj.bias.detach().numpy()
    np.testing.assert_allclose(want[0], np.broadcast_to(bias, (3, 4)), rtol=0, atol=1e-15)
    if extra:
        np.testing.assert_allclose(want[1, 0], bias, rtol=0, atol=1e-15)
    assert np.isfinite(want).all()
    xt, mt = torch.from_numpy(x), torch.from_numpy(m)
    for train in (False, True):
        mod.train(train)
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                got = mod(xt, mt)
            np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12, atol=1e-14,
                                       err_msg=f"train={train} grad={grad}")
    mod.train(True)
    xg = xt.clone().requires_grad_()
    mod(xg, mt).sum().backward()
    assert torch.isfinite(xg.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in mod.parameters())


def test_fully_masked_row_in_the_emitted_source(tmp_path):
    from _util import import_source

    from nnspec.backends.torch import emit_source

    text = "model M(x: [N, 3, 4], m: [N, 3] int) {\n    attention heads=2 mask=m\n}\n"
    spec, mod, ref = _masked_attention(text)
    path = tmp_path / "masked.py"
    path.write_text(emit_source(spec, "M"))
    emitted = import_source(path, "masked").M().double().eval()
    emitted.load_state_dict(mod.state_dict())
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    m = torch.tensor([[1, 1, 1], [0, 1, 0]])
    with torch.no_grad():
        got = emitted(x, m)
    np.testing.assert_allclose(got.numpy(), ref(x.numpy(), m.numpy()), rtol=1e-12, atol=1e-14)


# ---- the tolerance --------------------------------------------------------------------------


def test_near_zero_noise_is_measured_against_the_layers_scale():
    # layernorm of a constant row: both backends give rounding noise around 0
    spec = nnspec.loads("model M(x: [1, 135]) {\n    softmax 0 | sigmoid | layernorm\n}\n")
    report = crosscheck(spec, "M", "float64")
    assert report.ok, report.render()
    noise = np.full(5, 3e-14)
    assert _errors(noise, -noise, scale=0.73)[1] < 1e-12
    assert _errors(noise, -noise)[1] == pytest.approx(2.0)  # no scale: relative to itself
    assert _errors(np.array([1.0, 2.0]), np.array([1.0, 2.1]), 1.0)[1] == pytest.approx(0.1 / 2.1)
    inf = np.array([-np.inf, np.nan, 1.0])
    assert _errors(inf, inf.copy()) == (0.0, 0.0)
    assert _errors(inf, np.array([np.inf, np.nan, 1.0]))[1] == float("inf")


# ---- argument domains -----------------------------------------------------------------------


@pytest.mark.parametrize("line,col,msg", [
    ("leaky_relu 1e309", 16, "invalid slope for leaky_relu: must be a finite number, not inf"),
    ("layernorm eps=-1e-5", 15, "invalid eps for layernorm: must be > 0"),
    ("batchnorm eps=-0.5", 15, "invalid eps for batchnorm: must be > 0"),
])
def test_float_arguments_out_of_their_domain_are_located_errors(line, col, msg):
    spec = nnspec.loads(f"model M(x: [N, 4]) {{\n    {line}\n}}\n", strict=False)
    (d,) = spec.diagnostics
    assert (d.code, d.span.line, d.span.col) == ("E046", 2, col)
    assert d.message.startswith(msg)


def test_nan_eps_is_refused_by_the_schema():
    from pydantic import ValidationError

    for kind in ("batchnorm", "layernorm", "dropout"):
        field = "p" if kind == "dropout" else "eps"
        with pytest.raises(ValidationError, match="finite number|must be"):
            REGISTRY[kind].Params(**{field: float("nan")})


# ---- ordinary crosscheck paths --------------------------------------------------------------


def _cli(capsys, *argv):
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_bound_dims_rerun_the_static_rules(tmp_path, capsys):
    p = tmp_path / "pos.nn"
    p.write_text("model M(x: [N, T, 8]) {\n    positional learned max_len=16\n"
                 "    reshape [N, T, 2, 4] : [N, T, 2, 4]\n}\n")
    rc, out, err = _cli(capsys, "crosscheck", str(p), "--dim", "T=2000")
    assert rc == 1 and "internal error" not in err
    assert f"{p}:2:24: error: the sequence has 2000 positions, more than max_len=16" in err
    assert "with the dims bound for crosscheck: N=2, T=2000" in err
    rc, out, err = _cli(capsys, "crosscheck", str(p), "--dim", "T=5")
    assert rc == 0 and "ok: both backends agree" in out
    rc, out, err = _cli(capsys, "crosscheck", str(p), "--dim", "Q=3")
    assert rc == 2
    assert "--dim Q: model M has no dim Q (symbols: N, T)" in err


def test_huge_dims_are_refused_fast_with_the_estimate(tmp_path, capsys):
    p = tmp_path / "big.nn"
    p.write_text("model M(x: [N, 1000000000000]) {\n    relu\n}\n")
    t0 = time.perf_counter()
    rc, out, err = _cli(capsys, "crosscheck", str(p))
    assert rc == 1
    assert "needs about 96,000,000,000,000 bytes" in err and "refusing to allocate" in err
    q = tmp_path / "small.nn"
    q.write_text("model M(x: [N, 4]) {\n    relu\n}\n")
    rc, out, err = _cli(capsys, "crosscheck", str(q), "--dim", f"N={2**64}")
    assert rc == 1 and f"the dim N={2**64} is beyond int64" in err
    rc, out, err = _cli(capsys, "crosscheck", str(q), "--dim", "N=" + "9" * 5000)
    assert rc == 2 and "beyond int64" in err
    assert time.perf_counter() - t0 < 5


def test_memory_estimate_and_limit():
    spec = nnspec.loads("model M(x: [N, 4]) {\n    relu\n}\n")
    env = bind_dims(spec, "M", {"N": 2})
    est = estimate_memory(spec, "M", env, "float64")
    # input and output 2*4*8 bytes each; relu's temporaries: two outputs
    assert (est.weights, est.activations, est.workspace, est.peak) == (0, 128, 128, 384)
    with pytest.raises(TooLarge, match="needs about 384 bytes .* more than the 100 bytes"):
        crosscheck(spec, "M", dims={"N": 2}, limit=100)
    spec = nnspec.loads("model M(x: [N, 8]) {\n    dense 4\n}\n")
    est = estimate_memory(spec, "M", bind_dims(spec, "M", {}), "float32")
    assert est.weights == (8 * 4 + 4) * 4 and est.peak == max(2 * est.weights,
                                                              est.weights + 2 * 96 + 64)


def test_reshape_to_0d_in_both_backends(tmp_path):
    from _util import import_source

    from nnspec.backends.torch import emit_source

    spec = nnspec.loads("model M(x: [1, 1]) {\n    reshape []\n}\n")
    report = crosscheck(spec, "M")
    assert report.ok and report.rows[0].shape_torch == () == report.rows[0].expected
    path = tmp_path / "r.py"
    path.write_text(emit_source(spec, "M"))
    y = import_source(path, "r0").M()(torch.full((1, 1), 3.0))
    assert y.shape == () and float(y) == 3.0


def test_pool_usage_hint_says_global(capsys, tmp_path):
    spec = nnspec.loads("model M(x: [N, 1, 8]) {\n    avgpool kk=3\n}\n", strict=False)
    (d,) = spec.diagnostics
    assert "[global]" in d.hint and "global_" not in d.hint


def test_attention_hint_is_instant_for_a_huge_width():
    width = 9223372036854775783  # a prime near int64's maximum
    t0 = time.perf_counter()
    spec = nnspec.loads(f"model M(x: [N, 2, {width}]) {{\n    attention heads=2\n}}\n",
                        strict=False)
    assert time.perf_counter() - t0 < 1
    (d,) = spec.diagnostics
    assert d.hint == f"the width {width} splits evenly into 1 heads"
    spec = nnspec.loads("model M(x: [N, 2, 768]) {\n    attention heads=7\n}\n", strict=False)
    assert spec.diagnostics[0].hint == "the width 768 splits evenly into 2, 3, 4, 6, 8, 12 heads"
