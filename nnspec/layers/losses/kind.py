"""What every loss is: :class:`LossKind`, the base of one class per loss, and the checks
and helpers the losses share.

A loss has a name and aliases, an arity, its arguments (a pydantic model, by default
:class:`_Params`: ``reduction``, finite floats), a shape rule (``check``), its NumPy value
and gradients, and the same loss in torch, in-process and as source text. Here too: the
float and same-shape checks of the inputs, the ``reduction`` scale, and torch's keyword
arguments written out (:func:`_kwargs`).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, field_validator

from ..base import FLOAT, ShapeError, TensorType


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    reduction: Literal["mean", "sum"] = "mean"

    @field_validator("*")
    @classmethod
    def _finite(cls, v):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"must be a finite number, not {v}")
        return v


def _positive(cls, v):
    if not v > 0:
        raise ValueError("must be > 0")
    return v


class LossKind:
    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    arity: ClassVar[int] = 2
    #: the names of its tensors, as the listing and the messages show them (one per arity)
    inputs: ClassVar[tuple[str, ...]] = ("input", "target")
    #: what it is, in a few words (the listing adds the arguments)
    about: ClassVar[str] = ""
    torch_fn: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = _Params

    def arguments(self) -> list[tuple[str, object, tuple]]:
        """(name, default, the values it may take where they are a fixed few) of each
        keyword argument, from ``Params``."""
        out = []
        for key, f in self.Params.model_fields.items():
            choices = get_args(f.annotation) if get_origin(f.annotation) is Literal else ()
            out.append((key, f.default, choices))
        return sorted(out, key=lambda a: a[0] == "reduction")  # reduction last

    def signature(self) -> str:
        """``name(tensors..., key=default, ...)``: how a ``train`` section calls it (a
        choice of a few values: the default first, ``reduction=mean|sum``)."""
        kw = [f"{k}={'|'.join(_plain(c) for c in (v, *(c for c in choices if c != v)))}"
              for k, v, choices in self.arguments()]
        return f"{self.name}({', '.join(list(self.inputs) + kw)})"

    @property
    def summary(self) -> str:
        return f"{self.about}: {self.signature()}" if self.about else self.signature()

    def check(self, p, ins: list[TensorType]) -> None:
        raise NotImplementedError

    def numpy(self, p, xs: list) -> float:
        raise NotImplementedError

    def backward(self, p, xs: list) -> list:
        raise NotImplementedError

    def torch(self, p, ts: list):
        """The same loss in-process: torch.nn.functional's function with the arguments."""
        import torch.nn.functional as F

        return getattr(F, self.torch_fn)(*ts, **p.model_dump(exclude_defaults=True))

    def torch_src(self, p, args: list[str]) -> str:
        kw = _kwargs(p)
        return f"F.{self.torch_fn}({', '.join(args + kw)})"


def _plain(v) -> str:
    """A default as a spec writes it: mean, 1.0, false."""
    if isinstance(v, bool):
        return str(v).lower()
    return v if isinstance(v, str) else repr(v)


def _kwargs(p) -> list[str]:
    out = []
    for k, v in p.model_dump(exclude_defaults=True).items():
        out.append(f'{k}="{v}"' if isinstance(v, str) else f"{k}={v!r}")
    return out


def _float(t: TensorType, what: str) -> None:
    if t.dtype != FLOAT:
        raise ShapeError(f"{what} must be a float tensor, got {t}")


def _same(name: str, x: TensorType, y: TensorType, what: str = "the target") -> None:
    if x.shape != y.shape:
        raise ShapeError(f"{name} needs {what}'s shape {TensorType(x.shape)}, got "
                         f"{TensorType(y.shape)}")


def _scale(p, n: int) -> float:
    return 1.0 / n if p.reduction == "mean" and n else 1.0
