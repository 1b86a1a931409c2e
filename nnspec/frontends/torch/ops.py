"""What each traced operation is in nnspec: torch modules, functions and tensor methods
mapped to layer kinds.

Each converter returns an :class:`Op`: the stage's words (numbers that may become block
parameters kept as :class:`Slot` s), its tensor inputs and how it is written (a pipeline
stage, a call, an element-wise join). An operation without a kind is an
:class:`~.trace.ImportFailure` naming the module path and the operation: never an
approximation.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from .trace import ImportFailure


@dataclass(frozen=True)
class Slot:
    """A number in a stage that may differ between instances of a block (``hint`` names the
    block parameter it would become)."""

    value: object
    hint: str


@dataclass
class Op:
    """One stage of the spec. ``words``: the stage text in parts (str or Slot);
    ``form``: ``stage`` (the first input is piped in), ``call`` (``kind(a, b, ...)``, inputs
    as arguments), ``join`` (``a + b``: ``words`` is the operator) or ``skip`` (the value is
    its first input: ``contiguous()``, dropout of p = 0 ...). ``owner``: the qualified name
    of the module whose state it holds (its alias), or None."""

    node: fx.Node
    words: list
    inputs: list
    form: str = "stage"
    owner: str | None = None
    scope: tuple = field(default_factory=tuple)
    inner_uses: int = 0  # a block call: how often its input is used inside the block


def _pair(v) -> object:
    """A torch size argument as nnspec writes it: one number when all are equal."""
    if isinstance(v, (tuple, list)):
        v = tuple(int(x) for x in v)
        return v[0] if len(set(v)) == 1 else v
    return int(v)


def _num(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(_num(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return str(v)


def kw(name: str, value, hint: str | None = None) -> list:
    """``name=value`` words; an int (or int tuple) becomes a Slot named ``hint``."""
    if isinstance(value, (int, tuple)) and not isinstance(value, bool) and hint:
        return [f" {name}=", Slot(value, hint)]
    return [f" {name}={_num(value)}"]


# ---- leaf modules ----------------------------------------------------------------------

def _conv(m: nn.Conv1d) -> list:
    if m.padding_mode != "zeros":
        raise _unsupported(f"padding_mode={m.padding_mode!r}")
    w = ["conv ", Slot(m.out_channels, "c")]
    w += kw("k", _pair(m.kernel_size), "k")
    if _pair(m.stride) != 1:
        w += kw("s", _pair(m.stride), "stride")
    pad = m.padding if isinstance(m.padding, str) else _pair(m.padding)
    if pad == "same":
        w += [" p=same"]
    elif pad not in (0, "valid"):
        w += kw("p", pad, "pad")
    if _pair(m.dilation) != 1:
        w += kw("d", _pair(m.dilation), "dilation")
    if m.groups != 1:
        w += kw("groups", m.groups, "groups")
    if m.bias is None:
        w += [" bias=false"]
    return w


def _convtranspose(m: nn.ConvTranspose2d) -> list:
    if m.padding_mode != "zeros":
        raise _unsupported(f"padding_mode={m.padding_mode!r}")
    w = ["convtranspose ", Slot(m.out_channels, "c")]
    w += kw("k", _pair(m.kernel_size), "k")
    if _pair(m.stride) != 1:
        w += kw("s", _pair(m.stride), "stride")
    if _pair(m.padding) != 0:
        w += kw("p", _pair(m.padding), "pad")
    if _pair(m.output_padding) != 0:
        w += kw("output_padding", _pair(m.output_padding), "output_padding")
    if _pair(m.dilation) != 1:
        w += kw("d", _pair(m.dilation), "dilation")
    if m.groups != 1:
        w += kw("groups", m.groups, "groups")
    if m.bias is None:
        w += [" bias=false"]
    return w


def _linear(m: nn.Linear) -> list:
    w = ["dense ", Slot(m.out_features, "d")]
    if m.bias is None:
        w += [" bias=false"]
    return w


def _batchnorm(m: nn.modules.batchnorm._BatchNorm) -> list:
    w = ["batchnorm"]
    if m.eps != 1e-5:
        w += kw("eps", float(m.eps))
    if m.momentum is None:
        raise _unsupported("momentum=None (a cumulative moving average)")
    if m.momentum != 0.1:
        w += kw("momentum", float(m.momentum))
    if not m.affine:
        w += [" affine=false"]
    if not m.track_running_stats:
        w += [" track=false"]
    return w


def _layernorm(m: nn.LayerNorm) -> list:
    w = ["layernorm"]
    if len(m.normalized_shape) != 1:
        w += kw("axes", len(m.normalized_shape))
    if m.eps != 1e-5:
        w += kw("eps", float(m.eps))
    if not m.elementwise_affine:
        w += [" affine=false"]
    elif m.bias is None:
        w += [" bias=false"]
    return w


def _pool(m, kind: str) -> list:
    if isinstance(m.kernel_size, int) or True:
        w = [f"{kind} k=", Slot(_pair(m.kernel_size), "k")]
    s = _pair(m.stride) if m.stride is not None else _pair(m.kernel_size)
    if s != _pair(m.kernel_size):
        w += kw("s", s, "stride")
    if _pair(m.padding) != 0:
        w += kw("p", _pair(m.padding), "pad")
    if kind == "maxpool":
        if _pair(m.dilation) != 1:
            w += kw("d", _pair(m.dilation), "dilation")
        if m.return_indices:
            raise _unsupported("return_indices=True")
    else:
        if not m.count_include_pad:
            w += [" count_include_pad=false"]
        if getattr(m, "divisor_override", None) is not None:
            raise _unsupported("divisor_override")
    if m.ceil_mode:
        w += [" ceil"]
    return w


def _adaptive(size, kind: str) -> list:
    size = _pair(size)
    if size == 1:
        return [f"{kind} global"]
    if isinstance(size, tuple) and None in size:
        raise _unsupported("an adaptive output size with None")
    return [f"adaptive_{kind} ", Slot(size, "size")]


def _dropout(p: float) -> list:
    return [f"dropout {_num(float(p))}"]


def _activation(name: str, **params) -> callable:
    def make(m) -> list:
        w = [name]
        for torch_name, (ours, default) in params.items():
            v = getattr(m, torch_name)
            if v != default:
                w += kw(ours, v)
        return w
    return make


def _softmax(kind: str):
    def make(m) -> list:
        if m.dim is None:
            raise _unsupported("dim=None (the implicit softmax dim)")
        return [f"{kind} dim={m.dim}"]
    return make


def _flatten(m: nn.Flatten) -> list:
    w = ["flatten"]
    if m.start_dim != 1:
        w += kw("start", m.start_dim)
    if m.end_dim != -1:
        w += kw("end", m.end_dim)
    return w


def _embedding(m: nn.Embedding) -> list:
    if m.max_norm is not None or m.scale_grad_by_freq or m.sparse:
        raise _unsupported("max_norm, scale_grad_by_freq or sparse")
    w = ["embedding ", Slot(m.num_embeddings, "vocab"), " ", Slot(m.embedding_dim, "d")]
    if m.padding_idx is not None:
        w += kw("padding", m.padding_idx)
    return w


def _upsample(m: nn.Upsample) -> list:
    mode = m.mode
    if m.size is not None:
        w = ["upsample size=", Slot(_pair(m.size), "size")]
    else:
        sf = m.scale_factor
        sf = sf[0] if isinstance(sf, tuple) and len(set(sf)) == 1 else sf
        w = [f"upsample {_num(float(sf) if not isinstance(sf, tuple) else sf)}"]
    if mode != "nearest":
        w += [f" mode={mode}"]
    if m.align_corners:
        w += [" align_corners"]
    return w


def _mha(m: nn.MultiheadAttention) -> list:
    if not m.batch_first:
        raise _unsupported("batch_first=False (nnspec's attention takes [N, T, E])")
    if not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        raise _unsupported("kdim/vdim, add_bias_kv or add_zero_attn")
    w = ["attention heads=", Slot(m.num_heads, "heads")]
    if m.dropout:
        w += [f" dropout={_num(float(m.dropout))}"]
    if m.in_proj_bias is None:
        w += [" bias=false"]
    return w


def _prelu(m: nn.PReLU) -> list:
    return ["prelu"] if m.num_parameters == 1 else ["prelu ", Slot(m.num_parameters, "c")]


def _groupnorm(m: nn.GroupNorm) -> list:
    w = ["groupnorm ", Slot(m.num_groups, "groups")]
    if m.eps != 1e-5:
        w += kw("eps", float(m.eps))
    if not m.affine:
        w += [" affine=false"]
    return w


def _instancenorm(m) -> list:
    w = ["instancenorm"]
    if m.eps != 1e-5:
        w += kw("eps", float(m.eps))
    if m.momentum is None or m.momentum != 0.1:
        if m.momentum is None:
            raise _unsupported("momentum=None (a cumulative moving average)")
        w += kw("momentum", float(m.momentum))
    if m.affine:
        w += [" affine"]
    if m.track_running_stats:
        w += [" track"]
    return w


def _layernorm_channels(m) -> list:
    """torchvision's LayerNorm2d (ConvNeXt): layer normalisation over the channels, axis 1."""
    w = ["layernorm dim=1"]
    if m.eps != 1e-5:
        w += kw("eps", float(m.eps))
    if not m.elementwise_affine:
        w += [" affine=false"]
    return w


