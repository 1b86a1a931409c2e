"""The PyTorch front end: an ``nn.Module`` (yours, torchvision's, a Hugging Face model's)
as a readable .nn spec whose module has the original's state_dict keys.

``import_model`` builds the model on the meta device, traces it with torch.fx, maps each
operation to a layer kind (ops.py) and writes blocks for repeated module classes
(write.py, program.py). torch is imported by this package only: ``nnspec check`` never
loads it.
"""

from __future__ import annotations

import re

from .trace import ImportFailure

__all__ = ["ImportFailure", "import_model", "parse_input"]

_INPUT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*\[([^\]]*)\]\s*(int|float)?\s*")
_DIM = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")

#: example sizes of the common symbols at the two traces (distinct pairs, so that a size in
#: the graph is matched to one symbol)
EXAMPLE_SIZES = {"N": (2, 3), "B": (2, 3), "T": (16, 24), "S": (16, 20), "L": (64, 96),
                 "H": (224, 256), "W": (224, 288), "D": (16, 24)}


def parse_input(text: str):
    """``--input 'x: [N, 3, H, W]'`` (nnspec's input syntax) as an Input."""
    from .write import Input

    m = _INPUT.fullmatch(text)
    if not m:
        raise ImportFailure(f"--input takes NAME: [DIMS] [int], e.g. 'x: [N, 3, H, W]', "
                            f"not {text!r}", usage=True)
    dims = []
    for d in (p.strip() for p in m.group(2).split(",")):
        if not _DIM.fullmatch(d) or d in ("_",):
            raise ImportFailure(f"--input {m.group(1)}: a dim is a number or a symbol, "
                                f"not {d!r}", usage=True)
        dims.append(int(d) if d.isdigit() else d)
    return Input(m.group(1), dims, m.group(3) or "float")


def import_model(target: str, inputs: list[str] | None = None, kwargs: dict | None = None,
                 dims: dict[str, int] | None = None, name: str | None = None) -> str:
    """The .nn text of the model TARGET builds (see :func:`trace.build_model`)."""
    from .trace import build_model

    model = build_model(target, kwargs)
    label = name or _model_name(target, model)
    return spec_of(model, [parse_input(t) for t in inputs or []], dims, label, target)


def _model_name(target: str, model) -> str:
    base = target.rsplit(":", 1)[-1].rsplit(".", 1)[-1] if ":" in target and \
        not target.startswith("hf:") else type(model).__name__
    parts = re.split(r"[^A-Za-z0-9]+", base)
    return "".join(p[:1].upper() + p[1:] for p in parts if p) or "Model"


def spec_of(model, inputs, dims, name: str, source: str) -> str:
    """The spec of an ``nn.Module`` (on any device; only shapes are used)."""
    import torch

    from .program import Writer
    from .write import Sizes

    if not inputs:
        inputs = _default_inputs(model)
    symbols = sorted({d for i in inputs for d in i.dims if isinstance(d, str)})
    pairs = {}
    for s in symbols:
        if dims and s in dims:
            v = dims[s]
            pairs[s] = (v, v + max(1, v // 4) + (1 if s not in ("H", "W") else 0))
        else:
            pairs[s] = EXAMPLE_SIZES.get(s, (12 + 2 * len(pairs), 18 + 2 * len(pairs)))
    _distinct(pairs)

    device = next((p.device for p in model.parameters()), torch.device("meta"))
    floats = next((p.dtype for p in model.parameters() if p.is_floating_point()),
                  torch.float32)

    def examples(run: int):
        out = []
        for i in inputs:
            shape = [d if isinstance(d, int) else pairs[d][run] for d in i.dims]
            dtype = torch.long if i.dtype == "int" else floats
            out.append(torch.zeros(shape, dtype=dtype, device=device))
        return out

    exported = source.startswith("hf:")

    def traced_at():
        return _trace(model, [examples(0), examples(1)], inputs, exported)

    try:
        traced = traced_at()
    except ImportFailure as first:
        # the model fixes some sizes (a ViT's image size): keep only the batch dim free
        fixed = [s for s in symbols if s not in ("N", "B")]
        if not fixed:
            raise
        tried = {s: pairs[s][0] for s in fixed}
        for i in inputs:
            i.dims = [pairs[d][0] if d in fixed else d for d in i.dims]
        for s in fixed:
            pairs.pop(s)
        try:
            traced = traced_at()
        except ImportFailure as second:
            if str(second) == str(first):  # not a matter of sizes
                raise first from None
            sizes = ", ".join(f"{s}={v}" for s, v in tried.items())
            raise ImportFailure(f"{first} (traced at {sizes}; give the sizes the model "
                                "takes with --input 'x: [N, 3, 224, 224]' or --dim)") from None
    return Writer(traced, inputs, Sizes(traced, pairs), source).spec(name)


def _trace(model, examples, inputs, exported: bool):
    """fx first (module calls kept as written); ``torch.export`` for Hugging Face models
    and where fx cannot follow the forward (see exported.py)."""
    from .exported import trace_exported
    from .trace import trace

    first = None
    if not exported:
        try:
            return trace(model, _is_layer, examples)
        except ImportFailure as e:
            if "trac" not in str(e):  # the model ran but does not fit: export will not help
                raise
            first = e
    symbols = [[d if isinstance(d, str) else None for d in i.dims] for i in inputs]
    kwargs = {"use_cache": False} if _takes(model, "use_cache") else {}
    try:
        return trace_exported(model, _is_layer, examples, symbols, kwargs)
    except ImportFailure as e:
        if first is None:
            raise
        raise ImportFailure(f"torch.fx: {first}; torch.export: {e}") from None


def _takes(model, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _is_layer(module) -> bool:
    from .ops import converter

    return converter(module) is not None


def _distinct(pairs: dict) -> None:
    seen: dict = {}
    for s, p in list(pairs.items()):
        while p in seen.values():
            p = (p[0], p[1] + 1)
        seen[s] = p
        pairs[s] = p


def _default_inputs(model):
    """One input shaped for the first layer that reads it: ``[N, C, H, W]`` for a 2-d
    convolution, ``[N, F]`` for a linear layer, ``[N, T] int`` for an embedding."""
    from torch import nn

    from .write import Input

    for m in model.modules():
        if isinstance(m, nn.Conv1d):
            return [Input("x", ["N", m.in_channels, "L"])]
        if isinstance(m, nn.Conv2d):
            return [Input("x", ["N", m.in_channels, "H", "W"])]
        if isinstance(m, nn.Conv3d):
            return [Input("x", ["N", m.in_channels, "D", "H", "W"])]
        if isinstance(m, nn.Linear):
            return [Input("x", ["N", m.in_features])]
        if isinstance(m, nn.Embedding):
            return [Input("tokens", ["N", "T"], "int")]
    raise ImportFailure("cannot guess the model's input: declare it with --input "
                        "'x: [N, 3, H, W]'", usage=True)
