"""Torch helpers of the dense layer: a linear layer that uses another layer's weight,
transposed (a tied autoencoder's decoder, ``dense 784 weight=enc.weight.T``), and one whose
weight is stored [in, out] (``layout=in_out``: Hugging Face's Conv1D).

The source emitter copies this definition into generated files: inside it only the names
torch, nn, F and math are used.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class TransposedLinear(nn.Module):
    """y = x @ weight + bias, where ``weight`` [in_features, out_features] is another
    layer's (an nn.Linear(out_features, in_features)'s), given to forward. Only the bias is
    this layer's own (state_dict key ``bias``), initialised as nn.Linear's."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x, weight):
        return F.linear(x, weight.t(), self.bias)


class Conv1D(nn.Module):
    """y = x @ weight + bias with ``weight`` stored [in_features, out_features], as Hugging
    Face's GPT-2 stores its projections (state_dict keys ``weight``, ``bias``); initialised
    as nn.Linear."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.linear(x, self.weight.t(), self.bias)
