"""The pictures drawn from the DOT text: SVG laid out by Graphviz's ``dot``, run as a
subprocess (:func:`to_svg`; :class:`RendererMissing` when it is not installed) and edited
piece by piece as dot writes it (:func:`label_edges` places a large graph's edge shapes,
:func:`round_boxes` rounds the layers' boxes), and the self-contained HTML page around
the SVG (:func:`to_html`).
"""

from __future__ import annotations

import json
import re

from .dot import _CONTROL, _LAYER_FILL, _LAYER_LINE
from .nodes import Graph

_INSTALL = ("drawing SVG needs Graphviz's `dot` program, which is not installed "
            "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz); "
            "`-o model.dot` writes the DOT text without it")


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
