"""The forward crosscheck: both back ends run the model with the same weights and inputs,
and each layer's outputs must have the inferred shape and agree within the tolerance
(:func:`crosscheck`, whose :class:`Report` holds a :class:`Row` per layer). The error
measure (:func:`_errors`) and the stochastic layers' shared noise live here too: the
gradient check (``grad``) uses them as well.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ...backends import weights as _init
from ...ir.spec import Spec
from ..progress import Counted, Progress
from .sizes import _prepare, _show_dims, concrete_inputs

TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


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
    # the tolerance of the precision on the layer's path when it is coarser than the run's:
    # a float32 value in a float64 run (`to_float` of an int, as torch's default dtype) and
    # everything computed from it
    path_tolerance: float = 0.0
    #: where the outputs differ beyond the tolerance: the error of the NumPy layer run on
    #: torch's own inputs against torch's output (None: not measured). A layer that agrees
    #: so only passed on what reached it, amplified by its conditioning (an RMS
    #: normalisation of a row that is zero up to rounding multiplies that rounding by
    #: 1/sqrt(eps)): it does not diverge.
    own_rel: float | None = None

    @property
    def shape_ok(self) -> bool:
        return self.shape_numpy == self.expected and self.shape_torch == self.expected

    def ok(self, tol: float) -> bool:
        tol = max(tol, self.path_tolerance)
        return self.shape_ok and (self.max_rel <= tol or self.inherited(tol))

    def inherited(self, tol: float) -> bool:
        """Differs only by what reached it (see ``own_rel``)."""
        return self.own_rel is not None and self.own_rel <= max(tol, self.path_tolerance)


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
            elif r.max_rel > max(self.tolerance, r.path_tolerance):
                mark = f"  (inherited: {r.own_rel:.1e} on torch's inputs)"
            lines.append(f"  {r.name:<{w}}  {r.kind:<12} {_show_shape(r.shape):<22} "
                         f"{r.max_abs:>10.2e} {r.max_rel:>10.2e}{mark}")
        bad = self.first_divergence
        if bad is None:
            passed = sum(r.max_rel > max(self.tolerance, r.path_tolerance) for r in self.rows)
            lines.append(f"ok: both backends agree (max rel error {self.max_rel:.2e})" if not
                         passed else f"ok: both backends agree layer by layer ({passed} "
                         f"layer(s) differ by up to {self.max_rel:.2e} only through the "
                         "rounding that reached them)")
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


def _eval_type(t, env: dict) -> tuple:
    """A TensorType's shape at the bound dims (a tuple of shapes for a TupleType)."""
    if hasattr(t, "items"):
        return tuple(_eval_type(x, env) for x in t.items)
    return tuple(d.evaluate(env) for d in t.shape)


# ---- comparison ------------------------------------------------------------------------


def _shape_of(v) -> tuple:
    if isinstance(v, (tuple, list)):
        return tuple(_shape_of(x) for x in v)
    return tuple(int(s) for s in np.shape(v))


#: elements per piece when two outputs are compared: the temporaries stay small (a VGG-16
#: gradient is 822 MB in float64) and in cache
_CHUNK = 1 << 20


def _pieces(*arrays):
    """Aligned flat pieces of equally shaped arrays (views where the arrays are contiguous)."""
    flat = [np.ravel(x) for x in arrays]
    for i in range(0, flat[0].size, _CHUNK):
        yield tuple(f[i:i + _CHUNK] for f in flat)


def _max_finite(arrays) -> float:
    best = 0.0
    for x in arrays:
        if isinstance(x, (tuple, list)):
            best = max(best, _max_finite(x))
            continue
        x = np.asarray(x)
        if x.size == 0 or not np.issubdtype(x.dtype, np.floating):
            continue
        for (piece,) in _pieces(x):
            a = np.abs(piece)
            m = a.max()
            if not np.isfinite(m):  # skip the infinities and NaNs of this piece
                a = a[np.isfinite(a)]
                m = a.max() if a.size else 0.0
            best = max(best, float(m))
    return best


