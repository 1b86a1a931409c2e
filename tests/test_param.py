"""Learned tensors (``param``) and ``expand``: the shape rules and their located errors,
state_dict keys named as written, both backends, the backward, the emitted source, and
ViT-B/16 against torchvision's VisionTransformer."""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

import nnspec
from _gradcheck import check_autograd, check_kind
from _util import import_source
from nnspec.core.dims import Dim
from nnspec.layers import REGISTRY, ShapeError, TensorType

ROOT = Path(__file__).resolve().parent.parent
VIT = ROOT / "specs" / "vit_b16.nn"
# torchvision.models.VisionTransformer's arguments for a tiny ViT, as --const values
TINY = {"image_size": 32, "patch_size": 16, "num_layers": 2, "num_heads": 2,
        "hidden_dim": 16, "mlp_dim": 32}

TOKEN = """
const d = 8
model Tok(x: [N, 5, d]) -> [N, 6, d] {
    cls = param [1, 1, d] init=trunc_normal(0, 0.02) as class_token
    y = concat(expand(cls, [N, -1, -1]), x, dim=1)
    pos = param [1, 6, d] init=normal(0, 0.02) as pos_embedding
    y + pos
}
"""

# ConvNeXt's and CaiT's layer scale: a per-channel gamma in blocks of two widths
SCALE = """
block Stage(x, c) {
    y = x | conv c k=3 p=1 as conv
    gamma = param [c, 1, 1] init=constant(1e-6) as gamma
    return x + (gamma * y)
}
block CaiT(x, d) {
    g = param [d] init=constant(0.1) as gamma_1
    y = x | dense d as fc
    return x + (y * g)
}
model Scaled(x: [N, 4, 6, 6], t: [N, T, 5]) {
    u = x | Stage(4) as stage1 | conv 8 k=1 as down | Stage(8) as stage2
    v = t | CaiT(5) as cait
    return u, v
}
"""


def _errors(text: str) -> list:
    return nnspec.loads(text, "m.nn", strict=False).diagnostics


def _one_error(body: str, inputs: str = "x: [N, T, 2]"):
    diags = _errors(f"model M({inputs}) {{\n    {body}\n}}\n")
    assert len(diags) == 1, [d.message for d in diags]
    return diags[0]


# ---- shape rules --------------------------------------------------------------------------


def test_param_shape_is_its_own_and_expand_broadcasts_to_the_batch():
    spec = nnspec.loads(TOKEN, "tok.nn")
    rows = {r.name: r for r in spec.layers("Tok")}
    assert str(rows["class_token"].output) == "[1, 1, 8]"
    assert str(rows["expand_0"].output) == "[N, 1, 8]"
    assert str(rows["concat_0"].output) == "[N, 6, 8]"
    shapes = spec.state_shapes("Tok")
    assert list(shapes) == ["class_token", "pos_embedding"]  # the names as written
    assert shapes["class_token"].shape == (1, 1, 8)
    assert shapes["class_token"].init == ("trunc_normal", 0.0, 0.02, -2.0, 2.0)
    assert shapes["pos_embedding"].init == ("normal", 0.02)
    assert spec.param_count("Tok") == 8 + 48


def test_expand_keeps_new_leading_and_minus_one_axes():
    kind = REGISTRY["expand"]

    def out(shape, x):
        p = kind.Params.model_validate({"shape": shape})
        return str(kind.infer(p, [TensorType(x)]))

    assert out((4, -1, 3, 2), (3, 1, 2)) == "[4, 3, 3, 2]"
    assert out(("N", "T", -1), (1, 1, 5)) == "[N, T, 5]"
    assert out((5,), (1,)) == "[5]"
    assert out(("N",), (Dim.sym("N"),)) == "[N]"  # an equal dim stays
    p = kind.Params.model_validate({"shape": (2, 3)})
    with pytest.raises(ShapeError, match="axis 0 of \\[4, 1\\] \\(size 4\\) to 2"):
        kind.infer(p, [TensorType((4, 1))])


