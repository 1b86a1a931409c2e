"""Standalone PyTorch source of a spec's models, written without importing torch.

Every layer kind describes its torch form as data (:class:`~nnspec.layers.base.TorchPlan`);
:mod:`nnspec.backends.torch` instantiates that description in-process and this module
renders the very same description as Python a person would write: one ``nn.Module`` class
per block used (its constructor takes what differs between the block's instances), a
repetition (``Basic(64) * 2 as layer1``) as an ``nn.ModuleList`` and a loop, ``forward``
with the spec's value names, lines of at most 100 characters, each pointing back to the
spec line it comes from. State_dict keys are those of ``build_module``.

``nnspec compile -o model.py`` runs this without torch: what the generated file needs from
torch (the defaults of the ``nn`` classes' arguments, which ``nn.Module`` attributes a child
name would shadow) is frozen here and in :mod:`nnspec.ir.names`, and compared with the
installed torch by the tests. The layer families' torch helpers (a GRU cell with the reset
gate before the matmul, sinusoidal positions) are copied into the generated file from their
module's source text, read with :mod:`ast` without importing that module (which imports
torch). Nothing from a spec is ever executed as Python: names become identifiers through
:func:`nnspec.ir.names.py_name` and values are rendered as literals.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import keyword
import math
import os
import re
import symtable
from dataclasses import dataclass, field, replace

from ...core.dims import Dim
from ...core.util import write_atomic
from ...ir.names import MODULE_ATTRS, PY_BUILTINS, child_name_problem, plain, py_name
from ...ir.spec import Spec
from ...layers import REGISTRY
from ...layers.base import MODULE, In, ParamRef, Prev, SymDim, TorchCall, TorchModule
from ...stdlib import STDLIB
from ..plans import helper_parts as _helper_parts
from ..plans import plan_symbols as _plan_symbols
from ..plans import plans as _plans
from ..plans import symbol_sources as _symbol_sources

__all__ = ["emit_source", "write_source", "NN_SIGNATURES"]

#: Generated lines are at most this long (a spec-line comment moves above its statement,
#: a long call is broken after its opening bracket).
WIDTH = 100

_R = "<required>"  # a parameter without a default

#: ``inspect.signature(cls.__init__)`` of the ``torch.nn`` classes (and the helper classes)
#: a layer plan may construct: parameter names and defaults, so that an argument equal to
#: its default is left out as a person would leave it out. ``nn.RNN``/``GRU``/``LSTM`` take
#: ``*args, **kwargs``: nothing is left out there. A test compares this with torch.
NN_SIGNATURES: dict[str, tuple[tuple[str, object], ...]] = {}


def _sig(names: str, *classes: str) -> None:
    items = []
    for part in names.split():
        name, _, default = part.partition("=")
        items.append((name, _R if not _ else ast.literal_eval(default)))
    for cls in classes:
        NN_SIGNATURES[cls] = tuple(items)


_sig("output_size", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d")
_sig("output_size return_indices=False",
     "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d")
_sig("kernel_size stride=None padding=0 ceil_mode=False count_include_pad=True", "AvgPool1d")
_sig("kernel_size stride=None padding=0 ceil_mode=False count_include_pad=True "
     "divisor_override=None", "AvgPool2d", "AvgPool3d")
_sig("num_features eps=1e-05 momentum=0.1 affine=True track_running_stats=True device=None "
     "dtype=None bias=True", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d")
_sig("in_channels out_channels kernel_size stride=1 padding=0 dilation=1 groups=1 bias=True "
     "padding_mode='zeros' device=None dtype=None", "Conv1d", "Conv2d", "Conv3d")
_sig("in_channels out_channels kernel_size stride=1 padding=0 output_padding=0 groups=1 "
     "bias=True dilation=1 padding_mode='zeros' device=None dtype=None",
     "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")
_sig("p=0.5 inplace=False", "Dropout")
_sig("num_embeddings embedding_dim padding_idx=None max_norm=None norm_type=2.0 "
     "scale_grad_by_freq=False sparse=False _weight=None _freeze=False device=None "
     "dtype=None", "Embedding", "nnspec.layers.torch.attention:LearnedPositions")
_sig("", "GRU", "LSTM", "RNN")
_sig("normalized_shape eps=1e-05 elementwise_affine=True bias=True device=None dtype=None",
     "LayerNorm")
_sig("in_features out_features bias=True device=None dtype=None", "Linear")
_sig("in_features out_features bias=True", "nnspec.layers.torch.dense:TransposedLinear")
_sig("in_caps in_dim out_caps out_dim routings=3", "nnspec.layers.torch.capsule:CapsuleLayer")
_sig("always=False", "nnspec.layers.torch.capsule:CapsuleMask")
_sig("sample='train'", "nnspec.layers.torch.stochastic:Bernoulli",
     "nnspec.layers.torch.stochastic:GaussianSample")
_sig("std sample='train'", "nnspec.layers.torch.stochastic:GaussianNoise")
_sig("visible hidden k=1 output='hidden' sample_visible=False sample='train'",
     "nnspec.layers.torch.rbm:RBM")
_sig("embed_dim num_heads kv_heads=None dropout=0.0 bias=True qkv='packed' causal=False "
     "scale=None rope=False rope_theta=10000.0 rope_layout='half'",
     "nnspec.layers.torch.attention:SDPAttention")
_sig("kernel_size stride=None padding=0 dilation=1 return_indices=False ceil_mode=False",
     "MaxPool1d", "MaxPool2d", "MaxPool3d")
_sig("embed_dim num_heads dropout=0.0 bias=True add_bias_kv=False add_zero_attn=False "
     "kdim=None vdim=None batch_first=False device=None dtype=None",
     "MultiheadAttention", "nnspec.layers.torch.attention:MaskedAttention")
_sig("upscale_factor", "PixelShuffle")
_sig("downscale_factor", "PixelUnshuffle")
_sig("normalized_shape eps=None elementwise_affine=True device=None dtype=None", "RMSNorm")
_sig("size=None scale_factor=None mode='nearest' align_corners=None "
     "recompute_scale_factor=None", "Upsample")
_sig("input_size hidden_size num_layers=1 bias=True batch_first=True dropout=0.0 "
     "bidirectional=False", "nnspec.layers.torch.recurrent:ChoGRU")

# names of the positional arguments where the signature has none (``*args``)
_POSITIONAL = {"GRU": ("input_size", "hidden_size"), "LSTM": ("input_size", "hidden_size"),
               "RNN": ("input_size", "hidden_size")}

# Names every generated file defines or uses at module level: a class or local variable
# named like one of them (a model called ``torch`` or ``math``, an input called ``float``)
# would shadow it. The helpers' own names are added per file (_helper_names).
_MODULE_NAMES = frozenset({"torch", "nn", "F", "math"}) | PY_BUILTINS
# ``l``, ``O`` and ``I`` read like digits: linters refuse them as variable names (E741)
_RESERVED_LOCALS = _MODULE_NAMES | {"self", "dims", "l", "O", "I"}
# the methods a train section adds to the module (SpecModule has them always)
_TRAIN_METHODS = frozenset({"loss", "configure_optimizer", "clip_gradients"})
# calls nested in one expression of the generated forward, at most
_MAX_CHAIN = 32
_TUPLE_KW = {"kernel_size", "stride", "padding", "dilation", "output_size"}


# ---- literals and expressions ------------------------------------------------------------


def _comment(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in str(text))


def _str(s: str) -> str:
    """A string literal, double-quoted when that needs no escaping."""
    r = repr(s)
    if r[0] == "'" and '"' not in s and "'" not in s:
        return '"' + r[1:-1] + '"'
    return r


def _lit(v) -> str:
    """A Python literal for a plan value (never an arbitrary repr)."""
    if isinstance(v, str):
        return _str(v)
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, Dim):
        if not v.is_const:
            raise ValueError(f"symbolic size {v} where a constant is needed")
        return repr(v.value)
    if isinstance(v, int):
        return repr(int(v))
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else f'float("{v}")'
    if isinstance(v, tuple):
        inner = ", ".join(_lit(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, list):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_lit(k)}: {_lit(x)}" for k, x in v.items()) + "}"
    raise ValueError(f"cannot render {type(v).__name__} value {v!r} as a literal")


def _single_unit(p: Dim) -> bool:
    """p is one symbol with coefficient 1 (renders without parentheses)."""
    ((mono, c),) = p.terms.items()
    return c == 1 and len(mono) == 1 and isinstance(mono[0], str)


def _dim_src(d: Dim) -> str:
    """Python arithmetic over ``dims[...]`` for a Dim (``//`` for floor, ``-(-a // k)`` for
    ceil)."""
    if d.is_const:
        return repr(d.value)
    parts = []
    for mono, c in d.terms.items():
        atoms = []
        for a in mono:
            if isinstance(a, str):
                atoms.append(f"dims[{_str(a)}]")
                continue
            inner = _dim_src(a.poly)
            simple = len(a.poly.terms) == 1 and _single_unit(a.poly)
            if a._kind == 1:
                atoms.append(f"({inner if simple else f'({inner})'} // {a.k})")
            else:
                atoms.append(f"-(-{inner if simple else f'({inner})'} // {a.k})")
        if not atoms:
            parts.append((c < 0, str(abs(c))))
            continue
        atoms = [f"({x})" if x.startswith("-") else x for x in atoms]
        body = " * ".join(atoms)
        parts.append((c < 0, body if abs(c) == 1 else f"{abs(c)} * {body}"))
    out = ""
    for i, (neg, body) in enumerate(parts):
        if i == 0:
            out = f"-{body}" if neg else body
        else:
            out += f" - {body}" if neg else f" + {body}"
    return out


class _NameClash(ValueError):
    """Two modules of one class body under one name: the block structure read from the
    names and calls does not fit (an IR written by hand); the model is emitted flat."""


class _Code(str):
    """Source text that stands as it is in a call (another layer's parameter)."""


def _arg_src(a, ins: list[str], prev: str | None) -> str:
    if isinstance(a, _Code):
        return str(a)
    if isinstance(a, In):
        return ins[a.index]
    if isinstance(a, Prev):
        if prev is None:
            raise ValueError("Prev() in the first call of a layer")
        return prev
    if isinstance(a, SymDim):
        return _dim_src(a.dim)
    if isinstance(a, Dim):
        return _dim_src(a)
    if isinstance(a, tuple):
        inner = ", ".join(_arg_src(x, ins, prev) for x in a)
        return f"({inner},)" if len(a) == 1 else f"({inner})"
    if isinstance(a, list):
        return "[" + ", ".join(_arg_src(x, ins, prev) for x in a) + "]"
    return _lit(a)


def _index_src(a, ins: list[str], prev: str | None) -> str:
    """A subscript as written by hand: ``x[..., 4:68, a:a + w]`` (slices and ``...`` are
    rendered only here, where they are valid Python)."""
    if isinstance(a, tuple) and a:
        inner = ", ".join(_index_src(x, ins, prev) for x in a)
        return inner + ("," if len(a) == 1 else "")
    if a is Ellipsis:
        return "..."
    if isinstance(a, slice):
        text = ":".join("" if x is None else _arg_src(x, ins, prev) for x in (a.start, a.stop))
        return text + ("" if a.step is None else f":{_arg_src(a.step, ins, prev)}")
    return _arg_src(a, ins, prev)


def _fn_name(fn: str) -> str:
    """The name a call is written with: ``F.relu``, ``torch.cat``, a helper's own name.
    Layer plans come from nnspec's code, never from a spec; this still refuses anything that
    is not a plain public name (the in-process backend looks each one up in torch)."""
    if fn.startswith("nnspec."):
        return _helper_parts(fn)[1]
    for ns in ("F.", "torch."):
        if fn.startswith(ns):
            name = fn[len(ns):]
            if name.isidentifier() and not name.startswith("_") and not keyword.iskeyword(name):
                return fn
            raise ValueError(f"unknown torch function {fn!r}")
    raise ValueError(f"unknown torch call {fn!r}")


# element-wise arithmetic of two operands, written with its operator as by hand: y + x
_INFIX = {"torch.add": "+", "torch.sub": "-", "torch.mul": "*", "torch.div": "/"}
_OPERAND = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*|-?[0-9]+(\.[0-9]*)?(e[-+]?[0-9]+)?")


def _call_src(call: TorchCall, mod_ref: str | None, ins: list[str], prev: str | None) -> str:
    if call.fn == "getitem":
        return f"{_arg_src(call.args[0], ins, prev)}[{_index_src(call.args[1], ins, prev)}]"
    if call.fn == "tuple":  # several values returned as one: (a, b)
        return "(" + ", ".join(_arg_src(a, ins, prev) for a in call.args) + ")"
    args = [_arg_src(a, ins, prev) for a in call.args]
    if call.fn in _INFIX and len(args) == 2 and not call.kwargs:
        a, b = (x if _OPERAND.fullmatch(x) else f"({x})" for x in args)
        return f"{a} {_INFIX[call.fn]} {b}"
    for k in call.kwargs:
        if not (k.isidentifier() and not keyword.iskeyword(k)):
            raise ValueError(f"invalid keyword argument {k!r}")
    kws = [f"{k}={_arg_src(v, ins, prev)}" for k, v in call.kwargs.items()]
    if call.fn == MODULE:
        return f"{mod_ref}({', '.join(args + kws)})"
    if call.fn.startswith("."):
        name = call.fn[1:]
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"invalid method name in torch call {call.fn!r}")
        if not args:
            raise ValueError(f"method call {call.fn!r} needs a first argument")
        first = args[0]
        if not (first.isidentifier() or first.endswith(")")):
            first = f"({first})"
        return f"{first}{call.fn}({', '.join(args[1:] + kws)})"
    return f"{_fn_name(call.fn)}({', '.join(args + kws)})"


