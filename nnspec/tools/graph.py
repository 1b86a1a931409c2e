"""`nnspec graph`: a picture of the network, as DOT text, SVG or a self-contained HTML page.

The IR is drawn as it is: one node per layer (IR node), one per model input and one per
value a model returns, an edge per tensor with its inferred shape, blocks as nested
clusters (from each node's ``called_from`` and dotted name) and ``check D(G)`` statements
as an edge from G's output to D's input. Everything comes from static inference
(``Spec.layers``): no tensor is allocated and torch is never imported.

The DOT text is ours; the layout is Graphviz's ``dot`` program, run as a subprocess only
for SVG and HTML. Graphviz 2.43 (Debian 12's) has quadratic phases in its default
ranking, so the graph always asks for ``newrank``; cluster boxes stay costly in its
ordering and positioning passes, so above :data:`CLUSTER_LIMIT` nodes the blocks are
drawn without boxes (each node still names its block in its tooltip) and ``--depth``
is the way to a compact picture. Edge labels of any kind cost dot more than the rest of
such a layout, so above :data:`EDGE_LABEL_LIMIT` nodes the SVG is laid out without them
and each edge's shape is written beside the middle of its drawn path afterwards (the DOT
text keeps them as ``xlabel``).

On a 10,000-layer graph dot's layout passes proper (ranking, ordering, positions, splines)
take about a seventh of its time, and no option that keeps the picture (``splines=line``,
``nslimit``, ``mclimit``, ``remincross=false``, ``searchsize``) measurably shortens them; the
rest is reading the DOT text, measuring the labels and writing the SVG. So dot draws the
layers' boxes square, whose rounded corners are put in afterwards (:func:`round_boxes`),
and the SVG is edited piece by piece as dot writes it (:func:`to_svg`), on another core.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field

#: Above this many nodes, blocks and models are drawn without cluster boxes (see above).
CLUSTER_LIMIT = 1500
#: Above this many nodes, edge shapes are external labels (``xlabel``) in the DOT text, and
#: are placed after the layout in the SVG: a ``label`` makes dot insert a node per edge,
#: which doubles the ranks it orders and places, and an ``xlabel`` costs it seconds.
EDGE_LABEL_LIMIT = 400
#: The longest text of a node's line; longer arguments are cut with an ellipsis.
MAX_LINE = 48

FORMATS = ("svg", "dot", "html")
_EXTENSIONS = {".svg": "svg", ".dot": "dot", ".gv": "dot", ".html": "html", ".htm": "html"}
_INSTALL = ("drawing SVG needs Graphviz's `dot` program, which is not installed "
            "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz); "
            "`-o model.dot` writes the DOT text without it")


def add_arguments(p) -> None:
    p.add_argument("spec", help="the .nn spec (or IR .json) to draw")
    p.add_argument("-o", "--output", help="output file: .svg, .dot or .html "
                                          "(default: standard output)")
    p.add_argument("--format", choices=FORMATS,
                   help="svg, dot or html (default: from the -o name; svg on stdout)")
    p.add_argument("--model", help="draw this model only (default: every model, with the "
                                   "compositions of its check statements)")
    p.add_argument("--depth", type=int, metavar="K",
                   help="fold blocks nested deeper than K into one node (0: every block "
                        "is a node) showing the block, its output shape and parameters")
    p.add_argument("-q", "--quiet", action="store_true", help="no 'wrote' line")


# ---- the graph ----------------------------------------------------------------------------


@dataclass
class GNode:
    """A drawn node: a layer, a model input or output, or a folded block."""

    id: str
    kind: str  # "layer" | "input" | "output" | "block"
    lines: list[str]
    tooltip: str
    clusters: list[str] = field(default_factory=list)  # enclosing cluster ids, outermost first
    params: int = 0


@dataclass
class GEdge:
    src: str
    dst: str
    label: str
    kind: str = "data"  # "data" | "check"


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
        from ..layers import REGISTRY

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


def _fmt_params(n: int) -> str:
    return f"{n:,} param{'s' if n != 1 else ''}"


def build(spec, models=None, depth: int | None = None) -> Graph:
    """The graph of the spec's models (default: all) and of the checks between them."""
    from ..layers import REGISTRY
    from ..layers.base import TupleType

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
                                 f"model {m.name}, input {inp.name}: {t}", [mc]))
            owner[inp.id] = nid
            inputs[m.name][inp.name] = nid
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
            lines = [local, _clip(layer_label(node, kind))]
            if n_params:
                lines.append(_fmt_params(n_params))
            line = f"{shown_path(node.span[0])}:{node.span[1]}" if len(node.span) > 1 else ""
            detail = kind.detail(node.p, row.inputs) if row else ""
            tip = f"{node.name} ({line}): {node.op} {detail}".rstrip()
            g.nodes.append(GNode(nid, "layer", lines, tip, path, n_params))
            owner[node.id] = nid
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
                if pos in tensor_pos:
                    label = f"{tensor_pos[pos]}: {label}"
                if (src, dst, label) not in seen:
                    seen.add((src, dst, label))
                    g.edges.append(GEdge(src, dst, label))
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


