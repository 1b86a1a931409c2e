"""``nnspec import``: a PyTorch or Hugging Face model in as a .nn spec.

``nnspec import torchvision.models:resnet50 -o resnet50.nn`` builds the model on the meta
device (no weights are allocated), traces it and writes the spec a person would write: a
block per repeated module class, the module attribute names as layer names (so the spec's
module loads the original's state_dict as it is), the declared symbols kept. The written
spec is checked before anything is written; an operation without a kind is one error
naming the module path and the operation (exit 1), nothing written.
"""

from __future__ import annotations

import json
import sys

from .common import EXIT_ERRORS, EXIT_OK, UsageError, parse_dims, require_torch, write_output


def add_arguments(p) -> None:
    p.add_argument("target", metavar="TARGET",
                   help="package.module:callable (a class, a factory or a function of yours "
                        "that returns the nn.Module), hf:PATH/config.json (the "
                        "transformers class its 'architectures' entry names, built offline), "
                        "or model.onnx (an ONNX file, opset 13 or later)")
    p.add_argument("-o", "--output", help="the .nn file to write (default: standard output)")
    p.add_argument("--input", action="append", metavar="'NAME: [DIMS]'",
                   help="a forward input in nnspec's syntax, symbols included: "
                        "'x: [N, 3, H, W]', 'tokens: [N, T] int'; one per input, in order "
                        "(default: guessed from the first layer)")
    p.add_argument("--kwargs", metavar="JSON", default="{}",
                   help="keyword arguments for TARGET, as a JSON object: "
                        "'{\"num_classes\": 10}'")
    p.add_argument("--dim", action="append", metavar="NAME=SIZE",
                   help="the size a symbol is traced at (defaults: N=2, H=W=224, T=16)")
    p.add_argument("--name", help="the model's name in the spec (default: from TARGET)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no 'wrote FILE' line and no progress bar")


def _kwargs(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UsageError(f"--kwargs is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise UsageError(f"--kwargs takes a JSON object, not {type(value).__name__}")
    return value


def run(args) -> int:
    if args.target.lower().endswith(".onnx"):
        return _run_onnx(args)
    require_torch("import")
    if args.name is not None and not args.name.isidentifier():
        raise UsageError(f"--name takes an identifier, not {args.name!r}")
    kwargs = _kwargs(args.kwargs)
    dims = parse_dims(args.dim)
    from ..frontends.torch import ImportFailure, import_model

    if "" not in sys.path:  # TARGET may be a module of the current directory, as python -m
        sys.path.insert(0, "")
    try:
        with _bar(args, f"tracing {args.target}"):
            text = import_model(args.target, args.input, kwargs, dims, args.name)
    except ImportFailure as e:
        if e.usage:
            raise UsageError(str(e)) from None
        print(f"nnspec: error: import {args.target}: {e}", file=sys.stderr)
        return EXIT_ERRORS
    return _check_and_write(args, text)


def _run_onnx(args) -> int:
    """``nnspec import model.onnx``: the ONNX front end (no torch needed)."""
    if args.input or args.kwargs != "{}":
        raise UsageError("--input and --kwargs are for PyTorch targets: an ONNX file "
                         "declares its inputs")
    if args.name is not None and not args.name.isidentifier():
        raise UsageError(f"--name takes an identifier, not {args.name!r}")
    from ..frontends.onnx import OnnxImportError, import_onnx

    try:
        with _bar(args, f"reading {args.target}"):
            text = import_onnx(args.target, parse_dims(args.dim), args.name)
    except OnnxImportError as e:
        if e.usage:
            raise UsageError(str(e)) from None
        print(f"nnspec: error: import {args.target}: {e}", file=sys.stderr)
        return EXIT_ERRORS
    return _check_and_write(args, text)


def _bar(args, stage: str):
    """A progress bar on standard error showing ``stage`` (none with -q or when piped)."""
    from .progress import progress

    bar = progress(not args.quiet, unit="step")
    bar.stage(stage)
    return bar


def _check_and_write(args, text: str) -> int:
    from .. import loads

    with _bar(args, "checking the written spec"):
        spec = loads(text, args.output or "<import>", strict=False)
    if spec.diagnostics:  # the importer wrote what nnspec refuses: say so, write nothing
        for d in spec.diagnostics:
            print(d.render(spec.sources) if hasattr(d, "render") else str(d),
                  file=sys.stderr)
        print(f"nnspec: error: import {args.target}: the written spec does not check "
              "(this is a bug in nnspec's importer)", file=sys.stderr)
        return EXIT_ERRORS
    write_output(args.output, text, args.quiet)
    return EXIT_OK
