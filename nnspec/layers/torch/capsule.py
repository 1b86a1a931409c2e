"""Torch code of the capsule layers (Sabour, Frosst & Hinton, 2017, "Dynamic Routing Between
Capsules"), written as the paper states it:

- :func:`squash`: v = |s|² / (1 + |s|²) · s / sqrt(|s|² + eps), over one axis;
- :func:`capsule_length`: each capsule's L2 norm;
- :class:`CapsuleLayer`: a fully connected capsule layer with routing by agreement
  (parameter ``W`` [in_caps, out_caps, out_dim, in_dim]);
- :class:`CapsuleMask`: every capsule but one zeroed (the label's in training, the longest
  at inference), flattened for the reconstruction decoder.

The NumPy reference (nnspec/layers/capsule.py) computes the same formulas in the same
order. The source emitter copies these definitions into generated files: inside them only
the names torch, nn, F and math are used.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["squash", "capsule_length", "CapsuleLayer", "CapsuleMask"]


def squash(s, dim=-1, eps=1e-7):
    """The paper's non-linearity (its equation 1): short vectors shrink to almost zero, long
    ones to a length just below 1, the direction kept. ``eps`` inside the square root keeps
    the zero vector's value (0) and gradient finite."""
    sq = (s * s).sum(dim=dim, keepdim=True)
    return s * (sq / (1 + sq) / torch.sqrt(sq + eps))


def capsule_length(x):
    """Each capsule's length, the L2 norm over the last axis (its gradient at the zero
    vector is 0)."""
    return torch.linalg.vector_norm(x, dim=-1)


class CapsuleLayer(nn.Module):
    """A capsule layer with dynamic routing: u [N, in_caps, in_dim] -> v [N, out_caps,
    out_dim].

    Every input capsule i predicts every output capsule j, u_hat[n, i, j] = W[i, j] @ u[n, i];
    the routing logits b start at zero on every call (they are not state), and for each
    of the ``routings`` iterations c = softmax(b) over the output capsules, s_j = Σ_i c_ij
    u_hat_ij, v = squash(s), and (but after the last) b_ij += u_hat_ij · v_j. Gradients
    flow through the whole routing, as in the paper's reference implementation. ``W`` is
    drawn from normal(0, 0.01), as common reimplementations do (the paper gives no init).
    """

    def __init__(self, in_caps, in_dim, out_caps, out_dim, routings=3):
        super().__init__()
        self.in_caps, self.in_dim = in_caps, in_dim
        self.out_caps, self.out_dim = out_caps, out_dim
        self.routings = routings
        self.W = nn.Parameter(torch.empty(in_caps, out_caps, out_dim, in_dim))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.normal_(self.W, 0.0, 0.01)

    def forward(self, u):
        n = u.shape[0]
        # u_hat[n, j, i] = W[i, j] @ u[n, i], one matmul per input capsule; kept as
        # [N, out_caps, in_caps, out_dim] so that the sums over i below are matmuls too
        w = self.W.reshape(self.in_caps, self.out_caps * self.out_dim, self.in_dim)
        u_hat = (w @ u.permute(1, 2, 0)).reshape(self.in_caps, self.out_caps, self.out_dim, n)
        u_hat = u_hat.permute(3, 1, 0, 2).contiguous()
        b = u.new_zeros(n, self.out_caps, self.in_caps)  # the routing logits b_ij
        for i in range(self.routings):
            c = torch.softmax(b, dim=1)  # over the output capsules
            v = squash((c.unsqueeze(2) @ u_hat).squeeze(2))  # s_j = Σ_i c_ij u_hat_ij
            if i < self.routings - 1:
                b = b + (u_hat @ v.unsqueeze(3)).squeeze(3)  # the agreement u_hat_ij · v_j
        return v


class CapsuleMask(nn.Module):
    """caps [N, caps, dim] with every capsule but one zeroed, flattened to [N, caps * dim]:
    the capsule of ``label`` [N] (class indices) in training mode (in eval mode too with
    ``always``), otherwise the longest capsule (the first of equal lengths)."""

    def __init__(self, always=False):
        super().__init__()
        self.always = always

    def forward(self, caps, label=None):
        if label is None or not (self.training or self.always):
            label = (caps * caps).sum(dim=-1).argmax(dim=1)
        keep = F.one_hot(label, caps.shape[1]).to(caps.dtype)
        return (caps * keep[:, :, None]).flatten(1)
