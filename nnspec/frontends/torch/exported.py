"""Tracing with ``torch.export`` for models ``torch.fx`` cannot follow (Hugging Face's
decorated forwards, mask utilities, ``*args``/``**kwargs`` signatures).

``torch.export`` runs the real forward on fake tensors, so any Python the model runs is
followed; what it gives is a graph of aten operations in which every node carries the stack
of modules it ran in (``nn_module_stack``). That graph is brought back to the level the fx
importer reads:

- the operations inside a module nnspec has a kind for (``nn.Linear``, ``nn.LayerNorm``,
  Hugging Face's activation and RMSNorm modules) become one ``call_module`` of that module;
- the other aten operations become the torch functions and tensor methods they implement
  (``aten.view`` -> ``Tensor.reshape``, ``aten.slice`` -> a subscript, ``aten.split`` ->
  the subscripts of its pieces, ``aten.sym_size`` -> ``Tensor.size``);
- a tensor computed from sizes alone (position ids, masks built from ``arange``) is
  evaluated at the two example sizes and recognised: an attention mask that keeps every
  key is dropped, the causal one becomes ``is_causal=True``, position ids become
  ``torch.arange``; anything else is an error naming it, never an approximation.

The result is a :class:`~.trace.Traced` like the fx tracer's, and the same writer turns it
into the spec. Symbols stay symbols: the inputs' dims are exported as dynamic where the
model allows it, and the two shape propagations tell which sizes follow which symbol.
"""

from __future__ import annotations

import contextlib
import io
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from .sized import SizedTensors, rope, sdpa_window
from .trace import ImportFailure, Traced, _Record, _short

aten = torch.ops.aten

#: operations whose tensor argument gives only its shape, dtype or device
_SHAPE_ONLY = {aten.ones_like, aten.zeros_like, aten.full_like, aten.new_ones,
               aten.new_zeros, aten.new_full, aten.sym_size, aten.empty_like,
               aten.new_empty}
#: operations that give their input back (a copy, a no-op cast, an assertion)
_ALIAS = {aten.contiguous, aten.clone, aten.alias, aten.detach, aten.lift_fresh_copy,
          aten._to_copy}
from .sized import _SKIP  # noqa: E402  (one list of the assertions)
_BINARY = {aten.add: operator.add, aten.sub: operator.sub, aten.mul: operator.mul,
           aten.div: operator.truediv, aten.add_: operator.add, aten.mul_: operator.mul}
_UNARY = {aten.relu: torch.relu, aten.tanh: torch.tanh, aten.sigmoid: torch.sigmoid,
          aten.silu: F.silu, aten.abs: torch.abs, aten.log: torch.log}
_COMPARE = {aten.lt: torch.lt, aten.gt: torch.gt, aten.le: torch.le, aten.ge: torch.ge,
            aten.eq: torch.eq, aten.ne: torch.ne, aten.minimum: torch.minimum,
            aten.maximum: torch.maximum, aten.min: torch.minimum, aten.max: torch.maximum}
_BIG = 2 ** 62


def export_graph(model: nn.Module, examples: list, symbols: list[list], kwargs: dict):
    """``torch.export`` of ``model`` at the first example inputs, each input's dims named
    in ``symbols`` (a name per dim, or None for a fixed one) exported as dynamic."""
    from torch.export import Dim

    dynamic = tuple({i: Dim.AUTO for i, s in enumerate(dims) if s is not None}
                    for dims in symbols)
    names = _input_names(model, len(examples))
    shapes = dict(zip(names, dynamic)) if names else dynamic
    if names:
        shapes.update({k: None for k in kwargs})
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return torch.export.export(model, tuple(examples), kwargs=kwargs,
                                       dynamic_shapes=shapes, strict=False)
    except Exception as e:  # what the model does that export cannot follow
        raise ImportFailure(f"torch.export could not trace the model: "
                            f"{type(e).__name__}: {_short(e)}") from None


def _input_names(model, n):
    import inspect

    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    params = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [p.name for p in params[:n]] if len(params) >= n else None


