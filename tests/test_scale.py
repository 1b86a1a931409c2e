"""The emitted modules at scale: built on the meta device, pickled, trained under torch's
distributed engine (DDP and FSDP2, gloo, 2 processes), and through torch.compile and
torch.export for every bundled spec."""

from __future__ import annotations

import copy
import functools
import importlib.util
import io
import os
import pickle
import resource
import socket
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.tools.crosscheck import concrete_inputs

torch = pytest.importorskip("torch")
from nnspec.backends.torch import SpecModule, build_module  # noqa: E402

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.nn"))


def _state_equal(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


# a small Transformer: attention, layernorm, dropout and the bundled blocks
SMALL_TF = """
use "transformer.nn"
model Tiny(tokens: [N, T] int) -> [N, T, 11] {
    embedding 11 16 | positional scale
    EncoderLayer(16, heads=2, ff=32) * 2 as layers
    dense 11
}
"""


def _load(name: str):
    if name == "tiny":
        return nnspec.loads(SMALL_TF, "tiny.nn")
    return nnspec.load(str(SPECS[0].parent / name))


# ---- the meta device ----------------------------------------------------------------------

# about 1.1e9 parameters: 18 post-norm Transformer encoder layers of width 2048
DEEP = """
use "transformer.nn"
model Deep(tokens: [N, T] int) -> [N, T, 32000] {
    embedding 32000 2048
    EncoderLayer(2048, heads=16, ff=8192) * 18 as layers
    layernorm
    dense 32000 bias=false as head
}
"""


def _no_draw(*args, **kwargs):
    raise AssertionError("weights were drawn")


def test_meta_builds_a_billion_parameters_without_memory(monkeypatch):
    import nnspec.backends.weights

    spec = nnspec.loads(DEEP, "deep.nn")
    monkeypatch.setattr(nnspec.backends.weights, "draw", _no_draw)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    net = build_module(spec, seed=5, device="meta")
    # 4.4 GB of float32 weights would show in the peak resident memory
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 500_000
    tensors = net.state_dict(keep_vars=True)
    assert all(t.is_meta for t in tensors.values())
    assert {t.dtype for t in tensors.values()} == {torch.float32}
    n = sum(p.numel() for p in net.parameters())
    assert n == spec.param_count("Deep") > 1.0e9
    assert list(tensors) == list(spec.state_shapes("Deep"))
    assert net.seed == 5
    # its graph traces on meta inputs, at the inferred output shape
    out = net(torch.empty(2, 7, dtype=torch.int64, device="meta"))
    assert out.is_meta and tuple(out.shape) == (2, 7, 32000)
    # and a dtype is taken without memory
    half = build_module(spec, device="meta", dtype=torch.bfloat16)
    assert half.head.weight.dtype == torch.bfloat16 and half.head.weight.is_meta


def test_meta_builds_llama2_7b_without_memory(monkeypatch):
    import nnspec.backends.weights

    spec = _load("llama2_7b.nn")
    monkeypatch.setattr(nnspec.backends.weights, "draw", _no_draw)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    net = build_module(spec, seed=1, device="meta")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 500_000  # 27 GB
    assert sum(p.numel() for p in net.parameters()) == 6_738_415_616
    assert list(net.state_dict()) == list(spec.state_shapes())
    out = net(torch.empty(1, 5, dtype=torch.int64, device="meta"))
    assert out.is_meta and tuple(out.shape) == (1, 5, 32000)


def test_meta_trillion_weight_dense_and_refusals(monkeypatch):
    import nnspec.backends.weights

    spec = nnspec.load(str(SPECS[0].parent / "dense_1e12.nn"))
    monkeypatch.setattr(nnspec.backends.weights, "draw", _no_draw)
    net = build_module(spec, device="meta")
    assert sum(p.numel() for p in net.parameters()) == 1_000_001_000_000
    assert isinstance(net.seed, int)  # drawn later from this seed
    with pytest.raises(RuntimeError, match="to_empty"):
        net.reset_parameters()
    with pytest.raises(ValueError, match="meta"):
        build_module(nnspec.load(str(SPECS[0].parent / "lenet5.nn")), device="meta",
                     params={})


# a residual CNN with batchnorm (int64 buffers), embeddings with a padding row, recurrent
# layers, attention: each entry's declared initialiser draws the same values
INIT_SPECS = ["lenet5.nn", "cnn_small.nn", "seq2seq_gru.nn", "tiny"]


@pytest.mark.parametrize("name", INIT_SPECS)
def test_meta_to_empty_then_reset_equals_build(name):
    spec = _load(name)
    model = spec.model_names[-1]
    dtype = torch.float64 if name == "lenet5.nn" else torch.float32
    ref = build_module(spec, model, seed=11, dtype=dtype)
    net = build_module(spec, model, seed=11, dtype=dtype, device="meta")
    net.to_empty(device="cpu")
    net.reset_parameters()
    _state_equal(net.state_dict(), ref.state_dict())
    xs = [torch.from_numpy(a) for a in concrete_inputs(spec, model, {"N": 2},
                                                       "float64" if dtype == torch.float64
                                                       else "float32", 0)]
    with torch.no_grad():
        assert torch.equal(net.eval()(*xs), ref.eval()(*xs))
    # another seed: the same as a build from that seed, which the module then keeps
    net.reset_parameters(seed=12)
    _state_equal(net.state_dict(), build_module(spec, model, seed=12, dtype=dtype).state_dict())
    assert net.seed == 12


def test_device_argument_forms():
    spec = nnspec.load(str(SPECS[0].parent / "lenet5.nn"))
    ref = build_module(spec, seed=1)
    for device in ("cpu", torch.device("cpu")):
        net = build_module(spec, seed=1, device=device)
        assert net.conv_0.weight.device.type == "cpu"
        _state_equal(net.state_dict(), ref.state_dict())


# ---- pickle, torch.save, deepcopy ---------------------------------------------------------

# a train section, symbolic dims bound from several inputs, blocks, buffers, attention
PICKLE_SPECS = ["lenet5.nn", "seq2seq_gru.nn", "superres.nn", "cnn_small.nn", "tiny"]




def _roundtrips(net):
    yield "pickle", pickle.loads(pickle.dumps(net))
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    yield "torch.save", torch.load(buf, weights_only=False)
    yield "deepcopy", copy.deepcopy(net)


@pytest.mark.parametrize("name", PICKLE_SPECS)
def test_pickle_save_and_deepcopy(name):
    spec = _load(name)
    model = spec.model_names[-1]
    net = build_module(spec, model, seed=4, dtype=torch.float64).eval()
    xs = [torch.from_numpy(a) for a in concrete_inputs(spec, model, {"N": 3}, "float64", 2)]
    with torch.no_grad():
        want = net(*xs)
    for how, twin in _roundtrips(net):
        assert type(twin) is SpecModule, how
        assert twin.model_name == model and twin.seed == 4 and not twin.training
        assert twin.locations == net.locations and twin.line_map == net.line_map
        _state_equal(twin.state_dict(), net.state_dict())
        with torch.no_grad():
            assert torch.equal(twin(*xs), want), how
            # the copy runs its own weights, and leaves the original's alone
            first = next(p for p in twin.parameters() if p.dim() > 1)
            first.mul_(2)
            assert not torch.equal(twin(*xs), want), how
            assert torch.equal(net(*xs), want), how


def test_unpickling_needs_no_spec_file_and_keeps_the_train_section(tmp_path):
    path = tmp_path / "net.nn"
    path.write_text(DIST_SPEC)
    net = build_module(nnspec.load(str(path)), seed=0, dtype=torch.float64)
    data = pickle.dumps(net)
    path.unlink()
    twin = pickle.loads(data)
    x, y = _batch()
    torch.testing.assert_close(twin.loss(twin(x), y), net.loss(net(x), y), rtol=0, atol=0)
    assert isinstance(twin.configure_optimizer(), torch.optim.SGD)
    # a layer's runtime error still names its spec line
    with pytest.raises(Exception) as err:
        twin(torch.zeros(2, 6, dtype=torch.int64))
    assert any("net.nn:3" in n for n in getattr(err.value, "__notes__", []))


def test_unpickling_a_tampered_state_is_refused():
    spec = nnspec.load(str(SPECS[0].parent / "lenet5.nn"))
    net = build_module(spec, seed=0)
    state = net.__getstate__()
    assert not any(callable(v) for v in state.values())  # no compiled closures pickled
    bare = SpecModule.__new__(SpecModule)
    with pytest.raises(ValueError, match="spec IR is missing"):
        bare.__setstate__({k: v for k, v in state.items() if k != "_nnspec_ir"})
    # the IR is validated as any IR input: a model that is not there is an error
    bad = dict(state, _nnspec_model="Nope")
    with pytest.raises(KeyError):
        SpecModule.__new__(SpecModule).__setstate__(bad)


# ---- DistributedDataParallel and FSDP2 (gloo, 2 processes) -----------------------------

DIST_SPEC = """
model Net(x: [N, 6]) -> [N, 3] {
    dense 16 | tanh
    layernorm
    dense 16 | relu
    dense 3
}
train Net(label: [N] int) {
    loss cross_entropy(output, label)
    optimizer sgd lr=0.5 momentum=0.9
    clip norm=0.6
}
"""
BATCH = 8
STEPS = 3


def _batch():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((BATCH, 6)))
    y = torch.from_numpy(rng.integers(0, 3, size=BATCH))
    return x, y


