"""The restricted Boltzmann machine (binary units), and its contrastive-divergence pass.

``rbm <hidden> [k=1] [output=hidden|visible|free_energy] [sample_visible]
[sample=train|always|never]`` on v [..., visible] (the visible size is the input's last
dim). State_dict: ``weight`` [hidden, visible] and ``bias`` [hidden], exactly an
``nn.Linear(visible, hidden)``'s (the up-pass loads into a dense layer for fine-tuning),
and ``visible_bias`` [visible]. The down-pass uses the same ``weight`` transposed::

    h_prob = σ(v Wᵀ + b_h)        v_prob = σ(h W + b_v)

``weight`` is drawn from normal(0, 0.01), the biases are zeros (Hinton, "A Practical Guide
to Training RBMs", 2010, section 8); ``init=`` and ``bias_init=`` choose others.

What the forward returns (``output``):

- ``hidden`` (the default): h_prob [..., hidden], or when sampling h ~ Bernoulli(h_prob)
  (part ``h0``) — a DBN's up-pass, deterministic or sampled;
- ``visible``: the reconstruction v_prob [..., visible] after ``k`` Gibbs steps
  v → h → v; when sampling, each step's hidden states are sampled (parts ``h0``, ``h1``,
  ...) and, with ``sample_visible``, the visible states between steps too (``v0``, ...);
  otherwise the chain is mean-field (probabilities throughout);
- ``free_energy``: F(v) = -v·b_v - Σ_j softplus(v Wᵀ + b_h)_j [...], the last dim
  dropped (deterministic: ``sample=`` does not apply).

When it samples is ``sample=`` as for every stochastic layer (nnspec/layers/stochastic.py:
its shared noise, its gradients: none through a sampled state). ``k`` and
``sample_visible`` are also the defaults of the torch module's ``cd_statistics``.

Training: :func:`cd_statistics` (NumPy) and ``RBM.cd_statistics`` (torch) run one CD-k
pass, the positive phase at the data and the negative phase at the end of the chain,
and return the ascent direction per state_dict key.
"""

from __future__ import annotations

from typing import Literal

from .base import (
    DEFAULT_INIT,
    MODULE,
    Bool,
    In,
    InitArg,
    Int,
    LayerKind,
    Params,
    ShapeError,
    TensorType,
    TorchCall,
    TorchModule,
    TorchPlan,
    W,
    concrete,
    npops,
    positive,
    prod,
    register,
)
from .stochastic import SampleMode, bernoulli_np, draw, need_float_sample, sampling

_HELPERS = "nnspec.layers.torch.rbm"
#: the normal(0, std) draw of ``weight`` (see the module docstring)
W_STD = 0.01


# ---- NumPy formulas, shared by the kind and cd_statistics ---------------------------------


def hidden_prob(w: dict, v):
    """σ(v Wᵀ + b_h)."""
    return npops.sigmoid(npops.linear(v, w["weight"], w["bias"]))


def visible_prob(w: dict, h):
    """σ(h W + b_v)."""
    return npops.sigmoid(h @ w["weight"].astype(h.dtype, copy=False)
                         + w["visible_bias"].astype(h.dtype, copy=False))


def _softplus(a):
    import numpy as np

    return np.maximum(a, 0) + np.log1p(np.exp(-np.abs(a)))


def free_energy(params: dict, v):
    """F(v) = -v·b_v - Σ_j softplus(v Wᵀ + b_h)_j over the last axis (``params``: the rbm's
    state_dict entries without their layer prefix)."""
    a = npops.linear(v, params["weight"], params["bias"])
    return -(v * params["visible_bias"].astype(v.dtype, copy=False)).sum(-1) \
        - _softplus(a).sum(-1)


def gibbs(w: dict, v, k: int, sample_hidden: bool, sample_visible: bool, uniform) -> list:
    """The k steps of a Gibbs chain from v: [(v_i, h_prob_i, h_i, v_prob_i)] per step,
    ``uniform(part, shape)`` supplying the numbers of each sample."""
    steps = []
    for i in range(k):
        ph = hidden_prob(w, v)
        h = bernoulli_np(ph, uniform(f"h{i}", ph.shape)) if sample_hidden else ph
        pv = visible_prob(w, h)
        steps.append((v, ph, h, pv))
        if sample_visible and i < k - 1:
            v = bernoulli_np(pv, uniform(f"v{i}", pv.shape))
        else:
            v = pv
    return steps