def trace_exported(model: nn.Module, is_layer, examples: list[list], symbols: list[list],
                   kwargs: dict | None = None) -> Traced:
    """The :class:`Traced` of ``model`` through ``torch.export`` (see the module's text);
    ``examples``: the inputs at the two example sizes."""
    ep = export_graph(model, examples[0], symbols, dict(kwargs or {}))
    graph = _Rebuild(model, ep, is_layer, examples).run()
    gm = fx.GraphModule(model, graph)
    runs = []
    for ex in examples:
        prop = _Record(gm)
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                prop.propagate(*ex)
        except Exception as e:
            cause = e.__cause__ or e
            raise ImportFailure(f"the exported model does not run at the second example "
                                f"size: {type(cause).__name__}: {_short(cause)}") from None
        runs.append(({n: n.meta.get("tensor_meta") for n in graph.nodes}, prop.values))
    modules = dict(model.named_modules())
    traced = Traced(model, graph, modules,
                    {n.target for n in graph.nodes if n.op == "call_module"})
    traced.values = [values for _, values in runs]
    traced.shapes = [shapes for shapes, _ in runs]
    for n in graph.nodes:
        n.meta["tensor_meta"] = runs[0][0][n]
    return traced


def _packet(target):
    return getattr(target, "overloadpacket", target)


