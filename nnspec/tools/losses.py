"""``nnspec losses``: every loss a ``train`` section may call, read from the registry
(:data:`nnspec.layers.losses.LOSSES`): its signature with each argument's default (and
choices), what it is, and its other names."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="one object per loss: name, aliases, tensors, arguments, about")


def _kinds() -> list:
    from ..layers.losses import LOSSES

    seen: dict[int, object] = {}
    for key in sorted(LOSSES):
        seen.setdefault(id(LOSSES[key]), LOSSES[key])
    return sorted(seen.values(), key=lambda k: k.name)


def _json_value(v):
    return v if isinstance(v, (bool, int, float, str)) or v is None else repr(v)


def run(args) -> int:
    kinds = _kinds()
    if args.json:
        print(json.dumps([{
            "name": k.name, "aliases": list(k.aliases), "tensors": list(k.inputs),
            "arguments": [{"name": a, "default": _json_value(d), **(
                {"choices": list(c)} if c else {})} for a, d, c in k.arguments()],
            "about": k.about} for k in kinds], indent=2))
        return 0
    for k in kinds:
        print(k.signature())
        also = f" (also {', '.join(k.aliases)})" if k.aliases else ""
        print(f"    {k.about}{also}")
    return 0