def _errors(a, b, scale: float = 0.0) -> tuple[float, float]:
    """(max abs error, max rel error) of ``a`` against ``b``.

    The relative error is the absolute one over the layer's scale: the largest finite
    magnitude among ``a``, ``b`` and ``scale`` (the layer's inputs), so that rounding noise
    around zero (a normalisation of a constant gives +-1e-14 in both) is measured against
    the size of the numbers it came from. Equal non-finite values (the same infinity, or
    NaN in both) agree: they are what PyTorch computes (a max-pooling window wholly in the
    padding is -inf). Computed piece by piece, in float64.
    """
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        if not (isinstance(a, (tuple, list)) and isinstance(b, (tuple, list))
                and len(a) == len(b)):
            return float("inf"), float("inf")
        pairs = [_errors(x, y, scale) for x, y in zip(a, b)]
        return max(p[0] for p in pairs), max(p[1] for p in pairs)
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        return float("inf"), float("inf")
    if a.size == 0:
        return 0.0, 0.0
    diff = 0.0
    for x, y in _pieces(a, b):
        x = x.astype(np.float64, copy=False)
        y = y.astype(np.float64, copy=False)
        with np.errstate(invalid="ignore"):
            d = np.abs(x - y)
            m = d.max()
            if not np.isfinite(m):  # equal infinities and NaNs in both agree
                same = (x == y) | (np.isnan(x) & np.isnan(y))
                m = np.max(np.where(same, 0.0, d))
        if not np.isfinite(m):
            return float("inf"), float("inf")
        diff = max(diff, float(m))
    if diff == 0.0:
        return 0.0, 0.0
    s = max(_max_finite((a, b)), scale)
    return diff, diff / s if s > 0 else float("inf")


def _has_float32(v) -> bool:
    if isinstance(v, (tuple, list)):
        return any(_has_float32(x) for x in v)
    return getattr(v, "dtype", None) == np.float32


def _to_numpy(v):
    if isinstance(v, (tuple, list)):
        return tuple(_to_numpy(x) for x in v)
    return v.detach().cpu().numpy()


def crosscheck(spec: Spec, model: str | None = None, dtype: str = "float64", seed: int = 0,
               dims: dict[str, int] | None = None, limit: int | None | str = "auto",
               sample: bool = False, progress: Progress | None = None) -> Report:
    """Both backends, the same weights (drawn from ``seed``) and inputs; per-layer errors
    and shapes. ``progress`` (nnspec.tools.progress) is told each stage and layer.

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
    bar = progress or Progress()
    n = len(m.nodes)

    import torch

    from ...backends.numpy.interpreter import NumpyModel
    params, mod = weights_and_module(spec, m, np_dtype, seed, bar)
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
    bar.stage(f"{m.name}: NumPy forward", n)
    with counting(ref, "_plan", bar):
        ours = ref(*inputs, trace=True, noise=_noise(seed), sample=force)
    _use_noise(mod, _noise(seed), force)
    bar.stage(f"{m.name}: torch forward", n)
    with torch.no_grad(), counting(mod, "_steps", bar):
        theirs = mod.trace(*[torch.from_numpy(np.ascontiguousarray(a)) for a in inputs])
    bar.stage(f"{m.name}: comparing", n)
    report = Report(m.name, np_dtype.name, TOLERANCE[np_dtype.name], dims=dict(env),
                    sample=sample)
    # a value's scale: the largest finite magnitude on any path into it. Rounding errors are
    # ~eps times the numbers they came from, so noise that a normalisation or a product
    # turned into a near-zero result is still measured against those numbers.
    upstream = {i.id: _max_finite([ours[i.id]]) if i.id in ours else 0.0 for i in m.inputs}
    coarse: dict = {}  # node id -> the tolerance of the coarsest float on its path
    for node in m.nodes:
        a = ours[node.id]
        b = _to_numpy(theirs[node.id])
        scale = max([upstream.get(v, 0.0) for v in node.inputs] + [0.0])
        upstream[node.id] = max(scale, _max_finite([a]))
        own = TOLERANCE["float32"] if np_dtype == np.float64 and _has_float32(a) else 0.0
        coarse[node.id] = max([coarse.get(v, 0.0) for v in node.inputs] + [own])
        mx, rel = _errors(b, a, scale)
        own = None
        if rel > max(TOLERANCE[np_dtype.name], coarse[node.id]) and a is not None:
            own = _own_error(ref, node, theirs, env, scale)
        t = types.get(node.id)
        expected = _eval_type(t, env) if t is not None else ()
        report.rows.append(Row(node.id, node.name, node.op, _shape_of(a), mx, rel,
                               node.span[1] if node.span else None, expected,
                               _shape_of(a), _shape_of(b), coarse[node.id], own))
        bar.advance()
    bar.close()
    return report


def _own_error(ref, node, theirs, env: dict, scale: float) -> float | None:
    """The relative error of the NumPy layer ``node`` run on torch's inputs to it, against
    torch's output; None for a layer that draws random numbers or that cannot be rerun."""
    from ...backends.numpy.interpreter import NumpyCtx
    from ...layers import REGISTRY

    entry = next((e for e in ref._plan if e[1] is node), None)
    if entry is None or node.op in _RANDOM:
        return None
    kind, _, keys, _ = entry
    try:
        ins = [_to_numpy(theirs[v]) for v in node.inputs]
        ctx = NumpyCtx(training=False, rng=np.random.default_rng(0), env=env)
        ctx.updates, ctx.name = {}, node.name
        ours = REGISTRY[node.op].numpy(node.p, ref._weights(keys), ins, ctx) \
            if kind is REGISTRY[node.op] else None
    except Exception:  # a layer that cannot run alone is judged as it was
        return None
    if ours is None:
        return None
    return _errors(_to_numpy(theirs[node.id]), ours, scale)[1]


