"""ONNX ops without weights as nnspec stages: activations, element-wise arithmetic (a
constant operand becomes a number, or a ``param`` holding the initializer), Reshape,
Flatten, Squeeze/Unsqueeze, Transpose, Concat, Slice, reductions, DepthToSpace (CRD: a
pixel shuffle), Dropout, Identity, Cast, Clip, and GELU written as its Erf formula.

Converters have the signature of layerops.py's.
"""

from __future__ import annotations

import math

import numpy as np

from .convert import Converter, Op, good_path, label
from .layerops import fuse_bias
from .patterns import adaptive_pool
from .read import is_int
from .words import NotFinite, dims, num, scalar, tup

_FLOAT_TYPES = {1, 10, 11, 16}


def activation(kind: str, **attrs):
    """An activation; ``attrs``: ONNX attribute -> (default, how nnspec writes it: a
    format with {} for the value)."""
    def make(cx: Converter, node, ins, i) -> Op:
        text = kind
        for name, (default, form) in attrs.items():
            v = cx.attr(node, name, default)
            if isinstance(v, float) and not math.isclose(v, default, rel_tol=1e-6):
                text += form.format(num(v))
            elif isinstance(v, str) and v != default:
                text += form.format(v)
        return Op(label(node), "stage", text, [cx.tensor(node, ins[0])], node.output[0])
    return make


def softmax(kind: str):
    def make(cx: Converter, node, ins, i) -> Op:
        axis = cx.attr(node, "axis", -1)
        return Op(label(node), "stage", f"{kind} dim={axis}", [cx.tensor(node, ins[0])],
                  node.output[0])
    return make


def hardsigmoid(cx: Converter, node, ins, i) -> Op:
    a, b = cx.attr(node, "alpha", 0.2), cx.attr(node, "beta", 0.5)
    if not (math.isclose(a, 1 / 6, rel_tol=1e-6) and math.isclose(b, 0.5, rel_tol=1e-6)):
        raise cx.fail(node, f"alpha={num(a)} beta={num(b)} (nnspec's hardsigmoid is "
                            "PyTorch's, alpha=1/6 and beta=0.5)")
    return Op(label(node), "stage", "hardsigmoid", [cx.tensor(node, ins[0])], node.output[0])


def clip(cx: Converter, node, ins, i) -> Op | None:
    text = "clamp"
    for j, name in ((1, "min"), (2, "max")):
        if len(ins) > j and ins[j]:
            text += f" {name}={scalar(cx.numeric(node, ins[j], name))}"
    if text == "clamp":  # no bound: the input as it is
        cx.alias[node.output[0]] = cx.tensor(node, ins[0])
        return None
    return Op(label(node), "stage", text, [cx.tensor(node, ins[0])], node.output[0])


def identity(cx: Converter, node, ins, i) -> None:
    cx.alias[node.output[0]] = cx.tensor(node, ins[0])


def cast(cx: Converter, node, ins, i) -> None:
    x = cx.tensor(node, ins[0])
    v = cx.g.values.get(x)
    if cx.attr(node, "to") not in _FLOAT_TYPES or v is None or v.elem not in _FLOAT_TYPES:
        raise cx.fail(node, "a cast to or from an integer type")
    if cx.attr(node, "to") in _HALF_TYPES and v.elem not in _HALF_TYPES:
        raise cx.fail(node, "a cast to float16 or bfloat16 (nnspec computes a model in one "
                            "float type: the rounding would be lost)")
    cx.alias[node.output[0]] = x


#: TensorProto.FLOAT16, BFLOAT16
_HALF_TYPES = {10, 16}