def _train(module, inner, x, y, average=None) -> list[float]:
    """STEPS steps of the spec's own loss, clipping and optimiser; the loss per step."""
    opt = inner.configure_optimizer()
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = inner.loss(module(x), y)
        loss.backward()
        inner.clip_gradients()
        opt.step()
        value = loss.detach()
        if average is not None:
            value = average(value)
        losses.append(float(value))
    return losses


def _full_state(module) -> dict:
    out = {}
    for k, v in module.state_dict().items():
        v = v.full_tensor() if hasattr(v, "full_tensor") else v
        out[k] = v.detach().clone()
    return out


def _source_module(source_path: str):
    mspec = importlib.util.spec_from_file_location("net_gen", source_path)
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)  # our own generated file
    return mod.Net


def _worker(rank: int, world: int, port: int, out_dir: str, source_path: str) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)

    def average(v):
        dist.all_reduce(v)
        return v / world

    try:
        spec = nnspec.loads(DIST_SPEC, "net.nn")
        x, y = _batch()
        part = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        x, y = x[part], y[part]
        ref = build_module(spec, seed=0, dtype=torch.float64)
        gen = _source_module(source_path)
        results = {}

        def source_net():
            net = gen().double()
            net.load_state_dict(ref.state_dict())
            return net

        for form, make in (("build", lambda: build_module(spec, seed=0, dtype=torch.float64)),
                           ("source", source_net)):
            net = make()
            ddp = DDP(net)
            results[f"ddp-{form}"] = (_train(ddp, net, x, y, average), _full_state(net))

        # FSDP2 the way a large model is sharded: on meta, then memory and the seed's draw
        net = build_module(spec, seed=0, dtype=torch.float64, device="meta")
        for name in ("dense_0", "layernorm_0", "dense_1"):
            fully_shard(getattr(net, name))
        fully_shard(net)
        net.to_empty(device="cpu")
        net.reset_parameters()
        results["fsdp-build"] = (_train(net, net, x, y, average), _full_state(net))
        net = source_net()
        for name in ("dense_0", "dense_1", "dense_2"):
            fully_shard(getattr(net, name))
        fully_shard(net)
        results["fsdp-source"] = (_train(net, net, x, y, average), _full_state(net))
        if rank == 0:
            torch.save(results, Path(out_dir) / "results.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (hasattr(torch, "distributed") and torch.distributed.is_available()
                         and torch.distributed.is_gloo_available()),
                    reason="torch.distributed with gloo is not available")
