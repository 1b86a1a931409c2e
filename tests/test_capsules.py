"""Capsules (Sabour, Frosst & Hinton, 2017): squash, the capsule layer's dynamic routing
against the routing written by hand in torch (float64, r = 1, 2, 3), its backward against
autograd through the routing, the length and the mask in both backends and modes, the
emitted source, CapsNet's published parameter count, and located errors."""

from __future__ import annotations

import ast

import numpy as np
import pytest

import nnspec
from nnspec.layers import REGISTRY, TensorType
from nnspec.layers.base import NumpyCtx, TupleType
from nnspec.layers.capsule import SQUASH_EPS, squash_backward, squash_np

torch = pytest.importorskip("torch")
from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module  # noqa: E402

from _util import import_source  # noqa: E402

CAPSULE = REGISTRY["capsule"]


def squash_by_hand(s, eps=SQUASH_EPS):
    """Equation 1 of the paper, written out: |s|² / (1 + |s|²) · s / sqrt(|s|² + eps)."""
    norm2 = (s ** 2).sum(-1, keepdim=True)
    return norm2 / (1 + norm2) * s / torch.sqrt(norm2 + eps)


def routing_by_hand(u, W, r: int, detach: bool = False):
    """Procedure 1 of the paper for u [N, I, K] and W [I, J, D, K]: u_hat = W u, b = 0,
    then r times c = softmax_j(b), s = Σ_i c u_hat, v = squash(s), b += u_hat · v (not
    after the last). ``detach``: u_hat without gradient in the inner iterations (what some
    reimplementations do, not this layer)."""
    u_hat = (W[None] @ u[:, :, None, :, None])[..., 0]  # [N, I, J, D]
    inner = u_hat.detach() if detach else u_hat
    b = torch.zeros(u_hat.shape[:3], dtype=u.dtype)
    for it in range(r):
        c = torch.exp(b) / torch.exp(b).sum(2, keepdim=True)
        last = it == r - 1
        v = squash_by_hand((c[..., None] * (u_hat if last else inner)).sum(1))
        if not last:
            b = b + (inner * v[:, None]).sum(-1)
    return v


def _draw(shape, seed, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


# ---- squash ------------------------------------------------------------------------------


def test_squash_is_the_papers_formula_in_both_backends():
    s = _draw((3, 5, 8), 0) * np.array([1e-3, 0.1, 1, 3, 30])[None, :, None]
    want = squash_by_hand(torch.from_numpy(s)).numpy()
    np.testing.assert_allclose(squash_np(s), want, rtol=1e-14, atol=0)
    lengths = np.linalg.norm(squash_np(s), axis=-1)
    q = (s * s).sum(-1)
    np.testing.assert_allclose(lengths, q / (1 + q) * np.sqrt(q / (q + SQUASH_EPS)), rtol=1e-12)
    assert lengths.max() < 1 and lengths[:, 0].max() < 1e-4  # short vectors shrink to ~0
    # the direction is kept, and the zero vector stays zero with a finite gradient
    cos = (squash_np(s) * s).sum(-1) / (lengths * np.sqrt(q))
    np.testing.assert_allclose(cos, 1, rtol=1e-12)
    zero = np.zeros((1, 4))
    assert np.all(squash_np(zero) == 0)
    assert np.all(np.isfinite(squash_backward(zero, np.ones((1, 4)))))
    # squash over another axis, as the layer's dim= gives it
    spec = nnspec.loads("model M(x: [N, 3, 4]) {\n    squash 1\n}", "s.nn")
    x = _draw((2, 3, 4), 1)
    got = NumpyModel(spec, dtype=np.float64)(x)
    want = squash_by_hand(torch.from_numpy(x).transpose(1, 2)).transpose(1, 2).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-14)
    with torch.no_grad():
        np.testing.assert_allclose(build_module(spec, dtype=torch.float64)(
            torch.from_numpy(x)).numpy(), want, rtol=1e-14)


def test_squash_backward_against_autograd():
    s = torch.tensor(_draw((4, 6, 5), 2) * 0.7, requires_grad=True)
    g = _draw((4, 6, 5), 3)
    (squash_by_hand(s) * torch.from_numpy(g)).sum().backward()
    got = squash_backward(s.detach().numpy(), g)
    np.testing.assert_allclose(got, s.grad.numpy(), rtol=1e-11, atol=1e-14)


# ---- routing -----------------------------------------------------------------------------

TINY = """
model M(u: [N, 6, 3]) {
    capsule 4 5 r={r} as caps
}
"""


