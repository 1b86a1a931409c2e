"""Torch code of the recurrent layers that torch.nn cannot express directly.

- :class:`ChoGRU`: a GRU with the reset gate applied *before* the recurrent matmul
  (Cho et al., 2014), with nn.GRU's parameter names, layouts and initialisation.
- :class:`PackedRNN`, :class:`PackedGRU`, :class:`PackedLSTM`: nn.RNN / GRU / LSTM whose
  forward also takes the lengths of a batch of padded sequences (:func:`packed_run`:
  ``pack_padded_sequence`` → the module → ``pad_packed_sequence``).
- :func:`lstm_initial_state` / :func:`lstm_projected_state` / :func:`lstm_flat`: nn.LSTM
  takes its initial state as one tuple ``(h0, c0)`` and returns ``(output, (h_n, c_n))``;
  these adapt it to the spec's ``h0=``/``c0=`` arguments and its flat ``(output, h_n,
  c_n)`` value.

The source emitter copies these definitions into generated files: inside them only the
names ``torch``, ``nn``, ``F`` and ``math`` (and builtins) may be used.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ChoGRU", "PackedGRU", "PackedLSTM", "PackedRNN", "lstm_flat",
           "lstm_initial_state", "lstm_projected_state", "packed_run",
           "sequence_lengths"]


class ChoGRU(nn.Module):
    """GRU with the reset gate before the recurrent matmul (Cho et al., 2014):

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)
        h' = (1 - z) * n + z * h

    (nn.GRU has ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``.) Parameters are named,
    laid out (gates r, z, n) and initialised as nn.GRU's; input is batch-first [N, T, F];
    ``forward(x, h0=None, lengths=None)`` returns ``(output [N, T, dirs*H], h_n
    [layers*dirs, N, H])``. With ``lengths`` [N], as :func:`packed_run`: a step past a
    sequence's end keeps its state and outputs zeros.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=True,
                 dropout=0.0, bidirectional=False):
        super().__init__()
        if not batch_first:
            raise ValueError("ChoGRU supports batch_first=True only")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        dirs = 2 if bidirectional else 1
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size * dirs
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                self.register_parameter(
                    "weight_ih" + sfx, nn.Parameter(torch.empty(3 * hidden_size, width)))
                self.register_parameter(
                    "weight_hh" + sfx, nn.Parameter(torch.empty(3 * hidden_size, hidden_size)))
                if bias:
                    self.register_parameter(
                        "bias_ih" + sfx, nn.Parameter(torch.empty(3 * hidden_size)))
                    self.register_parameter(
                        "bias_hh" + sfx, nn.Parameter(torch.empty(3 * hidden_size)))
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for w in self.parameters():
            nn.init.uniform_(w, -bound, bound)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s + ", reset=before"

    def forward(self, x, h0=None, lengths=None):
        dirs = 2 if self.bidirectional else 1
        hidden = self.hidden_size
        steps = x.shape[1]
        if lengths is not None:
            lengths = sequence_lengths(lengths, steps).to(x.device)
        if h0 is None:
            h0 = x.new_zeros(self.num_layers * dirs, x.shape[0], hidden)
        finals = []
        inp = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                w_ih = getattr(self, "weight_ih" + sfx)
                w_hh = getattr(self, "weight_hh" + sfx)
                b_ih = getattr(self, "bias_ih" + sfx) if self.bias else None
                b_hh = getattr(self, "bias_hh" + sfx) if self.bias else None
                w_rz, w_n = w_hh[:2 * hidden], w_hh[2 * hidden:]
                b_rz = b_hh[:2 * hidden] if b_hh is not None else None
                b_n = b_hh[2 * hidden:] if b_hh is not None else None
                gi = F.linear(inp, w_ih, b_ih)  # all steps at once: [N, T, 3H]
                h = h0[layer * dirs + d]
                ys = [h] * steps
                order = range(steps - 1, -1, -1) if d else range(steps)
                for t in order:
                    i_r, i_z, i_n = gi[:, t].chunk(3, dim=1)
                    h_r, h_z = F.linear(h, w_rz, b_rz).chunk(2, dim=1)
                    r = torch.sigmoid(i_r + h_r)
                    z = torch.sigmoid(i_z + h_z)
                    n = torch.tanh(i_n + F.linear(r * h, w_n, b_n))
                    new = (1 - z) * n + z * h
                    if lengths is None:
                        h = ys[t] = new
                    else:
                        running = (t < lengths)[:, None]
                        h = torch.where(running, new, h)
                        ys[t] = new.masked_fill(~running, 0.0)
                outs.append(torch.stack(ys, dim=1))
                finals.append(h)
            inp = torch.cat(outs, dim=2) if dirs == 2 else outs[0]
            if self.dropout > 0 and layer < self.num_layers - 1:
                inp = F.dropout(inp, self.dropout, self.training)
        return inp, torch.stack(finals, dim=0)


