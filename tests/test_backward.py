"""The reference backward: every layer kind's gradients against central finite differences
(float64, on each of its registry samples, in eval and training mode), whole models against
torch autograd, and NumpyModel.vjp's contract (unused parameters get zeros, int inputs
None, a layer without backward is named)."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from nnspec.backends.numpy import NoBackward, NumpyModel
from nnspec.layers import REGISTRY, TensorType

from _gradcheck import check_autograd, check_kind

KINDS = sorted({k.name: k for k in REGISTRY.values()}.items())
WITH = [(n, k, i, s) for n, k in KINDS if k.has_backward for i, s in enumerate(k.samples())]


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name,kind,i,sample", WITH,
                         ids=[f"{n}-{i}" if i else n for n, _, i, _ in WITH])
def test_backward_matches_finite_differences(name, kind, i, sample, training):
    args, ins = sample
    if name == "embedding":  # torch gives the padding row no gradient, on purpose
        args = {k: v for k, v in args.items() if k != "padding"}
    prepare = None
    if name == "log":  # its domain: x > 0

        def prepare(xs, w):
            for x in xs:
                if np.issubdtype(x.dtype, np.floating):
                    x[...] = np.abs(x) + 0.5

    check_kind(kind, args, ins, training=training, prepare=prepare)


@pytest.mark.parametrize("name, args, shape", [
    ("leaky_relu", {"slope": 0.3}, (3, 5)),
    ("gelu", {}, (3, 5)),
    ("softmax", {"dim": 0}, (3, 4, 2)),
    ("log_softmax", {"dim": -1}, (3, 4, 2)),
    ("dense", {"out": 4}, (2, 3, 5)),
    ("dense", {"out": 2, "bias": False}, (5,)),
    ("batchnorm", {"affine": False}, (4, 3, 2)),
    ("batchnorm", {"track": False}, (4, 3)),
    ("batchnorm", {}, (2, 3, 2, 2, 2)),
    ("layernorm", {"axes": 1}, (2, 3, 4)),
    ("layernorm", {"affine": False}, (3, 4)),
    ("dropout", {"p": 0.6}, (4, 6)),
    ("flatten", {}, (2, 3, 4)),
])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_more_configurations(name, args, shape, training):
    check_kind(REGISTRY[name], args, [TensorType(shape)], training=training)


def test_mul_and_add_of_three_and_concat_of_unequal_parts():
    check_kind(REGISTRY["mul"], {}, [TensorType((2, 3))] * 3)
    check_kind(REGISTRY["add"], {}, [TensorType((2, 3))] * 3)
    check_kind(REGISTRY["concat"], {"dim": -1},
               [TensorType((2, 3)), TensorType((2, 1)), TensorType((2, 4))])


MLP = """
model M(x: [N, 6]) -> [N, 3] {
    h = x | dense 8 | batchnorm | gelu approximate=tanh
    a = h | dense 8 | layernorm | elu 0.5
    b = h | dense 8 bias=false | leaky_relu 0.1 | tanh
    y = relu(a + b) | dropout 0.3
    z = concat(y, (a * b), dim=1) | reshape [N, 4, 4] | flatten
    z | dense 3 | sigmoid | log_softmax
}
"""


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_a_model_agrees_with_torch_autograd(training):
    spec = nnspec.loads(MLP, "m.nn")
    x = np.random.default_rng(5).standard_normal((5, 6))
    if training:  # dropout's masks differ between the backends: compare without it
        spec = nnspec.loads(MLP.replace("| dropout 0.3", ""), "m.nn")
    got = check_autograd(spec, [x], training=training)
    assert set(got.params) == {k for k, w in spec.state_shapes().items() if w.trainable}


def test_vjp_contract():
    spec = nnspec.loads("""
