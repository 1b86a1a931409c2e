"""Constants kept as buffers (nnspec/layers/buffer.py): ``... | buffer [persistent] as
name`` registers a constant computed once, in build_module, the NumPy interpreter and the
emitted source; a persistent one is a state_dict key (torchvision's Swin
``relative_position_index``), a non-persistent one is not; a constant of symbolic sizes is
computed in forward."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import nnspec
from nnspec.core.diagnostics import SpecError

from _util import import_source

torch = pytest.importorskip("torch")
from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module, emit_source  # noqa: E402

# torchvision's ShiftedWindowAttention: its relative_position_index buffer (persistent) and
# the bias table it indexes, the bias [heads, L, L] added to the attention logits
SWIN = """
const ws = 7
const L = ws * ws
const heads = 3
const n = (2 * ws - 1) * (2 * ws - 1)
block RelativeBias(x) {
    h = arange(ws) | reshape [ws, 1] | expand [ws, ws] | reshape [L]
    w = arange(ws) | reshape [1, ws] | expand [ws, ws] | reshape [L]
    dh = (reshape(h, [L, 1]) - reshape(h, [1, L]))
    dw = (reshape(w, [L, 1]) - reshape(w, [1, L]))
    rpi = (((dh + (ws - 1)) * (2 * ws - 1)) + (dw + (ws - 1))) | reshape [L * L]
    rpi = rpi | buffer persistent as relative_position_index
    table = param [n, heads] init=normal(0, 0.02) as relative_position_bias_table
    picked = reshape(rpi, [L * L, 1]) | expand [L * L, heads]
    bias = gather(table, picked, dim=0) | reshape [L, L, heads] | permute (2, 0, 1)
    (x + bias)
}
model Swin(x: [N, heads, L, L]) {
    RelativeBias as attn
}
"""

CONSTS = """
model C(x: [N, 4]) {
    pos = to_float(arange(4)) | buffer as positions
    idx = arange(1, 5) | buffer as index
    (x * pos + to_float(idx))
}
"""


def _swin_attention():
    from _torchvision import models

    tv = models()
    attn = tv.swin_t().features[1][0].attn  # the first stage's first block
    return attn


def _emitted(spec, tmp_path, name):
    path = tmp_path / f"{name.lower()}_buf.py"
    path.write_text(emit_source(spec))
    return getattr(import_source(path, f"{name.lower()}_buf"), name)()


def _torchvision_bias(attn) -> torch.Tensor:
    n = attn.window_size[0] * attn.window_size[1]
    table = attn.relative_position_bias_table
    bias = table[attn.relative_position_index].view(n, n, -1)
    return bias.permute(2, 0, 1).contiguous()


def test_swin_index_is_a_persistent_buffer_that_loads_torchvision_s_by_key(tmp_path):
    attn = _swin_attention()
    spec = nnspec.loads(SWIN, "swin.nn")
    assert list(spec.state_shapes()) == ["attn.relative_position_index",
                                         "attn.relative_position_bias_table"]
    assert spec.param_count() == 169 * 3  # a buffer is no parameter
    net = build_module(spec, seed=0)
    want = attn.relative_position_index
    got = net.state_dict()["attn.relative_position_index"]
    assert got.dtype == torch.int64
    torch.testing.assert_close(got, want, rtol=0, atol=0)  # computed, from a seed
    # torchvision's block's own state_dict, by key (its qkv and proj aside)
    theirs = {f"attn.{k}": v for k, v in attn.state_dict().items()
              if k.startswith("relative_position")}
    assert set(theirs) == set(spec.state_shapes())
    net = build_module(spec, params=theirs)
    x = torch.randn(2, 3, 49, 49)
    with torch.no_grad():
        want_y = x + _torchvision_bias(attn)
        torch.testing.assert_close(net(x), want_y)
        other = build_module(spec, seed=1)
        other.load_state_dict(theirs)  # torch's own strict load
        torch.testing.assert_close(other(x), want_y)
    # the NumPy interpreter, on the same state, and from the same seed
    arrays = {k: v.numpy() for k, v in theirs.items()}
    ref = NumpyModel(spec, params=arrays)(x.numpy())
    np.testing.assert_allclose(ref, want_y.numpy(), rtol=1e-6, atol=1e-6)
    drawn = NumpyModel(spec, seed=0)
    np.testing.assert_array_equal(drawn.params["attn.relative_position_index"], want.numpy())
    # the emitted source registers it, and loads the same state_dict
    src = emit_source(spec)
    assert 'self.register_buffer("relative_position_index", ' in src
    assert "persistent=True)" in src and "= self.relative_position_index" in src
    emitted = _emitted(spec, tmp_path, "Swin")
    assert list(emitted.state_dict()) == list(net.state_dict())
    torch.testing.assert_close(emitted.state_dict()["attn.relative_position_index"], want,
                               rtol=0, atol=0)
    emitted.load_state_dict(theirs, strict=False)
    with torch.no_grad():
        torch.testing.assert_close(emitted(x), want_y)


def test_a_persistent_buffer_is_a_key_of_the_checkpoint_map():
    from nnspec.backends.checkpoint import Checkpoint  # noqa: F401  (import: it maps by key)

    spec = nnspec.loads(SWIN, "swin.nn")
    w = spec.state_shapes()["attn.relative_position_index"]
    assert (w.shape, w.dtype, w.trainable) == ((2401,), "int", False)


def test_non_persistent_buffers_move_with_the_module_and_are_no_keys(tmp_path):
    spec = nnspec.loads(CONSTS, "c.nn")
    assert spec.state_shapes() == {}
    net = build_module(spec, seed=0)
    emitted = _emitted(spec, tmp_path, "C")
    x = torch.ones(2, 4)
    want = x * torch.arange(4.0) + torch.arange(1.0, 5.0)
    for mod in (net, emitted):
        assert dict(mod.state_dict()) == {}
        bufs = dict(mod.named_buffers())
        assert set(bufs) == {"positions", "index"}
        assert bufs["positions"].dtype == torch.float32 and bufs["index"].dtype == torch.int64
        with torch.no_grad():
            torch.testing.assert_close(mod(x), want)
        mod.to(torch.float64)
        bufs = dict(mod.named_buffers())
        assert bufs["positions"].dtype == torch.float64 and bufs["index"].dtype == torch.int64
        with torch.no_grad():
            torch.testing.assert_close(mod(x.double()), want.double())
        mod.to("meta")
        assert all(b.is_meta for b in mod.buffers())
        assert mod(torch.zeros(2, 4, dtype=torch.float64, device="meta")).is_meta
    src = emit_source(spec)
    assert 'self.register_buffer("positions", torch.arange(4).float(), persistent=False)' in src
    assert "device=" not in src  # made in __init__: it moves with the module
    np.testing.assert_allclose(NumpyModel(spec)(x.numpy()), want.numpy())


def test_build_module_at_float64_and_meta_then_reset(tmp_path):
    spec = nnspec.loads(CONSTS, "c.nn")
    net = build_module(spec, seed=0, dtype=torch.float64)
    assert net.positions.dtype == torch.float64 and net.index.dtype == torch.int64
    torch.testing.assert_close(net.positions, torch.arange(4.0, dtype=torch.float64))
    meta = build_module(spec, seed=0, device="meta")
    meta.to_empty(device="cpu")
    meta.reset_parameters()
    torch.testing.assert_close(meta.index, torch.arange(1, 5))
    copy = pickle.loads(pickle.dumps(net))
    torch.testing.assert_close(copy.positions, net.positions)
    torch.testing.assert_close(copy(torch.ones(1, 4, dtype=torch.float64)),
                               net(torch.ones(1, 4, dtype=torch.float64)))


def test_forward_reads_the_buffer_and_trace_has_every_value():
    spec = nnspec.loads(SWIN, "swin.nn")
    net = build_module(spec, seed=0)
    x = torch.zeros(1, 3, 49, 49)
    skipped = [k for k in range(len(net._steps)) if k not in net._forward_order]
    assert len(skipped) >= 10  # the arange/reshape/arithmetic steps only the buffer reads
    trace = net.trace(x)
    ref = NumpyModel(spec, seed=0, dtype=np.float64)(x.numpy(), trace=True)
    assert set(trace) == set(ref)
    for k, v in ref.items():
        np.testing.assert_allclose(trace[k].detach().numpy(), v, rtol=1e-6, atol=1e-7)


def test_a_constant_of_symbolic_sizes_is_computed_in_forward():
    spec = nnspec.loads("model P(x: [N, T]) {\n    (x + to_float(arange(T)))\n}\n", "p.nn")
    assert "torch.arange(T, device=x.device)" in emit_source(spec)
    net = build_module(spec, seed=0)
    assert list(net.buffers()) == []
    for t in (3, 5):
        torch.testing.assert_close(net(torch.zeros(1, t)), torch.arange(float(t))[None])


@pytest.mark.parametrize("src,where,code", [
    ("model M(x: [N, T]) {\n    p = arange(T) | buffer as p\n    (x + to_float(p))\n}\n",
     "2:21", "E398"),
])
def test_a_buffer_of_symbolic_size_is_a_located_error(src, where, code):
    with pytest.raises(SpecError) as e:
        nnspec.loads(src, "m.nn")
    assert f"m.nn:{where}:" in str(e.value) and f"[{code}]" in str(e.value), str(e.value)


@pytest.mark.parametrize("body,why", [
    ("b = (x * 2) | buffer as b", "the model input x"),
    ("p = param [4] as p\n    b = (p * 2) | buffer as b", "a layer with weights"),
    ("b = to_float(arange(4)) | dropout 0.5 | buffer as b", "a layer with a module"),
])
def test_a_buffer_of_what_is_no_constant_is_a_located_error_of_the_back_ends(body, why):
    spec = nnspec.loads(f"model M(x: [2, 4]) {{\n    {body}\n    (x + b)\n}}\n", "m.nn")
    line = body.count("\n") + 2
    for build in (build_module, emit_source, NumpyModel):
        with pytest.raises(SpecError) as e:
            build(spec)
        text = str(e.value)
        assert f"m.nn:{line}:" in text and "[E399]" in text and why in text, text


def test_a_buffer_beside_a_parameter_in_either_order(tmp_path):
    spec = nnspec.loads("""
