"""The interactive page of ``nnspec graph --format html`` (:func:`to_page`): one
self-contained HTML file holding the whole graph as JSON, the ELK layout engine and the
viewer's script, laid out in the browser.

Folding a block must lay the picture out again around it, for any set of folded blocks,
which no number of layouts computed ahead by Graphviz covers (each block folds on its
own: 2^blocks states). So the page carries elkjs (ELK's layered algorithm compiled to
JavaScript, ``assets/elk.bundled.js``, Eclipse Public License 2.0, kept as published with
its licence header; the licence's text is ``assets/elkjs-LICENSE.md``), and the page needs
no Graphviz: the layout of the folds shown now is computed when the page opens and again
on each fold. A model of more than :data:`FOLD_ABOVE` nodes opens folded to depth 1.
"""

from __future__ import annotations

import html
import json
from functools import lru_cache
from pathlib import Path

from .nodes import Graph

_ASSETS = Path(__file__).with_name("assets")
#: the elkjs release inlined (its file is kept byte for byte as npm ships it)
ELK_VERSION = "0.11.0"
#: Above this many drawn nodes a page opens with the blocks below depth 1 folded.
FOLD_ABOVE = 150


class AssetMissing(Exception):
    """A file of the viewer is missing from the installed package."""


@lru_cache(maxsize=None)
def _asset(name: str) -> str:
    try:
        return (_ASSETS / name).read_text(encoding="utf-8")
    except OSError as e:
        raise AssetMissing(f"the graph viewer's {name} is missing from the nnspec package "
                           f"({e.strerror}): reinstall nnspec") from None


def _levels(g: Graph) -> dict[str, int]:
    """Each cluster's nesting level: -1 for a model, 0 for a block called by a model."""
    out: dict[str, int] = {}

    def level(cid: str) -> int:
        if cid not in out:
            c = g.clusters[cid]
            out[cid] = -1 if c.parent is None else level(c.parent) + 1
        return out[cid]

    for cid in g.clusters:
        level(cid)
    return out


def default_depth(g: Graph, depth: int | None) -> int | None:
    """The fold depth a page opens with: ``depth`` when given, else 1 for a big graph."""
    if depth is not None:
        return depth
    blocks = any(c.kind == "block" for c in g.clusters.values())
    return 1 if blocks and len(g.nodes) > FOLD_ABOVE else None


def graph_data(g: Graph, depth: int | None) -> dict:
    """The graph as the viewer reads it (``g`` built unfolded, with ``details``)."""
    levels = _levels(g)
    clusters = {cid: {"kind": c.kind, "label": c.label, "tip": c.tooltip, "parent": c.parent,
                      "params": c.params, "level": levels[cid]}
                for cid, c in g.clusters.items()}
    fold = [cid for cid, c in clusters.items()
            if c["kind"] == "block" and depth is not None and c["level"] >= depth]
    nodes = [{"id": n.id, "kind": n.kind, "lines": n.lines, "tip": n.tooltip,
              "cl": n.clusters, "params": n.params, "info": n.info} for n in g.nodes]
    edges = [[e.src, e.dst, e.label, e.kind] for e in g.edges]
    return {"title": g.title, "depth": depth, "fold": fold, "clusters": clusters,
            "nodes": nodes, "edges": edges}


def _json(value) -> str:
    """JSON that cannot end the script element it is in."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def to_page(g: Graph, title: str, info: dict, depth: int | None = None) -> str:
    """The page of ``g`` (built unfolded, with ``details``), opening folded to
    :func:`default_depth`. ``info`` (counts) is embedded as JSON for tools that read it."""
    data = graph_data(g, default_depth(g, depth))
    elk = _asset("elk.bundled.js")
    if "</script" in elk.lower():  # an inline script must not hold its end tag
        raise AssetMissing("the graph viewer's elk.bundled.js cannot be inlined")
    t = html.escape(title)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
        f"<title>{t}</title>\n<style>{_asset('viewer.css')}</style>\n</head>\n<body>\n"
        f"<header><h1>{t}</h1>"
        "<input id=\"search\" type=\"search\" placeholder=\"search a layer: name or kind "
        "(Enter: next)\" autocomplete=\"off\"><span id=\"found\"></span>"
        "<select id=\"depth\" title=\"fold the blocks nested deeper than\">"
        "<option value=\"\">unfolded</option></select>"
        "<button id=\"fold-all\" type=\"button\">fold all</button>"
        "<button id=\"unfold-all\" type=\"button\">unfold all</button>"
        "<button id=\"fit\" type=\"button\">fit</button>"
        "<span id=\"nnspec-status\">(the viewer needs JavaScript: "
        "<code>nnspec graph --format svg</code> draws the graph without it)</span>"
        "<div id=\"legend\"></div></header>\n"
        "<main><svg id=\"view\" xmlns=\"http://www.w3.org/2000/svg\"><defs>"
        "<marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" "
        "markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" fill=\"#555\"/></marker>"
        "<marker id=\"arrow-weight\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" "
        "markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" "
        "fill=\"#b0306a\"/></marker></defs><g id=\"scene\"></g></svg>"
        "<aside id=\"details\" hidden></aside></main>\n"
        f"<script type=\"application/json\" id=\"nnspec-info\">{_json(info)}</script>\n"
        f"<script type=\"application/json\" id=\"nnspec-data\">{_json(data)}</script>\n"
        f"<script>/* elkjs {ELK_VERSION} (https://github.com/kieler/elkjs), Eclipse Public "
        f"License 2.0 */\n{elk}</script>\n"
        f"<script>{_asset('viewer.js')}</script>\n</body>\n</html>\n")