#: kinds whose output is a draw: rerun alone, they would draw other numbers
_RANDOM = frozenset({"dropout", "bernoulli", "sample_bernoulli", "sample_gaussian",
                     "gaussian_noise", "drop_path", "rbm"})


def weights_and_module(spec: Spec, m, np_dtype, seed: int, bar):
    """The weights drawn from ``seed`` (NumPy arrays, state_dict keys) and the torch module
    built on them in eval mode, in the run's dtype: both checks start so."""
    import torch

    from ...backends.torch.module import build_module

    tdtype = {"float64": torch.float64, "float32": torch.float32}[np_dtype.name]
    bar.stage(f"{m.name}: drawing weights")
    shapes = spec.state_shapes(m.name)
    params = _init.draw(shapes, seed, np_dtype, limit=None)
    bar.stage(f"{m.name}: building the torch module")
    mod = build_module(spec, m.name, dtype=tdtype,
                       params={k: torch.from_numpy(v) for k, v in params.items()}).eval()
    computed = [k for k, w in shapes.items() if w.init and w.init[0] == "computed"]
    if computed:  # persistent buffers: their constant, as a model built from a seed holds
        from ...backends.torch import buffers as _buf

        _buf.fill(mod)
        state = mod.state_dict()
        for k in computed:
            params[k] = state[k].detach().cpu().numpy().copy()
    return params, mod


@contextmanager
def counting(obj, attr: str, bar: Progress):
    """Count the steps of a backend's plan (the list ``obj.attr``) on ``bar`` while the
    block runs; the plan is put back as it was after it."""
    saved = getattr(obj, attr, None)
    if type(bar) is Progress or not isinstance(saved, list):  # no bar, or no plan to count
        yield
        return
    setattr(obj, attr, Counted(saved, bar.advance))
    try:
        yield
    finally:
        setattr(obj, attr, saved)


def _noise(seed: int):
    """The shared noise of the stochastic layers (one fresh stream per backend run)."""
    from ...layers.stochastic import Noise

    return Noise(seed)


def _use_noise(module, noise, force) -> None:
    from ...layers.torch.stochastic import use_noise

    use_noise(module, noise, force)
