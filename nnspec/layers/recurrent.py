"""Recurrent layers over batch-first sequences [N, T, F]: rnn, gru, lstm; and last.

Parameters are nn.RNN / nn.GRU / nn.LSTM's: per layer k and direction
``weight_ih_l{k}`` [gates*H, in], ``weight_hh_l{k}`` [gates*H, H], ``bias_ih_l{k}``,
``bias_hh_l{k}`` [gates*H] (``..._reverse`` for the backward direction), all initialised
uniform(-1/sqrt(H), 1/sqrt(H)); gates stacked as rnn: 1, gru: r, z, n; lstm: i, f, g, o.
Note that PyTorch has two bias vectors where Keras has one: SimpleRNN(64) on 100 features
is 10,560 parameters in Keras, 10,624 here and in torch.

Equations (torch's; h0 and c0 default to zeros):

    rnn   h' = act(W_ih x + b_ih + W_hh h + b_hh)                act: tanh | relu
    gru   r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz)
          reset=after  (torch/cuDNN): n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
          reset=before (Cho et al.):  n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)
          h' = (1 - z) ⊙ n + z ⊙ h
    lstm  i, f, g, o = σ, σ, tanh, σ of (W_ih x + b_ih + W_hh h + b_hh)
          c' = f ⊙ c + i ⊙ g,  h' = o ⊙ tanh(c')

The cells are here (each kind's ``_step`` and ``_step_back``); what the kinds share, the
NumPy recurrence over time and its backward (back-propagation through time) included, is
in :mod:`._recurrence`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from ._recurrence import Cell, _Recurrent, _RecurrentParams
from .base import (
    MODULE,
    In,
    Int,
    LayerKind,
    Prev,
    ShapeError,
    TensorType,
    TorchCall,
    TorchModule,
    TorchPlan,
    register,
)

_HELPERS = "nnspec.layers.torch.recurrent"


def _sigmoid_(x):
    """σ(x) in place, as 0.5·tanh(x/2) + 0.5 (one transcendental, stable for any x)."""
    import numpy as np

    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x


@register
class RNN(_Recurrent):
    """Elman RNN (torch.nn.RNN): h' = act(W_ih x + b_ih + W_hh h + b_hh)."""

    name = "rnn"
    aliases = ("simple_rnn",)
    gates = 1
    torch_cls = "RNN"
    packed_cls = f"{_HELPERS}:PackedRNN"
    synonyms = {**_Recurrent.synonyms, "act": "nonlinearity", "activation": "nonlinearity"}
    summary = ("Elman RNN over [N, T, F]: rnn <hidden> [layers=1] [bidirectional] "
               "[nonlinearity=tanh|relu] [dropout=0] [bias] [state] [h0=h] [lengths=l]")

    class Params(_RecurrentParams):
        nonlinearity: Literal["tanh", "relu"] = "tanh"

    def _module(self, p, x):
        m = super()._module(p, x)
        if p.nonlinearity == "tanh":
            return m
        return TorchModule(m.cls, m.args, {**m.kwargs, "nonlinearity": p.nonlinearity})

    def _extra_detail(self, p):
        return [f"nonlinearity={p.nonlinearity}"]

    def _step(self, p, gi, state, cell: Cell, cache=None):
        import numpy as np

        a = state["h0"] @ cell.w_hh_t
        a += gi
        if cell.b_hh is not None:
            a += cell.b_hh
        h = np.tanh(a, out=a) if p.nonlinearity == "tanh" else np.maximum(a, 0, out=a)
        if cache is not None:
            cache["h"] = h
        return {"h0": h}

    def _step_back(self, p, cache, dstate, cell: Cell):
        """da = dh' ⊙ act'(a), from h' itself: 1 - h'² (tanh) or [h' > 0] (relu);
        dh = da W_hh."""
        h = cache["h"]
        da = dstate["h0"] * ((1 - h * h) if p.nonlinearity == "tanh" else (h > 0))
        return da, da, {"h0": da @ cell.w_hh}

    def _sample_extra(self):
        return {"nonlinearity": "relu"}