def _stochastic_depth(m) -> list:
    if m.mode != "row":
        raise _unsupported(f"mode={m.mode!r} (drop_path drops each example: mode='row')")
    return [f"drop_path {_num(float(m.p))}"]


def _permute(m) -> list:
    return [f"permute {_num(tuple(int(d) for d in m.dims))}"]


def _pixel_shuffle(m) -> list:
    return [f"pixel_shuffle {m.upscale_factor}"]


#: module class -> words; the module is one stage with its state under its name
MODULES: dict = {
    nn.Conv1d: _conv, nn.Conv2d: _conv, nn.Conv3d: _conv,
    nn.ConvTranspose1d: _convtranspose, nn.ConvTranspose2d: _convtranspose,
    nn.ConvTranspose3d: _convtranspose,
    nn.Linear: _linear,
    nn.BatchNorm1d: _batchnorm, nn.BatchNorm2d: _batchnorm, nn.BatchNorm3d: _batchnorm,
    nn.LayerNorm: _layernorm,
    nn.MaxPool1d: lambda m: _pool(m, "maxpool"), nn.MaxPool2d: lambda m: _pool(m, "maxpool"),
    nn.MaxPool3d: lambda m: _pool(m, "maxpool"),
    nn.AvgPool1d: lambda m: _pool(m, "avgpool"), nn.AvgPool2d: lambda m: _pool(m, "avgpool"),
    nn.AvgPool3d: lambda m: _pool(m, "avgpool"),
    nn.AdaptiveAvgPool1d: lambda m: _adaptive(m.output_size, "avgpool"),
    nn.AdaptiveAvgPool2d: lambda m: _adaptive(m.output_size, "avgpool"),
    nn.AdaptiveAvgPool3d: lambda m: _adaptive(m.output_size, "avgpool"),
    nn.AdaptiveMaxPool2d: lambda m: _adaptive(m.output_size, "maxpool"),
    nn.Dropout: lambda m: _dropout(m.p), nn.Dropout1d: lambda m: _dropout(m.p),
    nn.Dropout2d: lambda m: _dropout(m.p),
    nn.ReLU: _activation("relu"), nn.Tanh: _activation("tanh"),
    nn.Sigmoid: _activation("sigmoid"), nn.SiLU: _activation("silu"),
    nn.GELU: _activation("gelu", approximate=("approximate", "none")),
    nn.LeakyReLU: _activation("leaky_relu", negative_slope=("slope", 0.01)),
    nn.ELU: _activation("elu", alpha=("alpha", 1.0)),
    nn.Softmax: _softmax("softmax"), nn.LogSoftmax: _softmax("log_softmax"),
    nn.Identity: lambda m: None,
    nn.Flatten: _flatten,
    nn.Embedding: _embedding,
    nn.Upsample: _upsample,
    nn.PixelShuffle: _pixel_shuffle,
    nn.MultiheadAttention: _mha,
    nn.ReLU6: _activation("relu6"), nn.Hardswish: _activation("hardswish"),
    nn.Hardsigmoid: _activation("hardsigmoid"), nn.Mish: _activation("mish"),
    nn.Softplus: _activation("softplus", beta=("beta", 1.0), threshold=("threshold", 20.0)),
    nn.Hardtanh: _activation("hardtanh", min_val=("min_val", -1.0), max_val=("max_val", 1.0)),
    nn.PReLU: _prelu,
    nn.GroupNorm: _groupnorm,
    nn.InstanceNorm1d: _instancenorm, nn.InstanceNorm2d: _instancenorm,
    nn.InstanceNorm3d: _instancenorm,
}

