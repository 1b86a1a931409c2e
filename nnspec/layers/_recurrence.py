"""What rnn, gru and lstm share: their arguments, shapes, weights, costs, torch plan, and
the NumPy recurrence over time with its backward.

:class:`_Recurrent` is the base of the recurrent kinds (:mod:`.recurrent`); a kind gives
its number of gates, its states and its cell: ``_step`` (one time step) and
``_step_back`` (that step backwards). The NumPy kernels project the input of all time
steps with one matmul per layer and direction, then loop over time. Their backward is
back-propagation through time: the steps in reverse per layer and direction, then each
weight's gradient over all steps in one matmul (∂L/∂W_ih = Σ_t ∂L/∂gates_t · x_tᵀ).

``lengths=l`` (``l: [N] int``) makes the input a batch of padded sequences, sequence n
having its first l[n] steps, as torch's ``pack_padded_sequence(enforce_sorted=False)`` →
the module → ``pad_packed_sequence(total_length=T)``: a step t ≥ l[n] leaves the state
as it is and outputs zeros, so the final state of the forward direction is the state at
step l[n] - 1 and the backward direction starts at that step. A length of 0 (which torch
refuses) is an empty sequence: zero outputs, the initial state as the final one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import field_validator

from ..core.limits import MAX_NODES
from .base import (
    DEFAULT_INIT,
    FLOAT,
    INT,
    MODULE,
    Bool,
    In,
    InitArg,
    Int,
    LayerKind,
    Params,
    Prev,
    ShapeError,
    TensorType,
    TorchCall,
    TorchModule,
    TorchPlan,
    TupleType,
    W,
    concrete,
    need_float,
    need_rank,
    npops,
    positive,
    probability,
)

class _RecurrentParams(Params):
    hidden: Int
    layers: Int = 1
    bidirectional: Bool = False
    dropout: float = 0.0
    bias: Bool = True
    state: Bool = False
    h0: Int | None = None
    lengths: Int | None = None
    init: InitArg = DEFAULT_INIT
    bias_init: InitArg = DEFAULT_INIT

    _pos = positive("hidden", "layers")

    @field_validator("layers")
    @classmethod
    def _few_layers(cls, v):
        if v > MAX_NODES:
            raise ValueError(f"at most {MAX_NODES:,} stacked layers (nnspec's limit of layers "
                             "per model)")
        return v

    _p = probability("dropout")


@dataclass(slots=True)
class Cell:
    """One layer and direction's recurrent weights, as a cell computes with them."""

    w_hh: Any  # [gates*H, S], S the size of the recurrent state h
    w_hh_t: Any  # its transpose, contiguous
    b_hh: Any  # [gates*H] or None
    w_hr: Any = None  # lstm with proj_size: [P, H]


def check_lengths(lengths, steps: int, what: str):
    """The run-time lengths of a batch of padded sequences as int64, each in [0, steps]."""
    import numpy as np

    lengths = np.asarray(lengths)
    if not np.issubdtype(lengths.dtype, np.integer):
        raise TypeError(f"{what}'s lengths must be integers, got {lengths.dtype}")
    lengths = lengths.astype(np.int64, copy=False)
    bad = lengths[(lengths < 0) | (lengths > steps)]
    if bad.size:
        raise ValueError(f"{what}'s lengths must be in [0, {steps}] (the input's time "
                         f"steps), got {int(bad[0])}")
    return lengths