def dropout(cx: Converter, node, ins, i) -> Op | None:
    x = cx.tensor(node, ins[0])
    if len(node.output) > 1 and node.output[1] and cx.users.get(node.output[1]):
        raise cx.fail(node, "its mask output is used")
    if len(ins) > 2 and ins[2] and bool(cx.numeric(node, ins[2], "training_mode")):
        raise cx.fail(node, "training_mode is true (nnspec imports the inference graph)")
    ratio = float(cx.numeric(node, ins[1], "ratio")) if len(ins) > 1 and ins[1] else \
        cx.attr(node, "ratio", 0.5)
    if ratio == 0:
        cx.alias[node.output[0]] = x
        return None
    return Op(label(node), "stage", f"dropout {num(ratio)}", [x], node.output[0])


# ---- arithmetic ------------------------------------------------------------------------

_FORMS = {"+": "{0} + {1}", "-": "({0} - {1})", "*": "({0} * {1})", "/": "({0} / {1})"}
_BASES = {"+": "total", "-": "diff", "*": "prod", "/": "ratio"}


def binary(sym: str):
    def make(cx: Converter, node, ins, i) -> Op | None:
        out = cx.g.values.get(node.output[0])
        if sym == "/" and out is not None and is_int(out.elem):
            raise cx.fail(node, "a division of integers (ONNX truncates towards zero; "
                                "nnspec's / is a true division)")
        if sym == "+" and fuse_bias(cx, node, ins):
            return None
        pos = positions(cx, node, ins) if sym == "+" else None
        if pos is not None:
            return pos
        gelu = _gelu(cx, node, ins) if sym in ("*", "/") else None
        if gelu is not None:
            return gelu
        a, b = ins
        ca, cb = cx.is_const(a), cx.is_const(b)
        if not ca and not cb:
            return Op(label(node), "expr", _FORMS[sym], [cx.tensor(node, a),
                                                         cx.tensor(node, b)],
                      node.output[0], base=_BASES[sym])
        t, c = (b, a) if ca else (a, b)
        x = cx.tensor(node, t)
        v = cx.numeric(node, c, "constant operand")
        r = cx.rank(node, x)
        if v.size == 1 and v.ndim <= r:
            try:
                s = scalar(v)
            except NotFinite:
                raise cx.fail(node, f"the constant {float(v.reshape(-1)[0])} (not finite)"
                              ) from None
            s = f"({s})" if s.startswith("-") else s
            form = f"({{0}} {sym} {s})" if not ca else f"({s} {sym} {{0}})"
            return Op(label(node), "expr", form, [x], node.output[0], base=_BASES[sym])
        p = param(cx, node, c)
        args = [p, x] if ca else [x, p]
        return Op(label(node), "expr", _FORMS[sym], args, node.output[0], base=_BASES[sym])
    return make


def param(cx: Converter, node, name: str) -> str:
    """A constant tensor as a ``param`` holding it (its state_dict key: the initializer's
    name where that is a module path); the value's name."""
    key = f"\x00param:{name}"
    if key in cx.tensors:
        return key
    v = cx.value(name)
    if not np.issubdtype(v.dtype, np.floating) or v.ndim == 0:
        raise cx.fail(node, f"the constant {name!r} of {v.dtype} {list(v.shape)} has no "
                            "nnspec form")
    base = name if good_path(name) and name not in cx.layers else "const"
    n, layer = 0, base
    while layer in cx.layers or layer == "const":
        layer, n = f"{base}_{n}", n + 1
    op = Op(label(node), "expr", f"param {dims(v.shape)}", [], key, layer=layer,
            kind="param", weights={"": (name, None)}, base="const")
    cx.layers[layer] = op
    cx.ops.append(op)
    cx.producer[key] = op
    cx.tensors.add(key)
    return key


def _consumer(cx: Converter, value: str, op_type: str):
    users = cx.consumers.get(value, [])
    if len(users) != 1 or cx.users.get(value) != 1 or users[0][1].op_type != op_type:
        return None
    return users[0]


def _const_near(cx: Converter, name: str, want: float) -> bool:
    if not cx.is_const(name):
        return False
    v = cx.value(name)
    return v.dtype != object and v.size == 1 and math.isclose(float(v.reshape(-1)[0]), want,
                                                              rel_tol=1e-6)