@register
class GRU(_Recurrent):
    """Gated recurrent unit: torch.nn.GRU (reset=after), or the reset gate before the
    recurrent matmul as in Cho et al. (2014) (reset=before)."""

    name = "gru"
    gates = 3
    torch_cls = "GRU"
    packed_cls = f"{_HELPERS}:PackedGRU"
    summary = ("GRU over [N, T, F]: gru <hidden> [layers=1] [bidirectional] "
               "[reset=after|before] [dropout=0] [bias] [state] [h0=h] [lengths=l]")

    class Params(_RecurrentParams):
        reset: Literal["after", "before"] = "after"

    def _module(self, p, x):
        m = super()._module(p, x)
        if p.reset == "before":
            return TorchModule(f"{_HELPERS}:ChoGRU", m.args, m.kwargs)
        return m

    def _extra_detail(self, p):
        return [f"reset={p.reset}"]

    def _step(self, p, gi, state, cell: Cell, cache=None):
        import numpy as np

        h = state["h0"]
        hd = p.hidden
        w_hh_t, b_hh = cell.w_hh_t, cell.b_hh
        if p.reset == "after":
            gh = h @ w_hh_t
            if b_hh is not None:
                gh += b_hh
            rz = _sigmoid_(gi[:, :2 * hd] + gh[:, :2 * hd])
            n = gh[:, 2 * hd:]
            if cache is not None:
                cache["hn"] = n.copy()  # W_hn h + b_hn, before the reset gate
            n *= rz[:, :hd]
        else:
            gh = h @ w_hh_t[:, :2 * hd]
            if b_hh is not None:
                gh += b_hh[:2 * hd]
            rz = _sigmoid_(gi[:, :2 * hd] + gh)
            rh = rz[:, :hd] * h
            if cache is not None:
                cache["rh"] = rh
            n = rh @ w_hh_t[:, 2 * hd:]
            if b_hh is not None:
                n += b_hh[2 * hd:]
        n += gi[:, 2 * hd:]
        np.tanh(n, out=n)
        out = h - n  # h' = (1 - z) n + z h = n + z (h - n)
        out *= rz[:, hd:]
        out += n
        if cache is not None:
            cache["rz"], cache["n"] = rz, n
        return {"h0": out}

    def _step_back(self, p, cache, dstate, cell: Cell):
        """From h' = n + z ⊙ (h - n): dn = dh' ⊙ (1 - z), dz = dh' ⊙ (h - n), and h gets
        dh' ⊙ z directly; dn_pre = dn ⊙ (1 - n²), dσ = σ (1 - σ). reset=after: dr =
        dn_pre ⊙ (W_hn h + b_hn) and the recurrent n-part gets dn_pre ⊙ r; reset=before:
        d(r ⊙ h) = dn_pre W_hn gives dr = d(r ⊙ h) ⊙ h and h another d(r ⊙ h) ⊙ r."""
        import numpy as np

        hd = p.hidden
        w_hh = cell.w_hh
        h = cache["prev"]["h0"]
        rz, n = cache["rz"], cache["n"]
        r, z = rz[:, :hd], rz[:, hd:]
        dh = dstate["h0"]
        dn_pre = dh * (1 - z) * (1 - n * n)
        drz = np.empty_like(rz)
        drz[:, hd:] = dh * (h - n)
        dh_prev = dh * z
        if p.reset == "after":
            drz[:, :hd] = dn_pre * cache["hn"]
            drz *= rz * (1 - rz)
            dgh = np.concatenate([drz, dn_pre * r], axis=1)
            dh_prev += dgh @ w_hh
        else:
            drh = dn_pre @ w_hh[2 * hd:]
            drz[:, :hd] = drh * h
            drz *= rz * (1 - rz)
            dgh = np.concatenate([drz, dn_pre], axis=1)
            dh_prev += drh * r
            dh_prev += drz @ w_hh[:2 * hd]
        dgi = np.concatenate([drz, dn_pre], axis=1)
        return dgi, dgh, {"h0": dh_prev}

    def _grad_whh(self, p, dgh, caches):
        """reset=before: the n-rows' recurrent input is r ⊙ h_{t-1}, not h_{t-1}."""
        import numpy as np

        if p.reset == "after":
            return super()._grad_whh(p, dgh, caches)
        hd = p.hidden
        h_prev = np.stack([c["prev"]["h0"] for c in caches]).reshape(-1, hd)
        rh = np.stack([c["rh"] for c in caches]).reshape(-1, hd)
        flat = dgh.reshape(-1, dgh.shape[-1])
        return np.concatenate([flat[:, :2 * hd].T @ h_prev, flat[:, 2 * hd:].T @ rh], axis=0)

    def _sample_extra(self):
        return {"reset": "before"}