def test_param_errors_are_located():
    d = _one_error("param [T, 4]")
    assert d.code == "E300" and "axis 0 is T (a symbol of the input)" in d.message
    assert (d.span.line, d.span.col) == (2, 11)  # at the shape
    assert "expand" in d.hint
    d = _one_error("param [3, 0]")
    assert "axis 1 is 0; sizes are at least 1" in d.message
    d = _one_error("x | param [4]")
    assert d.code == "E065"  # the piped value would be dropped
    d = _one_error("param(x, [4])")
    assert d.code == "E044" and "param takes no input tensor, got 1" in d.message
    d = _one_error("param [4] * 2")
    assert d.code == "E041" and d.span.col == 17
    d = _one_error("param [4] init=xavier")
    assert d.code == "E340" and "rank 2 or more" in d.message and "the param is [4]" in \
        d.message and d.span.col == 15
    d = _one_error("param init=ones")
    assert d.code == "E045" and "'shape'" in d.message
    d = _one_error("g = param [2] as gamma\n    x | gamma")
    assert d.code == "E065" and d.span.line == 3


def test_expand_errors_are_located():
    d = _one_error("expand(x, [N, 5])")
    assert d.code == "E362" and "gives 2 sizes for the rank-3 input [N, T, 2]" in d.message
    assert (d.span.line, d.span.col) == (2, 15)
    d = _one_error("expand(x, [-1, N, -1])")
    assert d.code == "E365" and "axis 1 of [N, T, 2] (size T) to N" in d.message
    d = _one_error("expand(x, [-1, 2, 2, 2])")
    assert "size 0 is a new leading axis" in d.message
    d = _one_error("expand(x, [M, -1, -1, -1])")
    assert d.code == "E082" and "symbol M, which is not a dim of the model's inputs" in \
        d.message and "N, T" in d.hint


def test_a_param_used_again_by_its_name_is_one_tensor():
    spec = nnspec.loads("""
model M(x: [N, 3]) {
    g = param [3] init=ones as gamma
    h = gamma
    y = (x * g)
    (y * h)
}
""", "m.nn")
    assert list(spec.state_shapes()) == ["gamma"] and spec.param_count() == 3
    assert [n.shared for n in spec.model().nodes if n.op == "param"] == [False, True]
    check_autograd(spec, [np.random.default_rng(0).standard_normal((2, 3))])


# ---- keys, order, backends -----------------------------------------------------------------


def test_a_param_in_a_block_is_its_module_s_own_tensor_before_its_layers():
    spec = nnspec.loads(SCALE, "scale.nn")
    keys = list(spec.state_shapes("Scaled"))
    assert keys[:3] == ["stage1.gamma", "stage1.conv.weight", "stage1.conv.bias"]
    assert keys[-3:] == ["cait.gamma_1", "cait.fc.weight", "cait.fc.bias"]
    torch = pytest.importorskip("torch")
    from nnspec.backends.torch import build_module

    net = build_module(spec, "Scaled", seed=0, dtype=torch.float64)
    assert list(net.state_dict()) == keys  # torch's order: own tensors first
    assert isinstance(net.stage2.gamma, torch.nn.Parameter)
    assert torch.equal(net.stage2.gamma, torch.full((8, 1, 1), 1e-6, dtype=torch.float64))


def test_both_backends_agree_and_the_gradients_match_autograd():
    spec = nnspec.loads(SCALE, "scale.nn")
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((2, 3, 5))]
    got = check_autograd(spec, xs, "Scaled")
    # a layer scale's gradient: the sum over the batch and positions of dL/dy * y
    assert got.params["stage1.gamma"].shape == (4, 1, 1)
    assert np.abs(got.params["cait.gamma_1"]).sum() > 0
    spec = nnspec.loads(TOKEN, "tok.nn")
    got = check_autograd(spec, [rng.standard_normal((3, 5, 8))], "Tok")
    # the class token's gradient sums the batch: expand's backward
    assert got.params["class_token"].shape == (1, 1, 8)