def _gelu(cx: Converter, node, ins) -> Op | None:
    """``x * 0.5 * (1 + erf(x / sqrt(2)))`` as torch.onnx writes an exact GELU: one
    ``gelu`` stage, its other nodes skipped."""
    x, c = ins
    if cx.is_const(x) or not _const_near(cx, c, math.sqrt(2) if node.op_type == "Div"
                                         else 1 / math.sqrt(2)):
        return None
    e = _consumer(cx, node.output[0], "Erf")
    a = e and _consumer(cx, e[1].output[0], "Add")
    if not a or not any(_const_near(cx, v, 1.0) for v in a[1].input):
        return None
    m = _consumer(cx, a[1].output[0], "Mul")
    if not m or x not in [cx.resolve(v) for v in m[1].input]:
        return None
    h = _consumer(cx, m[1].output[0], "Mul")
    if not h or not any(_const_near(cx, v, 0.5) for v in h[1].input):
        return None
    cx.skip |= {e[0], a[0], m[0], h[0]}
    return Op(label(node), "stage", "gelu", [cx.tensor(node, x)], h[1].output[0])


# ---- shapes ----------------------------------------------------------------------------

def _target(cx: Converter, node, entries: list) -> str:
    """A reshape's target: at most one size unknown statically becomes -1."""
    out = cx.dims(node.output[0]) or []
    if sum(e is None or e == -1 for e in entries) > 1 and len(out) == len(entries):
        entries = [out[j] if e is None and out[j] is not None else e
                   for j, e in enumerate(entries)]
    if sum(e is None or e == -1 for e in entries) > 1:
        raise cx.fail(node, "more than one size of the result is not known statically "
                            "(nnspec's reshape infers one, -1)")
    return "reshape " + dims([-1 if e is None else e for e in entries])


def reshape(cx: Converter, node, ins, i) -> Op:
    x = cx.tensor(node, ins[0])
    if not cx.is_const(ins[1]):
        raise cx.fail(node, "a target shape computed at run time")
    shape = cx.value(ins[1]).reshape(-1)
    allow = cx.attr(node, "allowzero", 0)
    have = cx.dims(x) or []
    entries: list = []
    for j, v in enumerate(shape):
        if v is None or isinstance(v, str):
            entries.append(v)
        elif int(v) == 0 and not allow:
            entries.append(have[j] if j < len(have) else None)
        elif int(v) == 0:
            raise cx.fail(node, "allowzero=1 with a zero size")
        else:
            entries.append(int(v))
    if _flattens(have, entries):
        return Op(label(node), "stage", "flatten", [x], node.output[0])
    return Op(label(node), "stage", _target(cx, node, entries), [x], node.output[0])


def _flattens(have: list, entries: list) -> bool:
    """The reshape is ``flatten`` (start=1) at every batch size: ``[-1, C*H*W]`` or
    ``[N, -1]`` of ``[N, C, H, W]`` whose sizes after the first are known."""
    if len(have) < 3 or len(entries) != 2 or have[0] is None or \
            not all(isinstance(d, int) for d in have[1:]):
        return False
    rest = int(np.prod(have[1:]))
    return (entries[0] == -1 and entries[1] == rest) or \
        (entries[0] == have[0] and entries[1] in (-1, rest))


def to_inferred(cx: Converter, node, ins, i) -> Op:
    """Squeeze, Unsqueeze, Flatten on another axis than 1: a reshape to the inferred
    shape."""
    x = cx.tensor(node, ins[0])
    if node.op_type == "Flatten":  # [prod(dims[:axis]), prod(dims[axis:])]
        r = cx.rank(node, x)
        axis = cx.attr(node, "axis", 1)
        a = axis + r if axis < 0 else axis
        if 0 < a < r:  # (axis 0 and r: a leading or trailing 1, the reshape below)
            stages = ([f"flatten start={a}"] if r - a > 1 else []) + \
                ([f"flatten start=0 end={a - 1}"] if a > 1 else [])
            if not stages:  # already [d0, d1]
                cx.alias[node.output[0]] = x
                return None
            return Op(label(node), "stage", " | ".join(stages), [x], node.output[0])
    out = cx.dims(node.output[0])
    if out is None:
        raise cx.fail(node, "the rank of its result is not known")
    return Op(label(node), "stage", _target(cx, node, list(out)), [x], node.output[0])


