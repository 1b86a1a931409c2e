"""The reference NumPy interpreter: runs a model's IR on arrays.

Parameters use the PyTorch state_dict names and layouts, so
``{k: v.numpy() for k, v in module.state_dict().items()}`` loads unchanged.
Never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...ir.spec import Spec
from ...layers import REGISTRY
from ...layers.base import NumpyCtx
from .. import weights as _init
from ..plans import buffers as _buffers
from ..inputs import InputError


class NoBackward(NotImplementedError):
    """A layer of the model has no reference backward."""


@dataclass
class Gradients:
    """What :meth:`NumpyModel.vjp` returns: the forward's output, and the gradients of
    the scalar ``sum(output * cotangent)`` for every trainable parameter (state_dict keys;
    zeros for a parameter the output does not depend on) and every input (None for an int
    input)."""

    output: object
    params: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)
    values: dict = field(default_factory=dict)  # with keep=True: value id -> dL/dvalue
    loss: float | None = None  # grad(): the train section's loss
    targets: dict = field(default_factory=dict)  # grad(): dL/dtarget (None: an int target)


def _add(a, b):
    """Accumulate two gradients of one value (tuples for a layer's several values)."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, tuple):
        return tuple(_add(x, y) for x, y in zip(a, b))
    return a + b


def bind_dims(model, arrays) -> dict[str, int]:
    """Bind the symbols of the declared input shapes to the actual sizes; check the rest."""
    env: dict[str, int] = {}
    for inp, a in zip(model.inputs, arrays):
        dims = inp.dims()
        if a.ndim != len(dims):
            raise InputError(f"input {inp.name} must have rank {len(dims)} "
                             f"([{', '.join(inp.shape)}]), got shape {tuple(a.shape)}")
        pending = []
        for d, actual in zip(dims, a.shape):
            if d.is_const:
                if d.value != actual:
                    raise InputError(f"input {inp.name} must be [{', '.join(inp.shape)}], got "
                                     f"shape {tuple(a.shape)}")
            elif str(d) in d.symbols():
                name = str(d)
                if name in env and env[name] != actual:
                    raise InputError(f"symbol {name} is {env[name]} elsewhere but {actual} in "
                                     f"input {inp.name}")
                env[name] = int(actual)
            else:
                pending.append((d, actual))
        for d, actual in pending:
            if d.symbols() <= env.keys() and d.evaluate(env) != actual:
                raise InputError(f"input {inp.name}: {d} = {d.evaluate(env)}, got {actual}")
    return env


class NumpyModel:
    """One model of a spec, runnable on NumPy arrays.

    ``params`` maps state_dict keys to arrays; when omitted, weights are drawn with
    PyTorch's default initialisation from ``seed``, and a persistent ``buffer`` holds its
    computed value (given in ``params``, the value given: a checkpoint's).
    """

    def __init__(self, spec: Spec, model: str | None = None, params: dict | None = None,
                 seed: int | None = 0, dtype=np.float32):
        spec.raise_for_errors()
        self.spec = spec
        self.model = spec.model(model)
        self.layers = spec.layers(self.model.name)
        self.state_shapes = spec.state_shapes(self.model.name)
        bufs = _buffers(spec, self.model)
        drawn = params is None
        if drawn:
            params = _init.draw(self.state_shapes, seed, dtype)
        params = _untie(self.state_shapes, params)
        missing = [k for k, w in self.state_shapes.items() if k not in params and not w.tied]
        if missing:
            raise KeyError(f"missing parameters: {', '.join(missing[:5])}")
        extra = [k for k in params if k not in self.state_shapes]
        if extra:
            raise KeyError(f"unexpected parameters: {', '.join(extra[:5])}")
        for k, w in self.state_shapes.items():
            if not w.tied and tuple(np.shape(params[k])) != w.shape:
                raise ValueError(f"parameter {k} has shape {tuple(np.shape(params[k]))}, "
                                 f"expected {w.shape}")
        # a tied entry is the array of the entry it is tied to: one array, updated once
        self.params = {k: np.asarray(v) for k, v in params.items()
                       if not self.state_shapes[k].tied}
        # last use of each value, to release intermediates early
        last = {}
        for i, r in enumerate(self.layers):
            for v in r.node.inputs:
                last[v] = i
        self._plan = []
        own: dict[str, dict] = {}  # layer name -> its keys (a shared layer's, once more)
        for i, r in enumerate(self.layers):
            node = r.node
            keys = own.get(node.name) if node.shared else None
            if keys is None:
                keys = {k: w.tied or (f"{node.name}.{k}" if k else node.name)
                        for k, w in r.weights.items()}
                for k, (owner, okey, transposed) in node.ties.items():
                    if transposed:  # the other layer's matrix, transposed where it is used
                        keys[k] = _T(f"{owner}.{okey}")
                own[node.name] = keys
            free = [v for v in set(node.inputs) if last.get(v) == i
                    and v != self.model.output]
            self._plan.append((REGISTRY[node.op], node, keys, free))
        if drawn and bufs:
            self._fill(bufs)

    def _fill(self, bufs) -> None:
        """Each persistent buffer's entry: its value, computed from its sources."""
        todo = {b for b, node in bufs.nodes.items() if node.p.persistent}
        need = set().union(*(bufs.sources[b] for b in todo)) | todo
        ctx = NumpyCtx(env={})
        values: dict = {}
        for kind, node, keys, _ in self._plan:
            if node.id not in need:
                continue
            if node.id in todo:
                key = keys[""]
                v = np.asarray(values[node.inputs[0]])
                self.params[key] = v.astype(self.params[key].dtype, copy=False)
            values[node.id] = kind.numpy(node.p, self._weights(keys),
                                         [values[v] for v in node.inputs], ctx)

    def _weights(self, keys: dict) -> dict:
        return {k: self.params[full].T if isinstance(full, _T) else self.params[full]
                for k, full in keys.items()}

    def __call__(self, *inputs, training: bool = False, rng=None, trace: bool = False,
                 noise=None, sample: bool | None = None):
        """Run the model. With ``trace``, return every value: {value id: array}.
        ``noise`` (a ``nnspec.layers.stochastic.Noise``) gives the stochastic layers the
        draws the torch module gets from the same Noise; ``sample`` True or False makes
        those with ``sample=train`` sample or not whatever ``training`` is."""
        m = self.model
        if len(inputs) != len(m.inputs):
            raise InputError(f"{m.name} takes {len(m.inputs)} input(s), got {len(inputs)}")
        arrays = []
        for inp, a in zip(m.inputs, inputs):
            a = np.asarray(a)
            if inp.dtype == "int" and not np.issubdtype(a.dtype, np.integer):
                raise InputError(f"input {inp.name} must be an integer array")
            arrays.append(a)
        env = bind_dims(m, arrays)
        ctx = NumpyCtx(training=training, rng=rng if rng is not None
                       else np.random.default_rng(), env=env, noise=noise, sample=sample)
        values = {inp.id: a for inp, a in zip(m.inputs, arrays)}
        for kind, node, keys, free in self._plan:
            w = self._weights(keys)
            ctx.updates = {}
            ctx.name = node.name
            values[node.id] = kind.numpy(node.p, w, [values[v] for v in node.inputs], ctx)
            for k, new in ctx.updates.items():
                self.params[keys[k]] = new
            if not trace:
                for v in free:
                    del values[v]
        return values if trace else values[m.output]

    def vjp(self, *inputs, cotangent, training: bool = False, rng=None,
            keep: bool = False, noise=None, sample: bool | None = None) -> Gradients:
        """Forward, then the reference backward of ``sum(output * cotangent)``: the
        gradients of every trainable parameter and input (see :class:`Gradients`). With
        ``training``, dropout draws its masks from ``rng`` and batchnorm uses batch
        statistics (and updates its running ones), as in ``__call__``; ``noise`` and
        ``sample`` as there. With ``keep``, the gradient of every layer's output is kept
        too (``Gradients.values``)."""
        arrays, values, saved, ctx = self._forward_saved(inputs, training, rng, noise, sample)
        out = values[self.model.output]
        return self._backward(arrays, values, saved, ctx, _like(out, cotangent), keep)

    def grad(self, *inputs, targets: dict | None = None, training: bool = False,
             rng=None, noise=None, sample: bool | None = None) -> Gradients:
        """The train section's loss for a batch and its reference gradients: every
        trainable parameter's, and every float input's (an input the loss reads as a
        target, an autoencoder's x, gets that term's gradient too). ``targets`` maps the
        section's target names to arrays. ``Gradients.loss`` is the loss's value.
        ``noise`` and ``sample`` as in ``__call__``."""
        from ...ir import training as T
        from ...layers.losses import LOSSES

        t = T.training_for(self.spec.program, self.model.name)
        if t is None:
            raise InputError(f"model {self.model.name} has no train section")
        targets = dict(targets or {})
        want = [tg.name for tg in t.targets]
        if sorted(targets) != sorted(want):
            raise InputError(f"the train section of {self.model.name} takes the targets "
                             f"{', '.join(want) or '(none)'}, got {', '.join(targets) or '(none)'}")
        arrays, values, saved, ctx = self._forward_saved(inputs, training, rng, noise, sample)
        m = self.model
        out = values[m.output]
        env = {"output": out, **{i.name: a for i, a in zip(m.inputs, arrays)},
               **{k: np.asarray(v) for k, v in targets.items()}}
        returned = [n for n in m.output_names if n] if isinstance(out, tuple) else []
        for name, v in zip(m.output_names, out if returned else ()):
            if name:
                env[name] = v
        total = 0.0
        genv: dict = {}
        for term in t.terms:
            kind = LOSSES[term.loss]
            p = kind.Params.model_validate(term.params)
            xs = [env[a] for a in term.args]
            total += term.weight * float(kind.numpy(p, xs))
            for a, g in zip(term.args, kind.backward(p, xs)):
                if g is not None:
                    g = term.weight * np.asarray(g, dtype=np.asarray(env[a]).dtype)
                    genv[a] = genv[a] + g if a in genv else g
        if returned:  # the gradient of each returned value, zeros where the loss has none
            cot = tuple(genv.get(n) if n and n in genv else np.zeros_like(v)
                        for n, v in zip(m.output_names, out))
        else:
            cot = genv.get("output", np.zeros_like(out))
        got = self._backward(arrays, values, saved, ctx, cot, False)
        for i, (inp, g) in enumerate(zip(m.inputs, got.inputs)):
            if g is not None and inp.name in genv:
                got.inputs[i] = g + genv[inp.name]
        got.loss = total
        got.targets = {k: genv.get(k) for k in want}
        return got

    def _forward_saved(self, inputs, training, rng, noise=None, sample=None):
        missing = sorted({node.op for _, node, _, _ in self._plan
                          if not REGISTRY[node.op].has_backward})
        if missing:
            raise NoBackward(f"no reference backward for: {', '.join(missing)}")
        m = self.model
        arrays = [np.asarray(a) for a in inputs]
        if len(arrays) != len(m.inputs):
            raise InputError(f"{m.name} takes {len(m.inputs)} input(s), got {len(arrays)}")
        env = bind_dims(m, arrays)
        ctx = NumpyCtx(training=training, rng=rng if rng is not None
                       else np.random.default_rng(), env=env, noise=noise, sample=sample)
        values = {inp.id: a for inp, a in zip(m.inputs, arrays)}
        saved: dict = {}
        for kind, node, keys, _ in self._plan:
            w = self._weights(keys)
            ctx.updates = {}
            ctx.name = node.name
            ctx.saved = saved[node.id] = {}
            values[node.id] = kind.numpy(node.p, w, [values[v] for v in node.inputs], ctx)
            for k, new in ctx.updates.items():
                self.params[keys[k]] = new
        return arrays, values, saved, ctx

    def _backward(self, arrays, values, saved, ctx, cotangent, keep) -> Gradients:
        m = self.model
        out = values[m.output]
        grads = {m.output: cotangent}
        pgrads = {k: np.zeros_like(self.params[k]) for k, w in self.state_shapes.items()
                  if w.trainable and w.dtype != "int" and not w.tied}
        kept = {}
        for kind, node, keys, _ in reversed(self._plan):
            gy = grads.pop(node.id, None)
            if gy is None:
                continue  # the output does not depend on this layer
            if keep:
                kept[node.id] = gy
            w = self._weights(keys)
            ctx.saved = saved[node.id]
            ctx.name = node.name
            gxs, gw = kind.backward(node.p, w, [values[v] for v in node.inputs],
                                    values[node.id], gy, ctx)
            for k, g in gw.items():
                full = keys[k]
                pgrads[full] += g.T if isinstance(full, _T) else g
            for v, g in zip(node.inputs, gxs):
                if g is not None:
                    grads[v] = _add(grads.get(v), g)
        gin = [None if inp.dtype == "int" else grads.get(inp.id, np.zeros_like(a))
               for inp, a in zip(m.inputs, arrays)]
        return Gradients(out, pgrads, gin, kept)


class _T(str):
    """A state_dict key whose array a layer uses transposed (``weight=enc.weight.T``)."""


def _untie(shapes: dict, params: dict) -> dict:
    """A state_dict may hold a tied parameter under either key or both (torch's holds
    both): the entry it is tied to gets the array, and both must then be equal."""
    out = dict(params)
    for k, w in shapes.items():
        if not w.tied or k not in out:
            continue
        if w.tied not in out:
            out[w.tied] = out[k]
        elif out[w.tied] is not out[k] and not np.array_equal(np.asarray(out[w.tied]),
                                                               np.asarray(out[k])):
            raise ValueError(f"the tied parameters {k} and {w.tied} differ: a tied parameter "
                             "is one tensor")
        del out[k]
    return out


def _like(out, cotangent):
    """The cotangent as the output's structure: an array, or a tuple for several values."""
    if isinstance(out, tuple):
        return tuple(None if c is None else np.asarray(c, dtype=o.dtype)
                     for o, c in zip(out, cotangent))
    c = np.asarray(cotangent, dtype=out.dtype)
    if c.shape != out.shape:
        raise InputError(f"the cotangent must have the output's shape {out.shape}, got "
                         f"{c.shape}")
    return c
