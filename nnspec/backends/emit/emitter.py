"""The file: :func:`emit_source` and :func:`write_source`, the standalone PyTorch source of
a spec's models, written without importing torch. This module puts a file together (the
helpers, one class per block used and one per model, the imports used, the header comments)
and writes the ``loss``/``configure_optimizer``/``clip_gradients`` of a train section; the
package's other modules hold its parts (see :mod:`nnspec.backends.emit`).

Every layer kind describes its torch form as data (:class:`~nnspec.layers.base.TorchPlan`);
:mod:`nnspec.backends.torch` instantiates that description in-process and this package
renders the very same description as Python a person would write: one ``nn.Module`` class
per block used (its constructor takes what differs between the block's instances), a
repetition (``Basic(64) * 2 as layer1``) as an ``nn.ModuleList`` and a loop, ``forward``
with the spec's value names, lines of at most 100 characters, each pointing back to the
spec line it comes from. State_dict keys are those of ``build_module``.

``nnspec compile -o model.py`` runs this without torch: what the generated file needs from
torch (the defaults of the ``nn`` classes' arguments, which ``nn.Module`` attributes a
child name would shadow) is frozen in :mod:`.constructors` and :mod:`nnspec.ir.names`, and
compared with the installed torch by the tests. The layer families' torch helpers (a GRU
cell with the reset gate before the matmul, sinusoidal positions) are copied into the
generated file from their module's source text, read with :mod:`ast` without importing that
module (which imports torch). Nothing from a spec is ever executed as Python: names become
identifiers through :func:`nnspec.ir.names.py_name` and values are rendered as literals.
"""

from __future__ import annotations

import os

from ...core.util import write_atomic
from ...ir.names import plain, py_name
from ...ir.spec import Spec
from ..plans import buffers as _buffers
from ..plans import plans as _plans
from . import buffers as _buf
from .classes import _Emitter
from .constructors import NN_SIGNATURES
from .folding import _merge_groups
from .helpers import _globals_of, _helper_names, _helpers_src
from .layout import _fit, fit_return
from .naming import _MODULE_NAMES, _RESERVED_LOCALS, rename_stateless, stateful_names
from .structure import _Class, _flow, _NameClash, _Scope, _tree

__all__ = ["emit_source", "write_source", "NN_SIGNATURES"]


def _class_names(models, reserved: set) -> list[str]:
    """One distinct class name per model, deterministic: a model whose name is a plain
    identifier that shadows nothing keeps it, then the others get the first free variant
    (``torch`` -> ``torch__`` when a model is already called ``torch_``)."""
    taken: set[str] = set()
    out: list[str | None] = [None] * len(models)
    for i, m in enumerate(models):
        if plain(m.name) and m.name not in reserved and m.name not in taken:
            out[i] = py_name(m.name, taken)
    for i, m in enumerate(models):
        if out[i] is None:
            out[i] = py_name(m.name, taken, reserved, fallback="Model")
    return out


def emit_source(spec: Spec, model: str | None = None, all_models: bool = False) -> str:
    """Standalone PyTorch source of the model: a class named after it, and one per block it
    uses, importing only torch.

    The classes build the same submodules (same state_dict keys and order) with PyTorch's
    default initialisation; ``load_state_dict(build_module(...).state_dict())`` makes the
    model's class compute the same outputs. With ``all_models``, one class per model of the
    spec (a block the models share is one class).
    """
    spec.raise_for_errors()
    try:
        return _emit(spec, model, all_models, flat=False)
    except _NameClash:
        return _emit(spec, model, all_models, flat=True)


