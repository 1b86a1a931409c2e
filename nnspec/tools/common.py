"""What every command of the command line shares: exit codes, usage errors, reading specs
(files, folders, standard input, the run's ``--const`` values) and writing outputs
atomically. The formatter and the graph command use it as the CLI does; nothing imports
the CLI itself (``cli``).
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

#: What a command that needs torch says when torch cannot be imported.
TORCH_EXTRA = "this needs the torch extra: pip install 'nnspec[torch]'"

#: The path that means standard input, and the name diagnostics give it.
STDIN, STDIN_NAME = "-", "<stdin>"


class UsageError(Exception):
    pass


#: ``--color``: auto (a terminal, unless NO_COLOR is set), always or never.
COLOR_MODES = ("auto", "always", "never")
_color_mode = "auto"


def set_color(mode: str | None) -> None:
    """This run's ``--color`` mode (None: auto)."""
    global _color_mode
    _color_mode = mode or "auto"


def use_color(stream) -> bool:
    """Whether text for ``stream`` gets ANSI colours: ``--color always`` or ``never`` as
    said; auto colours a terminal unless NO_COLOR is set (no-color.org) or TERM is dumb."""
    if _color_mode != "auto":
        return _color_mode == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def add_color(p, default=None) -> None:
    """The ``--color`` option (on the main parser, and on each command with ``default``
    SUPPRESS, so that it may come before or after the command)."""
    kw = {} if default is None else {"default": default}
    p.add_argument("--color", "--colour", choices=COLOR_MODES, metavar="WHEN", **kw,
                   help="colour the diagnostics: auto (on a terminal, unless NO_COLOR is "
                        "set; the default), always or never")


def _close(word: str, choices) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


class SuggestingParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors suggest the option, command or choice meant
    (``--fromat``: did you mean --format?) instead of printing the whole usage."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def _command_parser(self) -> argparse.ArgumentParser:
        """The parser of the command named in the arguments (this one when none is)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for word in getattr(self, "_argv", []):
                    if word in action.choices:
                        return action.choices[word]
        return self

    def error(self, message: str):  # type: ignore[override]
        import re

        hint, prog = None, self.prog
        unknown = re.fullmatch(r"unrecognized arguments: (.*)", message)
        choice = re.fullmatch(r"argument (\S+): invalid choice: '(.*?)' \(choose from (.*)\)",
                              message, re.S)
        if unknown:
            parser = self._command_parser()
            prog = parser.prog
            options = [o for a in parser._actions for o in a.option_strings]
            for word in unknown.group(1).split():
                best = _close(word.split("=")[0], options) if word.startswith("-") else None
                if best:
                    hint = f"did you mean {best}? (see {prog} --help)"
                    break
        elif choice:
            best = _close(choice.group(2), re.findall(r"'(.*?)'", choice.group(3)))
            hint = f"did you mean {best}?" if best else None
        if hint is None and not unknown:
            super().error(message)
        from ..core.diagnostics import style

        color = use_color(sys.stderr)
        if hint is None:  # the usage of the command, not the main parser's
            self._command_parser().print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{prog}: {style('error:', '1;31', color)} {message}\n"
                              + (f"  {style('hint:', '1;36', color)} {hint}\n" if hint else ""))


def require_torch(command: str) -> None:
    """A usage error naming the extra to install when torch cannot be imported (a core
    install), before any work is done."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError(f"{command}: {TORCH_EXTRA}") from None


def is_torch_missing(e: BaseException) -> bool:
    name = getattr(e, "name", None) or ""
    return isinstance(e, ImportError) and (name == "torch" or name.startswith("torch."))


_stdin_text: str | None = None
#: The constants this run sets (``--const NAME=VALUE``), for every spec it loads.
_consts: dict = {}


def read_stdin() -> str:
    """Standard input as spec text, read once (``check - -`` checks it once), with the
    limits and decoding of a spec file; raises UnreadableSource as read_source does."""
    global _stdin_text
    if _stdin_text is None:
        from ..core.source import MAX_FILE_BYTES, UnreadableSource, decode_source

        data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise UnreadableSource("E005", f"{STDIN_NAME} is too large for a spec (over "
                                   f"{MAX_FILE_BYTES // 2**20} MiB)")
        _stdin_text = decode_source(data)
    return _stdin_text


def spec_files(paths: list[str]) -> list[str]:
    """The files to check: those named, and the ``.nn`` files under the folders named (a
    link found in a folder is followed only to a file whose name ends with .nn too)."""
    files = []
    for p in paths:
        if p == STDIN:
            if STDIN not in files:
                files.append(p)
        elif os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                files.extend(os.path.join(root, n) for n in sorted(names) if n.endswith(".nn")
                             and os.path.realpath(os.path.join(root, n)).endswith(".nn"))
        elif os.path.lexists(p):
            files.append(p)
        else:
            raise UsageError(f"no such file or folder: {p}")
    return files