def test_ddp_and_fsdp2_train_as_one_process(tmp_path):
    import torch.multiprocessing as mp

    from nnspec.backends.torch import emit_source

    spec = nnspec.loads(DIST_SPEC, "net.nn")
    source = tmp_path / "net_gen.py"
    source.write_text(emit_source(spec))
    # one process on the whole batch
    net = build_module(spec, seed=0, dtype=torch.float64)
    x, y = _batch()
    want_losses = _train(net, net, x, y)
    want = _full_state(net)
    assert want_losses[-1] < want_losses[0]  # it learns: the comparison is not vacuous
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), str(source)), nprocs=2, join=True)
    results = torch.load(tmp_path / "results.pt", weights_only=False)
    assert sorted(results) == ["ddp-build", "ddp-source", "fsdp-build", "fsdp-source"]
    for how, (losses, state) in results.items():
        np.testing.assert_allclose(losses, want_losses, rtol=1e-12, atol=1e-12, err_msg=how)
        assert list(state) == list(want), how
        for k in want:
            torch.testing.assert_close(state[k], want[k], rtol=1e-10, atol=1e-12,
                                       msg=f"{how}: {k}")


# ---- torch.export and torch.compile, every bundled spec ---------------------------------

# built on meta and traced there, their graphs checked at the inferred output shape: 10^12
# weights, the 572x572 U-Net's activations (see test_crosscheck.py), and the 224x224
# networks, whose every layer kind a smaller spec runs numerically
META_ONLY = {"dense_1e12.nn", "unet.nn", "vgg16.nn", "alexnet.nn", "resnet18.nn", "gpt2.nn",
             "bert_base.nn", "llama2_7b.nn"}
