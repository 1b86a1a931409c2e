"""Stochastic layers: sampling kinds, and the noise both backends share.

The kinds:

- ``bernoulli``: a binary sample of probabilities p, 1.0 where u < p for u ~ U[0, 1) (so
  p <= 0 gives 0 and p >= 1 gives 1), else 0.0; the mean is p.
- ``sample_gaussian(mu, logvar)`` (also ``reparameterize``): the VAE's reparameterisation
  z = mu + exp(0.5 * logvar) * eps, eps ~ N(0, 1); two float tensors of one shape; the
  mean is mu.
- ``gaussian_noise <std>``: x + std * eps; the mean is x (the identity).
- ``drop_path <p>`` (stochastic depth, Huang et al. 2016; torchvision's
  ``StochasticDepth(p, "row")``, timm's ``DropPath``): in training, each example (a row of
  the first axis) is zeroed with probability p, the kept ones scaled by 1/(1 - p); the
  identity in eval mode, as dropout. Its draw ``u`` is one U[0, 1) number per example,
  kept where u < 1 - p. The gradient is the same mask and scale.

Each of the first three takes ``sample=train|always|never``: ``train`` (the default)
samples in training mode and returns the mean in eval mode, as dropout does; ``always``
samples in both modes (a sampled up-pass at inference), ``never`` always returns the mean.
Sampling from an int tensor is a located error: it has no probabilities or means.

Gradients treat the drawn numbers as constants. The reparameterised Gaussian has
gradients to mu (1) and logvar (0.5 * exp(0.5 * logvar) * eps); a Bernoulli sample has
none to its probabilities (it is piecewise constant in p; no straight-through estimator,
which would be a modelling choice, not the sample's derivative); the mean has the
identity's.

The noise. A layer draws its random numbers by name: draw ``part`` (``u``, ``eps``, an RBM's
``h0``...) of the layer named ``name``. Without a :class:`Noise`, the NumPy kernels draw
from the run's generator and the torch modules from torch's (``torch.rand_like`` /
``torch.randn_like``), which is what training uses. With a ``Noise(seed)`` handed to a
run (``NumpyModel(...)(x, noise=Noise(seed))``, ``torch.stochastic.use_noise(module,
Noise(seed))``), the i-th draw of (name, part) in that run is
``numpy.random.default_rng([seed, crc32(name), crc32(part), i])`` — ``random(shape)``
(uniform) or ``standard_normal(shape)``, in float64, then cast to the tensor's dtype —
whatever the backend: two runs given ``Noise`` objects of one seed consume identical
numbers, so ``nnspec crosscheck`` (``--sample`` too) compares both backends exactly. A
shared layer applied twice draws twice under its one name (i = 0, 1), in order.
"""

from __future__ import annotations

import zlib
from typing import Literal

from pydantic import field_validator

from .base import (
    FLOAT,
    MODULE,
    In,
    LayerKind,
    Params,
    ShapeError,
    TensorType,
    TorchCall,
    TorchModule,
    TorchPlan,
    prod,
    probability,
    register,
)

_HELPERS = "nnspec.layers.torch.stochastic"

#: when a layer samples: in training mode only (the default), in every mode, or never
SampleMode = Literal["train", "always", "never"]


class Noise:
    """The random numbers of the stochastic layers, the same in both backends (see the
    module docstring): a pure function of (seed, layer name, part, how many times that
    pair was drawn before in this object)."""

    def __init__(self, seed: int = 0):
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"the noise seed must be an int, got {seed!r}")
        self.seed = seed % 2**64  # a NumPy seed is >= 0 (crosscheck --seed may be negative)
        self._count: dict[tuple[str, str], int] = {}

    def draw(self, name: str, part: str, shape, normal: bool, dtype="float64"):
        """The next draw of ``part`` of layer ``name``: U[0, 1) or N(0, 1) numbers of
        ``shape``, drawn in float64 and cast to ``dtype``."""
        import numpy as np

        key = (name, part)
        i = self._count.get(key, 0)
        self._count[key] = i + 1
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode()),
                                     zlib.crc32(part.encode()), i])
        shape = tuple(int(s) for s in shape)
        a = rng.standard_normal(shape) if normal else rng.random(shape)
        return a.astype(dtype, copy=False)


