"""Run a model in both backends with shared weights and inputs; compare layer by layer.

Before anything is allocated, the symbols are bound (``--dim``, default 2), the model's
shape rules run again at those sizes (so that every static rule, a ``max_len`` say,
applies to them) and the peak memory is estimated and compared with what the machine
has. Then, per layer, both backends' outputs must have the inferred shape at the bound
dims and agree within the tolerance.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..backends import weights as _init
from ..core.diagnostics import SpecError
from ..core.dims import Dim
from ..ir.spec import Spec

TOLERANCE = {"float64": 1e-10, "float32": 1e-4}
#: Sizes are int64 in torch and NumPy; a bound dim beyond it cannot be allocated anyway.
MAX_DIM = 2**63 - 1


class UnknownDims(ValueError):
    """A ``--dim`` names a symbol that is no dim of the model's inputs."""


@dataclass
class Row:
    id: str
    name: str
    kind: str
    shape: tuple
    max_abs: float
    max_rel: float
    line: int | None
    # the inferred shape at the bound dims, and the shape each backend produced (a tuple
    # of shapes for a layer that returns several tensors)
    expected: tuple = ()
    shape_numpy: tuple = ()
    shape_torch: tuple = ()

    @property
    def shape_ok(self) -> bool:
        return self.shape_numpy == self.expected and self.shape_torch == self.expected

    def ok(self, tol: float) -> bool:
        return self.shape_ok and self.max_rel <= tol


@dataclass
class Report:
    model: str
    dtype: str
    tolerance: float
    rows: list[Row] = field(default_factory=list)
    dims: dict = field(default_factory=dict)
    sample: bool = False  # the stochastic layers sampled (crosscheck --sample)

    @property
    def first_divergence(self) -> Row | None:
        for r in self.rows:
            if not r.ok(self.tolerance):
                return r
        return None

    @property
    def first_shape_mismatch(self) -> Row | None:
        for r in self.rows:
            if not r.shape_ok:
                return r
        return None

    @property
    def ok(self) -> bool:
        return self.first_divergence is None

    @property
    def max_rel(self) -> float:
        return max((r.max_rel for r in self.rows), default=0.0)

    def render(self) -> str:
        w = max([len(r.name) for r in self.rows] + [5])
        at = f", {_show_dims(self.dims)}" if self.dims else ""
        at += ", stochastic layers sampled" if self.sample else ""
        lines = [f"crosscheck {self.model} ({self.dtype}{at}, tolerance rel "
                 f"{self.tolerance:g})",
                 f"  {'layer':<{w}}  {'kind':<12} {'shape':<22} {'max abs':>10} {'max rel':>10}"]
        for r in self.rows:
            mark = ""
            if not r.shape_ok:
                mark = "  <-- shape differs"
            elif not r.ok(self.tolerance):
                mark = "  <-- diverges"
            lines.append(f"  {r.name:<{w}}  {r.kind:<12} {_show_shape(r.shape):<22} "
                         f"{r.max_abs:>10.2e} {r.max_rel:>10.2e}{mark}")
        bad = self.first_divergence
        if bad is None:
            lines.append(f"ok: both backends agree (max rel error {self.max_rel:.2e})")
        elif not bad.shape_ok:
            where = f" (spec line {bad.line})" if bad.line else ""
            lines.append(f"FAILED: first shape mismatch at {bad.name} [{bad.kind}]{where}: "
                         f"inferred {_show_shape(bad.expected)} at {_show_dims(self.dims)}, "
                         f"NumPy gives {_show_shape(bad.shape_numpy)}, torch gives "
                         f"{_show_shape(bad.shape_torch)}")
        else:
            where = f" (spec line {bad.line})" if bad.line else ""
            lines.append(f"FAILED: first divergence at {bad.name} [{bad.kind}]{where}: "
                         f"max rel error {bad.max_rel:.2e} > {self.tolerance:g}")
        return "\n".join(lines)


def _show_shape(shape: tuple) -> str:
    if shape and isinstance(shape[0], tuple):
        return "(" + ", ".join(_show_shape(s) for s in shape) + ")"
    return str(list(shape))


def _show_dims(env: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(env.items()))


# ---- dims ------------------------------------------------------------------------------


def model_symbols(m) -> list[str]:
    """The symbols of a model's input shapes (the ones ``--dim`` can bind), sorted."""
    out: set[str] = set()
    for inp in m.inputs:
        for d in inp.dims():
            out |= d.symbols()
    return sorted(out)


