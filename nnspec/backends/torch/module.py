"""The torch back end's module: :class:`SpecModule`, built from a spec by :func:`build_module`.

Every layer kind describes its torch form as data (:class:`~nnspec.layers.base.TorchPlan`);
this module instantiates that description in-process (each layer's calls compiled by
``nnspec.backends.torch.calls``), and ``nnspec.backends.emit`` renders the very same
description as readable Python (:func:`emit_source`). Nothing from a spec is ever executed
as Python: names are registered with ``add_module``-style calls and rendered with ``repr``,
values are rendered as literals.

    >>> import nnspec, torch
    >>> from nnspec.backends.torch import build_module, emit_source
    >>> spec = nnspec.load("specs/lenet5.nn")
    >>> net = build_module(spec, seed=0)
    >>> net(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import secrets
import sys

import numpy as np
import torch
from torch import nn

from ...ir.spec import Spec
from ...layers.base import INT
from .. import weights as _init
from ..inputs import InputError
from ..plans import buffers as _buffers_of
from ..plans import plans as _plans
from ..plans import returned_parameters as _returned_parameters
from ..plans import symbol_sources as _symbol_sources
from ..plans import walk_syms as _walk_syms
from . import buffers as _buf
from .calls import (
    _DEVICE,
    _ROOT,
    PARAMETER,
    _check_child_name,
    _compile_plan,
    _dim_fn,
    _make_module,
    _module_cls,
    parameter_getter,
)

__all__ = ["SpecModule", "build_module"]

# ---- plans -------------------------------------------------------------------------------


def _where(node) -> tuple[str, int, str]:
    span = node.span or ["<unknown>", 0]
    return str(span[0]), int(span[1]), node.text or node.op


def _used_symbols(plans) -> set[str]:
    acc: set[str] = set()
    for _, _, plan in plans:
        for c in plan.calls:
            _walk_syms(c.args, acc)
            _walk_syms(c.kwargs, acc)
    return acc


# ---- in-process: the module ---------------------------------------------------------------


class SpecModule(nn.Module):
    """A spec's model as an ``nn.Module``: one submodule per layer that has one, registered
    under the layer's dotted name, and a forward that runs a plan compiled once.

    Weights come from ``params`` or are drawn from ``seed`` (see :func:`build_module`).
    The module pickles (``pickle``, ``torch.save``, ``copy.deepcopy``) as its submodules
    plus the spec's IR, from which the copy compiles its plan again: no .nn file is read.
    """

    # the attributes _compile derives from the spec (closures among them): never pickled
    _COMPILED = ("model_name", "spec_model", "_spec_program", "_shapes", "locations",
                 "line_map", "_steps", "_ids", "_n_slots", "_out", "_inputs", "_checks",
                 "_sym_src", "_same", "_pending", "_ties", "_buffer_plan", "_forward_order")

    def __init__(self, spec: Spec, model: str | None = None, seed: int | None = None,
                 params: dict | None = None, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None):
        super().__init__()
        spec.raise_for_errors()
        modules = self._compile(spec, spec.model(model), made=None)
        # register the submodules last: names may shadow nn.Module methods (``forward``)
        for name, mod in modules:
            parts = name.split(".")
            parent: nn.Module = self
            for j, part in enumerate(parts[:-1]):
                _check_child_name(part, ".".join(parts[:j + 1]))
                child = parent._modules.get(part)
                if child is None:
                    child = nn.Module()
                    parent._modules[part] = child
                parent = child
            _check_child_name(parts[-1], name)
            if parts[-1] in parent._modules or parts[-1] in parent._parameters or \
                    parts[-1] in parent._buffers:
                raise ValueError(f"the layer name {name!r} is used twice")
            if isinstance(mod, _buf.NewBuffer):  # a buffer layer: a tensor of its parent
                _buf.register(parent, parts[-1], mod)
            elif isinstance(mod, nn.Parameter):  # a param layer: a tensor of its parent
                parent._parameters[parts[-1]] = mod
            else:
                parent._modules[parts[-1]] = mod
        self._tie()
        self._load(self._shapes, seed, params, dtype, device)

    def _tie(self) -> None:
        """Make each tied parameter the very Parameter it is tied to (``lm_head.weight =
        wte.weight``): again after anything that may give modules new Parameters."""
        for key, owner in self._ties:
            path, _, attr = key.rpartition(".")
            setattr(self.get_submodule(path), attr, self.get_parameter(owner))

    def _apply(self, fn, recurse=True):
        # .to(), .to_empty(), .double(), ...: a conversion may give each module Parameters
        # of its own, which would untie the tied ones
        out = super()._apply(fn, recurse)
        if self.__dict__.get("_ties"):
            self._tie()
        return out

    def _compile(self, spec: Spec, m, made: nn.Module | None) -> list:
        """Compile the plan of model ``m``; returns [(layer name, submodule)].

        The submodules are new (on the meta device) when ``made`` is None, else those
        already registered under ``made`` (an unpickled copy's), checked against the plan.
        """
        # set in __dict__, not via setattr: a layer may have one of these names
        attrs = self.__dict__
        attrs["model_name"] = m.name
        attrs["spec_model"] = m
        attrs["_spec_program"] = spec.program
        attrs["_shapes"] = spec.state_shapes(m.name)
        plans = _plans(spec, m)
        n_in = len(m.inputs)
        slot = {inp.id: i for i, inp in enumerate(m.inputs)}
        for k, (node, _, _) in enumerate(plans):
            slot[node.id] = n_in + k
        last: dict[str, int] = {}
        for k, (node, _, _) in enumerate(plans):
            for v in node.inputs:
                last[v] = k
        # where each step comes from, and a line -> layers index of the spec
        locations: list[tuple[str, int, str, str]] = []
        line_map: dict[tuple[str, int], list[str]] = {}
        attrs["locations"], attrs["line_map"] = locations, line_map
        steps = []
        modules = []
        by_name: dict[str, nn.Module] = {}
        ties = []
        returned = _returned_parameters(m)
        bufs = _buffers_of(spec, m, plans)
        for k, (node, row, plan) in enumerate(plans):
            mod = None
            if node.id in bufs.nodes:
                if made is not None:
                    _buf.registered(made, node.name)
                elif not node.shared:
                    modules.append((node.name, _buf.new_buffer(row)))
            elif node.shared:  # a layer applied again: its module once more
                mod = by_name.get(node.name)
            elif plan.module is not None:
                if made is None:
                    with torch.device("meta"):
                        mod = _make_module(plan.module)
                elif plan.module.cls == PARAMETER:
                    mod = _registered_parameter(made, node.name)
                else:
                    mod = _registered(made, node.name, _module_cls(plan.module))
                modules.append((node.name, mod))
                by_name[node.name] = mod
            if not node.shared:
                ties += [(f"{node.name}.{key}", f"{owner}.{okey}")
                         for key, (owner, okey, transposed) in node.ties.items()
                         if not transposed]
            if node.id in bufs.nodes:
                run = _buf.getter(node.name)
            elif plan.module is not None and plan.module.cls == PARAMETER:
                run = parameter_getter(node.name, copy=node.id in returned)
            else:
                run = _compile_plan(plan)
            ins = tuple(slot[v] for v in node.inputs)
            free = tuple(sorted({slot[v] for v in node.inputs if last.get(v) == k
                                 and v != m.output}))
            steps.append((run, mod, ins, n_in + k, free))
            file, line, text = _where(node)
            locations.append((file, line, text, node.name))
            line_map.setdefault((file, line), []).append(node.name)
        attrs["_steps"] = steps
        attrs["_ties"] = ties
        attrs["_forward_order"] = tuple(k for k, (node, _, _) in enumerate(plans)
                                        if node.id not in bufs.only)
        attrs["_buffer_plan"] = None
        if bufs:
            at = {node.id: k for k, (node, _, _) in enumerate(plans)}
            need = set().union(*bufs.sources.values()) | set(bufs.nodes)
            attrs["_buffer_plan"] = _buf.BufferPlan(
                tuple(sorted(at[v] for v in need)),
                {at[b]: slot[n.inputs[0]] for b, n in bufs.nodes.items()},
                {at[b]: (n.name, n.p.persistent) for b, n in bufs.nodes.items()})
        attrs["_ids"] = [inp.id for inp in m.inputs] + [node.id for node, _, _ in plans]
        attrs["_n_slots"] = n_in + len(plans)
        attrs["_out"] = slot[m.output]
        attrs["_inputs"] = [(inp.name, inp.dims(), inp.span, inp.shape) for inp in m.inputs]
        attrs["_checks"] = [(name, len(dims), tuple((ax, d.value) for ax, d in enumerate(dims)
                                                    if d.is_const), span, shape)
                            for name, dims, span, shape in self._inputs]
        attrs["_sym_src"] = _symbol_sources(m)
        # later plain occurrences of a symbol must agree with its first one
        attrs["_same"] = [(i, ax, str(d)) for i, (_, dims, _, _) in enumerate(self._inputs)
                          for ax, d in enumerate(dims)
                          if not d.is_const and str(d) in d.symbols()
                          and self._sym_src[str(d)] != (i, ax)]
        used = _used_symbols(plans)
        missing = sorted(used - self._sym_src.keys())
        if missing:
            raise ValueError(f"the symbol {missing[0]} is used by a layer but is not a dim of "
                             "the model's inputs")
        attrs["_pending"] = [(i, ax, _dim_fn(d), d) for i, (_, dims, _, _) in
                             enumerate(self._inputs) for ax, d in enumerate(dims)
                             if not d.is_const and str(d) not in d.symbols()
                             and d.symbols() <= self._sym_src.keys()]
        return modules

    def _load(self, shapes: dict, seed, params, dtype, device) -> None:
        """Materialise the (meta) submodules on ``device`` and load the given or drawn
        weights; on the meta device only record the seed (see reset_parameters)."""
        keys = list(self.state_dict(keep_vars=True))
        if self._keys_differ(keys, shapes):
            raise RuntimeError("the torch modules' state_dict keys differ from the spec's: "
                               f"{keys} != {list(shapes)}")
        device = torch.device("cpu" if device is None else device)
        if device.type == "meta":
            if params is not None:
                raise ValueError("params cannot be loaded on the meta device: load them after "
                                 "module.to_empty(device=...)")
            self.__dict__["seed"] = secrets.randbits(63) if seed is None else seed
            self.to(dtype)
            return
        given = frozenset() if params is None else frozenset(params)
        if params is None:
            if seed is None:
                seed = secrets.randbits(63)
            np_dtype = np.float64 if dtype == torch.float64 else np.float32
            params = _init.draw(shapes, seed, np_dtype)
        self.__dict__["seed"] = seed  # not via setattr: a layer may be named seed
        params = _with_ties(shapes, params)
        missing = [k for k in shapes if k not in params]
        extra = [k for k in params if k not in shapes]
        if missing or extra:
            raise KeyError(f"missing parameters: {missing[:5]}; unexpected: {extra[:5]}")
        state = {}
        for k, w in shapes.items():
            t = _as_tensor(params[k])
            if tuple(t.shape) != tuple(w.shape):
                raise ValueError(f"parameter {k} has shape {tuple(t.shape)}, "
                                 f"expected {w.shape}")
            state[k] = t.to(torch.int64) if w.dtype == INT else t
        # convert the (meta) modules first, so that memory is allocated once, in dtype
        self.to(dtype)
        self.to_empty(device=device)
        self.load_state_dict(state, strict=True)
        _buf.fill(self, keep=given)  # the buffers: computed, where no value is given

    def _keys_differ(self, keys: list, shapes) -> bool:
        """The state_dict keys are not the spec's (torch lists a module's buffers after its
        Parameters, wherever the spec has them: the same keys in another order)."""
        if keys == list(shapes):
            return False
        return self.__dict__.get("_buffer_plan") is None or sorted(keys) != sorted(shapes)

    def reset_parameters(self, seed: int | None = None) -> None:
        """Draw every state_dict entry again, in place, as ``build_module(seed=)`` does
        (``module.seed`` when ``seed`` is None), keeping each tensor's device and dtype.

        This initialises a module built on the meta device once it has memory, and works
        on the sharded (DTensor) parameters of ``fully_shard`` too, each rank keeping its
        shard of the same full draw::

            net = build_module(spec, seed=0, device="meta")  # nothing allocated or drawn
            net.to_empty(device="cpu")
            net.reset_parameters()                            # == build_module(spec, seed=0)
        """
        tensors = self.state_dict(keep_vars=True)
        if self._keys_differ(list(tensors), self._shapes):
            raise RuntimeError("the module's state_dict keys differ from its spec's: "
                               f"{list(tensors)} != {list(self._shapes)}")
        if any(t.is_meta for t in tensors.values()):
            raise RuntimeError("the module is on the meta device, where weights have no "
                               "memory: call module.to_empty(device=...) first")
        seed = self.seed if seed is None else seed
        floats = [t.dtype for t in tensors.values() if t.is_floating_point()]
        np_dtype = np.float64 if floats and floats[0] == torch.float64 else np.float32
        drawn = _init.draw(self._shapes, seed, np_dtype)
        dtensor = None
        if "torch.distributed.tensor" in sys.modules:  # else no tensor can be a DTensor
            from torch.distributed.tensor import DTensor, distribute_tensor

            dtensor = DTensor
        with torch.no_grad():
            for k, t in tensors.items():
                full = _as_tensor(drawn.pop(k)).to(device=t.device, dtype=t.dtype)
                if dtensor is not None and isinstance(t, dtensor):
                    full = distribute_tensor(full, t.device_mesh, t.placements)
                t.copy_(full)
        _buf.fill(self)
        self.__dict__["seed"] = seed

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        for k in self._COMPILED:
            state.pop(k, None)
        state["_nnspec_ir"] = self._spec_program.to_json(indent=None)
        state["_nnspec_model"] = self.model_name
        return state

    def __setstate__(self, state: dict) -> None:
        """Restore the submodules, then compile the plan from the pickled IR (validated
        as any IR input is: nothing in it is executed)."""
        from ...ir.spec import from_ir

        state = dict(state)
        ir_json = state.pop("_nnspec_ir", None)
        name = state.pop("_nnspec_model", None)
        if not isinstance(ir_json, str) or not isinstance(name, str):
            raise ValueError("not a pickled nnspec SpecModule: its spec IR is missing")
        super().__setstate__(state)
        spec = from_ir(ir_json, "<pickled SpecModule>").raise_for_errors()
        self._compile(spec, spec.model(name), made=self)
        keys = list(self.state_dict(keep_vars=True))
        if self._keys_differ(keys, self._shapes):
            raise ValueError("the pickled module's state_dict keys differ from its spec's")

    def dynamic_shapes(self, **bounds):
        """``dynamic_shapes`` for :func:`torch.export.export`: every input dim that is a bare
        symbol (``N``) becomes one ``torch.export.Dim`` per symbol, shared across inputs.
        ``bounds`` maps a symbol to ``(min, max)`` (either may be None), or to None to keep
        it static: torch specialises some layers to their input's size (the time axis of
        ``nn.GRU``/``nn.LSTM``/``nn.RNN``), and export refuses such a symbol as dynamic.

            >>> ep = torch.export.export(net, (x,), dynamic_shapes=net.dynamic_shapes())
            >>> ep = torch.export.export(net, (tokens,), dynamic_shapes=net.dynamic_shapes(
            ...     T=None))                                   # GRUSentiment: T static
        """
        unknown = sorted(set(bounds) - self._sym_src.keys())
        if unknown:
            raise ValueError(f"model {self.model_name} has no input dim {unknown[0]} (its "
                             f"symbols: {', '.join(sorted(self._sym_src)) or 'none'})")
        made = {}
        per_input = []
        for _, dims, _, _ in self._inputs:
            spec = {}
            for ax, d in enumerate(dims):
                name = str(d)
                if name in bounds and bounds[name] is None:
                    continue
                if not d.is_const and name in d.symbols():
                    if name not in made:
                        lo, hi = bounds.get(name, (None, None))
                        made[name] = torch.export.Dim(name, min=lo, max=hi)
                    spec[ax] = made[name]
            per_input.append(spec or None)
        return (tuple(per_input),)

    def _bind(self, inputs) -> dict:
        """Check the inputs against the declared shapes; bind the symbols (like bind_dims)."""
        if len(inputs) != len(self._inputs):
            raise InputError(f"{self.model_name} takes {len(self._inputs)} input(s), "
                             f"got {len(inputs)}")
        env = {}
        for (name, rank, fixed, span, shape), x in zip(self._checks, inputs):
            try:
                if x.dim() != rank:
                    raise InputError(f"input {name} must have rank {rank} "
                                     f"([{', '.join(shape)}]), got shape {tuple(x.shape)}")
                for ax, value in fixed:
                    if x.shape[ax] != value:
                        raise InputError(f"input {name} must be [{', '.join(shape)}], got "
                                         f"shape {tuple(x.shape)}")
            except InputError as e:
                if span:
                    e.add_note(f"{span[0]}:{span[1]}: {name}: [{', '.join(shape)}]")
                raise
        for sym, (i, ax) in self._sym_src.items():
            env[sym] = inputs[i].shape[ax]
        for i, ax, sym in self._same:
            if inputs[i].shape[ax] != env[sym]:
                raise InputError(f"symbol {sym} is {env[sym]} elsewhere but "
                                 f"{inputs[i].shape[ax]} in input {self._inputs[i][0]}")
        for i, ax, f, d in self._pending:
            if f(env) != inputs[i].shape[ax]:
                raise InputError(f"input {self._inputs[i][0]}: {d} = {f(env)}, "
                                 f"got {inputs[i].shape[ax]}")
        return env

    def _run(self, inputs, keep: bool) -> list:
        """Run the plan; drop each value after its last use unless ``keep``."""
        env = self._bind(inputs)
        env[_ROOT] = self
        env[_DEVICE] = self._device_of(inputs)
        vals = list(inputs) + [None] * (self._n_slots - len(inputs))
        steps = self._steps
        k = -1
        try:
            for k in range(len(steps)) if keep else self._forward_order:
                run, mod, ins, out, free = steps[k]
                vals[out] = run(mod, [vals[j] for j in ins], env)
                if not keep:
                    for j in free:
                        vals[j] = None
        except Exception as e:
            self._note(e, k)
            raise
        return vals

    def _device_of(self, inputs) -> torch.device:
        """Where a tensor made in forward goes: the inputs' device, else the weights'."""
        for x in inputs:
            if isinstance(x, torch.Tensor):
                return x.device
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.get_default_device()

    def forward(self, *inputs):
        return self._run(inputs, keep=False)[self._out]

    def trace(self, *inputs) -> dict:
        """Run the model keeping every value: {value id: tensor} (inputs included)."""
        return dict(zip(self._ids, self._run(inputs, keep=True)))

    def _note(self, e: BaseException, k: int) -> None:
        """Name the spec location of step k on the exception."""
        if 0 <= k < len(self.locations):
            file, line, text, name = self.locations[k]
            e.add_note(f"{file}:{line}: {text}  (layer {name})")

    def extra_repr(self) -> str:
        return f"model={self.model_name}"

    # ---- the spec's train section (see nnspec.ir.training), as the emitted source has it --
    def _training(self):
        from ...ir import training as T

        t = T.training_for(self.__dict__["_spec_program"], self.model_name)
        if t is None:
            raise AttributeError(f"model {self.model_name} has no train section")
        return t

    def loss(self, *values):
        """The section's loss of (output, targets..., inputs used): see training.loss_args."""
        from ...ir import training as T
        from ...layers.losses import LOSSES

        t = self._training()
        names = T.loss_args(t, self.spec_model)
        if len(values) != len(names):
            raise TypeError(f"loss takes {len(names)} tensors ({', '.join(names)}), got "
                            f"{len(values)}")
        env = dict(zip(names, values))
        if isinstance(env.get("output"), tuple):  # return recon, mu, logvar: by name
            env.update((n, v) for n, v in zip(self.spec_model.output_names, env["output"])
                       if n)
        total = None
        for term in t.terms:
            kind = LOSSES[term.loss]
            v = kind.torch(kind.Params.model_validate(term.params),
                           [env[a] for a in term.args])
            v = v if term.weight == 1.0 else term.weight * v
            total = v if total is None else total + v
        return total

    def configure_optimizer(self):
        """The section's optimiser (and scheduler, when it has one: then a pair)."""
        from ...ir import training as T

        t = self._training()
        if t.optimizer is None:
            raise AttributeError(f"the train section of {self.model_name} has no optimizer")
        opt = T.OPTIMIZERS[t.optimizer]
        optimizer = getattr(torch.optim, opt.torch_name)(
            self.parameters(), **T.optimizer_kwargs(opt.model_validate(t.optimizer_params)))
        sched = T.Schedule.model_validate(t.schedule or {})
        lrs = torch.optim.lr_scheduler
        main = None
        if sched.kind == "step":
            main = lrs.StepLR(optimizer, step_size=sched.size, gamma=sched.gamma)
        elif sched.kind == "cosine":
            main = lrs.CosineAnnealingLR(optimizer, T_max=sched.steps, eta_min=sched.min_lr)
        if sched.warmup:
            warm = lrs.LinearLR(optimizer, start_factor=sched.start, total_iters=sched.warmup)
            main = warm if main is None else lrs.SequentialLR(
                optimizer, [warm, main], milestones=[sched.warmup])
        return optimizer if main is None else (optimizer, main)

    def clip_gradients(self):
        from ...ir import training as T

        t = self._training()
        if t.clip is None:
            raise AttributeError(f"the train section of {self.model_name} has no clip")
        c = T.Clip.model_validate(t.clip)
        if c.norm is not None:
            return torch.nn.utils.clip_grad_norm_(self.parameters(), c.norm)
        return torch.nn.utils.clip_grad_value_(self.parameters(), c.value)