@pytest.mark.parametrize("name,args,shape", [
    ("param", {"shape": (2, 3), "init": "normal(0, 1)"}, []),
    ("param", {"shape": (4,)}, []),
    ("expand", {"shape": (2, 3, -1, 4)}, [(3, 1)]),
    ("expand", {"shape": (3, 2, 5)}, [(2, 1)]),
    ("expand", {"shape": (-1, -1)}, [(2, 3)]),
])
def test_backward_matches_finite_differences(name, args, shape):
    check_kind(REGISTRY[name], args, [TensorType(s) for s in shape])


def test_meta_pickle_and_reset_parameters_keep_the_param():
    torch = pytest.importorskip("torch")
    from nnspec.backends.torch import build_module

    spec = nnspec.loads(TOKEN, "tok.nn")
    x = torch.randn(2, 5, 8)
    ref = build_module(spec, seed=3)
    net = build_module(spec, seed=3, device="meta")
    net.to_empty(device="cpu")  # new Parameter objects: the forward looks them up
    net.reset_parameters()
    torch.testing.assert_close(net(x), ref(x), rtol=0, atol=0)
    for other in (copy.deepcopy(ref), pickle.loads(pickle.dumps(ref))):
        torch.testing.assert_close(other(x), ref(x), rtol=0, atol=0)
    # the same draw as the NumPy backend
    from nnspec.backends.numpy import NumpyModel

    drawn = NumpyModel(spec, seed=3).params["class_token"]
    np.testing.assert_array_equal(drawn, ref.class_token.detach().numpy())
    assert np.abs(drawn).max() <= 2.0 and drawn.std() > 0  # truncated at +-2


def test_the_ir_round_trips():
    spec = nnspec.loads(TOKEN, "tok.nn")
    again = nnspec.from_ir(spec.program.to_json())
    assert again.ok and list(again.state_shapes()) == list(spec.state_shapes())


# ---- emitted source ------------------------------------------------------------------------


def _emitted(spec, tmp_path, tag: str):
    from nnspec.backends.emit.emitter import emit_source

    src = emit_source(spec, all_models=True)
    file = tmp_path / f"gen_{tag}.py"
    file.write_text(src)
    return src, import_source(file, f"gen_{tag}")


def test_emitted_source_registers_parameters_as_a_person_would(tmp_path):
    torch = pytest.importorskip("torch")
    from nnspec.backends.torch import build_module

    spec = nnspec.loads(TOKEN, "tok.nn")
    src, gen = _emitted(spec, tmp_path, "tok")
    assert "        self.class_token = nn.Parameter(torch.zeros(1, 1, 8))\n" \
           "        nn.init.trunc_normal_(self.class_token, 0.0, 0.02, -2.0, 2.0)\n" in src
    assert "cls = self.class_token  #" in src or "cls = self.class_token\n" in src
    assert "N = x.shape[0]\n" in src and "cls.expand(N, -1, -1)" in src
    net, ref = gen.Tok(), build_module(spec, seed=0)
    assert list(net.state_dict()) == list(ref.state_dict())
    net.load_state_dict(ref.state_dict())
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(net(x), ref(x), rtol=0, atol=0)


