"""Cross-check every bundled spec: both backends, shared weights, layer by layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.backends.weights import TooLarge

torch = pytest.importorskip("torch")
from nnspec.tools.crosscheck import crosscheck, crosscheck_grad  # noqa: E402

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.nn"))
# the 572x572 U-Net needs ~14 GB and ~0.6 TFLOP in float64 at N=2; test_generative_specs.py
# cross-checks a small U-Net made of the same blocks instead
# the LLMs at their published sizes (GPT-2 alone takes 19 s and 2.3 GB here): test_llms.py
# cross-checks each spec at a tiny configuration set with --const; ViT-B/16 likewise
# (test_param.py, against torchvision's VisionTransformer)
TOO_LARGE = {"unet.nn", "gpt2.nn", "bert_base.nn", "llama2_7b.nn", "vit_b16.nn"}
# one image is enough for the 224-pixel networks and the 100 M-parameter Transformer: the
# batch's accumulation is checked on the others, at N = 2
ONE_IMAGE = {"vgg16.nn", "alexnet.nn", "resnet18.nn", "transformer_base.nn"}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_spec_agrees_in_float64(path):
    if path.name in TOO_LARGE:
        pytest.skip("too large for the suite; its blocks are cross-checked on a small input")
    spec = nnspec.load(str(path))
    for name in spec.model_names:
        try:
            report = crosscheck(spec, name, "float64", seed=0,
                                dims={"N": 1 if path.name in ONE_IMAGE else 2})
        except TooLarge:
            assert path.name == "dense_1e12.nn"
            continue
        assert report.ok, report.render()
        assert len(report.rows) == len(spec.model(name).nodes)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_spec_gradients_agree_in_float64(path):
    """crosscheck --grad: every parameter's and float input's gradient, NumPy's reference
    backward against torch autograd, within the float64 tolerance (rel 1e-8)."""
    if path.name in TOO_LARGE:
        pytest.skip("too large for the suite; test_generative_specs.py checks a small U-Net")
    spec = nnspec.load(str(path))
    for name in spec.model_names:
        try:
            report = crosscheck_grad(spec, name, "float64", seed=0,
                                     dims={"N": 1 if path.name in ONE_IMAGE else 2})
        except TooLarge:
            assert path.name == "dense_1e12.nn"
            continue
        assert report.ok, report.render()
        trainable = {k for k, w in spec.state_shapes(name).items() if w.trainable and not w.tied}
        assert {r.name for r in report.params if r.kind == "param"} == trainable


def test_float32_tolerance_and_report():
    spec = nnspec.load("specs/lenet5.nn")
    report = crosscheck(spec, "LeNet5", "float32", seed=3)
    assert report.ok and report.tolerance == 1e-4
    text = report.render()
    assert "conv_0" in text and "ok: both backends agree" in text


def test_a_divergence_is_located(monkeypatch):
    from nnspec.layers import REGISTRY

    spec = nnspec.load("specs/lenet5.nn")
    tanh = REGISTRY["tanh"]
    monkeypatch.setattr(type(tanh), "numpy", lambda self, p, w, xs, ctx: np.tanh(xs[0]) * 1.001)
    report = crosscheck(spec, "LeNet5", "float64")
    assert not report.ok
    assert report.first_divergence.name == "tanh_0"
    assert "first divergence at tanh_0 [tanh] (spec line 4)" in report.render()
