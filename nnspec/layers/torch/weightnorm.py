"""Torch helpers of ``weight_norm=``: nn.Linear and nn.Conv1d/2d/3d whose weight is
weight_g * weight_v / ‖weight_v‖, the norm over every dim but ``dim``, computed in forward.
The parameters, their keys (``weight_g``, ``weight_v``) and their values at construction
(v the layer's initial weight, g its norm) are torch.nn.utils.weight_norm's, which Hugging
Face's Wav2Vec2 checkpoints hold, without its deprecated forward pre-hook.

The source emitter copies these definitions into generated files: inside them only the
names torch, nn, F and math are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def norm_except_dim(v, dim):
    """The 2-norm of v over every dim but ``dim``, kept as size-1 dims."""
    return torch.linalg.vector_norm(v, dim=[i for i in range(v.dim()) if i != dim],
                                    keepdim=True)


class WeightNorm:
    """Mixed into a torch.nn layer: its weight split into the magnitude ``weight_g`` and
    the direction ``weight_v``, ``normed_weight()`` the weight they make."""

    def _split_weight(self, dim):
        weight = self.weight.detach()
        del self.weight
        self.dim = dim
        self.weight_g = nn.Parameter(norm_except_dim(weight, dim))
        self.weight_v = nn.Parameter(weight)

    def normed_weight(self):
        return self.weight_v * (self.weight_g / norm_except_dim(self.weight_v, self.dim))


class WeightNormLinear(WeightNorm, nn.Linear):
    """nn.Linear with weight_norm over ``dim``."""

    def __init__(self, in_features, out_features, bias=True, dim=0):
        super().__init__(in_features, out_features, bias)
        self._split_weight(dim)

    def forward(self, x):
        return F.linear(x, self.normed_weight(), self.bias)


class WeightNormConv(WeightNorm):
    """Mixed into nn.Conv1d/2d/3d: their arguments, then weight_norm over ``dim``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, dim=0):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias)
        self._split_weight(dim)

    def forward(self, x):
        return self._conv_forward(x, self.normed_weight(), self.bias)


class WeightNormConv1d(WeightNormConv, nn.Conv1d):
    """nn.Conv1d with weight_norm over ``dim`` (Wav2Vec2's positional conv: dim=2)."""


class WeightNormConv2d(WeightNormConv, nn.Conv2d):
    """nn.Conv2d with weight_norm over ``dim``."""


class WeightNormConv3d(WeightNormConv, nn.Conv3d):
    """nn.Conv3d with weight_norm over ``dim``."""