# ---- the layer families' torch helpers, read as text --------------------------------------


@functools.lru_cache(maxsize=None)
def _helper_module(mod_name: str) -> dict[str, tuple[str, frozenset]]:
    """name -> (source, the module's other top-level definitions it uses) of every top-level
    function and class of a helper module, read from its file: the module itself is not
    imported (it imports torch)."""
    found = importlib.util.find_spec(mod_name)
    if found is None or not found.origin or not found.origin.endswith(".py"):
        raise ValueError(f"no source for the torch helpers {mod_name}")
    with open(found.origin, encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines()
    defs = {n.name: n for n in ast.parse(text).body
            if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    out = {}
    for name, n in defs.items():
        start = n.decorator_list[0].lineno if n.decorator_list else n.lineno
        src = "\n".join(lines[start - 1:n.end_lineno]).rstrip()
        used = {x.id for x in ast.walk(n) if isinstance(x, ast.Name)} - {name}
        out[name] = (src, frozenset(used & defs.keys()))
    return out


def _helper_def(ref: str) -> tuple[str, str, tuple[str, ...]]:
    """(name, source, refs of the helpers it needs) of one helper."""
    mod_name, name = _helper_parts(ref)
    defs = _helper_module(mod_name)
    if name not in defs:
        raise ValueError(f"{mod_name} has no {name}")
    src, deps = defs[name]
    return name, src, tuple(f"{mod_name}:{d}" for d in sorted(deps))


def _helpers_src(plans) -> list[str]:
    """Source of the layer-family helpers the plans use, each after those it needs."""
    refs = []
    for _, _, plan in plans:
        if plan.module is not None and plan.module.cls.startswith("nnspec."):
            refs.append(plan.module.cls)
        refs += [c.fn for c in plan.calls if c.fn.startswith("nnspec.")]
    out: list[str] = []
    done: set[str] = set()

    def add(ref: str) -> None:
        if ref in done:
            return
        done.add(ref)
        _, src, deps = _helper_def(ref)
        for dep in deps:
            add(dep)
        out.append(src)

    for ref in dict.fromkeys(refs):
        add(ref)
    return out


def _helper_names(helpers: list[str]) -> set[str]:
    """The global names of the copied helper sources, those they define and those they
    read: a class or local of the generated file must not shadow them (a model named
    ``ChoGRU`` or ``add_sinusoidal``, a local ``math``). Their own locals do not count."""
    return set().union(*(_globals_of(src) for src in helpers))


@functools.lru_cache(maxsize=None)
def _globals_of(src: str) -> frozenset[str]:
    out: set[str] = set()
    stack = [symtable.symtable(src, "<helper>", "exec")]
    while stack:
        table = stack.pop()
        top = table.get_type() == "module"
        out.update(s.get_name() for s in table.get_symbols() if top or s.is_global())
        stack += table.get_children()
    return frozenset(out)


# ---- submodule constructors, with the arguments that differ between instances as slots ---


@dataclass(frozen=True)
class _Slot:
    """A literal in a class's ``__init__`` that may differ between the block's instances;
    ``name`` is what a constructor parameter for it would be called. A keyword argument
    (``kw``) is left out where it is the same in every instance and equal to its default
    (``stride=1``), as a person leaves it out."""

    value: object
    name: str
    kw: str | None = None
    default: object = _R

    @property
    def text(self) -> str:
        return _lit(self.value)

    @property
    def is_default(self) -> bool:
        return self.default is not _R and type(self.default) is type(self.value) \
            and self.default == self.value


class _Sep:
    """``, `` between two arguments of a call, written only where both are."""


_SEP = _Sep()


def _slot_or_lit(v, name: str):
    if isinstance(v, (int, float, Dim)) and not isinstance(v, bool) or (
            isinstance(v, tuple) and v and all(type(x) is int for x in v)):
        return _Slot(v, name)
    return _lit(v)


def _module_pieces(m: TorchModule) -> list:
    """``nn.Conv2d(<in_channels>, <out_channels>, kernel_size=<3>)`` as text and slots."""
    if m.cls.startswith("nnspec."):
        head = _helper_parts(m.cls)[1]
    elif m.cls.isidentifier() and not m.cls.startswith("_"):
        head = f"nn.{m.cls}"
    else:
        raise ValueError(f"invalid torch module class {m.cls!r}")
    sig = NN_SIGNATURES.get(m.cls)
    if sig is None:
        raise ValueError(f"torch.nn has no module class {m.cls!r} known to nnspec's source "
                         "emitter")
    defaults = dict(sig)
    names = [k for k, _ in sig] or list(_POSITIONAL.get(m.cls, ()))
    args: list = []
    for i, a in enumerate(m.args):
        args.append([_slot_or_lit(a, names[i] if i < len(names) else f"arg{i}")])
    for k, v in m.kwargs.items():
        if not (k.isidentifier() and not keyword.iskeyword(k)):
            raise ValueError(f"invalid keyword argument {k!r}")
        default = defaults.get(k, _R)
        if k in _TUPLE_KW and isinstance(v, tuple) and v and len(set(v)) == 1 \
                and all(type(x) is int for x in v) \
                and not (type(default) is type(v) and default == v):
            v = v[0]  # kernel_size=3 for (3, 3)
        _lit(v)  # a value that is no literal is refused here, not when rendered
        args.append([_Slot(v, k, kw=k, default=default)])
    return _call_pieces(head, args)


def _call_pieces(head: str, args: list[list]) -> list:
    out: list = [f"{head}("]
    for i, a in enumerate(args):
        if i:
            out.append(_SEP)
        out += a
    out.append(")")
    return out


def _render(pieces: list, text_of=None) -> str:
    """The text of pieces; ``text_of(slot, index)`` gives a slot's text (default: its
    literal, or nothing for a keyword at its default); index counts the slots."""
    out: list[str] = []
    pending = False
    j = 0
    for p in pieces:
        if p is _SEP:
            pending = True
            continue
        if isinstance(p, _Slot):
            t = text_of(p, j) if text_of else _slot_text(p, None)
            j += 1
        else:
            t = p
        if not t:
            continue
        if pending and out and not out[-1].endswith(("(", "[")) and t[0] not in ")]":
            out.append(", ")
        pending = False
        out.append(t)
    return "".join(out)


def _slot_text(p: _Slot, param: str | None) -> str:
    """A slot as written: its parameter's name, or its literal (nothing for a keyword at
    its default)."""
    if param is not None:
        return f"{p.kw}={param}" if p.kw else param
    if p.kw:
        return "" if p.is_default else f"{p.kw}={p.text}"
    return p.text


# ---- child names -------------------------------------------------------------------------


def _module_attr(name: str) -> bool:
    return name in MODULE_ATTRS or name in _TRAIN_METHODS


def _check_child_name(name: str, full: str) -> None:
    problem = child_name_problem(name)
    if problem is not None:
        raise ValueError(f"layer {full!r}: {problem[0]}")


def _attr_ok(name: str) -> bool:
    """``self.name`` reaches the child ``name``: not a keyword, not mangled (``__x`` in a
    class body), not private (torch's own or a class attribute such as ``__qualname__``),
    and not an nn.Module attribute (``forward``), which attribute lookup finds first."""
    return plain(name) and not name.startswith("_") and not _module_attr(name)


def _via_modules(name: str) -> bool:
    """Only ``_modules`` reaches the child: getattr/add_module would find or refuse an
    attribute of that name (an nn.Module method, ``__qualname__``, a private one)."""
    return name.startswith("_") or _module_attr(name)


def _child(parent: str, name: str) -> str:
    if _attr_ok(name):
        return f"{parent}.{name}"
    if _via_modules(name):
        return f"{parent}._modules[{_str(name)}]"
    return f"getattr({parent}, {_str(name)})"  # a keyword or a digit: "class", "0"


def _assign_child(parent: str, name: str) -> str:
    """The text before the value that registers child ``name`` of ``parent``."""
    if _attr_ok(name):
        return f"{parent}.{name} = "
    if _via_modules(name):  # registered without add_module's check
        return f"{parent}._modules[{_str(name)}] = "
    return f"{parent}.add_module({_str(name)}, "


def _assign_pieces(parent: str, name: str, value: list) -> list:
    head = _assign_child(parent, name)
    return [head, *value] + ([")"] if head.endswith(", ") else [])


# ---- the block structure of a model ------------------------------------------------------


@dataclass(eq=False)
class _Scope:
    """The model or one block instance: its items in node order, each a layer
    ("node", index in plans, local name) or a block instance ("inst", scope, local name)."""

    path: str
    block: str | None
    call: tuple | None
    parent: _Scope | None
    items: list = field(default_factory=list)
    defined: set = field(default_factory=set)   # value ids made inside (descendants too)
    inputs: list = field(default_factory=list)  # ids read from outside, in order of use
    output: str | None = None
    own_symbols: set = field(default_factory=set)  # the symbols its own layers use
    symbols: bool = False                       # it or a descendant needs dims[...]
    height: int = 0
    cls: _Class | None = None
    values: list = field(default_factory=list)  # its class's constructor arguments
    reuse: _Scope | None = None  # the instance this one applies again (shared weights)
    names: set = field(default_factory=set)     # the layer names inside (descendants too)


def _tree(plans, flat: bool = False) -> _Scope:
    """The model's scope with its block instances as children, from the dotted layer names
    and ``called_from`` (a repetition ``Basic(64) * 2 as layer1`` gives the instances
    layer1.0 and layer1.1). A name or call that does not fit (an IR written by hand) leaves
    the layer in its enclosing scope under its dotted name: nothing is lost."""
    root = _Scope("", None, None, None)
    scopes = {"": root}
    prev = root
    for k, (node, _, _) in enumerate(plans):
        parts = node.name.split(".")
        cur, i = root, 0
        for c in () if flat else (tuple(c) for c in reversed(node.called_from)):  # outermost 1st
            if not c or i >= len(parts) - 1:
                break
            j = i + 1
            if j < len(parts) - 1 and parts[j].isdigit():
                j += 1
            path = ".".join(parts[:j])
            s = scopes.get(path)
            if s is not None and node.shared and s.parent is cur and (
                    node.name in s.names or s.call != c):
                # the instance applied again (``x2 | tower``): a call of the same module
                s = scopes[path] = _Scope(path, str(c[0]), c, cur, reuse=s.reuse or s)
                cur.items.append(("inst", s, _rel(path, cur)))
            elif s is None:
                s = scopes[path] = _Scope(path, str(c[0]), c, cur)
                cur.items.append(("inst", s, _rel(path, cur)))
            elif s.call != c or s.parent is not cur or not _within(prev, s):
                break  # left and entered again, or another call: not one block instance
            s.names.add(node.name)
            cur, i = s, j
        cur.items.append(("node", k, _rel(node.name, cur)))
        prev = cur
    return root


def _path_ref(path: str, parent: str = "self") -> str:
    """``self.encoder.fc.weight`` for the dotted path of a module or parameter below
    ``parent``."""
    for part in path.split("."):
        parent = _child(parent, part)
    return parent


def _within(s: _Scope | None, outer: _Scope) -> bool:
    while s is not None:
        if s is outer:
            return True
        s = s.parent
    return False


def _rel(name: str, scope: _Scope) -> str:
    return name[len(scope.path) + 1:] if scope.path else name


def _flow(s: _Scope, plans, model_output: str, readers: dict) -> None:
    """Fill in what s and its descendants define, read and return (post-order). A child
    that is no function of its inputs (more than one value leaves it, or none: it returns
    its input) is inlined, its layers under their dotted names."""
    items = []
    for item in s.items:
        if item[0] == "inst":
            child = item[1]
            _flow(child, plans, model_output, readers)
            if child.output is None:
                items += [(kind, x, f"{item[2]}.{local}") for kind, x, local in child.items]
                for kind, x, _ in child.items:
                    if kind == "inst":
                        x.parent = s
                continue
        items.append(item)
    s.items = items
    for kind, x, _ in items:
        if kind == "node":
            node, _, plan = plans[x]
            s.defined.add(node.id)
            s.own_symbols |= _plan_symbols(plan)
        else:
            s.defined |= x.defined
            s.symbols |= x.symbols
            s.height = max(s.height, x.height + 1)
    s.symbols |= bool(s.own_symbols)
    seen: set = set()
    for kind, x, _ in items:
        for v in (plans[x][0].inputs if kind == "node" else x.inputs):
            if v not in s.defined and v not in seen:
                seen.add(v)
                s.inputs.append(v)
    if s.parent is None:
        s.output = model_output
        return
    outs = [v for v in s.defined if v == model_output or readers.get(v, set()) - s.defined]
    if not outs:  # nothing reads its value (a dead branch): the one value unread inside
        made = [plans[x][0].id if kind == "node" else x.output for kind, x, _ in items]
        outs = [v for v in made if not readers.get(v, set()) & s.defined]
    s.output = outs[0] if len(outs) == 1 else None


# ---- classes ------------------------------------------------------------------------------


@dataclass(eq=False)
class _Class:
    """One generated class: the instances of a block that render alike, or a model."""

    name: str
    params: list = field(default_factory=list)  # constructor parameter names
    symbols: bool = False                       # forward takes ``dims``
    lines: list = field(default_factory=list)   # the class's source lines


@dataclass
class _Raw:
    """A scope rendered as a class body before its constructor parameters are known."""

    init: list            # pieces per line
    fwd: list             # (indent, code, note, shape) per line
    args: list            # forward's argument names after self (dims included)
    key: tuple = ()
    slots: list = field(default_factory=list)
    nums: list = field(default_factory=list)  # per forward line: its _Num literals


class _Emitter:
    """Renders the scopes of one file's models as classes."""

    def __init__(self, spec: Spec, module_names: set, main_file: str):
        self.spec = spec
        self.module_names = module_names
        self.main_file = main_file
        self.classes: list[_Class] = []
        self.class_names: set[str] = set()
        self.shapes: dict[str, dict[str, str]] = {}

    # -- paths and comments --
    def path(self, file: str) -> str:
        return _display(file, self.main_file)

    def note(self, file, line, text) -> str:
        return f"{_comment(self.path(file))}:{line}  {_comment(text)}"

    def call_note(self, call: tuple) -> str:
        """``file:line  Basic(64) * 2 as layer1`` for a block call (the text from the spec's
        source when it is at hand)."""
        text = f"{call[0]}(...)"
        src = self.spec.sources.get(call[1])
        if src is not None and len(call) == 6:
            try:
                line = src.line_text(int(call[2]))
                end = int(call[5]) - 1 if call[4] == call[2] else len(line)
                got = line[int(call[3]) - 1:end].strip()
                if got:
                    text = got + (" ..." if call[4] != call[2] else "")
            except (IndexError, TypeError, ValueError):
                pass
        return self.note(call[1], call[2], text)

    def shape(self, m, vid: str) -> str | None:
        got = self.shapes.get(m.name)
        if got is None:
            got = self.shapes[m.name] = {r.node.id: str(r.output)
                                         for r in self.spec.layers(m.name)}
        return got.get(vid)

    def header(self, m, cls_name: str) -> list[str]:
        spec = self.spec
        in_doc = ", ".join(f"{_comment(i.name)}: [{', '.join(i.shape)}]" for i in m.inputs)
        own = _comment(self.path(m.file))
        used = sorted({_comment(os.path.basename(self.path(n.span[0])))
                       for n in m.nodes if n.span and n.span[0] != m.file})
        source = own or "a spec"
        if used:
            source += f" (with blocks from {', '.join(used)})"
        renamed = f" (class {cls_name})" if cls_name != m.name else ""
        return _comment_lines(f"{_comment(m.name)}{renamed}: PyTorch module generated by "
                              f"nnspec from {source}.") + \
            _comment_lines(f"{in_doc} -> {spec.output_type(m.name)}; "
                           f"{spec.param_count(m.name):,} parameters.")

    # -- one scope --
    def render(self, s: _Scope, m, plans) -> _Raw:
        """The class body of scope s (its children have their classes already)."""
        init: list[list] = []
        refs: dict[int, str] = {}  # item index -> the module reference in forward
        lists = _module_lists(s.items, plans)
        containers: set[str] = set()
        registered: set[str] = set()

        def value_of(item) -> list:
            if item[0] == "node":
                return _module_pieces(plans[item[1]][2].module)
            return _instance_pieces(item[1])

        for idx, item in enumerate(s.items):
            kind, x, local = item
            if kind == "node" and plans[x][2].module is None:
                continue
            if kind == "node" and plans[x][0].shared or kind == "inst" and x.reuse is not None:
                refs[idx] = _path_ref(local)  # applied again: the module made before
                continue
            group = lists.get(idx)
            if group is not None:
                name, members, pos = group
                ref = f"{_child('self', name)}[{pos}]"
                if pos == 0:
                    if name in registered or name in containers:
                        raise _NameClash(f"the layer name {name!r} is used twice")
                    elems = [value_of(s.items[j]) for j in members]
                    init.append(_assign_pieces("self", name, _list_pieces(elems)))
                    registered.add(name)
            else:
                parts = local.split(".")
                parent = "self"
                for j, part in enumerate(parts[:-1]):
                    sub = ".".join(parts[:j + 1])
                    _check_child_name(part, sub)
                    if sub in registered:
                        raise _NameClash(f"the layer name {sub!r} is used twice")
                    if sub not in containers:
                        init.append(_assign_pieces(parent, part, ["nn.Module()"]))
                        containers.add(sub)
                    parent = _child(parent, part)
                _check_child_name(parts[-1], local)
                if local in registered or local in containers:
                    raise _NameClash(f"the layer name {local!r} is used twice")
                registered.add(local)
                init.append(_assign_pieces(parent, parts[-1], value_of(item)))
                ref = _child(parent, parts[-1])
            refs[idx] = ref
            if kind == "node":
                node, row, _ = plans[x]
                layer = REGISTRY[node.op]
                for suffix, w in row.weights.items():
                    if w.tied:  # lm_head.weight = wte.weight: one Parameter
                        init.append([f"{_path_ref(suffix, ref)} = "
                                     f"{_path_ref(_rel(w.tied, s))}"])
                        continue
                    chosen = layer.init_for(node.p, suffix, w)
                    if chosen is not None:  # the spec's initialiser, as nn.init writes it
                        init.append([chosen.torch_src(f"{ref}.{suffix}")])
        fwd, args = self.forward(s, m, plans, refs, lists)
        raw = _Raw(init, fwd, args)
        _slots_and_key(raw, s.block)
        return raw

    def forward(self, s: _Scope, m, plans, refs, lists) -> tuple[list, list]:
        """(lines, argument names) of scope s's forward. A value takes the name the spec
        gave it (``y = x | conv ...``), else the variable of the input it replaces when that
        input is read no more (``x = self.conv1(x)``), else its layer's name."""
        reserved = self.module_names | _RESERVED_LOCALS
        names = getattr(m, "_value_names", None) or {}
        prefix = s.path + "." if s.path else ""
        call_args = (getattr(m, "_block_args", None) or {}).get(s.path)
        live: dict[str, str] = {}   # variable -> the value id it holds
        var: dict[str, str] = {}    # value id -> variable

        def pick(base: str, vid: str) -> str:
            base = py_name(base, set(), reserved)
            cand, i = base, 2
            while cand in live or cand in reserved:
                cand, i = f"{base}_{i}", i + 1
            live[cand] = vid
            var[vid] = cand
            return cand

        def drop(vids) -> None:
            for v in vids:
                if live.get(var[v]) == v:
                    del live[var[v]]

        if s.parent is None:
            args = [pick(inp.name, inp.id) for inp in m.inputs]
        else:
            param_of = {v: k for k, v in (call_args[1] if call_args else {}).items()}
            args = [pick(param_of.get(v, "x"), v) for v in s.inputs]
        reads = [list(plans[x][0].inputs) if kind == "node" else list(x.inputs)
                 for kind, x, _ in s.items]
        last: dict[str, int] = {}
        for k, ids in enumerate(reads):
            for v in ids:
                last[v] = k
        if s.output is not None:
            last[s.output] = len(s.items)
        fwd: list = []
        if s.symbols:
            if s.parent is None:
                fwd.append((0, _dims_line(m, _scope_symbols(s), args), None, None))
            else:
                args.append("dims")
        tmp = None
        returned = False
        k = 0
        while k < len(s.items):
            kind, x, local = s.items[k]
            ins = [var[v] for v in reads[k]]
            dying = [v for v in dict.fromkeys(reads[k]) if last.get(v) == k]
            n = self.loop_count(s, k, lists, reads, last) if kind == "inst" else 0
            if n:
                # for layer in self.layers: x = layer(x, mem)
                out_id = s.items[k + n - 1][1].output
                drop(dying)
                target = ins[0]
                live[target], var[out_id] = out_id, target
                loop = py_name("layer", set(), reserved | set(live))
                more = ins[1:] + (["dims"] if x.cls.symbols else [])
                fwd.append((0, f"for {loop} in {_child('self', lists[k][0])}:",
                            self.call_note(x.call), self.shape(m, out_id)))
                fwd.append((1, f"{target} = {loop}({', '.join([target] + more)})", None, None))
                k += n
                continue
            if kind == "node":
                node, _, plan = plans[x]
                expr = None
                for j, call in enumerate(plan.calls):
                    if any(isinstance(a, ParamRef) for a in call.args):
                        call = replace(call, args=tuple(
                            _Code(_path_ref(_rel(a.key, s))) if isinstance(a, ParamRef) else a
                            for a in call.args))
                    if j and j % _MAX_CHAIN == 0:
                        # Python's parser refuses more than 200 nested parentheses:
                        # add(a, b, ...) of many tensors is a chain of calls, in steps
                        tmp = tmp or pick("t", "<tmp>")
                        fwd.append((0, f"{tmp} = {expr}", None, None))
                        expr = tmp
                    expr = _call_src(call, refs.get(k), ins, expr)
                if expr is None:
                    expr = ins[0]
                out_id = node.id
                note = self.note(*_where(node))
                fallback = local.split(".")[-1]
                if fallback.isdigit() or not fallback.isidentifier():
                    fallback = node.op
            else:
                more = ["dims"] if x.cls.symbols else []
                expr = f"{refs[k]}({', '.join(ins + more)})"
                out_id = x.output
                note = self.call_note(x.call)
                fallback = local.split(".")[0]
            shape = self.shape(m, out_id)
            drop(dying)
            unpacked = self.unpacking(s, m, k, out_id, plans, reads, last)
            if unpacked is not None:  # s, p = self.heads(x): one name per value
                targets = ["_"] * unpacked[0]
                for j in unpacked[1]:
                    item = plans[s.items[j][1]][0]
                    if item.id in last:
                        targets[item.p.index] = pick(
                            names.get((prefix, item.id)) or f"v{item.p.index}", item.id)
                fwd.append((0, f"{', '.join(targets)} = {expr}", note, shape))
                k = unpacked[1][-1] + 1
                continue
            k += 1
            if kind == "node" and node.op == "pack" and out_id == s.output \
                    and k == len(s.items):
                fwd.append((0, f"return {', '.join(ins)}", note, shape))  # return a, b
                returned = True
                continue
            if out_id not in last:  # never read: a dead branch, computed as build_module does
                fwd.append((0, expr, note, shape))
                continue
            base = names.get((prefix, out_id))
            if base is None and dying and dying[0] == reads[k - 1][0]:
                base = var[dying[0]]
            fwd.append((0, f"{pick(base or fallback, out_id)} = {expr}", note, shape))
        if s.output is not None and not returned:
            fwd.append((0, f"return {var[s.output]}", None, None))
        return fwd, args

    def unpacking(self, s: _Scope, m, k: int, out_id: str, plans, reads, last):
        """(number of values, item indexes) when item k makes several values that only the
        ``item`` nodes right after it read, each value at most once: ``a, b = <call>``."""
        j, got, seen = k + 1, [], set()
        while j < len(s.items) and s.items[j][0] == "node" and reads[j] == [out_id]:
            item = plans[s.items[j][1]][0]
            if item.op != "item" or item.p.index in seen:
                break
            seen.add(item.p.index)
            got.append(j)
            j += 1
        if not got or last.get(out_id) != got[-1] or out_id == s.output:
            return None
        t = self.spec.types(m.name).types.get(out_id)
        return len(getattr(t, "items", ())) or max(seen) + 1, got

    def loop_count(self, s: _Scope, k: int, lists, reads, last) -> int:
        """n when items k..k+n-1 are a repetition ``B(...) * n as name`` of one class that
        can run as ``for layer in self.name: x = layer(x)``, else 0."""
        group = lists.get(k)
        if group is None or group[2] != 0:
            return 0
        _, members, _ = group
        if members != list(range(k, k + len(members))) or len(members) < 2:
            return 0
        if any(s.items[j][1].cls is not s.items[k][1].cls for j in members):
            return 0
        first = reads[k]
        if not first or last.get(first[0]) != k or first[0] in first[1:]:
            return 0  # the chain's input is read again later: its variable stays
        for a, b in zip(members, members[1:]):
            out = s.items[a][1].output
            if reads[b][:1] != [out] or reads[b][1:] != first[1:] or last.get(out) != b:
                return 0
        return len(members)

    # -- the classes of a block --
    def finish(self, block: str, members: list[tuple[_Scope, _Raw]], models: dict) -> None:
        """One class for instances of a block that render alike: a literal that differs
        between them becomes a constructor parameter (one per distinct column of values:
        a conv's in and out channels that are equal in every instance are one). A literal
        of ``forward`` that differs is a parameter too, kept on ``self`` (U-Net's crop)."""
        s0, raw0 = members[0]
        n = len(raw0.slots)
        texts = [tuple(raw.slots[j].text for _, raw in members) for j in range(n)]
        where = [(i, q) for i, line in enumerate(raw0.nums) for q in range(len(line))]
        ftexts = [tuple(raw.nums[i][q].text for _, raw in members) for i, q in where]
        calls = [(getattr(models[id(sc)], "_block_args", None) or {}).get(sc.path)
                 for sc, _ in members]
        reserved = self.module_names | _RESERVED_LOCALS | self.class_names
        # an attribute must not be a child's name or an nn.Module attribute (``training``)
        attr_reserved = reserved | MODULE_ATTRS | _TRAIN_METHODS | {
            local.split(".")[0] for _, _, local in s0.items}
        wanted: dict[tuple, list] = {}  # a column of differing values -> [name, on self]
        for counts in (False, True):  # the counts of loops last, as a block lists them
            for j in range(n):
                if len(set(texts[j])) > 1 and isinstance(raw0.slots[j], _Count) == counts:
                    wanted.setdefault(texts[j], [raw0.slots[j].name, False])
        for (i, q), col in zip(where, ftexts):
            if len(set(col)) > 1:
                wanted.setdefault(col, [raw0.nums[i][q].name, False])[1] = True
        taken: set[str] = set()
        param_of: dict[tuple, str] = {}
        for col, (natural, on_self) in wanted.items():
            want = _param_name(natural, col, calls)
            if on_self:
                want = want.lstrip("_") or "value"
            param_of[col] = py_name(want, taken, attr_reserved if on_self else reserved)
        slot_param = {j: param_of[texts[j]] for j in range(n) if texts[j] in param_of}
        num_param = {w: param_of[col] for w, col in zip(where, ftexts) if col in param_of}
        params = list(param_of.values())
        on_self = [param_of[col] for col, (_, attr) in wanted.items() if attr]
        cls = _Class(self.class_name(block), params, s0.symbols)
        for sc, raw in members:
            got = {}
            for j, p in slot_param.items():
                got.setdefault(p, raw.slots[j].value)
            for (i, q), p in num_param.items():
                got.setdefault(p, raw.nums[i][q].value)
            sc.cls = cls
            sc.values = [got[p] for p in params]
        shapes = [{raw.fwd[i][3] for _, raw in members} for i in range(len(raw0.fwd))]
        cls.lines = self.class_lines(cls, raw0, slot_param, shapes, num_param, on_self)
        self.classes.append(cls)

    def class_name(self, base: str, fallback: str = "Block") -> str:
        # ``self`` too: a class is instantiated inside ``__init__(self)``
        base = py_name(base, set(), self.module_names | {"self"}, fallback=fallback)
        name, i = base, 2
        while name in self.class_names:
            name, i = f"{base}{i}", i + 1
        self.class_names.add(name)
        return name

    def class_lines(self, cls: _Class, raw: _Raw, slot_param: dict, shapes: list,
                    num_param: dict | None = None, on_self: list | None = None) -> list:
        """The class's source. ``slot_param``: slot index -> the parameter it is written as;
        ``num_param``: (forward line, literal) -> the parameter on ``self`` written there;
        ``on_self``: the parameters kept as attributes, for forward."""
        out = [f"class {cls.name}(nn.Module):",
               *_fit(f"def __init__({', '.join(['self'] + cls.params)}):", 4),
               "        super().__init__()"]
        out += [f"        {_child('self', p)} = {p}" for p in on_self or ()]
        first = 0
        for line in raw.init:
            def text_of(p: _Slot, j: int, first=first) -> str:
                return _slot_text(p, slot_param.get(first + j))

            indent = 8
            if line and line[0] is _INDENT:  # the body of a loop in __init__
                line, indent = line[1:], 12
            out += _fit(_render(line, text_of), indent)
            first += sum(isinstance(p, _Slot) for p in line)
        out += ["", *_fit(f"def forward({', '.join(['self'] + raw.args)}):", 4)]
        for i, (indent, code, note, _) in enumerate(raw.fwd):
            nums = raw.nums[i] if num_param and i < len(raw.nums) else ()
            for q in reversed(range(len(nums))):
                p = num_param.get((i, q))
                if p is not None:
                    code = code[:nums[q].start] + _child("self", p) + code[nums[q].end:]
            shape = next(iter(shapes[i])) if len(shapes[i]) == 1 else None
            out += _with_note(code, 8 + 4 * indent, note, shape)
        return out


def _param_name(natural: str, values: tuple, calls: list) -> str:
    """A constructor parameter's name: the block parameter that has these values in every
    instance (``c``; one named like the slot first), else the slot's own name
    (``in_channels``)."""
    if calls and all(c is not None for c in calls):
        options = []
        for pname in calls[0][2]:
            try:
                if all(pname in c[2] and _lit(c[2][pname]) == v for c, v in zip(calls, values)):
                    options.append(pname)
            except ValueError:
                continue
        if options:
            return natural if natural in options else options[0]
    return natural


# ---- which instances share a class: literals of forward, repetition counts ---------------


class _Indent:
    """Starts a line of ``__init__`` that is the body of a loop (one level deeper)."""


_INDENT = _Indent()


@dataclass(frozen=True)
class _Num:
    """A number literal in a line of forward (at ``start:end``, its unary minus included):
    where the instances of a block differ in it, it becomes a constructor parameter kept
    on ``self``; ``name`` is what that parameter would be called."""

    start: int
    end: int
    text: str
    name: str

    @property
    def value(self):
        return ast.literal_eval(self.text)


# a string literal (skipped), or a number that is no part of a name or attribute
_NUMBER = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|'
                     r'(?<![\w.)\]])(-?[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?)(?![\w.])')
_KEYWORD = re.compile(r"(?<![=!<>])\b([A-Za-z_]\w*)=$")
_CALLEE = re.compile(r"([A-Za-z_]\w*)$")


def _numbers(code: str) -> list[_Num]:
    out = []
    for m in _NUMBER.finditer(code):
        if m.group(1) is not None:
            start, end = m.span(1)
            out.append(_Num(start, end, m.group(1), _num_name(code, start, end)))
    return out


def _num_name(code: str, start: int, end: int) -> str:
    """A name for the number at ``code[start:end]`` from where it stands: the keyword it is
    given to (``dim``), the part of a slice (``start``, ``stop``, ``step``) or ``index``
    in a subscript, ``n`` for ``range``, ``<function>_arg`` for another call."""
    before = code[:start].rstrip()
    kw = _KEYWORD.search(before)
    if kw:
        return kw.group(1)
    opens: list[int] = []
    sep = -1
    for i, ch, _ in _scan(code[:start]):
        if ch in "([{":
            opens.append(i)
        elif ch in ")]}" and opens:
            opens.pop()
        elif ch == "," and opens:
            sep = i
    if not opens:
        return "value"
    o = opens[-1]
    if code[o] == "[" and o and (code[o - 1].isalnum() or code[o - 1] in "_)]"):
        colons = code[max(o, sep) + 1:start].count(":")
        if colons:
            return "stop" if colons == 1 else "step"
        return "start" if code[end:].lstrip().startswith(":") else "index"
    callee = _CALLEE.search(code[:o]) if code[o] == "(" else None
    if callee is None:
        return "value"
    return "n" if callee.group(1) == "range" else f"{callee.group(1)}_arg"


def _template(line: list) -> tuple:
    return tuple("\0" if isinstance(p, _Slot) else p for p in line)


def _code_template(code: str, nums: list[_Num]) -> str:
    for num in reversed(nums):
        code = code[:num.start] + "\0" + code[num.end:]
    return code


def _slots_and_key(raw: _Raw, block: str | None) -> None:
    """Fill in ``raw``'s slots, forward literals and key: instances with equal keys (equal
    but for their slots and forward literals) share one class."""
    raw.slots = [p for line in raw.init for p in line if isinstance(p, _Slot)]
    raw.nums = [_numbers(code) for _, code, _, _ in raw.fwd]
    raw.key = (block, tuple(_template(line) for line in raw.init),
               tuple((i, _code_template(c, nums), n)
                     for (i, c, n, _), nums in zip(raw.fwd, raw.nums)),
               tuple(raw.args))


# A child of a repetition: ``self.convrelu_1 = ConvRelu(c=c)`` in __init__ (an unnamed
# ``ConvRelu(c) * n``: its children are named ``convrelu_<i>``), and its call in forward
_RUN_CHILD = re.compile(r"self\.([A-Za-z_]\w*)_(0|[1-9][0-9]*) = ")
_RUN_CALL = re.compile(r"([A-Za-z_]\w*) = self\.([A-Za-z_]\w*)_(0|[1-9][0-9]*)"
                       r"\(([A-Za-z_]\w*(?:, [A-Za-z_]\w*)*)\)")


@dataclass(frozen=True)
class _Run:
    """Children ``base_<start>`` .. ``base_<start + count - 1>`` of one class, each made on
    one line of __init__ (from ``init``) and called on one line of forward (from ``fwd``),
    one after the other: ``x = self.base_<i>(x, ...)``."""

    base: str
    start: int
    count: int
    init: int
    fwd: int


def _run_child(line: list) -> tuple | None:
    """(base, index, the rest of the line as a template) of a child of a repetition made
    by this line of __init__: a block instance with its arguments as plain slots."""
    if len(line) < 2 or not isinstance(line[0], str):
        return None
    m = _RUN_CHILD.fullmatch(line[0])
    if m is None or any(isinstance(p, _Slot) and p.kw for p in line):
        return None
    return m.group(1), int(m.group(2)), _template(line[1:])


def _runs(raw: _Raw) -> list[_Run]:
    out = []
    i = 0
    while i < len(raw.init):
        got = _run_child(raw.init[i])
        if got is None:
            i += 1
            continue
        base, start, tpl = got
        j = i + 1
        while j < len(raw.init) and _run_child(raw.init[j]) == (base, start + j - i, tpl):
            j += 1
        count = j - i
        for f, line in enumerate(raw.fwd):
            m = _RUN_CALL.fullmatch(line[1])
            if m and m.group(2) == base and int(m.group(3)) == start:
                if _chained(raw.fwd[f:f + count], base, start, count):
                    out.append(_Run(base, start, count, i, f))
                break
        i = j
    return out


def _chained(lines: list, base: str, start: int, count: int) -> bool:
    """The forward lines call base_<start> .. in turn, each on the previous one's value
    (``x = self.b_0(x)``, ``x = self.b_1(x)``), with the same other arguments and note."""
    if len(lines) != count:
        return False
    head = None
    for k, (indent, code, note, _) in enumerate(lines):
        m = _RUN_CALL.fullmatch(code)
        if indent or m is None or m.group(2) != base or int(m.group(3)) != start + k:
            return False
        target, args = m.group(1), m.group(4)
        if args.split(", ")[0] != target or (head is not None and head != (target, args, note)):
            return False
        head = (target, args, note)
    return True


def _folded_key(raw: _Raw, runs: list[_Run]) -> tuple:
    """``raw.key`` with each repetition's children as one item whatever their count."""
    at_init = {r.init: r for r in runs}
    at_fwd = {r.fwd: r for r in runs}
    init, fwd = [], []
    i = 0
    while i < len(raw.init):
        r = at_init.get(i)
        init.append(("run", r.base, r.start, _template(raw.init[i][1:])) if r
                     else raw.key[1][i])
        i += r.count if r else 1
    i = 0
    while i < len(raw.fwd):
        r = at_fwd.get(i)
        fwd.append(("run", r.base, r.start, raw.fwd[i][1].split(" = ")[0], raw.fwd[i][2])
                   if r else raw.key[2][i])
        i += r.count if r else 1
    return raw.key[0], tuple(init), tuple(fwd), raw.key[3]


def _merge_groups(groups: dict, models: dict) -> list[list]:
    """The members of each class to write: a group of instances with one key, or several
    groups of one block that differ only in the counts of repetitions of a child
    (``ConvRelu(c) * n``), written as one class with a loop over the children."""
    folded: dict[tuple, list] = {}
    for members in groups.values():
        raw = members[0][1]
        runs = _runs(raw)
        key = _folded_key(raw, runs) if runs else ("once", id(members))
        folded.setdefault(key, []).append((members, runs))
    out = []
    for parts in folded.values():
        merged = _fold(parts, models) if len(parts) > 1 else None
        if merged is None:
            out += [members for members, _ in parts]
        else:
            out.append(merged)
    return out


def _fold(parts: list, models: dict) -> list | None:
    """The members of several groups rewritten alike, each repetition whose count differs
    between them as a loop; None when the children of a repetition differ in another way
    than the first from the rest (which ``a if i == 0 else b`` writes)."""
    members = [m for group, _ in parts for m in group]
    runs = [rs for group, rs in parts for _ in group]  # each member's repetitions
    calls = [(getattr(models[id(sc)], "_block_args", None) or {}).get(sc.path)
             for sc, _ in members]
    words: set[str] = set()  # the loop variable must be none of forward's names
    for (_, raw), call in zip(members, calls):
        for _, code, _, _ in raw.fwd:
            words.update(re.findall(r"[A-Za-z_]\w*", code))
        words.update(call[2] if call else ())
    loop = next((v for v in ("i", "j", "k", "idx") if v not in words), None) or \
        py_name("i", set(), words)
    plans = []
    for k in range(len(runs[0])):
        if len({rs[k].count for rs in runs}) > 1:
            plan = _loop_plan([raw for _, raw in members], [rs[k] for rs in runs], calls)
            if plan is None:
                return None
            plans.append((k, plan))
    out = [(sc, _looped(raw, [(rs[k], plan) for k, plan in plans], loop, call))
           for (sc, raw), rs, call in zip(members, runs, calls)]
    _close_rests([raw for _, raw in out])
    return out


def _close_rests(raws: list[_Raw]) -> None:
    """The later children's arguments of an instance with one child are never used: give
    them the values of a column that agrees with the others' wherever they have them (VGG's
    ``c``), so that no parameter is made for them alone."""
    slots = [raw.slots for raw in raws]
    for j, slot in enumerate(slots[0]):
        if not isinstance(slot, _Rest) or not any(getattr(s[j], "open", False) for s in slots):
            continue
        known = [s for s in slots if not getattr(s[j], "open", False)]
        same = next((k for k in range(len(slots[0])) if k != j
                     and not any(isinstance(s[k], _Rest) and s[k].open for s in slots)
                     and all(s[k].text == s[j].text for s in known)), None)
        if same is None:
            continue
        for raw, s in zip(raws, slots):
            if getattr(s[j], "open", False):
                _replace_slot(raw, j, _Rest(s[same].value, s[j].name))
    for raw in raws:
        _slots_and_key(raw, raw.key[0])


def _replace_slot(raw: _Raw, j: int, new: _Slot) -> None:
    n = 0
    for line in raw.init:
        for k, p in enumerate(line):
            if isinstance(p, _Slot):
                if n == j:
                    line[k] = new
                    return
                n += 1


class _Count(_Slot):
    """The count of a loop in __init__ (``for i in range(n)``)."""


@dataclass(frozen=True)
class _Rest(_Slot):
    """An argument of the children after the first in a loop in __init__ (the ``c`` of
    ``in_channels if i == 0 else c``); ``open`` where the instance has one child only."""

    open: bool = False


@dataclass(frozen=True)
class _LoopPlan:
    """How one repetition is written as a loop: per argument of a child, whether the first
    child's differs from the others' (``in_channels if i == 0 else c``); the block
    parameter its count follows, with the difference (``range(n - 1)``), if one does."""

    first: tuple
    param: str | None = None
    offset: int = 0


def _loop_plan(raws: list, runs: list[_Run], calls: list) -> _LoopPlan | None:
    first = None
    for raw, r in zip(raws, runs):
        cols = [[p.text for p in line if isinstance(p, _Slot)]
                for line in raw.init[r.init:r.init + r.count]]
        if any(c != cols[-1] for c in cols[1:]):
            return None
        diff = [a != b for a, b in zip(cols[0], cols[-1])]
        first = diff if first is None else [a or b for a, b in zip(first, diff)]
    best = None
    if all(c is not None for c in calls):
        for pname in calls[0][2]:
            vals = [c[2].get(pname) for c in calls]
            if all(type(v) is int for v in vals):
                offs = {r.count - v for r, v in zip(runs, vals)}
                if len(offs) == 1 and (best is None or abs(next(iter(offs))) < abs(best[1])):
                    best = (pname, offs.pop())
    return _LoopPlan(tuple(first or ()), *(best or (None, 0)))


def _plus(k: int) -> str:
    return "" if k == 0 else f" + {k}" if k > 0 else f" - {-k}"


def _looped(raw: _Raw, plans: list, loop: str, call) -> _Raw:
    """``raw`` with each repetition of ``plans`` as a loop in __init__ that registers its
    children under their names, and a loop in forward that calls them in turn."""
    at_init = {r.init: (r, plan) for r, plan in plans}
    at_fwd = {r.fwd: (r, plan) for r, plan in plans}
    init: list = []
    i = 0
    while i < len(raw.init):
        if i not in at_init:
            init.append(raw.init[i])
            i += 1
            continue
        r, plan = at_init[i]
        count = _Count(call[2][plan.param] if plan.param else r.count,
                       plan.param or f"n_{r.base}")
        head = f"for {loop} in range({r.start}, " if r.start else f"for {loop} in range("
        init.append([head, count, f"{_plus(r.start + plan.offset)}):"])
        rest = [p for p in raw.init[i + r.count - 1] if isinstance(p, _Slot)]
        body: list = [_INDENT, f'self.add_module(f"{r.base}_{{{loop}}}", ']
        q = 0
        for p in raw.init[i][1:]:
            if isinstance(p, _Slot) and plan.first[q]:
                other = rest[q] if r.count > 1 else p
                body += [p, f" if {loop} == {r.start} else ",
                         _Rest(other.value, other.name, open=r.count == 1)]
            else:
                body.append(p)
            q += isinstance(p, _Slot)
        init.append(body + [")"])
        i += r.count
    fwd: list = []
    i = 0
    while i < len(raw.fwd):
        if i not in at_fwd:
            fwd.append(raw.fwd[i])
            i += 1
            continue
        r, plan = at_fwd[i]
        m = _RUN_CALL.fullmatch(raw.fwd[i][1])
        count = call[2][plan.param] if plan.param else r.count
        head = f"{r.start}, " if r.start else ""
        fwd.append((0, f"for {loop} in range({head}{count}{_plus(r.start + plan.offset)}):",
                    raw.fwd[i][2], raw.fwd[i + r.count - 1][3]))
        fwd.append((1, f'{m.group(1)} = self.get_submodule(f"{r.base}_{{{loop}}}")'
                       f"({m.group(4)})", None, None))
        i += r.count
    out = _Raw(init, fwd, raw.args)
    _slots_and_key(out, raw.key[0])
    return out


def _instance_pieces(s: _Scope) -> list:
    """``Basic(<64>)``: the class of instance s with its constructor arguments as slots."""
    cls = s.cls
    if len(cls.params) == 1:
        return _call_pieces(cls.name, [[_Slot(s.values[0], cls.params[0])]])
    return _call_pieces(cls.name, [[f"{p}=", _Slot(v, p)] for p, v in
                                   zip(cls.params, s.values)])


def _list_pieces(elems: list[list]) -> list:
    """``nn.ModuleList([a, b])``, or ``[a for _ in range(n)]`` when the elements are equal."""
    if len(elems) > 1 and len({_render(e) for e in elems}) == 1:
        # the count a slot: instances of a block that differ in it share a class
        return ["nn.ModuleList([", *elems[0], " for _ in range(", _Slot(len(elems), "n"),
                ")])"]
    out: list = ["nn.ModuleList(["]
    for i, e in enumerate(elems):
        if i:
            out.append(", ")
        out += e
    out.append("])")
    return out


def _module_lists(items: list, plans) -> dict[int, tuple[str, list[int], int]]:
    """item index -> (name, member item indexes, position) for the repetitions of a scope
    (``name.0``, ``name.1``, ...: all layers with a module, or all block instances), which
    become one ``nn.ModuleList``."""
    heads: dict[str, list[int]] = {}
    for idx, (kind, x, local) in enumerate(items):
        if kind == "node" and (plans[x][2].module is None or plans[x][0].shared) or \
                kind == "inst" and x.reuse is not None:
            continue
        heads.setdefault(local.split(".")[0], []).append(idx)
    out = {}
    for name, members in heads.items():
        locals_ = [items[j][2] for j in members]
        if len({items[j][0] for j in members}) == 1 and child_name_problem(name) is None \
                and locals_ == [f"{name}.{i}" for i in range(len(members))]:
            for pos, j in enumerate(members):
                out[j] = (name, members, pos)
    return out


def _scope_symbols(s: _Scope) -> set:
    acc: set = set()
    stack = [s]
    while stack:
        sc = stack.pop()
        acc |= sc.own_symbols
        stack += [it[1] for it in sc.items if it[0] == "inst"]
    return acc


def _dims_line(m, used: set, args: list) -> str:
    src = _symbol_sources(m)
    missing = sorted(used - src.keys())
    if missing:
        raise ValueError(f"the symbol {missing[0]} is used by a layer but is not a dim "
                         "of the model's inputs")
    binds = ", ".join(f"{_str(x)}: {args[src[x][0]]}.shape[{src[x][1]}]" for x in sorted(used))
    return f"dims = {{{binds}}}"


def _where(node) -> tuple[str, int, str]:
    span = node.span or ["<unknown>", 0]
    return str(span[0]), int(span[1]), node.text or node.op


# ---- layout ------------------------------------------------------------------------------


def _with_note(code: str, indent: int, note: str | None, shape: str | None) -> list[str]:
    """A statement with its spec-line comment: after it when the line stays within WIDTH,
    else on a line of its own above it (the spec text cut short if need be, the shape
    kept)."""
    lines = _fit(code, indent)
    if note is None:
        return lines
    tail = f"  -> {shape}" if shape else ""
    comment = f"# {note}{tail}"
    if len(lines) == 1 and len(lines[0]) + 2 + len(comment) <= WIDTH:
        return [f"{lines[0]}  {comment}"]
    room = WIDTH - indent - len(tail)
    if len(comment) - len(tail) > room:
        comment = f"# {note}"[:max(room - 3, 8)].rstrip() + "..." + tail
    return [" " * indent + comment] + lines


def _fit(code: str, indent: int) -> list[str]:
    """``code`` indented, broken after the opening bracket of its widest call or list (and
    so on inside) when it is longer than WIDTH. No comma is added: a trailing comma would
    change the meaning of ``(a + b)`` or of a comprehension."""
    pad = " " * indent
    if indent + len(code) <= WIDTH:
        return [pad + code]
    best = _widest_bracket(code)
    if best is None:
        return [pad + code]
    o, c = best
    head, body, tail = code[:o + 1], code[o + 1:c], code[c:]
    parts = _split_top(body)
    sep = ","
    if len(parts) == 1 and code[o] == "(":  # (a * b + c if d else e): before its operators
        parts, sep = _split_operators(body), ""
    if indent + len(head) > WIDTH or not parts:
        return [pad + code]
    out = [pad + head]
    width = WIDTH - indent - 4
    line = ""
    for i, p in enumerate(parts):
        piece = p + (sep if i < len(parts) - 1 else "")
        if line and len(line) + 1 + len(piece) > width:
            out += _fit(line, indent + 4)
            line = piece
        else:
            line = f"{line} {piece}" if line else piece
    out += _fit(line, indent + 4)
    out.append(pad + tail)
    return out


def _scan(code: str):
    """(index, char, depth before it) of the brackets outside string literals."""
    depth = 0
    quote = None
    i = 0
    while i < len(code):
        ch = code[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            yield i, ch, depth
            depth += 1
        elif ch in ")]}":
            depth -= 1
            yield i, ch, depth
        elif ch == ",":
            yield i, ch, depth
        i += 1


def _widest_bracket(code: str) -> tuple[int, int] | None:
    opens: list[int] = []
    best = None
    for i, ch, depth in _scan(code):
        if ch in "([{":
            opens.append(i)
        elif ch in ")]}" and opens:
            o = opens.pop()
            # not a subscript: breaking ``x[...]`` reads badly (and ``d[k,]`` is a tuple)
            subscript = code[o] == "[" and o and (code[o - 1].isalnum() or code[o - 1] in
                                                  "_)]'\"")
            if depth == 0 and not subscript and i - o > 1 and (
                    best is None or i - o > best[1] - best[0]):
                best = (o, i)
    return best


def _split_operators(body: str) -> list[str]:
    """The parts of a bracketed expression before each top-level ``+``, ``-``, ``if`` and
    ``else`` (a break there is valid inside the brackets)."""
    depth, quote, cuts = 0, None, []
    for i, ch in enumerate(body):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and ch == " " and any(body.startswith(w, i) for w in
                                              (" + ", " - ", " if ", " else ")):
            cuts.append(i)
    parts = [body[a:b].strip() for a, b in zip([0] + cuts, cuts + [len(body)])]
    return [p for p in parts if p]


def _split_top(body: str) -> list[str]:
    parts, start = [], 0
    for i, ch, depth in _scan(body):
        if ch == "," and depth == 0:
            parts.append(body[start:i].strip())
            start = i + 1
    rest = body[start:].strip()
    if rest:
        parts.append(rest)
    return [p for p in parts if p]


def _display(file: str, main: str) -> str:
    """A spec file's name as the generated file shows it: never an absolute path (generated
    files get committed). The main spec as given when relative; a file of nnspec's library
    by its name; another absolute path relative to the working folder when below it, else
    by its name."""
    file = str(file)
    if not os.path.isabs(file):
        return file

    try:
        if os.path.commonpath([file, str(STDLIB)]) == str(STDLIB):
            return os.path.basename(file)
    except ValueError:
        pass
    try:
        rel = os.path.relpath(file)
    except ValueError:
        rel = ""
    if rel and not rel.startswith(".."):
        return rel
    return os.path.basename(file)


# ---- the file -----------------------------------------------------------------------------


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
    helpers = list(dict.fromkeys(h for p in plans for h in _helpers_src(p)))
    module_names = set(_MODULE_NAMES | _helper_names(helpers))
    model_classes = _class_names(models, module_names)
    em = _Emitter(spec, module_names, models[0].file if models else "")
    em.class_names |= set(model_classes)

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


def _comment_lines(text: str) -> list[str]:
    """``# text`` over as many lines as WIDTH needs (a word longer than a line is cut)."""
    import textwrap

    lines = textwrap.wrap(text, WIDTH - 4, break_on_hyphens=False) or [""]
    return [f"# {lines[0]}"] + [f"#   {x}" for x in lines[1:]]


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
    out += _fit(f"return {expr or 'torch.zeros(())'}", 8)
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