def _tiny(r: int):
    return nnspec.loads(TINY.replace("{r}", str(r)), "tiny.nn")


@pytest.mark.parametrize("r", [1, 2, 3])
def test_routing_equals_the_routing_written_by_hand(r):
    spec = _tiny(r)
    w = _draw((6, 4, 5, 3), 10, 0.5)  # large enough that the routing moves the weights
    u = _draw((3, 6, 3), 11)
    want = routing_by_hand(torch.from_numpy(u), torch.from_numpy(w), r).numpy()
    got = NumpyModel(spec, params={"caps.W": w}, dtype=np.float64)(u)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    mod = build_module(spec, params={"caps.W": w}, dtype=torch.float64)
    assert [(k, tuple(p.shape)) for k, p in mod.named_parameters()] == [("caps.W", (6, 4, 5, 3))]
    with torch.no_grad():
        np.testing.assert_allclose(mod(torch.from_numpy(u)).numpy(), want, rtol=1e-12,
                                   atol=1e-15)
    if r > 1:  # the iterations change the result: the comparison above can fail
        once = routing_by_hand(torch.from_numpy(u), torch.from_numpy(w), 1).numpy()
        assert np.abs(once - want).max() > 1e-2


def test_routing_logits_are_reset_on_every_call():
    spec = _tiny(3)
    w = _draw((6, 4, 5, 3), 12, 0.5)
    u = _draw((2, 6, 3), 13)
    mod = build_module(spec, params={"caps.W": w}, dtype=torch.float64)
    assert list(mod.state_dict()) == ["caps.W"]  # b is no buffer
    with torch.no_grad():
        first, second = mod(torch.from_numpy(u)), mod(torch.from_numpy(u))
    assert torch.equal(first, second)
    ref = NumpyModel(spec, params={"caps.W": w}, dtype=np.float64)
    assert np.array_equal(ref(u), ref(u))


