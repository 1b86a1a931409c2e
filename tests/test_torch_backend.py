"""The PyTorch backend: build_module against hand-written torch and the NumPy interpreter,
emitted source, dtypes, torch.compile / torch.export and error locations."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest

from _util import import_source
import nnspec
from nnspec.backends import weights as nninit
from nnspec.backends.numpy import NumpyModel

torch = pytest.importorskip("torch")
nn = torch.nn

from nnspec.backends.torch import (InputError, SpecModule, build_module,  # noqa: E402
                                   emit_source, write_source)

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "specs" / "lenet5.nn"

CONVS = """
model Convs(x: [N, 4, 11, 10]) {
    conv 4 k=4 p=same                              : [N, 4, 11, 10]
    conv 6 k=3 groups=2 d=2 p=2                    : [N, 6, 11, 10]
    conv 8 k=(3, 2) s=(2, 1) p=((1, 0), (0, 1)) groups=2
    conv 8 k=2 p=same d=3 bias=false
    relu
}
model Seq(x: [N, 3, 20]) {
    conv1d 6 k=5 s=2 p=2 | relu                    : [N, 6, 10]
    conv 4 k=4 p=same d=2
    maxpool1d 3 s=2 ceil
    avgpool1d 2 p=1 count_include_pad=false
}
"""

POOLS = """
model Pools(x: [N, 3, 13, 12]) {
    a = maxpool k=3 s=2 p=1 ceil
    b = x | avgpool k=3 s=2 p=1 ceil count_include_pad=false
    c = x | avgpool k=(3, 2) s=2 p=1 ceil
    concat(a, b, c, dim=1)                         : [N, 9, 7, 7]
    avgpool global
    flatten
}
model Dilated(x: [N, 3, 13, 12]) {
    maxpool k=3 s=2 p=1 d=2 ceil
    maxpool global
}
"""

NORMS = """
model Norms(x: [N, 4, 6, 5]) {
    batchnorm
    layernorm 2
    flatten
    dense 8
    batchnorm | layernorm
    reshape [N, 2, 4]
    batchnorm momentum=0.3
    dense 3 | layernorm eps=0.001
}
"""

ACTS = """
model Acts(x: [N, 5, 7]) {
    a = x | relu
    b = x | leaky_relu 0.2
    c = x | elu
    d = x | gelu approximate=tanh
    e = x | gelu
    f = x | tanh
    g = x | sigmoid
    h = x | softmax dim=1
    i = x | log_softmax
    concat(a, b, c, d, e, f, g, h, i, dim=1)      : [N, 45, 7]
}
"""

MISC = """
block Res(x, c) {
    y = conv c k=3 p=1 | relu | conv c k=3 p=1
    return relu(y + x)
}
model Misc(x: [N, 4, 6, 6], g: [N, 4, 6, 6]) {
    r = Res(4) * 2 as layer1
    (r * g)
    reshape [N, 4, -1]         : [N, 4, 36]
    dense 5                    : [N, 4, 5]
    flatten                    : [N, 20]
    dense 3
}
"""

KEYWORDS = """
block B(x) {
    y = dense 4 as class
    return y
}
model K(x: [N, 4], lambda: [N, 4]) {
    dense 4 as forward
    B as def
    (x * lambda)
    dense 4 as class
}
"""

FLOORS = """
model Fl(x: [N, 4, H]) {
    maxpool1d 2
    reshape [N, 2, 2 * (H // 2)]
}
model Ce(x: [N, 6, H]) {
    maxpool1d 2 ceil
    reshape [N, 3, 2 * ceil(H/2)]
}
"""

INITS = """
model Init(x: [N, 3, 6, 6]) {
    conv 4 k=3 init=kaiming bias_init=zeros
    flatten
    dense 5 init=xavier
}
"""

MLP = """
model MLP(x: [N, 8]) -> [N, 3] {
    dense 16 | gelu
    reshape [N, 4, -1]
    layernorm
    flatten
    dense 3
}
"""


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def run_torch(module, xs):
    with torch.no_grad():
        return module(*[torch.from_numpy(x) for x in xs]).numpy()


def compare(text, model, shapes, seed=3, params=None):
    """build_module and NumpyModel agree (float64) on one model."""
    spec = nnspec.loads(text, "t.nn")
    module = build_module(spec, model, seed=seed, params=params, dtype=torch.float64).eval()
    ref = NumpyModel(spec, model, seed=seed, params=params, dtype=np.float64)
    xs = [rand(*s, seed=i) for i, s in enumerate(shapes)]
    got = run_torch(module, xs)
    want = ref(*xs)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    return spec, module


# ---- LeNet-5 ---------------------------------------------------------------------------


def hand_lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.Tanh(),
        nn.Linear(120, 84), nn.Tanh(),
        nn.Linear(84, 10),
    )


def test_lenet_matches_hand_written_torch_exactly():
    spec = nnspec.load(str(LENET))
    module = build_module(spec, seed=7, dtype=torch.float64)
    assert isinstance(module, SpecModule)
    assert list(module.state_dict()) == list(spec.state_shapes())
    assert sum(p.numel() for p in module.parameters()) == 61_706
    ref = hand_lenet().double()
    with torch.no_grad():
        for mine, theirs in zip(module.parameters(), ref.parameters(), strict=True):
            assert mine.shape == theirs.shape
            theirs.copy_(mine)
    x = torch.from_numpy(rand(4, 1, 32, 32))
    with torch.no_grad():
        assert torch.equal(module(x), ref(x))


def test_lenet_matches_numpy_and_seeds_are_reproducible():
    spec = nnspec.load(str(LENET))
    a = build_module(spec, seed=11, dtype=torch.float64)
    b = build_module(spec, seed=11, dtype=torch.float64)
    c = build_module(spec, seed=12, dtype=torch.float64)
    drawn = nninit.draw(spec.state_shapes(), 11, np.float64)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
        np.testing.assert_array_equal(v.numpy(), drawn[k])
    assert not torch.equal(a.conv_0.weight, c.conv_0.weight)
    assert build_module(spec).seed is not None
    x = rand(3, 1, 32, 32)
    np.testing.assert_allclose(run_torch(a, [x]), NumpyModel(spec, seed=11, dtype=np.float64)(x),
                               rtol=1e-10, atol=1e-12)


# ---- against the NumPy interpreter -----------------------------------------------------


@pytest.mark.parametrize("model, shapes", [("Convs", [(2, 4, 11, 10)]), ("Seq", [(3, 3, 20)])])
def test_convolutions(model, shapes):
    compare(CONVS, model, shapes)


@pytest.mark.parametrize("model", ["Pools", "Dilated"])
def test_pooling(model):
    compare(POOLS, model, [(2, 3, 13, 12)])


def test_activations():
    compare(ACTS, None, [(3, 5, 7)])


def test_residual_block_mul_reshape_dense3d():
    spec, module = compare(MISC, None, [(2, 4, 6, 6), (2, 4, 6, 6)])
    assert list(module.state_dict()) == list(spec.state_shapes())
    assert "layer1.1.conv_1.weight" in module.state_dict()
    compare(MISC, None, [(5, 4, 6, 6), (5, 4, 6, 6)])  # another batch size


def test_trace_matches_numpy_trace():
    spec = nnspec.loads(MISC, "t.nn")
    module = build_module(spec, seed=4, dtype=torch.float64)
    xs = [rand(2, 4, 6, 6, seed=1), rand(2, 4, 6, 6, seed=2)]
    want = NumpyModel(spec, seed=4, dtype=np.float64)(*xs, trace=True)
    with torch.no_grad():
        got = module.trace(*[torch.from_numpy(x) for x in xs])
    assert list(got) == list(want)
    for k, v in want.items():
        np.testing.assert_allclose(got[k].numpy(), v, rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("model", ["Fl", "Ce"])
@pytest.mark.parametrize("h", [6, 9])
def test_symbolic_floor_and_ceil_dims(model, h):
    compare(FLOORS, model, [(2, 4 if model == "Fl" else 6, h)])


def test_dim_functions_match_dim_evaluate():
    from nnspec.backends.torch.calls import _dim_fn
    from nnspec.core.dims import Dim

    for text in ["2*N + floor((H - 1)/2) - ceil(W/3)", "N*H - 3", "-N + 5",
                 "3*floor(H/2)*ceil((W+1)/4)", "N - ceil(H/2)", "7"]:
        d = Dim.parse(text)
        f = _dim_fn(d)
        for n, h, w in [(1, 1, 1), (2, 7, 5), (3, 8, 12), (5, 13, 2)]:
            env = {"N": n, "H": h, "W": w}
            assert f(env) == d.evaluate(env), (text, env)


def random_norm_params(spec, seed=5):
    params = nninit.draw(spec.state_shapes(), seed, np.float64)
    rng = np.random.default_rng(seed)
    for k, v in params.items():
        if k.endswith(("running_mean", ".weight", ".bias")):
            params[k] = rng.standard_normal(v.shape)
        elif k.endswith("running_var"):
            params[k] = rng.uniform(0.5, 2.0, v.shape)
        elif k.endswith("num_batches_tracked"):
            params[k] = np.array(3, dtype=np.int64)
    return params


def test_norms_eval_mode():
    spec = nnspec.loads(NORMS, "t.nn")
    params = random_norm_params(spec)
    _, module = compare(NORMS, None, [(3, 4, 6, 5)], params=params)
    assert module.state_dict()["batchnorm_0.num_batches_tracked"].dtype == torch.int64


def test_batchnorm_train_mode_updates_running_stats():
    spec = nnspec.loads(NORMS, "t.nn")
    params = random_norm_params(spec)
    module = build_module(spec, params=params, dtype=torch.float64).train()
    ref = NumpyModel(spec, params=params, dtype=np.float64)
    for step in range(2):
        x = rand(6, 4, 6, 5, seed=step)
        got = module(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(got, ref(x, training=True), rtol=1e-10, atol=1e-12)
    state = module.state_dict()
    for k, v in ref.params.items():
        np.testing.assert_allclose(state[k].numpy(), v, rtol=1e-10, atol=1e-12, err_msg=k)
    assert int(state["batchnorm_1.num_batches_tracked"]) == 5


def test_params_as_tensors_and_bad_params():
    spec = nnspec.load(str(LENET))
    a = build_module(spec, seed=1)
    b = build_module(spec, params=a.state_dict())
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    with pytest.raises(KeyError):
        build_module(spec, params={})
    bad = dict(a.state_dict())
    bad["conv_0.bias"] = torch.zeros(5)
    with pytest.raises(ValueError, match="conv_0.bias"):
        build_module(spec, params=bad)


# ---- emitted source ----------------------------------------------------------------------


def emit_and_check(spec, tmp_path, shapes, name, model=None):
    module = build_module(spec, model, seed=2, dtype=torch.float64).eval()
    path = tmp_path / f"{name}.py"
    text = write_source(spec, path, model)
    assert path.read_text() == text == emit_source(spec, model)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
    assert "eval(" not in text and "exec(" not in text
    gen = import_source(path, name)
    cls = getattr(gen, spec.model(model).name)
    other = cls().double().eval()
    assert list(other.state_dict()) == list(module.state_dict())
    other.load_state_dict(module.state_dict())
    xs = [torch.from_numpy(rand(*s, seed=i)) for i, s in enumerate(shapes)]
    with torch.no_grad():
        assert torch.equal(other(*xs), module(*xs))
    return text


def test_emit_lenet(tmp_path):
    spec = nnspec.load(str(LENET))
    text = emit_and_check(spec, tmp_path, [(2, 1, 32, 32)], "gen_lenet")
    assert "class LeNet5(nn.Module):" in text
    assert "lenet5.nn:3  conv 6 k=5  -> [N, 6, 28, 28]" in text
    imports = [ln for ln in text.splitlines() if ln.startswith(("import", "from"))]
    assert imports == ["import torch", "import torch.nn.functional as F", "from torch import nn"]
    # PyTorch's own default init: an instance's weights are in the default bounds
    gen = import_source(tmp_path / "gen_lenet.py", "gen_lenet2")
    w = gen.LeNet5().conv_0.weight
    assert w.abs().max() <= 1 / 5 and w.std() > 0.05


def test_emit_blocks_symbols_and_pads(tmp_path):
    text = emit_and_check(nnspec.loads(MISC, "t.nn"), tmp_path, [(2, 4, 6, 6), (2, 4, 6, 6)],
                          "gen_misc")
    assert "N = x.shape[0]\n" in text and "dims" not in text
    assert "reshape(N, 4, -1)" in text
    assert "self.layer1 = nn.ModuleList([Res(4) for _ in range(2)])" in text
    assert "for layer in self.layer1:" in text
    sub = tmp_path / "convs"
    sub.mkdir()
    text = emit_and_check(nnspec.loads(CONVS, "t.nn"), sub, [(2, 4, 11, 10)], "gen_convs",
                          "Convs")
    assert "F.pad(x, (1, 2, 1, 2))" in text


def test_emit_floor_and_ceil_dims(tmp_path):
    spec = nnspec.loads(FLOORS, "t.nn")
    text = emit_and_check(spec, tmp_path, [(2, 4, 9)], "gen_floor", "Fl")
    assert "N, _, H = x.shape\n" in text
    assert ".reshape(N, 2, 2 * (H // 2))" in text
    sub = tmp_path / "ceil"
    sub.mkdir()
    text = emit_and_check(spec, sub, [(2, 6, 9)], "gen_ceil", "Ce")
    assert "2 * (-(-H // 2))" in text


def test_emit_non_default_init(tmp_path):
    spec = nnspec.loads(INITS, "t.nn")
    text = emit_and_check(spec, tmp_path, [(2, 3, 6, 6)], "gen_init")
    assert 'nn.init.kaiming_uniform_(self.conv_0.weight, nonlinearity="relu")' in text
    assert "nn.init.zeros_(self.conv_0.bias)" in text
    assert "nn.init.xavier_uniform_(self.dense_0.weight)" in text
    assert "dense_0.bias" not in text  # init= sets weights; the bias keeps torch's default
    gen = import_source(tmp_path / "gen_init.py", "gen_init2")
    net = gen.Init()
    assert torch.count_nonzero(net.conv_0.bias) == 0
    bound = spec.state_shapes()["dense_0.weight"].init[1]
    assert 0.5 * bound < net.dense_0.weight.abs().max() <= bound


def test_emit_keyword_names(tmp_path):
    spec = nnspec.loads(KEYWORDS, "t.nn")
    keys = list(spec.state_shapes())
    assert keys[0] == "forward.weight" and "def.class.weight" in keys
    text = emit_and_check(spec, tmp_path, [(3, 4), (3, 4)], "gen_kw")
    assert "def forward(self, x, lambda_):" in text
    compare(KEYWORDS, None, [(3, 4), (3, 4)])


def test_emit_norms_and_activations(tmp_path):
    spec = nnspec.loads(NORMS, "t.nn")
    emit_and_check(spec, tmp_path, [(3, 4, 6, 5)], "gen_norms")
    sub = tmp_path / "acts"
    sub.mkdir()
    emit_and_check(nnspec.loads(ACTS, "t.nn"), sub, [(3, 5, 7)], "gen_acts")


# ---- dtypes, devices, compile, export ---------------------------------------------------


def test_dtypes_and_deepcopy():
    spec = nnspec.load(str(LENET))
    module = build_module(spec, seed=0)
    x = torch.from_numpy(rand(2, 1, 32, 32)).float()
    with torch.no_grad():
        y32 = module(x)
        y64 = module.double()(x.double())
        assert y64.dtype == torch.float64
        torch.testing.assert_close(y64.float(), y32, rtol=1e-4, atol=1e-5)
        y16 = module.to(torch.bfloat16)(x.to(torch.bfloat16))
        assert y16.dtype == torch.bfloat16
        torch.testing.assert_close(y16.float(), y32, rtol=0.1, atol=0.1)
        direct = build_module(spec, seed=0, dtype=torch.bfloat16)
        assert direct.conv_0.weight.dtype == torch.bfloat16
        assert direct.state_dict()["dense_0.bias"].dtype == torch.bfloat16
        torch.testing.assert_close(direct(x.to(torch.bfloat16)), y16)
        before = module.float()(x)
        twin = copy.deepcopy(module)
        torch.testing.assert_close(twin(x), before)
        twin.conv_0.weight.zero_()
        torch.testing.assert_close(module(x), before)
    if torch.cuda.is_available():
        with torch.no_grad():
            torch.testing.assert_close(module.to("cuda")(x.cuda()).cpu(), y32,
                                       rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch-internal (inductor imports)
def test_torch_compile_matches():
    spec = nnspec.loads(MLP, "t.nn")
    module = build_module(spec, seed=0).eval()
    compiled = torch.compile(module, fullgraph=True)
    x = torch.from_numpy(rand(5, 8)).float()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), module(x), rtol=1e-5, atol=1e-6)


def test_torch_export_dynamic_batch():
    spec = nnspec.loads(MLP, "t.nn")
    module = build_module(spec, seed=0).eval()
    batch = torch.export.Dim("batch", min=2, max=1024)
    ep = torch.export.export(module, (torch.randn(4, 8),), dynamic_shapes=(({0: batch},),))
    assert ep.module()(torch.randn(4, 8)).shape == (4, 3)
    for n in (3, 9):
        x = torch.randn(n, 8)
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(x), module(x))
    # the module names its own dynamic dims (one torch.export.Dim per symbol)
    misc = build_module(nnspec.loads(MISC, "t.nn"), seed=0).eval()
    xs = (torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6))
    ep = torch.export.export(misc, xs, dynamic_shapes=misc.dynamic_shapes(N=(1, 64)))
    for n in (3, 5):
        xs = (torch.randn(n, 4, 6, 6), torch.randn(n, 4, 6, 6))
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(*xs), misc(*xs))


# ---- errors name the spec location ------------------------------------------------------


def test_layer_error_names_spec_line():
    spec = nnspec.loads("model E(x: [N, 4, H, W]) {\n    relu\n    conv 4 k=3\n"
                        "    avgpool global | flatten\n}\n", "e.nn")
    module = build_module(spec, seed=0)
    module(torch.randn(2, 4, 5, 5))
    with pytest.raises(RuntimeError) as info:
        module(torch.randn(2, 4, 2, 4))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "e.nn:3: conv 4 k=3" in notes and "conv_0" in notes
    assert module.line_map[("e.nn", 4)] == ["avgpool_0", "flatten_0"]


def test_input_error_names_input():
    spec = nnspec.load(str(LENET))
    module = build_module(spec, seed=0)
    with pytest.raises(InputError) as info:
        module(torch.randn(2, 3, 32, 32))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "lenet5.nn:2" in notes
    with pytest.raises(InputError):
        module(torch.randn(2, 32, 32))
    misc = build_module(nnspec.loads(MISC, "t.nn"), seed=0)
    with pytest.raises(InputError, match="symbol N is 2 elsewhere but 3"):
        misc(torch.randn(2, 4, 6, 6), torch.randn(3, 4, 6, 6))


def test_write_source_is_atomic_and_keeps_old_file_on_error(tmp_path, monkeypatch):
    spec = nnspec.load(str(LENET))
    path = tmp_path / "out.py"
    path.write_text("old\n")

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_source(spec, path)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.py"]
