"""An ONNX graph as a list of nnspec stages (:class:`Op`), with layer names and the
initializers each layer's state_dict entries come from.

Nodes are visited in the graph's (topological) order. Constants and sizes are folded
(fold.py); every other node becomes an Op through its op type's converter (ops.py,
tensorops.py). A node nnspec cannot express is an :class:`OnnxImportError` naming the node
and the reason: never an approximation.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

import numpy as np

from ...ir.names import child_name_problem
from .fold import FoldError, constant, fold, split, symbolic
from .read import RESERVED, OnnxGraph, OnnxImportError
from .words import NotFinite

_PART = r"(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+)"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH = re.compile(rf"[A-Za-z_][A-Za-z0-9_]*(?:\.{_PART})*")


@dataclass
class Op:
    """One stage or expression of the spec.

    ``form``: ``stage`` (``text`` is a pipeline stage; ``inputs[0]`` is piped in) or
    ``expr`` (``text`` is an expression with ``{0}``, ``{1}`` ... for the inputs).
    ``layer``: the layer's name (``as layer``) when it has weights; ``weights``: state_dict
    key (relative to the layer) -> (the ONNX value it is read from, a transform).
    """

    label: str
    form: str
    text: str
    inputs: list
    output: str
    layer: str | None = None
    kind: str = ""
    weights: dict = field(default_factory=dict)
    again: bool = False
    base: str = ""

    def stage_text(self) -> str:
        if self.layer is None:
            return self.text
        return self.layer if self.again else f"{self.text} as {self.layer}"


def label(node) -> str:
    """How a node reads in an error: ``node '/fc/Gemm' (Gemm)``."""
    return f"node {node.name!r} ({node.op_type})" if node.name else f"a {node.op_type} node"


class Converter:
    """The state of one import: constants, aliases, the ops written so far, layer names."""

    def __init__(self, g: OnnxGraph):
        self.g = g
        self.const: dict[str, np.ndarray] = {}
        self.alias: dict[str, str] = {}
        self.ops: list[Op] = []
        self.producer: dict[str, Op] = {}
        self.layers: dict[str, Op] = {}
        self.counts: dict[str, int] = {}
        self.users: dict[str, int] = {}
        self.outputs = [o.name for o in g.graph.output]
        self.tensors = {name for name, _, _ in g.inputs}
        self.skip: set[int] = set()
        self.replaced: dict = {}
        self.tables: dict[str, tuple] = {}
        self.fills: dict[str, float] = {}
        self.time_major: dict[str, str] = {}
        self.consumers: dict[str, list] = {}
        for k, node in enumerate(g.graph.node):
            for i in node.input:
                self.users[i] = self.users.get(i, 0) + 1
                self.consumers.setdefault(i, []).append((k, node))
        for o in self.outputs:
            self.users[o] = self.users.get(o, 0) + 2

    # ---- values ---------------------------------------------------------------------

    def resolve(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def is_const(self, name: str) -> bool:
        return name in self.const or name in self.g.inits

    def value(self, name: str) -> np.ndarray:
        if name not in self.const:
            self.const[name] = self.g.array(self.g.inits[name])
        return self.const[name]

    def numeric(self, node, name: str, what: str) -> np.ndarray:
        """A constant input of plain numbers (not sizes read from a shape)."""
        if not name or not self.is_const(name):
            raise self.fail(node, f"its {what} is computed at run time (nnspec needs a "
                                  "constant here)")
        v = self.value(name)
        if symbolic(v):
            if any(x is None for x in v.reshape(-1)):
                raise self.fail(node, f"its {what} depends on sizes not known statically")
            raise self.fail(node, f"its {what} depends on the input's symbolic sizes")
        return v

    def tensor(self, node, name: str) -> str:
        if name in self.tensors:
            return name
        if name in self.fills:
            raise self.fail(node, f"{name!r} is a tensor of {self.fills[name]} whose shape "
                                  "is computed from the input's symbolic sizes (nnspec "
                                  "takes one only as a recurrent layer's zero state)")
        if name in self.tables:
            raise self.fail(node, f"{name!r} is the first rows of the table "
                                  f"{self.tables[name][0]!r} up to a symbolic size (nnspec "
                                  "takes one only added to [N, T, E] as learned positions)")
        if self.is_const(name):
            raise self.fail(node, f"{name!r} is a constant where nnspec needs a tensor "
                                  "computed from the model's inputs")
        raise self.fail(node, f"input {name!r} is not known")

    def dims(self, name: str) -> list | None:
        v = self.g.values.get(name)
        return None if v is None else v.dims

    def rank(self, node, name: str) -> int:
        d = self.dims(name)
        if d is None:
            raise self.fail(node, f"the rank of {name!r} is not known (ONNX shape inference "
                                  "gives none)")
        return len(d)

    def attr(self, node, name: str, default=None):
        from onnx import helper

        for a in node.attribute:
            if a.name == name:
                v = helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    def fail(self, node, reason: str) -> OnnxImportError:
        return OnnxImportError(f"{label(node)}: {reason}{_module_of(node)}")

    # ---- the walk ---------------------------------------------------------------------

    def run(self, ops: dict, groups=()) -> list[Op]:
        """The Ops of the graph; ``ops``: op type -> converter (see ops.py); ``groups``:
        functions that find groups of nodes standing for one stage before the walk."""
        nodes = list(self.g.graph.node)
        for node in nodes:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                try:
                    self.const[node.output[0]] = constant(node)
                except FoldError as e:
                    raise self.fail(node, str(e)) from None
        for find in groups:
            find(self)
        for i, node in enumerate(nodes):
            if i in self.skip or node.op_type == "Constant":
                continue
            if i in self.replaced:
                op = self.replaced[i](self)
                self.ops.append(op)
                self.producer[op.output] = op
                self.tensors.add(op.output)
                continue
            if node.domain not in ("", "ai.onnx"):
                raise self.fail(node, f"an op of the custom domain {node.domain!r}: nnspec "
                                      "never runs an ONNX file's own operators")
            ins = [self.resolve(x) if x else "" for x in node.input]
            if self._filled(node, ins) or self._folded(node, ins):
                continue
            make = ops.get(node.op_type)
            if make is None:
                raise self.fail(node, "no nnspec kind for this op")
            try:
                op = make(self, node, ins, i)
            except NotFinite as e:
                raise self.fail(node, f"a constant that is not finite ({e})") from None
            except (ValueError, TypeError, IndexError, KeyError) as e:
                raise self.fail(node, f"malformed ({type(e).__name__}: {e})") from None
            if op is None:
                continue
            self.ops.append(op)
            self.producer[op.output] = op
            self.tensors.add(op.output)
        for o in self.outputs:
            r = self.resolve(o)
            if r not in self.tensors:
                raise OnnxImportError(f"output {o!r} is a constant, not computed from the "
                                      "model's inputs")
        self._unclash()
        return self.ops

    def _unclash(self) -> None:
        """A layer named by the module whose other layers it holds (a projection computed
        in a module's own forward, ``attn`` beside ``attn.out_proj``) is renamed
        ``attn.<kind>``: one name cannot be a layer and a path to layers."""
        names = set(self.layers)
        for name, op in list(self.layers.items()):
            if not any(n.startswith(name + ".") for n in names):
                continue
            new, i = f"{name}.{op.kind or 'layer'}", 2
            while new in names:
                new, i = f"{name}.{op.kind or 'layer'}_{i}", i + 1
            names.discard(name)
            names.add(new)
            for o in self.ops:
                if o.layer == name:
                    o.layer = new
            self.layers[new] = self.layers.pop(name)

    def _folded(self, node, ins: list[str]) -> bool:
        if node.op_type == "Shape":
            if ins[0] in self.tensors:
                self.const[node.output[0]] = self._shape(node, ins[0])
                return True
        present = [x for x in ins if x]
        if not present or not all(self.is_const(x) for x in present):
            return False
        if node.op_type not in _FOLDABLE:
            return False
        if node.op_type == "Slice" and not symbolic(self.value(ins[0])) and \
                any(symbolic(self.value(x)) for x in present[1:]) and \
                np.issubdtype(self.value(ins[0]).dtype, np.floating):
            return False  # rows of a learned table up to a symbolic size: tensorops.slice_
        if node.op_type == "Expand" and symbolic(self.value(ins[1])):
            return False  # a learned constant broadcast to the batch: an expand
        vals = [self.value(x) if x else None for x in ins]
        if node.op_type == "Split":  # a packed weight cut into its parts
            if symbolic(vals[0]):
                return False
            try:
                parts = split(node, vals)
            except (FoldError, ValueError, TypeError, IndexError) as e:
                raise self.fail(node, f"malformed ({e})") from None
            self.const.update((o, p) for o, p in zip(node.output, parts) if o)
            return True
        try:
            self.const[node.output[0]] = fold(node, vals)
        except FoldError as e:
            raise self.fail(node, str(e)) from None
        return True

    def _filled(self, node, ins: list[str]) -> bool:
        """A tensor of one repeated value whose shape depends on symbolic sizes (the
        zero state ``torch.zeros(layers, x.size(0), hidden)``), followed through the ops
        that keep it one: kept as its value alone."""
        rest = [x for x in ins[1:] if x]
        if not ins or not all(self.is_const(x) for x in rest):
            return False
        if node.op_type in _FILL_KEEPING and ins[0] in self.fills:
            self.fills[node.output[0]] = self.fills[ins[0]]
            return True
        if node.op_type not in ("Expand", "ConstantOfShape"):
            return False
        shape = ins[1] if node.op_type == "Expand" else ins[0]
        if not self.is_const(shape) or not symbolic(self.value(shape)):
            return False
        if node.op_type == "ConstantOfShape":
            from onnx import numpy_helper

            v = self.attr(node, "value")
            fill = numpy_helper.to_array(v) if v is not None else np.zeros(1)
        elif self.is_const(ins[0]) and not symbolic(self.value(ins[0])) and \
                self.value(ins[0]).size == 1:
            fill = self.value(ins[0])
        else:
            return False
        flat = np.asarray(fill, dtype=np.float64).reshape(-1)
        if flat.size == 0 or not np.all(flat == flat[0]):
            return False
        self.fills[node.output[0]] = float(flat[0])
        return True

    def _shape(self, node, x: str) -> np.ndarray:
        dims = self.dims(x)
        if dims is None:
            raise self.fail(node, f"the rank of {x!r} is not known")
        start, end = self.attr(node, "start", 0), self.attr(node, "end", len(dims))
        dims = dims[slice(start, end)]
        if all(isinstance(d, int) for d in dims):
            return np.array(dims, dtype=np.int64)
        return np.array(dims, dtype=object)

    # ---- layers ---------------------------------------------------------------------

    def layer(self, node, kind: str, text: str, inputs: list[str], output: str,
              weights: dict) -> Op:
        """An Op with weights, named after its initializers, its node or its kind; the same
        initializers seen again are the same layer applied again (shared weights)."""
        sources = {k: v for k, v in weights.items() if v[0]}
        op = Op(label(node), "stage", text, inputs, output, kind=kind, weights=sources)
        names = [v[0] for v in sources.values()]
        scoped, named = _from_scopes(node), _from_weights(names)
        # initializers of equal values are one in the file, named after one of the modules
        # that hold them (a tied table, zero biases): the node's own module names it, when
        # that module is a layer of this kind (not a batchnorm folded into a convolution)
        moved = scoped and named and scoped != named and \
            not named.startswith(scoped + ".") and \
            (named in self.layers or _module_kind(node) == kind)
        base = (scoped if moved else named) or \
            _from_node(node) or f"{kind}_{self.counts.get(kind, 0)}"
        if base.startswith(f"{kind}_"):
            self.counts[kind] = self.counts.get(kind, 0) + 1
        first = self.layers.get(base)
        if first is not None and first.text == text and first.weights == sources:
            op.layer, op.again = base, True
            return op
        name, i = base, 2
        while name in self.layers:
            name, i = f"{base}_{i}", i + 1
        op.layer = name
        self.layers[name] = op
        return op


_FILL_KEEPING = {"Slice", "Squeeze", "Unsqueeze", "Reshape", "Identity", "Cast", "Expand"}
_FOLDABLE = {"Identity", "Cast", "CastLike", "Unsqueeze", "Squeeze", "Concat", "Gather",
             "Slice", "Reshape", "Transpose", "Add", "Sub", "Mul", "Div", "Neg", "Sqrt",
             "Equal", "Where", "ConstantOfShape", "Range", "Expand", "Shape", "Split"}


def good_path(path: str | None) -> bool:
    if not path or not _PATH.fullmatch(path):
        return False
    return all(p not in RESERVED and child_name_problem(p) is None for p in path.split("."))


def _from_weights(names: list[str]) -> str | None:
    """``layer1.0.conv1`` from ``layer1.0.conv1.weight`` and ``layer1.0.conv1.bias``."""
    if not names or any("." not in n for n in names):
        return None
    prefixes = {n.rsplit(".", 1)[0] for n in names}
    if len(prefixes) != 1:
        return None
    p = prefixes.pop()
    return p if good_path(p) else None


def scopes(node, key: str = "pkg.torch.onnx.name_scopes") -> list[str] | None:
    """The name scopes torch's dynamo exporter records in a node's metadata (``['',
    'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d']``: the module paths, then the call;
    with ``key="pkg.torch.onnx.class_hierarchy"``, the modules' classes); read as a
    literal, never run."""
    for p in node.metadata_props:
        if p.key == key:
            if len(p.value) > 10_000:
                return None
            try:
                v = ast.literal_eval(p.value)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return None
            if isinstance(v, list) and all(isinstance(s, str) for s in v):
                return v
    return None


_CLASS_KINDS = {"linear": "dense", "embedding": "embedding", "conv": "conv",
                "convtranspose": "convtranspose", "layernorm": "layernorm",
                "batchnorm": "batchnorm", "groupnorm": "groupnorm", "gru": "gru",
                "lstm": "lstm", "rnn": "rnn", "instancenorm": "instancenorm"}


def _module_kind(node) -> str | None:
    """The nnspec kind of the innermost module the dynamo exporter records for ``node``
    (``torch.nn.modules.sparse.Embedding``: ``embedding``), None when not one of these."""
    sc = scopes(node, "pkg.torch.onnx.class_hierarchy")
    if sc is None or len(sc) < 2:
        return None
    name = re.sub(r"[0-9]d$", "", sc[-2].rsplit(".", 1)[-1]).lower()
    return _CLASS_KINDS.get(name)


def _module_of(node) -> str:
    """`` (in the module 'digitcaps', class CapsuleLayer)``: where the dynamo exporter says
    the node comes from, for an error; empty when the file does not say."""
    path = _from_scopes(node)
    if path is None:
        return ""
    classes = scopes(node, "pkg.torch.onnx.class_hierarchy")
    cls = classes[-2].rsplit(".", 1)[-1] if classes and len(classes) > 2 else ""
    return f" (in the module {path!r}" + (f", class {cls})" if _IDENT.fullmatch(cls) else ")")


def _from_scopes(node) -> str | None:
    sc = scopes(node)
    if sc is not None and len(sc) > 2:
        return sc[-2] if good_path(sc[-2]) else None
    return None


def _from_node(node) -> str | None:
    """The module path in a node's name (``/layer1/layer1.0/conv1/Conv``, as
    ``torch.onnx.export`` names nodes) or in the name scopes torch's dynamo exporter records
    in the node's metadata."""
    if scopes(node) is not None:
        return _from_scopes(node)
    parts = [p for p in node.name.split("/") if p]
    if not node.name.startswith("/") or len(parts) < 2:
        return None
    path = ""
    for c in parts[:-1]:
        path = c if path and c.startswith(path + ".") else (f"{path}.{c}" if path else c)
    return path if good_path(path) else None
