"""The emitted PyTorch source (nnspec.backends.emit): written without torch, one class per block,
repetitions as nn.ModuleList and a loop, lines within 100 columns, lint-clean, and for
every bundled spec the same state_dict keys and outputs as the in-process build_module."""

from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _util import import_source
import nnspec
from nnspec.backends.emit import constructors, folding, layout
from nnspec.backends.emit.constructors import NN_SIGNATURES
from nnspec.backends.emit.emitter import emit_source
from nnspec.backends.emit.helpers import _helper_def, _helper_module
from nnspec.backends.plans import plans
from nnspec.layers import REGISTRY
from nnspec.layers.base import TorchModule

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.nn"))
# above this many parameters a model's outputs are not compared here (its keys and shapes
# still are, on the meta device): the large ones are cross-checked elsewhere
OUTPUT_PARAMS = 15_000_000
# symbols at small sizes: 16 for the spatial ones (ESPCN's H, W), 3 time steps
SMALL = {"N": 2, "T": 3, "S": 4, "H": 16, "W": 16}


def _blocks_used(spec, models) -> set[str]:
    return {c[0] for m in models for n in spec.model(m).nodes for c in n.called_from}


@pytest.fixture(scope="module")
def sources():
    """spec file name -> (spec, emitted source of every model), loaded from the repository
    root with a relative path, as on the command line."""
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        specs = {p.name: nnspec.load(f"specs/{p.name}") for p in SPECS}
        return {k: (s, emit_source(s, all_models=True)) for k, s in specs.items()}
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_spec_reads_like_hand_written_pytorch(path, sources):
    spec, src = sources[path.name]
    ast.parse(src)
    lines = src.splitlines()
    assert max(len(x) for x in lines) <= layout.WIDTH
    assert str(ROOT) not in src and "/stdlib/" not in src  # never an absolute path
    assert lines[0].startswith(f"# {spec.model_names[0]}") and f"specs/{path.name}" in lines[0]
    classes = re.findall(r"^class (\w+)\(nn\.Module\):", src, re.M)
    for block in _blocks_used(spec, spec.model_names):
        assert block in classes, f"block {block} has no class"
    assert classes[-len(spec.model_names):] == spec.model_names
    # no generated container modules or digit attributes: blocks are classes, repetitions
    # ModuleLists
    assert "nn.Module()" not in src and 'getattr(self' not in src
    # every spec line a layer comes from is named in a comment (the spec's own file as
    # given, an imported one by its name)
    for m in spec.model_names:
        for node in spec.model(m).nodes:
            file = f"specs/{path.name}" if node.span[0] == f"specs/{path.name}" \
                else os.path.basename(node.span[0])
            assert f"# {file}:{node.span[1]}  " in src, (node.name, node.span)


