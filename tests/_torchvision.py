"""torchvision's reference models, importable beside a CPU-only torch.

The registry's torchvision wheel is built for a newer CUDA torch: its C++ extension does not
load here, and ``import torchvision`` then fails while registering fake kernels for its
detection ops (``operator torchvision::nms does not exist``). None of the models the tests
use calls those ops, so declaring their schemas (and nothing else) before the import lets the
pure-Python model definitions load. ``models()`` returns ``torchvision.models`` or skips the
calling test when torchvision is not installed.
"""

from __future__ import annotations

import pytest

# the ops torchvision's _meta_registrations.py registers fake kernels for (torchvision 0.29)
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, int sampling_ratio) -> (Tensor, Tensor)",
    "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, "
    "float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, "
    "SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width) -> (Tensor, Tensor)",
    "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, "
    "SymInt height, SymInt width) -> Tensor",
    "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width) -> (Tensor, Tensor)",
    "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, "
    "float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, "
    "SymInt channels, SymInt height, SymInt width) -> Tensor",
    "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, "
    "SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
    "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor",
    "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, "
    "Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, "
    "SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, "
    "bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
)

_LIBRARY = None


def declare_ops() -> bool:
    """Declare torchvision's op schemas where its C++ ops did not load, so that
    ``import torchvision`` (which transformers does too) works; False without torchvision."""
    global _LIBRARY
    import importlib.util
    import sys

    if importlib.util.find_spec("torchvision") is None:
        return False
    if "torchvision" not in sys.modules and _LIBRARY is None:
        import torch

        try:  # a torchvision whose C++ ops did load has them already: nothing to declare
            torch.ops.torchvision.nms  # noqa: B018
        except (AttributeError, RuntimeError):
            _LIBRARY = torch.library.Library("torchvision", "DEF")
            for schema in _SCHEMAS:
                _LIBRARY.define(schema)
    return True


def models():
    """``torchvision.models``, or skip the test when torchvision is not installed."""
    if not declare_ops():
        pytest.skip("torchvision is not installed")
    import torchvision.models

    return torchvision.models
