"""The command line: ``nnspec check | summary | compile | crosscheck | layers | schema``.

``check`` never imports torch; only ``compile --target torch`` and ``crosscheck`` do.
Exit status: 0 ok, 1 errors in a spec (or a failed crosscheck), 2 usage, 3 internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class UsageError(Exception):
    pass


def _spec_files(paths: list[str]) -> list[str]:
    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                files.extend(os.path.join(root, n) for n in sorted(names) if n.endswith(".nn"))
        elif os.path.exists(p):
            files.append(p)
        else:
            raise UsageError(f"no such file or folder: {p}")
    return files


def _load(path: str, strict: bool = False):
    from . import api, ir

    if not os.path.exists(path):
        raise UsageError(f"no such file: {path}")
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            try:
                prog = ir.Program.from_json(f.read())
            except ValueError as e:
                raise UsageError(f"{path} is not a valid nnspec IR file: "
                                 f"{str(e).splitlines()[0]}") from None
        return api.from_ir(prog)
    return api.load(path, strict=strict)


def _report(spec, fmt: str, out) -> int:
    from .diagnostics import SpecError

    if not spec.diagnostics:
        return 0
    if fmt == "text":
        print(SpecError(spec.diagnostics, spec.sources).render(), file=out)
    return len(spec.diagnostics)


def _fail(spec) -> int:
    from .diagnostics import SpecError

    print(SpecError(spec.diagnostics, spec.sources).render(), file=sys.stderr)
    return EXIT_ERRORS


def cmd_check(args) -> int:
    files = _spec_files(args.paths)
    all_diags = []
    n_models = 0
    for path in files:
        spec = _load(path)
        all_diags.extend(spec.diagnostics)
        n_models += len(spec.model_names)
        if args.format == "text":
            _report(spec, "text", sys.stdout)
        elif args.format == "github":
            for d in spec.diagnostics:
                print(d.github())
    if args.format == "json":
        print(json.dumps({"files": len(files), "models": n_models,
                          "errors": [d.to_dict() for d in all_diags]}, indent=2))
    elif not args.quiet:
        n = len(all_diags)
        status = "no errors" if not n else f"{n} error{'s' if n != 1 else ''}"
        print(f"nnspec: checked {len(files)} file{'s' if len(files) != 1 else ''}, "
              f"{n_models} model{'s' if n_models != 1 else ''}: {status}", file=sys.stderr)
    return EXIT_ERRORS if all_diags else EXIT_OK


def _pick_model(spec, name):
    if name is not None and name not in spec.model_names:
        raise UsageError(f"no model {name!r}; the spec has: {', '.join(spec.model_names)}")
    return spec.model(name)


def _summary_rows(spec, model):
    from .util import fmt_count

    rows = []
    for r in spec.layers(model.name):
        rows.append({
            "name": r.name, "kind": r.kind, "line": r.node.span[1] if r.node.span else None,
            "args": r.node.kind.detail(r.node.p, r.inputs),
            "output": r.output.dims_text(), "output_text": str(r.output), "params": r.params,
            "macs": str(r.macs), "macs_text": fmt_count(r.macs)})
    return rows


def cmd_summary(args) -> int:
    from .util import fmt_count

    spec = _load(args.spec)
    if spec.diagnostics:
        return _fail(spec)
    models = [_pick_model(spec, args.model)] if args.model else spec.program.models
    out = []
    for m in models:
        rows = _summary_rows(spec, m)
        total = spec.param_count(m.name)
        macs = spec.macs(m.name)
        types = spec.types(m.name)
        from .init import nbytes

        info = {"model": m.name,
                "inputs": {i.name: [str(d) for d in i.dims()] for i in m.inputs},
                "input_dtypes": {i.name: i.dtype for i in m.inputs},
                "output": types.output().dims_text(), "layers": rows, "params": total,
                "macs": str(macs),
                "weight_bytes_float32": nbytes(spec.state_shapes(m.name), "float32")}
        out.append(info)
        if args.json:
            continue
        head = ("name", "kind", "args", "output", "params", "MACs")
        table = [head] + [(r["name"], r["kind"], r["args"], r["output_text"],
                           f"{r['params']:,}", r["macs_text"]) for r in rows]
        widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
        ins = ", ".join(f"{i.name}: [{', '.join(i.shape)}]" + (f" {i.dtype}" if i.dtype != "float"
                                                              else "") for i in m.inputs)
        print(f"model {m.name}({ins}) -> [{', '.join(info['output'])}]")
        for j, row in enumerate(table):
            cells = [str(c).ljust(widths[i]) if i < 4 else str(c).rjust(widths[i])
                     for i, c in enumerate(row)]
            print("  " + "  ".join(cells).rstrip())
            if j == 0:
                print("  " + "  ".join("-" * w for w in widths))
        print(f"  total: {total:,} parameters, {fmt_count(macs)} MACs, "
              f"{info['weight_bytes_float32'] / 2**20:,.1f} MiB of float32 weights")
        print()
    if args.json:
        print(json.dumps(out if len(out) > 1 else out[0], indent=2))
    return EXIT_OK


def cmd_compile(args) -> int:
    from .util import write_atomic

    spec = _load(args.spec)
    if spec.diagnostics:
        return _fail(spec)
    target = args.target
    if target is None:
        target = "json" if (args.output or "").endswith(".json") else "torch"
    if target == "json":
        text = spec.program.to_json() + "\n"
    else:
        if args.model:
            _pick_model(spec, args.model)
        from .backends.torch import emit_source

        text = emit_source(spec, args.model, all_models=args.model is None)
    if args.output and args.output != "-":
        write_atomic(args.output, text)
        print(f"nnspec: wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _parse_dims(items) -> dict[str, int]:
    dims = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if not name or not value.isdigit() or int(value) < 1:
            raise UsageError(f"--dim takes NAME=SIZE with SIZE >= 1, got {item!r}")
        dims[name] = int(value)
    return dims


def cmd_crosscheck(args) -> int:
    from .init import TooLarge

    spec = _load(args.spec)
    if spec.diagnostics:
        return _fail(spec)
    dims = _parse_dims(args.dim)
    models = [_pick_model(spec, args.model)] if args.model else spec.program.models
    from .crosscheck import crosscheck

    status = EXIT_OK
    for m in models:
        try:
            report = crosscheck(spec, m.name, args.dtype, args.seed, dims)
        except TooLarge as e:
            print(f"nnspec: {m.name}: {e}", file=sys.stderr)
            status = EXIT_ERRORS
            continue
        print(report.render())
        if not report.ok:
            status = EXIT_ERRORS
    return status


def cmd_layers(args) -> int:
    from .layers import REGISTRY

    seen = set()
    for key in sorted(REGISTRY):
        kind = REGISTRY[key]
        if id(kind) in seen:
            continue
        seen.add(id(kind))
        alias = f" (also {', '.join(kind.aliases)})" if kind.aliases else ""
        print(f"{kind.name:<14} {kind.summary or (kind.__doc__ or '').strip()}{alias}")
    return EXIT_OK


def cmd_schema(args) -> int:
    from .ir import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nnspec", description="Declarative model-spec compiler.")
    ap.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="parse and shape-check specs (files or folders)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--format", choices=("text", "json", "github"), default="text")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("summary", help="per-layer shapes, parameters and MACs")
    p.add_argument("spec")
    p.add_argument("--model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("compile", help="emit PyTorch source (or the IR as JSON)")
    p.add_argument("spec")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    p.add_argument("--target", choices=("torch", "json"))
    p.add_argument("--model", help="the model to emit (default: every model)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("crosscheck", help="run both backends and compare layer by layer")
    p.add_argument("spec")
    p.add_argument("--model")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", action="append", metavar="NAME=SIZE",
                   help="size of a symbolic dim (default 2)")
    p.set_defaults(func=cmd_crosscheck)

    p = sub.add_parser("layers", help="list the layer kinds")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("schema", help="print the JSON Schema of the IR")
    p.set_defaults(func=cmd_schema)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"nnspec: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # an internal failure is a bug: one line, no traceback
        if args.debug:
            raise
        print(f"nnspec: internal error: {type(e).__name__}: {e} (this is a bug in nnspec; "
              "rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
