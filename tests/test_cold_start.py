"""What ``nnspec check`` loads: the layer kinds' modules on first lookup (from the static
name table in nnspec/layers/__init__.py, which must agree with the kinds the modules
register), never torch, numpy or the families a spec does not use."""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys
import textwrap

import nnspec.layers as L
from nnspec.layers import REGISTRY

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAYERS = ROOT / "nnspec" / "layers"


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (at the repository root); it prints one JSON
    value, returned."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table_source(kinds: dict) -> str:
    """``NAMES`` as it should read in nnspec/layers/__init__.py, for the kinds given."""
    by_module: dict[str, list[str]] = {}
    for name, kind in kinds.items():
        by_module.setdefault(type(kind).__module__.rsplit(".", 1)[1], []).append(name)
    lines = ["NAMES = {"]
    order = [m for m in L.MODULES if m in by_module]
    for module in order + sorted(set(by_module) - set(order)):
        head = f'    "{module}": '
        wrapped = textwrap.wrap(" ".join(by_module[module]), 100 - len(head) - 3,
                                break_on_hyphens=False)
        for i, text in enumerate(wrapped):
            last = i == len(wrapped) - 1
            lines.append(f'{head if i == 0 else " " * len(head)}"{text}{"" if last else " "}"'
                         f'{"," if last else ""}')
    return "\n".join(lines + ["}"])


def test_the_name_table_lists_every_kind_where_it_is_defined():
    kinds = dict(REGISTRY.load_all())
    real = {name: type(kind).__module__.rsplit(".", 1)[1] for name, kind in kinds.items()}
    table = {name: module for module, names in L.NAMES.items() for name in names.split()}
    assert table == real, (
        "nnspec/layers/__init__.py's NAMES and the registered kinds disagree "
        f"(missing: {sorted(set(real) - set(table))}, stale: {sorted(set(table) - set(real))}"
        f", moved: {sorted(n for n in set(real) & set(table) if real[n] != table[n])}); "
        "replace it with:\n\n" + _table_source(kinds))


def test_every_module_with_kinds_is_listed():
    registering = set()
    for path in LAYERS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            uses = (node.decorator_list if isinstance(node, ast.ClassDef)
                    else [node.func] if isinstance(node, ast.Call) else [])
            if any(isinstance(d, ast.Name) and d.id == "register" for d in uses):
                registering.add(path.stem)
    assert registering <= set(L.MODULES), (
        f"kind modules missing from MODULES in nnspec/layers/__init__.py: "
        f"{sorted(registering - set(L.MODULES))}")
    assert set(L.NAMES) <= set(L.MODULES), sorted(set(L.NAMES) - set(L.MODULES))
    assert len(set(L.MODULES)) == len(L.MODULES)


def test_listing_the_registry_follows_the_table():
    table = [name for names in L.NAMES.values() for name in names.split()]
    assert list(REGISTRY) == table
    assert len(REGISTRY) == len(table)
    assert all(REGISTRY[name] is kind for name, kind in REGISTRY.items())


def test_lookups_import_only_the_family_named():
    got = _run("""
        import json, sys
        from nnspec.layers import REGISTRY
        before = {m for m in sys.modules if m.startswith("nnspec.layers.")}
        hit = "conv2d" in REGISTRY and REGISTRY.get("rotary") is not None
        miss = "NoSuchKind" in REGISTRY or REGISTRY.get("ResBlock") is not None
        after = {m for m in sys.modules if m.startswith("nnspec.layers.")}
        print(json.dumps({"hit": hit, "miss": miss, "new": sorted(after - before),
                          "kind": type(REGISTRY["conv"]).__name__}))
    """)
    assert got["hit"] and not got["miss"]
    assert "nnspec.layers.conv" in got["new"] and "nnspec.layers.rope" in got["new"]
    assert "nnspec.layers.upsample" not in got["new"]
    assert got["kind"] == "Conv"


def test_a_family_missing_from_the_table_is_still_found():
    got = _run("""
        import json, sys
        import nnspec.layers as L
        from nnspec.layers import REGISTRY
        names = {n: m for m, ns in L.NAMES.items() if m != "rope" for n in ns.split()}
        REGISTRY.configure(L.__name__, L.MODULES, names)
        print(json.dumps({"found": "rope" in REGISTRY,
                          "loaded": "nnspec.layers.rope" in sys.modules}))
    """)
    assert got == {"found": True, "loaded": True}


def test_kind_modules_are_attributes_of_the_package():
    got = _run("""
        import json
        import nnspec.layers
        print(json.dumps(nnspec.layers.upsample.__name__))
    """)
    assert got == "nnspec.layers.upsample"


def test_check_loads_only_what_it_needs():
    got = _run("""
        import json, os, sys
        from nnspec.tools.cli import main
        status = main(["check", "-q", "specs/lenet5.nn"])
        print(json.dumps({"status": status, "modules": sorted(sys.modules),
                          "plugins": os.environ.get("PYDANTIC_DISABLE_PLUGINS")}))
    """)
    assert got["status"] == 0
    mods = set(got["modules"])
    assert not mods & {"torch", "numpy", "difflib", "regex"}
    kinds = {m.rsplit(".", 1)[1] for m in mods if m.rsplit(".", 1)[0] == "nnspec.layers"}
    assert kinds & set(L.MODULES) <= {"activation", "conv", "dense", "pool", "reshape"}
    assert got["plugins"] == "__all__"


def test_the_package_imports_its_api_on_first_use():
    got = _run("""
        import json, sys
        import nnspec
        light = "pydantic" not in sys.modules and "nnspec.api" not in sys.modules
        from nnspec import SpecError, load
        spec = nnspec.loads("model M(x: [N, 4]) -> [N, 2] {\\n    dense 2\\n}\\n")
        print(json.dumps({"light": light, "load": load.__module__, "error": SpecError.__name__,
                          "params": spec.param_count("M"), "dir": "Spec" in dir(nnspec)}))
    """)
    assert got == {"light": True, "load": "nnspec.api", "error": "SpecError", "params": 10,
                   "dir": True}
