"""``nnspec export``: a spec's model out as ONNX, through torch.onnx's dynamo exporter
(:func:`nnspec.backends.torch.onnx.export_onnx`): input dims that are bare symbols become
dynamic axes of the same names, the others are baked, and ``onnx.checker`` checks the file
before it is written (atomically: a failure leaves no file and any previous one intact).
"""

from __future__ import annotations

import os
import sys

from .common import (
    EXIT_ERRORS,
    EXIT_OK,
    UsageError,
    seed_arg,
    add_spec,
    fail,
    load,
    parse_dims,
    require_torch,
)

#: What export says when the onnx extra is missing.
ONNX_EXTRA = "this needs the onnx extra: pip install 'nnspec[onnx]'"


def add_arguments(p) -> None:
    add_spec(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE.onnx",
                   help="the ONNX file to write (required)")
    p.add_argument("--model", help="the model to export (default: the spec's only model)")
    p.add_argument("--opset", type=_opset, default=None, metavar="N",
                   help="the ONNX opset to write (default 18; 18 up to the newest the "
                        "installed torch and onnx know)")
    p.add_argument("--dim", action="append", metavar="NAME=SIZE",
                   help="the size a symbolic dim is traced at (default 2, 3, 4, ... in the "
                        "order the symbols appear); it stays dynamic in the file")
    p.add_argument("--weights", metavar="CHECKPOINT",
                   help="the weights to export: a .safetensors file, a torch state_dict "
                        "(.pt, .bin) or a Hugging Face folder, matched to the spec's keys as "
                        "`nnspec weights map` matches them (default: drawn from --seed)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the weights (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no 'wrote FILE' summary")


def _opset(text: str) -> int:
    import argparse

    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an opset is an integer, not {text!r}") from None


def require_onnx() -> None:
    """A usage error naming the extra when torch, onnx or onnxscript cannot be imported."""
    require_torch("export")
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise UsageError(f"export: {ONNX_EXTRA}") from None


def _check_output(path: str) -> None:
    """Refuse an output export cannot write before the (slow) export runs; the atomic
    write afterwards still catches what changes in between."""
    from ..core.util import STDOUT_NAMES

    if path in STDOUT_NAMES:
        raise UsageError("export writes a binary file: give -o FILE.onnx")
    if not path.endswith(".onnx"):
        raise UsageError(f"the output must be an .onnx file, got {path}")
    if os.path.isdir(path):
        raise UsageError(f"cannot write {path}: it is a folder")
    folder = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write {path}: no such folder {os.path.dirname(path) or '.'}")
    if os.path.exists(path) and (not os.stat(path).st_mode & 0o222
                                 or not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write {path}: it is read-only")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {path}: permission denied (in {folder})")


def _pick_model(spec, name: str | None) -> str:
    names = spec.model_names
    if name is not None:
        if name not in names:
            raise UsageError(f"no model {name!r}; the spec has: {', '.join(names)}")
        return name
    if len(names) > 1:
        raise UsageError(f"the spec has {len(names)} models ({', '.join(names)}): choose one "
                         "with --model")
    return names[0]


def _show(dims: list) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def describe(out, path: str, size: int) -> list[str]:
    """The lines export prints about the file it wrote."""
    lines = [f"nnspec: wrote {path} (model {out.model}, ONNX opset {out.opset}, "
             f"{size / 2**20:,.1f} MiB)"]
    width = max(len(v.name) for v in out.inputs + out.outputs)
    for what, values in (("input ", out.inputs), ("output", out.outputs)):
        for v in values:
            dynamic = [d for d in v.dims if isinstance(d, str)]
            tail = f"  dynamic: {', '.join(dynamic)}" if dynamic and what == "input " else ""
            lines.append(f"  {what} {v.name:<{width}}  {v.dtype} {_show(v.dims)}{tail}")
    for sym, size_ in sorted(out.fixed.items()):
        lines.append(f"  note: {sym} is fixed at {size_}: torch specialised the trace to it "
                     f"(--dim {sym}=SIZE exports another size)")
    if out.samples:
        lines.append(f"  note: {out.model} samples at inference (sample=always): the "
                     "file draws random numbers as the module does")
    return lines


def run(args) -> int:
    require_onnx()
    from ..core.diagnostics import SpecError
    from ..core.util import OutputError, write_atomic

    _check_output(args.output)
    dims = parse_dims(args.dim)
    from ..backends.torch.onnx import DEFAULT_OPSET, ExportError, example_dims, export_onnx

    opset = DEFAULT_OPSET if args.opset is None else args.opset
    _check_opset(opset)
    spec = load(args.spec)
    if not spec.ok:
        return fail(spec)
    name = _pick_model(spec, args.model)
    try:
        env = example_dims(spec, name, dims)
    except ExportError as e:
        raise UsageError(str(e)) from None
    from .crosscheck.sizes import check_at_dims

    try:
        check_at_dims(spec, name, env)  # the shape rules at the traced sizes: located errors
    except SpecError as e:
        print(e.render(), file=sys.stderr)
        print("nnspec: choose other sizes to trace at with --dim NAME=SIZE", file=sys.stderr)
        return EXIT_ERRORS
    params = _weights(spec, name, args.weights) if args.weights else None
    try:
        out = export_onnx(spec, name, dims=env, opset=opset, seed=args.seed, params=params)
        data = out.to_bytes()
    except ExportError as e:
        print(f"nnspec: error: {e}", file=sys.stderr)
        print(f"nnspec: {args.output} not written", file=sys.stderr)
        return EXIT_ERRORS
    try:
        write_atomic(args.output, data)
    except OutputError as e:
        raise UsageError(str(e)) from None
    if not args.quiet:
        print("\n".join(describe(out, args.output, len(data))), file=sys.stderr)
    return EXIT_OK


def _weights(spec, model: str, path: str) -> dict:
    """The checkpoint's tensors under the spec's keys; a checkpoint that does not map is a
    usage error naming its first problems (``nnspec weights map`` shows the whole table)."""
    from ..backends.checkpoint import CheckpointError, map_weights

    if not os.path.exists(path):
        raise UsageError(f"--weights {path}: no such file or folder")
    try:
        wm = map_weights(spec, path, model)
    except CheckpointError as e:
        raise UsageError(f"--weights {path}: {e}") from None
    if not wm.ok:
        probs = wm.problems()
        raise UsageError(f"--weights {path} does not map onto the spec: "
                         + "; ".join(probs[:3]) + (f" (and {len(probs) - 3} more; see nnspec "
                                                   "weights map)" if len(probs) > 3 else ""))
    return wm.state_dict()


def _check_opset(opset: int) -> None:
    from ..backends.torch.onnx import MIN_OPSET, max_opset

    top = max_opset()
    if not MIN_OPSET <= opset <= top:
        raise UsageError(f"--opset {opset} is out of range: export writes opsets {MIN_OPSET} "
                         f"to {top}")
