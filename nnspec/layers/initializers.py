"""Initialisers written in a spec: ``init=normal(0, 0.02)``, ``bias_init=zeros``.

A layer with weights takes ``init=`` (its weight tensors) and ``bias_init=`` (its biases);
``default`` keeps PyTorch's own initialisation of that layer. The names and arguments are
those of ``torch.nn.init``, so ``init=kaiming_normal(mode=fan_out)`` is
``nn.init.kaiming_normal_(w, mode="fan_out")``:

==========================  =============================================================
``default``                 the layer's PyTorch default
``zeros`` / ``ones``        ``nn.init.zeros_`` / ``ones_``
``constant(v)``             ``nn.init.constant_(w, v)``
``normal(mean, std)``       ``nn.init.normal_`` (both optional: 0 and 1)
``uniform(a, b)``           ``nn.init.uniform_`` on [a, b) (both optional: 0 and 1)
``trunc_normal(mean, std, a, b)``  ``nn.init.trunc_normal_`` (0, 1, -2, 2)
``xavier[_uniform](gain)``  ``nn.init.xavier_uniform_`` (also ``glorot``); ``xavier_normal``
``kaiming[_uniform](a, mode=)``  ``nn.init.kaiming_uniform_`` (also ``he``); ``kaiming_normal``
``orthogonal(gain)``        ``nn.init.orthogonal_``
==========================  =============================================================

The fan-based ones (xavier, kaiming) and orthogonal need a weight of rank 2 or more, as
in torch; fans follow torch's rule (fan_in = size(1) * receptive field, fan_out = size(0) *
receptive field). Kaiming's gain is torch's for its default nonlinearity, leaky_relu with
slope ``a``: sqrt(2 / (1 + a^2)), which is ReLU's sqrt(2) for a = 0.

An initialiser resolves, for one weight shape, to a distribution tuple (see
:class:`nnspec.layers.base.W`); :mod:`nnspec.backends.weights` draws it with NumPy so that one seed
gives the same weights in both backends. Its text form (``str``) is how the IR stores it,
and is read back by a small parser: nothing is ever evaluated as Python.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# canonical name -> (positional parameters with defaults; a default None is required)
_SIGS: dict[str, tuple[tuple[str, float | None], ...]] = {
    "default": (),
    "zeros": (),
    "ones": (),
    "constant": (("value", None),),
    "normal": (("mean", 0.0), ("std", 1.0)),
    "uniform": (("a", 0.0), ("b", 1.0)),
    "trunc_normal": (("mean", 0.0), ("std", 1.0), ("a", -2.0), ("b", 2.0)),
    "xavier_uniform": (("gain", 1.0),),
    "xavier_normal": (("gain", 1.0),),
    "kaiming_uniform": (("a", 0.0),),
    "kaiming_normal": (("a", 0.0),),
    "orthogonal": (("gain", 1.0),),
}
ALIASES = {
    "xavier": "xavier_uniform", "glorot": "xavier_uniform", "glorot_uniform": "xavier_uniform",
    "glorot_normal": "xavier_normal", "kaiming": "kaiming_uniform", "he": "kaiming_uniform",
    "he_uniform": "kaiming_uniform", "he_normal": "kaiming_normal", "zero": "zeros",
    "one": "ones", "gaussian": "normal", "truncated_normal": "trunc_normal",
}
NAMES = tuple(_SIGS) + tuple(ALIASES)
_MODES = ("fan_in", "fan_out")
# these need a weight of rank >= 2 (torch: "Fan in and fan out can not be computed ...")
_NEEDS_MATRIX = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
                 "orthogonal")


class InitError(ValueError):
    """An initialiser written wrongly: unknown name, bad or missing arguments."""


def _num(v: float) -> str:
    """A float as written back: 0.02, 1, 1e-05 (repr round-trips exactly)."""
    if float(v).is_integer() and abs(v) < 1e16:
        return str(int(v))
    return repr(float(v))


@dataclass(frozen=True, slots=True)
class Init:
    """An initialiser: a canonical name, its numbers in signature order, and kaiming's mode."""

    name: str = "default"
    args: tuple[float, ...] = ()
    mode: str = "fan_in"

    @classmethod
    def make(cls, name: str, args=(), kwargs=None) -> "Init":
        """Validate ``name(args..., key=value...)``; raises InitError with the reason."""
        kwargs = dict(kwargs or {})
        canon = ALIASES.get(name, name)
        if canon not in _SIGS:
            raise InitError(f"unknown initialiser {name!r}; known: "
                            + ", ".join(n for n in _SIGS))
        sig = _SIGS[canon]
        mode = "fan_in"
        if canon.startswith("kaiming") and "mode" in kwargs:
            mode = kwargs.pop("mode")
            if mode not in _MODES:
                raise InitError(f"{canon}'s mode must be fan_in or fan_out, not {mode!r}")
        if len(args) > len(sig):
            raise InitError(f"{canon} takes at most {len(sig)} argument"
                            f"{'s' if len(sig) != 1 else ''} "
                            f"({', '.join(n for n, _ in sig) or 'none'}), got {len(args)}")
        values: dict[str, float | None] = dict(sig)
        names = [n for n, _ in sig]
        for n, v in zip(names, args):
            values[n] = v
        for k, v in kwargs.items():
            if k not in values:
                more = ", ".join(names + (["mode"] if canon.startswith("kaiming") else []))
                raise InitError(f"{canon} has no argument {k!r} (its arguments: "
                                f"{more or 'none'})")
            if names.index(k) < len(args):
                raise InitError(f"{canon}'s argument {k!r} given twice")
            values[k] = v
        out = []
        for n in names:
            v = values[n]
            if v is None:
                raise InitError(f"{canon} needs its argument {n}: {canon}({n})")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InitError(f"{canon}'s {n} must be a number, got {v!r}")
            if not math.isfinite(v):
                raise InitError(f"{canon}'s {n} must be a finite number, not {v}")
            out.append(float(v))
        got = dict(zip(names, out))
        if canon in ("normal", "trunc_normal") and got["std"] < 0:
            raise InitError(f"{canon}'s std must be >= 0, got {_num(got['std'])}")
        if canon == "uniform" and got["a"] > got["b"]:
            raise InitError(f"uniform(a, b) needs a <= b, got a={_num(got['a'])} > "
                            f"b={_num(got['b'])}")
        if canon == "trunc_normal" and not got["a"] < got["b"]:
            raise InitError(f"trunc_normal needs a < b, got a={_num(got['a'])}, "
                            f"b={_num(got['b'])}")
        if canon == "trunc_normal" and got["std"] == 0 and not got["a"] <= got["mean"] \
                <= got["b"]:
            raise InitError("trunc_normal with std 0 needs a <= mean <= b")
        return cls(canon, tuple(out), mode)

    @property
    def is_default(self) -> bool:
        return self.name == "default"

    def __str__(self) -> str:
        sig = _SIGS[self.name]
        args = list(self.args)
        # drop trailing arguments equal to their defaults: normal(0, 0.02), xavier_uniform
        while args and sig[len(args) - 1][1] is not None and args[-1] == sig[len(args) - 1][1]:
            args.pop()
        parts = [_num(a) for a in args]
        if self.mode != "fan_in":
            parts.append(f"mode={self.mode}")
        return self.name + (f"({', '.join(parts)})" if parts else "")

    __repr__ = __str__

    # ---- resolution for one weight ---------------------------------------------------

    def check_shape(self, shape: tuple[int, ...], what: str) -> None:
        """Raise InitError when this initialiser cannot apply to a weight of ``shape``."""
        if self.name in _NEEDS_MATRIX and len(shape) < 2:
            raise InitError(f"{self.name} needs a weight of rank 2 or more (fan in and fan "
                            f"out are undefined for rank {len(shape)}), but {what} is "
                            f"{list(shape)}")

    def dist(self, shape: tuple[int, ...]) -> tuple:
        """The distribution tuple drawn by nnspec.backends.weights for a weight of this shape."""
        a = self.args
        if self.name == "zeros":
            return ("zeros",)
        if self.name == "ones":
            return ("ones",)
        if self.name == "constant":
            return ("constant", a[0])
        if self.name == "normal":
            return ("normal", a[1]) if a[0] == 0 else ("gauss", a[0], a[1])
        if self.name == "uniform":
            return ("uniform", a[1]) if a[0] == -a[1] else ("uniform_range", a[0], a[1])
        if self.name == "trunc_normal":
            return ("trunc_normal",) + a
        if self.name == "orthogonal":
            return ("orthogonal", a[0])
        fan_in, fan_out = fans(shape)
        if self.name == "xavier_uniform":
            return ("uniform", a[0] * math.sqrt(6.0 / (fan_in + fan_out)))
        if self.name == "xavier_normal":
            return ("normal", a[0] * math.sqrt(2.0 / (fan_in + fan_out)))
        fan = fan_in if self.mode == "fan_in" else fan_out
        gain = math.sqrt(2.0 / (1 + a[0] ** 2))
        if self.name == "kaiming_uniform":
            return ("uniform", gain * math.sqrt(3.0 / fan) if fan else 0.0)
        return ("normal", gain / math.sqrt(fan) if fan else 0.0)

    def torch_src(self, ref: str) -> str:
        """The ``nn.init`` call a person would write for this initialiser."""
        a = self.args
        if self.name in ("zeros", "ones"):
            return f"nn.init.{self.name}_({ref})"
        if self.name == "constant":
            return f"nn.init.constant_({ref}, {float(a[0])!r})"
        if self.name in ("normal", "uniform", "trunc_normal"):
            return f"nn.init.{self.name}_({ref}, {', '.join(repr(float(x)) for x in a)})"
        if self.name in ("xavier_uniform", "xavier_normal", "orthogonal"):
            gain = f", gain={float(a[0])!r}" if a[0] != 1 else ""
            return f"nn.init.{self.name}_({ref}{gain})"
        kw = [f"a={float(a[0])!r}"] if a[0] != 0 else []
        if self.mode != "fan_in":
            kw.append(f'mode="{self.mode}"')
        kw.append('nonlinearity="relu"' if a[0] == 0 else 'nonlinearity="leaky_relu"')
        return f"nn.init.{self.name}_({ref}, {', '.join(kw)})"


