"""What each traced module is in nnspec: torch modules mapped to layer kinds (functions and
tensor methods: functions.py).

Each converter returns an :class:`Op`: the stage's words (numbers that may become block
parameters kept as :class:`Slot` s), its tensor inputs and how it is written (a pipeline
stage, a call, an element-wise join). An operation without a kind is an
:class:`~.trace.ImportFailure` naming the module path and the operation: never an
approximation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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

def _conv_head(m, kind: str) -> list:
    """``conv <out> k= [s=]``: the words a convolution and a transposed one share first."""
    if m.padding_mode != "zeros":
        raise _unsupported(f"padding_mode={m.padding_mode!r}")
    w = [f"{kind} ", Slot(m.out_channels, "c")]
    w += kw("k", _pair(m.kernel_size), "k")
    if _pair(m.stride) != 1:
        w += kw("s", _pair(m.stride), "stride")
    return w


def _conv_tail(m) -> list:
    """``[d=] [groups=] [bias=false]``: the words both share last."""
    w = []
    if _pair(m.dilation) != 1:
        w += kw("d", _pair(m.dilation), "dilation")
    if m.groups != 1:
        w += kw("groups", m.groups, "groups")
    if m.bias is None:
        w += [" bias=false"]
    return w


def _conv(m: nn.Conv1d) -> list:
    w = _conv_head(m, "conv")
    pad = m.padding if isinstance(m.padding, str) else _pair(m.padding)
    if pad == "same":
        w += [" p=same"]
    elif pad not in (0, "valid"):
        w += kw("p", pad, "pad")
    return w + _conv_tail(m)


def _convtranspose(m: nn.ConvTranspose2d) -> list:
    w = _conv_head(m, "convtranspose")
    if _pair(m.padding) != 0:
        w += kw("p", _pair(m.padding), "pad")
    if _pair(m.output_padding) != 0:
        w += kw("output_padding", _pair(m.output_padding), "output_padding")
    return w + _conv_tail(m)


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


def _recurrent(kind: str):
    """nn.RNN / nn.GRU / nn.LSTM, batch first, their sequence output (``out, _ = rnn(x)``)."""
    def make(m) -> list:
        if not m.batch_first:
            raise _unsupported(f"{type(m).__name__}(batch_first=False): nnspec's recurrent "
                               "layers take [N, T, features], batch first")
        w = [f"{kind} ", Slot(int(m.hidden_size), "hidden")]
        if m.num_layers != 1:
            w += kw("layers", m.num_layers)
        if m.bidirectional:
            w += [" bidirectional"]
        if m.dropout:
            w += kw("dropout", float(m.dropout))
        if not m.bias:
            w += [" bias=false"]
        if kind == "rnn" and m.nonlinearity != "tanh":
            w += [f" nonlinearity={m.nonlinearity}"]
        if kind == "lstm" and m.proj_size:
            w += kw("proj_size", int(m.proj_size))
        return w
    return make


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
    nn.RNN: _recurrent("rnn"), nn.GRU: _recurrent("gru"), nn.LSTM: _recurrent("lstm"),
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

def _rmsnorm(m) -> list:
    """Hugging Face's RMSNorm modules (LLaMA, T5, Mistral, ...): x / rms(x) * weight."""
    eps = getattr(m, "variance_epsilon", getattr(m, "eps", None))
    w = ["rmsnorm"]
    if eps is not None:
        w += kw("eps", float(eps))
    return w


_HF = "transformers.activations."


def _conv1d_hf(m) -> list:
    """Hugging Face's Conv1D (GPT-2): a linear layer whose weight is [in, out]."""
    return ["dense ", Slot(int(m.nf), "d"), " layout=in_out"] + (
        [] if m.bias is not None else [" bias=false"])

#: modules of other libraries, by qualified class name, whose forward is known
KNOWN = {
    _HF + "GELUActivation": _activation("gelu"),
    _HF + "NewGELUActivation": lambda m: ["gelu approximate=tanh"],
    _HF + "GELUTanh": lambda m: ["gelu approximate=tanh"],
    _HF + "PytorchGELUTanh": lambda m: ["gelu approximate=tanh"],
    _HF + "SiLUActivation": _activation("silu"),
    "transformers.pytorch_utils.Conv1D": _conv1d_hf,
    "transformers.models.llama.modeling_llama.LlamaRMSNorm": _rmsnorm,
    "transformers.models.mistral.modeling_mistral.MistralRMSNorm": _rmsnorm,
    "transformers.models.t5.modeling_t5.T5LayerNorm": _rmsnorm,
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


def weight_norm(module: nn.Module, words: list) -> list:
    """`` weight_norm=<dim>`` for a convolution or linear layer under
    torch.nn.utils.weight_norm (its weight_g/weight_v keys, as nnspec's); a weight under
    torch.nn.utils.parametrizations is refused (nnspec keeps the weight_g/weight_v keys)."""
    if not (words and isinstance(words[0], str) and words[0].split()[0] in ("conv", "dense")):
        return []
    for hook in module._forward_pre_hooks.values():
        if type(hook).__name__ == "WeightNorm" and getattr(hook, "name", "") == "weight":
            if not isinstance(hook.dim, int):
                raise _unsupported("weight_norm over the whole weight (dim=None)")
            return [f" weight_norm={hook.dim}"]
    if getattr(module, "parametrizations", None) is not None:
        raise _unsupported("a parametrized weight (torch.nn.utils.parametrizations): nnspec's "
                           "weight_norm= keeps torch.nn.utils.weight_norm's weight_g/weight_v")
    return []


_VERIFIED: dict = {}  # class -> its words maker, or None: checked once per class


def _rms_like(module: nn.Module):
    """A module whose class is named ``...RMSNorm`` (Qwen2's, Phi-3's, ...), with a weight
    [d] and an eps, that computes x / sqrt(mean(x^2) + eps) * weight: checked by running it
    on numbers (its weight swapped for random values on the CPU), never taken on its
    name alone (Gemma's computes (1 + weight))."""
    import torch
    from torch.func import functional_call

    w = getattr(module, "weight", None)
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    if not isinstance(w, torch.Tensor) or w.dim() != 1 or not isinstance(eps, float) or \
            any(True for _ in module.buffers()) or len(list(module.parameters())) != 1:
        return None
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(w.shape, generator=g, dtype=torch.float64)
    x = torch.randn(3, 5, w.shape[0], generator=g, dtype=torch.float64) * 3
    try:
        with torch.no_grad():
            got = functional_call(module, {"weight": weight}, (x,))
    except Exception:
        return None
    want = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight
    if not isinstance(got, torch.Tensor) or got.shape != want.shape or \
            (got.double() - want).abs().max() > 1e-5 * want.abs().max():
        return None
    return _rmsnorm


def converter(module: nn.Module):
    """The words of a module nnspec has a kind for, or None. A subclass counts only when it
    keeps its base's forward (torchvision's LayerNorm2d subclasses nn.LayerNorm with a
    forward of its own: it is a known class, or not a layer normalisation over the last
    axis)."""
    cls = type(module)
    known = KNOWN.get(f"{cls.__module__}.{cls.__qualname__}")
    if known is not None:
        return known
    if cls.__name__.lower().endswith("rmsnorm"):
        if cls not in _VERIFIED:
            _VERIFIED[cls] = _rms_like(module)
        return _VERIFIED[cls]
    for base in cls.__mro__:
        if base in MODULES:
            return MODULES[base] if cls.forward is base.forward else None
    return None


def stateless(module: nn.Module) -> bool:
    return isinstance(module, STATELESS) or not any(True for _ in module.state_dict())