def fold_id(node: GNode) -> str:
    return node.id[:-1]


# ---- DOT ----------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPECIAL = re.compile(r'[\x00-\x1f\x7f-\x9f\u2028\u2029&<>\\"]')


def dot_escape(text: str) -> str:
    """One line of text as the inside of a DOT quoted string, shown literally.

    Graphviz reads ``\\N``, ``\\l`` and friends as escapes in labels and decodes HTML
    entities (``&lt;``), so backslashes, quotes and ``& < >`` are all escaped; control
    characters (a newline would end nothing, but is not text) become spaces."""
    text = str(text)
    if not _SPECIAL.search(text):
        return text
    text = _CONTROL.sub(" ", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _q(*lines: str) -> str:
    return '"' + "\\n".join(dot_escape(x) for x in lines) + '"'


_LAYER_FILL, _LAYER_LINE = "#eef3fb", "#5b7db1"
_STYLE = {
    "layer": f'shape=box style="rounded,filled" fillcolor="{_LAYER_FILL}" color="{_LAYER_LINE}"',
    "input": 'shape=box style="filled" fillcolor="#e4f4e4" color="#3c8d3c"',
    "output": 'shape=box style="filled" fillcolor="#fbeee0" color="#c07a2c"',
    "block": 'shape=box3d style="filled" fillcolor="#f0ecf8" color="#7a5bb1"',
}


def to_dot(g: Graph, for_svg: bool = False) -> tuple[str, bool]:
    """The graph as DOT text, and whether its clusters were drawn (see CLUSTER_LIMIT).
    ``for_svg``: the text to lay out, which leaves a large graph's edge labels to
    :func:`label_edges`."""
    n = len(g.nodes)
    boxes = n <= CLUSTER_LIMIT
    edge_label = "label" if n <= EDGE_LABEL_LIMIT else "xlabel"
    late = for_svg and n > EDGE_LABEL_LIMIT
    out = ["digraph nnspec {",
           f"  graph [newrank=true rankdir=TB fontname=Helvetica fontsize=11 "
           f"label={_q(g.title)} labelloc=t];",
           '  node [fontname=Helvetica fontsize=10 margin="0.12,0.04"];',
           '  edge [fontname=Helvetica fontsize=9 color="#555555" fontcolor="#333333"];']
    children: dict[str | None, list[str]] = {}
    for c in g.clusters.values():
        if not c.folded:
            children.setdefault(c.parent, []).append(c.id)
    members: dict[str | None, list[GNode]] = {}
    for node in g.nodes:
        members.setdefault(node.clusters[-1] if node.clusters and boxes else None,
                           []).append(node)

    # the SVG's layer boxes get their rounded corners after the layout (round_boxes): dot
    # draws a rounded box as a path of 25 points: up to a fifth of its time on 10k nodes
    style = dict(_STYLE, layer=_STYLE["layer"].replace('"rounded,filled"', "filled")) \
        if for_svg else _STYLE

    def node_line(node: GNode, indent: str) -> str:
        cls = " ".join(["nn-" + node.kind] + [f"in_{c}" for c in node.clusters])
        return (f'{indent}{node.id} [id="{node.id}" class="{cls}" label={_q(*node.lines)} '
                f'tooltip={_q(node.tooltip)} {style[node.kind]}];')

    def emit(cid: str, indent: str) -> None:
        c = g.clusters[cid]
        anc = []
        p = c.parent
        while p is not None:
            anc.append(p)
            p = g.clusters[p].parent
        cls = " ".join(["nn-" + c.kind] + [f"in_{a}" for a in reversed(anc)])
        fill = "#fafafa" if c.kind == "model" else "#f6f6fb"
        out.append(f'{indent}subgraph cluster_{cid} {{')
        out.append(f'{indent}  id="{cid}"; class="{cls}"; label={_q(*c.label)}; '
                   f'tooltip={_q(c.tooltip)}; style="rounded,filled"; fillcolor="{fill}"; '
                   f'color="#9a9ab0"; fontsize=10; labeljust=l;')
        for sub in children.get(cid, []):
            emit(sub, indent + "  ")
        for node in members.get(cid, []):
            out.append(node_line(node, indent + "  "))
        out.append(f"{indent}}}")

    if boxes:
        for cid in children.get(None, []):
            emit(cid, "  ")
    for node in members.get(None, []):
        out.append(node_line(node, "  "))
    where = {node.id: node.clusters for node in g.nodes}
    for k, e in enumerate(g.edges):
        a, b = where.get(e.src, []), where.get(e.dst, [])
        common = [x for x, y in zip(a, b) if x == y]
        cls = " ".join(["nn-" + e.kind] + [f"in_{c}" for c in common])
        style = ' style=bold color="#2255cc" fontcolor="#2255cc"' if e.kind == "check" else ""
        label = "" if late else f"{edge_label}={_q(e.label)} "
        out.append(f'  {e.src} -> {e.dst} [id="e{k}" class="{cls}" '
                   f'{label}tooltip={_q(e.label)}{style}];')
    out.append("}")
    return "\n".join(out) + "\n", boxes


# ---- SVG and HTML -------------------------------------------------------------------------


class RendererMissing(Exception):
    """Graphviz's dot is not installed; the message says how to install it."""


def to_svg(dot_text: str, edit=None) -> str:
    """Lay out and draw DOT text with Graphviz's dot (a subprocess).

    ``edit`` (text -> text), when given, is applied to the SVG piece by piece as dot writes
    it, each piece ending before a top-level element (dot's ``<!-- name -->`` comment), so
    that the editing of a large picture overlaps dot's drawing of the rest of it."""
    import shutil
    import subprocess
    import threading

    exe = shutil.which("dot")
    if exe is None:
        raise RendererMissing(_INSTALL)
    proc = subprocess.Popen([exe, "-Tsvg"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    errors: list[bytes] = []

    def feed() -> None:  # dot reads all of its input before it writes anything
        try:
            proc.stdin.write(dot_text.encode("utf-8"))
            proc.stdin.close()
        except (BrokenPipeError, OSError):  # dot stopped early: its exit status says why
            pass

    def drain() -> None:  # warnings must not fill the stderr pipe and stall dot
        errors.append(proc.stderr.read())

    threads = [threading.Thread(target=feed, daemon=True),
               threading.Thread(target=drain, daemon=True)]
    for t in threads:
        t.start()
    pieces: list[str] = []
    pending = b""
    while True:
        chunk = proc.stdout.read1(1 << 20)
        if not chunk:
            break
        pending += chunk
        cut = pending.rfind(b"\n<!-- ") if edit is not None else -1
        if cut > 0:  # a piece ends at an ASCII boundary: it decodes by itself
            pieces.append(edit(pending[:cut].decode("utf-8")))
            pending = pending[cut:]
    rest = pending.decode("utf-8", "replace")
    pieces.append(edit(rest) if edit is not None else rest)
    rc = proc.wait()
    for t in threads:
        t.join()
    proc.stdout.close()
    proc.stderr.close()
    if rc != 0 or not any(pieces):
        err = b"".join(errors).decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"Graphviz dot failed (exit {rc}): "
                           f"{err[0] if err else 'no output'}")
    return "".join(pieces)


_HTML_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 0; background: #fff; }
header { padding: 8px 12px; border-bottom: 1px solid #ddd; position: sticky; top: 0;
         background: #fff; z-index: 1; }
header h1 { font-size: 16px; margin: 0 0 4px 0; }
header button { font-size: 12px; margin-right: 6px; }
#nnspec-status { font-size: 12px; color: #555; margin-left: 8px; }
#graph { padding: 12px; }
#graph g.cluster polygon, #graph g.cluster path { pointer-events: all; cursor: pointer; }
#graph g.cluster.collapsed polygon, #graph g.cluster.collapsed path
  { fill: #e3e0ee; stroke-dasharray: 4 2; }
"""

_HTML_JS = """
(function () {
  var root = document.getElementById('graph');
  var svg = root.querySelector('svg');
  var clusters = Array.prototype.slice.call(svg.querySelectorAll('g.cluster'));
  var members = Array.prototype.slice.call(svg.querySelectorAll('g.node, g.edge, g.cluster'));
  var collapsed = {};
  function inside(el) {
    return (el.getAttribute('class') || '').split(/\\s+/).filter(function (c) {
      return c.indexOf('in_') === 0;
    }).map(function (c) { return c.slice(3); });
  }
  var within = members.map(inside);
  var label = {};
  clusters.forEach(function (c) {
    var t = c.querySelector('text');
    label[c.id] = t ? t.textContent : '';
    var n = svg.querySelectorAll('g.node.in_' + c.id).length;
    c.setAttribute('data-nodes', String(n));
  });
  function refresh() {
    members.forEach(function (el, i) {
      var hide = within[i].some(function (id) { return collapsed[id]; });
      el.style.display = hide ? 'none' : '';
    });
    clusters.forEach(function (c) {
      var t = c.querySelector('text');
      var shut = !!collapsed[c.id];
      c.classList.toggle('collapsed', shut);
      if (t) {
        t.textContent = (shut ? '\\u25b8 ' : '\\u25be ') + label[c.id] +
          (shut ? ' (' + c.getAttribute('data-nodes') + ' nodes)' : '');
      }
    });
  }
  clusters.forEach(function (c) {
    c.addEventListener('click', function (ev) {
      ev.stopPropagation();
      collapsed[c.id] = !collapsed[c.id];
      refresh();
    });
  });
  function all(shut) {
    clusters.forEach(function (c) {
      if ((c.getAttribute('class') || '').indexOf('nn-block') >= 0) { collapsed[c.id] = shut; }
    });
    refresh();
  }
  document.getElementById('collapse-all').addEventListener('click', function () { all(true); });
  document.getElementById('expand-all').addEventListener('click', function () { all(false); });
  refresh();
  var n = svg.querySelectorAll('g.node').length;
  var status = document.getElementById('nnspec-status');
  status.textContent = n + ' nodes, ' + clusters.length +
    ' clusters (click a block to fold it)';
  document.documentElement.setAttribute('data-nnspec-ready', String(n));
})();
"""


_EDGE_PATH = re.compile(r'<g id="e(\d+)" class="edge[^"]*">.*?<path [^>]*?d="([^"]*)"[^>]*/>',
                        re.S)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


def label_edges(svg: str, g: Graph) -> str:
    """The SVG (or a piece of it holding whole edge groups) with each edge's shape written
    beside the middle point of its path (for graphs laid out without edge labels, see
    EDGE_LABEL_LIMIT), inside the edge's group."""
    from xml.sax.saxutils import escape

    parts = []
    last = 0
    edges = g.edges
    for m in _EDGE_PATH.finditer(svg):
        k = int(m.group(1))
        nums = _NUMBER.findall(m.group(2))
        if k >= len(edges) or len(nums) < 2:
            continue
        mid = (len(nums) // 2) // 2  # the middle one of the path's points
        x, y = float(nums[2 * mid]), float(nums[2 * mid + 1])
        e = edges[k]
        colour = "#2255cc" if e.kind == "check" else "#333333"
        end = m.end()
        parts.append(svg[last:end])
        parts.append(f'\n<text text-anchor="start" x="{x + 4:.2f}" y="{y + 3:.2f}" '
                     f'font-family="Helvetica,sans-Serif" font-size="9.00" fill="{colour}">'
                     f'{escape(_CONTROL.sub(" ", e.label))}</text>')
        last = end
    parts.append(svg[last:])
    return "".join(parts)


_NUM = r"(-?[0-9]+(?:\.[0-9]+)?)"
_BOX = re.compile(f'<polygon fill="{_LAYER_FILL}" stroke="{_LAYER_LINE}" points="'
                  + " ".join([f"{_NUM},{_NUM}"] * 4) + r' [^"]*"/>')


def round_boxes(svg: str) -> str:
    """The SVG (or a piece of it) with each layer's box, drawn square by dot (see to_dot),
    as a rectangle with the rounded corners dot gives a ``rounded`` box (a radius of 12
    points, at most a third of a side)."""

    def rect(m: re.Match) -> str:
        xs = [float(v) for v in m.groups()[0::2]]
        ys = [float(v) for v in m.groups()[1::2]]
        x, y = min(xs), min(ys)
        w, h = max(xs) - x, max(ys) - y
        r = min(12.0, w / 3, h / 3)
        return (f'<rect fill="{_LAYER_FILL}" stroke="{_LAYER_LINE}" x="{x:g}" y="{y:g}" '
                f'width="{w:g}" height="{h:g}" rx="{r:g}" ry="{r:g}"/>')

    return _BOX.sub(rect, svg)


def _strip_prolog(svg: str) -> str:
    """The <svg> element alone: no XML declaration, doctype or comments (inline SVG)."""
    start = svg.find("<svg")
    body = svg[start:] if start >= 0 else svg
    return re.sub(r"<!--.*?-->", "", body, flags=re.S)


def to_html(svg: str, title: str, info: dict) -> str:
    """A self-contained page: the SVG inline, a little CSS and a script; nothing loaded
    from elsewhere. ``info`` (counts) is embedded as JSON for tools that read the page."""
    import html

    data = json.dumps(info, sort_keys=True).replace("<", "\\u003c")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_HTML_CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{html.escape(title)}</h1>"
        "<button id=\"collapse-all\" type=\"button\">fold all blocks</button>"
        "<button id=\"expand-all\" type=\"button\">unfold all</button>"
        "<span id=\"nnspec-status\">(the script did not run)</span></header>\n"
        f"<script type=\"application/json\" id=\"nnspec-info\">{data}</script>\n"
        f"<div id=\"graph\">\n{_strip_prolog(svg)}</div>\n"
        f"<script>{_HTML_JS}</script>\n</body>\n</html>\n")


# ---- the command --------------------------------------------------------------------------


def _format(args) -> str:
    from ..core.util import STDOUT_NAMES
    from .common import UsageError

    if args.format:
        return args.format
    out = args.output
    if not out or out in STDOUT_NAMES:
        return "svg"
    low = out.lower()
    for ext, fmt in _EXTENSIONS.items():
        if low.endswith(ext):
            return fmt
    raise UsageError(f"cannot tell the format of {out}: name it .svg, .dot or .html, "
                     "or give --format svg|dot|html")


def render(spec, fmt: str, model: str | None = None, depth: int | None = None
           ) -> tuple[str, Graph, bool]:
    """The picture as text in ``fmt``, the graph drawn and whether clusters were boxed."""
    from ..core.util import gc_paused

    models = [spec.model(model)] if model else None
    # many small acyclic objects: the cyclic GC would rescan the spec's IR over and over
    # (a third of a 10,000-layer graph's build time)
    with gc_paused():
        g = build(spec, models, depth)
        dot_text, boxes = to_dot(g, for_svg=fmt != "dot")
    if fmt == "dot":
        return dot_text, g, boxes
    late = len(g.nodes) > EDGE_LABEL_LIMIT
    with gc_paused():
        svg = to_svg(dot_text, lambda piece: round_boxes(label_edges(piece, g) if late
                                                         else piece))
    if fmt == "svg":
        return svg, g, boxes
    info = {"nodes": len(g.nodes), "layers": g.count("layer"), "blocks": g.count("block"),
            "inputs": g.count("input"), "outputs": g.count("output"),
            "edges": len(g.edges), "clusters": len(g.clusters) if boxes else 0}
    return to_html(svg, f"nnspec graph: {g.title}", info), g, boxes


def run(args) -> int:
    from .common import EXIT_OK, EXIT_USAGE, UsageError, fail, load, pick_model, write_output

    if args.depth is not None and args.depth < 0:
        raise UsageError(f"--depth must be 0 or more, got {args.depth}")
    fmt = _format(args)
    spec = load(args.spec)
    if spec.diagnostics:
        return fail(spec)
    if args.model:
        pick_model(spec, args.model)
    try:
        text, g, boxes = render(spec, fmt, args.model, args.depth)
    except RendererMissing as e:
        print(f"nnspec: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not boxes and g.clusters and not args.quiet:
        print(f"nnspec: note: {len(g.nodes):,} nodes: blocks are drawn without cluster boxes "
              f"above {CLUSTER_LIMIT:,} (Graphviz lays them out slowly); --depth folds "
              "them", file=sys.stderr)
    write_output(args.output, text, args.quiet, f" ({len(g.nodes):,} nodes)")
    return EXIT_OK