def transpose(cx: Converter, node, ins, i) -> Op | None:
    x = cx.tensor(node, ins[0])
    r = cx.rank(node, x)
    perm = list(cx.attr(node, "perm", list(range(r))[::-1]))
    if perm == list(range(r)):
        cx.alias[node.output[0]] = x
        return None
    pooled = adaptive_pool(cx, node, x, perm)
    if pooled is not None:
        return pooled
    moved = [j for j, v in enumerate(perm) if v != j]
    if len(moved) == 2:  # two axes swapped: x.transpose(a, b)
        return Op(label(node), "stage", f"transpose {moved[0]} {moved[1]}", [x],
                  node.output[0])
    return Op(label(node), "stage", f"permute {tup(perm)}", [x], node.output[0])


def concat(cx: Converter, node, ins, i) -> Op:
    names = [param(cx, node, v) if cx.is_const(v) else cx.tensor(node, v) for v in ins]
    if len(names) == 1:
        cx.alias[node.output[0]] = names[0]
        return None
    holes = ", ".join(f"{{{j}}}" for j in range(len(names)))
    return Op(label(node), "expr", f"concat({holes}, dim={cx.attr(node, 'axis')})", names,
              node.output[0], base="cat")


def _table_rows(cx: Converter, node, ins) -> bool:
    """``table[:T]`` of a learned [L, E] table up to a symbolic size: kept for the
    ``Add`` that makes it learned positions."""
    if not cx.is_const(ins[0]) or len(ins) < 3:
        return False
    table = cx.value(ins[0])
    starts, ends = cx.value(ins[1]).reshape(-1), cx.value(ins[2]).reshape(-1)
    axes = cx.value(ins[3]).reshape(-1) if len(ins) > 3 and ins[3] else [0]
    steps = cx.value(ins[4]).reshape(-1) if len(ins) > 4 and ins[4] else [1]
    if table.dtype == object or table.ndim != 2 or len(ends) != 1 or \
            not isinstance(ends[0], str) or list(starts) != [0] or \
            [int(a) for a in axes] not in ([0], [-2]) or [int(t) for t in steps] != [1]:
        return False
    cx.tables[node.output[0]] = (ins[0], ends[0])
    return True


def positions(cx: Converter, node, ins) -> Op | None:
    """``x + table[:T]`` over ``x`` [N, T, E]: ``positional learned max_len=L``."""
    for t, c in ((ins[0], ins[1]), (ins[1], ins[0])):
        if c not in cx.tables or t in cx.tables:
            continue
        table, end = cx.tables[c]
        x = cx.tensor(node, t)
        have = cx.dims(x)
        rows, width = cx.value(table).shape
        if have is None or len(have) != 3 or have[1] != end or have[2] != width:
            raise cx.fail(node, f"rows of the table {table!r} up to {end} added to a tensor "
                                f"of dims {have} (nnspec adds learned positions to [N, "
                                f"{end}, {width}])")
        return cx.layer(node, "positional", f"positional learned max_len={rows}", [x],
                        node.output[0], {"weight": (table, None)})
    return None