model M(x: [N, 4], t: [N] int) -> [N, 2] {
    unused = x | dense 3
    x | dense 2
}
""", "m.nn")
    ref = NumpyModel(spec, dtype=np.float64)
    x = np.ones((2, 4))
    g = ref.vjp(x, np.zeros(2, np.int64), cotangent=np.ones((2, 2)))
    assert np.all(g.params["dense_0.weight"] == 0)  # the output does not depend on it
    assert g.inputs[1] is None
    np.testing.assert_allclose(g.params["dense_1.bias"], [2.0, 2.0])
    np.testing.assert_allclose(g.inputs[0], np.ones((2, 2)) @ ref.params["dense_1.weight"])
    with pytest.raises(Exception, match="cotangent must have the output's shape"):
        ref.vjp(x, np.zeros(2, np.int64), cotangent=np.ones((2, 3)))


def test_every_kind_has_its_backward():
    assert [n for n, k in KINDS if not k.has_backward] == []


def test_a_kind_without_backward_is_named(monkeypatch):
    """Every kind has a backward today; one without (a kind added later) is named."""
    from nnspec.layers.base import LayerKind

    kind = REGISTRY["tanh"]
    monkeypatch.setattr(type(kind), "backward", LayerKind.backward)
    assert not kind.has_backward
    spec = nnspec.loads("model M(x: [N, 3]) {\n    dense 4 | tanh\n}", "k.nn")
    with pytest.raises(NoBackward, match="no reference backward for: .*tanh"):
        NumpyModel(spec, dtype=np.float64).vjp(np.zeros((2, 3)), cotangent=0)


def test_crosscheck_grad_reports_every_parameter():
    from nnspec.tools.crosscheck import crosscheck_grad

    report = crosscheck_grad(nnspec.loads(MLP, "m.nn"), dims={"N": 4})
    assert report.ok, report.render()
    assert [r.name for r in report.params] == [
        k for k, w in nnspec.loads(MLP, "m.nn").state_shapes().items() if w.trainable
    ] + ["input x"]
    assert report.first_divergence is None
    assert "ok: NumPy's backward agrees with torch autograd" in report.render()


def test_crosscheck_grad_names_the_layer_whose_backward_is_wrong(monkeypatch):
    from nnspec.tools.crosscheck import crosscheck_grad

    tanh = REGISTRY["tanh"]
    right = type(tanh).backward
    monkeypatch.setattr(type(tanh), "backward",
                        lambda self, p, w, xs, y, gy, ctx: ([1.5 * right(self, p, w, xs, y, gy,
                                                                         ctx)[0][0]], {}))
    report = crosscheck_grad(nnspec.loads(MLP, "m.nn"), dims={"N": 4})
    assert not report.ok
    text = report.render()
    assert "FAILED: walking backwards, the gradient first diverges at the input of tanh_0 " \
           "[tanh] (spec line 5)" in text
    bad = {r.name for r in report.params if r.max_rel > report.tolerance}
    assert "dense_2.weight" in bad and "dense_3.weight" not in bad


def test_crosscheck_grad_from_the_command_line(tmp_path, capsys):
    from nnspec.tools.cli import main

    path = tmp_path / "m.nn"
    path.write_text(MLP)
    assert main(["crosscheck", "--grad", str(path)]) == 0
    assert "ok: NumPy's backward agrees" in capsys.readouterr().out


WINDOWS = """
model W(x: [N, 4, 11, 10]) {
    conv 6 k=3 s=2 p=((1, 0), (2, 1)) d=2 groups=2 | relu
    maxpool k=3 s=2 p=1 d=2 ceil
    conv 4 k=2 p=same bias=false
    avgpool k=3 s=2 p=((0, 2), (1, 1)) ceil count_include_pad=false
    a = maxpool k=2 p=((0, 1), (1, 0))
    b = a | avgpool k=2 s=1 p=1
    maxpool global
}
model V(x: [N, 2, 9]) {
    conv1d 3 k=4 s=3 p=2 | avgpool1d k=3 s=2 ceil | conv1d 2 k=1 | avgpool global
}
model D(x: [N, 2, 5, 6, 4]) {
    conv3d 3 k=2 s=(1, 2, 1) p=1 | maxpool3d k=2 | avgpool3d k=(1, 2, 1) p=(0, 1, 0)
}
"""


@pytest.mark.parametrize("model, shape", [("W", (2, 4, 11, 10)), ("V", (3, 2, 9)),
                                          ("D", (2, 2, 5, 6, 4))])
def test_window_kinds_agree_with_torch_autograd(model, shape):
    spec = nnspec.loads(WINDOWS, "w.nn")
    x = np.random.default_rng(3).standard_normal(shape)
    check_autograd(spec, [x], model)


def test_lenet_gradients_agree_with_torch_autograd():
    from pathlib import Path

    spec = nnspec.load(str(Path(__file__).resolve().parent.parent / "specs" / "lenet5.nn"))
    x = np.random.default_rng(4).standard_normal((2, 1, 32, 32))
    check_autograd(spec, [x])


MOVES = """
model P(x: [N, 8, 6, 5]) {
    a = x | pad ((1, 2), (2, 0)) reflect | pad 1 replicate | pad ((0, 1), (1, 1)) circular
    b = a | pad 1 value=0.5 | crop [7, 6] | pixel_shuffle 2 | pixel_unshuffle 2
    crop_like(b, x) | tanh
}
"""


def test_moving_kinds_agree_with_torch_autograd():
    spec = nnspec.loads(MOVES, "p.nn")
    check_autograd(spec, [np.random.default_rng(5).standard_normal((2, 8, 6, 5))])
