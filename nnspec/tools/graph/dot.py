"""The graph as Graphviz's DOT text (:func:`to_dot`): quoting (:func:`dot_escape`), the
nodes' styles, models and blocks as nested clusters, and the sizes above which cluster
boxes and edge labels are left out (:data:`CLUSTER_LIMIT`, :data:`EDGE_LABEL_LIMIT`).
"""

from __future__ import annotations

import re

from .nodes import GNode, Graph

#: Above this many nodes, blocks and models are drawn without cluster boxes (see above).
CLUSTER_LIMIT = 1500
#: Above this many nodes, edge shapes are external labels (``xlabel``) in the DOT text, and
#: are placed after the layout in the SVG: a ``label`` makes dot insert a node per edge,
#: which doubles the ranks it orders and places, and an ``xlabel`` costs it seconds.
EDGE_LABEL_LIMIT = 400


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


#: Compositions bold and blue; a tied or shared weight dashed, and left out of the ranking.
_EDGE_STYLE = {
    "check": ' style=bold color="#2255cc" fontcolor="#2255cc"',
    "tie": ' style=dashed constraint=false color="#b0306a" fontcolor="#b0306a"',
    "shared": ' style=dashed constraint=false color="#b0306a" fontcolor="#b0306a"',
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
        style = _EDGE_STYLE.get(e.kind, "")
        label = "" if late else f"{edge_label}={_q(e.label)} "
        out.append(f'  {e.src} -> {e.dst} [id="e{k}" class="{cls}" '
                   f'{label}tooltip={_q(e.label)}{style}];')
    out.append("}")
    return "\n".join(out) + "\n", boxes
