"""The finite-difference check shared by every layer kind's backward.

``check_kind(kind, args, ins)`` runs the kind's NumPy forward and backward in float64 on
random inputs, weights and a random cotangent c, and compares every gradient of
L = sum(forward(x, w) * c) with central differences (L(v + h) - L(v - h)) / 2h, on up to
``max_coords`` coordinates of each float input and trainable weight. The forward is rerun
with the same random generator state, so a dropout mask is the same in every evaluation.
"""

from __future__ import annotations

import numpy as np

from nnspec.layers.base import NumpyCtx, TupleType


def _draw(t, rng):
    if isinstance(t, TupleType):
        return tuple(_draw(i, rng) for i in t.items)
    shape = [d.value for d in t.shape]
    if t.dtype == "int":
        return rng.integers(0, 3, size=shape)
    return rng.standard_normal(shape)


def draw_params(shapes: dict, rng) -> dict:
    """Random float64 weights for state_dict entries (W specs): normal draws, a running
    variance kept positive, int buffers zero."""
    w = {}
    for k, spec in shapes.items():
        if spec.dtype == "int":
            w[k] = np.zeros(spec.shape, np.int64)
        elif k.endswith("running_var"):
            w[k] = np.abs(rng.standard_normal(spec.shape)) + 0.5
        else:
            w[k] = rng.standard_normal(spec.shape)
    return w


def _weights(kind, p, ins, out, rng):
    ws = kind.state(p, ins, out)
    return draw_params(ws, rng), ws


def _dot(y, c) -> float:
    if isinstance(y, tuple):
        return sum(_dot(a, b) for a, b in zip(y, c) if b is not None)
    return float(np.sum(y * c))


def check_kind(kind, args: dict, ins: list, training: bool = False, seed: int = 0,
               h: float = 1e-6, rtol: float = 1e-6, atol: float = 1e-8,
               max_coords: int = 60, prepare=None) -> dict:
    """Compare the backward with central differences; returns {what: max abs error}.
    ``prepare(xs, w)`` may adjust the drawn values (keep them away from a kink)."""
    rng = np.random.default_rng(seed)
    p = kind.Params.model_validate(args)
    out = kind.infer(p, ins)
    xs = [_draw(t, rng) for t in ins]
    w, specs = _weights(kind, p, ins, out, rng)
    if prepare is not None:
        prepare(xs, w)

    def forward(xs_, w_, saved=None):
        ctx = NumpyCtx(training=training, rng=np.random.default_rng(seed + 1))
        ctx.saved = saved
        return kind.numpy(p, dict(w_), list(xs_), ctx), ctx

    saved: dict = {}
    y, ctx = forward(xs, w, saved)
    c = _draw(out, rng)
    if isinstance(c, tuple):
        c = tuple(a.astype(np.float64) for a in c)
    ctx.saved = saved
    gxs, gw = kind.backward(p, dict(w), list(xs), y, c, ctx)
    assert len(gxs) == len(xs), f"{kind.name}: one gradient per input"
    trainable = {k for k, s in specs.items() if s.trainable and s.dtype != "int"}
    assert set(gw) == trainable, f"{kind.name}: gradients for {sorted(gw)}, want {trainable}"

    def loss(xs_, w_) -> float:
        return _dot(forward(xs_, w_)[0], c)

    errors = {}
    pick = np.random.default_rng(seed + 2)

    def compare(name, value, grad, setter):
        assert grad.shape == value.shape, f"{kind.name}: {name} grad {grad.shape} != " \
                                          f"{value.shape}"
        flat = value.reshape(-1)
        coords = np.arange(flat.size)
        if flat.size > max_coords:
            coords = pick.choice(flat.size, max_coords, replace=False)
        worst = 0.0
        for i in coords:
            old = flat[i]
            flat[i] = old + h
            up = loss(*setter(value))
            flat[i] = old - h
            down = loss(*setter(value))
            flat[i] = old
            num = (up - down) / (2 * h)
            got = grad.reshape(-1)[i]
            assert abs(got - num) <= atol + rtol * max(1.0, abs(num)), (
                f"{kind.name}: d/d{name}[{np.unravel_index(i, value.shape)}] is {got}, "
                f"finite differences give {num}")
            worst = max(worst, abs(got - num))
        errors[name] = worst

    for j, (x, g, t) in enumerate(zip(xs, gxs, ins)):
        if isinstance(t, TupleType) or t.dtype == "int":
            assert g is None or isinstance(g, tuple), f"{kind.name}: int input {j} has a grad"
            continue
        assert g is not None, f"{kind.name}: no gradient for input {j}"
        compare(f"x{j}", x, g, lambda v, j=j: (xs[:j] + [v] + xs[j + 1:], w))
    for k in sorted(trainable):
        compare(k, w[k], gw[k], lambda v, k=k: (xs, {**w, k: v}))
    return errors


def check_autograd(spec, inputs: list, model: str | None = None, training: bool = False,
                   seed: int = 0, rtol: float = 1e-9, atol: float = 1e-11):
    """NumpyModel.vjp against torch autograd on build_module, in float64, for one spec
    with the same weights, inputs and cotangent; returns the Gradients. In training mode
    (dropout) only specs whose randomness both sides cannot share should stay out."""
    import torch

    from nnspec.backends.numpy import NumpyModel
    from nnspec.backends.torch import build_module

    rng = np.random.default_rng(seed)
    params = draw_params(spec.state_shapes(model), rng)
    ref = NumpyModel(spec, model, params={k: v.copy() for k, v in params.items()},
                     dtype=np.float64)
    mod = build_module(spec, model, params=params, dtype=torch.float64)
    mod.train(training)
    out = ref(*inputs, training=training)
    c = (tuple(rng.standard_normal(o.shape) for o in out) if isinstance(out, tuple)
         else rng.standard_normal(out.shape))
    got = ref.vjp(*inputs, cotangent=c, training=training)
    xs = [torch.tensor(a, requires_grad=not np.issubdtype(np.asarray(a).dtype, np.integer))
          for a in inputs]
    y = mod(*xs)
    if isinstance(y, tuple):
        loss = sum((a * torch.from_numpy(b)).sum() for a, b in zip(y, c))
    else:
        loss = (y * torch.from_numpy(c)).sum()
    loss.backward()
    named = dict(mod.named_parameters())
    for k, g in got.params.items():
        want = named[k].grad
        want = np.zeros(g.shape) if want is None else want.numpy()
        np.testing.assert_allclose(g, want, rtol=rtol, atol=atol, err_msg=f"d/d{k}")
    for i, (x, g) in enumerate(zip(xs, got.inputs)):
        if g is None:
            continue
        want = x.grad.numpy() if x.grad is not None else np.zeros(g.shape)
        np.testing.assert_allclose(g, want, rtol=rtol, atol=atol, err_msg=f"d/dinput{i}")
    return got