def cd_statistics(params: dict, v, k: int = 1, rng=None, *, noise=None, name: str = "",
                  sample_visible: bool = False) -> dict:
    """One contrastive-divergence pass (CD-k) on a batch v [..., visible]: {state_dict key:
    positive minus negative phase}, averaged over the rows —

    - ``weight``: <h vᵀ>_data - <h vᵀ>_model [hidden, visible],
    - ``bias``: <h>_data - <h>_model, ``visible_bias``: <v>_data - <v>_model,

    h the hidden probabilities at the data v_0 and at v_k, the end of a k-step chain whose
    hidden states are sampled (its visible states too with ``sample_visible``); v_k is the
    last step's v_prob. The ascent direction of the log-likelihood:
    ``params[key] += lr * stats[key]``. The numbers come from ``rng`` (a NumPy Generator),
    or from ``noise`` (a stochastic.Noise) under the layer ``name``, which then equal the
    torch module's ``cd_statistics`` given the same noise."""
    import numpy as np

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    v0 = np.asarray(v)
    v0 = v0.reshape(-1, v0.shape[-1])
    dt = v0.dtype
    if noise is not None:
        def uniform(part, shape):
            return noise.draw(name, part, shape, False, dt)
    else:
        gen = rng if rng is not None else np.random.default_rng()

        def uniform(part, shape):
            return gen.random(shape).astype(dt, copy=False)
    w = {key: np.asarray(params[key], dtype=dt) for key in ("weight", "bias", "visible_bias")}
    ph0 = hidden_prob(w, v0)
    vk = gibbs(w, v0, k, True, sample_visible, uniform)[-1][3]
    phk = hidden_prob(w, vk)
    n = v0.shape[0]
    return {"weight": (ph0.T @ v0 - phk.T @ vk) / n,
            "bias": (ph0 - phk).sum(0) / n,
            "visible_bias": (v0 - vk).sum(0) / n}


def _as2d(a):
    return a.reshape(-1, a.shape[-1])


