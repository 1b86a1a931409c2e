"""ONNX ops with weights or windows as nnspec layers: Conv, ConvTranspose, Gemm, MatMul with
a constant matrix, BatchNormalization, LayerNormalization, InstanceNormalization, PRelu,
MaxPool, AveragePool, the global pools, Gather of a table (an embedding) and Resize.

Each converter takes (converter, node, resolved input names, node index) and returns an
:class:`~.convert.Op` (None when the node only changed another Op). Attributes follow the
ONNX operator specification; a value nnspec has no argument for is an error naming it.
"""

from __future__ import annotations

import math

import numpy as np

from .convert import Converter, Op, label
from .read import is_int
from .words import ints, num, pads


def _spatial_attrs(cx: Converter, node, n: int, dilations: bool = True):
    s = list(cx.attr(node, "strides", [1] * n))
    d = list(cx.attr(node, "dilations", [1] * n)) if dilations else [1] * n
    return s, d


def window_pads(cx: Converter, node, x: str, k, s, d) -> tuple[list, list]:
    """(before, after) per spatial dim from ``pads`` or ``auto_pad``, as the ONNX spec
    defines them (SAME_UPPER puts the odd cell after, SAME_LOWER before)."""
    n = len(k)
    auto = cx.attr(node, "auto_pad", "NOTSET") or "NOTSET"
    if auto == "NOTSET":
        p = list(cx.attr(node, "pads", [0] * 2 * n))
        return p[:n], p[n:]
    if auto == "VALID":
        return [0] * n, [0] * n
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise cx.fail(node, f"auto_pad={auto!r}")
    sizes = (cx.dims(x) or [None] * (n + 2))[2:]
    before, after = [], []
    for i in range(n):
        if s[i] == 1:
            total = d[i] * (k[i] - 1)
        else:
            size = sizes[i]
            if not isinstance(size, int):
                raise cx.fail(node, f"auto_pad={auto} with stride {s[i]} over a size that is "
                                    "not known statically (the padding depends on it)")
            out = -(-size // s[i])
            total = max((out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - size, 0)
        small = total // 2
        before.append(small if auto == "SAME_UPPER" else total - small)
        after.append(total - before[-1])
    return before, after


def conv(cx: Converter, node, ins, i) -> Op:
    x = cx.tensor(node, ins[0])
    w = cx.numeric(node, ins[1], "weight")
    if w.ndim < 3:
        raise cx.fail(node, f"a weight of rank {w.ndim}")
    n = w.ndim - 2
    k = list(w.shape[2:])
    given = cx.attr(node, "kernel_shape")
    if given is not None and list(given) != k:
        raise cx.fail(node, f"kernel_shape {list(given)} differs from the weight's {k}")
    s, d = _spatial_attrs(cx, node, n)
    g = int(cx.attr(node, "group", 1))
    p = pads(*window_pads(cx, node, x, k, s, d))
    return _conv_layer(cx, node, ins, x, "conv", w.shape[0], k, s, p, "", d, g)


def conv_transpose(cx: Converter, node, ins, i) -> Op:
    x = cx.tensor(node, ins[0])
    w = cx.numeric(node, ins[1], "weight")
    if w.ndim < 3:
        raise cx.fail(node, f"a weight of rank {w.ndim}")
    n = w.ndim - 2
    k = list(w.shape[2:])
    if cx.attr(node, "output_shape") is not None:
        raise cx.fail(node, "output_shape (give output_padding instead)")
    if (cx.attr(node, "auto_pad", "NOTSET") or "NOTSET") != "NOTSET":
        raise cx.fail(node, f"auto_pad={cx.attr(node, 'auto_pad')!r}")
    s, d = _spatial_attrs(cx, node, n)
    g = int(cx.attr(node, "group", 1))
    pv = list(cx.attr(node, "pads", [0] * 2 * n))
    op_ = list(cx.attr(node, "output_padding", [0] * n))
    p = pads(pv[:n], pv[n:])
    extra = f" output_padding={ints(op_)}" if any(op_) else ""
    return _conv_layer(cx, node, ins, x, "convtranspose", w.shape[1] * g, k, s, p, extra, d, g)


def _conv_layer(cx: Converter, node, ins, x, kind: str, out: int, k, s, p: str, extra: str,
                d, g: int) -> Op:
    """A convolution or a transposed one: ``<kind> <out> k= [s=] [p=] ... [d=] [groups=]
    [bias=false]``, its weight (and bias) from the node's initializers."""
    text = f"{kind} {out} k={ints(k)}"
    text += f" s={ints(s)}" if any(v != 1 for v in s) else ""
    text += f" p={p}" if p else ""
    text += extra
    text += f" d={ints(d)}" if any(v != 1 for v in d) else ""
    text += f" groups={g}" if g != 1 else ""
    bias = len(ins) > 2 and ins[2]
    text += "" if bias else " bias=false"
    return cx.layer(node, kind, text, [x], node.output[0],
                    {"weight": (ins[1], None), "bias": (ins[2] if bias else "", None)})


def gemm(cx: Converter, node, ins, i) -> Op:
    x = cx.tensor(node, ins[0])
    if cx.attr(node, "transA", 0):
        raise cx.fail(node, "transA=1 (the input transposed)")
    for a in ("alpha", "beta"):
        v = cx.attr(node, a, 1.0)
        if not math.isclose(v, 1.0, rel_tol=1e-6):
            raise cx.fail(node, f"{a}={num(v)} (nnspec's dense computes x W^T + b)")
    w = cx.numeric(node, ins[1], "weight B")
    if w.ndim != 2:
        raise cx.fail(node, f"a weight of rank {w.ndim}")
    trans = bool(cx.attr(node, "transB", 0))
    out = w.shape[0] if trans else w.shape[1]
    bias = len(ins) > 2 and ins[2]
    if bias:
        c = cx.numeric(node, ins[2], "bias C")
        if c.size != out or c.ndim > 2:
            raise cx.fail(node, f"a bias C of shape {list(c.shape)} (nnspec's dense has one "
                                f"bias per output, [{out}])")
    text = f"dense {out}" + ("" if bias else " bias=false")
    return cx.layer(node, "dense", text, [x], node.output[0],
                    {"weight": (ins[1], None if trans else "T"),
                     "bias": (ins[2] if bias else "", None)})


def matmul(cx: Converter, node, ins, i) -> Op:
    if cx.is_const(ins[1]) and not cx.is_const(ins[0]):
        x = cx.tensor(node, ins[0])
        w = cx.numeric(node, ins[1], "matrix")
        if w.ndim != 2:
            raise cx.fail(node, f"a constant matrix of rank {w.ndim} (nnspec's dense takes a "
                                "matrix)")
        tied = _tied(cx, w.T)
        if tied:
            return cx.layer(node, "dense", f"dense {w.shape[1]} bias=false weight={tied}",
                            [x], node.output[0], {"bias": ("", None)})
        return cx.layer(node, "dense", f"dense {w.shape[1]} bias=false", [x], node.output[0],
                        {"weight": (ins[1], "T"), "bias": ("", None)})
    if cx.is_const(ins[0]) and not cx.is_const(ins[1]):
        w = cx.value(ins[0])
        raise cx.fail(node, f"a constant of shape {list(w.shape)} times a tensor, the "
                            "constant on the left (W @ x): nnspec's dense multiplies by a "
                            "constant matrix on the right (x @ W)")
    a, b = cx.tensor(node, ins[0]), cx.tensor(node, ins[1])
    return Op(label(node), "expr", "matmul({0}, {1})", [a, b], node.output[0], base="mm")


def _tied(cx: Converter, w: np.ndarray) -> str | None:
    """The state_dict key of an embedding table equal to the matrix ``w`` ([out, in]),
    element for element (an output projection tied to the token embedding, which the
    exporter writes transposed as a second initializer); a table of one repeated value is
    never taken for a tie."""
    if w.dtype == object or w.size < 2 or np.all(w == w.reshape(-1)[0]):
        return None
    for name, op in cx.layers.items():
        if op.kind == "embedding" and not op.again:
            t = cx.value(op.weights["weight"][0])
            if t.shape == w.shape and np.array_equal(t, w):
                return f"{name}.weight"
    return None


def fuse_bias(cx: Converter, node, ins) -> bool:
    """``MatMul(x, W) + b`` with a constant vector b: the bias of the dense layer."""
    for t, c in ((ins[0], ins[1]), (ins[1], ins[0])):
        op = cx.producer.get(t)
        if op is None or op.kind != "dense" or op.again or op.weights.get("bias") or \
                cx.users.get(t, 0) != 1 or not cx.is_const(c) or cx.is_const(t):
            continue
        v = cx.value(c)
        out = int(op.text.split()[1])
        if v.dtype == object or v.ndim != 1 or v.shape[0] != out:
            continue
        op.text = op.text.replace(" bias=false", "")
        op.weights["bias"] = (c, None)
        op.output = node.output[0]
        cx.producer[op.output] = op
        cx.tensors.add(op.output)
        return True
    return False


def batchnorm(cx: Converter, node, ins, i) -> Op:
    x = cx.tensor(node, ins[0])
    if cx.attr(node, "training_mode", 0):
        raise cx.fail(node, "training_mode=1 (nnspec imports the inference graph)")
    if any(o and cx.users.get(o) for o in node.output[1:]):
        raise cx.fail(node, "the running statistics it outputs are used")
    for j, what in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")):
        cx.numeric(node, ins[j], what)
    text = "batchnorm"
    eps = cx.attr(node, "epsilon", 1e-5)
    if not math.isclose(eps, 1e-5, rel_tol=1e-5):
        text += f" eps={num(eps)}"
    mom = 1.0 - cx.attr(node, "momentum", 0.9)
    if not math.isclose(mom, 0.1, rel_tol=1e-5):
        text += f" momentum={num(mom)}"
    return cx.layer(node, "batchnorm", text, [x], node.output[0],
                    {"weight": (ins[1], None), "bias": (ins[2], None),
                     "running_mean": (ins[3], None), "running_var": (ins[4], None)})


def layernorm(cx: Converter, node, ins, i) -> Op:
    x = cx.tensor(node, ins[0])
    if any(o and cx.users.get(o) for o in node.output[1:]):
        raise cx.fail(node, "its mean or inverse standard deviation output is used")
    r = cx.rank(node, x)
    axis = cx.attr(node, "axis", -1) % r
    cx.numeric(node, ins[1], "scale")
    text = "layernorm" + (f" axes={r - axis}" if r - axis != 1 else "")
    eps = cx.attr(node, "epsilon", 1e-5)
    if not math.isclose(eps, 1e-5, rel_tol=1e-5):
        text += f" eps={num(eps)}"
    bias = len(ins) > 2 and ins[2]
    text += "" if bias else " bias=false"
    return cx.layer(node, "layernorm", text, [x], node.output[0],
                    {"weight": (ins[1], None), "bias": (ins[2] if bias else "", None)})


def instancenorm(cx: Converter, node, ins, i) -> Op:
    x = cx.tensor(node, ins[0])
    text = "instancenorm affine"
    eps = cx.attr(node, "epsilon", 1e-5)
    if not math.isclose(eps, 1e-5, rel_tol=1e-5):
        text += f" eps={num(eps)}"
    return cx.layer(node, "instancenorm", text, [x], node.output[0],
                    {"weight": (ins[1], None), "bias": (ins[2], None)})


def groupnorm(cx: Converter, node, ins, i) -> Op:
    """GroupNormalization with a scale and bias per channel (opset 21; opset 18's are per
    group, which equals it only when every group is one channel)."""
    x = cx.tensor(node, ins[0])
    groups = int(cx.attr(node, "num_groups"))
    scale = cx.numeric(node, ins[1], "scale")
    dims = cx.dims(x)
    c = dims[1] if dims and len(dims) > 1 else None
    if not isinstance(c, int) or scale.shape != (c,):
        raise cx.fail(node, f"a scale of shape {list(scale.shape)} for {c} channels (nnspec's "
                            "groupnorm has one scale and bias per channel)")
    text = f"groupnorm {groups}"
    eps = cx.attr(node, "epsilon", 1e-5)
    if not math.isclose(eps, 1e-5, rel_tol=1e-5):
        text += f" eps={num(eps)}"
    return cx.layer(node, "groupnorm", text, [x], node.output[0],
                    {"weight": (ins[1], None), "bias": (ins[2], None)})


def prelu(cx: Converter, node, ins, i) -> Op:
    x = cx.tensor(node, ins[0])
    slope = cx.numeric(node, ins[1], "slope")
    r = cx.rank(node, x)
    if slope.size == 1:
        text = "prelu"
    elif r >= 2 and slope.ndim <= r - 1 and slope.shape[0] == slope.size and \
            slope.ndim == r - 1:
        text = f"prelu {slope.size}"
    else:
        raise cx.fail(node, f"a slope of shape {list(slope.shape)} (nnspec's prelu has one "
                            "slope, or one per channel)")
    return cx.layer(node, "prelu", text, [x], node.output[0], {"weight": (ins[1], None)})


def pool(kind: str):
    def make(cx: Converter, node, ins, i) -> Op:
        x = cx.tensor(node, ins[0])
        if any(o and cx.users.get(o) for o in node.output[1:]):
            raise cx.fail(node, "its indices output is used")
        v = cx.g.values.get(x)
        if v is not None and is_int(v.elem):
            raise cx.fail(node, "a pooling of integers (nnspec pools float tensors)")
        k = list(cx.attr(node, "kernel_shape"))
        n = len(k)
        s, d = _spatial_attrs(cx, node, n)
        if kind == "avgpool" and any(v != 1 for v in d):
            raise cx.fail(node, "a dilated average pooling")
        before, after = window_pads(cx, node, x, k, s, d)
        p = pads(before, after)
        text = f"{kind} k={ints(k)}"
        text += f" s={ints(s)}" if s != k else ""
        text += f" p={p}" if p else ""
        text += f" d={ints(d)}" if any(v != 1 for v in d) else ""
        if cx.attr(node, "ceil_mode", 0):
            text += " ceil"
        if kind == "avgpool" and p and not cx.attr(node, "count_include_pad", 0):
            text += " count_include_pad=false"
        return Op(label(node), "stage", text, [x], node.output[0])
    return make


def global_pool(kind: str):
    def make(cx: Converter, node, ins, i) -> Op:
        return Op(label(node), "stage", f"{kind} global", [cx.tensor(node, ins[0])],
                  node.output[0])
    return make


def gather(cx: Converter, node, ins, i) -> Op:
    axis = cx.attr(node, "axis", 0)
    if cx.is_const(ins[0]) and not cx.is_const(ins[1]):
        idx = cx.tensor(node, ins[1])
        table = cx.numeric(node, ins[0], "table")
        if table.ndim != 2 or axis != 0:
            raise cx.fail(node, f"a lookup in a table of rank {table.ndim} on axis {axis} "
                                "(nnspec's embedding looks up rows of a matrix)")
        return cx.layer(node, "embedding", f"embedding {table.shape[0]} {table.shape[1]}",
                        [idx], node.output[0], {"weight": (ins[0], None)})
    x = cx.tensor(node, ins[0])
    where = cx.numeric(node, ins[1], "index")
    if where.ndim != 0:
        raise cx.fail(node, "a gather of several indices (nnspec indexes one position)")
    r = cx.rank(node, x)
    steps = (cx.dims(x) or [None, None])[1]
    if r >= 2 and axis % r == 1 and (int(where) == -1 or isinstance(steps, int) and
                                     int(where) == steps - 1):
        return Op(label(node), "stage", "last", [x], node.output[0])  # x[:, -1]
    subs = [":"] * (axis % r) + [str(int(where))]
    return Op(label(node), "expr", "{0}[" + ", ".join(subs) + "]", [x], node.output[0],
              base="picked")


def resize(cx: Converter, node, ins, i) -> Op:
    x = cx.tensor(node, ins[0])
    r = cx.rank(node, x)
    if not 3 <= r <= 5:
        raise cx.fail(node, f"a resize of a rank-{r} tensor (nnspec upsamples [N, C, ...])")
    if cx.attr(node, "antialias", 0):
        raise cx.fail(node, "antialias=1")
    if cx.attr(node, "axes") is not None:
        raise cx.fail(node, "axes (resize every spatial axis)")
    if cx.attr(node, "exclude_outside", 0):
        raise cx.fail(node, "exclude_outside=1")
    mode = cx.attr(node, "mode", "nearest")
    ctm = cx.attr(node, "coordinate_transformation_mode", "half_pixel")
    scales = ins[2] if len(ins) > 2 and ins[2] else ""
    sizes = ins[3] if len(ins) > 3 and ins[3] else ""
    if scales:
        sc = [float(v) for v in cx.numeric(node, scales, "scales")]
        if len(sc) != r or sc[0] != 1 or sc[1] != 1:
            raise cx.fail(node, f"scales {sc}: nnspec scales the spatial axes only")
        spatial = [int(v) if float(v).is_integer() else v for v in sc[2:]]
        text = "upsample " + (_scale(spatial[0]) if len(set(spatial)) == 1 else
                              "(" + ", ".join(_scale(v) for v in spatial) + ")")
    elif sizes:
        if not cx.is_const(sizes):
            raise cx.fail(node, "sizes computed at run time")
        sz = [v if v is None or isinstance(v, str) else int(v)
              for v in cx.value(sizes).reshape(-1)]
        have = cx.dims(x) or []
        if len(sz) != r or have[:2] != sz[:2] or None in have[:2]:
            raise cx.fail(node, f"sizes {sz}: nnspec resizes the spatial axes only")
        if not all(isinstance(v, int) for v in sz[2:]):
            raise cx.fail(node, f"sizes {sz}: spatial sizes not known statically")
        spatial = sz[2:]
        text = "upsample size=" + ("(" + ", ".join(map(str, spatial)) + ("," if r == 3 else "")
                                   + ")")
    else:
        raise cx.fail(node, "neither scales nor sizes")
    integral = all(float(v).is_integer() for v in (spatial if scales else []))
    if mode == "nearest":
        nearest = cx.attr(node, "nearest_mode", "round_prefer_floor")
        if ctm == "asymmetric" and nearest == "floor":
            pass
        elif ctm in ("half_pixel", "pytorch_half_pixel") and (
                nearest == "round_prefer_ceil" or nearest == "round_prefer_floor" and
                scales and integral):
            text += " mode=nearest-exact"
        else:
            raise cx.fail(node, f"nearest resizing with coordinate_transformation_mode={ctm} "
                                f"and nearest_mode={nearest}")
        return Op(label(node), "stage", text, [x], node.output[0])
    names = {"linear": {3: "linear", 4: "bilinear", 5: "trilinear"}, "cubic": {4: "bicubic"}}
    kind = names.get(mode, {}).get(r)
    if kind is None:
        raise cx.fail(node, f"mode={mode} over a rank-{r} tensor")
    if mode == "cubic" and not math.isclose(cx.attr(node, "cubic_coeff_a", -0.75), -0.75):
        raise cx.fail(node, "cubic_coeff_a other than -0.75 (PyTorch's)")
    if ctm == "align_corners":
        text += f" mode={kind} align_corners"
    elif ctm in ("half_pixel", "pytorch_half_pixel"):
        text += f" mode={kind}"
    else:
        raise cx.fail(node, f"{mode} resizing with coordinate_transformation_mode={ctm}")
    return Op(label(node), "stage", text, [x], node.output[0])


def _scale(v) -> str:
    return str(v) if isinstance(v, int) else num(v, np.float64)


LAYER_OPS = {
    "Conv": conv, "ConvTranspose": conv_transpose, "Gemm": gemm, "MatMul": matmul,
    "BatchNormalization": batchnorm, "LayerNormalization": layernorm,
    "InstanceNormalization": instancenorm, "GroupNormalization": groupnorm, "PRelu": prelu,
    "MaxPool": pool("maxpool"), "AveragePool": pool("avgpool"),
    "GlobalAveragePool": global_pool("avgpool"), "GlobalMaxPool": global_pool("maxpool"),
    "Gather": gather, "Resize": resize,
}
