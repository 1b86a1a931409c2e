"""The data a layer kind hands the back ends (see base.py, which re-exports it): its
state_dict entries (:class:`W`), its torch plan (:class:`TorchPlan`: a module to construct
and the calls to make, with placeholders for the inputs and the previous call's result) and
what a NumPy kernel is given besides its weights (:class:`NumpyCtx`).

Record classes (see nnspec/core/record.py): dataclasses whose ``__init__`` is written out,
so that making them at import generates no code; ``replace``, ``fields``, ``repr`` and
``==`` behave as the generated dataclass methods did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.dims import Dim
from ..core.record import FrozenRecord, Record, set_field

FLOAT = "float"
_NEW: Any = object()  # a dict field's default: a new empty dict


@dataclass(init=False, repr=False, eq=False)
class W(FrozenRecord):
    """One state_dict entry: its shape and how PyTorch initialises it by default.

    init is ("uniform", bound) | ("zeros",) | ("ones",) | ("normal", std) or
    ("normal", std, row) with that row zeroed (an embedding's padding index); initialisers
    written in a spec add ("constant", v), ("uniform_range", a, b), ("gauss", mean, std),
    ("trunc_normal", mean, std, a, b) and ("orthogonal", gain).
    """

    __slots__ = ("shape", "init", "trainable", "dtype", "tied")
    shape: tuple[int, ...]
    init: tuple
    trainable: bool
    dtype: str
    # the state_dict key of the tensor this entry is (a tied weight, listed under both keys
    # as torch lists them): not a parameter of its own, drawn and counted once
    tied: str

    def __init__(self, shape: tuple[int, ...], init: tuple, trainable: bool = True,
                 dtype: str = FLOAT, tied: str = ""):
        set_field(self, "shape", shape)
        set_field(self, "init", init)
        set_field(self, "trainable", trainable)
        set_field(self, "dtype", dtype)
        set_field(self, "tied", tied)


# ---- torch description -------------------------------------------------------


@dataclass(init=False, repr=False, eq=False)
class In(FrozenRecord):
    """Placeholder for the i-th input tensor of a layer in a torch call."""

    __slots__ = ("index",)
    index: int

    def __init__(self, index: int = 0):
        set_field(self, "index", index)


@dataclass(init=False, repr=False, eq=False)
class Prev(FrozenRecord):
    """Placeholder for the result of the previous torch call of the same layer."""

    __slots__ = ()


@dataclass(init=False, repr=False, eq=False)
class SymDim(FrozenRecord):
    """Placeholder for a symbolic dim evaluated at run time from the model's inputs."""

    __slots__ = ("dim",)
    dim: Dim

    def __init__(self, dim: Dim):
        set_field(self, "dim", dim)


@dataclass(init=False, repr=False, eq=False)
class InputDevice(FrozenRecord):
    """Placeholder for the device of forward's inputs, where a tensor made there goes."""

    __slots__ = ()


@dataclass(init=False, repr=False, eq=False)
class ParamRef(FrozenRecord):
    """Placeholder for another layer's parameter (its dotted state_dict key), as a torch call
    argument: a tied weight that a layer uses transposed."""

    __slots__ = ("key",)
    key: str

    def __init__(self, key: str):
        set_field(self, "key", key)


MODULE = "<module>"


@dataclass(init=False, repr=False, eq=False)
class TorchCall(FrozenRecord):
    """One call: fn is MODULE, ``F.name`` (torch.nn.functional), ``torch.name``,
    or ``.name`` (a tensor method on the first argument)."""

    __slots__ = ("fn", "args", "kwargs")
    fn: str
    args: tuple
    kwargs: dict

    def __init__(self, fn: str, args: tuple = (), kwargs: dict = _NEW):
        set_field(self, "fn", fn)
        set_field(self, "args", args)
        set_field(self, "kwargs", {} if kwargs is _NEW else kwargs)


@dataclass(init=False, repr=False, eq=False)
class TorchModule(FrozenRecord):
    """A torch.nn module to construct: ``torch.nn.<cls>(*args, **kwargs)``."""

    __slots__ = ("cls", "args", "kwargs")
    cls: str
    args: tuple
    kwargs: dict

    def __init__(self, cls: str, args: tuple = (), kwargs: dict = _NEW):
        set_field(self, "cls", cls)
        set_field(self, "args", args)
        set_field(self, "kwargs", {} if kwargs is _NEW else kwargs)


@dataclass(init=False, repr=False, eq=False)
class TorchPlan(Record):
    __slots__ = ("module", "calls")
    module: TorchModule | None
    calls: list[TorchCall]

    def __init__(self, module: TorchModule | None, calls: list[TorchCall]):
        self.module = module
        self.calls = calls


@dataclass(init=False, repr=False, eq=False)
class NumpyCtx(Record):
    """What a NumPy kernel may need besides its weights and inputs."""

    __slots__ = ("training", "rng", "env", "updates", "saved", "noise", "sample", "name")
    training: bool
    rng: Any
    env: dict  # symbol -> int, bound from the inputs
    updates: dict  # state_dict key suffix -> new buffer
    # set when a backward pass follows: the forward kernel may store there what its
    # backward needs and cannot recompute (the dropout mask it drew); the same dict is
    # given to ``backward``. None for a forward-only run.
    saved: dict | None
    # the stochastic layers (nnspec/layers/stochastic.py): ``noise``, a stochastic.Noise
    # that hands both backends the same draws (None: draw from ``rng``), keyed by ``name``,
    # the layer's name; ``sample`` True or False overrides the training mode for layers
    # with ``sample=train`` (None: sample in training only)
    noise: Any
    sample: bool | None
    name: str

    def __init__(self, training: bool = False, rng: Any = None, env: dict = _NEW,
                 updates: dict = _NEW, saved: dict | None = None, noise: Any = None,
                 sample: bool | None = None, name: str = ""):
        self.training = training
        self.rng = rng
        self.env = {} if env is _NEW else env
        self.updates = {} if updates is _NEW else updates
        self.saved = saved
        self.noise = noise
        self.sample = sample
        self.name = name