def sampling(mode: str, ctx) -> bool:
    """Whether a layer with ``sample=mode`` samples in this run: ``ctx.sample`` (True or
    False, a crosscheck's ``--sample``) overrides the training mode for ``train`` layers."""
    if mode != "train":
        return mode == "always"
    forced = getattr(ctx, "sample", None)
    return ctx.training if forced is None else bool(forced)


def draw(ctx, part: str, shape, normal: bool, dtype):
    """A layer's draw: from the run's Noise when it has one, else from its generator."""
    import numpy as np

    noise = getattr(ctx, "noise", None)
    if noise is not None:
        return noise.draw(getattr(ctx, "name", ""), part, shape, normal, dtype)
    rng = ctx.rng if ctx.rng is not None else np.random.default_rng()
    a = rng.standard_normal(tuple(shape)) if normal else rng.random(tuple(shape))
    return a.astype(dtype, copy=False)


def bernoulli_np(p, u):
    """The sample of probabilities ``p`` given uniform numbers ``u``: 1.0 where u < p."""
    return (u < p).astype(p.dtype)


def need_float_sample(t, what: str, arg: str | None = None) -> None:
    """Sampling needs floats: an int tensor has no probabilities or means."""
    if t.dtype != FLOAT:
        raise ShapeError(f"{what} samples from a float tensor, got {t}", arg=arg,
                         hint="it samples from probabilities or means; token ids need an "
                              "embedding layer first")


def _plan(cls: str, p, args: tuple = (), inputs: int = 1) -> TorchPlan:
    kw = {} if p.sample == "train" else {"sample": p.sample}
    return TorchPlan(TorchModule(f"{_HELPERS}:{cls}", args, kw),
                     [TorchCall(MODULE, tuple(In(i) for i in range(inputs)))])


@register
class Bernoulli(LayerKind):
    """A binary sample of probabilities (see the module docstring)."""

    name = "bernoulli"
    aliases = ("sample_bernoulli",)
    summary = "binary sample of probabilities, 1 where u < p: bernoulli [sample=train]"

    class Params(Params):
        sample: SampleMode = "train"

    def infer(self, p, ins):
        need_float_sample(ins[0], "bernoulli")
        return ins[0]

    def torch(self, p, ins, out):
        return _plan("Bernoulli", p)

    def numpy(self, p, w, xs, ctx):
        x = xs[0]
        if not sampling(p.sample, ctx):
            return x
        return bernoulli_np(x, draw(ctx, "u", x.shape, False, x.dtype))

    def backward(self, p, w, xs, y, gy, ctx):
        return [gy * 0 if sampling(p.sample, ctx) else gy], {}

    def samples(self):
        return [({}, [TensorType((2, 5))]), ({"sample": "never"}, [TensorType((3, 4))])]

    def sample(self):
        return self.samples()[0]


@register
class SampleGaussian(LayerKind):
    """The reparameterisation z = mu + exp(0.5 * logvar) * eps (see the module docstring)."""

    name = "sample_gaussian"
    aliases = ("reparameterize", "reparametrize", "gaussian_sample")
    arity = 2
    summary = ("reparameterised Gaussian sample mu + exp(logvar / 2) * eps: "
               "sample_gaussian(mu, logvar) [sample=train]")

    class Params(Params):
        sample: SampleMode = "train"

    def infer(self, p, ins):
        mu, logvar = ins
        need_float_sample(mu, "sample_gaussian's mu")
        need_float_sample(logvar, "sample_gaussian's logvar")
        if mu.shape != logvar.shape:
            raise ShapeError(f"sample_gaussian's mu {mu} and logvar {logvar} differ in shape",
                             hint="give the mean and the log-variance the same shape, e.g. "
                                  "two dense layers of the latent size")
        return mu

    def macs(self, p, ins, out):
        return prod(out.shape)

    def torch(self, p, ins, out):
        return _plan("GaussianSample", p, inputs=2)

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        mu, logvar = xs
        if not sampling(p.sample, ctx):
            return mu
        eps = draw(ctx, "eps", mu.shape, True, mu.dtype)
        if ctx.saved is not None:
            ctx.saved["eps"] = eps
        return mu + np.exp(mu.dtype.type(0.5) * logvar) * eps

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        mu, logvar = xs
        if not sampling(p.sample, ctx):
            return [gy, gy * 0], {}
        half = mu.dtype.type(0.5)
        return [gy, gy * half * np.exp(half * logvar) * ctx.saved["eps"]], {}

    def samples(self):
        t = TensorType((2, 4))
        return [({}, [t, t]), ({"sample": "never"}, [TensorType((3, 2)), TensorType((3, 2))])]

    def sample(self):
        return self.samples()[0]