def test_the_emitted_files_are_ruff_clean(sources, tmp_path):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install ruff)")
    for name, (_, src) in sources.items():
        (tmp_path / f"gen_{name[:-3]}.py").write_text(src)
    r = subprocess.run([ruff, "check", "--isolated", "--no-cache", "--line-length", "100",
                        "--extend-select", "E,W,F,I,B", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    # ruff really looks at them: an unused import is found
    (tmp_path / "bad.py").write_text("import os\n")
    r = subprocess.run([ruff, "check", "--isolated", "--no-cache", str(tmp_path / "bad.py")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "F401" in r.stdout


def _inputs(spec, name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    out = []
    for inp in spec.model(name).inputs:
        env = {s: SMALL.get(s, 2) for d in inp.dims() for s in d.symbols()}
        shape = [d.evaluate(env) for d in inp.dims()]
        if inp.dtype == "int":
            out.append(torch.from_numpy(rng.integers(0, 2, size=shape)))
        else:
            out.append(torch.from_numpy(rng.standard_normal(shape)))
    return out


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_spec_has_build_modules_keys_and_outputs(path, sources, tmp_path):
    torch = pytest.importorskip("torch")
    from nnspec.backends.torch import build_module

    spec, src = sources[path.name]
    file = tmp_path / f"gen_{path.stem}.py"
    file.write_text(src)
    gen = import_source(file, f"gen_{path.stem}")
    for name in spec.model_names:
        with torch.device("meta"):  # nothing allocated: dense_1e12 has 10^12 weights
            net = getattr(gen, name)()
        state = net.state_dict()
        shapes = spec.state_shapes(name)
        assert list(state) == list(shapes)
        assert [tuple(t.shape) for t in state.values()] == [w.shape for w in shapes.values()]
        if spec.param_count(name) > OUTPUT_PARAMS:
            continue
        ref = build_module(spec, name, seed=0, dtype=torch.float64).eval()
        assert list(ref.state_dict()) == list(state)
        net.load_state_dict(ref.state_dict(), assign=True)
        net.eval()
        xs = _inputs(spec, name)
        with torch.no_grad():
            torch.manual_seed(0)  # a layer that samples (SampledDBN): the same noise
            want = ref(*xs)
            torch.manual_seed(0)
            got = net(*xs)
        for a, b in zip(*(v if isinstance(v, tuple) else (v,) for v in (want, got))):
            torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_blocks_become_classes_with_their_parameters(sources):
    _, src = sources["resnet18.nn"]
    assert "class Basic(nn.Module):\n    def __init__(self, c):" in src
    assert "self.conv1 = nn.Conv2d(c, c, kernel_size=3, padding=1, bias=False)" in src
    assert "class Layer(nn.Module):\n    def __init__(self, in_channels, c):" in src
    assert "self.layer1 = nn.ModuleList([Basic(64) for _ in range(2)])" in src
    assert "        for layer in self.layer1:\n            x = layer(x)\n" in src
    assert "self.layer2 = Layer(in_channels=64, c=128)" in src
    # the spec's value names: y = x | conv ..., r = x | conv ...
    assert "y = self.conv1(x)" in src and "r = self.downsample_conv(x)" in src
    _, src = sources["dcgan.nn"]
    # a keyword that is at its default in one instance and not in another is a parameter,
    # named after the block's parameter that gives it
    assert "self.up1 = Up(in_channels=100, c=512, stride=1, pad=0)" in src
    assert "stride=stride, padding=pad, bias=False" in src
    _, src = sources["transformer_base.nn"]
    assert "class DecoderLayer(nn.Module):\n    def __init__(self, d, heads, ff, p):" in src
    assert "[DecoderLayer(d=d, heads=heads, ff=ff, p=p) for _ in range(n)]" in src
    assert "        for layer in self.layers:\n            x = layer(x, mem)\n" in src
    assert "def forward(self, x, mem):" in src
    assert "(with blocks\n#   from transformer.nn)." in src
    _, src = sources["causal_lm.nn"]
    assert "self.h = nn.ModuleList([GPTBlock(d=512, heads=8, p=0.1) for _ in range(6)])" in src
    assert "for layer in self.h:" in src


def test_a_repeated_layer_is_a_module_list():
    text = "model M(x: [N, 4]) {\n    dense 4 * 3 as fc\n    relu\n}\n"
    src = emit_source(nnspec.loads(text, "m.nn"))
    assert "self.fc = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])" in src
    assert "x = self.fc[2](x)" in src


def _same_as_build_module(text: str, tmp_path, tag: str) -> str:
    """The emitted source of the spec's last model, after checking that with
    build_module's state_dict it has the same keys and computes the same outputs."""
    torch = pytest.importorskip("torch")
    from nnspec.backends.torch import build_module

    spec = nnspec.loads(text, f"{tag}.nn")
    src = emit_source(spec)
    ast.parse(src)
    assert max(len(x) for x in src.splitlines()) <= layout.WIDTH
    file = tmp_path / f"gen_{tag}.py"
    file.write_text(src)
    name = spec.model().name
    net = getattr(import_source(file, f"gen_{tag}"), name)()
    ref = build_module(spec, name, seed=0, dtype=torch.float64).eval()
    assert list(net.state_dict()) == list(ref.state_dict())
    net.load_state_dict(ref.state_dict(), assign=True)
    net.eval()
    xs = _inputs(spec, name)
    with torch.no_grad():
        torch.testing.assert_close(net(*xs), ref(*xs), rtol=0, atol=0)
    return src


def _classes(src: str) -> list[str]:
    return re.findall(r"^class (\w+)\(nn\.Module\):", src, re.M)


SMALL_UNET = """
block DoubleConv(x, c) {
    conv c k=3 as conv1 | relu | conv c k=3 as conv2 | relu
}
block Up(x, skip, c) {
    u = x | convtranspose c k=2 s=2 as up
    s = crop_like(skip, u)
    concat(s, u, dim=1) | DoubleConv(c) as conv
}
model SmallUNet(x: [N, 1, 44, 44]) -> [N, 2, 4, 4] {
    x1 = x | DoubleConv(4) as inc                    : [N, 4, 40, 40]
    x2 = x1 | maxpool k=2 s=2 | DoubleConv(8) as d1  : [N, 8, 16, 16]
    x3 = x2 | maxpool k=2 s=2 | DoubleConv(16) as d2 : [N, 16, 4, 4]
    y = Up(x3, x2, 8) as up1                         : [N, 8, 4, 4]
    y = Up(y, x1, 4) as up2                          : [N, 4, 4, 4]
    conv 2 k=1 as outc
}
"""


def test_unet_up_is_one_class_with_its_crop_from_the_shapes(sources, tmp_path):
    _, src = sources["unet.nn"]  # the crop of each Up's skip is read from the tensors
    assert _classes(src) == ["DoubleConv", "Down", "Up", "UNet"]
    # an Up's input has twice its channels: the constructor says so
    assert "class Up(nn.Module):\n    def __init__(self, c):\n" in src
    assert "self.up = nn.ConvTranspose2d(2 * c, c, kernel_size=2, stride=2)" in src
    assert "(skip.shape[2] - u.shape[2]) // 2 : (skip.shape[2] + u.shape[2]) // 2," in src
    assert "self.up1 = Up(512)" in src
    assert "self.up4 = Up(64)" in src
    src = _same_as_build_module(SMALL_UNET, tmp_path, "small_unet")
    assert _classes(src) == ["DoubleConv", "Up", "SmallUNet"]
    assert "self.up1 = Up(8)" in src
    assert "self.up2 = Up(4)" in src


def test_a_literal_kept_on_self_is_never_a_childs_name(tmp_path):
    text = """
block Cut(x, n) {
    y = x[..., 2:n + 2, 2:n + 2]
    y | conv 2 k=1 as stop
}
model M(a: [N, 2, 12, 12]) {
    p = Cut(a, 8) as one
    Cut(p, 4) as two
}
"""
    src = _same_as_build_module(text, tmp_path, "cut")
    assert _classes(src) == ["Cut", "M"]
    assert "self.stop_ = stop_" in src and "self.stop = nn.Conv2d(2, 2, kernel_size=1)" in src
    assert "def __init__(self, stop_):" in src
    assert "y = x[..., 2 : self.stop_, 2 : self.stop_]" in src
    assert "self.one = Cut(10)" in src and "self.two = Cut(6)" in src


SMALL_VGG = """
block ConvRelu(x, c) {
    conv c k=3 p=1 as conv | relu
}
block Stage(x, c, n) {
    ConvRelu(c) * n | maxpool k=2 s=2
}
model SmallVGG(x: [N, 3, 16, 16]) -> [N, 5] {
    Stage(4, 1) as stage1
    Stage(6, 2) as stage2
    Stage(8, 3) as stage3
    flatten | dense 5 as fc
}
"""
STAGE = """class Stage(nn.Module):
    def __init__(self, in_channels, c, n):
        super().__init__()
        self.n = n
        for i in range(n):
            self.add_module(
                f"convrelu_{i}", ConvRelu(in_channels=in_channels if i == 0 else c, c=c)
            )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x):
        for i in range(self.n):  # """


def test_vgg_stage_is_one_class_with_a_loop_over_its_convolutions(sources, tmp_path):
    _, src = sources["vgg16.nn"]  # Stage(c, n) with n = 2 and n = 3 convolutions
    assert _classes(src) == ["ConvRelu", "Stage", "VGG16"]
    assert STAGE in src
    assert '            x = self.get_submodule(f"convrelu_{i}")(x)\n' in src
    assert "self.stage1 = Stage(in_channels=3, c=64, n=2)" in src
    assert "self.stage3 = Stage(in_channels=128, c=256, n=3)" in src
    # one convolution in a stage too: no parameter is made for the later ones' arguments
    src = _same_as_build_module(SMALL_VGG, tmp_path, "small_vgg")
    assert _classes(src) == ["ConvRelu", "Stage", "SmallVGG"] and STAGE in src
    assert "self.stage1 = Stage(in_channels=3, c=4, n=1)" in src
    assert "self.stage3 = Stage(in_channels=6, c=8, n=3)" in src


def test_a_loop_count_follows_the_block_parameter_it_comes_from(tmp_path):
    text = """
block Bottleneck(x, c) {
    y = x | conv c k=1 bias=false as conv1 | batchnorm as bn1 | relu
          | conv (4 * c) k=1 bias=false as conv3 | batchnorm as bn3
    return relu(y + x)
}
block Down(x, c, stride=2) {
    y = x | conv c k=3 s=stride p=1 bias=false as conv1 | batchnorm as bn1 | relu
          | conv (4 * c) k=1 bias=false as conv3 | batchnorm as bn3
    r = x | conv (4 * c) k=1 s=stride bias=false as downsample
    return relu(y + r)
}
block Stage(x, c, n, stride=2) {
    Down(c, stride) | Bottleneck(c) * (n - 1)
}
model R(x: [N, 3, 16, 16]) {
    Stage(2, 3, stride=1) as layer1
    Stage(3, 4) as layer2
    Stage(4, 2) as layer3
    avgpool global | flatten | dense 5 as fc
}
"""
    src = _same_as_build_module(text, tmp_path, "bottlenecks")
    assert _classes(src) == ["Down", "Bottleneck", "Stage", "R"]
    assert "    def __init__(self, in_channels, c, n, stride):\n" in src
    # a Bottleneck's input has 4 * c channels: its constructor takes c alone
    assert "self.conv3 = nn.Conv2d(c, 4 * c, kernel_size=1, bias=False)" in src
    assert "        for i in range(n - 1):\n            self.add_module(f\"bottleneck_{i}\", " \
           "Bottleneck(c))\n" in src
    assert "        for i in range(self.n - 1):  # " in src
    assert "self.layer1 = Stage(in_channels=3, c=2, n=3, stride=1)" in src


def test_a_module_list_of_another_length_is_the_same_class(tmp_path):
    text = """
block L(x) {
    dense 4 | relu
}
block Tower(x, n) {
    L() * n as layers
    dense 4 as out
}
model M(x: [N, 4]) {
    Tower(2) as a | Tower(3) as b
}
"""
    src = _same_as_build_module(text, tmp_path, "towers")
    assert _classes(src) == ["L", "Tower", "M"]
    assert "self.layers = nn.ModuleList([L() for _ in range(n)])" in src
    assert "self.a = Tower(2)" in src and "self.b = Tower(3)" in src


def test_instances_that_differ_in_structure_get_a_class_each(tmp_path):
    text = """
block Norm(x) {
    batchnorm | relu
}
model M(x: [N, 4, 3, 3]) {
    Norm() as a | flatten | dense 6 | Norm() as b
}
"""
    src = _same_as_build_module(text, tmp_path, "norms")  # BatchNorm2d, then BatchNorm1d
    assert _classes(src) == ["Norm", "Norm2", "M"]
    assert "self.a = Norm()" in src and "self.b = Norm2()" in src


def test_forward_literals_are_named_by_where_they_stand():
    got = folding._numbers('y = x[..., 4:-60, ::2, 3] + dims["H2"] * 0.5')
    assert [(n.text, n.name) for n in got] == [("4", "start"), ("-60", "stop"),
                                                ("2", "step"), ("3", "index"),
                                                ("0.5", "value")]
    got = folding._numbers("h = F.leaky_relu(self.conv1(x), 0.2, negative_slope=1e-05)")
    assert [(n.text, n.name) for n in got] == [("0.2", "leaky_relu_arg"),
                                                ("1e-05", "negative_slope")]
    assert [n.name for n in folding._numbers("for i in range(1, 7 - 1):")] == ["n", "n", "n"]
    assert folding._numbers("v2 = self.layers[0](v1, dims)")[0].name == "index"


def test_the_header_never_names_an_absolute_path(tmp_path):
    spec = nnspec.load(str(ROOT / "specs" / "lenet5.nn"))
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        assert "from specs/lenet5.nn." in emit_source(spec)
        os.chdir(tmp_path)  # not below: the file's name alone
        src = emit_source(spec)
    finally:
        os.chdir(cwd)
    assert "from lenet5.nn." in src and "lenet5.nn:3  conv 6 k=5" in src
    assert str(ROOT) not in src


def test_compile_never_imports_torch(tmp_path):
    out = tmp_path / "out.py"
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "nnspec", "compile",
                        "specs/lenet5.nn", "-o", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    assert "nnspec.backends.emit" in imported and "nnspec.tools.cli" in imported
    assert not any(m == "torch" or m.startswith("torch.") for m in imported)
    assert "class LeNet5(nn.Module):" in out.read_text()


def test_the_emitter_module_never_imports_torch_or_numpy(tmp_path):
    code = ("import sys, nnspec\nfrom nnspec.backends.emit import write_source\n"
            "for f in ('transformer_base', 'gru_sentiment', 'superres', 'causal_lm'):\n"
            "    write_source(nnspec.load(f'specs/{f}.nn'), sys.argv[1])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.py")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_the_frozen_signatures_are_torchs():
    torch = pytest.importorskip("torch")
    from nnspec.backends.torch.calls import _module_cls

    for cls_name, frozen in NN_SIGNATURES.items():
        cls = _module_cls(TorchModule(cls_name))
        try:
            params = inspect.signature(cls.__init__).parameters
        except (TypeError, ValueError):
            params = {}
        want = tuple((k, constructors._R if p.default is inspect.Parameter.empty else p.default)
                     for k, p in params.items() if k != "self"
                     and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        assert frozen == want, cls_name
        assert isinstance(cls, type) and issubclass(cls, torch.nn.Module)


def test_every_module_class_a_layer_builds_is_known():
    used = set()
    for kind in REGISTRY.values():
        try:
            samples = kind.samples()
        except NotImplementedError:
            continue
        for params, ins in samples:
            p = kind.Params.model_validate(params)
            plan = kind.torch(p, ins, kind.infer(p, ins))
            if plan.module is not None:
                used.add(plan.module.cls)
    for path in SPECS:
        spec = nnspec.load(str(path))
        for name in spec.model_names:
            used |= {plan.module.cls for _, _, plan in plans(spec, spec.model(name))
                     if plan.module is not None}
    used.discard("Parameter")  # param: written as nn.Parameter(torch.zeros(...)), no module
    assert used and used <= NN_SIGNATURES.keys(), sorted(used - NN_SIGNATURES.keys())


def test_helper_sources_are_read_without_importing_them():
    pytest.importorskip("torch")
    import importlib

    import nnspec.layers.torch

    helpers = sorted(p.stem for p in Path(nnspec.layers.torch.__file__).parent.glob("*.py")
                     if p.stem != "__init__")
    assert len(helpers) >= 6
    for mod_name in (f"nnspec.layers.torch.{h}" for h in helpers):
        mod = importlib.import_module(mod_name)
        defs = _helper_module(mod_name)
        assert defs
        for name, (src, _) in defs.items():
            assert src == inspect.getsource(getattr(mod, name)).rstrip(), name
    # a helper is copied after those it calls
    name, _, deps = _helper_def("nnspec.layers.torch.recurrent:ChoGRU")
    assert name == "ChoGRU" and all(d.startswith("nnspec.layers.torch.recurrent:") for d in deps)
    with pytest.raises(ValueError):
        _helper_def("os:system")


@pytest.mark.parametrize("code", [
    "self.conv1 = nn.ConvTranspose2d(in_channels, c, kernel_size=4, stride=stride, "
    "padding=pad, bias=False, dilation=(1, 2))",
    'self._modules["__register_a_rather_long_name_for_a_child_module_here__"] = '
    "nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])",
    "x = (a_rather_long_variable_name + another_rather_long_variable_name + yet_another + b)",
    'y = F.interpolate(x, size=(2 * dims["H"], dims["W"]), mode="nearest", '
    "align_corners=None, antialias=False)[..., 1:-1, 2:3]",
])
def test_long_lines_are_broken_without_changing_the_code(code):
    lines = layout._fit(code, 8)
    assert max(len(x) for x in lines) <= layout.WIDTH or len(lines) == 1
    assert ast.dump(ast.parse("\n".join(x.strip() for x in lines))) == \
        ast.dump(ast.parse(code))
