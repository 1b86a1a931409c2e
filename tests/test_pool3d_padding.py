"""3-d pooling, batchnorm over rank 5, and pooling with padding PyTorch's pooling refuses
(asymmetric, more than half the kernel, p=same): shapes, both backends against torch and
against a window-by-window reference, emitted source, located errors."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

import nnspec
from nnspec.backends.numpy import NumpyModel
from nnspec.layers import REGISTRY
from nnspec.layers.pool import _Pool

from _util import import_source

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from nnspec.backends.torch import build_module, emit_source  # noqa: E402
from nnspec.tools.crosscheck import crosscheck  # noqa: E402


def one(layer: str, shape: str) -> nnspec.Spec:
    return nnspec.loads(f"model M(x: {shape}) {{\n    {layer}\n}}\n", "t.nn")


def only_error(layer: str, shape: str):
    """The one diagnostic of a one-layer model, and the text its span covers."""
    spec = nnspec.loads(f"model M(x: {shape}) {{\n    {layer}\n}}\n", "bad.nn", strict=False)
    (d,) = spec.diagnostics
    assert d.span.line == 2
    return d, layer[d.span.col - 5:d.span.end_col - 5]


def both(spec: nnspec.Spec, x: np.ndarray, seed: int = 0):
    """(NumPy output, in-process torch output, module) with shared float64 weights."""
    mod = build_module(spec, seed=seed, dtype=torch.float64).eval()
    ref = NumpyModel(spec, params={k: v.numpy() for k, v in mod.state_dict().items()},
                     dtype="float64")
    with torch.no_grad():
        y_t = mod(torch.from_numpy(x)).numpy()
    return ref(x), y_t, mod


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# ---- a window-by-window reference ----------------------------------------------------


def torch_rule_size(n: int, k: int, s: int, pb: int, pa: int, d: int, ceil: bool) -> int:
    """PyTorch's pooling output size (ATen's pooling_output_shape) with the two pads put
    in: in ceil mode a last window that would start in the right padding is dropped."""
    span = n + pb + pa - d * (k - 1) - 1
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= n + pb:
        o -= 1
    return o


def windows(x, mode, k, s, pads, d, ceil, cip):
    """Each output cell from its window, one at a time: max over the input cells in it
    (-inf if none); average over the cells inside the padded extent (cip) or over the
    input cells only (0 if none)."""
    sp = x.shape[2:]
    outs = [torch_rule_size(sp[i], k[i], s[i], *pads[i], d[i], ceil) for i in range(len(k))]
    y = np.empty(x.shape[:2] + tuple(outs))
    for o in itertools.product(*map(range, outs)):
        real, extent = [], 1
        for i, oi in enumerate(o):
            cells = [oi * s[i] - pads[i][0] + j * d[i] for j in range(k[i])]
            extent *= sum(-pads[i][0] <= c < sp[i] + pads[i][1] for c in cells)
            real.append([c for c in cells if 0 <= c < sp[i]])
        sel = x[(slice(None), slice(None)) + np.ix_(*real)].reshape(x.shape[:2] + (-1,))
        if mode == "max":
            v = sel.max(axis=-1) if sel.shape[-1] else np.full(x.shape[:2], -np.inf)
        else:
            div = extent if cip else sel.shape[-1]
            v = sel.sum(axis=-1) / div if div else np.zeros(x.shape[:2])
        y[(slice(None), slice(None)) + o] = v
    return y


def torch_padded(x, mode, k, s, pads, d, ceil, cip):
    """torch itself: an explicit F.pad, then torch's pool with padding 0 and the same
    ceil mode, then the windows PyTorch's rule keeps (the first torch_rule_size)."""
    n = len(k)
    flat = [v for pb, pa in reversed(pads) for v in (pb, pa)]
    t = torch.from_numpy(x)
    if mode == "max":
        fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[n - 1]
        y = fn(F.pad(t, flat, value=-np.inf), k, s, 0, d, ceil_mode=ceil)
    else:
        fn = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[n - 1]
        y = fn(F.pad(t, flat), k, s, 0, ceil_mode=ceil)
        if not cip:  # over the count of input cells; none (all padding): 0
            count = fn(F.pad(torch.ones_like(t), flat), k, s, 0, ceil_mode=ceil)
            y = torch.where(count > 0, y / count, 0.0)
    sp = x.shape[2:]
    keep = [torch_rule_size(sp[i], k[i], s[i], *pads[i], d[i], ceil) for i in range(n)]
    assert all(a - b in (0, 1) for a, b in zip(y.shape[2:], keep))
    return y[(Ellipsis,) + tuple(slice(0, o) for o in keep)].numpy()


