"""The emitted modules at run time beyond their outputs: gradients equal to build_module's
(the in-place ReLU and ``+=`` change nothing autograd needs), a bfloat16 autocast forward on
the CPU, and the convolutional networks in channels_last memory format."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from _util import import_source
import nnspec
from nnspec.backends.emit.emitter import emit_source

torch = pytest.importorskip("torch")
from nnspec.backends.torch import build_module  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.nn"))
# above this many parameters a model is not run here (CPU time); its outputs and keys are
# checked by test_emit_source on the meta device
MAX_PARAMS = 15_000_000
SMALL = {"N": 2, "T": 3, "S": 4, "H": 16, "W": 16}
# the big specs at the small sizes their headers give (--const): run here like the others
SMALL_CONSTS = {
    "gpt2.nn": {"layers": 2, "d": 32, "heads": 4, "vocab": 100, "context": 16},
    "bert_base.nn": {"layers": 2, "d": 32, "heads": 4, "ff": 64, "vocab": 100,
                     "positions": 16},
    "llama2_7b.nn": {"layers": 2, "d": 64, "heads": 4, "kv_heads": 2, "ff": 128,
                     "vocab": 100},
    "vit_b16.nn": {"image_size": 32, "num_layers": 2, "num_heads": 2, "hidden_dim": 16,
                   "mlp_dim": 32},
    "causal_lm.nn": {"d": 32, "heads": 4, "layers": 2, "context": 16},
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """spec file name -> (spec, imported module of every model's emitted source)."""
    tmp = tmp_path_factory.mktemp("gen")
    cwd = os.getcwd()
    os.chdir(ROOT)
    out = {}
    try:
        for p in SPECS:
            spec = nnspec.load(f"specs/{p.name}", consts=SMALL_CONSTS.get(p.name))
            file = tmp / f"rt_{p.stem}.py"
            file.write_text(emit_source(spec, all_models=True))
            out[p.name] = (spec, import_source(file, f"rt_{p.stem}"))
    finally:
        os.chdir(cwd)
    return out


def _inputs(spec, name, dtype=torch.float64):
    rng = np.random.default_rng(0)
    out = []
    for inp in spec.model(name).inputs:
        env = {s: SMALL.get(s, 2) for d in inp.dims() for s in d.symbols()}
        shape = [d.evaluate(env) for d in inp.dims()]
        if inp.dtype == "int":
            out.append(torch.from_numpy(rng.integers(0, 2, size=shape)))
        else:
            out.append(torch.from_numpy(rng.standard_normal(shape)).to(dtype))
    return out


def _pair(spec, gen, name, dtype=torch.float64):
    ref = build_module(spec, name, seed=0, dtype=dtype)
    net = getattr(gen, name)().to(dtype)
    net.load_state_dict(ref.state_dict())
    return ref, net


def _flat(v):
    return list(v) if isinstance(v, (tuple, list)) else [v]


def _small(spec, name) -> bool:
    return spec.param_count(name) <= MAX_PARAMS


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_gradients_equal_build_modules(path, generated):
    """Training mode, float64: the same loss gives the same gradients in every parameter
    and input, so no in-place op overwrote a tensor autograd saved."""
    spec, gen = generated[path.name]
    ran = False
    for name in spec.model_names:
        if not _small(spec, name):
            continue
        ref, net = _pair(spec, gen, name)
        grads = []
        for m in (ref, net):
            m.train()
            xs = [x.clone().requires_grad_(x.is_floating_point()) for x in _inputs(spec, name)]
            torch.manual_seed(0)  # dropout and sampling draw the same numbers
            outs = [o for o in _flat(m(*xs)) if o.is_floating_point()]
            if not outs:
                break
            torch.manual_seed(1)
            loss = sum((o * torch.randn_like(o)).sum() for o in outs)
            params = [p for p in m.parameters() if p.requires_grad]
            wrt = params + [x for x in xs if x.requires_grad]
            got = torch.autograd.grad(loss, wrt, allow_unused=True)
            grads.append([torch.zeros(()) if g is None else g for g in got])
        if len(grads) < 2:
            continue
        ran = True
        assert len(grads[0]) == len(grads[1])
        for a, b in zip(*grads):
            torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9)
    if not ran:
        pytest.skip("no model small enough, or none with a float output")


def test_the_resnet_runs_relu_and_the_residual_add_in_place(generated):
    spec, gen = generated["resnet18.nn"]
    src = (ROOT / "specs/resnet18.nn").read_text()
    assert src  # the spec is bundled
    text = emit_source(nnspec.load(str(ROOT / "specs/resnet18.nn")))
    assert "y = F.relu(y, inplace=True)" in text and "y += x" in text and "y += r" in text
    # a tanh's output is saved for its backward: never overwritten
    lenet = emit_source(nnspec.load(str(ROOT / "specs/lenet5.nn")))
    assert "inplace" not in lenet and "tanh_" not in lenet


def test_no_in_place_op_on_an_argument_or_a_value_read_again(tmp_path):
    text = """
block B(x) {
    y = x | relu
    z = x | dense 4 as fc
    a = z | relu
    return a + z
}
model M(x: [N, 4]) {
    r = x | relu
    B() as b
}
"""
    src = emit_source(nnspec.loads(text, "m.nn"))
    assert "inplace" not in src and "+=" not in src
    file = tmp_path / "m.py"
    file.write_text(src)
    gen = import_source(file, "inplace_m")
    spec = nnspec.loads(text, "m.nn")
    ref, net = _pair(spec, gen, "M")
    x = torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(net(x), ref(x))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_a_bfloat16_autocast_forward_runs_on_the_cpu(path, generated):
    spec, gen = generated[path.name]
    ran = False
    for name in spec.model_names:
        if not _small(spec, name):
            continue
        _, net = _pair(spec, gen, name, torch.float32)
        net.eval()
        xs = _inputs(spec, name, torch.float32)
        torch.manual_seed(0)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            outs = _flat(net(*xs))
        for o in outs:
            if o.is_floating_point():
                assert torch.isfinite(o.float()).all(), name
        ran = True
    if not ran:
        pytest.skip("every model is too large to run here")


CONV_NETS = ["lenet5.nn", "resnet18.nn", "unet.nn", "alexnet.nn", "cnn_small.nn",
             "conv_autoencoder.nn", "dcgan.nn", "superres.nn"]


@pytest.mark.parametrize("name", CONV_NETS)
def test_channels_last_gives_the_contiguous_outputs(name, generated):
    spec, gen = generated[name]
    model = spec.model_names[-1]
    if not _small(spec, model):
        pytest.skip("too large to run here")
    _, net = _pair(spec, gen, model, torch.float32)
    net.eval()
    xs = _inputs(spec, model, torch.float32)
    with torch.no_grad():
        want = _flat(net(*xs))
        net = net.to(memory_format=torch.channels_last)
        cl = [x.to(memory_format=torch.channels_last) if x.dim() == 4 else x for x in xs]
        assert any(x.dim() == 4 for x in xs)
        got = _flat(net(*cl))
    for a, b in zip(want, got):
        torch.testing.assert_close(b.contiguous(), a, rtol=1e-4, atol=1e-4)
