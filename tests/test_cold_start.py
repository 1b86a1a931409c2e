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
    losses = {m.rsplit(".", 1)[1] for m in mods if m.startswith("nnspec.layers.losses.")}
    assert losses <= {"kind", "classification"}  # LeNet's cross_entropy: one family
    assert got["plugins"] == "__all__"


def test_the_loss_table_lists_every_loss_where_it_is_defined():
    import importlib
    import inspect

    from nnspec.layers import losses
    from nnspec.layers.losses.kind import LossKind

    defined = {}  # (module, class) -> "name aliases", from the families' modules
    for path in sorted((LAYERS / "losses").glob("*.py")):
        if path.stem in ("__init__", "kind"):
            continue
        mod = importlib.import_module(f"nnspec.layers.losses.{path.stem}")
        for cls_name, cls in vars(mod).items():
            if (inspect.isclass(cls) and issubclass(cls, LossKind) and cls.__module__ ==
                    mod.__name__ and "name" in vars(cls)):
                defined[path.stem, cls_name] = " ".join((cls.name, *cls.aliases))
    table = {(m, c): names for m, c, names in losses.NAMES}
    assert table == defined, "nnspec/layers/losses/__init__.py's NAMES: " + repr(defined)
    assert len(losses.LOSSES) == len(list(losses.LOSSES))
    for _, c, names in losses.NAMES:
        for n in names.split():
            assert n in losses.LOSSES and type(losses.LOSSES[n]).__name__ == c
    assert losses.LOSSES.get("no_such_loss") is None and "no_such_loss" not in losses.LOSSES


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


# -- the LALR driver: Lark's tables without Lark ---------------------------------------------

def _both_parsers(monkeypatch, text: str, path: str) -> list:
    """parse_recover's result with the driver, and with Lark's parser alone."""
    from nnspec.frontends.nn import parse

    got = []
    for driver in (None, False):  # None: the shipped driver (loaded again); False: none
        monkeypatch.setattr(parse, "_driver", driver)
        module, errors, blanked = parse.parse_recover(text, path)
        try:
            shown = repr(module)
        except RecursionError:  # a tree too deep to print: compared by its errors
            shown = "deep"
        got.append((shown, [d.render() for d in errors], blanked))
    return got


def _spec_files() -> list:
    files = []
    for f in sorted({*ROOT.glob("specs/*.nn"), *ROOT.glob("nnspec/stdlib/*.nn"),
                     *ROOT.glob("tests/**/*.nn")}):
        try:
            files.append((f, f.read_text(encoding="utf-8")))
        except UnicodeDecodeError:
            continue
    return files


def test_the_shipped_driver_tables_belong_to_the_grammar():
    from nnspec.frontends.nn import parse, tables

    regen = 'regenerate: python -c "from nnspec.frontends.nn import parse; parse.write_tables()"'
    assert tables.load_driver(parse.grammar_text()) is not None, regen
    assert tables.load_driver(parse.grammar_text() + "\n// changed\n") is None


def test_the_driver_parses_every_spec_as_lark_does(monkeypatch):
    files = _spec_files()
    assert len(files) > 20
    for f, text in files:
        a, b = _both_parsers(monkeypatch, text, str(f))
        assert a == b, f


def test_the_driver_agrees_with_lark_on_mangled_specs(monkeypatch):
    """Specs cut, spliced and sprinkled with tokens: what parses gives the same tree, what
    does not the same errors (Lark's: the driver hands it every text it rejects)."""
    import random

    rng = random.Random(20261208)
    texts = [text for _, text in _spec_files()]
    pieces = ["model", "block", "->", "(", ")", "[", "]", ":", "|", "\n", "\n|", " ", "+", "-",
              "*", "//", "=", ",", "as", "as 0.1", "x", "1", "1.5", '"s"', "a.b", "#c\n", "{",
              "}", "...", "<", "<=", "==", "return", "use", "const", "check", "train", "loss"]
    parsed = 0
    for _ in range(300):
        lines = rng.choice(texts).split("\n")
        at = rng.randrange(len(lines))
        text = "\n".join(lines[at:at + rng.randint(1, 30)])
        for _ in range(rng.randint(0, 3)):
            i = rng.randrange(len(text) + 1)
            op = rng.random()
            if op < 0.4:
                text = text[:i] + rng.choice(pieces) + text[i:]
            elif op < 0.7:
                text = text[:i] + text[i + rng.randint(1, 5):]
            else:
                j = rng.randrange(len(text) + 1)
                text = text[:i] + text[j:j + rng.randint(1, 8)] + text[i:]
        a, b = _both_parsers(monkeypatch, text, "m.nn")
        assert a == b, text
        parsed += not a[1]
    assert 30 < parsed < 270  # both kinds of input were tried


def test_check_of_specs_that_parse_never_imports_lark():
    got = _run("""
        import json, sys
        from nnspec.tools.cli import main
        status = main(["check", "-q", "specs/"])
        print(json.dumps({"status": status, "lark": "lark" in sys.modules}))
    """)
    assert got == {"status": 0, "lark": False}