def _emit(spec: Spec, model: str | None, all_models: bool, flat: bool) -> str:
    models = spec.program.models if all_models else [spec.model(model)]
    plans = [_plans(spec, m) for m in models]
    helpers = _helpers_src([row for p in plans for row in p])
    module_names = set(_MODULE_NAMES | _helper_names(helpers))
    model_classes = _class_names(models, module_names)
    em = _Emitter(spec, module_names, models[0].file if models else "")
    em.class_names |= set(model_classes)
    bufs = [_buffers(spec, m, p) for m, p in zip(models, plans)]
    em.buffers = {(m.name, b): got for m, p, bb in zip(models, plans, bufs)
                  for b, got in _buf.sources(p, bb).items()}
    plans = [_buf.strip(p, bb) for p, bb in zip(plans, bufs)]

    roots = []
    owner: dict[int, object] = {}
    blocks: list[tuple[_Scope, int, int]] = []
    reused: list[_Scope] = []  # instances applied again: the class of the first
    for i, (m, p) in enumerate(zip(models, plans)):
        readers: dict[str, set] = {}
        for node, _, _ in p:
            for v in node.inputs:
                readers.setdefault(v, set()).add(node.id)
        root = _tree(p, flat)
        _flow(root, p, m.output, readers)
        rename_stateless(root, p, stateful_names(spec.state_shapes(m.name)))
        roots.append(root)
        stack = [root]
        while stack:
            sc = stack.pop()
            for kind, x, _ in sc.items:
                if kind == "inst" and x.reuse is not None:
                    reused.append(x)
                elif kind == "inst":
                    stack.append(x)
                    owner[id(x)] = m
                    blocks.append((x, i, _first_node(x)))
    # bottom-up: a block's classes are final before the classes that instantiate them
    for h in sorted({sc.height for sc, _, _ in blocks}):
        groups: dict[tuple, list] = {}
        for sc, i, _ in sorted((b for b in blocks if b[0].height == h),
                               key=lambda b: (b[1], b[2])):
            raw = em.render(sc, models[i], plans[i])
            groups.setdefault(raw.key, []).append((sc, raw))
        for members in _merge_groups(groups, owner):
            em.finish(members[0][0].block, members, owner)
        for sc in reused:
            if sc.reuse.cls is not None:
                sc.cls, sc.values = sc.reuse.cls, sc.reuse.values
    heads, bodies = [], []
    for m, p, root, cname in zip(models, plans, roots, model_classes):
        raw = em.render(root, m, p)
        shapes = [{f[3]} for f in raw.fwd]
        bodies.append(em.class_lines(_Class(cname), raw, {}, shapes) + _training_src(spec, m))
        heads += em.header(m, cname)

    body: list[str] = []
    for helper in helpers:
        body += [helper, "", ""]
    for cls in em.classes:
        body += cls.lines + ["", ""]
    for i, lines in enumerate(bodies):
        body += (["", ""] if i else []) + lines
    used = _globals_of("\n".join(body))
    # only what is used (an unused import is a lint error), in isort's order
    imports = (["import math", ""] if "math" in used else []) + \
        (["import torch"] if "torch" in used else []) + \
        (["import torch.nn.functional as F"] if "F" in used else []) + ["from torch import nn"]
    lines = heads + ["# Regenerate rather than edit: the comments map each line to the spec.",
                     ""] + imports + ["", ""] + body
    return "\n".join(lines) + "\n"


def _first_node(s: _Scope) -> int:
    for kind, x, _ in s.items:
        return x if kind == "node" else _first_node(x)
    return 0


def _training_src(spec: Spec, m) -> list[str]:
    """``loss(...)``, ``configure_optimizer()`` and ``clip_gradients()`` from the model's
    train section, as a person writes them; nothing without a section."""
    from ...ir import training as T
    from ...layers.losses import LOSSES

    t = T.training_for(spec.program, m.name)
    if t is None:
        return []
    taken: set[str] = set()
    names = {a: py_name(a, taken, _RESERVED_LOCALS) for a in T.loss_args(t, m)}
    params = list(names.values())
    used = {a for term in t.terms for a in term.args}
    unpack = None
    if any(n in used for n in m.output_names if n):  # recon, mu, logvar = output
        unpack = [py_name(n, taken, _RESERVED_LOCALS) if n and n in used else "_"
                  for n in m.output_names]
        names.update((n, v) for n, v in zip(m.output_names, unpack) if v != "_")
    parts = []
    for term in t.terms:
        kind = LOSSES[term.loss]
        src = kind.torch_src(kind.Params.model_validate(term.params),
                             [names[a] for a in term.args])
        w = term.weight
        if w == 1.0:
            parts.append(("+", src))
        elif w == -1.0:
            parts.append(("-", src))
        else:
            parts.append(("-" if w < 0 else "+", f"{abs(w)!r} * {src}"))
    expr = ""
    for i, (sign, src) in enumerate(parts):
        expr += (f"-{src}" if sign == "-" else src) if i == 0 else f" {sign} {src}"
    out = ["", *_fit(f"def loss(self, {', '.join(params)}):", 4)]
    if unpack is not None:
        out += _fit(f"{', '.join(unpack)} = {names['output']}", 8)
    out += fit_return(expr or "torch.zeros(())", 8)
    if t.optimizer is not None:
        opt = T.OPTIMIZERS[t.optimizer].model_validate(t.optimizer_params)
        out += ["", "    def configure_optimizer(self):",
                *_fit(f"optimizer = {T.optimizer_src(t.optimizer, opt)}", 8)]
        sched = T.schedule_src(T.Schedule.model_validate(t.schedule or {}))
        if sched is not None:
            out += [*_fit(f"scheduler = {sched}", 8), "        return optimizer, scheduler"]
        else:
            out += ["        return optimizer"]
    if t.clip is not None:
        out += ["", "    def clip_gradients(self):",
                *_fit(f"return {T.clip_src(T.Clip.model_validate(t.clip))}", 8)]
    return out


def write_source(spec: Spec, path, model: str | None = None) -> str:
    """Write :func:`emit_source` to ``path`` atomically; returns the source."""
    text = emit_source(spec, model)
    write_atomic(os.fspath(path), text)
    return text