model M(x: [N, 3]) {
    i = arange(3) | buffer persistent as idx
    w = param [3] init=normal(0, 1) as w
    (x * w + to_float(i))
}
""", "m.nn")
    net = build_module(spec, seed=0)
    emitted = _emitted(spec, tmp_path, "M")
    assert list(net.state_dict()) == list(emitted.state_dict()) == ["w", "idx"]
    emitted.load_state_dict(net.state_dict())
    x = torch.randn(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(emitted(x), net(x))
    np.testing.assert_allclose(
        NumpyModel(spec, params={k: v.numpy() for k, v in net.state_dict().items()})(
            x.numpy()), net(x).detach().numpy(), rtol=1e-6)


def test_crosscheck_compares_the_computed_persistent_buffer():
    """crosscheck draws weights for the state keys; a persistent buffer is not drawn (zeros)
    but computed, in both back ends, so that the check sees the real constant."""
    from nnspec.tools.crosscheck.forward import crosscheck

    spec = nnspec.loads(SWIN)
    report = crosscheck(spec, "Swin", "float64")
    assert report.ok
    from nnspec.tools.crosscheck.forward import weights_and_module
    from nnspec.tools.progress import Progress

    params, mod = weights_and_module(spec, spec.model("Swin"), np.dtype("float64"), 0,
                                     Progress())
    rpi = params["attn.relative_position_index"]
    assert rpi.max() == (2 * 7 - 1) ** 2 - 1 and rpi.min() == 0
    assert np.array_equal(mod.state_dict()["attn.relative_position_index"].numpy(), rpi)