def bind_dims(spec: Spec, model: str | None, dims: dict[str, int] | None) -> dict[str, int]:
    """Every symbol of the model's inputs bound: from ``dims``, else 2. A name in ``dims``
    that is no symbol of the model raises UnknownDims listing the model's symbols."""
    m = spec.model(model)
    syms = model_symbols(m)
    unknown = sorted(set(dims or {}) - set(syms))
    if unknown:
        have = ", ".join(syms) if syms else "none: every input size is concrete"
        raise UnknownDims(f"model {m.name} has no dim {unknown[0]} (its symbols: {have})")
    for k, v in (dims or {}).items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"the dim {k} must be an int >= 1, got {v!r}")
    return {s: int((dims or {}).get(s, 2)) for s in syms}


def concrete_inputs(spec: Spec, model: str | None, dims: dict[str, int] | None, dtype,
                    seed: int):
    """Random inputs for the model, with each symbol bound (default 2)."""
    m = spec.model(model)
    env = dict(dims or {})
    rng = np.random.default_rng(seed + 1)
    arrays = []
    for inp in m.inputs:
        shape = []
        for d in inp.dims():
            for s in d.symbols():
                env.setdefault(s, 2)
            shape.append(d.evaluate(env))
        if inp.dtype == "int":
            arrays.append(rng.integers(0, 2, size=shape))
        else:
            arrays.append(rng.standard_normal(size=shape).astype(dtype))
    return arrays


def _eval_type(t, env: dict) -> tuple:
    """A TensorType's shape at the bound dims (a tuple of shapes for a TupleType)."""
    if hasattr(t, "items"):
        return tuple(_eval_type(x, env) for x in t.items)
    return tuple(d.evaluate(env) for d in t.shape)


def _subs_node(node, env: dict):
    """The node with the dims in its arguments (a reshape target) bound."""
    p = node.p
    update = {}
    for name in type(p).model_fields:
        v = getattr(p, name)
        if isinstance(v, Dim):
            update[name] = v.subs(env)
        elif isinstance(v, tuple) and any(isinstance(x, Dim) for x in v):
            update[name] = tuple(x.subs(env) if isinstance(x, Dim) else x for x in v)
    if not update:
        return node
    new = node.model_copy()
    new._p = p.model_copy(update=update)
    return new


def check_at_dims(spec: Spec, model: str | None, env: dict[str, int]):
    """Run the model's shape rules again with the symbols bound to ``env``: every static
    rule then applies to those sizes. Returns the ModelTypes; raises SpecError with the
    located errors (each noting the bound dims)."""
    from ..ir.shapes import infer_model

    m = spec.model(model)
    inputs = [inp.model_copy(update={"shape": [str(d.subs(env)) for d in inp.dims()]})
              for inp in m.inputs]
    asserts = [a.model_copy(update={"dims": [d if d == "_" else str(Dim.parse(d).subs(env))
                                             for d in a.dims]}) for a in m.asserts]
    bound = m.model_copy(update={"inputs": inputs, "asserts": asserts,
                                 "nodes": [_subs_node(n, env) for n in m.nodes]})
    res = infer_model(bound)
    if res.diags:
        for d in res.diags:
            d.notes.append(f"with the dims bound for crosscheck: {_show_dims(env)}")
        raise SpecError(res.diags, spec.sources)
    return res


# ---- memory ----------------------------------------------------------------------------


