"""The VS Code extension in editors/: packaged with @vscode/vsce (locked in
editors/package-lock.json, installed by ``npm ci --prefix editors``) into a .vsix, whose
contents are checked with zipfile: the manifest and what it names (the grammar, the language
configuration, extension.js), and the language client with every module it needs, so that
the extension works offline. The extracted extension is then loaded by node with nothing
but its own files (a stand-in for VS Code's ``vscode`` module). Skipped without node, npm or
the installed packages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EDITORS = ROOT / "editors"
NODE, NPX = shutil.which("node"), shutil.which("npx")

pytestmark = pytest.mark.skipif(
    NODE is None or NPX is None or not (EDITORS / "node_modules" / "@vscode" / "vsce").is_dir()
    or not (EDITORS / "node_modules" / "vscode-languageclient").is_dir(),
    reason="node, npm or the editor packages are missing (npm ci --prefix editors)")

#: loads extension.js from an extracted .vsix with a stand-in for the ``vscode`` module
#: (which only VS Code provides) and prints what it exports and where the client came from
_LOAD = r"""
"use strict";
const Module = require("module");
const path = require("path");
const stub = new Proxy(function () {}, {
  get: (t, p) => (p === "then" ? undefined : p === Symbol.toPrimitive ? () => "" : stub),
  apply: () => stub,
  construct: () => stub,
});
const load = Module._load;
Module._load = function (request) {
  return request === "vscode" ? stub : load.apply(this, arguments);
};
const dir = path.resolve(process.argv[1]);
const ext = require(path.join(dir, "extension.js"));
const client = require.resolve("vscode-languageclient/node", { paths: [dir] });
process.stdout.write(JSON.stringify({
  activate: typeof ext.activate, deactivate: typeof ext.deactivate,
  LanguageClient: typeof require(client).LanguageClient, client: path.relative(dir, client),
}));
"""


@pytest.fixture(scope="module")
def vsix(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vsix") / "nnspec.vsix"
    r = subprocess.run([NPX, "--no-install", "vsce", "package", "--skip-license",
                        "--allow-missing-repository", "--out", str(out)],
                       cwd=EDITORS, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "npm_config_update_notifier": "false"})
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_vsix_holds_the_manifest_and_what_it_names(vsix):
    z = zipfile.ZipFile(vsix)
    names = set(z.namelist())
    assert {"extension.vsixmanifest", "extension/package.json", "extension/extension.js",
            "extension/nnspec.tmLanguage.json", "extension/language-configuration.json"} <= names
    manifest = json.loads(z.read("extension/package.json"))
    assert manifest["main"] == "./extension.js"
    (lang,) = manifest["contributes"]["languages"]
    assert lang["id"] == "nnspec" and lang["extensions"] == [".nn"]
    (grammar,) = manifest["contributes"]["grammars"]
    assert grammar["scopeName"] == "source.nnspec"
    assert json.loads(z.read("extension/" + grammar["path"].removeprefix("./"))) == \
        json.loads((EDITORS / "nnspec.tmLanguage.json").read_text("utf-8"))
    assert "extension/" + lang["configuration"].removeprefix("./") in names
    setting = manifest["contributes"]["configuration"]["properties"]["nnspec.path"]
    assert setting["type"] == "string" and setting["default"] == "nnspec"
    # the test tooling stays out
    assert not {"extension/tokenize.js", "extension/build_grammar.py"} & names
    assert not any(n.startswith(("extension/node_modules/@vscode/vsce",
                                 "extension/node_modules/vscode-textmate")) for n in names)


def _resolves(names: set[str], start: str, dep: str) -> str | None:
    """Node's lookup of ``dep`` from the package folder ``start`` inside the zip."""
    parts = start.split("/")
    while parts:
        if parts[-1] != "node_modules":
            candidate = "/".join(parts + ["node_modules", dep])
            if f"{candidate}/package.json" in names:
                return candidate
        parts.pop()
    return None


def test_vsix_bundles_the_language_client_and_all_it_needs(vsix):
    z = zipfile.ZipFile(vsix)
    names = set(z.namelist())
    assert "extension/node_modules/vscode-languageclient/package.json" in names
    assert "extension/node_modules/vscode-languageclient/node.js" in names
    # every production dependency, transitively, is in the package
    todo, seen = ["extension"], set()
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        seen.add(pkg)
        for dep in json.loads(z.read(f"{pkg}/package.json")).get("dependencies", {}):
            found = _resolves(names, pkg, dep)
            assert found is not None, f"{pkg} needs {dep}, which the .vsix lacks"
            todo.append(found)
    assert any(p.endswith("/vscode-jsonrpc") for p in seen)
    assert any(p.endswith("/minimatch") for p in seen)


def test_extracted_extension_loads_with_its_own_modules(vsix, tmp_path):
    zipfile.ZipFile(vsix).extractall(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "NODE_PATH"}
    r = subprocess.run([NODE, "-e", _LOAD, str(tmp_path / "extension")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got == {"activate": "function", "deactivate": "function",
                   "LanguageClient": "function",
                   "client": "node_modules/vscode-languageclient/node.js"}
