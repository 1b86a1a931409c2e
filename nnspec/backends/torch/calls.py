"""The torch back end's in-process compiler: a layer's plan made into plain Python callables.

Each :class:`~nnspec.layers.base.TorchPlan` (the data that says which torch calls a layer
makes) becomes a function ``(module, inputs, env) -> output``, built once: symbolic dims
become functions of the symbol environment (:func:`_dim_fn`), each call's function is
looked up by name in ``torch``, ``torch.nn.functional``, a layer family's torch helpers
(:func:`_helper`) or ``torch.nn`` (:func:`_module_cls`), never evaluated from text. The
checks of a child module's name live here too. :class:`~nnspec.backends.torch.module.SpecModule`
runs what this module compiles.
"""

from __future__ import annotations

import operator

import torch
from torch import nn
from torch.nn import functional as F

from ...core.dims import Dim
from ...ir.names import child_name_problem
from ...layers.base import (
    MODULE,
    In,
    InputDevice,
    ParamRef,
    Prev,
    SymDim,
    TorchCall,
    TorchModule,
    TorchPlan,
)
from ..plans import helper_parts
from ..plans import walk_syms as _walk_syms

# ---- child names ---------------------------------------------------------------------------

def _check_child_name(name: str, full: str) -> None:
    """A layer name torch cannot hold as a child module is refused (the rules are
    nnspec.ir.names', shared with ``check``)."""
    problem = child_name_problem(name)
    if problem is not None:
        raise ValueError(f"layer {full!r}: {problem[0]}")


# ---- in-process: compiled dims and calls ------------------------------------------------


def _dim_fn(d: Dim):
    """A function env -> value of ``d``; works on SymInts (only +, * and //)."""
    if d.is_const:
        v = d.value
        return lambda env: v
    terms = []
    for mono, c in d.terms.items():
        atoms = []
        for a in mono:
            if isinstance(a, str):
                atoms.append(_sym_getter(a))
            else:
                atoms.append(_div_fn(_dim_fn(a.poly), a.k, a._kind == 1))
        terms.append((c, tuple(atoms)))

    def value(env):
        total = 0
        for c, atoms in terms:
            v = c
            for f in atoms:
                v = v * f(env)
            total = total + v
        return total

    return value


def _sym_getter(name: str):
    def get(env):
        try:
            return env[name]
        except KeyError:
            raise ValueError(f"the symbol {name} is not bound by the model's inputs") from None
    return get


