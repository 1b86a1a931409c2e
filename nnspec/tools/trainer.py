"""``nnspec train --overfit-batch``: a trainability check for CI.

The emitted torch module trains with its declared loss and optimiser (Adam, lr 1e-3, when
the section names none) on one random batch for a bounded number of steps, at the declared
learning rate held constant: a schedule's warm-up and decay span thousands of steps, and
50 steps inside a warm-up would test a rate a hundred times smaller (the report says so).
The batch is drawn so that each loss can fit it (class indices below the class count,
{0, 1} for binary cross-entropy). The report: the loss curve (start, end, ratio), the
parameters that never received a gradient (a dead branch, a layer whose output is unused)
and the step at which the loss stopped being finite (a divergence, with the rate that
caused it). It fails when the loss does not fall by ``min_drop``, diverges, or a parameter
never gets a gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..ir.spec import Spec
from .crosscheck import bind_dims, concrete_inputs
from .progress import Progress

# losses whose int target indexes the classes along axis 1 of the output
_CLASS_TARGETS = ("cross_entropy", "nll", "margin")
# losses whose float target is a binary label: a value in (0, 1) is partly its own entropy,
# which no model removes
_BINARY_TARGETS = ("bce", "bce_with_logits")


@dataclass
class OverfitReport:
    model: str
    steps: int
    losses: list[float] = field(default_factory=list)
    no_grad: list[str] = field(default_factory=list)
    nonfinite: list[int] = field(default_factory=list)
    min_drop: float = 0.1
    optimizer: str = "adam"
    lr: float = 1e-3
    declared: bool = True
    schedule: str | None = None

    @property
    def start(self) -> float:
        return self.losses[0] if self.losses else float("nan")

    @property
    def end(self) -> float:
        return self.losses[-1] if self.losses else float("nan")

    @property
    def ratio(self) -> float:
        return self.end / self.start if self.start else float("nan")

    @property
    def diverged(self) -> bool:
        return bool(self.nonfinite)

    @property
    def falls(self) -> bool:
        return (math.isfinite(self.start) and math.isfinite(self.end)
                and self.end < self.start - self.min_drop * abs(self.start))

    @property
    def ok(self) -> bool:
        return self.falls and not self.no_grad and not self.nonfinite

    def _rate(self) -> str:
        if not self.declared:
            return f"{self.optimizer} lr={self.lr:g} (the section names no optimizer)"
        return f"{self.optimizer} at the declared lr={self.lr:g}"

    def render(self) -> str:
        lines = [f"train --overfit-batch {self.model}: {self.steps} steps on one batch",
                 f"  {self._rate()}, held constant" + (
                     f": {self.schedule}" if self.schedule else "")]
        if self.diverged:
            step = self.nonfinite[0]
            lines.append(f"  loss {self.start:.6g} -> {self.losses[step]:g} at step {step}")
        else:
            lines.append(f"  loss {self.start:.6g} -> {self.end:.6g} (ratio {self.ratio:.3g})")
        if self.no_grad:
            shown = ", ".join(self.no_grad[:10]) + (" ..." if len(self.no_grad) > 10 else "")
            lines.append(f"  {len(self.no_grad)} parameter(s) never received a gradient: "
                         f"{shown}")
        if self.ok:
            lines.append("ok: the loss falls and every parameter gets a gradient")
        elif self.diverged and self.nonfinite[0] == 0:
            lines.append(f"FAILED: the loss is {self.losses[0]:g} before any update: the "
                         "model or its loss, not the learning rate")
        elif self.diverged:
            step = self.nonfinite[0]
            lines.append(f"FAILED: the loss diverged: {self.losses[step]:g} at step {step} "
                         f"with {self.optimizer} lr={self.lr:g} (a smaller lr, or clip "
                         f"norm=1.0, may train)")
        elif not self.falls:
            lines.append(f"FAILED: the loss did not fall by {self.min_drop:.0%}")
        else:
            lines.append("FAILED: a parameter never gets a gradient")
        return "\n".join(lines)


def _classes(spec: Spec, t, term, env: dict) -> int:
    """The class count of a classification term: the size of its scores' class axis (the
    loss's ``dim``, torch's 1 by default), 2 when it is not known."""
    out_t = spec.output_type(t.model)
    first = term.args[0] if term.args else "output"
    if first != "output" or out_t is None or out_t.rank < 2:
        return 2
    d = out_t.shape[int(term.params.get("dim", 1)) % out_t.rank]
    try:
        return int(d.evaluate({**env, **{s: env.get(s, 2) for s in d.symbols()}}))
    except (KeyError, ValueError):
        return 2


def _targets(spec: Spec, t, env: dict, rng) -> list:
    """Random targets each loss can fit: class indices below the scores' class count for a
    classification loss, ±1 for cosine_embedding, {0, 1} for binary cross-entropy, values in
    [0, 1) otherwise (probabilities fit kl_div, and any regression)."""
    arrays = []
    for tg in t.targets:
        shape = [d.evaluate({**env, **{s: env.get(s, 2) for s in d.symbols()}})
                 for d in tg.dims()]
        terms = [term for term in t.terms if tg.name in term.args]
        used = [term.loss for term in terms]
        if tg.dtype == "int":
            high = min([_classes(spec, t, term, env) for term in terms
                        if term.loss in _CLASS_TARGETS] or [2])
            arrays.append(rng.integers(0, high, size=shape))
        elif "cosine_embedding" in used:
            arrays.append(rng.choice([-1.0, 1.0], size=shape).astype(np.float32))
        elif any(u in _BINARY_TARGETS for u in used):
            arrays.append(rng.integers(0, 2, size=shape).astype(np.float32))
        else:
            arrays.append(rng.random(size=shape).astype(np.float32))
    return arrays


def _as_targets(t, m, inputs: list, rng) -> list:
    """Float inputs that a loss compares the output with (an autoencoder's ``bce(output,
    x)``) drawn like targets: in {0, 1} for binary cross-entropy, in [0, 1) otherwise."""
    compared = {a for term in t.terms for a in term.args[1:]}
    binary = {a for term in t.terms if term.loss in _BINARY_TARGETS for a in term.args[1:]}
    return [(rng.integers(0, 2, size=x.shape) if i.name in binary else
             rng.random(size=x.shape)).astype(x.dtype)
            if i.name in compared and i.dtype != "int" else x
            for i, x in zip(m.inputs, inputs)]


def overfit(spec: Spec, model: str | None = None, steps: int = 50, seed: int = 0,
            dims: dict[str, int] | None = None, min_drop: float = 0.1,
            progress: Progress | None = None) -> OverfitReport:
    """Train on one random batch; see the module docstring. ``progress``
    (nnspec.tools.progress) is told each step and its loss."""
    import torch

    from ..backends.torch.module import build_module
    from ..ir import training as T

    spec.raise_for_errors()
    m = spec.model(model)
    t = T.training_for(spec.program, m.name)
    if t is None:
        raise ValueError(f"model {m.name} has no train section")
    env = bind_dims(spec, m.name, {**{s: 4 for s in _symbols(m)}, **(dims or {})})
    bar = progress or Progress()
    bar.stage(f"{m.name}: building the torch module")
    torch.manual_seed(seed)
    mod = build_module(spec, m.name, seed=seed).train()
    rng = np.random.default_rng(seed + 2)
    inputs = [torch.from_numpy(np.ascontiguousarray(a)) for a in
              _as_targets(t, m, concrete_inputs(spec, m.name, env, np.float32, seed), rng)]
    targets = [torch.from_numpy(a) for a in _targets(spec, t, env, rng)]
    used = T.loss_args(t, m)[1 + len(t.targets):]
    by_name = {i.name: x for i, x in zip(m.inputs, inputs)}
    name = t.optimizer or "adam"
    schema = T.OPTIMIZERS[name]
    kwargs = T.optimizer_kwargs(schema.model_validate(t.optimizer_params))
    opt = getattr(torch.optim, schema.torch_name)(mod.parameters(), **kwargs)
    report = OverfitReport(m.name, steps, min_drop=min_drop, optimizer=name,
                           lr=float(opt.param_groups[0]["lr"]),
                           declared=t.optimizer is not None, schedule=_schedule(t, T))
    seen: set[str] = set()
    named = list(mod.named_parameters())
    bar.stage(f"{m.name}: training", steps)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        out = mod(*inputs)
        loss = mod.loss(out, *targets, *[by_name[n] for n in used])
        value = float(loss.detach())
        report.losses.append(value)
        if not math.isfinite(value):
            report.nonfinite.append(step)
            break
        loss.backward()
        for k, p in named:
            if p.grad is not None and bool(torch.any(p.grad != 0)):
                seen.add(k)
        if t.clip is not None:
            mod.clip_gradients()
        opt.step()
        bar.advance(loss=value)
    if report.losses and math.isfinite(report.losses[0]):  # a backward pass ran
        report.no_grad = [k for k, p in named if p.requires_grad and k not in seen]
    bar.close()
    return report


def _schedule(t, T) -> str | None:
    """What of the declared schedule the check leaves out, in words; None for nothing."""
    if t.schedule is None:
        return None
    s = T.Schedule.model_validate(t.schedule)
    left = [f"no {s.warmup}-step warm-up"] if s.warmup else []
    if s.kind != "constant":
        left.append(f"no {s.kind} decay")
    return ", ".join(left) or None


def _symbols(m) -> list[str]:
    out: list[str] = []
    for inp in m.inputs:
        for d in inp.dims():
            out += [s for s in sorted(d.symbols()) if s not in out]
    return out
