"""The ``buffer`` layers of a :class:`~nnspec.backends.torch.module.SpecModule`: constants
registered on the module (``register_buffer``), computed once, read by forward.

A buffer is registered under its layer's dotted name (its parent block's module holds it,
as a ``param``'s Parameter), persistent or not as the spec says. Its value is computed by
the very steps forward would run (the layers it is computed from), on the module's device,
when the module is built and whenever its weights are drawn again (``reset_parameters``);
a persistent buffer given in ``params`` (a checkpoint's) keeps the value given. Forward
reads the registered tensor, looked up at each call (``.to()`` replaces it), and skips the
layers only buffers read; ``trace`` runs them still, so that every value has its tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...layers.base import INT


@dataclass(frozen=True)
class NewBuffer:
    """A buffer to register: an empty tensor of its shape and dtype on the meta device."""

    shape: tuple
    dtype: str
    persistent: bool

    def tensor(self) -> torch.Tensor:
        dtype = torch.int64 if self.dtype == INT else torch.float32
        return torch.empty(self.shape, dtype=dtype, device="meta")


def new_buffer(row) -> NewBuffer:
    """The buffer of a ``buffer`` layer's row (spec.layers)."""
    out = row.output
    return NewBuffer(tuple(d.value for d in out.shape), out.dtype, row.node.p.persistent)


def register(parent: nn.Module, leaf: str, made: NewBuffer) -> None:
    """``parent.register_buffer(leaf, ..., persistent=...)``, set directly: a layer's name
    may shadow an nn.Module attribute (its name is checked as a child's)."""
    parent._buffers[leaf] = made.tensor()
    if not made.persistent:
        parent._non_persistent_buffers_set.add(leaf)


def registered(root: nn.Module, path: str) -> None:
    """Check that an (unpickled) module holds the buffer of the dotted ``path``."""
    *parents, leaf = path.split(".")
    mod = root
    for part in parents:
        mod = mod._modules.get(part) if isinstance(mod, nn.Module) else None
    if not isinstance(mod, nn.Module) or not isinstance(mod._buffers.get(leaf), torch.Tensor):
        raise ValueError(f"the module has no buffer {path!r}")


def getter(path: str):
    """A function (mod, ins, env) -> the buffer registered under the dotted ``path``,
    looked up at each call, as a Parameter is (``.to()`` replaces the tensor)."""
    *parents, leaf = path.split(".")

    def get(mod, ins, env):
        from .calls import _ROOT

        owner = env[_ROOT]
        for part in parents:
            owner = owner._modules[part]
        return owner._buffers[leaf]

    return get


def lookup(root: nn.Module, path: str) -> torch.Tensor:
    *parents, leaf = path.split(".")
    mod = root
    for part in parents:
        mod = mod._modules[part]
    return mod._buffers[leaf]


def fill(module, keep: frozenset = frozenset()) -> None:
    """Compute every buffer of ``module`` (a SpecModule) and copy it into the registered
    tensor, in that tensor's dtype and on its device; a persistent one whose state_dict key
    is in ``keep`` holds a value given (a checkpoint's) and is left as it is."""
    from .calls import _DEVICE, _ROOT

    plan = module.__dict__.get("_buffer_plan")
    if plan is None:
        return
    targets = {k: (name, persistent, lookup(module, name))
               for k, (name, persistent) in plan.targets.items()}
    if any(t.is_meta for _, _, t in targets.values()):
        return  # no memory yet: reset_parameters() after to_empty() computes them
    env = {_ROOT: module, _DEVICE: next(iter(targets.values()))[2].device}
    vals: dict[int, torch.Tensor] = {}
    steps = module._steps
    with torch.no_grad():
        for k in plan.order:
            run, mod, ins, out, _ = steps[k]
            if k in targets:  # a buffer: its input's value, kept
                value = vals[plan.sources[k]]
                name, persistent, t = targets[k]
                if not (persistent and name in keep):
                    t.copy_(value)
                vals[out] = value
            else:
                vals[out] = run(mod, [vals[j] for j in ins], env)


@dataclass(frozen=True)
class BufferPlan:
    """What :func:`fill` runs: the steps in model order (``order``: the buffers and the
    layers they are computed from), the slot of each buffer step's input (``sources``) and
    each buffer step's name and persistence (``targets``)."""

    order: tuple
    sources: dict
    targets: dict