@register
class LSTM(_Recurrent):
    """Long short-term memory (torch.nn.LSTM); ``state`` returns (output, h_n, c_n).

    With ``proj_size=P`` (0 < P < hidden) h is projected: h' = W_hr (o ⊙ tanh(c')), with
    ``weight_hr_l{k}`` [P, hidden]; h, the output and h_n are of size P, c stays hidden.
    """

    name = "lstm"
    gates = 4
    torch_cls = "LSTM"
    packed_cls = f"{_HELPERS}:PackedLSTM"
    state_args = ("h0", "c0")
    tensor_args = ("h0", "c0", "lengths")
    states = ("h_n", "c_n")
    summary = ("LSTM over [N, T, F]: lstm <hidden> [layers=1] [bidirectional] [dropout=0] "
               "[bias] [proj_size=0] [state] [h0=h] [c0=c] [lengths=l]")

    class Params(_RecurrentParams):
        c0: Int | None = None
        proj_size: Int = 0

        @field_validator("proj_size")
        @classmethod
        def _proj(cls, v):
            if v < 0:
                raise ValueError("must be a positive integer, or 0 for no projection")
            return v

    def _size(self, p, name="h0"):
        return p.proj_size if p.proj_size and name == "h0" else p.hidden

    def _check_sizes(self, p):
        if p.proj_size >= p.hidden:
            raise ShapeError(f"proj_size has to be smaller than hidden_size, but it is "
                             f"{p.proj_size} for hidden {p.hidden}", arg="proj_size",
                             hint=f"give a proj_size below {p.hidden}, or 0 for none")

    def _module(self, p, x):
        m = super()._module(p, x)
        if not p.proj_size:
            return m
        return TorchModule(m.cls, m.args, {**m.kwargs, "proj_size": p.proj_size})

    def _extra_detail(self, p):
        return [f"proj_size={p.proj_size}"] if p.proj_size else []

    def torch(self, p, ins, out):
        lengths = self._lengths_kw(p)
        if p.h0 is None and p.c0 is None:
            calls = [TorchCall(MODULE, (In(0),), lengths)]
        elif p.h0 is not None and p.c0 is not None:
            calls = [TorchCall(MODULE, (In(0), (In(p.h0), In(p.c0))), lengths)]
        else:  # one of them: the other is zeros
            given = (None if p.h0 is None else In(p.h0), None if p.c0 is None else In(p.c0))
            if p.proj_size:
                pre = TorchCall(f"{_HELPERS}:lstm_projected_state",
                                given + (p.hidden, p.proj_size))
            else:
                pre = TorchCall(f"{_HELPERS}:lstm_initial_state", given)
            calls = [pre, TorchCall(MODULE, (In(0), Prev()), lengths)]
        if p.state:
            calls.append(TorchCall(f"{_HELPERS}:lstm_flat", (Prev(),)))
        else:
            calls.append(TorchCall("getitem", (Prev(), 0)))
        return TorchPlan(self._module(p, ins[0]), calls)

    def _cell(self, p, w, sfx, dt):
        import numpy as np

        cell = super()._cell(p, w, sfx, dt)
        if p.proj_size:
            cell.w_hr = np.asarray(w["weight_hr" + sfx], dtype=dt)
        return cell

    def _step(self, p, gi, state, cell: Cell, cache=None):
        import numpy as np

        hd = p.hidden
        a = state["h0"] @ cell.w_hh_t
        a += gi
        if cell.b_hh is not None:
            a += cell.b_hh
        _sigmoid_(a[:, :2 * hd])  # i, f
        _sigmoid_(a[:, 3 * hd:])  # o
        g = np.tanh(a[:, 2 * hd:3 * hd], out=a[:, 2 * hd:3 * hd])
        c = a[:, hd:2 * hd] * state["c0"]
        c += a[:, :hd] * g
        tc = np.tanh(c)
        h = a[:, 3 * hd:] * tc
        if cache is not None:
            cache["gates"], cache["tc"] = a, tc
        if cell.w_hr is not None:
            if cache is not None:
                cache["m"] = h
            h = h @ cell.w_hr.T
        return {"h0": h, "c0": c}

    def _step_back(self, p, cache, dstate, cell: Cell):
        """From h' = o ⊙ tanh(c'), c' = f ⊙ c + i ⊙ g: do = dh' ⊙ tanh(c'), dc' += dh' ⊙ o
        ⊙ (1 - tanh²(c')), then di = dc' ⊙ g, df = dc' ⊙ c, dg = dc' ⊙ i, dc = dc' ⊙ f;
        through σ (σ (1 - σ)) and tanh (1 - g²); dh = da W_hh. With a projection
        h' = W_hr m, the gradient of m = o ⊙ tanh(c') is dh' W_hr."""
        import numpy as np

        hd = p.hidden
        a, tc = cache["gates"], cache["tc"]
        i, f, g, o = a[:, :hd], a[:, hd:2 * hd], a[:, 2 * hd:3 * hd], a[:, 3 * hd:]
        dh = dstate["h0"]
        if cell.w_hr is not None:
            cache["dh"] = dh
            dh = dh @ cell.w_hr
        dc = dstate["c0"] + dh * o * (1 - tc * tc)
        da = np.empty_like(a)
        da[:, :hd] = dc * g
        da[:, hd:2 * hd] = dc * cache["prev"]["c0"]
        da[:, 2 * hd:3 * hd] = dc * i * (1 - g * g)
        da[:, 3 * hd:] = dh * tc
        da[:, :2 * hd] *= a[:, :2 * hd] * (1 - a[:, :2 * hd])
        da[:, 3 * hd:] *= o * (1 - o)
        return da, da, {"h0": da @ cell.w_hh, "c0": dc * f}

    def _grad_more(self, p, caches, sfx):
        """dW_hr = Σ_t dh'_tᵀ m_t."""
        import numpy as np

        if not p.proj_size:
            return {}
        dh = np.stack([c["dh"] for c in caches]).reshape(-1, p.proj_size)
        m = np.stack([c["m"] for c in caches]).reshape(-1, p.hidden)
        return {"weight_hr" + sfx: dh.T @ m}

    def sample(self):
        args = {"hidden": 4, "layers": 2, "bidirectional": True, "dropout": 0.5, "bias": False,
                "state": True, "h0": 1, "c0": 2, "proj_size": 2}
        return args, [TensorType((2, 4, 5)), TensorType((4, 2, 2)), TensorType((4, 2, 4))]

    def _lengths_extra(self):
        return {"proj_size": 1}


