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
    """The files to check: those named, and the ``.nn`` files under the folders named (a
    link found in a folder is followed only to a file whose name ends with .nn too)."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                files.extend(os.path.join(root, n) for n in sorted(names) if n.endswith(".nn")
                             and os.path.realpath(os.path.join(root, n)).endswith(".nn"))
        elif os.path.lexists(p):
            files.append(p)
        else:
            raise UsageError(f"no such file or folder: {p}")
    return files


def _load(path: str, strict: bool = False):
    from . import api

    if not os.path.lexists(path):
        raise UsageError(f"no such file: {path}")
    if path.endswith(".json"):
        from .diagnostics import unreadable
        from .source import UnreadableSource, read_source

        try:
            text = read_source(path)
        except (OSError, ValueError, UnreadableSource) as e:
            diag, shown = unreadable(path, e)
            return api.Spec(None, {}, [diag], {path: shown} if shown else {})
        return api.from_ir(text, path)  # bad IR: diagnostics with the JSON path, exit 1
    return api.load(path, strict=strict)


#: Errors that ``check --format json`` lists (it counts them all).
MAX_JSON_ERRORS = 10_000


def _fail(spec) -> int:
    from .diagnostics import render_all

    print(render_all(spec.diagnostics, spec.sources), file=sys.stderr)
    return EXIT_ERRORS


def cmd_check(args) -> int:
    from .diagnostics import MAX_RENDERED, more_line, render_all

    files = _spec_files(args.paths)
    all_diags = []
    n_models = 0
    budget = MAX_RENDERED  # diagnostics still to print, over all files
    for path in files:
        spec = _load(path)
        all_diags.extend(spec.diagnostics)
        n_models += len(spec.model_names)
        shown = spec.diagnostics[:budget]
        budget -= len(shown)
        if args.format == "text" and shown:
            print(render_all(shown, spec.sources, None))
        elif args.format == "github":
            for d in shown:
                print(d.github())
    n = len(all_diags)
    if args.format == "json":
        print(json.dumps({"files": len(files), "models": n_models, "error_count": n,
                          "errors": [d.to_dict() for d in all_diags[:MAX_JSON_ERRORS]]},
                         indent=2))
    elif n > MAX_RENDERED:
        print(more_line(n - MAX_RENDERED))
    if args.format != "json" and not args.quiet:
        status = "no errors" if not n else f"{n:,} error{'s' if n != 1 else ''}"
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
        print(f"model {m.name}({ins}) -> {types.output()}")  # a tuple for `gru 8 state`
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
    from .util import STDOUT_NAMES, OutputError, write_atomic

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
    if args.output and args.output not in STDOUT_NAMES:
        try:
            write_atomic(args.output, text)
        except OutputError as e:
            raise UsageError(str(e)) from None
        print(f"nnspec: wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


_DIM_DIGITS = 30  # a size of more digits is far beyond int64: refused without int()


def _parse_dims(items) -> dict[str, int]:
    import re

    dims = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) \
                or not re.fullmatch(r"[0-9]+", value):
            raise UsageError(f"--dim takes NAME=SIZE with SIZE >= 1, got {item!r}")
        if len(value.lstrip("0")) > _DIM_DIGITS:
            raise UsageError(f"--dim {name}: {len(value.lstrip('0')):,} digits is far beyond "
                             "int64 (sizes are at most 9,223,372,036,854,775,807)")
        if int(value) < 1:
            raise UsageError(f"--dim takes NAME=SIZE with SIZE >= 1, got {item!r}")
        dims[name] = int(value)
    return dims


def cmd_crosscheck(args) -> int:
    from .diagnostics import SpecError
    from .init import TooLarge

    spec = _load(args.spec)
    if spec.diagnostics:
        return _fail(spec)
    dims = _parse_dims(args.dim)
    models = [_pick_model(spec, args.model)] if args.model else spec.program.models
    from .backends.numpy import NoBackward
    from .crosscheck import crosscheck, crosscheck_grad, model_symbols

    # a --dim must name a symbol of (one of) the models checked
    syms = {m.name: model_symbols(m) for m in models}
    every = sorted(set().union(*syms.values())) if syms else []
    unknown = sorted(set(dims) - set(every))
    if unknown:
        which = (f"model {models[0].name}" if len(models) == 1
                 else "the models " + ", ".join(m.name for m in models))
        have = ", ".join(every) if every else "none: every input size is concrete"
        raise UsageError(f"--dim {unknown[0]}: {which} {'has' if len(models) == 1 else 'have'} "
                         f"no dim {unknown[0]} (symbols: {have})")
    status = EXIT_OK
    for m in models:
        mine = {k: v for k, v in dims.items() if k in syms[m.name]}
        try:
            run = crosscheck_grad if args.grad else crosscheck
            report = run(spec, m.name, args.dtype, args.seed, mine)
        except NoBackward as e:
            print(f"nnspec: {m.name}: {e}", file=sys.stderr)
            status = EXIT_ERRORS
            continue
        except TooLarge as e:
            print(f"nnspec: {m.name}: {e}", file=sys.stderr)
            status = EXIT_ERRORS
            continue
        except SpecError as e:
            print(e.render(), file=sys.stderr)
            status = EXIT_ERRORS
            continue
        print(report.render())
        if not report.ok:
            status = EXIT_ERRORS
    return status


def cmd_train(args) -> int:
    from . import training as T

    if not args.overfit_batch:
        raise UsageError("train needs a mode: --overfit-batch (train on one random batch "
                         "and check that the loss falls)")
    if args.steps < 1 or args.steps > 100_000:
        raise UsageError(f"--steps must be in [1, 100000], got {args.steps}")
    spec = _load(args.spec)
    if spec.diagnostics:
        return _fail(spec)
    dims = _parse_dims(args.dim)
    if args.model:
        models = [_pick_model(spec, args.model)]
    else:
        models = [m for m in spec.program.models if T.training_for(spec.program, m.name)]
    if not models:
        raise UsageError(f"{args.spec} has no train section (train Model(...) {{ loss ... }})")
    from .crosscheck import model_symbols
    from .trainer import overfit

    status = EXIT_OK
    for m in models:
        if T.training_for(spec.program, m.name) is None:
            raise UsageError(f"model {m.name} has no train section")
        mine = {k: v for k, v in dims.items() if k in model_symbols(m)}
        report = overfit(spec, m.name, args.steps, args.seed, mine)
        print(report.render())
        if not report.ok:
            status = EXIT_ERRORS
    return status


def cmd_layers(args) -> int:
    from .layers import REGISTRY

    seen = set()
    width = max(len(k.name) for k in REGISTRY.values())  # one column for every name
    for key in sorted(REGISTRY):
        kind = REGISTRY[key]
        if id(kind) in seen:
            continue
        seen.add(id(kind))
        alias = f" (also {', '.join(kind.aliases)})" if kind.aliases else ""
        print(f"{kind.name:<{width}} {kind.summary or (kind.__doc__ or '').strip()}{alias}")
    return EXIT_OK


def cmd_schema(args) -> int:
    from .ir import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def _command_module(name: str):
    import importlib

    return importlib.import_module(f"nnspec.{name}")


def _run_command(name: str):
    def run(args) -> int:
        return _command_module(name).run(args)
    return run


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
    p.add_argument("--grad", action="store_true",
                   help="compare the NumPy backward with torch autograd instead: per "
                        "parameter, for L = sum(output * c) with a random c")
    p.set_defaults(func=cmd_crosscheck)

    p = sub.add_parser("train", help="check trainability: train on one batch "
                                     "(--overfit-batch)")
    p.add_argument("spec")
    p.add_argument("--overfit-batch", action="store_true",
                   help="train the emitted module on one random batch with the declared "
                        "loss and optimiser; exit 1 if the loss does not fall by 10%% or a "
                        "parameter never gets a gradient")
    p.add_argument("--steps", type=int, default=50, help="training steps (default 50)")
    p.add_argument("--model", help="the model to train (default: every model with a "
                                   "train section)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", action="append", metavar="NAME=SIZE",
                   help="size of a symbolic dim (default 4)")
    p.set_defaults(func=cmd_train)

    # commands implemented in their own modules: each defines add_arguments(p) and run(args)
    for name, help_ in (("lsp", "run the language server (stdio)"),):
        p = sub.add_parser(name, help=help_)
        _command_module(name).add_arguments(p)
        p.set_defaults(func=_run_command(name))

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
