"""What every command of the command line shares: exit codes, usage errors, reading specs
(files, folders, standard input, the run's ``--const`` values) and writing outputs
atomically. The formatter and the graph command use it as the CLI does; nothing imports
the CLI itself (``cli``).
"""

from __future__ import annotations

import os
import sys

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

#: What a command that needs torch says when torch cannot be imported.
TORCH_EXTRA = "this needs the torch extra: pip install 'nnspec[torch]'"

#: The path that means standard input, and the name diagnostics give it.
STDIN, STDIN_NAME = "-", "<stdin>"


class UsageError(Exception):
    pass


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
    from ..core.diagnostics import render_all

    print(render_all(spec.diagnostics, spec.sources), file=sys.stderr)
    return EXIT_ERRORS


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
