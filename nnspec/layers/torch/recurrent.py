"""Torch code of the recurrent layers that torch.nn cannot express directly.

- :class:`ChoGRU`: a GRU with the reset gate applied *before* the recurrent matmul
  (Cho et al., 2014), with nn.GRU's parameter names, layouts and initialisation.
- :func:`lstm_initial_state` / :func:`lstm_flat`: nn.LSTM takes its initial state as one
  tuple ``(h0, c0)`` and returns ``(output, (h_n, c_n))``; these adapt it to the spec's
  ``h0=``/``c0=`` arguments and its flat ``(output, h_n, c_n)`` value.

The source emitter copies these definitions into generated files: inside them only the
names ``torch``, ``nn``, ``F`` and ``math`` (and builtins) may be used.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ChoGRU", "lstm_initial_state", "lstm_flat"]


class ChoGRU(nn.Module):
    """GRU with the reset gate before the recurrent matmul (Cho et al., 2014):

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)
        h' = (1 - z) * n + z * h

    (nn.GRU has ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``.) Parameters are named,
    laid out (gates r, z, n) and initialised as nn.GRU's; input is batch-first [N, T, F];
    ``forward(x, h0=None)`` returns ``(output [N, T, dirs*H], h_n [layers*dirs, N, H])``.
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

    def forward(self, x, h0=None):
        dirs = 2 if self.bidirectional else 1
        hidden = self.hidden_size
        steps = x.shape[1]
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
                    h = (1 - z) * n + z * h
                    ys[t] = h
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