def lstm_initial_state(h0, c0):
    """nn.LSTM's ``(h0, c0)`` when the spec gives only one of them: the other is zeros."""
    if h0 is None:
        h0 = torch.zeros_like(c0)
    if c0 is None:
        c0 = torch.zeros_like(h0)
    return (h0, c0)


def lstm_flat(result):
    """nn.LSTM's ``(output, (h_n, c_n))`` as ``(output, h_n, c_n)``."""
    output, (h_n, c_n) = result
    return (output, h_n, c_n)


def lstm_projected_state(h0, c0, hidden_size, proj_size):
    """nn.LSTM(proj_size=...)'s ``(h0, c0)`` when the spec gives only one of them: the
    other is zeros, h0 of size proj_size and c0 of size hidden_size."""
    given = c0 if h0 is None else h0
    if h0 is None:
        h0 = given.new_zeros(given.shape[:-1] + (proj_size,))
    if c0 is None:
        c0 = given.new_zeros(given.shape[:-1] + (hidden_size,))
    return (h0, c0)


def sequence_lengths(lengths, steps):
    """The lengths of a batch of padded sequences as torch's packing wants them (int64 on
    the CPU), each checked to be in [0, steps]."""
    lengths = torch.as_tensor(lengths).to("cpu", torch.int64)
    if bool(((lengths < 0) | (lengths > steps)).any()):
        raise ValueError(f"sequence lengths must be in [0, {steps}] (the input's time "
                         f"steps), got {lengths.tolist()}")
    return lengths


def packed_run(forward, x, lengths, hx=None):
    """``forward`` (nn.RNN / GRU / LSTM's) over the padded batch-first sequences x
    [N, T, F], sequence n being its first lengths[n] steps: packed, run, and padded back to
    T steps with zeros. The final state is each sequence's state at its last step (the
    backward direction's at its first). An empty sequence, which torch cannot pack, gets
    zero outputs and its initial state as the final one."""
    steps = x.shape[1]
    lengths = sequence_lengths(lengths, steps)
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1), batch_first=True,
                                               enforce_sorted=False)
    output, state = forward(packed, hx)
    output, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True,
                                                 total_length=steps)
    empty = (lengths == 0).to(x.device)

    def initial(final, first):
        keep = empty[None, :, None]
        return final.masked_fill(keep, 0.0) if first is None else torch.where(keep, first, final)

    output = output.masked_fill(empty[:, None, None], 0.0)
    if isinstance(state, tuple):  # an LSTM's (h_n, c_n)
        h0, c0 = (None, None) if hx is None else hx
        return output, (initial(state[0], h0), initial(state[1], c0))
    return output, initial(state, hx)


class PackedRNN(nn.RNN):
    """nn.RNN whose forward also takes the lengths of padded sequences (:func:`packed_run`)."""

    def forward(self, input, hx=None, lengths=None):
        if lengths is None:
            return super().forward(input, hx)
        return packed_run(super().forward, input, lengths, hx)


class PackedGRU(nn.GRU):
    """nn.GRU whose forward also takes the lengths of padded sequences (:func:`packed_run`)."""

    def forward(self, input, hx=None, lengths=None):
        if lengths is None:
            return super().forward(input, hx)
        return packed_run(super().forward, input, lengths, hx)


class PackedLSTM(nn.LSTM):
    """nn.LSTM whose forward also takes the lengths of padded sequences
    (:func:`packed_run`)."""

    def forward(self, input, hx=None, lengths=None):
        if lengths is None:
            return super().forward(input, hx)
        return packed_run(super().forward, input, lengths, hx)
