"""Submodule constructors as pieces of text and slots: ``nn.Conv2d(<in_channels>,
<out_channels>, kernel_size=<3>)`` for a plan's :class:`~nnspec.layers.base.TorchModule`
(:func:`_module_pieces`), where a :class:`_Slot` is a literal that may differ between a
block's instances, and :func:`_render` writes the pieces back as text. The frozen
constructor signatures of the ``torch.nn`` and helper classes (:data:`NN_SIGNATURES`, which
a test compares with torch) let an argument equal to its default be left out.
"""

from __future__ import annotations

import ast
import keyword
from dataclasses import dataclass, replace

from ...core.dims import Dim
from ...layers.base import TorchModule
from ..plans import helper_parts as _helper_parts
from .literals import _lit


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
     "dtype=None", "Embedding", "nnspec.layers.torch.positional:LearnedPositions")
_sig("", "GRU", "LSTM", "RNN", "nnspec.layers.torch.recurrent:PackedGRU",
     "nnspec.layers.torch.recurrent:PackedLSTM", "nnspec.layers.torch.recurrent:PackedRNN")
_sig("num_groups num_channels eps=1e-05 affine=True device=None dtype=None bias=True",
     "GroupNorm")
_sig("num_features eps=1e-05 momentum=0.1 affine=False track_running_stats=False device=None "
     "dtype=None bias=True", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d")
_sig("normalized_shape eps=1e-05 elementwise_affine=True bias=True device=None dtype=None",
     "LayerNorm")
_sig("in_features out_features bias=True device=None dtype=None", "Linear")
_sig("in_features out_features bias=True", "nnspec.layers.torch.dense:TransposedLinear")
_sig("in_features out_features bias=True", "nnspec.layers.torch.dense:Conv1D")
_sig("in_features out_features bias=True dim=0", "nnspec.layers.torch.weightnorm:WeightNormLinear")
_sig("in_channels out_channels kernel_size stride=1 padding=0 dilation=1 groups=1 bias=True "
     "dim=0", *(f"nnspec.layers.torch.weightnorm:WeightNormConv{n}d" for n in (1, 2, 3)))
_sig("in_caps in_dim out_caps out_dim routings=3", "nnspec.layers.torch.capsule:CapsuleLayer")
_sig("always=False", "nnspec.layers.torch.capsule:CapsuleMask")
_sig("sample='train'", "nnspec.layers.torch.stochastic:Bernoulli",
     "nnspec.layers.torch.stochastic:GaussianSample")
_sig("std sample='train'", "nnspec.layers.torch.stochastic:GaussianNoise")
_sig("p", "nnspec.layers.torch.stochastic:DropPath")
_sig("p=0.0", "nnspec.layers.torch.sdpa:ScaledDotProductAttention")
_sig("softcap p=0.0", "nnspec.layers.torch.sdpa:SoftcappedAttention")
_sig("visible hidden k=1 output='hidden' sample_visible=False sample='train'",
     "nnspec.layers.torch.rbm:RBM")
_sig("embed_dim num_heads kv_heads=None dropout=0.0 bias=True qkv='packed' causal=False "
     "scale=None rope=False rope_theta=10000.0 rope_layout='half' softcap=None window=None",
     "nnspec.layers.torch.attention:SDPAttention")
_sig("kernel_size stride=None padding=0 dilation=1 return_indices=False ceil_mode=False",
     "MaxPool1d", "MaxPool2d", "MaxPool3d")
_sig("embed_dim num_heads dropout=0.0 bias=True add_bias_kv=False add_zero_attn=False "
     "kdim=None vdim=None batch_first=False device=None dtype=None",
     "MultiheadAttention", "nnspec.layers.torch.attention:MaskedAttention")
_sig("upscale_factor", "PixelShuffle")
_sig("num_parameters=1 init=0.25 device=None dtype=None", "PReLU")
_sig("downscale_factor", "PixelUnshuffle")
_sig("normalized_shape eps=None elementwise_affine=True device=None dtype=None", "RMSNorm")
_sig("size=None scale_factor=None mode='nearest' align_corners=None "
     "recompute_scale_factor=None", "Upsample")
_sig("input_size hidden_size num_layers=1 bias=True batch_first=True dropout=0.0 "
     "bidirectional=False", "nnspec.layers.torch.recurrent:ChoGRU")

# names of the positional arguments where the signature has none (``*args``)
_POSITIONAL = {cls: ("input_size", "hidden_size") for cls in (
    "GRU", "LSTM", "RNN", "nnspec.layers.torch.recurrent:PackedGRU",
    "nnspec.layers.torch.recurrent:PackedLSTM", "nnspec.layers.torch.recurrent:PackedRNN")}

_TUPLE_KW = {"kernel_size", "stride", "padding", "dilation", "output_size"}


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
    src: str = ""  # the spec's text of the layer it comes from

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


def _parameter_pieces(m: TorchModule) -> list:
    """``nn.Parameter(torch.zeros(<1>, <1>, <768>))``: a ``param`` layer's tensor, zeros
    until its initialiser (written after it) or loaded weights set it."""
    return _call_pieces("nn.Parameter(torch.zeros", [[_Slot(a, "size")] for a in m.args]) \
        + [")"]


def _with_src(pieces: list, src: str) -> list:
    """The pieces with each slot's spec text set to ``src``."""
    return [replace(p, src=src) if isinstance(p, _Slot) else p for p in pieces]


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
