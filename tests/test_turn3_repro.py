"""Reproducers of wrong gradients, refused or mishandled pooling and false alarms of the
gradient check, found by fuzzing with finite differences: each spec is checked where it
once failed (the crosscheck's seed and dims), and the causes are pinned down on their own.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys

import numpy as np
import pytest

import nnspec
from nnspec.backends.numpy import NumpyModel
from nnspec.core.diagnostics import SpecError
from nnspec.layers import REGISTRY
from nnspec.layers.base import TensorType

from _util import import_source

torch = pytest.importorskip("torch")
from torch.nn import functional as F  # noqa: E402

from nnspec.backends.torch import build_module, emit_source  # noqa: E402
from nnspec.tools.crosscheck import crosscheck, crosscheck_grad  # noqa: E402
from nnspec.tools.crosscheck.grad import cotangent  # noqa: E402

RMSNORM = "model R(x: [N, 5, 8]) {\n    rmsnorm\n}\n"
AVGPOOL3D_CEIL = "model R(x: [N, 1, 2, 3, 2]) {\n    avgpool k=3 s=2 ceil\n}\n"
MAXPOOL_IN_PADDING = "model R(x: [N, 1, 1, 4]) {\n    maxpool2d k=3 s=3 p=1 d=2 ceil\n}\n"
SOFTMAX_SUM = "model R(x: [N, 4, 2]) {\n    softmax 1\n    sum dim=1\n}\n"
LAYERNORM_SUM = "model R(x: [N, 3, 4]) {\n    layernorm\n    sum\n}\n"
SDPA_AFTER_MHA_KV1 = """\
model R(x: [N, 4, 6], mem1: [N, 1, 6]) {
    v1 = x | mha 2 kv=mem1 qkv=packed
    v2 = v1 | dense 8 | reshape [N, -1, 4, 2] | transpose 1 2
    v3 = v1 | dense 4 | reshape [N, -1, 2, 2] | transpose 1 2
    v4 = v1 | dense 4 | reshape [N, -1, 2, 2] | swapaxes 1 2
    v5 = sdpa(v2, v3, v4, scale=0.3)
    v6 = v5 | transpose 1 2 | flatten start=2
    swapaxes 1 2 | softmax -1 | permute (0, 2, 1)
}
"""
MHA_MASK_AFTER_LLAMA = """\
use "llama.nn"
model R(tokens: [N, 3] int, mem1: [N, 2, 8], pad2: [N, 2] int) {
    v1 = tokens | embedding 11 8 as emb0
    v2 = v1 | LlamaLayer(8, 4, 2, 3) as proj1
    v3 = v2 | mha 1 kv=mem1 mask=pad2
}
"""
RMSNORM_AFTER_LAYERNORM = """\
model R(tokens: [N, 5] int) {
    v1 = tokens | embedding 5 6 as emb0
    swapaxes 1 2 | layernorm
    v5 = rmsnorm axes=2
}
"""
ALL_IGNORED = """\
model M(x: [N, C]) {
    identity
}
train M(label: [N] int) {
    loss cross_entropy(output, label)
    optimizer sgd lr=0.1
}
"""


def load(text: str) -> nnspec.Spec:
    return nnspec.loads(text, "repro.nn")


def grad_ok(text: str, **kw) -> None:
    report = crosscheck_grad(load(text), dtype="float64", **kw)
    assert report.ok and report.first_divergence is None, report.render()


# ---- the gradient check: its cotangent and its scales ------------------------------------


def test_the_cotangent_is_not_the_input():
    """With one input of the output's shape, the cotangent once was the input itself (the
    same stream): L = sum(x * f(x)) then has other gradients than the ones meant."""
    spec = load(RMSNORM)
    from nnspec.tools.crosscheck.sizes import concrete_inputs

    for seed in (0, 1, 7):
        (x,) = concrete_inputs(spec, "R", {"N": 2}, np.float64, seed)
        c = cotangent(x, seed, np.float64)
        assert c.shape == x.shape and not np.allclose(c, x)
        assert abs(np.corrcoef(c.ravel(), x.ravel())[0, 1]) < 0.5
        assert np.array_equal(c, cotangent(x, seed, np.float64))  # reproducible
    a, b = cotangent((np.zeros(3), np.zeros(2)), 0, np.float32)
    assert a.dtype == np.float32 and b.shape == (2,) and not np.allclose(a[:2], b)


def test_rmsnorm_gradient_passes():
    grad_ok(RMSNORM)


@pytest.mark.parametrize("text", [SOFTMAX_SUM, LAYERNORM_SUM], ids=["softmax", "layernorm"])
def test_an_exactly_zero_gradient_is_measured_against_its_path(text):
    """softmax then sum (layernorm then sum): the input's gradient is exactly 0, computed as
    +-1e-16 in both back ends; against the gradients that cancelled it is rounding."""
    spec = load(text)
    noise = []
    for seed in range(6):
        report = crosscheck_grad(spec, dtype="float64", seed=seed)
        assert report.ok, report.render()
        (row,) = [r for r in report.params if r.kind == "input"]
        assert row.max_abs < 1e-14 and row.max_rel < 1e-13
        noise.append(row.max_abs)
    assert max(noise) > 0  # the two back ends' rounding differs: the scale is what passes it


def test_the_gradient_check_still_finds_a_wrong_backward(monkeypatch):
    """Scaling the zero-gradient layer's backward by 1.001 changes nothing (0 stays 0);
    the same on a layer with a gradient is caught, at that layer."""
    spec = load("model R(x: [N, 4, 2]) {\n    softmax 1\n    tanh\n    sum dim=1\n}\n")
    kind = type(REGISTRY["tanh"])
    right = kind.backward

    def wrong(self, p, w, xs, y, gy, ctx):
        gs, gw = right(self, p, w, xs, y, gy, ctx)
        return [g * (1 + 1e-6) for g in gs], gw

    monkeypatch.setattr(kind, "backward", wrong)
    report = crosscheck_grad(spec, dtype="float64")
    assert not report.ok
    assert "first diverges at the input of tanh_0 [tanh]" in report.render()


@pytest.mark.parametrize("text,seed,dims", [
    (SDPA_AFTER_MHA_KV1, 1066, {"N": 2}),
    (MHA_MASK_AFTER_LLAMA, 2329, {"N": 3}),
], ids=["sdpa-after-kv-len-1", "mha-mask-after-llama"])
def test_attention_reports_were_exact_zeros(text, seed, dims):
    """Both were the check's false alarms, not nnspec's: with one key (kv of length 1, or
    a key-padding mask leaving one key or none) attention's output does not depend on its
    queries, so every gradient behind them is exactly 0, and both back ends give +-1e-18.
    In the sdpa case every row the final softmax sees is constant (all tokens see the same
    single key), so nothing before it has a gradient."""
    spec = load(text) if "use" not in text else nnspec.loads(text, "nnspec/stdlib/r.nn")
    report = crosscheck_grad(spec, seed=seed, dims=dims)
    assert report.ok, report.render()
    upstream = [r for r in report.params if r.kind == "param" and not
                r.name.startswith("attention_0.")]
    assert upstream and all(r.max_abs < 1e-15 for r in upstream)
    # the one-key cause, directly: queries do not move the output
    from nnspec.tools.crosscheck.sizes import concrete_inputs

    if "mask" in text:
        _, _, pad = concrete_inputs(spec, "R", dims, np.float64, seed)
        assert (pad.sum(axis=1) >= 1).all()  # at most one key seen per sample


def test_rmsnorm_after_layernorm_of_a_constant_row_agrees():
    """layernorm of a constant row is exactly 0 (torch's value, and the exact one); NumPy's
    mean once left 3.5e-14, which rmsnorm with eps = 2.2e-16 amplified to 2.4e-6."""
    spec = load(RMSNORM_AFTER_LAYERNORM)
    report = crosscheck(spec, "R", "float64", seed=1037, dims={"N": 3})
    assert report.ok, report.render()
    from nnspec.layers.kernels.functions import layer_norm

    row = np.full((2, 5), 0.1) * np.array([[1.0], [3.0]])
    exact = F.layer_norm(torch.from_numpy(row), (5,)).numpy()
    assert not exact.any() and not layer_norm(row, 1).any()


# ---- pooling torch mishandles: lowered, never handed to it --------------------------------


def test_avgpool3d_ceil_with_a_kernel_larger_than_the_input(tmp_path):
    """nn.AvgPool3d refuses an input smaller than the kernel (2-d takes it): the explicit
    route zero-extends it, uncounted; NumPy, the module and the emitted source agree."""
    spec = load(AVGPOOL3D_CEIL)
    assert crosscheck(spec, "R", "float64").ok
    grad_ok(AVGPOOL3D_CEIL)
    x = np.random.default_rng(0).standard_normal((2, 1, 2, 3, 2))
    want = x[:, :, :2, :3, :2].mean(axis=(2, 3, 4), keepdims=True)  # the one window's cells
    src = emit_source(spec)
    assert "avg_pool_real_cells(" in src and "AvgPool3d" not in src
    path = tmp_path / "m.py"
    path.write_text(src)
    gen = import_source(path, "avgpool3d_gen").R().double()
    mod = build_module(spec, dtype=torch.float64)
    t = torch.from_numpy(x)
    for got in (NumpyModel(spec, params={}, dtype="float64")(x),
                mod(t).detach().numpy(), gen(t).detach().numpy()):
        np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("layer,shape", [
    ("avgpool k=3 s=2 ceil count_include_pad=false", "[N, 2, 2, 3, 2]"),
    ("avgpool k=3 s=2 p=1 ceil", "[N, 2, 1, 3, 2]"),
    ("avgpool3d k=(3, 2, 3) s=2 p=(1, 0, 1) ceil", "[N, 1, 1, 1, 3]"),
    ("avgpool k=3 s=3 ceil", "[N, 1, D, 4, 4]"),
])
def test_other_small_3d_average_pools_match_the_window_reference(layer, shape):
    spec = load(f"model R(x: {shape}) {{\n    {layer}\n}}\n")
    for d in (1, 2, 5) if "D" in shape else (2,):
        dims = {"N": 2, "D": d} if "D" in shape else {"N": 2}
        report = crosscheck(spec, "R", "float64", dims=dims)
        assert report.ok, report.render()
        grad = crosscheck_grad(spec, "R", "float64", dims=dims)
        assert grad.ok, grad.render()


def test_maxpool_window_in_the_padding_runs_in_a_subprocess():
    """torch's max pooling gave a window of dilated taps wholly in the padding an index
    outside the plane, and its backward wrote there (the process aborted): run where an
    abort is a failure, not the end of the test run."""
    code = (
        "import nnspec, sys\n"
        "from nnspec.tools.crosscheck import crosscheck, crosscheck_grad\n"
        f"spec = nnspec.loads({MAXPOOL_IN_PADDING!r}, 'g.nn')\n"
        "for seed in range(1, 6):\n"
        "    for r in (crosscheck(spec, seed=seed), crosscheck_grad(spec, seed=seed)):\n"
        "        assert r.ok, r.render()\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_maxpool_window_in_the_padding_is_lowered_with_explicit_padding(tmp_path):
    spec = load(MAXPOOL_IN_PADDING)
    src = emit_source(spec)
    assert 'F.pad(x, (1, 1, 1, 1), value=float("-inf"))' in src
    assert "nn.MaxPool2d(kernel_size=3, stride=3, ceil_mode=True, dilation=2)" in src
    # (only now, the lowering asserted, may torch run it) the emitted module's forward and
    # backward are NumPy's: every window lies in the padding row, so -inf and no gradient
    path = tmp_path / "m.py"
    path.write_text(src)
    gen = import_source(path, "maxpool_gen").R().double()
    x = np.random.default_rng(1).standard_normal((2, 1, 1, 4))
    xt = torch.tensor(x, requires_grad=True)
    y = gen(xt)
    ref = NumpyModel(spec, params={}, dtype="float64")
    np.testing.assert_array_equal(y.detach().numpy(), ref(x))
    assert np.isneginf(ref(x)).all()
    c = np.random.default_rng(2).standard_normal(y.shape)
    (y * torch.from_numpy(c)).sum().backward()
    got = ref.vjp(x, cotangent=c)
    np.testing.assert_array_equal(xt.grad.numpy(), got.inputs[0])
    assert not xt.grad.any()
    # at a plane of at least d rows and columns, torch's own padding takes it
    native = emit_source(load("model R(x: [N, 1, 2, 4]) {\n    maxpool2d k=3 s=3 p=1 d=2 "
                              "ceil\n}\n"))
    assert "padding=1" in native and "F.pad" not in native


def _taps_hit_input(n: int, k: int, s: int, p: int, d: int, o: int) -> bool:
    """Every window of PyTorch's rule has a tap inside an axis of n cells."""
    return all(any(0 <= i * s - p + j * d < n for j in range(k)) for i in range(o))


def test_no_native_pool_plan_has_a_window_torch_mishandles():
    """Over random windows: where the plan hands torch its own padding, no max pooling
    window lies wholly in the padding, and no 3-d average pooling input is smaller than
    the kernel; checked on the plans alone, with no pooling run."""
    rng = random.Random(3)
    seen = {"native": 0, "lowered": 0}
    for _ in range(600):
        n = rng.randint(1, 3)
        mode = rng.choice(["max", "avg"])
        kind = REGISTRY[f"{mode}pool{n}d"]
        sizes = [rng.randint(1, 5) for _ in range(n)]
        k = [rng.randint(1, 4) for _ in range(n)]
        s = [rng.randint(1, 3) for _ in range(n)]
        p = [rng.randint(0, kk // 2) for kk in k]
        d = [rng.choice([1, 2, 3]) for _ in range(n)] if mode == "max" else [1] * n
        ceil = rng.random() < 0.6
        args = {"k": tuple(k), "s": tuple(s), "p": tuple(p), "ceil": ceil}
        if mode == "max":
            args["d"] = tuple(d)
        params = kind.Params(**args)
        x = TensorType((2, 1) + tuple(sizes))
        try:
            out = kind.infer(params, [x])
        except Exception:
            continue  # an output size below 1: refused statically
        plan = kind.torch(params, [x], out)
        native = plan.module is not None and not plan.calls
        seen["native" if native else "lowered"] += 1
        if not native:
            continue
        outs = [o.value for o in out.shape[2:]]
        if mode == "max":
            assert all(_taps_hit_input(*a) for a in zip(sizes, k, s, p, d, outs)), args
        elif n == 3:
            assert all(f >= kk for f, kk in zip(sizes, k)), (args, sizes)
    assert seen["native"] > 100 and seen["lowered"] > 20


# ---- upsampling, the adaptive size message, the losses ------------------------------------


@pytest.mark.parametrize("shape", ["[N, 1, 4, 3, 4]", "[N, 1, 4]", "[N, 1, 4, 3]", "[N, 2, 3]",
                                   "[N, 1, 3, 3, 3]"])
def test_nearest_upsampling_gradient(shape):
    """torch's nearest backward copies each pixel where the output size equals the input's
    (doubles where it is twice), while its 1-d and 3-d forward steps by 1/scale: nnspec
    passes 1 (2) there, so that the gradient is the forward's in torch too."""
    text = f"model R(x: {shape}) {{\n    upsample scale_factor=1.25 mode=nearest\n}}\n"
    assert crosscheck(load(text), "R", "float64").ok
    grad_ok(text)
    grad_ok(text.replace("1.25", "2.2"))


def test_torch_nearest_backward_is_not_its_forwards_adjoint():
    """The cause, in torch itself: at scale 1.25 on 3 cells the forward reads [0, 0, 1] and
    the backward sends each gradient to [0, 1, 2]; at scale 1 both copy."""
    x = torch.randn(1, 1, 3, dtype=torch.float64, requires_grad=True)
    y = F.interpolate(x, scale_factor=1.25, mode="nearest")
    assert torch.equal(y.detach()[0, 0], x.detach()[0, 0, [0, 0, 1]])
    (g,) = torch.autograd.grad(y, x, torch.tensor([[[1.0, 10.0, 100.0]]], dtype=torch.float64))
    assert g.tolist() == [[[1.0, 10.0, 100.0]]]  # not [[[11.0, 100.0, 0.0]]]
    spec = load("model R(x: [N, 1, 3]) {\n    upsample 1.25\n}\n")
    assert "scale_factor=1" in emit_source(spec)
    xs = np.arange(6.0).reshape(2, 1, 3)
    assert np.array_equal(NumpyModel(spec, params={}, dtype="float64")(xs), xs)


@pytest.mark.parametrize("shape,mode", [("[N, 1, L]", "nearest"), ("[N, 1, L, 3]", "bicubic"),
                                        ("[N, 1, 2, L, 3]", "nearest")])
def test_symbolic_sizes_decide_the_copy_at_run_time(shape, mode, tmp_path):
    """With a symbolic size whether the output equals the input is known only when the
    model runs: the module and the compiled source decide there, as the NumPy backend does
    (forward and gradient), at sizes that copy and sizes that do not."""
    text = f"model R(x: {shape}) {{\n    upsample 1.25 mode={mode}\n}}\n"
    spec = load(text)
    src = emit_source(spec)
    assert "interpolate_copying(" in src
    for size in (2, 3, 4, 5):
        assert crosscheck(spec, "R", "float64", dims={"L": size}).ok, size
        assert crosscheck_grad(spec, "R", "float64", dims={"L": size}).ok, size
    (tmp_path / "up.py").write_text(src)
    module = import_source(tmp_path / "up.py", f"up_{mode}_{len(shape)}").R().double()
    x = torch.randn(*[2 if d == "N" else 3 if d == "L" else int(d)
                      for d in shape.strip("[]").split(", ")], dtype=torch.float64)
    assert torch.allclose(module(x), build_module(spec).double()(x), rtol=0, atol=1e-12)


def test_bicubic_at_the_input_size_copies():
    text = "model R(x: [N, 1, 3, 5]) {\n    upsample 1.25 mode=bicubic\n}\n"
    spec = load(text)
    assert spec.output_type().shape[2].value == 3
    assert crosscheck(spec, "R", "float64").ok
    grad_ok(text)


def test_none_in_a_shape_literal_says_how_to_keep_a_dim():
    with pytest.raises(SpecError) as e:
        load("model R(x: [N, 1, 4, 4]) {\n    adaptive_avgpool [2, None]\n}\n")
    text = str(e.value)
    assert "None in a shape literal is a symbol, not a kept dim" in text
    assert "[7, _] or (7, None)" in text and "not the symbol None" not in text
    ok = load("model R(x: [N, 1, 4, 4]) {\n    adaptive_avgpool [2, _]\n}\n")
    assert str(ok.output_type()) == "[N, 1, 2, 4]"


def test_every_target_ignored_gives_zero_gradients_as_autograd():
    spec = load(ALL_IGNORED)
    x = np.random.default_rng(4).standard_normal((3, 4))
    label = np.full(3, -100)
    got = NumpyModel(spec, params={}, dtype="float64").grad(x, targets={"label": label})
    mod = build_module(spec, dtype=torch.float64)
    xt = torch.tensor(x, requires_grad=True)
    loss = mod.loss(mod(xt), torch.from_numpy(label))
    loss.backward()
    assert np.isnan(got.loss) and torch.isnan(loss)
    assert np.array_equal(got.inputs[0], xt.grad.numpy()) and not xt.grad.any()


def test_pool_configurations_cover_the_lowering_paths():
    """A small exhaustive sweep of 1-d windows where dilation can skip the input: both
    back ends and torch's reference agree, backward included."""
    for n, k, p, d in itertools.product((1, 2, 3), (2, 3), (0, 1), (2, 3)):
        if p > k // 2:
            continue
        text = f"model R(x: [N, 1, {n}]) {{\n    maxpool1d k={k} s=2 p={p} d={d} ceil\n}}\n"
        try:
            spec = load(text)
        except SpecError:
            continue
        assert crosscheck(spec, "R", "float64").ok
        assert crosscheck_grad(spec, "R", "float64").ok, text