@pytest.mark.parametrize("r", [1, 2, 3])
def test_backward_through_the_routing_against_autograd(r):
    p = CAPSULE.Params.model_validate({"out_caps": 4, "out_dim": 5, "r": r})
    w = _draw((6, 4, 5, 3), 20 + r, 0.5)
    u = _draw((3, 6, 3), 30 + r)
    g = _draw((3, 4, 5), 40 + r)
    ut = torch.tensor(u, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    (routing_by_hand(ut, wt, r) * torch.from_numpy(g)).sum().backward()
    y = CAPSULE.numpy(p, {"W": w}, [u], NumpyCtx())
    (gu,), gw = CAPSULE.backward(p, {"W": w}, [u], y, g, NumpyCtx())
    np.testing.assert_allclose(gu, ut.grad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(gw["W"], wt.grad.numpy(), rtol=1e-10, atol=1e-13)
    if r > 1:  # the gradient goes through the coupling coefficients, not around them
        ud = torch.tensor(u, requires_grad=True)
        (routing_by_hand(ud, torch.from_numpy(w), r, detach=True)
         * torch.from_numpy(g)).sum().backward()
        assert np.abs(ud.grad.numpy() - gu).max() > 1e-3


NET = """
model Caps(x: [N, 12, 2], label: [N] int) {
    caps = x | squash | capsule 3 4 r=3 as digits
    lengths = caps | capsule_length
    recon = capsule_mask(caps, label=label) | dense 5 as fc | sigmoid
    return lengths, recon
}
"""


def test_crosscheck_grad_of_a_tiny_capsule_net():
    from nnspec.tools.crosscheck import crosscheck, crosscheck_grad

    spec = nnspec.loads(NET, "net.nn")
    report = crosscheck_grad(spec, dims={"N": 3})
    assert report.ok, report.render()
    assert {r.name for r in report.params} == {"digits.W", "fc.weight", "fc.bias", "input x"}
    assert crosscheck(spec, dims={"N": 3}).ok


# ---- length and mask ------------------------------------------------------------------------


def _net_params(spec, seed=0):
    return {k: _draw(w.shape, seed + i) for i, (k, w) in enumerate(spec.state_shapes().items())}


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_mask_and_length_in_both_backends_and_modes(training):
    spec = nnspec.loads(NET, "net.nn")
    params = _net_params(spec)
    x = _draw((5, 12, 2), 7)
    label = np.array([0, 1, 2, 2, 0])
    ref = NumpyModel(spec, params=params, dtype=np.float64)
    lengths, recon = ref(x, label, training=training)
    mod = build_module(spec, params=params, dtype=torch.float64).train(training)
    with torch.no_grad():
        tl, tr = mod(torch.from_numpy(x), torch.from_numpy(label))
    np.testing.assert_allclose(tl.numpy(), lengths, rtol=1e-12)
    np.testing.assert_allclose(tr.numpy(), recon, rtol=1e-12)
    # which capsule reaches the decoder: the label's in training, the longest at inference
    kind = REGISTRY["capsule_mask"]
    caps = _draw((5, 3, 4), 8)
    p = kind.Params.model_validate({"label": 1})
    out = kind.numpy(p, {}, [caps, label], NumpyCtx(training=training)).reshape(5, 3, 4)
    longest = np.linalg.norm(caps, axis=-1).argmax(axis=1)
    assert not np.array_equal(label, longest)  # the two rules keep different capsules here
    kept = label if training else longest
    for n in range(5):
        np.testing.assert_array_equal(out[n, kept[n]], caps[n, kept[n]])
        assert np.all(np.delete(out[n], kept[n], axis=0) == 0)
    np.testing.assert_allclose(np.linalg.norm(caps, axis=-1),
                               REGISTRY["capsule_length"].numpy(None, {}, [caps], NumpyCtx()))


def test_mask_always_uses_the_label_and_refuses_a_label_out_of_range():
    kind = REGISTRY["capsule_mask"]
    caps = _draw((2, 3, 4), 9)
    p = kind.Params.model_validate({"label": 1, "always": True})
    out = kind.numpy(p, {}, [caps, np.array([2, 0])], NumpyCtx()).reshape(2, 3, 4)
    assert np.array_equal(out[0, 2], caps[0, 2]) and np.array_equal(out[1, 0], caps[1, 0])
    with pytest.raises(ValueError, match=r"a label is outside 0..2"):
        kind.numpy(p, {}, [caps, np.array([3, 0])], NumpyCtx())


# ---- the emitted source ----------------------------------------------------------------------


#: the helper classes' constructor signatures, as nnspec.backends.emit.NN_SIGNATURES lists them
SIGNATURES = {
    "nnspec.layers.torch.capsule:CapsuleLayer": (
        ("in_caps", "<required>"), ("in_dim", "<required>"), ("out_caps", "<required>"),
        ("out_dim", "<required>"), ("routings", 3)),
    "nnspec.layers.torch.capsule:CapsuleMask": (("always", False),),
}


def test_the_helper_signatures_are_the_classes_own():
    import inspect

    from nnspec.layers.torch import capsule as capsule_torch

    for ref, sig in SIGNATURES.items():
        params = list(inspect.signature(getattr(capsule_torch, ref.split(":")[1])).parameters
                      .values())
        assert tuple((q.name, "<required>" if q.default is q.empty else q.default)
                     for q in params) == sig


def test_the_emitted_source_of_a_capsule_net_equals_build_module(tmp_path, monkeypatch):
    from nnspec.backends.emit.constructors import NN_SIGNATURES
    from nnspec.backends.emit.emitter import emit_source

    for ref, sig in SIGNATURES.items():  # until nnspec/backends/emit lists them itself
        if ref not in NN_SIGNATURES:
            monkeypatch.setitem(NN_SIGNATURES, ref, sig)
        assert NN_SIGNATURES[ref] == sig

    spec = nnspec.loads(NET, "net.nn")
    src = emit_source(spec)
    ast.parse(src)
    assert max(len(line) for line in src.splitlines()) <= 100
    assert "class CapsuleLayer(nn.Module):" in src and "def squash(" in src
    assert "self.digits = CapsuleLayer(12, 2, 3, 4)" in src  # r=3 is the default
    file = tmp_path / "gen_caps.py"
    file.write_text(src)
    net = import_source(file, "gen_caps").Caps()
    ref = build_module(spec, seed=0, dtype=torch.float64)
    assert list(net.state_dict()) == list(ref.state_dict()) == ["digits.W", "fc.weight",
                                                                "fc.bias"]
    assert float(net.digits.W.detach().std()) == pytest.approx(0.01, rel=0.3)  # its own init
    net.load_state_dict(ref.state_dict(), assign=True)
    x = torch.from_numpy(_draw((4, 12, 2), 5))
    label = torch.tensor([2, 0, 1, 1])
    for training in (False, True):
        net.train(training)
        ref.train(training)
        with torch.no_grad():
            for a, b in zip(net(x, label), ref(x, label)):
                torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---- CapsNet --------------------------------------------------------------------------------


def test_capsnet_has_the_published_parameter_count():
    from pathlib import Path

    spec = nnspec.load(str(Path(__file__).resolve().parents[1] / "specs" / "capsnet.nn"))
    conv1 = 9 * 9 * 1 * 256 + 256
    primary = 9 * 9 * 256 * 256 + 256
    digits = (32 * 6 * 6) * 10 * 16 * 8
    decoder = (16 * 10 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 784 + 784)
    assert conv1 + primary + digits + decoder == 8_215_568 == spec.param_count()
    shapes = spec.state_shapes()
    assert shapes["digitcaps.W"].shape == (1152, 10, 16, 8)
    assert shapes["primary.conv.weight"].shape == (256, 256, 9, 9)
    out = spec.output_type()
    assert isinstance(out, TupleType)
    assert [str(t) for t in out.items] == ["[N, 10, 16]", "[N, 10]", "[N, 784]"]


# ---- located errors --------------------------------------------------------------------------


def _diag(text: str):
    spec = nnspec.loads(text, "e.nn", strict=False)
    assert len(spec.diagnostics) == 1, spec.diagnostics
    return spec.diagnostics[0]


@pytest.mark.parametrize("decl, line, message, at", [
    ("x: [N, 4, 5, 6]", "capsule 10 16",
     "capsule expects a rank-3 input ([N, caps, dim]), got [N, 4, 5, 6] (rank 4)", "capsule"),
    ("x: [N, 8]", "digitcaps 10 16",
     "capsule expects a rank-3 input ([N, caps, dim]), got [N, 8] (rank 2)", "digitcaps"),
    ("x: [N, C, 8]", "capsule 10 16",
     "capsule's number of input capsules (axis 1) must be a concrete size, but it is C "
     "(depends on symbol C)", "capsule"),
    ("x: [N, 4, 8] int", "capsule 10 16", "capsule needs a float input, got [N, 4, 8] int",
     "capsule"),
    ("x: [N, 4, 8]", "squash dim=3",
     "dim 3 is out of range for a rank-3 input [N, 4, 8]", "dim=3"),
    ("x: [N, 4, 8]", "capsule_mask always",
     "always keeps the label's capsule at inference, but no label= is given", "always"),
    ("x: [N, 4]", "capsule_mask",
     "capsule_mask expects a rank-3 input ([N, caps, dim]), got [N, 4] (rank 2)",
     "capsule_mask"),
])
def test_capsule_errors_are_located(decl, line, message, at):
    d = _diag(f"model M({decl}) {{\n    {line}\n}}")
    assert d.message == message
    assert d.span.line == 2 and d.span.col == 5 + line.index(at)


@pytest.mark.parametrize("line, fragment", [
    ("capsule 10 16 r=0", "invalid r for capsule: must be >= 1"),
    ("capsule 10 16 routings=-2", "invalid r for capsule: must be >= 1"),
    ("capsule 0 16", "invalid out_caps for capsule: must be >= 1"),
    ("squash eps=0.0", "invalid eps for squash: must be > 0"),
])
def test_capsule_argument_errors_name_the_argument(line, fragment):
    d = _diag(f"model M(x: [N, 4, 8]) {{\n    {line}\n}}")
    assert fragment in d.message, d.message
    key = line.split()[-1].split("=")[0] if "=" in line else None
    at = line.index(key) if key else line.index("0")
    assert d.span.line == 2 and d.span.col == 5 + at


@pytest.mark.parametrize("label", ["[N] float", "[N, 1] int", "[M] int"])
def test_a_mask_label_that_is_not_the_class_indices_is_located(label):
    d = _diag(f"model M(x: [N, 4, 8], y: {label.replace(' float', '')}) {{\n"
              "    capsule_mask(x, label=y)\n}")
    shown = label.replace(" float", "")
    assert d.message == ("capsule_mask's label must be the class indices [N] int of the "
                         f"capsules [N, 4, 8], got {shown}")
    assert d.span.line == 2 and d.span.col == 5 + len("capsule_mask(x, ")
    assert "label: [N] int" in d.hint


def test_the_capsule_kinds_need_no_torch_to_check():
    import subprocess
    import sys

    code = ("import sys, nnspec; nnspec.loads('model M(x: [N, 4, 8]) {\\n    squash | "
            "capsule 3 4 | capsule_length\\n}', 'm.nn'); "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert TensorType((2, 3)).rank == 2
