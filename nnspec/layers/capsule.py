"""Capsules (Sabour, Frosst & Hinton, 2017, "Dynamic Routing Between Capsules").

A capsule is a vector whose length is the probability that an entity is present and whose
direction is its pose. The kinds:

- ``squash [dim=-1] [eps=1e-7]``: the paper's equation 1 over the capsule axis,
  v = |s|² / (1 + |s|²) · s / sqrt(|s|² + eps). ``eps`` (CapsNet-Keras' epsilon) keeps
  the zero vector's value 0 and its gradient finite; both backends compute this formula
  in this order.
- ``capsule <out_caps> <out_dim> [r=3]`` (also ``digitcaps``): a fully connected capsule
  layer with routing by agreement, [N, in_caps, in_dim] -> [N, out_caps, out_dim]. Weights
  ``W`` [in_caps, out_caps, out_dim, in_dim] (u_hat[n, i, j] = W[i, j] @ u[n, i]), drawn
  from normal(0, 0.01) as common reimplementations do (the paper gives no initialiser;
  ``init=`` chooses another); no bias, as in the paper. The routing logits b are zero at
  the start of every forward pass (not state); for each of the ``r`` iterations
  c = softmax(b) over the output capsules, s_j = Σ_i c_ij u_hat_ij, v = squash(s), and
  b_ij += u_hat_ij · v_j except after the last. Gradients flow through the whole routing
  (the coefficients c included), as in the paper's reference implementation; some
  reimplementations detach u_hat in the inner iterations, which this layer does not.
- ``capsule_length`` (also ``length``): the L2 norm over the last axis, [..., caps, dim]
  -> [..., caps] (the class probabilities of the margin loss; the gradient at a zero
  vector is 0, as torch's).
- ``capsule_mask [label=y] [always]``: every capsule but one zeroed and the result
  flattened, [N, caps, dim] -> [N, caps * dim] (the reconstruction decoder's input). The
  capsule kept is the label's (``label=``, class indices [N] int) in training mode and
  the longest at inference (eval mode, or no label), as the paper trains and tests its
  decoder; ``always`` keeps the label's in eval mode too (reconstructing a given class).
  A model gets the label as a second input, ``model CapsNet(x: [N, 1, 28, 28], label:
  [N] int)``; at inference its values are not used unless ``always``.
"""

from __future__ import annotations

from typing import Optional

from pydantic import field_validator

from .base import (
    DEFAULT_INIT,
    FLOAT,
    INT,
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
    need_float,
    positive,
    prod,
    register,
)

_HELPERS = "nnspec.layers.torch.capsule"
#: the normal(0, std) draw of the transformation weights W (see the module docstring)
W_STD = 0.01
#: squash's default eps, inside the square root
SQUASH_EPS = 1e-7


def _positive_eps(cls, v):
    if not v > 0:
        raise ValueError("must be > 0")
    return v


# ---- NumPy formulas shared by the kinds -------------------------------------------------


def squash_np(s, axis: int = -1, eps: float = SQUASH_EPS):
    """squash(s) along ``axis``: s · |s|² / (1 + |s|²) / sqrt(|s|² + eps), the torch
    helper's formula and order."""
    import numpy as np

    sq = (s * s).sum(axis=axis, keepdims=True)
    return s * (sq / (1 + sq) / np.sqrt(sq + s.dtype.type(eps)))


def squash_backward(s, g, axis: int = -1, eps: float = SQUASH_EPS):
    """dL/ds of v = s f(q), q = |s|², f = q / ((1 + q) sqrt(q + eps)):
    ds = f g + 2 f'(q) (s · g) s with f'(q) = A - f/(1 + q) - f/(2 (q + eps)),
    A = 1 / ((1 + q) sqrt(q + eps)) (finite at q = 0)."""
    import numpy as np

    eps = s.dtype.type(eps)
    q = (s * s).sum(axis=axis, keepdims=True)
    root = np.sqrt(q + eps)
    a = 1 / ((1 + q) * root)
    f = q * a
    df = a - f / (1 + q) - f / (2 * (q + eps))
    return f * g + 2 * df * (s * g).sum(axis=axis, keepdims=True) * s


