"""The gradient crosscheck (``crosscheck --grad``): NumPy's reference backward against
torch autograd for L = sum(output * c) with a random cotangent c (a stream of its own),
per trainable parameter, float input and layer output (:func:`crosscheck_grad`, whose
:class:`GradReport` names the layer whose backward first goes wrong). A parameter's error
is measured against its layer's largest parameter gradient, an input's or a layer
output's against the largest gradient on its path to the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...ir.spec import Spec
from ..progress import Progress
from .forward import (
    _errors,
    _max_finite,
    _noise,
    _shape_of,
    _show_shape,
    _use_noise,
    counting,
    weights_and_module,
)
from .sizes import _prepare, _show_dims, concrete_inputs

#: tolerance on the gradients' relative error (float64: the issue's 1e-8; float32 rounding
#: accumulates over a backward pass more than over a forward one)
GRAD_TOLERANCE = {"float64": 1e-8, "float32": 1e-3}


@dataclass
class GradRow:
    name: str  # a state_dict key, "input x", or a layer's name
    kind: str  # "param", "input" or the layer kind
    shape: tuple
    max_abs: float
    max_rel: float
    line: int | None = None


@dataclass
class GradReport:
    """Per-parameter and per-input gradient errors of NumPy's backward against torch
    autograd, for L = sum(output * c) with a random cotangent c; ``layers`` holds the
    error of dL/d(each layer's output), in model order."""

    model: str
    dtype: str
    tolerance: float
    params: list[GradRow] = field(default_factory=list)
    layers: list[GradRow] = field(default_factory=list)
    dims: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.max_rel <= self.tolerance for r in self.params)

    @property
    def first_divergence(self) -> GradRow | None:
        """The first layer, walking backwards from the output, whose output gradient
        differs: the layer after it (in model order) computed a wrong input gradient."""
        for r in reversed(self.layers):
            if r.max_rel > self.tolerance:
                return r
        return None

    def render(self) -> str:
        w = max([len(r.name) for r in self.params] + [9])
        at = f", {_show_dims(self.dims)}" if self.dims else ""
        lines = [f"crosscheck --grad {self.model} ({self.dtype}{at}, L = sum(output * c), "
                 f"tolerance rel {self.tolerance:g})",
                 f"  {'parameter':<{w}}  {'shape':<22} {'max abs':>10} {'max rel':>10}"]
        for r in self.params:
            mark = "  <-- diverges" if r.max_rel > self.tolerance else ""
            lines.append(f"  {r.name:<{w}}  {_show_shape(r.shape):<22} {r.max_abs:>10.2e} "
                         f"{r.max_rel:>10.2e}{mark}")
        worst = max((r.max_rel for r in self.params), default=0.0)
        if self.ok:
            lines.append(f"ok: NumPy's backward agrees with torch autograd (max rel error "
                         f"{worst:.2e})")
            return "\n".join(lines)
        bad = self.first_divergence
        if bad is not None:
            i = self.layers.index(bad)
            culprit = self.layers[i + 1] if i + 1 < len(self.layers) else bad
            where = f" (spec line {culprit.line})" if culprit.line else ""
            lines.append(f"FAILED: walking backwards, the gradient first diverges at the "
                         f"input of {culprit.name} [{culprit.kind}]{where}: max rel error "
                         f"{bad.max_rel:.2e} > {self.tolerance:g}")
        else:
            lines.append(f"FAILED: a parameter's gradient differs (max rel error {worst:.2e} "
                         f"> {self.tolerance:g})")
        return "\n".join(lines)


