"""The package's layout is its pipeline: imports only go down it.

Every ``import`` of an nnspec module from inside ``nnspec/`` is read from the source with
``ast`` (those inside functions too: a lazy import is an arrow all the same), and checked
against the stages below. A small test over ``ast`` rather than import-linter: it needs no
dependency, sees the imports inside functions, and names the file and line of an arrow
that breaks a rule.

    core        source text, diagnostics, limits, symbolic dims, small utilities
    layers      the layer kinds (and losses, initialisers, the NumPy kernels they compute with)
    ir          the IR, its validation, names, shape inference, the checked Spec
    frontends   one folder per input language: .nn text today
    backends    torch module builder, PyTorch source emitter, NumPy interpreter
    api         nnspec/__init__.py and nnspec/api.py: the Python API's load()
    tools       command line, formatter, graph, language server, crosscheck, trainer
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "nnspec"

#: each stage, and the stages it may import (itself included)
ALLOWED = {
    "core": {"core", "stdlib"},
    "stdlib": {"stdlib"},
    "layers": {"core", "layers"},
    "ir": {"core", "layers", "ir"},
    "frontends": {"core", "stdlib", "layers", "ir", "frontends"},
    "backends": {"core", "stdlib", "layers", "ir", "backends"},
    "api": {"core", "layers", "ir", "frontends", "api"},
    "tools": {"core", "stdlib", "layers", "ir", "frontends", "backends", "api", "tools"},
    "main": {"tools"},
}

#: the NumPy kernels: the kinds' NumPy forward and backward (and the losses) compute with
#: them, the interpreter never calls them; a leaf that imports nothing of nnspec
KERNELS = "nnspec.layers.kernels"

#: back ends that may import another back end (the rest share only backends/*.py)
BACKEND_ARROWS = {
    # ``nnspec.backends.torch.emit_source`` is public: the torch package re-exports it
    ("nnspec.backends.torch", "nnspec.backends.emit"),
}


def _module_name(path: pathlib.Path) -> str:
    parts = ["nnspec", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _stage(mod: str) -> str:
    parts = mod.split(".")
    if mod == "nnspec" or mod == "nnspec.api":
        return "api"
    if mod == "nnspec.__main__":
        return "main"
    return parts[1]


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.AST) -> list[str]:
    """The nnspec modules an import statement loads (a ``from X import name`` of a
    submodule counts as that submodule)."""
    out = []
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "nnspec"]
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        mod = ".".join(base + ([node.module] if node.module else []))
    else:
        mod = node.module or ""
    if mod.split(".")[0] != "nnspec":
        return []
    for a in node.names:
        sub = f"{mod}.{a.name}"
        out.append(sub if sub in MODULES else mod)
    return out


def _arrows():
    """(importer, imported, line) for every import of an nnspec module in nnspec/."""
    arrows = []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _resolve(mod, path.name == "__init__.py", node):
                    arrows.append((mod, target, node.lineno))
    return arrows


ARROWS = _arrows()


def _within(mod: str, pkg: str) -> bool:
    """``mod`` is the module or package ``pkg``, or one of the package's modules."""
    return mod == pkg or mod.startswith(pkg + ".")


def _where(mod: str, line: int) -> str:
    return f"{MODULES[mod].relative_to(ROOT.parent)}:{line}"


def test_every_module_belongs_to_a_stage():
    stray = [m for m in MODULES if _stage(m) not in ALLOWED]
    assert not stray, f"modules outside the stages' folders: {stray}"


def _against_the_pipeline(arrows) -> list[str]:
    return [f"{src} ({_stage(src)}) imports {dst} ({_stage(dst)}), line {line}"
            for src, dst, line in arrows if _stage(dst) not in ALLOWED[_stage(src)]]


def test_imports_only_go_down_the_pipeline():
    bad = _against_the_pipeline(ARROWS)
    assert not bad, "imports against the pipeline:\n" + "\n".join(bad)


def _back_end(mod: str) -> str | None:
    """The back end a module belongs to (``nnspec.backends.torch``), or None for a module
    that every back end shares (``nnspec.backends.plans``)."""
    parts = mod.split(".")
    if len(parts) < 3:
        return None
    pkg = ".".join(parts[:3])
    return pkg if (ROOT / "backends" / parts[2]).is_dir() else None


def test_back_ends_do_not_import_each_other():
    bad = []
    for src, dst, line in ARROWS:
        if _stage(src) != "backends" or _stage(dst) != "backends":
            continue
        a, b = _back_end(src), _back_end(dst)
        if a and b and a != b and (a, b) not in BACKEND_ARROWS:
            bad.append(f"{_where(src, line)}: {src} imports {dst}")
        if a is None and b is not None:
            bad.append(f"{_where(src, line)}: the shared {src} imports the back end {dst}")
    assert not bad, "back ends import each other:\n" + "\n".join(bad)