def _softmax_axis1(b):
    import numpy as np

    e = np.exp(b - b.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---- squash -------------------------------------------------------------------------------


@register
class Squash(LayerKind):
    """The capsule non-linearity over one axis (see the module docstring)."""

    name = "squash"
    positional = ("dim",)
    synonyms = {"axis": "dim", "epsilon": "eps"}
    ranks, layout = (1, None), "[..., dim]"
    summary = "capsule non-linearity |s|²/(1+|s|²) · s/|s|: squash [dim=-1] [eps=1e-7]"

    class Params(Params):
        dim: Int = -1
        eps: float = SQUASH_EPS

        _eps = field_validator("eps")(_positive_eps)

    def infer(self, p, ins):
        x = ins[0]
        need_float(x, "squash")
        if not -x.rank <= p.dim < x.rank:
            raise ShapeError(f"dim {p.dim} is out of range for a rank-{x.rank} input {x}",
                             arg="dim", hint=f"use a dim from {-x.rank} to {x.rank - 1}")
        return x

    def macs(self, p, ins, out):
        return prod(ins[0].shape)

    def torch(self, p, ins, out):
        kw = {} if p.dim == -1 else {"dim": p.dim}
        if p.eps != SQUASH_EPS:
            kw["eps"] = p.eps
        return TorchPlan(None, [TorchCall(f"{_HELPERS}:squash", (In(0),), kw)])

    def numpy(self, p, w, xs, ctx):
        return squash_np(xs[0], p.dim, p.eps)

    def backward(self, p, w, xs, y, gy, ctx):
        return [squash_backward(xs[0], gy, p.dim, p.eps)], {}

    def sample(self):
        return {"dim": 1, "eps": 0.5}, [TensorType((2, 3, 4))]


# ---- the capsule layer with dynamic routing ------------------------------------------------


@register
class Capsule(LayerKind):
    """Fully connected capsules with routing by agreement: [N, in_caps, in_dim] ->
    [N, out_caps, out_dim], weights W [in_caps, out_caps, out_dim, in_dim]."""

    name = "capsule"
    aliases = ("digitcaps", "capsules")
    positional = ("out_caps", "out_dim")
    synonyms = {"routings": "r", "routing": "r", "iterations": "r", "num_routing": "r",
                "num_capsule": "out_caps", "dim_capsule": "out_dim"}
    ranks, layout = (3, 3), "[N, caps, dim]"
    summary = ("capsule layer with dynamic routing: capsule <out_caps> <out_dim> [r=3] "
               "(W [in_caps, out_caps, out_dim, in_dim], normal(0, 0.01))")

    class Params(Params):
        out_caps: Int
        out_dim: Int
        r: Int = 3
        init: InitArg = DEFAULT_INIT

        _sizes = positive("out_caps", "out_dim", "r")

    def infer(self, p, ins):
        x = ins[0]
        need_float(x, "capsule")
        concrete(x.shape[1], "capsule's number of input capsules (axis 1)")
        concrete(x.shape[2], "capsule's input capsule size (axis 2)")
        return TensorType((x.shape[0], p.out_caps, p.out_dim))

    def weights(self, p, ins, out):
        i, k = ins[0].shape[1].value, ins[0].shape[2].value
        return {"W": W((i, p.out_caps, p.out_dim, k), ("normal", W_STD))}

    def macs(self, p, ins, out):
        # the predictions u_hat, then per iteration the weighted sum (and the agreement)
        n, i, k = ins[0].shape
        per = n * i.value * p.out_caps * p.out_dim
        return per * (k.value + p.r + (p.r - 1))

    def torch(self, p, ins, out):
        i, k = ins[0].shape[1].value, ins[0].shape[2].value
        kw = {} if p.r == 3 else {"routings": p.r}
        return TorchPlan(TorchModule(f"{_HELPERS}:CapsuleLayer", (i, k, p.out_caps, p.out_dim),
                                     kw), [TorchCall(MODULE, (In(0),))])

    # Layout: u_hat is kept as [N, out_caps, in_caps, out_dim] (uh[n, j, i]), so that the
    # sums over the input capsules and the agreements are batched matmuls.

    def _predictions(self, u, wt):
        """u_hat [N, J, I, D] from u [N, I, K] and W [I, J, D, K]: one matmul per input
        capsule, W[i] [J*D, K] @ u[:, i]ᵀ [K, N]."""
        import numpy as np

        i, j, d, k = wt.shape
        uh = np.matmul(wt.reshape(i, j * d, k), u.transpose(1, 2, 0))  # [I, J*D, N]
        return np.ascontiguousarray(uh.reshape(i, j, d, -1).transpose(3, 1, 0, 2))

    def _route(self, p, uh, keep: bool):
        """The routing iterations on u_hat [N, J, I, D]; with ``keep`` also each
        iteration's (c, s, v) for the backward pass."""
        import numpy as np

        n, j, i, _ = uh.shape
        b = np.zeros((n, j, i), dtype=uh.dtype)
        steps = []
        for t in range(p.r):
            c = _softmax_axis1(b)
            s = np.matmul(c[:, :, None, :], uh)[:, :, 0, :]  # Σ_i c_ij u_hat_ij
            v = squash_np(s)
            if keep:
                steps.append((c, s, v))
            if t < p.r - 1:
                b = b + np.matmul(uh, v[:, :, :, None])[..., 0]  # u_hat_ij · v_j
        return v, steps

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        u = xs[0]
        wt = np.asarray(w["W"], dtype=np.result_type(u, w["W"]))
        v, _ = self._route(p, self._predictions(u.astype(wt.dtype, copy=False), wt), False)
        return v

    def backward(self, p, w, xs, y, gy, ctx):
        """Back through the unrolled routing, last iteration first: with g_b the gradient
        of the logits after an iteration, its v gets Σ_i g_b,ij u_hat_ij (plus dL/dy for the
        last), u_hat gets g_b,ij v_j from the agreement and c_ij g_s,j from the weighted
        sum, and the logits before it g_b + c ⊙ (g_c - Σ_j g_c ⊙ c) through the softmax.
        Then du = Σ_j W_ijᵀ g_uh,ij and dW_ij = Σ_n g_uh,ij u_iᵀ."""
        import numpy as np

        u = xs[0]
        wt = np.asarray(w["W"], dtype=np.result_type(u, w["W"]))
        u = u.astype(wt.dtype, copy=False)
        uh = self._predictions(u, wt)
        _, steps = self._route(p, uh, True)
        g_uh = np.zeros_like(uh)
        g_b = None
        for t in range(p.r - 1, -1, -1):
            c, s, v = steps[t]
            if g_b is None:
                g_v = np.asarray(gy, dtype=uh.dtype)
            else:
                g_v = np.matmul(g_b[:, :, None, :], uh)[:, :, 0, :]
                g_uh += g_b[..., None] * v[:, :, None, :]
            g_s = squash_backward(s, g_v)
            g_uh += c[..., None] * g_s[:, :, None, :]
            g_c = np.matmul(uh, g_s[:, :, :, None])[..., 0]
            g_soft = c * (g_c - (g_c * c).sum(axis=1, keepdims=True))
            g_b = g_soft if g_b is None else g_b + g_soft
        i, j, d, k = wt.shape
        g = np.ascontiguousarray(g_uh.transpose(2, 1, 3, 0)).reshape(i, j * d, -1)  # [I,JD,N]
        wr = wt.reshape(i, j * d, k)
        gu = np.matmul(wr.transpose(0, 2, 1), g).transpose(2, 0, 1)  # [N, I, K]
        gw = np.matmul(g, u.transpose(1, 0, 2)).reshape(wt.shape)
        return [gu], {"W": gw}

    def detail(self, p, ins):
        x = ins[0]
        return (f"in_caps={x.shape[1]} in_dim={x.shape[2]} out_caps={p.out_caps} "
                f"out_dim={p.out_dim} r={p.r}"
                + ("" if p.init.is_default else f" init={p.init}"))

    def sample(self):
        return ({"out_caps": 3, "out_dim": 4, "r": 2, "init": "normal(0, 0.5)"},
                [TensorType((2, 5, 3))])

    def samples(self):
        return [self.sample(), ({"out_caps": 2, "out_dim": 3, "r": 1}, [TensorType((3, 4, 2))]),
                ({"out_caps": 4, "out_dim": 2}, [TensorType((2, 6, 3))])]


# ---- length and mask ----------------------------------------------------------------------


@register
class CapsuleLength(LayerKind):
    """The L2 norm of each capsule: [..., caps, dim] -> [..., caps]."""

    name = "capsule_length"
    aliases = ("length", "caps_length")
    ranks, layout = (2, None), "[N, caps, dim]"
    summary = "the length (L2 norm) of each capsule, over the last axis: [N, caps, dim] -> " \
              "[N, caps]"

    def infer(self, p, ins):
        x = ins[0]
        need_float(x, "capsule_length")
        return TensorType(x.shape[:-1])

    def macs(self, p, ins, out):
        return prod(ins[0].shape)

    def torch(self, p, ins, out):
        return TorchPlan(None, [TorchCall(f"{_HELPERS}:capsule_length", (In(0),))])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = xs[0]
        return np.sqrt((x * x).sum(axis=-1))

    def backward(self, p, w, xs, y, gy, ctx):
        # d|x|/dx = x / |x|, and 0 at the zero vector (torch's subgradient)
        import numpy as np

        x = xs[0]
        safe = np.where(y == 0, 1, y)
        return [np.where((y == 0)[..., None], 0, x * (gy / safe)[..., None])], {}

    def sample(self):
        return {}, [TensorType((2, 3, 4))]


@register
class CapsuleMask(LayerKind):
    """All capsules but one zeroed, flattened: [N, caps, dim] -> [N, caps * dim]; the
    label's capsule in training, the longest at inference (see the module docstring)."""

    name = "capsule_mask"
    aliases = ("caps_mask",)
    tensor_args = ("label",)
    synonyms = {"y": "label", "target": "label"}
    ranks, layout = (3, 3), "[N, caps, dim]"
    summary = ("capsules masked to one and flattened: capsule_mask [label=<value>] [always] "
               "(the label's capsule in training, the longest at inference)")

    class Params(Params):
        label: Optional[Int] = None
        always: Bool = False

    def infer(self, p, ins):
        x = ins[0]
        need_float(x, "capsule_mask")
        label = self.extra(p, ins, "label")
        if label is not None:
            if label.dtype != INT or label.rank != 1 or label.shape[0] != x.shape[0]:
                raise ShapeError(f"capsule_mask's label must be the class indices [{x.shape[0]}]"
                                 f" int of the capsules {x}, got {label}", arg="label",
                                 hint="give the model a second input such as label: [N] int")
        elif p.always:
            raise ShapeError("always keeps the label's capsule at inference, but no label= "
                             "is given", arg="always", hint="add label=<a [N] int value>")
        return TensorType((x.shape[0], x.shape[1] * x.shape[2]), FLOAT)

    def macs(self, p, ins, out):
        return prod(out.shape)

    def torch(self, p, ins, out):
        args = (In(0),) if p.label is None else (In(0), In(p.label))
        kw = {"always": True} if p.always else {}
        return TorchPlan(TorchModule(f"{_HELPERS}:CapsuleMask", (), kw),
                         [TorchCall(MODULE, args)])

    def _keep(self, p, xs, ctx):
        """The one-hot [N, caps] of the capsule each sample keeps."""
        import numpy as np

        x = xs[0]
        n, caps = x.shape[:2]
        if p.label is not None and (ctx.training or p.always):
            label = np.asarray(xs[p.label])
            if label.size and (label.min() < 0 or label.max() >= caps):
                raise ValueError(f"capsule_mask: a label is outside 0..{caps - 1} "
                                 f"({label.min()}..{label.max()})")
        else:
            label = (x * x).sum(axis=-1).argmax(axis=1)
        keep = np.zeros((n, caps), dtype=x.dtype)
        keep[np.arange(n), label] = 1
        return keep

    def numpy(self, p, w, xs, ctx):
        x = xs[0]
        return (x * self._keep(p, xs, ctx)[:, :, None]).reshape(x.shape[0], -1)

    def backward(self, p, w, xs, y, gy, ctx):
        x = xs[0]
        g = gy.reshape(x.shape) * self._keep(p, xs, ctx)[:, :, None]
        return [g] + [None] * (len(xs) - 1), {}

    def sample(self):
        return {"label": 1}, [TensorType((4, 3, 2)), TensorType((4,), INT)]

    def samples(self):
        return [self.sample(),
                ({"label": 1, "always": True}, [TensorType((4, 3, 2)), TensorType((4,), INT)]),
                ({}, [TensorType((2, 4, 3))])]
