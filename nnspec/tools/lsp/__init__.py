"""`nnspec lsp`: a Language Server over stdio (diagnostics, hover, definitions, completion,
formatting, document symbols, inlay hints of each line's shape, quick fixes).

The server (``server``) is a thin pygls layer over the analysis, which needs no LSP
library: a document is lowered and shape-checked as ``nnspec check`` does it (the same
diagnostics), with the unsaved text of every other open document preferred over the disk
when a ``use`` reaches it. Positions here are nnspec's: lines and columns counted in code
points, lines split at "\\n" only (as the parser counts them); the server converts them to
and from the client's units (UTF-16 unless the client negotiated another encoding).

pygls is imported only when the server starts, so that the command line's parser (which
imports this module) stays as cheap as ``nnspec check`` needs it to be.

The analysis is ``analysis`` (a document lowered and checked, its problems placed),
``lookup`` (hover, definition), ``completion``, ``outline`` (symbols, inlay hints) and
``actions`` (quick fixes, formatting); this package is the command
(``add_arguments``, ``run``) and the analysis's public face: its names are reachable from
here (``lsp.analyze``), the parts imported on first use, for the same reason as pygls.
"""

from __future__ import annotations

from ...core.util import lazy_attributes
from ..common import EXIT_USAGE

#: the names of the analysis's parts, reachable as attributes of this package
_PARTS = {
    "analysis": ("MAX_DIAGNOSTICS", "Analysis", "Item", "Loc", "Problem", "analyze",
                 "problems"),
    "lookup": ("MAX_EXPANSIONS", "definition", "hover"),
    "completion": ("completions",),
    "outline": ("Hint", "Symbol", "inlay_hints", "symbols"),
    "actions": ("Fix", "fixes", "formatted"),
}

__all__ = ["add_arguments", "run", *(n for ns in _PARTS.values() for n in ns)]

__getattr__ = lazy_attributes(__name__, _PARTS)

MISSING = "this needs the lsp extra: pip install 'nnspec[lsp]'"


def add_arguments(p) -> None:
    p.add_argument("--stdio", action="store_true",
                   help="talk LSP over standard input and output (the default and only "
                        "transport; accepted because editors pass it)")
    p.add_argument("--debounce", type=float, default=0.0, metavar="MS",
                   help="wait this many milliseconds after an edit before re-checking the "
                        "document (default 0: every edit is checked, a check of an older "
                        "version that is still waiting is dropped)")


def run(args) -> int:
    import sys

    if not (args.debounce >= 0 and args.debounce <= 60_000):  # also refuses NaN
        print("nnspec: error: --debounce takes milliseconds from 0 to 60000", file=sys.stderr)
        return EXIT_USAGE
    from ...core.util import gc_paused

    try:
        with gc_paused():  # lsprotocol makes some 600 classes: no collection meanwhile
            import lsprotocol.types  # noqa: F401
            import pygls.lsp.server  # noqa: F401
    except ImportError:
        print(f"nnspec: error: {MISSING}", file=sys.stderr)
        return EXIT_USAGE
    from .server import _build_server, _one_line_logs

    if not getattr(args, "debug", False):
        _one_line_logs()
    _build_server(args.debounce / 1000.0).start_io()
    return 0
