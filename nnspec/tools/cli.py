"""The command line: ``nnspec check | summary | compile | crosscheck | train | fmt | graph |
lsp | import | export | weights | layers | schema``.

``check`` never imports torch; ``crosscheck`` and ``train`` do, and without torch installed
they say which extra to install (exit 2). A path ``-`` reads the spec from standard input,
named ``<stdin>`` in diagnostics. Every JSON output carries ``"version"`` and has a JSON
Schema in ``nnspec/schemas/`` (``nnspec schema check|summary|ir``).
Exit status: 0 ok, 1 errors in a spec (or a failed crosscheck), 2 usage, 3 internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace

from .common import (
    JSON_VERSION,
    EXIT_ERRORS,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    TORCH_EXTRA,
    SuggestingParser,
    UsageError,
    seed_arg,
    add_color,
    add_consts,
    add_spec,
    fail,
    is_torch_missing,
    load,
    parse_dims,
    pick_model,
    require_torch,
    set_color,
    spec_files,
    start_run,
    use_color,
    write_output,
)

MAX_JSON_ERRORS = 10_000

def cmd_check(args) -> int:
    from ..core.diagnostics import MAX_RENDERED, more_line, render_all

    files = spec_files(args.paths)
    all_diags = []
    all_warnings = []
    n_models = 0
    budget = MAX_RENDERED  # diagnostics still to print, over all files
    for path in files:
        spec = load(path)
        errors, warnings = spec.diagnostics, spec.warnings
        if args.strict and warnings:  # --strict: every warning is an error
            errors = sorted([*errors, *(replace(w, severity="error") for w in warnings)],
                            key=_where)
            warnings = []
        all_diags.extend(errors)
        all_warnings.extend(warnings)
        n_models += len(spec.model_names)
        shown = sorted([*errors, *warnings], key=_where)[:budget]
        budget -= len(shown)
        if args.format == "text" and shown:
            print(render_all(shown, spec.sources, None, use_color(sys.stdout)))
        elif args.format == "github":
            for d in shown:
                print(d.github())
    n, n_warn = len(all_diags), len(all_warnings)
    if args.format == "json":
        print(json.dumps({"version": JSON_VERSION, "files": len(files), "models": n_models,
                          "error_count": n,
                          "errors": [d.to_dict() for d in all_diags[:MAX_JSON_ERRORS]],
                          "warning_count": n_warn,
                          "warnings": [d.to_dict() for d in all_warnings[:MAX_JSON_ERRORS]]},
                         indent=2))
    elif args.format == "sarif":
        from .. import __version__
        from ..core.diagnostics import sarif
        from .explain import sarif_rule

        both = sorted([*all_diags, *all_warnings], key=_where)[:MAX_JSON_ERRORS]
        print(json.dumps(sarif(both, __version__, n + n_warn, sarif_rule), indent=2))
    elif n + n_warn > MAX_RENDERED:
        print(more_line(n + n_warn - MAX_RENDERED))
    if args.format not in ("json", "sarif") and not args.quiet:
        status = "no errors" if not n else f"{n:,} error{'s' if n != 1 else ''}"
        if n_warn:
            status += f", {n_warn:,} warning{'s' if n_warn != 1 else ''}"
        print(f"nnspec: checked {len(files)} file{'s' if len(files) != 1 else ''}, "
              f"{n_models} model{'s' if n_models != 1 else ''}: {status}", file=sys.stderr)
    return EXIT_ERRORS if all_diags else EXIT_OK


def _where(d) -> tuple:
    """A diagnostic's place, to list errors and warnings in file and line order."""
    return (d.span.file, d.span.line, d.span.col) if d.span else ("", 0, 0)


def cmd_compile(args) -> int:
    spec = load(args.spec)
    if spec.diagnostics:
        return fail(spec)
    target = args.target
    if target is None:
        target = "json" if (args.output or "").endswith(".json") else "torch"
    if target == "json":
        text = spec.program.to_json() + "\n"
    else:
        if args.model:
            pick_model(spec, args.model)
        from ..backends.emit import emit_source

        text = emit_source(spec, args.model, all_models=args.model is None)
    write_output(args.output, text, args.quiet)
    return EXIT_OK


