"""The graph to draw, built from the IR by :func:`build`: a :class:`GNode` per layer, model
input, returned value or folded block, a :class:`GEdge` per tensor (labelled with its
inferred shape) or ``check`` composition, a :class:`Cluster` per model and block call,
and the text of each node (:func:`layer_label`: a layer as a spec would write it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The longest text of a node's line; longer arguments are cut with an ellipsis.
MAX_LINE = 48


@dataclass
class GNode:
    """A drawn node: a layer, a model input or output, or a folded block."""

    id: str
    kind: str  # "layer" | "input" | "output" | "block"
    lines: list[str]
    tooltip: str
    clusters: list[str] = field(default_factory=list)  # enclosing cluster ids, outermost first
    params: int = 0
    info: dict | None = None  # the details a viewer shows (build(details=True))


@dataclass
class GEdge:
    src: str
    dst: str
    label: str
    kind: str = "data"  # "data" | "check" | "tie" (a tied weight) | "shared" (a layer reused)


@dataclass
class Cluster:
    id: str
    kind: str  # "model" | "block"
    label: list[str]
    tooltip: str
    parent: str | None
    params: int = 0
    folded: bool = False  # drawn as one node (--depth), not as a box


@dataclass
class Graph:
    nodes: list[GNode] = field(default_factory=list)
    edges: list[GEdge] = field(default_factory=list)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    title: str = ""

    def count(self, kind: str | None = None) -> int:
        return sum(1 for n in self.nodes if kind is None or n.kind == kind)


def _fmt_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        if v and all(x == v[0] for x in v) and not isinstance(v[0], (list, tuple)):
            return _fmt_value(v[0])
        return "(" + ", ".join(_fmt_value(x) for x in v) + ")"
    if v is None:
        return "None"
    return str(v)


#: Positional arguments shown as ``key=value`` all the same, as specs write them (``k=2``).
_KEYWORD_STYLE = frozenset({"k", "s", "p", "d"})


def layer_label(node, kind=None) -> str:
    """The layer's kind and its key arguments as a spec would write them: ``conv 6 k=5``.

    The arguments are those given (the IR keeps only values that differ from the
    defaults); positional ones are bare, true flags and tensor arguments (``h0``, ``kv``)
    bare words, tuples of one repeated value one value. Initialisers are left to the
    tooltip. ``kind``: the node's layer class, when the caller has it at hand."""
    if kind is None:
        from ...layers import REGISTRY

        kind = REGISTRY[node.op]
    params = dict(node.params)
    words = [kind.name]
    for key in kind.positional:
        if key in params and key not in kind.tensor_args and key not in _KEYWORD_STYLE:
            words.append(_fmt_value(params.pop(key)))
    for key, v in params.items():
        if key in ("init", "bias_init"):
            continue
        shown = key.rstrip("_")
        if key in kind.tensor_args or v is True:
            words.append(shown)
        else:
            words.append(f"{shown}={_fmt_value(v)}")
    return " ".join(words)


def _clip(text: str, n: int = MAX_LINE) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def _instances(name: str, depth: int) -> list[str]:
    """The instance name of each block a node was expanded from, outermost first.

    Each block call adds one component to the names inside it (``down_0``, or its ``as``
    name) and a repeated, named call one more, its index (``layer1.0``); a component is
    an index when it is all digits, which a name never is."""
    parts = name.split(".")
    out: list[str] = []
    i = 0
    for _ in range(depth):
        if i < len(parts) - 1:
            i += 1
            if i < len(parts) - 1 and parts[i].isdigit():
                i += 1
        out.append(".".join(parts[:i]) if i else "")
    return out


def _shown_path(path: str) -> str:
    """A file as the picture names it: relative to the current folder when it is inside
    it, else its name alone (an installed library's absolute path says nothing to a
    reader and would tie a committed picture to one machine)."""
    import os

    if not os.path.isabs(path):
        return path
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else os.path.basename(path)


#: The family of each layer module (``layers/<module>.py``), which colours its nodes.
FAMILIES = {
    "conv": "conv", "convtranspose": "conv", "norm": "norm", "groupnorm": "norm",
    "weightnorm": "norm", "activation": "activation", "attention": "attention",
    "sdpa": "attention", "rope": "attention", "pool": "pooling", "adaptive": "pooling",
    "dense": "linear", "capsule": "linear", "rbm": "linear", "embedding": "embedding",
    "positional": "embedding", "recurrent": "recurrent", "dropout": "regularization",
    "stochastic": "regularization", "merge": "merge", "split": "shape", "reshape": "shape",
    "tensorops": "shape", "padcrop": "shape", "pixelshuffle": "shape", "upsample": "shape",
    "gather": "shape", "param": "tensor", "consts": "tensor",
}