#: modules of other libraries, by qualified class name, whose forward is known
KNOWN = {
    "torchvision.models.convnext.LayerNorm2d": _layernorm_channels,
    "torchvision.ops.stochastic_depth.StochasticDepth": _stochastic_depth,
    "torchvision.ops.misc.Permute": _permute,
}

#: stateless modules: written without a name (their state_dict is empty)
STATELESS = (nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.Softplus, nn.Hardtanh,
             nn.ReLU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.GELU, nn.LeakyReLU, nn.ELU,
             nn.Softmax, nn.LogSoftmax, nn.Identity, nn.Flatten, nn.Dropout, nn.Dropout1d,
             nn.Dropout2d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d,
             nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
             nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool2d, nn.Upsample, nn.PixelShuffle)


def _unsupported(what: str) -> ImportFailure:
    return ImportFailure(what)


def converter(module: nn.Module):
    """The words of a module nnspec has a kind for, or None. A subclass counts only when it
    keeps its base's forward (torchvision's LayerNorm2d subclasses nn.LayerNorm with a
    forward of its own: it is a known class, or not a layer normalisation over the last
    axis)."""
    cls = type(module)
    known = KNOWN.get(f"{cls.__module__}.{cls.__qualname__}")
    if known is not None:
        return known
    for base in cls.__mro__:
        if base in MODULES:
            return MODULES[base] if cls.forward is base.forward else None
    return None