def torch_native(x, mode, k, s, p, d, ceil, cip):
    """torch's own pooling, padding p; None where torch refuses an input: its avg_pool3d
    refuses one smaller than the kernel, however padded."""
    n = len(k)
    t = torch.from_numpy(x)
    if mode == "avg" and n == 3 and any(f < kk for f, kk in zip(x.shape[2:], k)):
        with pytest.raises(RuntimeError, match="smaller than kernel size"):
            F.avg_pool3d(t, k, s, p, ceil_mode=ceil, count_include_pad=cip)
        return None
    if mode == "max":
        return (F.max_pool1d, F.max_pool2d, F.max_pool3d)[n - 1](
            t, k, s, p, d, ceil_mode=ceil).numpy()
    return (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[n - 1](
        t, k, s, p, ceil_mode=ceil, count_include_pad=cip).numpy()


def pool_text(mode, n, k, s, pads, d, ceil, cip) -> str:
    tup = lambda v: "(" + ", ".join(map(str, v)) + ("," if n == 1 else "") + ")"  # noqa
    words = [f"{mode}pool{n}d", f"k={tup(k)}", f"s={tup(s)}",
             "p=" + tup([f"({a}, {b})" for a, b in pads])]
    if mode == "max":
        words.append(f"d={tup(d)}")
    if ceil:
        words.append("ceil")
    if mode == "avg" and not cip:
        words.append("count_include_pad=false")
    return " ".join(words)


def configs(n: int, count: int, seed: int):
    rng = random.Random(f"pool:{n}:{seed}")
    made = 0
    while made < count:
        mode = rng.choice(["max", "avg"])
        shape = (2, 2) + tuple(rng.randint(1, {1: 7, 2: 5, 3: 4}[n]) for _ in range(n))
        k = tuple(rng.randint(1, 3) for _ in range(n))
        s = tuple(rng.randint(1, 3) for _ in range(n))
        pads = tuple((rng.randint(0, 3), rng.randint(0, 3)) for _ in range(n))
        if rng.random() < 0.3:  # often within torch's own rule
            pads = tuple((kk // 2, kk // 2) for kk in k)
        d = tuple(rng.choice([1, 1, 2]) for _ in range(n)) if mode == "max" else (1,) * n
        ceil, cip = rng.random() < 0.5, rng.random() < 0.5
        cfg = (mode, k, s, pads, d, ceil, cip)
        if all(torch_rule_size(f, *a) >= 1 for f, *a in zip(
                shape[2:], k, s, *zip(*pads), d, [ceil] * n)):
            made += 1
            yield shape, cfg


# ---- random configurations: torch, the reference, both backends -----------------------


@pytest.mark.parametrize("n", [1, 2, 3])
def test_random_configurations_match_torch_and_the_window_reference(n):
    rng = np.random.default_rng(n)
    native_seen = lowered_seen = crop_seen = 0
    for shape, cfg in configs(n, 50, 0):
        mode, k, s, pads, d, ceil, cip = cfg
        x = rng.standard_normal(shape)
        want = windows(x, *cfg)
        what = f"{cfg} on {shape}"
        # the reference is torch's own pooling where torch takes the padding ...
        if all(a == b <= kk // 2 for (a, b), kk in zip(pads, k)):
            native_seen += 1
            got = torch_native(x, mode, k, s, [a for a, _ in pads], d, ceil, cip)
            if got is not None:
                close(got, want)
        # ... and torch over an explicitly padded tensor, less what PyTorch's rule drops
        close(torch_padded(x, *cfg), want)
        spec = one(pool_text(mode, n, k, s, pads, d, ceil, cip),
                   "[N, C, " + ", ".join(map(str, shape[2:])) + "]")
        assert tuple(d_.value for d_ in spec.output_type().shape[2:]) == want.shape[2:], what
        a, b, mod = both(spec, x)
        close(a, want)
        close(b, want)
        src = emit_source(spec)
        lowered_seen += "F.pad" in src or "avg_pool_real_cells" in src
        crop_seen += "[..., " in src
    assert native_seen and lowered_seen and crop_seen  # every path was exercised


def test_explicit_pad_lowering_is_torchs_rule_where_torch_takes_the_padding(monkeypatch):
    """Forced through F.pad + pool + crop, the configurations torch's pooling takes give
    torch's own results: the crop is exactly torch's ceil-mode rule."""
    monkeypatch.setattr(_Pool, "native", lambda self, k, pd, x: False)
    rng = np.random.default_rng(7)
    seen_crop = 0
    for n in (1, 2, 3):
        for shape, cfg in configs(n, 25, 1):
            mode, k, s, _, d, ceil, cip = cfg
            p = tuple(kk // 2 for kk in k)
            pads = tuple((a, a) for a in p)
            if any(torch_rule_size(f, kk, ss, a, a, dd, ceil) < 1
                   for f, kk, ss, a, dd in zip(shape[2:], k, s, p, d)):
                continue
            x = rng.standard_normal(shape)
            spec = one(pool_text(mode, n, k, s, pads, d, ceil, cip),
                       "[N, C, " + ", ".join(map(str, shape[2:])) + "]")
            src = emit_source(spec)
            assert "F.pad" in src or "avg_pool_real_cells" in src
            seen_crop += "[..., " in src
            a, b, _ = both(spec, x)
            want = torch_native(x, mode, k, s, p, d, ceil, cip)
            if want is None:
                continue
            close(b, want)
            close(a, want)
    assert seen_crop


def test_torch_refuses_the_padding_that_is_now_lowered():
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(RuntimeError, match="pad should be at most half of effective kernel"):
        F.max_pool2d(x, 3, 1, 2)
    with pytest.raises(RuntimeError, match="pad should be at most half"):
        F.avg_pool2d(x, 2, 2, 1 + 1)


# ---- shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize("layer,shape,want", [
    ("maxpool3d k=2", "[N, C, D, H, W]", "[N, C, floor(D/2), floor(H/2), floor(W/2)]"),
    ("maxpool 2", "[N, 4, D, H, W]", "[N, 4, floor(D/2), floor(H/2), floor(W/2)]"),
    ("avgpool3d k=(1, 2, 2)", "[N, 4, D, 8, W]", "[N, 4, D, 4, floor(W/2)]"),
    ("avgpool global", "[N, 4, D, H, W]", "[N, 4, 1, 1, 1]"),
    ("maxpool3d global", "[N, 4, 3, 5, 6]", "[N, 4, 1, 1, 1]"),
    ("max_pool3d k=3 s=2 p=1", "[N, 4, 8, 9, 10]", "[N, 4, 4, 5, 5]"),
    ("maxpool k=2 s=2 p=((0, 1), (0, 1))", "[N, C, H, W]",
     "[N, C, floor((H - 1)/2) + 1, floor((W - 1)/2) + 1]"),
    ("maxpool k=2 s=2 p=((0, 1), (0, 1))", "[N, C, 7, 8]", "[N, C, 4, 4]"),
    ("avgpool k=3 s=1 p=2", "[N, C, H, W]", "[N, C, H + 2, W + 2]"),
    ("maxpool k=3 s=1 p=same", "[N, C, H, W]", "[N, C, H, W]"),
    ("avgpool2d k=2 s=1 p=same", "[N, C, H, W]", "[N, C, H, W]"),
    ("maxpool k=3 s=1 p=valid", "[N, C, H, W]", "[N, C, H - 2, W - 2]"),
    ("maxpool1d k=2 s=2 p=((1, 1),) ceil", "[N, C, L]", "[N, C, floor(L/2) + 1]"),
    ("avgpool k=2 s=2 p=((0, 1), (1, 1)) ceil", "[N, C, H, W]",
     "[N, C, floor((H - 1)/2) + 1, floor(W/2) + 1]"),
])
def test_symbolic_shapes(layer, shape, want):
    assert str(one(layer, shape).output_type()) == want


def test_symbolic_crop_is_right_at_every_size():
    """A ceil-mode crop over symbolic sizes: the emitted slice bounds follow H and W."""
    spec = nnspec.loads("model M(x: [N, 2, H, W]) {\n"
                        "    avgpool k=2 s=2 p=((0, 1), (1, 1)) ceil\n"
                        "    maxpool k=2 s=2 p=((1, 2), (0, 1)) ceil\n}\n", "c.nn")
    src = emit_source(spec)
    assert "x.shape[2]" in src and "..., :" in src
    for h, w in itertools.product(range(1, 7), range(1, 6)):
        report = crosscheck(spec, "M", "float64", dims={"N": 1, "H": h, "W": w})
        assert report.ok, report.render()
        assert all(r.expected == r.shape_torch == r.shape_numpy for r in report.rows)


# ---- torch's own 3-d layers, in-process and emitted --------------------------------------


def test_3d_pools_equal_torchs_modules():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 6, 5))
    cases = [
        ("maxpool3d k=3 s=2 p=1 d=(1, 2, 1) ceil",
         nn.MaxPool3d(3, 2, 1, dilation=(1, 2, 1), ceil_mode=True)),
        ("maxpool k=2", nn.MaxPool3d(2)),
        ("avgpool3d k=(3, 2, 3) s=(2, 1, 2) p=(1, 1, 0) ceil count_include_pad=false",
         nn.AvgPool3d((3, 2, 3), (2, 1, 2), (1, 1, 0), ceil_mode=True,
                      count_include_pad=False)),
        ("avgpool k=3 s=2 p=1", nn.AvgPool3d(3, 2, 1)),
        ("avgpool global", nn.AdaptiveAvgPool3d(1)),
        ("maxpool global", nn.AdaptiveMaxPool3d(1)),
    ]
    for layer, ref in cases:
        spec = one(layer, "[2, 3, 7, 6, 5]")
        a, b, mod = both(spec, x)
        want = ref(torch.from_numpy(x)).numpy()
        assert a.shape == tuple(d.value for d in spec.output_type().shape)
        close(a, want)
        close(b, want)
        (child,) = [m for m in mod.modules() if m is not mod]
        assert type(child) is type(ref), layer


EMIT = """\
model P(x: [N, 2, H, W]) {
    a = maxpool k=3 s=2 p=1
    b = x | maxpool k=2 s=2 p=((0, 1), (0, 1))
    c = x | avgpool k=3 s=1 p=2 count_include_pad=false
    d = x | avgpool k=3 s=1 p=2
    e = x | avgpool k=2 s=2 p=((0, 1), (1, 1)) ceil count_include_pad=false
    f = x | maxpool k=2 s=1 p=same
    return concat(a, b, dim=1)
}
model V(x: [N, 2, D, H, W]) {
    maxpool3d k=2 s=1 p=((0, 1), (1, 0), (0, 0))
    avgpool k=3 s=2 p=2 ceil
    batchnorm
    maxpool3d 2 ceil
}
"""


def test_emitted_source_reads_like_pytorch_and_matches_build_module(tmp_path):
    spec = nnspec.loads(EMIT, "emit.nn")
    src = emit_source(spec, all_models=True)
    assert "nn.MaxPool2d(kernel_size=3, stride=2, padding=1)" in src
    assert 'self.maxpool2(F.pad(x, (0, 1, 0, 1), value=float("-inf")))' in src
    assert "nn.MaxPool2d(kernel_size=2, stride=2)\n" in src
    assert "avg_pool_real_cells(x, (2, 2, 2, 2), kernel_size=(3, 3), stride=(1, 1))" in src
    assert "self.avgpool(F.pad(x, (2, 2, 2, 2)))" in src
    assert "nn.BatchNorm3d(2)" in src
    assert "nn.MaxPool3d(kernel_size=2, stride=2, ceil_mode=True)" in src
    assert "self.pool1(F.pad(x, (0, 0, 1, 0, 0, 1), value=float(\"-inf\")))" in src
    path = tmp_path / "pools.py"
    path.write_text(src)
    gen = import_source(path, "pools_gen")
    rng = np.random.default_rng(5)
    for model, shape in (("P", (2, 2, 7, 6)), ("P", (1, 2, 4, 5)), ("V", (2, 2, 5, 6, 4))):
        mod = build_module(spec, model, seed=3, dtype=torch.float64).eval()
        other = getattr(gen, model)().double().eval()
        other.load_state_dict(mod.state_dict())
        x = torch.from_numpy(rng.standard_normal(shape))
        want = NumpyModel(spec, model, params={k: v.numpy() for k, v in
                                               mod.state_dict().items()}, dtype="float64")
        with torch.no_grad():
            got, emitted = mod(x), other(x)
        close(emitted.numpy(), got.numpy())
        close(got.numpy(), want(x.numpy()))
        # every pool of P (the returned concat only uses two) agrees too
        if model == "P":
            with torch.no_grad():
                traced = mod.trace(x)
            ref = want(x.numpy(), trace=True)
            assert ref.keys() == traced.keys() and len(ref) == 8
            for key, value in ref.items():
                close(traced[key].numpy(), value)


def test_crosscheck_rank5_stack():
    spec = nnspec.loads("model V(x: [N, 2, D, H, W]) {\n"
                        "    conv3d 4 k=3 p=1 | batchnorm | relu\n"
                        "    maxpool3d k=2                : [N, 4, floor(D/2), floor(H/2), "
                        "floor(W/2)]\n}\n", "v.nn")
    report = crosscheck(spec, "V", "float64", dims={"N": 2, "D": 4, "H": 5, "W": 6})
    assert report.ok, report.render()
    assert [r.kind for r in report.rows] == ["conv3d", "batchnorm", "relu", "maxpool3d"]
    assert report.rows[-1].expected == report.rows[-1].shape_torch == (2, 4, 2, 2, 3)


# ---- batchnorm over rank 5 --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["batchnorm", "batchnorm3d"])
def test_batchnorm_rank5_train_and_eval_match_batchnorm3d(kind):
    spec = one(f"{kind} eps=0.001 momentum=0.3", "[N, 3, D, H, W]")
    rng = np.random.default_rng(2)
    prefix = next(iter(spec.state_shapes())).split(".")[0]
    params = {f"{prefix}.weight": rng.standard_normal(3), f"{prefix}.bias":
              rng.standard_normal(3), f"{prefix}.running_mean": rng.standard_normal(3),
              f"{prefix}.running_var": rng.uniform(0.5, 2, 3),
              f"{prefix}.num_batches_tracked": np.array(4, dtype=np.int64)}
    mod = build_module(spec, params=params, dtype=torch.float64)
    ref = NumpyModel(spec, params=params, dtype="float64")
    torch_bn = nn.BatchNorm3d(3, eps=0.001, momentum=0.3).double()
    torch_bn.load_state_dict({k.split(".", 1)[1]: torch.as_tensor(v) for k, v in
                              params.items()})
    assert type(getattr(mod, prefix)) is nn.BatchNorm3d
    for _ in range(2):
        x = rng.standard_normal((2, 3, 3, 2, 4))
        t = torch.from_numpy(x)
        want = torch_bn.train()(t).detach().numpy()
        close(mod.train()(t).detach().numpy(), want)
        close(ref(x, training=True), want)
    state = mod.state_dict()
    for k, v in torch_bn.state_dict().items():
        close(state[f"{prefix}.{k}"].numpy(), v.numpy())
        close(ref.params[f"{prefix}.{k}"], v.numpy())
    assert int(state[f"{prefix}.num_batches_tracked"]) == 6
    x = rng.standard_normal((1, 3, 2, 2, 2))
    want = torch_bn.eval()(torch.from_numpy(x)).detach().numpy()
    close(mod.eval()(torch.from_numpy(x)).detach().numpy(), want)
    close(ref(x), want)


# ---- summary and MACs ---------------------------------------------------------------------


def test_summary_detail_and_macs():
    spec = nnspec.loads("model V(x: [N, 2, 8, 6, 4]) {\n"
                        "    maxpool3d k=2 s=2 p=((0, 1), (0, 0), (1, 1)) d=(1, 1, 2) ceil\n"
                        "    avgpool k=3 s=1 p=same count_include_pad=false\n"
                        "    batchnorm3d\n}\n", "s.nn")
    rows = spec.layers()
    details = [REGISTRY[r.node.op].detail(r.node.p, r.inputs) for r in rows]
    assert details[0] == "k=(2, 2, 2) s=(2, 2, 2) pads=((0, 1), (0, 0), (1, 1)) d=(1, 1, 2) ceil"
    assert details[1] == ("k=(3, 3, 3) s=(1, 1, 1) pads=((1, 1), (1, 1), (1, 1)) "
                          "count_include_pad=false")
    # depth: ceil((8 + 1 - 1 - 1) / 2) + 1 = 5, less the window that would start at 8, in
    # the right padding; width: ceil((4 + 2 - 2*(2 - 1) - 1) / 2) + 1 = 3
    assert [str(r.output) for r in rows] == ["[N, 2, 4, 3, 3]"] * 3
    # one multiply-accumulate per output cell and window cell: 2*4*3*3 cells, 8 and 27
    assert [str(r.macs) for r in rows] == ["576*N", "1944*N", "144*N"]
    assert [r.params for r in rows] == [0, 0, 4]


# ---- located errors -----------------------------------------------------------------------


def test_output_below_one_names_the_depth_with_the_formula():
    d, text = only_error("maxpool3d k=2", "[N, 2, 1, 8, 8]")
    assert d.code == "E301" and d.message == "maxpool3d output depth is 0"
    assert d.notes[0] == ("F_out = floor((F_in - k + 2p) / s) + 1 = floor((1 - 2 + 2*0) / 2) "
                          "+ 1 = 0")
    assert text == "maxpool3d k=2"


def test_output_below_one_with_asymmetric_pads_shows_both_pads():
    d, text = only_error("avgpool k=(4, 1) s=1 p=((0, 1), (0, 0))", "[N, 2, 2, 8]")
    assert d.code == "E301" and d.message == "avgpool output height is 0"
    assert d.notes[0] == ("F_out = floor((F_in + p_before + p_after - d*(k - 1) - 1) / s) + 1"
                          " = floor((2 + 0 + 1 - 1*(4 - 1) - 1) / 1) + 1 = 0")


def test_same_padding_needs_stride_one():
    d, text = only_error("maxpool k=2 p=same", "[N, 2, 8, 8]")
    assert d.code == "E331" and text == "p=same"
    assert d.message == ("maxpool p=same needs stride 1, but the stride is 2 (a pooling stride "
                         "defaults to the kernel size)")
    assert d.hint == ("write s=1 for a size-preserving pool, or give the padding explicitly")
    d, text = only_error("avgpool3d k=3 s=(1, 2, 1) p=same", "[N, 2, 8, 8, 8]")
    assert d.code == "E331" and text == "p=same"
    assert d.message == "avgpool3d p=same needs stride 1, but the stride is (1, 2, 1)"


@pytest.mark.parametrize("layer,shape,message,arg", [
    ("maxpool k=2 p=((0, 1), (0, 1))", "[N, 2, 8, 8, 8]",
     "p has 2 entries but the layer has 3 spatial dims", "p=((0, 1), (0, 1))"),
    ("maxpool3d k=2", "[N, 2, 8, 8]",
     "maxpool3d expects a rank-5 input ([N, C, D, H, W]), got [N, 2, 8, 8] (rank 4)",
     "maxpool3d k=2"),
    ("avgpool k=2", "[N, 2, 4, 4, 4, 4]",
     "avgpool expects a rank-3 or 4 or 5 input ([N, C, L], [N, C, H, W] or [N, C, D, H, W]), "
     "got [N, 2, 4, 4, 4, 4] (rank 6)", "avgpool k=2"),
    ("batchnorm3d", "[N, 2, 4, 4]",
     "batchnorm3d expects a rank-5 input ([N, C, D, H, W]), got [N, 2, 4, 4] (rank 4)",
     "batchnorm3d"),
    ("batchnorm", "[N, 2, 4, 4, 4, 4]",
     "batchnorm expects a rank-2 or 3 or 4 or 5 input ([N, C], [N, C, L], [N, C, H, W] or "
     "[N, C, D, H, W]), got [N, 2, 4, 4, 4, 4] (rank 6)", "batchnorm"),
])
def test_located_errors(layer, shape, message, arg):
    d, text = only_error(layer, shape)
    assert (d.message, text) == (message, arg)
