"""Torch module of the restricted Boltzmann machine (nnspec/layers/rbm.py has its contract).

:class:`RBM` has the state_dict of ``nn.Linear(visible, hidden)`` (``weight`` [hidden,
visible], ``bias`` [hidden]: the up-pass) plus ``visible_bias`` [visible]; the down-pass
uses the same ``weight``, transposed. Its sampling attributes are those of
``torch.stochastic.StochasticLayer`` (``sample``, ``noise``, ``force``), written out here
because an emitted file gets this class's source alone.

The source emitter copies these definitions into generated files: inside them only the
names torch, nn, F and math are used.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["RBM"]


class RBM(nn.Module):
    """A binary RBM: h_prob = σ(v Wᵀ + b_h), v_prob = σ(h W + b_v).

    forward(v) returns, by ``output``: ``hidden``, the hidden probabilities (a sample of
    them when sampling: a DBN's up-pass); ``visible``, the reconstruction v_prob after
    ``k`` Gibbs steps (the hidden states sampled when sampling, else their probabilities;
    the visible states in between sampled only with ``sample_visible``); ``free_energy``,
    F(v) = -v·b_v - Σ_j softplus(v Wᵀ + b_h)_j per row. :meth:`cd_statistics` is one CD-k
    pass for a training loop. ``weight`` is drawn from normal(0, 0.01), the biases are
    zero (Hinton's "practical guide", section 8).
    """

    def __init__(self, visible, hidden, k=1, output="hidden", sample_visible=False, sample="train"):
        super().__init__()
        if output not in ("hidden", "visible", "free_energy"):
            raise ValueError(f"output must be 'hidden', 'visible' or 'free_energy', got {output!r}")
        if sample not in ("train", "always", "never"):
            raise ValueError(f"sample must be 'train', 'always' or 'never', got {sample!r}")
        self.visible, self.hidden, self.k = visible, hidden, k
        self.output, self.sample_visible, self.sample = output, sample_visible, sample
        self.noise = None  # None: torch's generator (see stochastic_torch.use_noise)
        self.force = None  # None: sample=train samples in training mode
        self.weight = nn.Parameter(torch.empty(hidden, visible))
        self.bias = nn.Parameter(torch.empty(hidden))
        self.visible_bias = nn.Parameter(torch.empty(visible))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.normal_(self.weight, 0.0, 0.01)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.visible_bias)

    def sampling(self):
        if self.sample != "train":
            return self.sample == "always"
        return self.training if self.force is None else bool(self.force)

    def uniform(self, part, like):
        if self.noise is None:
            return torch.rand_like(like)
        return self.noise(part, tuple(like.shape), False).to(like)

    def hidden_prob(self, v):
        return torch.sigmoid(F.linear(v, self.weight, self.bias))

    def visible_prob(self, h):
        return torch.sigmoid(F.linear(h, self.weight.t(), self.visible_bias))

    def gibbs(self, v, k, sample_hidden, sample_visible):
        """k steps from v; returns the last step's (v, h_prob, h, v_prob)."""
        step = None
        for i in range(k):
            ph = self.hidden_prob(v)
            h = (self.uniform(f"h{i}", ph) < ph).to(ph.dtype) if sample_hidden else ph
            pv = self.visible_prob(h)
            step = (v, ph, h, pv)
            if sample_visible and i < k - 1:
                v = (self.uniform(f"v{i}", pv) < pv).to(pv.dtype)
            else:
                v = pv
        return step

    def free_energy(self, v):
        """F(v) = -v·b_v - Σ_j softplus(v Wᵀ + b_h)_j, softplus(a) written
        max(a, 0) + log1p(exp(-|a|)) as the NumPy reference writes it."""
        a = F.linear(v, self.weight, self.bias)
        soft = a.clamp(min=0) + torch.log1p(torch.exp(-a.abs()))
        return -(v * self.visible_bias).sum(-1) - soft.sum(-1)

    def forward(self, v):
        if self.output == "free_energy":
            return self.free_energy(v)
        draw = self.sampling()
        if self.output == "hidden":
            ph = self.hidden_prob(v)
            return (self.uniform("h0", ph) < ph).to(ph.dtype) if draw else ph
        return self.gibbs(v, self.k, draw, draw and self.sample_visible)[3]

    @torch.no_grad()
    def cd_statistics(self, v, k=None):
        """One contrastive-divergence pass (CD-k, ``k`` default ``self.k``) on a batch v
        [..., visible]: {state_dict key: positive minus negative phase}, averaged over the
        rows — ``weight``: <h vᵀ>_data - <h vᵀ>_model, ``bias``: <h>_data - <h>_model,
        ``visible_bias``: <v>_data - <v>_model, with h the hidden probabilities at v_0 and
        at v_k. The hidden states of the chain are sampled (visible ones with
        ``sample_visible``), v_k is the last step's v_prob. These are the ascent direction
        of the log-likelihood: ``param += lr * stats[key]`` (or ``param.grad = -stats[key]``
        for a torch optimiser)."""
        k = self.k if k is None else k
        v0 = v.reshape(-1, self.visible)
        ph0 = self.hidden_prob(v0)
        vk = self.gibbs(v0, k, True, self.sample_visible)[3]
        phk = self.hidden_prob(vk)
        n = v0.shape[0]
        return {
            "weight": (ph0.t() @ v0 - phk.t() @ vk) / n,
            "bias": (ph0 - phk).sum(0) / n,
            "visible_bias": (v0 - vk).sum(0) / n,
        }
