"""`nnspec graph`: a picture of the network, as DOT text, SVG or a self-contained HTML viewer.

The IR is drawn as it is: one node per layer (IR node), one per model input and one per
value a model returns, an edge per tensor with its inferred shape, blocks as nested
clusters (from each node's ``called_from`` and dotted name) and ``check D(G)`` statements
as an edge from G's output to D's input. Everything comes from static inference
(``Spec.layers``): no tensor is allocated and torch is never imported.

The DOT text is ours; the SVG's layout is Graphviz's ``dot`` program, run as a subprocess. Graphviz 2.43 (Debian 12's) has quadratic phases in its default
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

The HTML page is not drawn by dot: it is an interactive viewer (``view``) that lays the
graph out in the browser with ELK, again each time a block is folded or unfolded.

This package is the command (``add_arguments``, ``run``, :func:`render`); the graph is
built in ``nodes``, written as DOT text in ``dot``, drawn as SVG in ``svg`` and as the
HTML viewer in ``view`` (its script, styles and the inlined elkjs are in ``assets/``).
Those parts are imported on first use, and their names are reachable from here
(``graph.build``): the command line's parser imports this package for ``add_arguments``
on every command, ``nnspec check`` included, whose cold start must not pay for them.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ...core.util import lazy_attributes

if TYPE_CHECKING:
    from .nodes import Graph

#: the names of the parts, reachable as attributes of this package
_PARTS = {
    "nodes": ("FAMILIES", "MAX_LINE", "Cluster", "GEdge", "GNode", "Graph", "build", "family",
              "fold_id", "layer_label"),
    "dot": ("CLUSTER_LIMIT", "EDGE_LABEL_LIMIT", "dot_escape", "to_dot"),
    "svg": ("RendererMissing", "label_edges", "round_boxes", "to_svg"),
    "view": ("ELK_VERSION", "FOLD_ABOVE", "AssetMissing", "default_depth", "graph_data",
             "to_page"),
}

__all__ = ["FORMATS", "add_arguments", "render", "run", *(n for ns in _PARTS.values() for n in ns)]

__getattr__ = lazy_attributes(__name__, _PARTS)

FORMATS = ("svg", "dot", "html")
_EXTENSIONS = {".svg": "svg", ".dot": "dot", ".gv": "dot", ".html": "html", ".htm": "html"}


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


def _format(args) -> str:
    from ...core.util import STDOUT_NAMES
    from ..common import UsageError

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
    """The picture as text in ``fmt``, the graph drawn and whether clusters were boxed.

    HTML is the interactive page of ``view`` (laid out in the browser, so no Graphviz):
    it holds the whole graph and opens folded to ``depth`` (default: depth 1 for a big
    graph); SVG and DOT draw the graph folded to ``depth``."""
    from ...core.util import gc_paused
    from .dot import EDGE_LABEL_LIMIT, to_dot
    from .nodes import build
    from .svg import label_edges, round_boxes, to_svg

    models = [spec.model(model)] if model else None
    if fmt == "html":
        from .view import to_page

        with gc_paused():
            g = build(spec, models, None, details=True)
        info = {"nodes": len(g.nodes), "layers": g.count("layer"),
                "inputs": g.count("input"), "outputs": g.count("output"),
                "edges": len(g.edges), "clusters": len(g.clusters)}
        return to_page(g, f"nnspec graph: {g.title}", info, depth), g, True
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
    return svg, g, boxes


def run(args) -> int:
    from ..common import (EXIT_OK, EXIT_USAGE, UsageError, fail, load, pick_model, single_spec,
                          write_output)
    from .dot import CLUSTER_LIMIT
    from .svg import RendererMissing
    from .view import AssetMissing

    if args.depth is not None and args.depth < 0:
        raise UsageError(f"--depth must be 0 or more, got {args.depth}")
    fmt = _format(args)
    spec = load(single_spec(args.spec, "graph"))
    if spec.diagnostics:
        return fail(spec)
    if args.model:
        pick_model(spec, args.model)
    from ..progress import progress

    try:  # Graphviz takes seconds on big specs: a bar with its clock (on a terminal only)
        with progress(not args.quiet) as bar:
            bar.stage(f"drawing {fmt.upper()}")
            text, g, boxes = render(spec, fmt, args.model, args.depth)
    except (RendererMissing, AssetMissing) as e:
        print(f"nnspec: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not boxes and g.clusters and fmt != "html" and not args.quiet:
        print(f"nnspec: note: {len(g.nodes):,} nodes: blocks are drawn without cluster boxes "
              f"above {CLUSTER_LIMIT:,} (Graphviz lays them out slowly); --depth folds "
              "them", file=sys.stderr)
    write_output(args.output, text, args.quiet, f" ({len(g.nodes):,} nodes)")
    return EXIT_OK