def crosscheck_grad(spec: Spec, model: str | None = None, dtype: str = "float64",
                    seed: int = 0, dims: dict[str, int] | None = None,
                    limit: int | None | str = "auto", sample: bool = False,
                    progress: Progress | None = None) -> GradReport:
    """NumPy's reference backward against torch autograd: the same weights, inputs (from
    ``seed``) and a random cotangent c, in eval mode; the gradients of L = sum(output * c)
    for every trainable parameter and float input, and of every layer's output. The
    stochastic layers draw the same numbers in both, and sample with ``sample`` (as in
    :func:`crosscheck`); ``progress`` is told each stage and layer."""
    m, np_dtype, env = _prepare(spec, model, dtype, dims, limit)
    bar = progress or Progress()
    n = len(m.nodes)

    import torch

    from ...backends.numpy.interpreter import NumpyModel
    params, mod = weights_and_module(spec, m, np_dtype, seed, bar)
    ref = NumpyModel(spec, m.name, params=params, dtype=np_dtype)
    inputs = concrete_inputs(spec, m.name, env, np_dtype, seed)
    force = True if sample else None
    # the plan is walked four times: forward, the check that each layer has a backward,
    # forward keeping what the backward needs, backward
    bar.stage(f"{m.name}: NumPy forward and backward", 4 * n)
    with counting(ref, "_plan", bar):
        out = ref(*inputs, noise=_noise(seed), sample=force)
        cot = cotangent(out, seed, np_dtype)
        got = ref.vjp(*inputs, cotangent=cot, keep=True, noise=_noise(seed), sample=force)
    _use_noise(mod, _noise(seed), force)

    xs = []
    for inp, a in zip(m.inputs, inputs):
        t = torch.from_numpy(np.ascontiguousarray(a))
        if inp.dtype != "int":
            t.requires_grad_(True)
        xs.append(t)
    bar.stage(f"{m.name}: torch forward", n)
    with counting(mod, "_steps", bar):
        values = mod.trace(*xs)
    for v in values.values():
        for t in (v if isinstance(v, tuple) else (v,)):
            if isinstance(t, torch.Tensor) and t.requires_grad and not t.is_leaf:
                t.retain_grad()
    y = values[m.output]
    pairs = zip(y, cot) if isinstance(y, tuple) else [(y, cot)]
    loss = sum((a * torch.from_numpy(b)).sum() for a, b in pairs)
    bar.stage(f"{m.name}: torch backward")
    loss.backward()
    bar.stage(f"{m.name}: comparing", len(got.params) + n)

    report = GradReport(m.name, np_dtype.name, GRAD_TOLERANCE[np_dtype.name], dims=dict(env))
    named = dict(mod.named_parameters())
    theirs_of = {node.id: _grads_of(values[node.id]) for node in m.nodes}
    path = _path_scales(m, {**got.values, **{i.id: g for i, g in zip(m.inputs, got.inputs)}},
                        {**theirs_of, **{i.id: _grad_of(x) for i, x in zip(m.inputs, xs)}},
                        cot)
    scale = _param_scales(m, got.params, path, values)
    for k, g in got.params.items():
        want = named[k].grad
        want = np.zeros_like(g) if want is None else want.detach().numpy()
        mx, rel = _errors(g, want, scale[k])
        report.params.append(GradRow(k, "param", tuple(g.shape), mx, rel))
        bar.advance()
    for inp, x, g in zip(m.inputs, xs, got.inputs):
        if g is None:
            continue
        want = x.grad.numpy() if x.grad is not None else np.zeros_like(g)
        mx, rel = _errors(g, want, path.get(inp.id, 0.0))
        report.params.append(GradRow(f"input {inp.name}", "input", tuple(g.shape), mx, rel))
    for node in m.nodes:
        bar.advance()
        if node.op == "pack":
            # its values are its inputs' tensors, whose torch .grad sums every reader, not only
            # the pack (return s, pooled with s read by the pooler too): they have rows of their own
            continue
        mine = got.values.get(node.id)
        theirs = theirs_of[node.id]
        if mine is None or theirs is None:
            continue
        if isinstance(mine, tuple):
            pairs = [(a, b) for a, b in zip(mine, theirs) if a is not None and b is not None]
            if not pairs:
                continue
            mx, rel = _errors(tuple(a for a, _ in pairs), tuple(b for _, b in pairs),
                              path[node.id])
        else:
            mx, rel = _errors(mine, theirs, path[node.id])
        report.layers.append(GradRow(node.name, node.op, _shape_of(mine), mx, rel,
                                     node.span[1] if node.span else None))
    bar.close()
    return report


def cotangent(out, seed: int, dtype):
    """The random cotangent c of L = sum(output * c), one array per output: drawn from a
    stream of its own, independent of the inputs' (``seed + 1``) and the weights'."""
    rng = np.random.default_rng((seed, _COTANGENT_STREAM))
    if isinstance(out, tuple):
        return tuple(rng.standard_normal(np.shape(o)).astype(dtype) for o in out)
    return rng.standard_normal(np.shape(out)).astype(dtype)


def _path_scales(m, mine: dict, theirs: dict, cot) -> dict[str, float]:
    """The scale of each value's gradient: the largest finite gradient magnitude on any
    path from it to the output (its own, its readers' scales, and c at the output), in
    either back end. Rounding errors of a backward pass are ~eps times the gradients they
    came from, so an exactly zero gradient (softmax then sum) computed as +-1e-17 is
    measured against the gradients that cancelled, as the forward check measures a value
    against the magnitudes flowing into it."""
    readers: dict[str, list[str]] = {}
    for node in m.nodes:
        for v in node.inputs:
            readers.setdefault(v, []).append(node.id)
    path: dict[str, float] = {}
    for vid in [n.id for n in reversed(m.nodes)] + [i.id for i in m.inputs]:
        own = [g for g in (mine.get(vid), theirs.get(vid)) if g is not None]
        if vid == m.output:
            own.append(cot)
        path[vid] = max([_max_finite(own)] + [path[r] for r in readers.get(vid, ())])
    return path


def _param_scales(m, grads: dict, path: dict, values: dict) -> dict[str, float]:
    """The scale of each parameter's gradient: its layer's largest parameter gradient
    (attention's key bias gets an exact zero, softmax ignoring a per-query constant,
    computed as +-1e-17), and the largest gradient on the path from the layer's output
    times the largest of its inputs, its output and 1 (dW = sum gy x; a bias or an
    embedding row takes gy as it is): an exactly zero gradient behind a softmax over a
    constant row is measured against the gradients that cancelled."""
    layer: dict[str, float] = {}
    for k, g in grads.items():
        name = k.rsplit(".", 1)[0]
        layer[name] = max(layer.get(name, 0.0), _max_finite((g,)))
    flow: dict[str, float] = {}
    for node in m.nodes:
        acts = [_numpy_of(values[v]) for v in node.inputs if v in values]
        size = max(1.0, _max_finite(acts + [_numpy_of(values[node.id])]))
        flow[node.name] = max(flow.get(node.name, 0.0), path.get(node.id, 0.0) * size)
    out = {}
    for k in grads:
        name = k.rsplit(".", 1)[0]
        owners = [v for n, v in flow.items() if k.startswith(n + ".")]
        out[k] = max([layer[name]] + owners)
    return out


def _numpy_of(v):
    if isinstance(v, tuple):
        return tuple(_numpy_of(t) for t in v)
    return v.detach().numpy() if hasattr(v, "detach") else np.asarray(v)


#: the cotangent's random stream: (seed, this) is no stream that inputs or weights draw from
_COTANGENT_STREAM = 0x636F74


def _grads_of(v):
    """torch's gradient of a traced value (a tuple for a tuple), or None."""
    if isinstance(v, tuple):
        return tuple(_grad_of(t) for t in v)
    return _grad_of(v)


def _grad_of(t):
    g = getattr(t, "grad", None)
    return None if g is None else g.detach().numpy()