def cmd_crosscheck(args) -> int:
    from ..backends.weights import TooLarge
    from ..core.diagnostics import SpecError

    require_torch("crosscheck")
    spec = load(args.spec)
    if spec.diagnostics:
        return fail(spec)
    dims = parse_dims(args.dim)
    models = [pick_model(spec, args.model)] if args.model else spec.program.models
    from ..backends.numpy.interpreter import NoBackward
    from .crosscheck import crosscheck, crosscheck_grad, model_symbols
    from .progress import progress

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
            with progress(not args.quiet) as bar:
                report = run(spec, m.name, args.dtype, args.seed, mine, sample=args.sample,
                             progress=bar)
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
        if not (args.quiet and report.ok):
            print(report.render())
        if not report.ok:
            status = EXIT_ERRORS
    return status


def cmd_train(args) -> int:
    from ..ir import training as T

    if not args.overfit_batch:
        raise UsageError("train needs a mode: --overfit-batch (train on one random batch "
                         "and check that the loss falls)")
    if args.steps < 1 or args.steps > 100_000:
        raise UsageError(f"--steps must be in [1, 100000], got {args.steps}")
    require_torch("train")
    spec = load(args.spec)
    if spec.diagnostics:
        return fail(spec)
    dims = parse_dims(args.dim)
    if args.model:
        models = [pick_model(spec, args.model)]
    else:
        models = [m for m in spec.program.models if T.training_for(spec.program, m.name)]
    if not models:
        raise UsageError(f"{args.spec} has no train section (train Model(...) {{ loss ... }})")
    from .crosscheck import model_symbols
    from .progress import progress
    from .trainer import overfit

    status = EXIT_OK
    for m in models:
        if T.training_for(spec.program, m.name) is None:
            raise UsageError(f"model {m.name} has no train section")
        mine = {k: v for k, v in dims.items() if k in model_symbols(m)}
        with progress(not args.quiet, unit="step") as bar:
            report = overfit(spec, m.name, args.steps, args.seed, mine, progress=bar)
        if not (args.quiet and report.ok):
            print(report.render())
        if not report.ok:
            status = EXIT_ERRORS
    return status


def cmd_layers(args) -> int:
    from ..layers import REGISTRY

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


#: The JSON outputs with a published schema (nnspec/schemas/NAME.json).
SCHEMAS = ("ir", "check", "summary")


def load_schema(name: str) -> dict:
    """The JSON Schema of an output: ``ir`` (``compile --target json``; generated from the
    pydantic IR), ``check`` (``check --format json``) or ``summary`` (``summary --json``)."""
    if name == "ir":
        from ..ir.model import json_schema

        return json_schema()
    from importlib.resources import files

    return json.loads((files("nnspec") / "schemas" / f"{name}.json").read_text("utf-8"))


def cmd_schema(args) -> int:
    print(json.dumps(load_schema(args.output), indent=2))
    return EXIT_OK


class _Version(argparse.Action):
    """``--version``: the version is looked up only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from .. import __version__

        print(f"nnspec {__version__}")
        parser.exit()


def _command_module(name: str):
    import importlib

    return importlib.import_module(f"nnspec.tools.{name}")


def _run_command(name: str):
    def run(args) -> int:
        return _command_module(name).run(args)
    return run


def _module_command(sub, name: str, help_: str, consts: bool = False,
                    module: str | None = None) -> None:
    """A command implemented in its own module ``nnspec.tools.NAME``, which defines
    ``add_arguments(p)`` and ``run(args)`` (imported when the parser is built: keep their
    top-level imports light; not imported at all when another command runs, see
    :func:`build_parser`)."""
    p = sub.add_parser(name, help=help_)
    if _ONLY is not None and _ONLY != name:
        return  # another command runs: this one's arguments are never parsed
    _command_module(module or name).add_arguments(p)
    if consts:
        add_consts(p)
    p.set_defaults(func=_run_command(module or name))


def _add_quiet(p, what: str) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help=what)


_ONLY: str | None = None  # the command being run, while its parser is built


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``only``, the command that will run, the modules of
    the others are not imported (their arguments would never be parsed)."""
    global _ONLY
    _ONLY = only
    try:
        return _build_parser()
    finally:
        _ONLY = None


