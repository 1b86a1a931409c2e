"""The settings of a ``train`` section other than the loss: optimiser, gradient clipping and
learning-rate schedule, each a pydantic schema with torch's names and defaults, and how
the emitted module writes it (``torch.optim.Adam(self.parameters(), lr=0.001)``).

```
train LeNet5(label: [N] int) {
    loss cross_entropy(output, label)
    optimizer adam lr=0.001
    clip norm=1.0
    schedule cosine steps=1000 warmup=100
}
```

Never imports torch or numpy: ``nnspec check`` validates these, and refuses what cannot
take effect (``optimizer_problem``, ``schedule_problem``, ``section_problems``).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, field_validator


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    torch_name: ClassVar[str] = ""

    @field_validator("*")
    @classmethod
    def _finite(cls, v):
        vals = v if isinstance(v, tuple) else (v,)
        for x in vals:
            if isinstance(x, float) and not math.isfinite(x):
                raise ValueError(f"must be a finite number, not {x}")
        return v


def _nonneg(cls, v):
    if v is not None and v < 0:
        raise ValueError("must be >= 0")
    return v


def _positive(cls, v):
    if v is not None and not v > 0:
        raise ValueError("must be > 0")
    return v


def _betas(cls, v):
    if len(v) != 2 or not all(0.0 <= b < 1.0 for b in v):
        raise ValueError("betas is a pair of numbers in [0, 1)")
    return v


class SGD(_Schema):
    torch_name: ClassVar[str] = "SGD"
    lr: float = 1e-3
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False

    _lr = field_validator("lr")(_positive)
    _nn = field_validator("momentum", "dampening", "weight_decay")(_nonneg)


class Adam(_Schema):
    torch_name: ClassVar[str] = "Adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False

    _lr = field_validator("lr", "eps")(_positive)
    _nn = field_validator("weight_decay")(_nonneg)
    _b = field_validator("betas")(_betas)


class AdamW(Adam):
    torch_name: ClassVar[str] = "AdamW"
    weight_decay: float = 1e-2


class RMSprop(_Schema):
    torch_name: ClassVar[str] = "RMSprop"
    lr: float = 1e-2
    alpha: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0
    centered: bool = False

    _lr = field_validator("lr", "eps")(_positive)
    _nn = field_validator("weight_decay", "momentum", "alpha")(_nonneg)


OPTIMIZERS: dict[str, type[_Schema]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW,
                                        "rmsprop": RMSprop}


class Clip(_Schema):
    """``clip norm=1.0`` (the gradients' total 2-norm, clip_grad_norm_) or ``clip value=0.5``
    (each element, clip_grad_value_)."""

    norm: Optional[float] = None
    value: Optional[float] = None

    _p = field_validator("norm", "value")(_positive)


class Schedule(_Schema):
    """``schedule constant|step|cosine``: StepLR (``size`` steps, ``gamma``),
    CosineAnnealingLR (``steps``, ``min_lr``), optionally after ``warmup`` steps of linear
    warm-up from ``lr * start`` (LinearLR, then SequentialLR)."""

    kind: Literal["constant", "step", "cosine"] = "constant"
    size: Optional[int] = None
    gamma: float = 0.1
    steps: Optional[int] = None
    min_lr: float = 0.0
    warmup: int = 0
    start: float = 0.01

    _p = field_validator("size", "steps")(_positive)
    _nn = field_validator("warmup", "min_lr")(_nonneg)

    @field_validator("start")
    @classmethod
    def _start(cls, v):
        if not 0.0 < v <= 1.0:
            raise ValueError("must be in (0, 1]")
        return v


SETTINGS = ("optimizer", "clip", "schedule")


def check_clip(c: Clip) -> str | None:
    if (c.norm is None) == (c.value is None):
        return "clip takes one of norm=<max total norm> or value=<max element>"
    return None


def optimizer_problem(p: _Schema) -> tuple[str, str] | None:
    """An optimiser argument that cannot take effect, or that torch refuses when the
    optimiser is built: (the argument, the message)."""
    if isinstance(p, SGD):
        if p.nesterov and (p.momentum == 0 or p.dampening != 0):
            return "nesterov", ("nesterov needs momentum > 0 and dampening=0 (torch.optim.SGD "
                                "refuses it otherwise)")
        if p.dampening != 0 and p.momentum == 0:
            return "dampening", "dampening damps the momentum: without momentum= it does nothing"
    return None


def schedule_problem(s: Schedule) -> tuple[str | None, str] | None:
    """A schedule that is incomplete, or an argument of it that cannot take effect:
    (the argument, or None for the whole line, and the message)."""
    given = s.model_fields_set
    if s.kind == "step" and s.size is None:
        return None, "a step schedule needs size=<steps between decays>"
    if s.kind == "cosine" and s.steps is None:
        return None, "a cosine schedule needs steps=<steps to the minimum>"
    for key, kind, what in (("size", "step", "size="), ("gamma", "step", "gamma="),
                            ("steps", "cosine", "steps="), ("min_lr", "cosine", "min_lr=")):
        if key in given and s.kind != kind:
            return key, f"{what} belongs to a {kind} schedule, not a {s.kind} one"
    if s.kind == "step" and s.gamma == 1.0:
        return "gamma", "gamma=1 never changes the rate"
    if "start" in given and not s.warmup:
        return "start", "start= is where a warm-up begins: it needs warmup=<steps>"
    if s.warmup and s.start == 1.0:
        return "start", "a warm-up from start=1 never changes the rate"
    return None


def check_schedule(s: Schedule) -> str | None:
    problem = schedule_problem(s)
    return problem[1] if problem else None


def section_problems(optimizer: str | None, optimizer_params: dict,
                     schedule: dict | None) -> list[tuple[str, str | None, str]]:
    """What the settings of one section cannot do together: (the setting, its argument or
    None, the message). A schedule drives an optimiser's rate, so it needs one, and a
    cosine decay must decay."""
    if schedule is None:
        return []
    if optimizer is None or optimizer not in OPTIMIZERS:
        return [("schedule", None, "a schedule sets the optimizer's learning rate, and this "
                 "section has no optimizer line")]
    s = Schedule.model_validate(schedule)
    lr = OPTIMIZERS[optimizer].model_validate(optimizer_params).lr
    if s.kind == "cosine" and s.min_lr >= lr:
        return [("schedule", "min_lr", f"min_lr={s.min_lr!r} is not below the optimizer's "
                 f"lr={lr!r}: the cosine schedule would not decay")]
    return []


def _lit(v) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(_lit(x) for x in v) + ")"
    return repr(v)


def optimizer_kwargs(opt: _Schema) -> dict:
    """The arguments that differ from torch's defaults (the schema's defaults are torch's)."""
    return opt.model_dump(exclude_defaults=True)


def optimizer_src(name: str, opt: _Schema, params: str = "self.parameters()") -> str:
    kw = "".join(f", {k}={_lit(v)}" for k, v in optimizer_kwargs(opt).items())
    return f"torch.optim.{OPTIMIZERS[name].torch_name}({params}{kw})"


def schedule_src(s: Schedule, opt: str = "optimizer") -> str | None:
    """The scheduler expression, or None for a constant rate without warm-up."""
    main = None
    if s.kind == "step":
        main = f"torch.optim.lr_scheduler.StepLR({opt}, step_size={s.size}" + (
            f", gamma={s.gamma!r})" if s.gamma != 0.1 else ")")
    elif s.kind == "cosine":
        main = f"torch.optim.lr_scheduler.CosineAnnealingLR({opt}, T_max={s.steps}" + (
            f", eta_min={s.min_lr!r})" if s.min_lr else ")")
    if not s.warmup:
        return main
    warm = (f"torch.optim.lr_scheduler.LinearLR({opt}, start_factor={s.start!r}, "
            f"total_iters={s.warmup})")
    if main is None:
        return warm
    return (f"torch.optim.lr_scheduler.SequentialLR({opt}, [{warm}, {main}], "
            f"milestones=[{s.warmup}])")


def clip_src(c: Clip, params: str = "self.parameters()") -> str:
    if c.norm is not None:
        return f"torch.nn.utils.clip_grad_norm_({params}, {c.norm!r})"
    return f"torch.nn.utils.clip_grad_value_({params}, {c.value!r})"


def loss_args(t, model) -> list[str]:
    """The arguments of the emitted ``loss(...)``: ``output``, the targets in declaration
    order, then the model's inputs the loss uses (an autoencoder's ``x``), in input order."""
    used = {a for term in t.terms for a in term.args}
    out = ["output"] + [tg.name for tg in t.targets]
    out += [i.name for i in model.inputs if i.name in used and i.name not in out]
    return out


def training_for(program, name: str):
    """The train section of model ``name``, or None."""
    return next((t for t in getattr(program, "trainings", ()) if t.model == name), None)