@register
class Last(LayerKind):
    """The last time step of a batch-first sequence: x[:, -1], [N, T, F] -> [N, F].

    After a bidirectional layer this is the forward direction's last step concatenated
    with the backward direction's output at t = T-1, which is the backward direction's
    *first* step (it has seen only x[:, -1]); the backward direction's final state is
    the output at t = 0 (or h_n, with ``state``). After a layer given ``lengths=``, a
    sequence shorter than T has zeros there: its last step is in h_n.
    """

    name = "last"
    summary = "last time step: [N, T, F] -> [N, F] (x[:, -1])"

    def infer(self, p, ins):
        x = ins[0]
        if x.rank < 2:
            raise ShapeError(f"last expects a sequence [N, T, ...], got {x} (rank {x.rank})")
        t = x.shape[1]
        if t.is_const and t.value < 1:
            raise ShapeError(f"last needs at least one time step, but T is {t}")
        return TensorType(x.shape[:1] + x.shape[2:], x.dtype)

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall(".select", (In(0), 1, -1))])

    def numpy(self, p, w, xs, ctx):
        return xs[0][:, -1]

    def backward(self, p, w, xs, y, gy, ctx):
        """The gradient lands on the last step; the other steps get zeros."""
        import numpy as np

        x = np.asarray(xs[0])
        if not np.issubdtype(x.dtype, np.floating):
            return [None], {}
        gx = np.zeros_like(x)
        gx[:, -1] = gy
        return [gx], {}

    def sample(self):
        return {}, [TensorType((2, 3, 4))]
