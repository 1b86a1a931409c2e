"""The pictures drawn from the DOT text: SVG laid out by Graphviz's ``dot``, run as a
subprocess (:func:`to_svg`; :class:`RendererMissing` when it is not installed) and edited
piece by piece as dot writes it (:func:`label_edges` places a large graph's edge shapes,
:func:`round_boxes` rounds the layers' boxes). The HTML page is ``view``'s.
"""

from __future__ import annotations

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
        colour = {"check": "#2255cc", "tie": "#b0306a", "shared": "#b0306a"}.get(e.kind,
                                                                               "#333333")
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