def _load_stdin():
    from .. import api
    from ..core.diagnostics import unreadable
    from ..core.source import UnreadableSource

    try:
        text = read_stdin()
    except (OSError, UnreadableSource) as e:
        diag, shown = unreadable(STDIN_NAME, e)
        return api.Spec(None, {}, [diag], {STDIN_NAME: shown} if shown else {})
    if text.lstrip().startswith("{"):  # the IR as JSON (`compile --target json` piped in)
        return api.from_ir(text, STDIN_NAME, consts=_consts)
    return api.loads(text, STDIN_NAME, strict=False, consts=_consts)


def load(path: str, strict: bool = False):
    """The spec (or IR) at ``path``, with this run's ``--const`` values; a constant the spec
    does not define is a usage error."""
    from ..frontends.nn.overrides import ConstError

    try:
        return _load_spec(path, strict)
    except ConstError as e:
        raise UsageError(str(e)) from None


def _load_spec(path: str, strict: bool):
    from .. import api

    if path == STDIN:
        return _load_stdin()
    if not os.path.lexists(path):
        raise UsageError(f"no such file: {path}")
    if path.endswith(".json"):
        from ..core.diagnostics import unreadable
        from ..core.source import UnreadableSource, read_source

        try:
            text = read_source(path)
        except (OSError, ValueError, UnreadableSource) as e:
            diag, shown = unreadable(path, e)
            return api.Spec(None, {}, [diag], {path: shown} if shown else {})
        return api.from_ir(text, path, consts=_consts)  # bad IR: located diagnostics, exit 1
    return api.load(path, strict=strict, consts=_consts)


#: Errors that ``check --format json`` lists (it counts them all).
def fail(spec) -> int:
    from ..core.diagnostics import MAX_RENDERED, render_all

    print(render_all(spec.diagnostics, spec.sources, MAX_RENDERED, use_color(sys.stderr)),
          file=sys.stderr)
    return EXIT_ERRORS


def single_spec(path: str, command: str) -> str:
    """``path``, for a command that takes one spec file: a folder is a usage error that
    names the specs in it (``check`` takes folders; the others one file)."""
    if path == STDIN or not os.path.isdir(path):
        return path
    found = spec_files([path])
    if not found:
        raise UsageError(f"{command} takes one spec file, and {path} is a folder with no .nn "
                         "files in it")
    shown = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
    raise UsageError(f"{command} takes one spec file, and {path} is a folder; its specs: "
                     f"{shown} (nnspec {command} {found[0]}; nnspec check takes folders)")


def pick_model(spec, name):
    if name is not None and name not in spec.model_names:
        raise UsageError(f"no model {name!r}; the spec has: {', '.join(spec.model_names)}")
    return spec.model(name)


def write_output(path: str | None, text: str, quiet: bool, what: str = "") -> None:
    """``text`` to the file ``path`` (atomically; a bad path is a usage error) with a
    ``wrote`` line unless ``quiet``, or to stdout without a path or for ``-``."""
    from ..core.util import STDOUT_NAMES, OutputError, write_atomic

    if not path or path in STDOUT_NAMES:
        sys.stdout.write(text)
        return
    try:
        write_atomic(path, text)
    except OutputError as e:
        raise UsageError(str(e)) from None
    if not quiet:
        print(f"nnspec: wrote {path}{what}", file=sys.stderr)


def start_run(consts: dict | None = None) -> None:
    """Forget the previous run's standard input and set this run's ``--const`` values."""
    global _stdin_text, _consts
    _stdin_text = None  # each run reads its own standard input
    _consts = dict(consts or {})


#: The version of the JSON that ``check --format json`` and ``summary --json`` print; it
#: changes when a change is not backwards compatible (schemas in nnspec/schemas/).
JSON_VERSION = 1


def add_spec(p, what: str = "the spec file (.nn, or the IR as .json); - reads stdin") -> None:
    p.add_argument("spec", help=what)


def add_consts(p) -> None:
    p.add_argument("--const", action="append", metavar="NAME=VALUE",
                   help="set a constant of the spec (its own `const NAME = ...`; the "
                        "constants computed from it follow): a number, true/false, a "
                        "\"string\" or a tuple; repeatable")


_DIM_DIGITS = 30  # a size of more digits is far beyond int64: refused without int()


def parse_dims(items) -> dict[str, int]:
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


def seed_arg(text: str) -> int:
    """A --seed: a non-negative integer (NumPy's generators refuse negative seeds)."""
    import argparse

    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is an integer, not {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"a seed is a non-negative integer, not {v}")
    return v