DEFAULT = Init()


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """torch.nn.init's fan_in and fan_out of a weight of rank >= 2."""
    receptive = 1
    for s in shape[2:]:
        receptive *= s
    return shape[1] * receptive, shape[0] * receptive


# the text form, as the IR stores it: name, or name(arg, ..., key=value)
_TEXT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*", re.S)
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)")
_KWARG = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", re.S)


def parse(text: str) -> Init:
    """Read the text form back (``normal(0, 0.02)``, ``kaiming_normal(mode=fan_out)``)."""
    if len(text) > 200:
        raise InitError("an initialiser's text is at most 200 characters")
    m = _TEXT.fullmatch(text)
    if m is None:
        raise InitError(f"not an initialiser: {text!r} (write e.g. normal(0, 0.02))")
    name, inner = m.group(1), m.group(2)
    if ALIASES.get(name, name) not in _SIGS:
        Init.make(name)  # unknown: its message lists the known names
    args: list = []
    kwargs: dict = {}
    if inner is not None and inner.strip():
        for part in inner.split(","):
            part = part.strip()
            km = _KWARG.fullmatch(part)
            key, val = (km.group(1), km.group(2).strip()) if km else (None, part)
            if _NUMBER.fullmatch(val):
                v: object = float(val)
            elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", val):
                v = val
            else:
                raise InitError(f"not an initialiser argument: {val!r} in {text!r}")
            if key is None:
                if kwargs:
                    raise InitError(f"a positional argument after a keyword one in {text!r}")
                args.append(v)
            else:
                if key in kwargs:
                    raise InitError(f"argument {key!r} given twice in {text!r}")
                kwargs[key] = v
    return Init.make(name, tuple(args), kwargs)


def coerce(v) -> Init:
    """An ``init=`` argument's value: an Init (from the spec) or its text (from the IR or
    a bare word such as ``xavier``)."""
    if isinstance(v, Init):
        return v
    if isinstance(v, str):
        return parse(v)
    raise InitError("an initialiser is a name such as xavier or a call such as "
                    "normal(0, 0.02)")


def targets(key: str) -> str:
    """Which ``*_init`` argument sets a state_dict entry: a bias (``bias``, ``in_proj_bias``,
    ``bias_hh_l0``) takes ``bias_init``, every other trainable tensor ``init``."""
    last = key.rsplit(".", 1)[-1]
    return "bias_init" if "bias" in last else "init"