@register
class RBM(LayerKind):
    """A restricted Boltzmann machine (see the module docstring)."""

    name = "rbm"
    aliases = ("restricted_boltzmann",)
    positional = ("hidden",)
    synonyms = {"n_hidden": "hidden", "gibbs_steps": "k"}
    ranks, layout = (1, None), "[*, visible]"
    summary = ("restricted Boltzmann machine: rbm <hidden> [k=1] "
               "[output=hidden|visible|free_energy] [sample_visible] [sample=train]")

    class Params(Params):
        hidden: Int
        k: Int = 1
        output: Literal["hidden", "visible", "free_energy"] = "hidden"
        sample_visible: Bool = False
        sample: SampleMode = "train"
        init: InitArg = DEFAULT_INIT
        bias_init: InitArg = DEFAULT_INIT

        _sizes = positive("hidden", "k")

    def infer(self, p, ins):
        (x,) = ins
        need_float_sample(x, "rbm")
        concrete(x.shape[-1], "rbm's visible size (the input's last dim)")
        if p.output == "free_energy" and p.sample != "train":
            raise ShapeError("the free energy is deterministic: sample= does not apply to "
                             "output=free_energy", arg="sample")
        if p.output == "hidden":
            return TensorType(x.shape[:-1] + (p.hidden,))
        if p.output == "visible":
            return x
        return TensorType(x.shape[:-1])

    def weights(self, p, ins, out):
        n_vis = ins[0].shape[-1].value
        return {"weight": W((p.hidden, n_vis), ("normal", W_STD)),
                "bias": W((p.hidden,), ("zeros",)),
                "visible_bias": W((n_vis,), ("zeros",))}

    def macs(self, p, ins, out):
        rows_vis = prod(ins[0].shape)  # rows * visible
        if p.output == "visible":
            return rows_vis * (2 * p.k * p.hidden)
        return rows_vis * (p.hidden + (1 if p.output == "free_energy" else 0))

    def torch(self, p, ins, out):
        n_vis = ins[0].shape[-1].value
        kw: dict = {}
        if p.k != 1:
            kw["k"] = p.k
        if p.output != "hidden":
            kw["output"] = p.output
        if p.sample_visible:
            kw["sample_visible"] = True
        if p.sample != "train":
            kw["sample"] = p.sample
        return TorchPlan(TorchModule(f"{_HELPERS}:RBM", (n_vis, p.hidden), kw),
                         [TorchCall(MODULE, (In(0),))])

    def numpy(self, p, w, xs, ctx):
        v = xs[0]
        if p.output == "free_energy":
            return free_energy(w, v)
        on = sampling(p.sample, ctx)

        def uniform(part, shape):
            return draw(ctx, part, shape, False, v.dtype)

        if p.output == "hidden":
            ph = hidden_prob(w, v)
            if ctx.saved is not None:
                ctx.saved["sampled"] = on
            return bernoulli_np(ph, uniform("h0", ph.shape)) if on else ph
        steps = gibbs(w, v, p.k, on, on and p.sample_visible, uniform)
        if ctx.saved is not None:
            ctx.saved["steps"] = steps
            ctx.saved["sampled"] = on
        return steps[-1][3]

    def backward(self, p, w, xs, y, gy, ctx):
        import numpy as np

        v = xs[0]
        wt = w["weight"]
        grads = {"weight": np.zeros_like(wt), "bias": np.zeros_like(w["bias"]),
                 "visible_bias": np.zeros_like(w["visible_bias"])}
        if p.output == "free_energy":
            s = npops.sigmoid(npops.linear(v, wt, w["bias"]))
            gs = -gy[..., None] * s  # dL/da, a = v Wᵀ + b_h
            gx = -gy[..., None] * w["visible_bias"] + gs @ wt
            grads["weight"] = _as2d(gs).T @ _as2d(v)
            grads["bias"] = _as2d(gs).sum(0)
            grads["visible_bias"] = -(_as2d(gy[..., None] * v)).sum(0)
            return [gx], grads
        sampled = ctx.saved["sampled"]
        if p.output == "hidden":
            if sampled:  # a sample has no gradient to its probabilities
                return [np.zeros_like(v)], grads
            ga = gy * y * (1 - y)
            grads["weight"] = _as2d(ga).T @ _as2d(v)
            grads["bias"] = _as2d(ga).sum(0)
            return [ga @ wt], grads
        steps = ctx.saved["steps"]
        gx = np.zeros_like(v)
        g_pv = gy
        for i in range(len(steps) - 1, -1, -1):
            vi, ph, h, pv = steps[i]
            ga = g_pv * pv * (1 - pv)  # a = h W + b_v
            grads["weight"] += _as2d(h).T @ _as2d(ga)
            grads["visible_bias"] += _as2d(ga).sum(0)
            if sampled:  # h is a sample: nothing flows further back
                break
            gb = (ga @ wt.T) * ph * (1 - ph)  # b = v_i Wᵀ + b_h
            grads["weight"] += _as2d(gb).T @ _as2d(vi)
            grads["bias"] += _as2d(gb).sum(0)
            g_v = gb @ wt
            if i == 0:
                gx = g_v
            g_pv = g_v  # mean-field: v_i is the previous step's v_prob
        return [gx], grads

    def samples(self):
        return [
            ({"hidden": 3, "k": 2, "output": "visible", "sample_visible": True,
              "init": "xavier", "bias_init": "constant(0.5)"}, [TensorType((2, 5))]),
            ({"hidden": 4, "sample": "never"}, [TensorType((3, 5))]),
            ({"hidden": 3, "output": "free_energy"}, [TensorType((2, 2, 4))]),
            ({"hidden": 3}, [TensorType((2, 5))]),
            ({"hidden": 2, "k": 3, "output": "visible"}, [TensorType((2, 3, 4))]),
        ]

    def sample(self):
        return self.samples()[0]