def available_memory() -> int | None:
    """Bytes this process may still allocate: /proc/meminfo's MemAvailable, lowered to a
    cgroup's remaining limit when there is one; None when neither can be read."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        avail = None
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            avail = None
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            cap = f.read().strip()
        if cap != "max":
            with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
                left = int(cap) - int(f.read().strip())
            avail = left if avail is None else min(avail, left)
    except (OSError, ValueError):
        pass
    return avail


@dataclass
class MemoryEstimate:
    """Bytes a crosscheck needs at its peak, and the parts it is made of."""

    weights: int  # one copy of the weights at the dtype
    activations: int  # every value of the model, in one backend
    workspace: int  # the largest temporary of one layer's kernel
    peak: int

    def describe(self) -> str:
        return (f"about {self.peak:,} bytes ({_gib(self.peak)}: weights {self.weights:,} "
                f"bytes, activations {self.activations:,} bytes per backend, largest layer "
                f"temporary {self.workspace:,} bytes)")


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n < 2**80 else f"about 2^{n.bit_length() - 1}"


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= max(int(s), 0)
    return n


def estimate_memory(spec: Spec, model: str | None, env: dict[str, int], dtype) -> MemoryEstimate:
    """The peak memory of :func:`crosscheck` at the bound dims, from the inferred shapes
    (Python ints: a dim of 10^12 or beyond int64 is estimated, never allocated).

    While the torch module is built, the drawn weights and the module's copy coexist (2x
    weights); afterwards the NumPy backend reads the module's tensors, so one copy stays,
    next to every value of the model in both backends (both keep a trace) and the
    largest temporary of one layer (attention's score matrices, a convolution's unfolded
    input, or two output-sized arrays for the rest).
    """
    m = spec.model(model)
    item = np.dtype(dtype).itemsize
    weights = _init.nbytes(spec.state_shapes(m.name), dtype)
    types = spec.types(m.name).types

    def nbytes(t) -> int:
        if t is None:
            return 0
        if hasattr(t, "items"):
            return sum(nbytes(x) for x in t.items)
        return _numel(d.evaluate(env) for d in t.shape) * (8 if t.dtype == "int" else item)

    acts = sum(nbytes(types.get(i.id)) for i in m.inputs)
    work = 0
    for node in m.nodes:
        out = types.get(node.id)
        size = nbytes(out)
        acts += size
        temp = 2 * size
        ins = [types.get(v) for v in node.inputs]
        if node.op in ("attention", "mha") and ins and ins[0] is not None:
            n, t, _ = (d.evaluate(env) for d in ins[0].shape)
            kv = ins[node.p.kv] if node.p.kv is not None else ins[0]
            s = kv.shape[1].evaluate(env) if kv is not None else t
            temp = max(temp, 4 * _numel((n, node.p.heads, t, s)) * item)
        elif node.op == "sdpa" and out is not None and len(ins) > 1 and ins[1] is not None:
            # the [..., T, S] scores and weights of q [..., T, D] and k [..., S, D]
            lead = [d.evaluate(env) for d in out.shape[:-1]]
            temp = max(temp, 4 * _numel(lead + [ins[1].shape[-2].evaluate(env)]) * item)
        elif node.op.startswith("conv") and ins and ins[0] is not None and out is not None:
            k = node.p.k if isinstance(node.p.k, tuple) else (node.p.k,) * (ins[0].rank - 2)
            shape = [d.evaluate(env) for d in ins[0].shape]
            spatial = [d.evaluate(env) for d in out.shape[2:]]
            temp = max(temp, _numel(shape[:2] + list(k) + spatial) * item + size)
        work = max(work, temp)
    peak = max(2 * weights, weights + 2 * acts + work)
    return MemoryEstimate(weights, acts, work, peak)


def check_memory(est: MemoryEstimate, dtype, env: dict, limit: int | None) -> None:
    """Raise init.TooLarge when the estimate is above ``limit`` bytes or a bound dim is
    beyond int64."""
    big = [k for k, v in env.items() if v > MAX_DIM]
    if big:
        raise _init.TooLarge(f"the dim {big[0]}={env[big[0]]} is beyond int64 (sizes are "
                             f"int64); crosscheck would need {est.describe()}; refusing to "
                             "allocate them")
    if limit is not None and est.peak > limit:
        raise _init.TooLarge(
            f"crosscheck in {np.dtype(dtype).name} at {_show_dims(env) or 'its sizes'} needs "
            f"{est.describe()}, more than the {limit:,} bytes of memory available; refusing "
            "to allocate them")


# ---- comparison ------------------------------------------------------------------------


def _shape_of(v) -> tuple:
    if isinstance(v, (tuple, list)):
        return tuple(_shape_of(x) for x in v)
    return tuple(int(s) for s in np.shape(v))


def _max_finite(arrays) -> float:
    best = 0.0
    for x in arrays:
        if isinstance(x, (tuple, list)):
            best = max(best, _max_finite(x))
            continue
        x = np.asarray(x)
        if x.size == 0 or not np.issubdtype(x.dtype, np.floating):
            continue
        a = np.abs(x.astype(np.float64, copy=False))
        a = a[np.isfinite(a)]
        if a.size:
            best = max(best, float(a.max()))
    return best


def _errors(a, b, scale: float = 0.0) -> tuple[float, float]:
    """(max abs error, max rel error) of ``a`` against ``b``.

    The relative error is the absolute one over the layer's scale: the largest finite
    magnitude among ``a``, ``b`` and ``scale`` (the layer's inputs), so that rounding noise
    around zero (a normalisation of a constant gives +-1e-14 in both) is measured against
    the size of the numbers it came from. Equal non-finite values (the same infinity, or
    NaN in both) agree: they are what PyTorch computes (a max-pooling window wholly in the
    padding is -inf).
    """
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        if not (isinstance(a, (tuple, list)) and isinstance(b, (tuple, list))
                and len(a) == len(b)):
            return float("inf"), float("inf")
        pairs = [_errors(x, y, scale) for x, y in zip(a, b)]
        return max(p[0] for p in pairs), max(p[1] for p in pairs)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf"), float("inf")
    if a.size == 0:
        return 0.0, 0.0
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore"):
        diff_all = np.where(same, 0.0, np.abs(a - b))
    diff = float(np.max(diff_all))
    if not np.isfinite(diff):
        return float("inf"), float("inf")
    if diff == 0.0:
        return 0.0, 0.0
    s = max(_max_finite((a, b)), scale)
    return diff, diff / s if s > 0 else float("inf")


def _to_numpy(v):
    if isinstance(v, (tuple, list)):
        return tuple(_to_numpy(x) for x in v)
    return v.detach().cpu().numpy()


def _prepare(spec: Spec, model, dtype: str, dims, limit):
    """(model, dtype, bound dims) after the checks that come before any allocation: the
    spec's errors, the dims, the memory estimate against ``limit``, the shape rules at the
    bound dims."""
    spec.raise_for_errors()
    m = spec.model(model)
    np_dtype = np.dtype(dtype)
    env = bind_dims(spec, m.name, dims)
    est = estimate_memory(spec, m.name, env, np_dtype)
    check_memory(est, np_dtype, env, available_memory() if limit == "auto" else limit)
    check_at_dims(spec, m.name, env)
    return m, np_dtype, env


def crosscheck(spec: Spec, model: str | None = None, dtype: str = "float64", seed: int = 0,
               dims: dict[str, int] | None = None, limit: int | None | str = "auto",
               sample: bool = False) -> Report:
    """Both backends, the same weights (drawn from ``seed``) and inputs; per-layer errors
    and shapes.

    The stochastic layers of both backends draw the same numbers (``Noise(seed)``, see
    nnspec/layers/stochastic.py); with ``sample`` those with ``sample=train`` sample, as
    in training (the rest of the model stays in eval mode), else they return their mean.

    ``dims`` binds the input symbols (default 2; an unknown name raises UnknownDims). The
    shape rules run again at those sizes (SpecError with the located errors). ``limit`` is
    the memory budget in bytes: ``"auto"`` (the machine's available memory) or None (no
    limit); above it, ``init.TooLarge`` is raised with the estimate, before anything is
    allocated.
    """
    m, np_dtype, env = _prepare(spec, model, dtype, dims, limit)
    types = spec.types(m.name).types

    import torch

    from ..backends.numpy.interpreter import NumpyModel
    from ..backends.torch.module import build_module
    tdtype = {"float64": torch.float64, "float32": torch.float32}[np_dtype.name]
    params = _init.draw(spec.state_shapes(m.name), seed, np_dtype, limit=None)
    mod = build_module(spec, m.name, dtype=tdtype,
                       params={k: torch.from_numpy(v) for k, v in params.items()}).eval()
    del params
    # the NumPy backend reads the module's tensors (one copy of the weights, not two);
    # read-only, so that neither backend can change the other's weights
    shared = {}
    for k, t in mod.state_dict().items():
        a = t.detach().numpy().view()
        a.flags.writeable = False
        shared[k] = a
    ref = NumpyModel(spec, m.name, params=shared, dtype=np_dtype)
    del shared
    inputs = concrete_inputs(spec, m.name, env, np_dtype, seed)
    force = True if sample else None
    ours = ref(*inputs, trace=True, noise=_noise(seed), sample=force)
    _use_noise(mod, _noise(seed), force)
    with torch.no_grad():
        theirs = mod.trace(*[torch.from_numpy(np.ascontiguousarray(a)) for a in inputs])
    report = Report(m.name, np_dtype.name, TOLERANCE[np_dtype.name], dims=dict(env),
                    sample=sample)
    # a value's scale: the largest finite magnitude on any path into it. Rounding errors are
    # ~eps times the numbers they came from, so noise that a normalisation or a product
    # turned into a near-zero result is still measured against those numbers.
    upstream = {i.id: _max_finite([ours[i.id]]) if i.id in ours else 0.0 for i in m.inputs}
    for node in m.nodes:
        a = ours[node.id]
        b = _to_numpy(theirs[node.id])
        scale = max([upstream.get(v, 0.0) for v in node.inputs] + [0.0])
        upstream[node.id] = max(scale, _max_finite([a]))
        mx, rel = _errors(b, a, scale)
        t = types.get(node.id)
        expected = _eval_type(t, env) if t is not None else ()
        report.rows.append(Row(node.id, node.name, node.op, _shape_of(a), mx, rel,
                               node.span[1] if node.span else None, expected,
                               _shape_of(a), _shape_of(b)))
    return report


# ---- gradients -----------------------------------------------------------------------

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

    from ..backends.numpy.interpreter import NumpyModel
    from ..backends.torch.module import build_module
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


def _noise(seed: int):
    """The shared noise of the stochastic layers (one fresh stream per backend run)."""
    from ..layers.stochastic import Noise

    return Noise(seed)


def _use_noise(module, noise, force) -> None:
    from ..layers.torch.stochastic import use_noise

    use_noise(module, noise, force)


def _grad_of(t):
    g = getattr(t, "grad", None)
    return None if g is None else g.detach().numpy()