def stateless(module: nn.Module) -> bool:
    return isinstance(module, STATELESS) or not any(True for _ in module.state_dict())


# ---- functions and tensor methods ---------------------------------------------------------

_ACT_FUNCS = {F.relu: "relu", torch.relu: "relu", F.gelu: "gelu", torch.tanh: "tanh",
              F.tanh: "tanh", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
              F.silu: "silu", F.elu: "elu", F.leaky_relu: "leaky_relu", F.relu6: "relu6",
              F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid", F.mish: "mish"}
_ACT_METHODS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}
_JOINS = {operator.add: "+", operator.iadd: "+", torch.add: "+", operator.sub: "-",
          operator.isub: "-", torch.sub: "-", operator.mul: "*", operator.imul: "*",
          torch.mul: "*", operator.truediv: "/", operator.itruediv: "/", torch.div: "/"}


def op_name(node: fx.Node) -> str:
    """How an operation reads in an error: ``F.relu``, ``Tensor.cumsum``, ``nn.PReLU``."""
    t = node.target
    if node.op == "call_method":
        return f"Tensor.{t}"
    if node.op == "call_function":
        mod = getattr(t, "__module__", "") or ""
        name = getattr(t, "__name__", str(t))
        if mod.startswith("torch.nn.functional"):
            return f"F.{name}"
        if mod.startswith("torch") or mod == "builtins" and hasattr(torch, name):
            return f"torch.{name}"
        return f"{mod}.{name}" if mod and mod != "_operator" else f"operator.{name}"
    return str(t)


def is_tensor(node) -> bool:
    return isinstance(node, fx.Node) and isinstance(node.meta.get("tensor_meta"),
                                                    torch.fx.passes.shape_prop.TensorMetadata)


def rank(node: fx.Node) -> int:
    return len(node.meta["tensor_meta"].shape)