def test_a_layer_scale_in_a_block_of_two_widths_is_one_class(tmp_path):
    torch = pytest.importorskip("torch")
    from nnspec.backends.torch import build_module

    spec = nnspec.loads(SCALE, "scale.nn")
    src, gen = _emitted(spec, tmp_path, "scale")
    assert src.count("class Stage(nn.Module):") == 1
    assert "self.gamma = nn.Parameter(torch.zeros(c, 1, 1))" in src
    assert "nn.init.constant_(self.gamma, 1e-06)" in src
    assert "gamma = self.gamma  #" in src and "gamma = gamma * y  #" in src
    net, ref = gen.Scaled(), build_module(spec, "Scaled", seed=0)
    net.load_state_dict(ref.state_dict())
    xs = torch.randn(2, 4, 6, 6), torch.randn(2, 3, 5)
    for a, b in zip(net(*xs), ref(*xs)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_param_named_like_a_module_method_is_reached_through_parameters(tmp_path):
    torch = pytest.importorskip("torch")
    from nnspec.backends.torch import build_module

    spec = nnspec.loads("""
model M(x: [N, 3]) {
    g = param [3] init=ones as forward
    (x * g)
}
""", "m.nn")
    src, gen = _emitted(spec, tmp_path, "method")
    assert 'self._parameters["forward"] = nn.Parameter(torch.zeros(3))' in src
    ref = build_module(spec, seed=0)
    assert list(ref.state_dict()) == ["forward"]
    net = gen.M()
    net.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3)
    torch.testing.assert_close(net(x), x)
    torch.testing.assert_close(ref(x), x)


# ---- ViT-B/16 ----------------------------------------------------------------------------


def _torchvision_key(key: str) -> str:
    """Our ViT's state_dict key as torchvision's (see specs/vit_b16.nn)."""
    key = re.sub(r"^encoder\.layers\.(\d+)\.", r"encoder.layers.encoder_layer_\1.", key)
    return key.replace(".mlp.linear_1.", ".mlp.0.").replace(".mlp.linear_2.", ".mlp.3.")


def test_vit_b16_has_torchvision_s_parameters_in_its_order():
    spec = nnspec.load(str(VIT))
    assert spec.param_count("ViTB16") == 86_567_656
    assert str(spec.output_type("ViTB16")) == "[N, 1000]"
    torch = pytest.importorskip("torch")
    from _torchvision import models

    with torch.device("meta"):
        tv = models().vit_b_16()
    ours = spec.state_shapes("ViTB16")
    theirs = tv.state_dict()
    assert [_torchvision_key(k) for k in ours] == list(theirs)
    assert [w.shape for w in ours.values()] == [tuple(t.shape) for t in theirs.values()]


def test_tiny_vit_computes_what_torchvision_computes(tmp_path):
    torch = pytest.importorskip("torch")
    from _torchvision import models

    from nnspec.backends.numpy import NumpyModel
    from nnspec.backends.torch import build_module

    torch.manual_seed(0)
    tv = models().VisionTransformer(**TINY).double().eval()
    with torch.no_grad():  # torchvision starts its head at zeros: make it count
        tv.heads.head.weight.normal_()
        tv.heads.head.bias.normal_()
    spec = nnspec.load(str(VIT), consts=TINY)
    theirs = tv.state_dict()
    params = {k: theirs[_torchvision_key(k)] for k in spec.state_shapes("ViTB16")}
    assert len(params) == len(theirs)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        want = tv(x)
        got = build_module(spec, params=params, dtype=torch.float64)(x)
    assert want.shape == (3, 1000)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    ref = NumpyModel(spec, params={k: v.numpy() for k, v in params.items()},
                     dtype=np.float64)
    np.testing.assert_allclose(ref(x.numpy()), want.numpy(), rtol=1e-10, atol=1e-12)
    _, gen = _emitted(spec, tmp_path, "vit")
    net = gen.ViTB16().double().eval()
    net.load_state_dict(params)
    with torch.no_grad():
        torch.testing.assert_close(net(x), want, rtol=1e-12, atol=1e-12)


def test_tiny_vit_cross_checks_forward_and_gradients():
    pytest.importorskip("torch")
    from nnspec.tools.crosscheck import crosscheck

    spec = nnspec.load(str(VIT), consts=TINY)
    report = crosscheck(spec, "ViTB16", "float64", seed=0, dims={"N": 2})
    assert report.ok, report.render()
    # random weights (the spec's head starts at zeros, which would pass no gradient back)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    got = check_autograd(spec, [x], "ViTB16")
    for key in ("class_token", "encoder.pos_embedding", "conv_proj.weight"):
        assert np.abs(got.params[key]).max() > 0, key