def slice_(cx: Converter, node, ins, i) -> Op | None:
    if _table_rows(cx, node, ins):
        return None
    x = cx.tensor(node, ins[0])
    r = cx.rank(node, x)
    starts = [int(v) for v in cx.numeric(node, ins[1], "starts")]
    ends = [int(v) for v in cx.numeric(node, ins[2], "ends")]
    axes = [int(v) % r for v in cx.numeric(node, ins[3], "axes")] \
        if len(ins) > 3 and ins[3] else list(range(len(starts)))
    steps = [int(v) for v in cx.numeric(node, ins[4], "steps")] \
        if len(ins) > 4 and ins[4] else [1] * len(starts)
    subs = [":"] * r
    have = cx.dims(x) or [None] * r
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if st < 1:
            raise cx.fail(node, f"step {st} (nnspec slices forwards)")
        if s == 0 and st == 1 and isinstance(have[ax], int) and e >= have[ax]:
            continue
        a = "" if s == 0 else str(s)
        b = "" if e >= 2**31 - 1 else str(e)
        subs[ax] = f"{a}:{b}" + (f":{st}" if st != 1 else "")
    while len(subs) > 1 and subs[-1] == ":":
        subs.pop()
    if subs == [":"]:
        cx.alias[node.output[0]] = x
        return None
    return Op(label(node), "expr", "{0}[" + ", ".join(subs) + "]", [x], node.output[0],
              base="part")


