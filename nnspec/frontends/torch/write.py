"""The spec a person would have written for a traced PyTorch model.

Every traced operation becomes an :class:`~.ops.Op` in the scope of the modules it ran in.
A module instance whose operations take one tensor and give one becomes a call of a
``block`` named after its class; the instances of a class share one block, with block
parameters where their numbers differ (channels, stride), and a class whose instances
differ in structure (a downsampling shortcut) gets one block per structure. A container's
consecutive identical calls are written ``Block(...) * n as name``. Layers with state are
named after their module attribute (``as conv1``, ``as downsample.0``), so the state_dict
keys of the spec's module are the original's.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from torch import fx, nn

from .functions import function_op, functional_layer, is_tensor
from .ops import Op, Slot, _num, converter, stateless, weight_norm
from .trace import ImportFailure, Traced

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|[0-9]+)(\.([A-Za-z_][A-Za-z0-9_]*|[0-9]+))*")
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_RESERVED = {"true", "false", "return", "use", "const", "check", "train", "model", "block",
             "loss", "as"}


@dataclass
class Input:
    """A declared model input: ``name: [dims] dtype``; dims are ints or symbol names."""

    name: str
    dims: list
    dtype: str = "float"

    def text(self) -> str:
        t = f"{self.name}: [{', '.join(str(d) for d in self.dims)}]"
        return t + (f" {self.dtype}" if self.dtype != "float" else "")


@dataclass
class Scope:
    """A module instance's part of the program: its ops and child scopes, in order."""

    path: str
    cls: type | None
    items: list = field(default_factory=list)  # Op | Scope


# ---- collecting ------------------------------------------------------------------------

def _stack(node: fx.Node, leaf: bool) -> list[tuple[str, type]]:
    st = node.meta.get("nn_module_stack") or {}
    out = [(path, cls) for path, cls in st.values()]
    if leaf and out and out[-1][0] == node.target:
        out = out[:-1]
    return [(p, c) for p, c in out if p]


def collect(traced: Traced, where: dict) -> tuple[Scope, list, list]:
    """The scope tree of the traced program, its placeholders and its output nodes."""
    root = Scope("", None)
    placeholders, outputs = [], []
    uses: dict = {}
    alias: dict = {}
    layers = {}  # functional calls on a module's own parameters: that module's layer
    for node in traced.graph.nodes:
        op = functional_layer(node, traced.modules)
        if op is not None:
            layers[node] = op
    absorbed = {a for op in layers.values() for a in op.node.all_input_nodes
                if a.op == "get_attr" and all(u in layers for u in a.users)}
    for node in traced.graph.nodes:
        if node in absorbed:
            continue
        if node in layers:
            op = layers[node]
            op.scope = tuple(_stack(node, False))
            op.inputs = [_rep(alias, x) for x in op.inputs]
            _place(root, op)
            continue
        if node.op == "placeholder":
            placeholders.append(node)
            continue
        if node.op == "output":
            out = node.args[0]
            outputs = list(out) if isinstance(out, (tuple, list)) else [out]
            continue
        if node.op == "get_attr":
            op = _learned(traced, node)
            op.scope = tuple(_stack(node, False))
            _place(root, op)
            continue
        if node.op == "call_module":
            module = traced.modules[node.target]
            make = converter(module)
            if make is None:
                raise ImportFailure(f"{node.target} ({type(module).__name__}): no nnspec "
                                    "kind for this module")
            try:
                words = make(module)
                words = words and words + weight_norm(module, words)
            except ImportFailure as e:
                raise ImportFailure(f"{node.target} ({type(module).__name__}): {e}") from None
            tensors = [a for a in node.args if is_tensor(a)]
            if isinstance(module, nn.MultiheadAttention):
                tensors = _self_attention(node, tensors)
            elif len(tensors) + sum(is_tensor(v) for v in node.kwargs.values()) > 1 or \
                    any(isinstance(a, (tuple, list)) for a in node.args[1:]):
                raise ImportFailure(f"{node.target} ({type(module).__name__}): called with "
                                    "more than its input (initial states, masks)")
            if words is None:  # nn.Identity
                op = Op(node, [], tensors[:1], "skip")
            else:
                state = not stateless(module)
                words = words + _tied(traced, node.target, module, words)
                uses[node.target] = uses.get(node.target, 0) + 1
                op = Op(node, words, tensors, "stage", node.target if state else None)
                if state and uses[node.target] > 1:
                    op.form = "again"
            op.scope = tuple(_stack(node, True))
        else:
            try:
                op = function_op(node, where)
            except ImportFailure as e:
                place = _stack(node, False)
                at = f"{place[-1][0]} ({place[-1][1].__name__})" if place else "the model"
                raise ImportFailure(f"{at}: {e}") from None
            if op is None:
                continue
            op.scope = tuple(_stack(node, False))
        op.inputs = [_rep(alias, x) for x in op.inputs]
        op.words = [(w[0], _rep(alias, w[1])) if isinstance(w, tuple) and w[0] == "tensor"
                    else w for w in op.words]
        if op.form == "skip":  # contiguous(), nn.Identity: the value is its input
            alias[node] = op.inputs[0]
            continue
        _place(root, op)
    return root, placeholders, [_rep(alias, o) for o in outputs]


