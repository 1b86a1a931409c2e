"""Run a model in both backends with shared weights and inputs; compare layer by layer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import init as _init
from .api import Spec

TOLERANCE = {"float64": 1e-10, "float32": 1e-4}
DEFAULT_LIMIT = 4 * 2**30  # bytes of weights per backend


@dataclass
class Row:
    id: str
    name: str
    kind: str
    shape: tuple
    max_abs: float
    max_rel: float
    line: int | None

    def ok(self, tol: float) -> bool:
        return self.max_rel <= tol


@dataclass
class Report:
    model: str
    dtype: str
    tolerance: float
    rows: list[Row] = field(default_factory=list)

    @property
    def first_divergence(self) -> Row | None:
        for r in self.rows:
            if not r.ok(self.tolerance):
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
        lines = [f"crosscheck {self.model} ({self.dtype}, tolerance rel {self.tolerance:g})",
                 f"  {'layer':<{w}}  {'kind':<12} {'shape':<22} {'max abs':>10} {'max rel':>10}"]
        for r in self.rows:
            mark = "" if r.ok(self.tolerance) else "  <-- diverges"
            lines.append(f"  {r.name:<{w}}  {r.kind:<12} {str(list(r.shape)):<22} "
                         f"{r.max_abs:>10.2e} {r.max_rel:>10.2e}{mark}")
        bad = self.first_divergence
        if bad is None:
            lines.append(f"ok: both backends agree (max rel error {self.max_rel:.2e})")
        else:
            where = f" (spec line {bad.line})" if bad.line else ""
            lines.append(f"FAILED: first divergence at {bad.name} [{bad.kind}]{where}: "
                         f"max rel error {bad.max_rel:.2e} > {self.tolerance:g}")
        return "\n".join(lines)


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


def _errors(a, b) -> tuple[float, float]:
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        if not (isinstance(a, (tuple, list)) and isinstance(b, (tuple, list))
                and len(a) == len(b)):
            return float("inf"), float("inf")
        pairs = [_errors(x, y) for x, y in zip(a, b)]
        return max(p[0] for p in pairs), max(p[1] for p in pairs)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf"), float("inf")
    if a.size == 0:
        return 0.0, 0.0
    both_nan = np.isnan(a) & np.isnan(b)  # e.g. a fully masked attention row, in both
    diff = float(np.max(np.where(both_nan, 0.0, np.abs(a - b))))
    if np.isnan(diff):
        return float("inf"), float("inf")
    scale = float(np.max(np.where(both_nan, 0.0, np.abs(b))))
    return diff, diff / scale if scale > 0 else diff


def _to_numpy(v):
    if isinstance(v, (tuple, list)):
        return tuple(_to_numpy(x) for x in v)
    return v.detach().cpu().numpy()


def crosscheck(spec: Spec, model: str | None = None, dtype: str = "float64", seed: int = 0,
               dims: dict[str, int] | None = None,
               limit: int | None = DEFAULT_LIMIT) -> Report:
    """Both backends, the same weights (drawn from ``seed``) and inputs; per-layer errors.

    Raises ``init.TooLarge`` (never allocating) when the weights would exceed ``limit``.
    """
    spec.raise_for_errors()
    m = spec.model(model)
    np_dtype = np.dtype(dtype)
    shapes = spec.state_shapes(m.name)
    _init.check_fits(shapes, np_dtype, limit)

    import torch

    from .backends.numpy import NumpyModel
    from .backends.torch import build_module
    params = _init.draw(shapes, seed, np_dtype, limit=None)
    ref = NumpyModel(spec, m.name, params={k: v.copy() for k, v in params.items()},
                     dtype=np_dtype)
    tdtype = {"float64": torch.float64, "float32": torch.float32}[np_dtype.name]
    mod = build_module(spec, m.name, params=params, dtype=tdtype).eval()
    inputs = concrete_inputs(spec, m.name, dims, np_dtype, seed)
    ours = ref(*inputs, trace=True)
    with torch.no_grad():
        theirs = mod.trace(*[torch.from_numpy(np.ascontiguousarray(a)) for a in inputs])
    report = Report(m.name, np_dtype.name, TOLERANCE[np_dtype.name])
    for node in m.nodes:
        a = ours[node.id]
        b = _to_numpy(theirs[node.id])
        mx, rel = _errors(b, a)
        shape = tuple(a[0].shape) if isinstance(a, tuple) else tuple(a.shape)
        report.rows.append(Row(node.id, node.name, node.op, shape, mx, rel,
                               node.span[1] if node.span else None))
    return report
