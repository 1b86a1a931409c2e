"""What each traced function and tensor method is in nnspec: ``F.relu``, ``torch.cat``,
``x + y``, views, reductions, subscripts, ``F.scaled_dot_product_attention``, and the
functional layers of a module's own parameters (``F.layer_norm(x, ..., self.weight)``).
An operation without a kind is an :class:`~.trace.ImportFailure` naming it.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx

from .ops import Op, Slot, _adaptive, _dropout, _embedding, _num, _pool, _unsupported, kw
from .sized import rope as rope_marker
from .sized import sdpa_window


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
    if not _has_tensor(args, kwargs) and t is not torch.arange:
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
    if not method and getattr(t, "__name__", "").lstrip("_") in _POOLS:
        return Op(node, _functional_pool(t.__name__.lstrip("_"), args, kwargs), [x])
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
    if method and t in ("long", "float") and is_tensor(x):
        dtype = x.meta["tensor_meta"].dtype
        if t == "long" and not dtype.is_floating_point:
            return Op(node, [], [x], "skip")  # a comparison's mask: nnspec's are ints
        if t == "long" or not dtype.is_floating_point:
            return Op(node, ["to_int" if t == "long" else "to_float"], [x], "call")
    if method and t in ("contiguous", "clone", "float"):
        return Op(node, [], [x], "skip")
    if not method and t is torch.clamp and len(args) == 1 and len(kwargs) == 1:
        (bound, v), = kwargs.items()  # clamp(x, max=15): minimum(x, 15)
        return Op(node, ["minimum" if bound == "max" else "maximum", f" {_num(v)}"], [x],
                  "call")
    if not method and t in _CONSTS:
        return _const_op(node, _CONSTS[t], args)
    if method and t in ("view", "reshape") or not method and t is torch.reshape:
        shape = args[1:] if method else args[1]
        if method and len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return Op(node, [("reshape", list(shape), _split_or_merge(x, node))], [x])
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
    if not method and t is sdpa_window:  # a sliding-window mask, recognised
        op = _sdpa(node, args[:3], {"is_causal": True, **kwargs})
        op.words.append(f" window={int(args[3])}")
        return op
    if not method and t is rope_marker:  # HF's apply_rotary_pos_emb, recognised
        theta = float(args[1])
        return Op(node, ["rope" + (f" theta={_num(theta)}" if theta != 10000.0 else "")],
                  [x])
    if not method and t is torch.arange and len(args) == 1 and not kwargs:
        return Op(node, ["arange", ("dim", args[0])], [], "call")
    raise _unsupported(f"no nnspec kind for {op_name(node)}")


_POOLS = {f"{k}_pool{d}d" for k in ("max", "avg") for d in (1, 2, 3)}
_POOL_ARGS = {"max": ("kernel_size", "stride", "padding", "dilation", "ceil_mode",
                      "return_indices"),
              "avg": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                      "divisor_override")}


def _functional_pool(name: str, args: list, kwargs: dict) -> list:
    """``F.max_pool2d(x, 3, 2, ceil_mode=True)`` as the module nn.MaxPool2d would be."""
    from types import SimpleNamespace

    kind = name.split("_")[0]
    vals = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
            "return_indices": False, "count_include_pad": True, "divisor_override": None}
    vals.update(zip(_POOL_ARGS[kind], args[1:]))
    vals.update({k: v for k, v in kwargs.items() if k in _POOL_ARGS[kind]})
    if not vals.get("stride"):  # F.max_pool2d(x, 2, stride=[]): the kernel size
        vals["stride"] = None
    return _pool(SimpleNamespace(**vals), f"{kind}pool")


_CONSTS = {torch.abs: "abs", torch.log: "log", torch.lt: "lt", torch.gt: "gt", torch.le: "le",
           torch.ge: "ge", torch.eq: "eq", torch.ne: "ne", torch.where: "where",
           torch.minimum: "minimum", torch.maximum: "maximum"}


def _const_op(node: fx.Node, kind: str, args: list) -> Op:
    """``abs(x)``, ``lt(x, 2)``, ``where(c, a, b)``, ``minimum(x, 15)``: tensors first, one
    number last at most (the forms nnspec's element-wise kinds take)."""
    tensors = [a for a in args if is_tensor(a)]
    rest = args[len(tensors):]
    if args[:len(tensors)] != tensors or any(is_tensor(a) for a in rest) or len(rest) > 1:
        raise _unsupported(f"torch.{kind} with a number before a tensor")
    return Op(node, [kind] + [f" {_num(r)}" for r in rest], tensors, "call")


def _split_or_merge(x: fx.Node, node: fx.Node) -> str | None:
    """The reshape as ``unflatten`` (one axis split, the others kept) or ``flatten``
    (adjacent axes merged), which need no sizes but the split ones: written where the
    reshape's sizes follow no declared symbol (ShuffleNet's channel shuffle at H, W)."""
    a = list(x.meta["tensor_meta"].shape)
    b = list(node.meta["tensor_meta"].shape)
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    j = 0
    while j < min(len(a), len(b)) - k and a[-1 - j] == b[-1 - j]:
        j += 1
    mid_a, mid_b = a[k:len(a) - j], b[k:len(b) - j]
    if len(mid_a) == 1 and len(mid_b) > 1 and all(v > 0 for v in mid_b):
        sizes = ", ".join(str(int(v)) for v in mid_b)
        return f"unflatten {k} ({sizes})"
    if len(mid_b) == 1 and len(mid_a) > 1:
        return f"flatten start={k} end={k + len(mid_a) - 1}"
    return None


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
    if t is F.embedding:  # an nn.Embedding subclass with a forward of its own (Gemma's)
        ids, w = arg(0, "input"), arg(1, "weight")
        owner = _owner({"weight": w})
        module = modules.get(owner) if owner is not None else None
        if not isinstance(module, torch.nn.Embedding):
            return None
        return Op(node, _embedding(module), [ids], "stage", owner)
    if t is F.linear:
        x, w, b = arg(0, "input"), arg(1, "weight"), arg(2, "bias")
        owner = _owner({"weight": w, "bias": b})
        if owner is None:
            return None
        out = int(modules[owner].get_parameter("weight").shape[0])
        return Op(node, ["dense ", Slot(out, "d")] + ([] if b is not None else [" bias=false"]),
                  [x], "stage", owner)
    return None