def _dim_arg(node: fx.Node, args, kwargs, pos: int, name: str, default=None):
    if len(args) > pos:
        return args[pos]
    return kwargs.get(name, default)


def function_op(node: fx.Node, dims) -> Op | None:
    """A call_function or call_method node as an Op; None when it is not a tensor op at all
    (shape arithmetic, assertions: the caller skips those)."""
    t, args, kwargs = node.target, list(node.args), dict(node.kwargs)
    method = node.op == "call_method"
    x = args[0] if args else None
    if not method and t is operator.getitem and isinstance(x, fx.Node) \
            and x.op == "call_module" and not is_tensor(x):
        if args[1] != 0:  # nn.MultiheadAttention's weights: nnspec's attention has none
            if not node.users:  # `x, _ = attn(x, x, x)`
                return None
            raise _unsupported(f"output {args[1]} of {x.target}")
        return Op(node, [], [x], "skip")
    if not method and t is operator.getitem and isinstance(x, fx.Node) \
            and x.target in ("unbind", torch.unbind) and isinstance(args[1], int):
        dim = _dim_arg(x, list(x.args), dict(x.kwargs), 1, "dim", 0)
        src = x.args[0]
        dim = dim + rank(src) if dim < 0 else dim
        return Op(node, [("index", _along(src, dim, args[1]))], [src], "index")
    if not method and t is operator.getitem and isinstance(x, fx.Node) \
            and x.target in ("chunk", torch.chunk) and isinstance(args[1], int):
        xa, xk = list(x.args), dict(x.kwargs)
        src, n = xa[0], _dim_arg(x, xa, xk, 1, "chunks")
        dim = _dim_arg(x, xa, xk, 2, "dim", 0)
        dim = dim + rank(src) if dim < 0 else dim
        size = int(src.meta["tensor_meta"].shape[dim])
        step = -(-size // n)  # torch.chunk: pieces of ceil(size / n), the last one shorter
        a, b = args[1] * step, min(size, (args[1] + 1) * step)
        piece = slice(a or None, b if b < size else None)
        return Op(node, [("index", _along(src, dim, piece))], [src], "index")
    if method and t in ("unbind", "chunk") or not method and t in (torch.unbind, torch.chunk):
        return None  # their pieces are read by index above
    if not _has_tensor(args, kwargs):
        return None  # arithmetic on sizes: read where a size is used (a reshape)
    if not method and t in _JOINS or method and t in ("add", "sub", "mul", "div", "add_",
                                                        "mul_"):
        sym = _JOINS.get(t) or {"add": "+", "add_": "+", "sub": "-", "mul": "*",
                                "mul_": "*", "div": "/"}[t]
        a, b = args[0], args[1]
        if is_tensor(a) and is_tensor(b):
            return Op(node, [sym], [a, b], "join")
        if is_tensor(a) and isinstance(b, (int, float)) and not isinstance(b, bool):
            return Op(node, [f"{sym} {_num(b)}"], [a], "scalar")
        if is_tensor(b) and isinstance(a, (int, float)) and not isinstance(a, bool):
            return Op(node, [f"{_num(a)} {sym}"], [b], "rscalar")
        if not is_tensor(a) and not is_tensor(b):
            return None  # size arithmetic
        raise _unsupported(f"{op_name(node)} of {type(a).__name__} and {type(b).__name__}")
    if not method and t in _ACT_FUNCS or method and t in _ACT_METHODS:
        name = _ACT_FUNCS.get(t) if not method else _ACT_METHODS[t]
        w = [name]
        if name == "gelu" and kwargs.get("approximate", "none") != "none":
            w += [f" approximate={kwargs['approximate']}"]
        if name == "leaky_relu":
            slope = _dim_arg(node, args, kwargs, 1, "negative_slope", 0.01)
            if slope != 0.01:
                w += kw("slope", float(slope))
        return Op(node, w, [x])
    if not method and t in (F.adaptive_avg_pool2d, F.adaptive_avg_pool1d,
                            F.adaptive_avg_pool3d):
        return Op(node, _adaptive(_dim_arg(node, args, kwargs, 1, "output_size"), "avgpool"),
                  [x])
    if not method and t in (F.max_pool2d, F.avg_pool2d, torch.max_pool2d):
        raise _unsupported("functional pooling (use the module, or write the spec by hand)")
    if not method and t is F.dropout or method and t == "dropout":
        return Op(node, _dropout(_dim_arg(node, args, kwargs, 1, "p", 0.5)), [x])
    if not method and t is torch.flatten or method and t == "flatten":
        start = _dim_arg(node, args, kwargs, 1, "start_dim", 0)
        end = _dim_arg(node, args, kwargs, 2, "end_dim", -1)
        w = ["flatten"]
        if start != 1:
            w += kw("start", start)
        if end != -1:
            w += kw("end", end)
        return Op(node, w, [x])
    if not method and t is torch.cat or not method and t is torch.concat:
        xs = list(args[0])
        dim = _dim_arg(node, args, kwargs, 1, "dim", 0)
        if len(xs) == 1:  # torch.cat of one tensor is that tensor
            return Op(node, [], xs, "skip")
        return Op(node, ["concat", f" dim={dim}"], xs, "call")
    if method and t in ("contiguous", "clone", "float") or not method and t is F.dropout \
            and False:
        return Op(node, [], [x], "skip")
    if method and t in ("view", "reshape") or not method and t is torch.reshape:
        shape = args[1:] if method else args[1]
        if method and len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return Op(node, ["reshape ", ("shape", list(shape))], [x])
    if method and t == "expand":
        sizes = args[1:]
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = sizes[0]
        return Op(node, ["expand", ("shape", list(sizes), "exact")], [x], "call")
    if method and t == "permute" or not method and t is torch.permute:
        order = args[1:] if method else args[1]
        if len(order) == 1 and isinstance(order[0], (tuple, list)):
            order = order[0]
        return Op(node, [f"permute {_num(tuple(int(o) for o in order))}"], [x])
    if method and t == "transpose" or not method and t is torch.transpose:
        return Op(node, [f"transpose {int(args[1])} {int(args[2])}"], [x])
    if method and t in ("mean", "sum", "amax", "amin") or not method and t in (
            torch.mean, torch.sum, torch.amax, torch.amin):
        name = t if method else t.__name__
        dim = _dim_arg(node, args, kwargs, 1, "dim")
        keep = _dim_arg(node, args, kwargs, 2, "keepdim", False)
        w = [name]
        if dim is not None:
            w += [f" dim={_num(tuple(dim) if isinstance(dim, (list, tuple)) else int(dim))}"]
        if keep:
            w += [" keepdim"]
        return Op(node, w, [x])
    if not method and t in (F.softmax, torch.softmax, F.log_softmax) or method and t in (
            "softmax", "log_softmax"):
        name = "log_softmax" if (t is F.log_softmax or t == "log_softmax") else "softmax"
        dim = _dim_arg(node, args, kwargs, 1, "dim")
        if dim is None:
            raise _unsupported(f"{name} without dim")
        return Op(node, [f"{name} dim={int(dim)}"], [x])
    if not method and t is operator.getitem and is_tensor(x):
        return Op(node, [("index", args[1])], [x], "index")
    if not method and t is torch.matmul or method and t == "matmul" \
            or not method and t is operator.matmul:
        return Op(node, ["matmul"], [args[0], args[1]], "call")
    if not method and t in (getattr, operator.getitem, len) or method and t in (
            "size", "dim"):
        return None
    if not method and getattr(t, "__name__", "") in ("_assert", "_assert_async"):
        return None
    if not method and t is F.scaled_dot_product_attention:
        return _sdpa(node, args, kwargs)
    raise _unsupported(f"no nnspec kind for {op_name(node)}")


def _along(src: fx.Node, dim: int, sub) -> tuple:
    """Subscripts taking ``sub`` along ``dim``: ``x[:, 0]``, or ``x[..., :5]`` on the last."""
    if dim == rank(src) - 1 and dim > 1:
        return (Ellipsis, sub)
    return (slice(None),) * dim + (sub,)


def _has_tensor(args, kwargs) -> bool:
    found = []
    fx.node.map_arg((args, kwargs), lambda n: found.append(n) or n)
    return any(is_tensor(n) for n in found)


def _sdpa(node, args, kwargs) -> Op:
    q, k, v = args[:3]
    mask = _dim_arg(node, args, kwargs, 3, "attn_mask")
    p = _dim_arg(node, args, kwargs, 4, "dropout_p", 0.0)
    causal = _dim_arg(node, args, kwargs, 5, "is_causal", False)
    scale = kwargs.get("scale")
    w = ["sdpa"]
    ins = [q, k, v]
    if causal:
        w += [" causal=true"]
    if mask is not None:
        w += [" mask=", ("tensor", mask)]
        ins.append(mask)
    if isinstance(p, (int, float)) and p:
        w += [f" dropout={_num(float(p))}"]
    if scale is not None:
        w += [f" scale={_num(float(scale))}"]
    if kwargs.get("enable_gqa"):
        pass
    return Op(node, w, ins, "call")


# ---- functional calls on a module's own parameters -------------------------------------

def _attr(node) -> str | None:
    return node.target if isinstance(node, fx.Node) and node.op == "get_attr" else None


def _owner(attrs: dict) -> str | None:
    """The module path P when every given tensor is ``P.<its name>`` (``P.weight``,
    ``P.running_mean``), else None."""
    owners = set()
    for name, node in attrs.items():
        if node is None:
            continue
        target = _attr(node)
        if target is None or not target.endswith("." + name):
            return None
        owners.add(target[: -len(name) - 1])
    return owners.pop() if len(owners) == 1 else None


def functional_layer(node: fx.Node, modules: dict) -> Op | None:
    """``F.layer_norm(x, shape, self.weight, self.bias, eps)``, ``F.batch_norm`` on a
    module's running statistics, ``F.linear`` and ``F.conv2d`` with a module's weight: the
    layer of that module, named by its path (timm's norm layers are written so)."""
    t, args, kwargs = node.target, list(node.args), dict(node.kwargs)
    if node.op != "call_function":
        return None
    arg = lambda i, n, d=None: _dim_arg(node, args, kwargs, i, n, d)  # noqa: E731
    if t is F.layer_norm:
        x, shape, w, b, eps = arg(0, "input"), arg(1, "normalized_shape"), arg(2, "weight"), \
            arg(3, "bias"), arg(4, "eps", 1e-5)
        owner = _owner({"weight": w, "bias": b})
        if owner is None or w is None:
            return None
        words = ["layernorm"]
        if len(shape) != 1:
            words += kw("axes", len(shape))
        if eps != 1e-5:
            words += kw("eps", float(eps))
        if b is None:
            words += [" bias=false"]
        return Op(node, words, [x], "stage", owner)
    if t is F.batch_norm:
        x, rm, rv, w, b = (arg(i, n) for i, n in enumerate(
            ("input", "running_mean", "running_var", "weight", "bias")))
        training, momentum, eps = arg(5, "training", False), arg(6, "momentum", 0.1), \
            arg(7, "eps", 1e-5)
        owner = _owner({"running_mean": rm, "running_var": rv, "weight": w, "bias": b})
        if owner is None or rm is None or training is not False:
            return None
        module = modules.get(owner)
        words = ["batchnorm"]
        if eps != 1e-5:
            words += kw("eps", float(eps))
        mom = getattr(module, "momentum", momentum)
        if isinstance(mom, float) and mom != 0.1:
            words += kw("momentum", float(mom))
        if w is None:
            words += [" affine=false"]
        return Op(node, words, [x], "stage", owner)
    if t is F.linear:
        x, w, b = arg(0, "input"), arg(1, "weight"), arg(2, "bias")
        owner = _owner({"weight": w, "bias": b})
        if owner is None:
            return None
        out = int(modules[owner].get_parameter("weight").shape[0])
        return Op(node, ["dense ", Slot(out, "d")] + ([] if b is not None else [" bias=false"]),
                  [x], "stage", owner)
    return None


def isclose(a, b) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
