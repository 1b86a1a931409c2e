"""Torch modules of the stochastic layers (nnspec/layers/stochastic.py has their contract):
a Bernoulli sample, the reparameterised Gaussian, additive Gaussian noise and stochastic
depth (drop path).

Each module's ``sample`` is ``train`` (sample in training mode, the mean in eval mode),
``always`` or ``never``. Two attributes, None by default, let a caller fix the randomness
(``nnspec crosscheck`` does, through :func:`use_noise`): ``noise``, a function
``(part, shape, normal) -> tensor`` that supplies the numbers torch's generator would
otherwise draw, and ``force``, True or False to sample (or not) a ``train`` layer whatever
the module's mode.

The source emitter copies these definitions into generated files: inside them only the
names torch, nn, F and math are used.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["StochasticLayer", "Bernoulli", "GaussianSample", "GaussianNoise", "DropPath",
           "use_noise"]


class StochasticLayer(nn.Module):
    """The sampling mode and the source of the random numbers of a stochastic layer."""

    def __init__(self, sample="train"):
        super().__init__()
        if sample not in ("train", "always", "never"):
            raise ValueError(f"sample must be 'train', 'always' or 'never', got {sample!r}")
        self.sample = sample
        self.noise = None  # None: torch's generator
        self.force = None  # None: a "train" layer samples in training mode

    def sampling(self):
        """Whether this call samples (else it returns the mean)."""
        if self.sample != "train":
            return self.sample == "always"
        return self.training if self.force is None else bool(self.force)

    def uniform(self, part, like):
        """U[0, 1) numbers shaped as ``like``."""
        if self.noise is None:
            return torch.rand_like(like)
        return self.noise(part, tuple(like.shape), False).to(like)

    def normal(self, part, like):
        """N(0, 1) numbers shaped as ``like``."""
        if self.noise is None:
            return torch.randn_like(like)
        return self.noise(part, tuple(like.shape), True).to(like)

    def extra_repr(self):
        return "" if self.sample == "train" else f"sample={self.sample!r}"


class Bernoulli(StochasticLayer):
    """A binary sample of probabilities p: 1.0 where u < p, u ~ U[0, 1) (torch.bernoulli's
    distribution; p outside [0, 1] is clamped rather than refused). No gradient flows to
    p through a sample; the mean, p itself, is returned when not sampling."""

    def forward(self, p):
        if not self.sampling():
            return p
        return (self.uniform("u", p) < p).to(p.dtype)


class GaussianSample(StochasticLayer):
    """z = mu + exp(0.5 * logvar) * eps, eps ~ N(0, 1): differentiable in mu and logvar;
    mu when not sampling."""

    def forward(self, mu, logvar):
        if not self.sampling():
            return mu
        return mu + torch.exp(0.5 * logvar) * self.normal("eps", mu)


class GaussianNoise(StochasticLayer):
    """x + std * eps, eps ~ N(0, 1); x when not sampling."""

    def __init__(self, std, sample="train"):
        super().__init__(sample)
        self.std = std

    def forward(self, x):
        if not self.sampling():
            return x
        return x + self.std * self.normal("eps", x)

    def extra_repr(self):
        rest = super().extra_repr()
        return f"std={self.std}" + (f", {rest}" if rest else "")


class DropPath(StochasticLayer):
    """Stochastic depth: in training each example (a row of the first axis) is zeroed with
    probability p and the kept ones scaled by 1/(1 - p), as
    torchvision.ops.StochasticDepth(p, "row"); the identity in eval mode."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.p == 0.0 or not self.sampling():
            return x
        rows = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1))
        survival = 1.0 - self.p
        return x * ((self.uniform("u", rows) < survival).to(x.dtype) / survival)

    def extra_repr(self):
        return f"p={self.p}"


def use_noise(module, noise, sample=None):
    """Give every stochastic layer (and RBM) in ``module`` its draws from ``noise`` (an
    ``nnspec.layers.stochastic.Noise``, or None for torch's generator again), keyed by the
    layer's dotted name as the NumPy backend keys them; ``sample`` True or False forces
    the ``train`` layers to sample or not (None: their module's mode)."""
    for name, sub in module.named_modules():
        # by its attributes, not its class: an emitted file has its own copy of the class,
        # and an RBM (torch/rbm.py) is one too
        if not (hasattr(sub, "noise") and hasattr(sub, "force") and hasattr(sub, "sampling")):
            continue
        sub.force = sample
        if noise is None:
            sub.noise = None
            continue

        def supply(part, shape, normal, name=name):
            return torch.from_numpy(noise.draw(name, part, shape, normal, "float64"))

        sub.noise = supply