class _Rebuild(SizedTensors):
    """The exported aten graph rebuilt at the level of torch functions and module calls."""

    def __init__(self, model, ep, is_layer, examples):
        self.model, self.ep, self.is_layer, self.examples = model, ep, is_layer, examples
        self.modules = dict(model.named_modules())
        self.g = fx.Graph()
        self.env: dict = {}  # exported node -> new node or python value
        self.consts: dict = {}
        self.data_memo: dict = {}
        self.learned_memo: dict = {}
        sig = ep.graph_signature
        self.state = {}  # placeholder name -> qualified name of a parameter/buffer
        self.params: set = set()  # the placeholders of parameters
        self.inputs = []  # the user input placeholders, in order
        for spec in sig.input_specs:
            if spec.kind.name in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
                self.state[spec.arg.name] = spec.target
            if spec.kind.name == "PARAMETER":
                self.params.add(spec.arg.name)
            elif spec.kind.name == "USER_INPUT":
                self.inputs.append(spec.arg.name)
        self.inputs = self.inputs[: len(examples[0])]  # the rest: keyword arguments fixed
        self.nodes = list(ep.graph_module.graph.nodes)
        self.by_name = {n.name: n for n in self.nodes}
        self.groups = self._groups()
        self.rope: dict = {}  # the add of a rotary embedding -> (x, theta)
        self.absorbed: set = set()
        self._find_rope()

    # ---- module calls ----------------------------------------------------------------
    def _stack(self, n) -> list:
        st = n.meta.get("nn_module_stack") or {}
        out = []
        for path, _ in st.values():
            if path and path in self.modules:
                out.append((path, type(self.modules[path])))
        return out

    def _layer_of(self, n) -> str | None:
        for path, _ in self._stack(n):
            if self.is_layer(self.modules[path]):
                return path
        return None

    def _groups(self) -> dict:
        """node -> (layer path, index of the run of nodes of one call of it)"""
        out, run, last = {}, 0, None
        for n in self.nodes:
            if n.op != "call_function":
                last = None
                continue
            path = self._layer_of(n)
            if path is None:
                last = None
                continue
            src = n.args[0] if n.args and isinstance(n.args[0], fx.Node) else None
            if self._aliases(n) and out.get(src, (None,))[0] != path:
                continue  # x.to(its own dtype) of a value from outside: that value
            if path != last:
                run += 1
            out[n] = (path, run)
            last = path
        return out

    # ---- dependence --------------------------------------------------------------------
    def _aliases(self, n) -> bool:
        t = _packet(n.target)
        return t in _ALIAS or t in _SKIP or t is aten.to and self._same_dtype(n)

    def _is_data(self, n) -> bool:
        """Whether ``n``'s value depends on an input's values (not only on its sizes)."""
        memo = self.data_memo
        if n in memo:
            return memo[n]
        if n.op == "placeholder":
            r = n.name in self.inputs
        elif n.op != "call_function" or _packet(n.target) in _SHAPE_ONLY:
            r = False
        else:
            r = any(self._is_data(a) for a in n.all_input_nodes)
        memo[n] = r
        return r

    def _is_const(self, n) -> bool:
        """A tensor computed from sizes and buffers alone (evaluated, then recognised)."""
        return self._tensor(n) and not self._is_data(n) and not self._learned(n)

    def _learned(self, n) -> bool:
        memo = self.learned_memo
        if n not in memo:
            if n.op == "placeholder":
                memo[n] = n.name in self.params
            else:
                memo[n] = any(self._learned(a) for a in n.all_input_nodes)
        return memo[n]

    def _is_state(self, n) -> bool:
        return n.op == "placeholder" and n.name in self.state

    def _tensor(self, n) -> bool:
        return isinstance(n.meta.get("val"), torch.Tensor)

    # ---- building ----------------------------------------------------------------------
    def run(self) -> fx.Graph:
        outputs = None
        for n in self.nodes:
            if n.op == "placeholder":
                if n.name in self.inputs:
                    self.env[n] = self.g.placeholder(n.name)
                continue
            if n.op == "output":
                outputs = n.args[0]
                continue
            if n in self.absorbed:
                continue
            if n in self.rope:
                x, theta = self.rope[n]
                self.env[n] = self._new("call_function", rope, (self._arg(x), theta), n)
                continue
            if n in self.groups:
                path, run = self.groups[n]
                nxt = self.nodes[self.nodes.index(n) + 1]
                if self.groups.get(nxt) == (path, run):
                    continue  # the call is made at the last node of its run
                self._call(n, path, run)
                continue
            self._function(n)
        outs = [self._arg(o) for o in outputs]
        self.g.output(outs[0] if len(outs) == 1 else tuple(outs))
        return self.g

    def _meta(self, new, old, stack=None):
        st = stack if stack is not None else self._stack(old)
        new.meta["nn_module_stack"] = {f"m{i}": v for i, v in enumerate(st)}
        return new

    def _call(self, last, path, run):
        members = [n for n in self.nodes if self.groups.get(n) == (path, run)]
        inside = set(members)
        ins = []
        for m in members:
            for a in m.all_input_nodes:
                if a in inside or a in ins or self._is_state(a) or not self._tensor(a):
                    continue
                ins.append(a)
        outs = [m for m in members if any(u not in inside for u in m.users)]
        if len(outs) != 1:
            names = ", ".join(o.name for o in outs)
            raise ImportFailure(f"{path} ({type(self.modules[path]).__name__}): a module "
                                f"whose call gives {len(outs)} values ({names})")
        new = self.g.call_module(path, tuple(self._arg(a) for a in ins))
        stack = self._stack(last)
        keep = [i for i, (p, _) in enumerate(stack) if p == path]
        self._meta(new, last, stack[: keep[0] + 1] if keep else stack)
        self.env[outs[0]] = new

    def _arg(self, a):
        if isinstance(a, (list, tuple)):
            return type(a)(self._arg(x) for x in a)
        if not isinstance(a, fx.Node) or a.graph is self.g:
            return a
        if a in self.env:
            return self.env[a]
        if self._is_state(a):
            name = self.state[a.name]
            new = self.g.get_attr(name)
            parts = name.split(".")[:-1]  # in the scope of the module that holds it
            paths = [".".join(parts[:i + 1]) for i in range(len(parts))]
            new.meta["nn_module_stack"] = {f"m{i}": (p, type(self.modules[p]))
                                           for i, p in enumerate(paths) if p in self.modules}
            self.env[a] = new
            return new
        if self._is_const(a):
            return self._constant(a)
        raise ImportFailure(f"{a.name} ({a.target}): a value the importer cannot place")

    def _function(self, n):
        t = _packet(n.target)
        if t in _SKIP:
            return
        val = n.meta.get("val")
        if self._is_const(n):
            return  # a tensor computed from sizes: made where it is used (_constant)
        if t is aten.sym_size:
            x, d = n.args[0], n.args[1]
            src = self._arg(x) if x in self.env or self._is_data(x) else None
            if src is None:
                self.env[n] = self._sym_value(n)
                return
            self.env[n] = self._new("call_method", "size", (src, d), n)
            return
        if not self._tensor(n) and not isinstance(val, (list, tuple)):
            if n.target in (operator.mul, operator.add, operator.sub, operator.floordiv,
                            operator.truediv, operator.mod, operator.neg):
                self.env[n] = self._new("call_function", n.target, self._arg(n.args), n)
                return
            if n.target is operator.getitem:
                src = n.args[0]
                if src in self.env and isinstance(self.env[src], list):
                    self.env[n] = self.env[src][n.args[1]]
                    return
        if n.target is operator.getitem and n.args[0] in self.env \
                and isinstance(self.env[n.args[0]], list):
            self.env[n] = self.env[n.args[0]][n.args[1]]
            return
        self.env[n] = self._translate(n, t)

    def _new(self, op, target, args, old, kwargs=None):
        node = self.g.create_node(op, target, tuple(args), kwargs or {})
        return self._meta(node, old)

    def _sizes(self, x) -> list:
        """``x.size(0), x.size(1), ...`` as nodes of the new graph (ints where fixed)."""
        val = x.meta["val"]
        out = []
        for i, d in enumerate(val.shape):
            if isinstance(d, int):
                out.append(d)
            else:
                out.append(self._new("call_method", "size", (self._arg(x), i), x))
        return out

    def _translate(self, n, t):
        a = lambda i, d=None: n.args[i] if len(n.args) > i else d  # noqa: E731
        call = lambda f, *args, **kw: self._new("call_function", f, self._arg(args), n,  # noqa
                                                {k: self._arg(v) for k, v in kw.items()})
        meth = lambda m, *args: self._new("call_method", m, self._arg(args), n)  # noqa
        x = n.args[0] if n.args else None
        if self._aliases(n):
            return self._arg(x)
        if t in (aten.view, aten.reshape, aten._unsafe_view):
            return meth("reshape", x, *n.args[1])
        if t is aten.transpose:
            return meth("transpose", x, n.args[1], n.args[2])
        if t is aten.permute:
            return meth("permute", x, *n.args[1])
        if t is aten.t:
            return meth("transpose", x, 0, 1)
        if t in (aten.unsqueeze, aten.squeeze):
            return meth("reshape", x, *self._out_sizes(n))
        if t is aten.expand:
            return meth("expand", x, *n.args[1])
        if t is aten.slice:
            return self._slice(n, x, a(1, 0), a(2), a(3), a(4, 1))
        if t is aten.select:
            rank = x.meta["val"].dim()
            dim = n.args[1] % rank
            return call(operator.getitem, x, (slice(None),) * dim + (n.args[2],))
        if t in (aten.split, aten.split_with_sizes, aten.chunk, aten.unbind):
            return self._pieces(n, t, x)
        if t in _BINARY or t is aten.rsub:
            op = _BINARY.get(t, operator.sub)
            lhs, rhs = (n.args[1], x) if t is aten.rsub else (x, n.args[1])
            return call(op, lhs, rhs)
        if t is aten.neg:
            return call(operator.mul, x, -1)
        if t in _UNARY:
            return call(_UNARY[t], x)
        if t in _COMPARE and len(n.args) == 2:
            if _COMPARE[t] in (torch.minimum, torch.maximum) and isinstance(
                    self._arg(n.args[1]), (int, float)):  # with a number: a clamp
                bound = "max" if _COMPARE[t] is torch.minimum else "min"
                return call(torch.clamp, x, **{bound: self._arg(n.args[1])})
            return call(_COMPARE[t], x, n.args[1])
        if t is aten.where and len(n.args) == 3:
            if isinstance(x, fx.Node) and self._is_const(x) and self._all_true(x):
                return self._arg(n.args[1])  # a mask that keeps everything
            return call(torch.where, *n.args)
        if t is aten.to and len(n.args) == 2 and isinstance(n.args[1], torch.dtype):
            if n.args[1] == torch.int64:
                return meth("long", x)
            if n.args[1] == torch.float32 and not x.meta["val"].is_floating_point():
                return meth("float", x)
        if t is aten.arange and len(n.args) == 1:
            return call(torch.arange, n.args[0])
        if t is aten.gelu:
            return call(F.gelu, x, approximate=n.kwargs.get("approximate", "none"))
        if t in (aten.softmax, aten._softmax):
            return call(torch.softmax, x, n.args[1])
        if t is aten.log_softmax or t is aten._log_softmax:
            return call(F.log_softmax, x, n.args[1])
        if t in (aten.matmul, aten.bmm, aten.mm):
            return call(torch.matmul, x, n.args[1])
        if t is aten.cat:
            return call(torch.cat, list(n.args[0]), a(1, 0))
        if t is aten.mean or t is aten.sum:
            f = torch.mean if t is aten.mean else torch.sum
            return call(f, x, a(1), a(2, False))
        if t is aten.dropout:
            return call(F.dropout, x, n.args[1])
        if t is aten.flatten:
            return call(torch.flatten, x, a(1, 0), a(2, -1))
        if t is aten.linear:
            return call(F.linear, x, n.args[1], a(2))
        if t is aten.embedding:  # on a module's own weight: that module's layer
            return call(F.embedding, n.args[1], x)
        if t is aten.layer_norm:
            return call(F.layer_norm, x, n.args[1], a(2), a(3), a(4, 1e-5))
        if t is aten.scaled_dot_product_attention:
            return self._sdpa(n, call)
        raise ImportFailure(f"{self._where(n)}: no nnspec kind for aten.{t.__name__} "
                            "(from torch.export)")

    def _where(self, n) -> str:
        st = self._stack(n)
        return f"{st[-1][0]} ({st[-1][1].__name__})" if st else "the model"

    def _same_dtype(self, n) -> bool:
        src = n.args[0].meta.get("val")
        return isinstance(src, torch.Tensor) and src.dtype == n.meta["val"].dtype

    def _out_sizes(self, n) -> list:
        """The sizes of ``n``'s value as new-graph values (a reshape's target)."""
        x = n.args[0]
        ins = self._sizes(x)
        val_in, val_out = x.meta["val"].shape, n.meta["val"].shape
        out, j = [], 0
        for d in val_out:
            if j < len(val_in) and (d is val_in[j] or str(d) == str(val_in[j])):
                out.append(ins[j])
                j += 1
            elif isinstance(d, int) and d == 1:
                out.append(1)
                if j < len(val_in) and str(val_in[j]) == "1" and len(val_in) > len(val_out):
                    j += 1
            else:
                while j < len(val_in) and str(val_in[j]) == "1":
                    j += 1
                out.append(ins[j] if j < len(ins) else d)
                j += 1
        return out

    def _slice(self, n, x, dim, start, end, step):
        size = x.meta["val"].shape
        dim = dim % len(size)
        if end is not None and not isinstance(end, fx.Node) and end >= _BIG:
            end = None
        if start == 0:
            start = None
        if isinstance(end, fx.Node) or isinstance(start, fx.Node):
            if isinstance(end, fx.Node) and str(end.meta.get("val")) == str(size[dim]) \
                    and start is None:
                return self._arg(x)  # x[:, :T] of a T-long axis
            raise ImportFailure(f"{self._where(n)}: a slice whose bounds are computed "
                                "from sizes")
        if start is None and end is None and step == 1:
            return self._arg(x)
        sub = (slice(None),) * dim + (slice(start, end, None if step == 1 else step),)
        return self._new("call_function", operator.getitem, (self._arg(x), sub), n)

    def _pieces(self, n, t, x):
        size = x.meta["val"].shape
        if t is aten.unbind:
            dim = (n.args[1] if len(n.args) > 1 else 0) % len(size)
            return [self._new("call_function", operator.getitem,
                              (self._arg(x), (slice(None),) * dim + (i,)), n)
                    for i in range(int(size[dim]))]
        dim = (n.args[2] if len(n.args) > 2 else 0) % len(size)
        full = size[dim]
        if not isinstance(full, int):
            raise ImportFailure(f"{self._where(n)}: a split of an axis whose size varies")
        if t is aten.chunk:
            step = -(-full // n.args[1])
            bounds = list(range(0, full, step)) + [full]
        elif t is aten.split:
            step = n.args[1]
            bounds = list(range(0, full, step)) + [full]
        else:
            bounds = [0]
            for s in n.args[1]:
                bounds.append(bounds[-1] + s)
        out = []
        for lo, hi in zip(bounds, bounds[1:]):
            piece = slice(lo or None, hi if hi < full else None)
            out.append(self._new("call_function", operator.getitem,
                                 (self._arg(x), (slice(None),) * dim + (piece,)), n))
        return out

    def _sdpa(self, n, call):
        q, k, v = n.args[:3]
        mask = n.args[3] if len(n.args) > 3 else n.kwargs.get("attn_mask")
        p = n.args[4] if len(n.args) > 4 else n.kwargs.get("dropout_p", 0.0)
        causal = n.args[5] if len(n.args) > 5 else n.kwargs.get("is_causal", False)
        kw = {}
        if "scale" in n.kwargs and n.kwargs["scale"] is not None:
            kw["scale"] = n.kwargs["scale"]
        if n.kwargs.get("enable_gqa"):
            kw["enable_gqa"] = True
        if mask is not None and self._is_const(mask):
            kind = self._mask_kind(mask, n)
            mask = None
            causal = causal or kind == "causal"
            if isinstance(kind, tuple):  # a sliding window
                return call(sdpa_window, q, k, v, kind[1], **kw)
        return call(F.scaled_dot_product_attention, q, k, v, attn_mask=mask, dropout_p=p,
                    is_causal=causal, **kw)