def _learned(traced: Traced, node: fx.Node) -> Op:
    """A parameter used as a tensor (a class token, a position embedding, a layer scale):
    ``param [shape] as name``; a buffer has no kind yet."""
    try:
        value = traced.model.get_parameter(node.target)
    except AttributeError:
        raise ImportFailure(f"{node.target}: a buffer used as a tensor (a constant tensor) "
                            "has no nnspec kind yet") from None
    shape = ", ".join(str(int(d)) for d in value.shape)
    return Op(node, [f"param [{shape}]"], [], "source", node.target)


def _tied(traced: Traced, path: str, module, words: list) -> list:
    """`` weight=<path>.weight`` for a dense layer whose weight is another layer's
    Parameter (GPT-2's head and its token embedding): the spec ties them as the model does."""
    if not (words and isinstance(words[0], str) and words[0].startswith("dense")):
        return []
    w = getattr(module, "weight", None)
    if w is None:
        return []
    first = traced.__dict__.setdefault("_first_owner", {})
    if not first:
        for name, p in traced.model.named_parameters():  # the first name of each
            first.setdefault(id(p), name)
    name = first.get(id(w))
    if name is None or name == f"{path}.weight" or not name.endswith(".weight"):
        return []
    return [f" weight={name}"]


def _self_attention(node: fx.Node, tensors: list) -> list:
    """nn.MultiheadAttention called as self-attention ``attn(x, x, x)``: one input."""
    extra = {k: v for k, v in node.kwargs.items() if v is not None}
    if extra.pop("need_weights", True) is not False and len(node.users) > 0 and any(
            u.args[1] != 0 for u in node.users if len(u.args) > 1):
        raise ImportFailure(f"{node.target}: the attention weights are used")
    if extra:
        raise ImportFailure(f"{node.target} (MultiheadAttention): {', '.join(extra)} "
                            "(masks are not imported yet)")
    if len(tensors) != 3 or not (tensors[0] is tensors[1] is tensors[2]):
        raise ImportFailure(f"{node.target} (MultiheadAttention): only self-attention, "
                            "attn(x, x, x), is imported yet")
    return tensors[:1]


def _rep(alias: dict, x):
    while x in alias:
        x = alias[x]
    return x


def _place(root: Scope, op: Op) -> None:
    scope = root
    for path, cls in op.scope:
        if scope.items and isinstance(scope.items[-1], Scope) and scope.items[-1].path == path:
            scope = scope.items[-1]
        else:
            child = Scope(path, cls)
            scope.items.append(child)
            scope = child
    scope.items.append(op)


def flat_ops(scope: Scope) -> list[Op]:
    out = []
    for it in scope.items:
        out += flat_ops(it) if isinstance(it, Scope) else [it]
    return out


# ---- values and sizes --------------------------------------------------------------------

class Sizes:
    """Which spec dim an integer in the graph is: a literal when it is the same at both
    example sizes, a symbol when it follows one, else unknown."""

    def __init__(self, traced: Traced, symbols: dict[str, tuple[int, int]]):
        self.values = traced.values
        self.by_pair = {pair: name for name, pair in symbols.items()}

    def pair(self, v) -> tuple:
        if isinstance(v, fx.Node):
            return tuple(vals.get(v) for vals in self.values)
        return (v, v)

    def dim(self, v) -> str | None:
        a, b = self.pair(v)
        if not isinstance(a, int) or not isinstance(b, int):
            return None
        if a == b:
            return str(a)
        return self.by_pair.get((a, b))


# ---- writing -----------------------------------------------------------------------------

def _rel(owner: str, prefix: str) -> str:
    return owner[len(prefix):] if prefix and owner.startswith(prefix) else owner


#: stages written as a call around a sum: ``relu(x + y)``
_UNARY = frozenset({"relu", "gelu", "tanh", "sigmoid", "silu", "elu", "leaky_relu"})

_SLOT = re.compile("\x00([0-9]+)\x00")


_CALL_HEAD = re.compile("\x01([0-9]+)\x01\\(")