# the Transformers at small dims: the same layers and blocks, narrower and shallower (each
# replaced text must be in the spec, so that a change to it is noticed here)
SHRINK = {
    "transformer_base.nn": [("const d = 512", "const d = 16"), ("const ff = 2048",
                            "const ff = 32"), ("const vocab = 32000", "const vocab = 40"),
                            ("[N, S, 512]", "[N, S, 16]"), ("[N, T, 512]", "[N, T, 16]"),
                            ("[N, T, 32000]", "[N, T, 40]"),
                            ("heads, ff, p, 6)", "heads, ff, p, 1)")],
    "causal_lm.nn": [("const d = 512", "const d = 16"), ("const layers = 6",
                     "const layers = 2"), ("const vocab = 16384", "const vocab = 40"),
                     ("[N, T, 16384]", "[N, T, 40]")],
}
# torch specialises nn.GRU/LSTM/RNN to the sequence length (export then refuses that symbol
# as dynamic), and learned positions bound T; the encoder-decoder keeps its lengths static
# here only to save time (symbolic lengths through attention cost export seconds: the
# causal LM exports with a dynamic T)
EXPORT_BOUNDS = {"causal_lm.nn": {"T": (None, 1024)}, "gpt2.nn": {"T": (None, 1024)},
                 "bert_base.nn": {"T": (None, 512)}, "gru_sentiment.nn": {"T": None},
                 "seq2seq_gru.nn": {"S": None, "T": None},
                 "transformer_base.nn": {"S": None, "T": None}}
RECURRENT = {"rnn", "gru", "lstm"}


def _inputs(spec, model, n: int, device=None):
    xs = [torch.from_numpy(a) for a in concrete_inputs(spec, model, {"N": n}, "float32", n)]
    return [x.to(device) for x in xs] if device is not None else xs


def _seeded(fn, xs):
    torch.manual_seed(0)
    return fn(*xs)


def _call_exported(ep, xs):
    """Run an ExportedProgram's graph with its lifted weights: for a model with a layer
    named like a torch.fx.GraphModule attribute (``code``), which ``ep.module()`` cannot
    hold as a submodule."""
    from torch.export.graph_signature import InputKind, OutputKind

    user = iter(xs)
    args = []
    for s in ep.graph_signature.input_specs:
        if s.kind == InputKind.USER_INPUT:
            args.append(next(user))
        elif s.target in ep.state_dict:
            args.append(ep.state_dict[s.target])
        else:
            args.append(ep.constants[s.target])
    outs = ep.graph_module(*args)
    user_out = [o for o, s in zip(outs, ep.graph_signature.output_specs)
                if s.kind == OutputKind.USER_OUTPUT]
    assert len(user_out) == 1
    return user_out[0]


