"""``nnspec weights map``: a checkpoint's keys matched to a spec's.

    nnspec weights map specs/resnet18.nn resnet18.pt -o resnet18-nnspec.safetensors
    nnspec weights map specs/gpt2.nn gpt2/ --json

Prints the map as a table (spec key, shape, checkpoint key, how), or as JSON with
``--json``; with ``-o`` writes the checkpoint renamed to the spec's keys (``.safetensors``
or ``.pt``), atomically. Exit 1 when the checkpoint does not map onto the spec (the problems
named, nothing written) or is not a checkpoint, 2 for a usage error (a missing file, an
output name that is not a checkpoint's).
"""

from __future__ import annotations

import json
import os
import sys

from .common import (
    EXIT_ERRORS,
    EXIT_OK,
    UsageError,
    add_spec,
    fail,
    load,
    pick_model,
    require_torch,
)

_OUT_EXTS = (".safetensors", ".pt", ".pth", ".bin")
_SHOWN = 10  # problems listed on stderr


def add_arguments(p) -> None:
    p.add_argument("action", choices=("map",), metavar="map",
                   help="map: match a checkpoint's tensors to the spec's state_dict keys")
    add_spec(p)
    p.add_argument("checkpoint", help="a .safetensors file, a torch state_dict (.pt, .pth, "
                                      ".bin) or a Hugging Face model folder")
    p.add_argument("--model", metavar="NAME", help="the model (default: the spec's first)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="write the checkpoint with the spec's keys: OUT.safetensors or OUT.pt")
    p.add_argument("--json", action="store_true", help="print the map as JSON")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print no table (problems still go to stderr)")


def run(args) -> int:
    require_torch("weights map")
    out = args.output
    if out is not None and not out.lower().endswith(_OUT_EXTS):
        raise UsageError(f"-o {out}: a checkpoint is written as .safetensors or .pt "
                         "(.pth, .bin), and the name says which")
    if not os.path.lexists(args.checkpoint):
        raise UsageError(f"no such file: {args.checkpoint}")
    spec = load(args.spec)
    if spec.diagnostics:
        return fail(spec)
    model = pick_model(spec, args.model)
    from ..backends.checkpoint import CheckpointError, map_weights
    from ..core.util import OutputError

    try:
        wm = map_weights(spec, args.checkpoint, model.name)
    except CheckpointError as e:
        print(f"nnspec: error: {e}", file=sys.stderr)
        return EXIT_ERRORS
    if args.json:
        print(json.dumps(wm.to_json(), indent=2))
    elif not args.quiet:
        sys.stdout.write(wm.table())
    if not wm.ok:
        probs = wm.problems()
        print(f"nnspec: error: {args.checkpoint} does not map onto {model.name}: "
              f"{len(probs)} problem{'s' * (len(probs) != 1)}", file=sys.stderr)
        for line in probs[:_SHOWN]:
            print(f"nnspec: error: {line}", file=sys.stderr)
        if len(probs) > _SHOWN:
            print(f"nnspec: ... and {len(probs) - _SHOWN} more (the table lists them all)",
                  file=sys.stderr)
        if out is not None:
            print(f"nnspec: {out} not written", file=sys.stderr)
        return EXIT_ERRORS
    if out is not None:
        try:
            wm.save(out)
        except OutputError as e:
            raise UsageError(str(e)) from None
        if not args.quiet:
            print(f"nnspec: wrote {out}", file=sys.stderr)
    return EXIT_OK