@register
class GaussianNoise(LayerKind):
    """Additive Gaussian noise x + std * eps (see the module docstring)."""

    name = "gaussian_noise"
    aliases = ("additive_noise",)
    positional = ("std",)
    synonyms = {"stddev": "std", "sigma": "std"}
    summary = "additive noise x + std * N(0, 1): gaussian_noise <std> [sample=train]"

    class Params(Params):
        std: float
        sample: SampleMode = "train"

        @field_validator("std")
        @classmethod
        def _positive_std(cls, v):
            if not v > 0:
                raise ValueError("must be > 0")
            return v

    def infer(self, p, ins):
        need_float_sample(ins[0], "gaussian_noise")
        return ins[0]

    def torch(self, p, ins, out):
        return _plan("GaussianNoise", p, (p.std,))

    def numpy(self, p, w, xs, ctx):
        x = xs[0]
        if not sampling(p.sample, ctx):
            return x
        return x + x.dtype.type(p.std) * draw(ctx, "eps", x.shape, True, x.dtype)

    def backward(self, p, w, xs, y, gy, ctx):
        return [gy], {}

    def samples(self):
        return [({"std": 0.5}, [TensorType((2, 5))]),
                ({"std": 0.1, "sample": "never"}, [TensorType((2, 3))])]

    def sample(self):
        return self.samples()[0]


@register
class DropPath(LayerKind):
    """Stochastic depth: whole examples dropped in training (see the module docstring)."""

    name = "drop_path"
    aliases = ("stochastic_depth", "droppath")
    positional = ("p",)
    synonyms = {"rate": "p", "drop_prob": "p"}
    ranks = (1, None)
    layout = "[N, ...]"
    summary = ("stochastic depth: drop_path <p> (drops whole examples in training, "
               "scaled by 1/(1-p); identity in eval mode)")

    class Params(Params):
        p: float = 0.1

        _p = probability("p")

    def infer(self, p, ins):
        need_float_sample(ins[0], "drop_path")
        return ins[0]

    def torch(self, p, ins, out):
        return TorchPlan(TorchModule(f"{_HELPERS}:DropPath", (p.p,)),
                         [TorchCall(MODULE, (In(0),))])

    def _scale(self, p, x, ctx):
        """The per-example factor, 0 or 1/(1 - p) broadcast over x; None for the identity."""
        if p.p == 0.0 or not sampling("train", ctx):
            return None
        u = draw(ctx, "u", (x.shape[0],) + (1,) * (x.ndim - 1), False, x.dtype)
        survival = 1.0 - p.p
        return (u < survival).astype(x.dtype) / x.dtype.type(survival)

    def numpy(self, p, w, xs, ctx):
        x = xs[0]
        scale = self._scale(p, x, ctx)
        if ctx.saved is not None:
            ctx.saved["scale"] = scale
        return x if scale is None else x * scale

    def backward(self, p, w, xs, y, gy, ctx):
        scale = ctx.saved["scale"]
        return [gy if scale is None else gy * scale], {}

    def sample(self):
        return {"p": 0.25}, [TensorType((4, 3, 2))]