def test_front_ends_are_apart():
    """Each input language is its own front end: .nn text today, importers later."""
    bad = [f"{_where(s, n)}: {s} imports {d}" for s, d, n in ARROWS
           if _stage(s) == _stage(d) == "frontends"
           and s.split(".")[2] != d.split(".")[2]]
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_command_line():
    bad = [f"{_where(s, n)}: {s} imports the CLI" for s, d, n in ARROWS
           if d == "nnspec.tools.cli" and s not in ("nnspec.__main__", "nnspec.tools.cli")]
    assert not bad, "\n".join(bad)


def _cycle(arrows) -> list[str] | None:
    """A cycle of imports among nnspec's modules (a list of modules), or None."""
    from graphlib import CycleError, TopologicalSorter

    graph: dict[str, set] = {}
    for src, dst, _ in arrows:
        if dst != src:
            graph.setdefault(src, set()).add(dst)
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as e:
        return e.args[1]
    return None


def test_no_import_cycles():
    assert _cycle(ARROWS) is None, f"an import cycle: {' -> '.join(_cycle(ARROWS))}"


def test_the_rules_see_a_bad_arrow():
    """The checks above can fail: a relative import inside a function is read, an arrow up
    the pipeline is caught, and so is a cycle."""
    code = "def f():\n    from ...ir import model\n"
    node = ast.parse(code).body[0].body[0]
    assert _resolve("nnspec.core.dims.algebra", False, node) == ["nnspec.ir.model"]
    up = [("nnspec.core.dims.algebra", "nnspec.ir.model", 2)]
    assert _against_the_pipeline(up) == [
        "nnspec.core.dims.algebra (core) imports nnspec.ir.model (ir), line 2"]
    assert _cycle([("nnspec.ir.model", "nnspec.ir.validate", 1),
                   ("nnspec.ir.validate", "nnspec.ir.model", 1)]) is not None
    assert _cycle([("nnspec.ir.validate", "nnspec.ir.model", 1)]) is None


def test_kernels_are_a_leaf():
    """The kernels import nothing of nnspec (their modules import one another): a kind's
    NumPy code builds on them, never the other way round."""
    assert not [f"{_where(s, n)}: {s} imports {d}" for s, d, n in ARROWS
                if _within(s, KERNELS) and not _within(d, KERNELS)]


@pytest.mark.parametrize("mod", sorted(m for m in MODULES if m.startswith("nnspec.layers.torch.")))
def test_torch_helpers_import_only_torch(mod):
    """A kind's torch helpers are copied into emitted files: they import torch and math only,
    and another family's helpers (``from .rope import apply_rope``, copied with them)."""
    tree = ast.parse(MODULES[mod].read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 1:
            assert f"nnspec.layers.torch.{node.module}" in MODULES, (mod, node.module)
            continue
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for n in names:
            assert n.split(".")[0] in ("torch", "math", "__future__"), (mod, n)


def test_modules_stay_small():
    """No room too big to hold in one's head: a module that grows past 600 lines is split
    along a seam (a command of the CLI goes to a module of its own, as fmt and graph do)."""
    big = {m: n for m, p in MODULES.items()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not big, f"modules over 600 lines: {big}"


def test_every_module_says_what_it_owns():
    bare = [m for m, p in MODULES.items()
            if not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))
            and p.stat().st_size > 0]
    assert not bare, f"modules without a docstring: {bare}"


def test_every_package_is_installed():
    """pyproject lists the packages by hand (the grammar's is mapped from grammar/): a new
    stage folder must be added there, or the wheel ships without it."""
    import tomllib

    listed = set(tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]
                 ["setuptools"]["packages"])
    found = {_module_name(p.parent / "__init__.py") for p in ROOT.rglob("__init__.py")}
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"


def test_a_kinds_torch_code_lives_under_its_familys_name():
    """One convention for every kind: the torch plan is data in the kind's module
    (layers/<family>.py); torch code the plan calls that torch.nn lacks is in
    layers/torch/<family>.py, named as the family, and referenced only from it."""
    import re

    helpers = {p.stem for p in (ROOT / "layers" / "torch").glob("*.py")} - {"__init__"}
    families = {p.stem for p in (ROOT / "layers").glob("*.py")}
    assert helpers <= families, f"torch helpers without a family module: {helpers - families}"
    ref = re.compile(r"nnspec\.layers\.torch\.([a-z_]+)")
    for mod, path in MODULES.items():
        if not mod.startswith("nnspec.layers.") or mod.startswith("nnspec.layers.torch"):
            continue
        for family in ref.findall(path.read_text(encoding="utf-8")):
            assert family in helpers, (mod, family)
            assert path.stem.startswith(family), (
                f"{mod} refers to the torch helpers of {family}: a kind's helpers live "
                f"under its own family's name")