class _Recurrent(LayerKind):
    gates: int = 1
    positional = ("hidden",)
    # the initial states given as tensors (h0=, c0=); with lengths= the tensor arguments
    state_args: tuple[str, ...] = ("h0",)
    tensor_args = ("h0", "lengths")
    synonyms = {"hidden_size": "hidden", "units": "hidden", "num_layers": "layers",
                "use_bias": "bias", "return_state": "state"}
    states: tuple[str, ...] = ("h_n",)

    Params = _RecurrentParams

    # ---- shapes --------------------------------------------------------------------
    def _dirs(self, p) -> int:
        return 2 if p.bidirectional else 1

    def _features(self, x) -> int:
        return x.shape[2].value

    def _size(self, p, name: str = "h0") -> int:
        """The size of a state (h0 or c0), per direction; h0's is the output's."""
        return p.hidden

    def infer(self, p, ins):
        x = ins[0]
        need_float(x, self.name)
        need_rank(x, {3}, self.name, "[N, T, features], batch first")
        concrete(x.shape[2], f"{self.name}'s input features (the last dim)")
        if p.dropout > 0 and p.layers == 1:
            raise ShapeError(f"dropout is applied between stacked layers, but this {self.name} "
                             f"has layers=1 (dropout={p.dropout} would do nothing)",
                             arg="dropout", hint="set layers > 1, or add a dropout layer after")
        self._check_sizes(p)
        dirs = self._dirs(p)
        want = {name: TensorType((p.layers * dirs, x.shape[0], self._size(p, name)))
                for name in self.state_args}
        for name in self.state_args:
            t = self.extra(p, ins, name)
            if t is None:
                continue
            if t.dtype != FLOAT:
                raise ShapeError(f"{name} must be a float tensor, got {t}", arg=name)
            if t.shape != want[name].shape:
                size = "proj_size" if self._size(p, name) != p.hidden else "hidden"
                raise ShapeError(
                    f"{name} must be [layers*directions, N, {size}] = {want[name]}, but it is "
                    f"{t}", arg=name,
                    notes=[f"layers={p.layers}, directions={dirs}, {size}="
                           f"{self._size(p, name)}, and N is the batch of the input {x}"])
        lengths = self.extra(p, ins, "lengths")
        if lengths is not None and (lengths.dtype != INT or lengths.rank != 1
                                    or lengths.shape[0] != x.shape[0]):
            raise ShapeError(
                f"lengths must be [N] int, one length per sequence of the batch, so "
                f"[{x.shape[0]}] int for the input {x}, but it is {lengths}", arg="lengths",
                hint="declare it as an input `lengths: [N] int`")
        out = TensorType((x.shape[0], x.shape[1], dirs * self._size(p)))
        if not p.state:
            return out
        return TupleType((out,) + tuple(want[name] for name in self.state_args),
                         names=("output",) + self.states)

    def _check_sizes(self, p) -> None:
        """The shape rule's checks of a kind's own arguments (lstm's proj_size)."""

    # ---- weights and costs ---------------------------------------------------------
    def _layer_inputs(self, p, x) -> list[int]:
        f = self._features(x)
        return [f if k == 0 else self._dirs(p) * self._size(p) for k in range(p.layers)]

    def weights(self, p, ins, out):
        h = p.hidden
        g = self.gates * h
        init = ("uniform", 1.0 / h ** 0.5)
        w = {}
        for k, n_in in enumerate(self._layer_inputs(p, ins[0])):
            for d in range(self._dirs(p)):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                w["weight_ih" + sfx] = W((g, n_in), init)
                w["weight_hh" + sfx] = W((g, self._size(p)), init)
                if p.bias:
                    w["bias_ih" + sfx] = W((g,), init)
                    w["bias_hh" + sfx] = W((g,), init)
                if self._size(p) != h:  # lstm proj_size: the projection of h
                    w["weight_hr" + sfx] = W((self._size(p), h), init)
        return w

    def step_macs(self, p, x) -> int:
        """MACs of one time step for one sequence: gates*(I*H + S*H) per layer and
        direction (S the size of h), plus S*H with an lstm's projection."""
        h, s = p.hidden, self._size(p)
        proj = s * h if s != h else 0
        return sum((self.gates * (n_in * h + s * h) + proj) * self._dirs(p)
                   for n_in in self._layer_inputs(p, x))

    def macs(self, p, ins, out):
        x = ins[0]
        return x.shape[0] * x.shape[1] * self.step_macs(p, x)

    def detail(self, p, ins):
        parts = [f"hidden={p.hidden}"]
        if p.layers != 1:
            parts.append(f"layers={p.layers}")
        if p.bidirectional:
            parts.append("bidirectional")
        if p.dropout:
            parts.append(f"dropout={p.dropout}")
        if not p.bias:
            parts.append("bias=false")
        parts += self._extra_detail(p)
        for name in self.tensor_args:
            t = self.extra(p, ins, name)
            if t is not None:
                parts.append(f"{name}={t}")
        if p.state:
            parts.append("state")
        parts.append(f"per step {self.step_macs(p, ins[0]):,} MACs")
        return " ".join(parts)

    def _extra_detail(self, p) -> list[str]:
        return []

    # ---- torch ---------------------------------------------------------------------
    def _module(self, p, x) -> TorchModule:
        """nn.RNN / GRU / LSTM (``torch_cls``), or with lengths= the helper subclass whose
        forward also takes them (``packed_cls``)."""
        kw = {"num_layers": p.layers, "bias": p.bias, "batch_first": True,
              "dropout": p.dropout, "bidirectional": p.bidirectional}
        default = {"num_layers": 1, "bias": True, "dropout": 0.0, "bidirectional": False}
        kw = {k: v for k, v in kw.items() if k not in default or default[k] != v}
        cls = self.torch_cls if p.lengths is None else self.packed_cls
        return TorchModule(cls, (self._features(x), p.hidden), kw)

    torch_cls = ""
    packed_cls = ""

    def _lengths_kw(self, p) -> dict:
        return {} if p.lengths is None else {"lengths": In(p.lengths)}

    def torch(self, p, ins, out):
        args = (In(0),) if p.h0 is None else (In(0), In(p.h0))
        calls = [TorchCall(MODULE, args, self._lengths_kw(p))]
        if not p.state:
            calls.append(TorchCall("getitem", (Prev(), 0)))
        return TorchPlan(self._module(p, ins[0]), calls)

    # ---- numpy ---------------------------------------------------------------------
    def _cell(self, p, w, sfx: str, dt) -> Cell:
        import numpy as np

        w_hh = np.asarray(w["weight_hh" + sfx], dtype=dt)
        b_hh = np.asarray(w["bias_hh" + sfx], dtype=dt) if p.bias else None
        return Cell(w_hh, np.ascontiguousarray(w_hh.T), b_hh)

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = np.asarray(xs[0])
        dt = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
        x = x.astype(dt, copy=False)
        n, steps = x.shape[0], x.shape[1]
        dirs = self._dirs(p)
        # the steps each sequence has, [T, N] (None: all of them)
        active = None
        if p.lengths is not None:
            lengths = check_lengths(xs[p.lengths], steps, self.name)
            active = np.arange(steps)[:, None] < lengths[None, :]
        # with a backward to follow: each layer's input, each step's intermediates (by
        # layer, direction and time) and the inter-layer dropout masks
        rec = ctx.saved
        if rec is not None:
            rec.update(inputs=[], steps={}, masks={}, active=active)
        init = {}
        for name in self.state_args:
            i = getattr(p, name)
            init[name] = None if i is None else np.asarray(xs[i], dtype=dt)
        finals = {name: [] for name in self.state_args}
        inp = x
        for k in range(p.layers):
            if rec is not None:
                rec["inputs"].append(inp)
            outs = []
            for d in range(dirs):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                w_ih = np.asarray(w["weight_ih" + sfx], dtype=dt)
                cell = self._cell(p, w, sfx, dt)
                # the input projection of every time step: one matmul, time-major so
                # that each step reads a contiguous [N, gates*H] block
                gi = (inp.transpose(1, 0, 2).reshape(steps * n, -1) @ w_ih.T)
                gi = gi.reshape(steps, n, -1)
                if p.bias:
                    gi += np.asarray(w["bias_ih" + sfx], dtype=dt)
                state = {}
                for name in self.state_args:
                    s0 = init[name]
                    state[name] = (np.zeros((n, self._size(p, name)), dt) if s0 is None
                                   else s0[k * dirs + d])
                ys = np.empty((steps, n, self._size(p)), dt)
                order = range(steps - 1, -1, -1) if d else range(steps)
                step = self._step
                caches: list = [None] * steps
                for t in order:
                    cache = None if rec is None else {"prev": state}
                    new = step(p, gi[t], state, cell, cache)
                    if active is None:
                        state = new
                        ys[t] = new["h0"]
                    else:  # past its end a sequence keeps its state and outputs zeros
                        on = active[t][:, None]
                        state = {name: np.where(on, new[name], state[name]) for name in new}
                        ys[t] = np.where(on, new["h0"], 0)
                    caches[t] = cache
                if rec is not None:
                    rec["steps"][k, d] = caches
                ys = ys.transpose(1, 0, 2)
                outs.append(ys)
                for name in self.state_args:
                    finals[name].append(state[name])
            inp = np.concatenate(outs, axis=2) if dirs == 2 else outs[0]
            if p.dropout > 0 and k < p.layers - 1:
                if rec is not None and ctx.training:
                    # the same draw as dropout(inp), kept as the scale mask (0 or 1/(1-p))
                    mask = npops.dropout(np.ones_like(inp), p.dropout, True, ctx.rng)
                    rec["masks"][k] = mask
                    inp = inp * mask
                else:
                    inp = npops.dropout(inp, p.dropout, ctx.training, ctx.rng)
        if not p.state:
            return inp
        return (inp,) + tuple(np.stack(finals[name], axis=0) for name in self.state_args)

    def backward(self, p, w, xs, y, gy, ctx):
        """Back-propagation through time. Per layer (last first) and direction, the steps
        run in reverse: each gives the gradient of its gate pre-activations from the input
        projection (dgi) and from the recurrent one (dgh), and dL/dh, dL/dc of the step
        before. Then, over all steps at once, dW_ih = Σ_t dgi_tᵀ x_t, dW_hh = Σ_t dgh_tᵀ
        h_{t-1}, the biases' gradients are the sums of dgi and dgh, and the layer's input
        gets dgi W_ih. Between layers the gradient goes through the dropout mask the
        forward drew; what reaches the first step is h0's (c0's) gradient. With lengths,
        a step past a sequence's end passes the state's gradient through unchanged and
        its output (a constant zero) gets none."""
        import numpy as np

        rec = self._record(p, w, xs, ctx)
        x = rec["inputs"][0]
        active = rec.get("active")
        dt = x.dtype
        n, steps = x.shape[0], x.shape[1]
        dirs, hd = self._dirs(p), self._size(p)
        if p.state:
            g_out, g_fin = gy[0], list(gy[1:])
        else:
            g_out, g_fin = gy, [None] * len(self.state_args)
        out = y[0] if p.state else y
        g = np.zeros_like(out) if g_out is None else np.asarray(g_out, dtype=dt)
        g_init = {name: np.zeros((p.layers * dirs, n, self._size(p, name)), dt)
                  for name in self.state_args}
        gw: dict = {}
        for k in range(p.layers - 1, -1, -1):
            if k in rec["masks"]:
                g = g * rec["masks"][k]
            inp = rec["inputs"][k]
            inp_tm = inp.transpose(1, 0, 2).reshape(steps * n, -1)
            g_in = np.zeros(inp_tm.shape, dt)
            for d in range(dirs):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                w_ih = np.asarray(w["weight_ih" + sfx], dtype=dt)
                cell = self._cell(p, w, sfx, dt)
                caches = rec["steps"][k, d]
                g_h = g[:, :, d * hd:(d + 1) * hd].transpose(1, 0, 2)
                if active is not None:  # an output past the end is a constant zero
                    g_h = g_h * active[:, :, None]
                dstate = {}
                for j, name in enumerate(self.state_args):
                    gf = g_fin[j]
                    dstate[name] = (np.zeros((n, self._size(p, name)), dt) if gf is None
                                    else np.array(gf[k * dirs + d], dtype=dt))
                dgi = np.empty((steps, n, self.gates * p.hidden), dt)
                dgh = np.empty_like(dgi)
                order = range(steps) if d else range(steps - 1, -1, -1)
                for t in order:
                    dstate["h0"] = dstate["h0"] + g_h[t]
                    if active is None:
                        dgi[t], dgh[t], dstate = self._step_back(p, caches[t], dstate, cell)
                        continue
                    # only the sequences still running take the step (the backward of a
                    # step is linear in what it is given: the others get zeros from it)
                    on = active[t][:, None]
                    given = {name: v * on for name, v in dstate.items()}
                    dgi[t], dgh[t], back = self._step_back(p, caches[t], given, cell)
                    dstate = {name: np.where(on, back[name], dstate[name]) for name in back}
                for name in self.state_args:
                    g_init[name][k * dirs + d] = dstate[name]
                dgi_flat = dgi.reshape(steps * n, -1)
                gw["weight_ih" + sfx] = dgi_flat.T @ inp_tm
                gw["weight_hh" + sfx] = self._grad_whh(p, dgh, caches)
                if p.bias:
                    gw["bias_ih" + sfx] = dgi_flat.sum(axis=0)
                    gw["bias_hh" + sfx] = dgh.reshape(steps * n, -1).sum(axis=0)
                gw.update(self._grad_more(p, caches, sfx))
                g_in += dgi_flat @ w_ih
            g = g_in.reshape(steps, n, -1).transpose(1, 0, 2)
        gxs: list = [None] * len(xs)
        gxs[0] = g if np.issubdtype(np.asarray(xs[0]).dtype, np.floating) else None
        for name in self.state_args:
            i = getattr(p, name)
            if i is not None:
                gxs[i] = g_init[name] if gxs[i] is None else gxs[i] + g_init[name]
        return gxs, gw

    def _record(self, p, w, xs, ctx) -> dict:
        """What the forward stored for the backward; rerun it when nothing was stored (an
        evaluation-mode call: a training run's dropout masks cannot be drawn again)."""
        if ctx.saved and "steps" in ctx.saved:
            return ctx.saved
        if ctx.training and p.dropout > 0:
            raise ValueError(f"{self.name}'s backward needs the dropout masks its forward "
                             "drew: run the forward with ctx.saved set")
        from dataclasses import replace

        rec: dict = {}
        self.numpy(p, w, xs, replace(ctx, saved=rec, updates={}))
        return rec

    def _grad_whh(self, p, dgh, caches):
        """dW_hh = Σ_t dgh_tᵀ h_{t-1}, all steps in one matmul."""
        import numpy as np

        h_prev = np.stack([c["prev"]["h0"] for c in caches])
        return dgh.reshape(-1, dgh.shape[-1]).T @ h_prev.reshape(-1, h_prev.shape[-1])

    def _grad_more(self, p, caches, sfx: str) -> dict:
        """The gradients of a cell's other weights (lstm's weight_hr), from its caches."""
        return {}

    def _step_back(self, p, cache: dict, dstate: dict, cell: Cell):
        """One step backwards: from dL/d(state after the step) to (dgi, dgh, dL/d(state
        before)); dgi and dgh are the gradients of the gate pre-activations' input and
        recurrent parts (they differ where a gate multiplies one of them)."""
        raise NotImplementedError

    def _step(self, p, gi, state: dict, cell: Cell, cache: dict | None = None) -> dict:
        """One time step: gi = W_ih x + b_ih for this step; stores in ``cache`` (when
        given) what ``_step_back`` needs. It must not change ``state``'s arrays."""
        raise NotImplementedError

    # ---- registry sample -----------------------------------------------------------
    def sample(self):
        args = {"hidden": 3, "layers": 2, "bidirectional": True, "dropout": 0.5, "bias": False,
                "state": True, "h0": 1, **self._sample_extra()}
        x = TensorType((2, 4, 5))
        states = [TensorType((4, 2, 3))] * len(self.state_args)
        return args, [x, *states]

    def samples(self):
        """The sample, and one with lengths (the drawn lengths of the registry's tests are
        0, 1 or 2 of 3 steps)."""
        x = TensorType((3, 3, 2))
        return [self.sample(), ({"hidden": 2, "bidirectional": True, "state": True,
                                 "lengths": 1, **self._lengths_extra()},
                                [x, TensorType((3,), INT)])]

    def _sample_extra(self) -> dict:
        return {}

    def _lengths_extra(self) -> dict:
        return {}
