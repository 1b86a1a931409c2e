"""Everything a crosscheck settles before it allocates: the model's symbols bound
(``--dim``, default 2; :func:`bind_dims`), random inputs of those sizes
(:func:`concrete_inputs`), the shape rules run again at them (:func:`check_at_dims`), and
the peak memory estimated (:func:`estimate_memory`) and held against what the machine has
(:func:`available_memory`, :func:`check_memory`); :func:`_prepare` runs these in order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ...backends import weights as _init
from ...core.diagnostics import SpecError
from ...core.dims import Dim
from ...ir.spec import Spec

#: Sizes are int64 in torch and NumPy; a bound dim beyond it cannot be allocated anyway.
MAX_DIM = 2**63 - 1


class UnknownDims(ValueError):
    """A ``--dim`` names a symbol that is no dim of the model's inputs."""


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
    from ...ir.shapes import infer_model

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