class _Graphs:
    """A torch.compile backend that runs the captured graphs as they are, counting them."""

    def __init__(self):
        self.count = 0

    def __call__(self, gm, example_inputs):
        self.count += 1
        return gm.forward


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_export_and_compile_every_spec(path):
    text = path.read_text()
    for old, new in SHRINK.get(path.name, []):
        assert old in text, (path.name, old)
        text = text.replace(old, new)
    spec = nnspec.loads(text, str(path))
    for model in spec.model_names:
        names = {k.split(".")[0] for k in spec.state_shapes(model)}
        clash = names & set(dir(torch.fx.GraphModule))
        recurrent = any(n.op in RECURRENT for n in spec.model(model).nodes)
        symbols = {str(d) for i in spec.model(model).inputs for d in i.dims()}
        bounds = {k: v for k, v in EXPORT_BOUNDS.get(path.name, {}).items() if k in symbols}
        if path.name in META_ONLY:
            net = build_module(spec, model, device="meta").eval()
            xs = _inputs(spec, model, 2, "meta")
        else:
            net = build_module(spec, model, seed=0).eval()
            xs = _inputs(spec, model, 2)
        ep = torch.export.export(net, tuple(xs), dynamic_shapes=net.dynamic_shapes(**bounds))
        torch._dynamo.reset()
        graphs = _Graphs()
        compiled = torch.compile(net, backend=graphs, fullgraph=not recurrent)
        if path.name in META_ONLY:
            outs = [n for n in ep.graph.nodes if n.op == "output"][0].args[0]
            typ = spec.output_type(model)  # symbolic, in the spec's terms
            wants = [t.shape for t in getattr(typ, "items", (typ,))]  # several returned
            assert len(outs) == len(wants)
            for out, want in zip(outs, wants):
                got = out.meta["val"].shape
                assert len(got) == len(want) and str(got[0]).startswith("s")  # N dynamic
                for g, w in zip(got[1:], want[1:]):  # a dynamic T is torch's own symbol
                    assert str(g) == str(w) if w.is_const else str(g).startswith("s"), (g, w)
            with torch.no_grad():
                a, b = compiled(*xs), net(*xs)
                assert [t.shape for t in (a if isinstance(a, tuple) else (a,))] == \
                    [t.shape for t in (b if isinstance(b, tuple) else (b,))]
            assert graphs.count == 1
            continue
        with torch.no_grad():
            # each call from one seed: a layer that samples (SampledDBN) draws the same noise
            eager = _seeded(net, xs)
            got = _seeded(functools.partial(_call_exported, ep), [xs]) if clash else \
                _seeded(ep.module(), xs)
            torch.testing.assert_close(got, eager, rtol=1e-5, atol=1e-5)
            # another batch size through the same exported graph (where a forward is cheap)
            if not clash and spec.param_count(model) < 5_000_000:
                xs3 = _inputs(spec, model, 3)
                torch.testing.assert_close(_seeded(ep.module(), xs3), _seeded(net, xs3),
                                           rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(_seeded(compiled, xs), eager, rtol=1e-5, atol=1e-5)
        # a recurrent layer is a graph break (dynamo does not trace nn.GRU): no fullgraph
        assert graphs.count >= 1 if recurrent else graphs.count == 1, model


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_inductor_compiles_a_bundled_spec():
    spec = nnspec.load(str(SPECS[0].parent / "keras_mlp.nn"))
    net = build_module(spec, seed=0).eval()
    torch._dynamo.reset()
    compiled = torch.compile(net, fullgraph=True)
    x = torch.randn(3, 100)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), rtol=1e-5, atol=1e-5)
