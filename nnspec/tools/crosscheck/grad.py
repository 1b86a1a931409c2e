"""The gradient crosscheck (``crosscheck --grad``): NumPy's reference backward against
torch autograd for L = sum(output * c) with a random cotangent c, per trainable parameter,
float input and layer output (:func:`crosscheck_grad`, whose :class:`GradReport` names the
layer whose backward first goes wrong).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...backends import weights as _init
from ...ir.spec import Spec
from .forward import _errors, _max_finite, _noise, _shape_of, _show_shape, _use_noise
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
                    limit: int | None | str = "auto", sample: bool = False) -> GradReport:
    """NumPy's reference backward against torch autograd: the same weights, inputs (from
    ``seed``) and a random cotangent c, in eval mode; the gradients of L = sum(output * c)
    for every trainable parameter and float input, and of every layer's output. The
    stochastic layers draw the same numbers in both, and sample with ``sample`` (as in
    :func:`crosscheck`)."""
    m, np_dtype, env = _prepare(spec, model, dtype, dims, limit)

    import torch

    from ...backends.numpy.interpreter import NumpyModel
    from ...backends.torch.module import build_module
    tdtype = {"float64": torch.float64, "float32": torch.float32}[np_dtype.name]
    params = _init.draw(spec.state_shapes(m.name), seed, np_dtype, limit=None)
    mod = build_module(spec, m.name, dtype=tdtype,
                       params={k: torch.from_numpy(v) for k, v in params.items()}).eval()
    ref = NumpyModel(spec, m.name, params=params, dtype=np_dtype)
    inputs = concrete_inputs(spec, m.name, env, np_dtype, seed)
    force = True if sample else None
    out = ref(*inputs, noise=_noise(seed), sample=force)
    rng = np.random.default_rng(seed + 1)
    cot = (tuple(rng.standard_normal(o.shape).astype(np_dtype) for o in out)
           if isinstance(out, tuple) else rng.standard_normal(out.shape).astype(np_dtype))
    got = ref.vjp(*inputs, cotangent=cot, keep=True, noise=_noise(seed), sample=force)
    _use_noise(mod, _noise(seed), force)

    xs = []
    for inp, a in zip(m.inputs, inputs):
        t = torch.from_numpy(np.ascontiguousarray(a))
        if inp.dtype != "int":
            t.requires_grad_(True)
        xs.append(t)
    values = mod.trace(*xs)
    for v in values.values():
        for t in (v if isinstance(v, tuple) else (v,)):
            if isinstance(t, torch.Tensor) and t.requires_grad and not t.is_leaf:
                t.retain_grad()
    y = values[m.output]
    pairs = zip(y, cot) if isinstance(y, tuple) else [(y, cot)]
    loss = sum((a * torch.from_numpy(b)).sum() for a, b in pairs)
    loss.backward()

    report = GradReport(m.name, np_dtype.name, GRAD_TOLERANCE[np_dtype.name], dims=dict(env))
    named = dict(mod.named_parameters())
    # a gradient's error is measured against its layer's largest gradient: attention's key
    # bias gets an exact zero (softmax ignores a per-query constant), computed as +-1e-17
    layer_scale: dict[str, float] = {}
    for k, g in got.params.items():
        layer = k.rsplit(".", 1)[0]
        layer_scale[layer] = max(layer_scale.get(layer, 0.0), _max_finite((g,)))
    for k, g in got.params.items():
        want = named[k].grad
        want = np.zeros_like(g) if want is None else want.detach().numpy()
        mx, rel = _errors(g, want, layer_scale[k.rsplit(".", 1)[0]])
        report.params.append(GradRow(k, "param", tuple(g.shape), mx, rel))
    for inp, x, g in zip(m.inputs, xs, got.inputs):
        if g is None:
            continue
        want = x.grad.numpy() if x.grad is not None else np.zeros_like(g)
        mx, rel = _errors(g, want)
        report.params.append(GradRow(f"input {inp.name}", "input", tuple(g.shape), mx, rel))
    for node in m.nodes:
        if node.op == "pack":
            # its values are its inputs' tensors, whose torch .grad sums every reader, not only
            # the pack (return s, pooled with s read by the pooler too): they have rows of their own
            continue
        mine = got.values.get(node.id)
        v = values[node.id]
        theirs = tuple(_grad_of(t) for t in v) if isinstance(v, tuple) else _grad_of(v)
        if mine is None or theirs is None:
            continue
        if isinstance(mine, tuple):
            pairs = [(a, b) for a, b in zip(mine, theirs) if a is not None and b is not None]
            if not pairs:
                continue
            mx, rel = _errors(tuple(a for a, _ in pairs), tuple(b for _, b in pairs))
        else:
            mx, rel = _errors(mine, theirs)
        report.layers.append(GradRow(node.name, node.op, _shape_of(mine), mx, rel,
                                     node.span[1] if node.span else None))
    return report


def _grad_of(t):
    g = getattr(t, "grad", None)
    return None if g is None else g.detach().numpy()