def _div_fn(inner, k: int, floor: bool):
    if floor:
        return lambda env: inner(env) // k
    return lambda env: -((-inner(env)) // k)


# the key of the symbol environment under which a module's forward keeps the module itself
# (a symbol is an identifier, never this), for a layer that uses another's parameter
_ROOT = "\0root"
# and the key under which it keeps the device of its inputs (InputDevice)
_DEVICE = "\0device"


def _arg(a):
    """(is_constant, value or function (ins, prev, env) -> value)."""
    if isinstance(a, ParamRef):
        key = a.key
        return False, lambda ins, prev, env: env[_ROOT].get_parameter(key)
    if isinstance(a, In):
        i = a.index
        return False, lambda ins, prev, env: ins[i]
    if isinstance(a, InputDevice):
        return False, lambda ins, prev, env: env[_DEVICE]
    if isinstance(a, Prev):
        return False, lambda ins, prev, env: prev
    if isinstance(a, (SymDim, Dim)):
        d = a.dim if isinstance(a, SymDim) else a
        if d.is_const:
            return True, d.value
        f = _dim_fn(d)
        return False, lambda ins, prev, env: f(env)
    if isinstance(a, slice):  # a subscript's bounds (getitem): x[..., a:a + h]
        bounds = [_arg(x) for x in (a.start, a.stop, a.step)]
        if all(c for c, _ in bounds):
            return True, slice(*(v for _, v in bounds))
        return False, lambda ins, prev, env: slice(
            *[v if c else v(ins, prev, env) for c, v in bounds])
    if isinstance(a, (tuple, list)):
        parts = [_arg(x) for x in a]
        typ = type(a)
        if all(c for c, _ in parts):
            return True, typ(v for _, v in parts)
        return False, lambda ins, prev, env: typ(
            [v if c else v(ins, prev, env) for c, v in parts])
    if isinstance(a, dict):
        parts_d = {k: _arg(v) for k, v in a.items()}
        if all(c for c, _ in parts_d.values()):
            return True, {k: v for k, (_, v) in parts_d.items()}
        return False, lambda ins, prev, env: {
            k: (v if c else v(ins, prev, env)) for k, (c, v) in parts_d.items()}
    return True, a


def _helper(ref: str):
    """A torch helper of a layer family: ``nnspec.layers.torch.<family>:<name>``.

    Those modules hold the torch code a layer cannot express with torch.nn / torch
    functions (a GRU cell with the reset gate before the matmul, sinusoidal positions);
    the source emitter copies the helper's definition into the generated file.
    """
    mod_name, name = helper_parts(ref)
    import importlib

    obj = getattr(importlib.import_module(mod_name), name, None)
    if obj is None:
        raise ValueError(f"{mod_name} has no {name}")
    return obj


def _pack(*values):
    return values


def _resolve_fn(fn: str):
    """The callable for ``F.name`` / ``torch.name`` / a helper / ``getitem``; method name
    for ``.name``."""
    if fn == "getitem":
        return operator.getitem, None
    if fn == "tuple":
        return _pack, None
    if fn.startswith("nnspec."):
        return _helper(fn), None
    if fn.startswith("F."):
        ns, name = F, fn[2:]
    elif fn.startswith("torch."):
        ns, name = torch, fn[6:]
    elif fn.startswith("."):
        name = fn[1:]
        if not name.isidentifier():
            raise ValueError(f"invalid method name in torch call {fn!r}")
        return None, name
    else:
        raise ValueError(f"unknown torch call {fn!r}")
    if not name.isidentifier() or name.startswith("_") or not hasattr(ns, name):
        raise ValueError(f"unknown torch function {fn!r}")
    return getattr(ns, name), None


def _compile_call(call: TorchCall):
    """A function (mod, ins, prev, env) -> result for one TorchCall."""
    args = [_arg(a) for a in call.args]
    kw_const, kw = _arg(dict(call.kwargs))
    static = all(c for c, _ in args)
    if call.fn == MODULE:
        if not call.kwargs and len(args) == 1 and isinstance(call.args[0], In):
            i = call.args[0].index
            return lambda mod, ins, prev, env: mod(ins[i])
        if not call.kwargs and len(args) == 1 and isinstance(call.args[0], Prev):
            return lambda mod, ins, prev, env: mod(prev)

        def target(mod, a, k):
            return mod(*a, **k)
    else:
        func, method = _resolve_fn(call.fn)
        if func is not None:
            if (not call.kwargs or kw_const) and len(args) == 1 and isinstance(call.args[0], In):
                i = call.args[0].index
                kwc = kw if call.kwargs else {}
                return lambda mod, ins, prev, env: func(ins[i], **kwc)

            def target(mod, a, k):
                return func(*a, **k)
        else:
            if not args:
                raise ValueError(f"method call {call.fn!r} needs a first argument")

            def target(mod, a, k):
                return getattr(a[0], method)(*a[1:], **k)

    if static and (not call.kwargs or kw_const):
        a_c = tuple(v for _, v in args)
        k_c = kw if call.kwargs else {}
        return lambda mod, ins, prev, env: target(mod, a_c, k_c)

    def run(mod, ins, prev, env):
        a = [v if c else v(ins, prev, env) for c, v in args]
        k = kw if kw_const else kw(ins, prev, env)
        return target(mod, a, k)

    return run


def parameter_getter(path: str, copy: bool = False):
    """A function (mod, ins, env) -> the ``nn.Parameter`` registered under the dotted
    ``path`` of the model (a ``param`` layer's value), looked up at each call: a conversion
    (``.to()``, ``to_empty``, FSDP) may replace the Parameter object. With ``copy`` (a
    value the model returns) its ``clone()``: a tensor as any output, not the Parameter."""
    *parents, leaf = path.split(".")

    def get(mod, ins, env):
        owner = env[_ROOT]
        for part in parents:
            owner = owner._modules[part]
        p = owner._parameters[leaf]
        return p.clone() if copy else p

    return get


def _compile_plan(plan: TorchPlan):
    """A function (mod, ins, env) -> output for one layer."""
    calls = [_compile_call(c) for c in plan.calls]
    if not calls:
        return lambda mod, ins, env: ins[0]
    if len(calls) == 1:
        (only,) = calls
        return lambda mod, ins, env: only(mod, ins, None, env)

    def run(mod, ins, env):
        prev = None
        for c in calls:
            prev = c(mod, ins, prev, env)
        return prev

    return run


def _module_cls(m: TorchModule):
    if m.cls.startswith("nnspec."):
        return _helper(m.cls)
    if not m.cls.isidentifier() or m.cls.startswith("_"):
        raise ValueError(f"invalid torch module class {m.cls!r}")
    return getattr(nn, m.cls, None)


#: the plan module of a ``param`` layer: an ``nn.Parameter`` registered on the parent
PARAMETER = "Parameter"


def _make_module(m: TorchModule) -> nn.Module | nn.Parameter:
    if m.cls == PARAMETER:  # param [1, 1, d]: the tensor, zeros until weights are loaded
        if m.kwargs or not all(type(a) is int and a >= 1 for a in m.args):
            raise ValueError(f"nn.Parameter takes concrete sizes, got {m.args}")
        return nn.Parameter(torch.zeros(m.args))
    cls = _module_cls(m)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"torch.nn has no module class {m.cls!r}")
    for a in list(m.args) + list(m.kwargs.values()):
        acc: set = set()
        _walk_syms(a, acc)
        if acc:
            raise ValueError(f"nn.{m.cls} cannot take a symbolic size ({', '.join(acc)})")
    return cls(*m.args, **m.kwargs)
