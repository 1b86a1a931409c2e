"""The Python API: load a spec, read shapes, parameter counts and MACs.

    >>> import nnspec
    >>> spec = nnspec.load("specs/lenet5.nn")
    >>> spec.output_type("LeNet5")
    [N, 10]
    >>> spec.param_count("LeNet5")
    61706

The backends are separate imports: ``nnspec.backends.torch`` (needs torch) and
``nnspec.backends.numpy``.
"""

from __future__ import annotations

from .core.util import gc_paused
from .frontends.nn.lower import lower_file, lower_text
from .ir.shapes import infer_program
from .ir.spec import LayerInfo, Spec, from_ir  # noqa: F401  (the Python API's names)

# the summaries' names, also the Python API's: their module is imported on first use (a
# check never needs it)
_SUMMARY_NAMES = frozenset({"EVAL_VIEW_KINDS", "INT_ITEMSIZE", "ITEMSIZE", "VIEW_KINDS",
                            "ModelSummary", "SummaryRow"})


def __getattr__(name: str):
    if name in _SUMMARY_NAMES:
        from .ir import summary

        return getattr(summary, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUMMARY_NAMES)


def _finish(prog, loader) -> Spec:
    diags = list(loader.diags)
    results = {}
    if prog is not None:
        results, more = infer_program(prog)
        diags.extend(more)
    loader.note_overrides(diags)  # an error may come from a --const value: say so
    diags.sort(key=lambda d: (d.span.file, d.span.line, d.span.col) if d.span else ("", 0, 0))
    warnings = sorted(loader.warnings, key=lambda d: (d.span.file, d.span.line, d.span.col))
    return Spec(prog, results, diags, loader.sources, warnings=warnings)


def load(path: str, strict: bool = True, consts: dict | None = None) -> Spec:
    """Load, lower and shape-check a .nn file. With strict, raise SpecError on any error.

    ``consts`` sets constants of the file (``{"layers": 2}``) in place of its ``const``
    statements, as ``--const`` does; constants computed from them follow. A name the file
    does not define itself, or a value that is not a literal (int, float, bool, str or a
    tuple of them), raises ConstError (a ValueError), whatever ``strict`` is."""
    with gc_paused():
        prog, loader = lower_file(str(path), consts)
        spec = _finish(prog, loader)
    return spec.raise_for_errors() if strict else spec


def loads(text: str, path: str = "<string>", strict: bool = True,
          consts: dict | None = None) -> Spec:
    """Like :func:`load`, from text."""
    with gc_paused():
        prog, loader = lower_text(text, path, consts)
        spec = _finish(prog, loader)
    return spec.raise_for_errors() if strict else spec
