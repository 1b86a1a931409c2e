"""Building and tracing a PyTorch model for ``nnspec import``.

The model is built on torch's ``meta`` device (parameters have shapes and no memory, so a
7B-parameter model imports in megabytes) and traced with ``torch.fx``: symbolic tracing
follows Python's control flow without data, keeps every ``nn.Module`` nnspec has a kind for
as one call named by its qualified name (its state_dict prefix), and records for every
other operation the stack of modules it ran in (``nn_module_stack``). Two shape
propagations over meta tensors at different example sizes tell which integers in the
graph are sizes that vary with the declared symbols.

Why fx and not ``torch.export``: export lowers modules to aten operations (nn.Conv2d
becomes ``aten.conv2d`` with its weight as an input) and guards the sizes it sees (a ResNet
with dynamic ``H, W`` fails the output-size formula's floor); fx keeps module calls whole,
records shape arithmetic as graph nodes and needs no example data to trace. nnspec's own
inference generalises the sizes afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ...core.diagnostics import SpecError  # noqa: F401  (re-exported for the CLI's errors)


class ImportFailure(Exception):
    """A model nnspec cannot import; ``str(e)`` names the module path and the operation."""

    def __init__(self, message: str, usage: bool = False):
        super().__init__(message)
        self.usage = usage  # the command line was wrong (exit 2), not the model (exit 1)


_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def build_model(target: str, kwargs: dict | None = None) -> nn.Module:
    """The ``nn.Module`` a TARGET names, built on the meta device: ``package.module:callable``
    (a class, a factory or a function of yours, called with ``kwargs``), or
    ``hf:PATH/config.json`` (the transformers class its ``architectures`` entry names)."""
    kwargs = dict(kwargs or {})
    if target.startswith("hf:"):
        return _build_hf(target[3:], kwargs)
    if not _TARGET.fullmatch(target):
        raise ImportFailure(f"TARGET is package.module:callable or hf:PATH/config.json, "
                            f"not {target!r}", usage=True)
    mod_name, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(mod_name)
    except Exception as e:  # the user's module failed to import: say what it raised
        raise ImportFailure(f"cannot import {mod_name}: {type(e).__name__}: {e}",
                            usage=True) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ImportFailure(f"{mod_name} has no attribute {attr!r}", usage=True)
        obj = getattr(obj, part)
    if not callable(obj):
        raise ImportFailure(f"{target} is not callable", usage=True)
    try:
        with torch.device("meta"):
            model = obj(**kwargs)
    except Exception as e:
        if "meta" not in str(e):
            raise ImportFailure(f"{target}({_kw_text(kwargs)}) raised {type(e).__name__}: "
                                f"{e}") from None
        try:  # its initialisation reads its weights (regnet's copy_): built with memory
            model = obj(**kwargs)
        except Exception as e2:
            raise ImportFailure(f"{target}({_kw_text(kwargs)}) raised {type(e2).__name__}: "
                                f"{e2}") from None
    if not isinstance(model, nn.Module):
        raise ImportFailure(f"{target}({_kw_text(kwargs)}) returned a "
                            f"{type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def _kw_text(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _build_hf(path: str, kwargs: dict) -> nn.Module:
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    try:
        config = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ImportFailure(f"cannot read the config {path}: {e}", usage=True) from None
    arch = (config.get("architectures") or [None])[0] if isinstance(config, dict) else None
    if not isinstance(arch, str):
        raise ImportFailure(f"{path} names no class in 'architectures'", usage=True)
    try:
        import transformers
    except ImportError:
        raise ImportFailure("hf: targets need transformers: pip install 'nnspec[hf]'",
                            usage=True) from None
    try:
        cls = getattr(transformers, arch, None) or _model_class(config, arch)
    except Exception as e:  # transformers imports the class lazily, with its dependencies
        raise ImportFailure(f"transformers could not load {arch}: {type(e).__name__}: "
                            f"{_short(e.__cause__ or e)}", usage=True) from None
    if cls is None:
        raise ImportFailure(f"transformers has no class {arch!r} (from {path})", usage=True)
    try:
        cfg = transformers.AutoConfig.for_model(**{k: v for k, v in config.items()
                                                   if k != "architectures"}, **kwargs)
    except Exception as e:
        raise ImportFailure(f"{path}: not a config transformers reads: {type(e).__name__}: "
                            f"{_short(e)}", usage=True) from None
    try:
        with _meta_parameters():
            model = cls(cfg)
    except Exception as e:  # the config does not make a model: say what transformers said
        raise ImportFailure(f"{arch}(config of {path}) raised {type(e).__name__}: "
                            f"{_short(e)}") from None
    # the buffers' values are kept (position ids, rotary frequencies: constants of the
    # spec), the model itself moves to the meta device
    model._nnspec_buffers = {k: v.detach().clone() for k, v in model.named_buffers()
                             if not v.is_meta}
    return model.to("meta").eval()


def _model_class(config: dict, arch: str):
    """A class of the config's model type that transformers does not export at its top
    level (``WhisperEncoder`` of ``model_type`` whisper): from
    ``transformers.models.<type>.modeling_<type>``, or None."""
    kind = config.get("model_type")
    if not isinstance(kind, str) or not re.fullmatch(r"[a-z0-9_]+", kind):
        return None
    try:
        module = importlib.import_module(f"transformers.models.{kind}.modeling_{kind}")
    except ImportError:
        return None
    cls = getattr(module, arch, None)
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) else None


@contextlib.contextmanager
def _meta_parameters():
    """Parameters made on the meta device (no memory: a 7B model builds in megabytes),
    buffers where the model makes them, with their values."""
    register = nn.Module.register_parameter

    def on_meta(self, name, param):
        register(self, name, param)
        p = self._parameters.get(name)
        if p is not None and not p.is_meta:
            self._parameters[name] = nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


@dataclass
class Traced:
    """A traced model: its fx graph, modules by qualified name, and per node the shapes it
    had at the two example sizes (``meta`` of the first, ``meta2`` of the second)."""

    model: nn.Module
    graph: fx.Graph
    modules: dict
    leaves: set
    values: list = field(default_factory=list)  # per run: node -> its non-tensor value
    shapes: list = field(default_factory=list)  # per run: node -> its TensorMetadata


class _Tracer(fx.Tracer):
    def __init__(self, is_layer):
        super().__init__()
        self.is_layer = is_layer

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if self.is_layer(m):
            return True
        return super().is_leaf_module(m, qualname) and type(m).__module__.startswith(
            "torch.nn")


def trace(model: nn.Module, is_layer, examples: list[list]) -> Traced:
    """fx-trace ``model`` with the modules ``is_layer`` accepts kept whole, then propagate
    shapes for each list of example inputs (meta tensors)."""
    tracer = _Tracer(is_layer)
    try:
        graph = tracer.trace(model, concrete_args=_defaults(model, len(examples[0])))
    except Exception as e:  # data-dependent control flow and the like
        raise ImportFailure(_trace_error(e)) from None
    gm = fx.GraphModule(tracer.root, graph)
    runs = []
    for ex in examples:
        prop = _Record(gm)
        try:  # ShapeProp prints the traceback of a failing node: the error says enough
            with contextlib.redirect_stderr(io.StringIO()):
                prop.propagate(*ex)
        except Exception as e:
            cause = e.__cause__ or e  # ShapeProp wraps the node's error
            raise ImportFailure(f"the traced model does not run at the example sizes: "
                                f"{type(cause).__name__}: {_short(cause)}") from None
        runs.append(({n: n.meta.get("tensor_meta") for n in graph.nodes}, prop.values))
    traced = Traced(model, graph, dict(model.named_modules()),
                    {n.target for n in graph.nodes if n.op == "call_module"})
    traced.values = [values for _, values in runs]
    traced.shapes = [shapes for shapes, _ in runs]
    for n in graph.nodes:  # the first run's shapes are the ones kept in node.meta
        n.meta["tensor_meta"] = runs[0][0][n]
    return traced


class _Record(ShapeProp):
    """ShapeProp that also keeps every value that is not a tensor (sizes, shape tuples)."""

    def __init__(self, gm):
        super().__init__(gm)
        self.values: dict = {}

    def run_node(self, n):
        result = super().run_node(n)
        if not isinstance(result, torch.Tensor):
            self.values[n] = result
        return result


def _defaults(model: nn.Module, n: int) -> dict | None:
    """The forward's arguments after the ``n`` declared inputs, fixed at their defaults
    (timm's ``forward(x, attn_mask=None)``); one without a default is an input not
    declared."""
    import inspect

    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    params = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                              p.KEYWORD_ONLY)]
    rest = params[n:]
    if not rest or any(p.default is inspect.Parameter.empty for p in rest):
        return None
    return {p.name: p.default for p in rest}


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def _trace_error(e: BaseException) -> str:
    msg = _short(e)
    if isinstance(e, fx.proxy.TraceError) or "symbolically traced" in msg or "Proxy" in msg:
        return (f"the model's forward cannot be traced without data: {msg} (control flow "
                "that depends on tensor values cannot become a static spec)")
    return f"tracing the model failed: {type(e).__name__}: {msg}"
