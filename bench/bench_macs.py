"""nnspec's analytic MACs vs torch.utils.flop_counter.FlopCounterMode on the torch module.

Usage: python bench/bench_macs.py

A measurement, not a goal. For each network, nnspec's `spec.layers(model)` MACs are
evaluated at the batch / sequence sizes below (analytic FLOPs = 2 x MACs) and compared with
what FlopCounterMode counts over one forward of the torch module (build_module(spec); for
the encoder also the hand-written nn.TransformerEncoder of bench_sequences.py). The
breakdown is per nnspec layer kind: FlopCounterMode's per-module counts are matched to the
layers by state_dict name, and a TorchDispatchMode logs which aten ops ran inside each
layer; the ops that flop_counter has no formula for (torch.utils.flop_counter.flop_registry)
are listed, which is where the two differ. Pure data-movement ops (views, copies,
cat/stack, embedding lookups) are left out of that list.

  Encoder6        bench_sequences.ENCODER_SPEC (6 x stdlib EncoderLayer, d 512, 8 heads,
                  ff 2048) at N=8, T=64 and at N=8, T=128 (the size of the issue's "25.8 of
                  40.3 GFLOP"), in three modes: eval + no_grad (inference: torch's fast
                  paths), eval + no_grad with torch.backends.mha.set_fastpath_enabled(False),
                  and train mode (dropout active, grad enabled, forward only)
  KerasLSTM       specs/keras_lstm.nn (lstm 64 over [N, 10, 100]) at N=32
  LSTMSentiment   gru_sentiment.nn with `lstm 256 layers=2 bidirectional` at N=16, T=64
  GRUSentiment    specs/gru_sentiment.nn at N=16, T=64
  LeNet5          specs/lenet5.nn at N=64;  AlexNet  specs/alexnet.nn at N=8
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from _common import ROOT, machine, result
from bench_sequences import OpLog, hand_encoder, load_encoder_spec

import nnspec
from nnspec.backends.torch import build_module

LSTM_SPEC = """\
# gru_sentiment.nn with an LSTM in place of the GRU
model LSTMSentiment(tokens: [N, T] int) -> [N, 2] {
    embedding 20000 128 padding=0 as embed
    lstm 256 layers=2 bidirectional as lstm
    last
    dense 2 as classifier
}
"""

# aten ops that compute nothing (views, copies, gathers): not listed as "uncounted"
NO_MATH = {
    "aten.view", "aten._unsafe_view", "aten.t", "aten.transpose", "aten.transpose_",
    "aten.permute", "aten.select", "aten.slice", "aten.unsqueeze", "aten.squeeze",
    "aten.expand", "aten.clone", "aten.detach", "aten.zeros", "aten.empty", "aten.stack",
    "aten.cat", "aten.split", "aten.unsafe_split", "aten.unbind", "aten.copy_",
    "aten.embedding", "aten.alias", "aten._to_copy", "aten.contiguous", "aten.reshape",
    "aten.lift_fresh", "aten.ones", "aten.triu", "aten.new_zeros",
}
FUNCTIONAL = "(no layer module)"
NOTE = {
    "aten._native_multi_head_attention":
        "nn.MultiheadAttention's inference fast path: in/out projections + QK^T + AV in one op",
    "aten._transformer_encoder_layer_fwd":
        "nn.TransformerEncoderLayer's fused fast path: the whole layer in one op",
    "aten._scaled_dot_product_flash_attention_for_cpu":
        "CPU SDPA kernel: flop_counter registers only the CUDA-side "
        "_scaled_dot_product_{flash,efficient,cudnn}_attention",
    "aten.mkldnn_rnn_layer": "nn.LSTM on CPU (oneDNN): the whole layer in one op",
}


class LayerOps(OpLog):
    """OpLog per nnspec layer. The running layer comes from torch's ModuleTracker (global
    module hooks, as FlopCounterMode uses them): hooks on the modules themselves would turn
    off nn.TransformerEncoderLayer's fused fast path ("forward pre-/hooks are attached to
    the module"). Ops outside any layer's module go to FUNCTIONAL: the layers that run as
    torch functions in the model's forward (relu, add, tanh, softmax, last, flatten) and,
    for nn.TransformerEncoder on its fast path, the fused op run by layers.<i> itself."""

    def __init__(self, module, names):
        super().__init__()
        from torch.utils.module_tracker import ModuleTracker
        root = type(module).__name__
        self.fqn = {f"{root}.{n}": n for n in names}
        self.by_layer: dict[str, dict[str, int]] = defaultdict(dict)
        self.tracker = ModuleTracker()

    def __enter__(self):
        self.tracker.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.tracker.__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inside = [self.fqn[p] for p in self.tracker.parents if p in self.fqn]
        layer = max(inside, key=len) if inside else FUNCTIONAL
        d = self.by_layer[layer]
        k = str(func.overloadpacket)
        d[k] = d.get(k, 0) + 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def mode(name, module):
    was = module.training
    if name == "train":
        module.train()
        with torch.enable_grad():
            yield
    else:
        module.eval()
        torch.backends.mha.set_fastpath_enabled(name != "fastpath off")
        try:
            with torch.no_grad():
                yield
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
    module.train(was)


def gf(x: float) -> str:
    return f"{x / 1e9:.4g}" if x < 1e9 else f"{x / 1e9:.2f}"


def compare(label, spec, module, x, env, mode_name, detail=True):
    rows = spec.layers()
    names = [r.name for r in rows]
    kinds = {r.name: r.kind for r in rows}
    analytic = defaultdict(float)
    n_layers = defaultdict(int)
    for r in rows:
        analytic[r.kind] += 2 * r.macs.evaluate(env)
        n_layers[r.kind] += 1
    total_a = sum(analytic.values())
    torch.manual_seed(0)
    with mode(mode_name, module):
        with FlopCounterMode(display=False) as fcm:
            module(x)
        with LayerOps(module, names) as log:
            module(x)
    root = type(module).__name__
    counts = fcm.get_flop_counts()
    total_c = fcm.get_total_flops()
    counted = defaultdict(float)
    for name in names:
        counted[kinds[name]] += sum(counts.get(f"{root}.{name}", {}).values())
    outside = total_c - sum(counted.values())
    ops_by_kind: dict[str, dict[str, int]] = defaultdict(dict)
    for layer, ops in log.by_layer.items():
        kind = kinds.get(layer, layer)
        for op, c in ops.items():
            ops_by_kind[kind][op] = ops_by_kind[kind].get(op, 0) + c
    print(f"  [{label}, {root}, {mode_name}] analytic {gf(total_a)} GFLOP, flop_counter "
          f"{gf(total_c)} GFLOP = {total_c / total_a:.1%} of analytic")
    if detail:
        print(f"    {'layer kind':18s} {'n':>3s} {'analytic':>10s} {'counted':>10s} {'ratio':>6s}"
              f"  ops with no flop_counter formula (calls)")
        registry = {str(k) for k in flop_registry}
        mods = {n for n, _ in module.named_modules()}
        with_module = {kinds[n] for n in names if n in mods} | {FUNCTIONAL}
        for kind in list(analytic) + ([FUNCTIONAL] if FUNCTIONAL in ops_by_kind else []):
            a, c = analytic.get(kind, 0.0), counted.get(kind, 0.0)
            n = str(n_layers[kind]) if kind in n_layers else "-"
            if kind == FUNCTIONAL:
                c = outside
            if kind not in ops_by_kind and kind not in with_module:
                ops = f"(no module of its own: see {FUNCTIONAL})"
            else:
                unc = {op: k for op, k in ops_by_kind.get(kind, {}).items()
                       if op not in registry and op not in NO_MATH}
                ops = ", ".join(f"{op.split('.', 1)[1]} x{k}" for op, k in unc.items()) or "-"
            ratio = f"{c / a:6.1%}" if a else "     -"
            print(f"    {kind:18s} {n:>3s} {gf(a) if kind != FUNCTIONAL else '-':>10s} "
                  f"{gf(c):>10s} {ratio}  {ops}")
        big = {op for ops in ops_by_kind.values() for op in ops if op in NOTE}
        for op in sorted(big):
            print(f"      {op.split('.', 1)[1]}: {NOTE[op]}")
    result("flop count", f"[{label}, {root}, {mode_name}] analytic {gf(total_a)} GFLOP, "
           f"flop_counter {gf(total_c)} GFLOP ({total_c / total_a:.1%})",
           "measurement (no goal)", None)
    return total_a, total_c


def attention_split(spec, env) -> None:
    """The analytic attention FLOPs split into projections and QK^T / AV."""
    proj = scores = 0
    for r in spec.layers():
        if r.kind == "attention":
            n, t, e = (d.evaluate(env) for d in r.inputs[0].shape)
            proj += 2 * n * t * 4 * e * e
            scores += 2 * n * 2 * t * t * e
    print(f"    attention, analytic: projections (Q, K, V, out) {gf(proj)} GFLOP + QK^T and AV "
          f"{gf(scores)} GFLOP")


def main() -> None:
    torch.set_num_threads(2)
    print(f"bench_macs: {machine()}, torch {torch.__version__}")
    gen = torch.Generator().manual_seed(0)

    enc = load_encoder_spec()
    built = build_module(enc, seed=0)
    hand = hand_encoder(True)
    hand.load_state_dict(built.state_dict())
    for n, t in ((8, 64), (8, 128)):
        x = torch.randn(n, t, 512, generator=gen)
        label = f"Encoder6 N={n} T={t}"
        print(f"  == {label}")
        attention_split(enc, {"N": n, "T": t})
        for m in ("eval no_grad", "fastpath off", "train"):
            compare(label, enc, built, x, {"N": n, "T": t}, m)
        for m in ("eval no_grad", "fastpath off", "train"):
            compare(label, enc, hand, x, {"N": n, "T": t}, m, detail=(m == "eval no_grad"))

    cases = [
        ("KerasLSTM N=32", nnspec.load(str(ROOT / "specs/keras_lstm.nn")), "float", (32, 10, 100)),
        ("LSTMSentiment N=16 T=64", nnspec.loads(LSTM_SPEC), "int", (16, 64)),
        ("GRUSentiment N=16 T=64", nnspec.load(str(ROOT / "specs/gru_sentiment.nn")), "int",
         (16, 64)),
        ("LeNet5 N=64", nnspec.load(str(ROOT / "specs/lenet5.nn")), "float", (64, 1, 32, 32)),
        ("AlexNet N=8", nnspec.load(str(ROOT / "specs/alexnet.nn")), "float", (8, 3, 224, 224)),
    ]
    for label, spec, dtype, shape in cases:
        print(f"  == {label}")
        module = build_module(spec, seed=0)
        if dtype == "int":
            x = torch.randint(1, 20000, shape, generator=gen)
        else:
            x = torch.randn(shape, generator=gen)
        env = {"N": shape[0]}
        if len(shape) >= 2:
            env["T"] = shape[1]
        compare(label, spec, module, x, env, "eval no_grad")


if __name__ == "__main__":
    main()