def resolve_calls(text: str, groups: list) -> str:
    """Block calls in filled text: ``Name(`` the values of the block's parameters ``)``
    (values may hold parentheses: a kernel size ``(1, 7)``)."""
    out, i = [], 0
    while True:
        m = _CALL_HEAD.search(text, i)
        if m is None:
            return "".join(out) + text[i:]
        depth, j = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            j += 1
        inner = text[m.end():j - 1]
        g = groups[int(m.group(1))]
        args = inner.split("\x02") if inner else []
        out.append(text[i:m.start()] + f"{g.name}(" + ", ".join(args[k] for _, k in g.params)
                   + ")")
        i = j


class Body:
    """The statements of one model or block body, from its ops, as a template: each Slot
    is written ``\x00k\x00`` and listed in ``slots`` (see :func:`fill`)."""

    def __init__(self, ops: list, env: dict, sizes: Sizes, prefix: str, outputs: list,
                 taken: set):
        self.ops, self.env, self.sizes = ops, env, sizes
        self.prefix, self.outputs, self.taken = prefix, outputs, taken
        self.lines: list[str] = []
        self.slots: list[Slot] = []

    def name(self, base: str) -> str:
        base = re.sub(r"\W", "_", base).strip("_") or "h"
        if not _IDENT.fullmatch(base) or keyword.iskeyword(base) or base in _RESERVED:
            base = f"h_{base}" if _IDENT.fullmatch(f"h_{base}") else "h"
        name, i = base, 2
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name

    def word(self, w) -> str:
        if isinstance(w, str):
            return w
        if isinstance(w, Slot):
            self.slots.append(w)
            return f"\x00{len(self.slots) - 1}\x00"
        what, v = w[0], w[1]
        if what == "shape":
            return self._shape(v, infer=len(w) < 3)
        if what == "reshape":  # reshape [..], or where its sizes are unknown, w[2]
            try:
                return "reshape " + self._shape(v)
            except ImportFailure:
                if w[2] is None:
                    raise
                return w[2]
        if what == "index":
            return self._index(v)
        if what == "dim":  # one size: a number or a declared symbol
            t = self.sizes.dim(v)
            if t is None:
                raise ImportFailure("a size that follows no declared symbol")
            return t
        if what == "tensor":
            return self.env[v]
        if what == "call":  # a block call: every slot of the instance, chosen from later
            g, idx = v, w[2]
            args = "\x02".join(self.word(slot) for slot in g.slots_per_instance[idx])
            return f"\x01{g.gid}\x01({args})"
        raise AssertionError(what)

    def _shape(self, dims, infer: bool = True) -> str:
        out, unknown = [], 0
        for d in dims:
            if isinstance(d, int) and not isinstance(d, bool) and d == -1:
                out.append("-1")
                continue
            t = self.sizes.dim(d)
            if t is None and not infer:
                raise ImportFailure(f"a size of {len(dims)} that follows no declared symbol")
            if t is None:
                unknown += 1
                t = "-1"
            out.append(t)
        if infer and out.count("-1") > 1:
            raise ImportFailure(f"a reshape to {len(dims)} sizes, {out.count('-1')} of which "
                                "follow no declared symbol")
        return "[" + ", ".join(out) + "]"

    def _index(self, subs) -> str:
        subs = subs if isinstance(subs, tuple) else (subs,)
        parts = []
        for s in subs:
            if s is Ellipsis:
                parts.append("...")
            elif isinstance(s, slice):
                if any(isinstance(v, fx.Node) for v in (s.start, s.stop, s.step)):
                    raise ImportFailure("a slice with computed bounds")
                a = "" if s.start is None else str(s.start)
                b = "" if s.stop is None else str(s.stop)
                parts.append(f"{a}:{b}" + (f":{s.step}" if s.step is not None else ""))
            elif isinstance(s, int) and not isinstance(s, bool):
                parts.append(str(s))
            else:
                raise ImportFailure(f"indexing with {type(s).__name__}")
        return ", ".join(parts)

    def stage(self, op: Op) -> str:
        text = "".join(self.word(w) for w in op.words)
        if op.owner is not None:
            rel = _rel(op.owner, self.prefix)
            if not _PATH.fullmatch(rel):
                raise ImportFailure(f"{op.owner}: a module name nnspec cannot write as a "
                                    "layer name (letters, digits and _, parts joined by .)")
            text = rel if op.form == "again" else f"{text} as {rel}"
        return text

    def write(self) -> None:
        users: dict = {}
        for op in self.ops:
            for x in op.inputs:
                users[x] = users.get(x, 0) + 1
        for o in self.outputs:
            users[o] = users.get(o, 0) + 2  # a value returned is never chained away
        chain: list[str] = []
        start = tail = tail_op = None
        ops = self.ops
        for i, op in enumerate(ops):
            nxt = ops[i + 1] if i + 1 < len(ops) else None
            if op.form == "join" and op.words[0] == "+" and nxt is not None \
                    and nxt.form == "stage" and nxt.owner is None and nxt.inputs == [op.node] \
                    and users.get(op.node, 0) == 1 and len(nxt.words) == 1 \
                    and isinstance(nxt.words[0], str) and nxt.words[0] in _UNARY:
                # relu(x + y): the layer applied to the sum, as the README writes it
                self._close(start, chain, tail, tail_op)
                a, b = (self.env[x] for x in op.inputs)
                start, chain = None, [f"{nxt.words[0]}({a} + {b})"]
                self.env[op.node] = None
                tail, tail_op = nxt.node, nxt
                continue
            if op is tail_op:  # the layer of a relu(x + y) written above
                continue
            if op.form == "source":  # a learned tensor: a pipeline's first stage
                self._close(start, chain, tail, tail_op)
                start, chain, tail, tail_op = None, [self.stage(op)], op.node, op
                continue
            if op.form in ("stage", "again"):
                x = op.inputs[0]
                if tail is not None and x is tail and users.get(x, 0) == 1:
                    chain.append(self.stage(op))
                    tail, tail_op = op.node, op
                    continue
                self._close(start, chain, tail, tail_op)
                start, chain, tail, tail_op = self.env[x], [self.stage(op)], op.node, op
                continue
            self._close(start, chain, tail, tail_op)
            start, chain, tail, tail_op = None, [], None, None
            name = self.name(_base(op, self.prefix))
            self.lines.append(f"{name} = {self.expr(op)}")
            self.env[op.node] = name
        self._close(start, chain, tail, tail_op)
        outs = [self.env[o] for o in self.outputs]
        last = self.lines[-1] if self.lines else ""
        if len(outs) == 1 and last.startswith(f"{outs[0]} = ") and \
                sum(re.search(rf"\b{re.escape(outs[0])}\b", ln) is not None
                    for ln in self.lines) == 1:
            self.lines[-1] = "return " + last[len(outs[0]) + 3:]
        else:
            self.lines.append("return " + ", ".join(outs))

    def _close(self, start, chain, tail, tail_op) -> None:
        if chain:
            name = self.name(_base(tail_op, self.prefix))
            head = f"{start} | " if start is not None else ""
            self.lines.append(f"{name} = {head}" + " | ".join(chain))
            self.env[tail] = name

    def expr(self, op: Op) -> str:
        ins = [self.env[x] for x in op.inputs]
        if op.form == "join":
            sym = op.words[0]
            return f"{ins[0]} + {ins[1]}" if sym == "+" else f"({ins[0]} {sym} {ins[1]})"
        if op.form == "scalar":
            return f"({ins[0]} {op.words[0]})"
        if op.form == "rscalar":
            return f"({op.words[0]} {ins[0]})"
        if op.form == "index":
            return f"{ins[0]}[{self.word(op.words[0])}]"
        if op.form == "call":
            kind = op.words[0]
            named = {id(w[1]) for w in op.words if isinstance(w, tuple) and w[0] == "tensor"}
            pos = [self.env[x] for x in op.inputs if id(x) not in named]
            rest: list[str] = []
            for w in op.words[1:]:  # ``mask=`` and its tensor are one argument
                t = self.word(w).strip()
                if rest and rest[-1].endswith("="):
                    rest[-1] += t
                elif t:
                    rest.append(t)
            return f"{kind}({', '.join(pos + rest)})"
        raise AssertionError(op.form)


def fill(text: str, slots: list, names: dict) -> str:
    """A template with each slot's parameter name (``names[k]``) or its value."""
    return _SLOT.sub(lambda m: names.get(int(m.group(1))) or _num(slots[int(m.group(1))].value),
                     text)


def _base(op: Op, prefix: str = "") -> str:
    """A value's name: the last word of its layer's name (``downsample.1``: downsample),
    else ``out``; never a kind's name, which would read as a layer."""
    if op.owner is not None:
        words = [w for w in _rel(op.owner, prefix).split(".") if _IDENT.fullmatch(w)]
        if words and words[-1] not in _kinds():
            return words[-1]
        return "out"
    first = op.words[0] if op.words and isinstance(op.words[0], str) else "h"
    first = {"+": "sum", "-": "diff", "*": "prod", "/": "quot"}.get(first, first)
    word = first.split()[0] if first.split() else "h"
    return word if _IDENT.fullmatch(word) and word not in _kinds() else "out"


def _kinds() -> set:
    from ...layers import REGISTRY

    return set(REGISTRY)