def _command_of(argv: list[str]) -> str | None:
    """The command word of the arguments when nothing before it but the main parser's own
    options (spelt out in full) can be read differently by argparse; else None."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("--color", "--colour"):
            i += 2
        elif word in ("--debug", "--version", "-h", "--help") or word.startswith(
                ("--color=", "--colour=")):
            i += 1
        else:
            return None if word.startswith("-") else word
    return None


def _build_parser() -> argparse.ArgumentParser:
    ap = SuggestingParser(prog="nnspec", description="Declarative model-spec compiler.")
    add_color(ap)
    ap.add_argument("--version", action=_Version, help="print the version and exit")
    ap.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND",
                            help="the command (nnspec COMMAND --help for its options)")

    p = sub.add_parser("check", help="parse and shape-check specs (files or folders)")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="spec files, folders (searched for .nn files) or - for stdin")
    p.add_argument("--format", choices=("text", "json", "github", "sarif"), default="text",
                   help="text (default), json, github (Actions annotations) or sarif "
                        "(SARIF 2.1.0, for code-scanning uploads)")
    p.add_argument("--strict", action="store_true",
                   help="treat warnings (W codes: a value computed but never used) as errors")
    add_consts(p)
    _add_quiet(p, "no summary line")
    p.set_defaults(func=cmd_check)

    _module_command(sub, "summary", "per-layer shapes, parameters, MACs and memory",
                    consts=True)

    p = sub.add_parser("compile", help="emit PyTorch source (or the IR as JSON)")
    add_spec(p)
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    p.add_argument("--target", choices=("torch", "json"),
                   help="torch (PyTorch source) or json (the IR); default: from -o's suffix")
    p.add_argument("--model", help="the model to emit (default: every model)")
    add_consts(p)
    _add_quiet(p, "no 'wrote FILE' line")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("crosscheck", help="run both backends and compare layer by layer "
                                          "(needs torch)")
    add_spec(p)
    p.add_argument("--model", help="the model to check (default: every model)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="the dtype both backends run in (default float64)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the weights and inputs")
    p.add_argument("--dim", action="append", metavar="NAME=SIZE",
                   help="size of a symbolic dim (default 2)")
    p.add_argument("--grad", action="store_true",
                   help="compare the NumPy backward with torch autograd instead: per "
                        "parameter, for L = sum(output * c) with a random c")
    p.add_argument("--sample", action="store_true",
                   help="the stochastic layers with sample=train sample, as in training "
                        "(both backends draw the same numbers from --seed); the rest of "
                        "the model stays in eval mode")
    add_consts(p)
    _add_quiet(p, "print nothing when the check passes")
    p.set_defaults(func=cmd_crosscheck)

    p = sub.add_parser("train", help="check trainability: train on one batch "
                                     "(--overfit-batch; needs torch)")
    add_spec(p)
    p.add_argument("--overfit-batch", action="store_true",
                   help="train the emitted module on one random batch with the declared "
                        "loss and optimiser; exit 1 if the loss does not fall by 10%% or a "
                        "parameter never gets a gradient")
    p.add_argument("--steps", type=int, default=50, help="training steps (default 50)")
    p.add_argument("--model", help="the model to train (default: every model with a "
                                   "train section)")
    p.add_argument("--seed", type=seed_arg, default=0,
                   help="seed of the weights and the batch")
    p.add_argument("--dim", action="append", metavar="NAME=SIZE",
                   help="size of a symbolic dim (default 4)")
    add_consts(p)
    _add_quiet(p, "print nothing when the check passes")
    p.set_defaults(func=cmd_train)

    _module_command(sub, "fmt", "format specs in the canonical layout (--check for CI)")
    _module_command(sub, "graph", "draw the network: SVG, DOT or HTML (Graphviz)", consts=True)
    _module_command(sub, "lsp", "run the language server (stdio)")
    _module_command(sub, "import", "bring a PyTorch, Hugging Face or ONNX model in as a .nn "
                                   "spec (needs torch)", module="importer")
    _module_command(sub, "export", "write a spec's model as ONNX (needs the onnx extra)",
                    consts=True)
    _module_command(sub, "weights", "match a checkpoint's keys to a spec's (weights map)",
                    consts=True)

    p = sub.add_parser("layers", help="list the layer kinds")
    p.set_defaults(func=cmd_layers)
    _module_command(sub, "losses", "list the losses of train sections with their arguments")

    p = sub.add_parser("schema", help="print the JSON Schema of an output (default: the IR)")
    p.add_argument("output", nargs="?", choices=SCHEMAS, default="ir",
                   help="ir (compile --target json), check (check --format json) or summary "
                        "(summary --json)")
    p.set_defaults(func=cmd_schema)
    _module_command(sub, "explain", "what an error code means, with an example and the fix")
    _module_command(sub, "docs", "write the reference site (HTML): layer kinds, losses, error "
                                 "codes, the language tour")
    for p in sub.choices.values():  # --color after the command too
        add_color(p, default=argparse.SUPPRESS)
    return ap



def _color_flag(argv: list[str]) -> str | None:
    """The last ``--color WHEN`` of the arguments, read before parsing so that argparse's
    own usage errors follow it too (a bad value is argparse's to report)."""
    mode = None
    for i, word in enumerate(argv):
        if word == "--":
            break
        name, eq, value = word.partition("=")
        if name in ("--color", "--colour"):
            value = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
            mode = value if value in ("auto", "always", "never") else mode
    return mode


def _start_quickly() -> None:
    """What a process of its own (the libraries not loaded yet) skips at start-up: pydantic's
    plugins, found by reading every installed distribution's metadata (~10 ms; nnspec's
    validation has nothing for them to observe: left on when set by name), and with them the
    import of the module that would look for them (importlib.metadata, email, ...: ~10 ms more;
    pydantic.plugin._loader stands in for it while plugins are disabled). (Lark is not
    imported to parse a spec that parses: see nnspec/frontends/nn/lalr.py.)"""
    if "pydantic" not in sys.modules:
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
        sys.modules.setdefault("pydantic.plugin._loader", _NoPlugins("pydantic.plugin._loader"))


class _NoPlugins(type(sys)):
    """pydantic's plugin loader while ``PYDANTIC_DISABLE_PLUGINS`` disables them all: no
    plugins, without importing what finds them. Should the variable change, the real loader
    is imported in its place and answers."""

    def get_plugins(self):
        if os.environ.get("PYDANTIC_DISABLE_PLUGINS") in ("__all__", "1", "true"):
            return ()
        return self._real().get_plugins()

    def __getattr__(self, name):
        if name.startswith("__"):  # what the import system asks of any module (__path__ ...)
            raise AttributeError(name)
        return getattr(self._real(), name)

    def _real(self):
        import importlib

        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return importlib.import_module(self.__name__)


def main(argv: list[str] | None = None) -> int:
    start_run()
    set_color(_color_flag(sys.argv[1:] if argv is None else argv))
    ap = build_parser(_command_of(sys.argv[1:] if argv is None else argv))
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    _start_quickly()
    try:
        if getattr(args, "const", None):
            from ..frontends.nn.overrides import ConstError, parse_flags

            try:
                start_run(parse_flags(args.const))
            except ConstError as e:
                raise UsageError(str(e)) from None
        return args.func(args)
    except UsageError as e:
        from ..core.diagnostics import style

        print(f"nnspec: {style('error:', '1;31', use_color(sys.stderr))} {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # an internal failure is a bug: one line, no traceback
        if is_torch_missing(e) and not args.debug:  # a core install: not a bug
            print(f"nnspec: error: {args.command}: {TORCH_EXTRA}", file=sys.stderr)
            return EXIT_USAGE
        if args.debug:
            raise
        print(f"nnspec: internal error: {type(e).__name__}: {e} (this is a bug in nnspec; "
              "rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