def _registered(root: nn.Module, name: str, cls) -> nn.Module:
    """The submodule registered under the dotted ``name``, which must be a ``cls``."""
    mod = root
    for part in name.split("."):
        mod = mod._modules.get(part) if isinstance(mod, nn.Module) else None
        if mod is None:
            raise ValueError(f"the module has no layer {name!r}")
    if type(mod) is not cls:
        raise ValueError(f"layer {name!r} is a {type(mod).__name__}, expected {cls.__name__}")
    return mod


def _registered_parameter(root: nn.Module, name: str) -> nn.Parameter:
    """The Parameter registered under the dotted ``name`` (a param layer's)."""
    *parents, leaf = name.split(".")
    mod = root
    for part in parents:
        mod = mod._modules.get(part) if isinstance(mod, nn.Module) else None
    got = mod._parameters.get(leaf) if isinstance(mod, nn.Module) else None
    if not isinstance(got, nn.Parameter):
        raise ValueError(f"the module has no parameter {name!r}")
    return got


def _with_ties(shapes: dict, params: dict) -> dict:
    """``params`` with each tied parameter under both of its keys, as the state_dict holds
    it (either key may be given; both must then be equal)."""
    out = dict(params)
    for k, w in shapes.items():
        if not w.tied:
            continue
        if k not in out and w.tied in out:
            out[k] = out[w.tied]
        elif k in out and w.tied not in out:
            out[w.tied] = out[k]
        elif k in out and not torch.equal(_as_tensor(out[k]), _as_tensor(out[w.tied])):
            raise ValueError(f"the tied parameters {k} and {w.tied} differ: a tied parameter "
                             "is one tensor")
    return out


def _as_tensor(v) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v.detach()
    return torch.from_numpy(np.array(v, copy=True))


def build_module(spec: Spec, model: str | None = None, seed: int | None = None,
                 params: dict | None = None, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> SpecModule:
    """The model as an ``nn.Module`` whose ``state_dict`` keys are ``spec.state_shapes()``.

    Weights come from ``params`` (arrays or tensors keyed by state_dict name) or are drawn
    with :func:`nnspec.backends.weights.draw` from ``seed`` (the same weights as
    ``NumpyModel(seed=)``; a random seed when None, kept as ``module.seed``).

    ``device`` (default CPU) is where the weights are allocated, in ``dtype``. On
    ``"meta"`` nothing is allocated and nothing is drawn, whatever the model's size (for
    sharding it before it has memory, or for ``torch.export`` of its graph): give it
    memory with ``module.to_empty(device=...)``, then ``module.reset_parameters()`` draws
    the weights ``build_module(seed=)`` would have (``params`` are refused on meta).
    """
    return SpecModule(spec, model, seed=seed, params=params, dtype=dtype, device=device)