def split(cx: Converter, node, ins, i) -> None:
    """Each output of a Split as a slice of its input (the pieces of ``chunk`` or
    ``split``)."""
    x = cx.tensor(node, ins[0])
    r = cx.rank(node, x)
    axis = cx.attr(node, "axis", 0) % r
    size = (cx.dims(x) or [None] * r)[axis]
    if not isinstance(size, int):
        raise cx.fail(node, "a split of an axis whose size is not known statically")
    n = len(node.output)
    if len(ins) > 1 and ins[1]:
        sizes = [int(v) for v in cx.numeric(node, ins[1], "split")]
    elif cx.attr(node, "split") is not None:
        sizes = [int(v) for v in cx.attr(node, "split")]
    else:
        step = -(-size // n)
        sizes = [min(step, size - j * step) for j in range(n)]
    if len(sizes) != n or sum(sizes) != size or min(sizes) < 0:
        raise cx.fail(node, f"pieces {sizes} of an axis of {size}")
    start = 0
    for out, k in zip(node.output, sizes):
        if out:
            subs = [":"] * axis + [f"{start or ''}:{start + k if start + k < size else ''}"]
            op = Op(label(node), "expr", "{0}[" + ", ".join(subs) + "]", [x], out,
                    base="part")
            cx.ops.append(op)
            cx.producer[out] = op
            cx.tensors.add(out)
        start += k
    return None


def depth_to_space(cx: Converter, node, ins, i) -> Op:
    mode = cx.attr(node, "mode", "DCR")
    if mode != "CRD":
        raise cx.fail(node, f"mode={mode} (nnspec's pixel_shuffle is mode CRD)")
    return Op(label(node), "stage", f"pixel_shuffle {cx.attr(node, 'blocksize')}",
              [cx.tensor(node, ins[0])], node.output[0])


def reduce(kind: str):
    def make(cx: Converter, node, ins, i) -> Op | None:
        x = cx.tensor(node, ins[0])
        axes = cx.attr(node, "axes")
        if len(ins) > 1 and ins[1]:
            axes = [int(v) for v in cx.numeric(node, ins[1], "axes")]
        if not axes and cx.attr(node, "noop_with_empty_axes", 0):
            cx.alias[node.output[0]] = x
            return None
        text = kind
        if axes:
            text += f" dim={axes[0]}" if len(axes) == 1 else f" dim={tup(axes)}"
        if cx.attr(node, "keepdims", 1):
            text += " keepdim"
        return Op(label(node), "stage", text, [x], node.output[0])
    return make


def expand(cx: Converter, node, ins, i) -> Op:
    """A tensor, or a learned constant, broadcast to sizes read from the input's shape."""
    x = param(cx, node, ins[0]) if cx.is_const(ins[0]) else cx.tensor(node, ins[0])
    if not cx.is_const(ins[1]):
        raise cx.fail(node, "a shape computed at run time")
    shape = list(cx.value(ins[1]).reshape(-1))
    have = cx.value(ins[0]).shape if cx.is_const(ins[0]) else cx.dims(x)
    if have is None or len(have) != len(shape):
        raise cx.fail(node, "an expand that adds axes (nnspec's expand keeps the rank)")
    out = []
    for d, s in zip(have, shape):
        if s is None:
            raise cx.fail(node, "a size not known statically")
        s = s if isinstance(s, str) else int(s)
        out.append(-1 if s == 1 or s == d else s)
    return Op(label(node), "expr", "expand({0}, " + dims(out) + ")", [x], node.output[0],
              base="wide")


def elementwise(kind: str, arity: int, scalar_ok: bool = True):
    """An element-wise op of nnspec's: ``log(x)``, ``lt(a, b)`` (1 where true, an int
    mask: ONNX's bool), ``maximum(x, 0.5)``, ``where(c, a, b)``; a constant operand of one
    value is written as a number, others must be the model's tensors."""
    def make(cx: Converter, node, ins, i) -> Op:
        names = [n for n in ins if n]
        if len(names) != arity:
            raise cx.fail(node, f"{len(names)} inputs (nnspec's {kind} takes {arity})")
        args, tensors = [], []
        for j, n in enumerate(names):
            if cx.is_const(n):
                v = cx.numeric(node, n, "constant operand")
                if v.size != 1 or not scalar_ok or j == 0:
                    raise cx.fail(node, f"a constant operand of shape {list(v.shape)}")
                try:
                    args.append(scalar(v))
                except NotFinite:
                    raise cx.fail(node, "a constant that is not finite") from None
            else:
                args.append("{%d}" % len(tensors))
                tensors.append(cx.tensor(node, n))
        if any(not a.startswith("{") for a in args[:-1]):
            raise cx.fail(node, "a constant before a tensor operand")
        return Op(label(node), "expr", f"{kind}(" + ", ".join(args) + ")", tensors,
                  node.output[0], base=kind)
    return make


def logical_not(cx: Converter, node, ins, i) -> Op:
    x = cx.tensor(node, ins[0])
    return Op(label(node), "expr", "eq({0}, 0)", [x], node.output[0], base="not")


TENSOR_OPS = {
    "Log": elementwise("log", 1), "Abs": elementwise("abs", 1),
    "Less": elementwise("lt", 2), "Greater": elementwise("gt", 2),
    "LessOrEqual": elementwise("le", 2), "GreaterOrEqual": elementwise("ge", 2),
    "Equal": elementwise("eq", 2), "Where": elementwise("where", 3),
    "Max": elementwise("maximum", 2), "Min": elementwise("minimum", 2), "Not": logical_not,
    "Relu": activation("relu"), "Sigmoid": activation("sigmoid"),
    "Tanh": activation("tanh"), "Softplus": activation("softplus"),
    "HardSwish": activation("hardswish"), "Mish": activation("mish"),
    "LeakyRelu": activation("leaky_relu", alpha=(0.01, " {}")),
    "Elu": activation("elu", alpha=(1.0, " {}")),
    "Gelu": activation("gelu", approximate=("none", " approximate={}")),
    "HardSigmoid": hardsigmoid, "Clip": clip,
    "Softmax": softmax("softmax"), "LogSoftmax": softmax("log_softmax"),
    "Identity": identity, "Cast": cast, "Dropout": dropout,
    "Add": binary("+"), "Sub": binary("-"), "Mul": binary("*"), "Div": binary("/"),
    "Reshape": reshape, "Flatten": to_inferred, "Squeeze": to_inferred,
    "Unsqueeze": to_inferred, "Transpose": transpose, "Concat": concat, "Slice": slice_,
    "Split": split,
    "ReduceMean": reduce("mean"), "ReduceSum": reduce("sum"), "ReduceMax": reduce("amax"),
    "ReduceMin": reduce("amin"), "DepthToSpace": depth_to_space, "Expand": expand,
}