def family(kind) -> str:
    """The family of a layer class, e.g. ``conv``, ``norm``, ``activation`` (else ``other``)."""
    return FAMILIES.get(kind.__module__.rsplit(".", 1)[-1], "other")


def _fmt_params(n: int) -> str:
    return f"{n:,} param{'s' if n != 1 else ''}"


def _layer_lines(local: str, label: str, kind_name: str) -> list[str]:
    """A layer's name and label, the label left out when it only repeats the kind that an
    automatic name already says (``relu_0`` / ``relu``)."""
    auto = local.startswith(kind_name + "_") and local[len(kind_name) + 1:].isdigit()
    return [local] if auto and label == kind_name else [local, label]


def build(spec, models=None, depth: int | None = None, details: bool = False) -> Graph:
    """The graph of the spec's models (default: all) and of the checks between them.
    ``details``: give each node the ``info`` a viewer shows (kind, arguments, shapes)."""
    from ...layers import REGISTRY
    from ...layers.base import TupleType

    prog = spec.program
    models = list(prog.models) if models is None else list(models)
    g = Graph(title=", ".join(m.name for m in models))
    outputs: dict[str, list[str]] = {}  # model -> output node ids
    inputs: dict[str, dict[str, str]] = {}  # model -> input name -> node id
    out_types: dict[str, object] = {}
    paths: dict[str, str] = {}  # file -> as shown (relpath per node costs a 10k graph 0.2 s)

    def shown_path(path: str) -> str:
        s = paths.get(path)
        if s is None:
            s = paths[path] = _shown_path(path)
        return s
    for mi, m in enumerate(models):
        rows = {r.node.id: r for r in spec.layers(m.name)}
        types = spec.types(m.name).types
        shown: dict[str, str] = {}  # value id -> its type as text (str of a Dim is costly)

        def tstr(v: str, shown=shown, types=types) -> str:
            t = shown.get(v)
            if t is None:
                t = shown[v] = str(types.get(v))
            return t
        total = sum(r.params for r in rows.values())
        mc = f"m{mi}"
        ins = ", ".join(f"{i.name}: {types.get(i.id)}" for i in m.inputs)
        g.clusters[mc] = Cluster(mc, "model", [f"model {m.name}", _fmt_params(total)],
                                 f"model {m.name}({ins})", None, total)
        owner: dict[str, str] = {}  # value id -> drawn node id
        inputs[m.name] = {}
        for j, inp in enumerate(m.inputs):
            nid = f"{mc}i{j}"
            t = types.get(inp.id)
            g.nodes.append(GNode(nid, "input", [f"input {inp.name}", str(t)],
                                 f"model {m.name}, input {inp.name}: {t}", [mc],
                                 info={"name": inp.name, "out": str(t)} if details else None))
            owner[inp.id] = nid
            inputs[m.name][inp.name] = nid
        by_name: dict[str, str] = {}  # layer name -> its first drawn node
        keys: dict[tuple, str] = {}  # (level, call chain, instance) -> cluster id
        folds: dict[str, GNode] = {}
        for k, node in enumerate(m.nodes):
            row = rows.get(node.id)
            n_params = row.params if row else 0
            chain = node.called_from[::-1]  # outermost first
            inst = _instances(node.name, len(chain)) if chain else []
            path = [mc]
            fold = None
            for level, call in enumerate(chain):
                key = (level, tuple(tuple(c) for c in chain[:level + 1]), inst[level])
                cid = keys.get(key)
                if cid is None:
                    cid = keys[key] = f"{mc}c{len(keys)}"
                    where = (f"{shown_path(call[1])}:{call[2]}:{call[3]}"
                             if len(call) > 3 else "")
                    g.clusters[cid] = Cluster(
                        cid, "block", [f"{call[0]} {inst[level]}".rstrip()],
                        f"block {call[0]}, called at {where}", path[-1])
                g.clusters[cid].params += n_params
                if depth is not None and level >= depth:
                    fold = cid
                    g.clusters[cid].folded = True
                    break
                path.append(cid)
            if fold is not None:
                fn = folds.get(fold)
                if fn is None:
                    cl = g.clusters[fold]
                    fn = folds[fold] = GNode(f"{fold}f", "block", [], cl.tooltip, path)
                    g.nodes.append(fn)
                fn.params += n_params
                owner[node.id] = fn.id
                continue
            nid = f"{mc}n{k}"
            local = node.name[len(inst[-1]) + 1:] if inst and inst[-1] else node.name
            kind = REGISTRY[node.op]
            label = _clip(layer_label(node, kind))
            lines = _layer_lines(local, label, kind.name)
            if n_params:
                lines.append(_fmt_params(n_params))
            line = f"{shown_path(node.span[0])}:{node.span[1]}" if len(node.span) > 1 else ""
            detail = kind.detail(node.p, row.inputs) if row else ""
            tip = f"{node.name} ({line}): {node.op} {detail}".rstrip()
            info = None
            if details:
                info = {"name": node.name, "op": node.op, "family": family(kind),
                        "label": label, "where": line, "detail": detail,
                        "args": {k: _fmt_value(v) for k, v in node.params.items()},
                        "ins": [str(t) for t in row.inputs] if row else [],
                        "out": tstr(node.id)}
            g.nodes.append(GNode(nid, "layer", lines, tip, path, n_params, info))
            owner[node.id] = nid
            by_name.setdefault(node.name, nid)
        seen: set = set()
        for node in m.nodes:
            dst = owner[node.id]
            tensor_pos = {}
            for a in REGISTRY[node.op].tensor_args:
                idx = node.params.get(a)
                if isinstance(idx, int) and not isinstance(idx, bool):
                    tensor_pos[idx] = a
            for pos, v in enumerate(node.inputs):
                src = owner.get(v)
                if src is None or src == dst:
                    continue
                label = tstr(v)
                if node.op == "item" and isinstance(types.get(v), TupleType):
                    label = _piece(types.get(v), node.params.get("index"), label)
                if pos in tensor_pos:
                    label = f"{tensor_pos[pos]}: {label}"
                if (src, dst, label) not in seen:
                    seen.add((src, dst, label))
                    g.edges.append(GEdge(src, dst, label))
        _weight_edges(g, m, owner, by_name, seen)
        folds_by_node = {fn.id for fn in folds.values()}
        t_out = types.get(m.output)
        out_types[m.name] = t_out
        items = list(t_out.items) if isinstance(t_out, TupleType) else [t_out]
        names = list(getattr(t_out, "names", ()) or ())
        outputs[m.name] = []
        for j, t in enumerate(items):
            nid = f"{mc}o{j}"
            what = names[j] if j < len(names) else (f"output {j}" if len(items) > 1
                                                     else "output")
            g.nodes.append(GNode(nid, "output", [what if what.startswith("output")
                                                 else f"output {what}", str(t)],
                                 f"model {m.name}, {what}: {t}", [mc]))
            outputs[m.name].append(nid)
            if m.output in owner:
                g.edges.append(GEdge(owner[m.output], nid, str(t)))
        leaving_of: dict[str, list[str]] = {}
        for e in g.edges:
            if e.src in folds_by_node:
                out = leaving_of.setdefault(e.src, [])
                if e.label not in out:
                    out.append(e.label)
        for fn in folds.values():
            cl = g.clusters[fold_id(fn)]
            leaving = leaving_of.get(fn.id, [])
            fn.lines = [cl.label[0], *(_clip("→ " + s) for s in leaving[:3])]
            fn.lines.append(_fmt_params(fn.params))
    for c in g.clusters.values():
        if c.kind == "block":
            c.label.append(_fmt_params(c.params))
    for chk in prog.checks:
        for i in range(len(chk.chain) - 1):
            outer, inner = chk.chain[i], chk.chain[i + 1]
            if outer not in inputs or inner not in outputs or not outputs[inner]:
                continue
            want = chk.inputs[i] if i < len(chk.inputs) else None
            ins_ = inputs[outer]
            dst = ins_.get(want) if want else (next(iter(ins_.values())) if ins_ else None)
            if dst is None:
                continue
            label = f"check: {out_types[inner]}"
            g.edges.append(GEdge(outputs[inner][0], dst, label, "check"))
    return g


def _piece(t, index, whole: str) -> str:
    """The piece ``index`` of a tuple type as an edge label (``whole`` if out of range)."""
    items = list(t.items)
    if isinstance(index, int) and -len(items) <= index < len(items):
        return f"[{index}] {items[index]}"
    return whole


def _weight_edges(g: Graph, m, owner: dict, by_name: dict, seen: set) -> None:
    """A dashed edge from the layer whose weights a node uses: a tied weight (``ties``)
    or a layer applied again (``shared``)."""
    for node in m.nodes:
        dst = owner.get(node.id)
        pairs = [(by_name.get(n), f"{key} = {n}.{k}{'ᵀ' if t else ''}", "tie")
                 for key, (n, k, t) in node.ties.items()]
        if node.shared:
            pairs.append((by_name.get(node.name), f"shares {node.name}", "shared"))
        for src, label, kind in pairs:
            if src is not None and src != dst and (src, dst, label) not in seen:
                seen.add((src, dst, label))
                g.edges.append(GEdge(src, dst, label, kind))


def fold_id(node: GNode) -> str:
    return node.id[:-1]
