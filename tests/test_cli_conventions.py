"""Command-line conventions: --version, stdin, SARIF, versioned JSON with published schemas,
help on every option, --quiet, a core install without torch, pre-commit hooks, and the
README's example outputs (run here, so they cannot go stale)."""

from __future__ import annotations

import argparse
import importlib.metadata
import inspect
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from nnspec.tools import cli

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn"))
DATA = ROOT / "tests" / "data"
SARIF_SCHEMA = DATA / "sarif-schema-2.1.0.json"  # OASIS sarif-spec, sarif-2.1/schema/

BROKEN = """\
# broken.nn
model Tiny(x: [N, 16, 10, 10]) {
    maxpool k=2 s=2
    conv 32 k=7
}
"""
TINY = "model M(x: [N, 4]) -> [N, 2] {\n    dense 3 | tanh\n    dense 2\n}\n"


def run(*args, stdin: str | None = None, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "nnspec", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=120)


def main_with(argv, capsys, monkeypatch, stdin: str = ""):
    """cli.main in-process, standard input given as bytes as a pipe would give it."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    code = cli.main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _is_stub(command: str) -> bool:
    """A subcommand whose module is still a placeholder (its run is not written yet)."""
    mod = cli._command_module(command) if command in ("fmt", "graph", "lsp") else None
    return mod is not None and "NotImplementedError" in inspect.getsource(mod.run)


# ---- --version, stdin ------------------------------------------------------------------


def test_version_is_the_installed_distributions():
    r = run("--version")
    assert r.returncode == 0 and r.stdout == f"nnspec {importlib.metadata.version('nnspec')}\n"


def test_stdin_is_checked_and_named_stdin(capsys, monkeypatch):
    code, out, err = main_with(["check", "-"], capsys, monkeypatch, BROKEN)
    assert code == 1
    assert out.startswith("<stdin>:4:5: error: conv output height is -1 [E301]\n"
                          "        conv 32 k=7\n        ^^^^^^^^^^^\n")
    assert err == "nnspec: checked 1 file, 1 model: 1 error\n"
    lenet = (ROOT / "specs" / "lenet5.nn").read_text()
    code, out, err = main_with(["check", "-", "-"], capsys, monkeypatch, lenet)
    assert (code, out, err) == (0, "", "nnspec: checked 1 file, 1 model: no errors\n")
    # not UTF-8: a located error, as for a file
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"model \xff")))
    assert cli.main(["check", "-q", "-"]) == 1
    assert capsys.readouterr().out.startswith("<stdin>:1:7: error: not UTF-8 text (byte 0xff)")


def test_stdin_for_summary_and_compile_and_the_ir_piped_back(capsys, monkeypatch):
    lenet = (ROOT / "specs" / "lenet5.nn").read_text()
    code, out, _ = main_with(["summary", "-", "--json"], capsys, monkeypatch, lenet)
    assert code == 0 and json.loads(out)["models"][0]["params"] == 61706
    code, ir_text, _ = main_with(["compile", "-", "--target", "json"], capsys, monkeypatch,
                                 lenet)
    assert code == 0 and json.loads(ir_text)["models"][0]["name"] == "LeNet5"
    code, out, _ = main_with(["summary", "-", "--json"], capsys, monkeypatch, ir_text)
    assert code == 0 and json.loads(out)["models"][0]["params"] == 61706
    code, out, err = main_with(["summary", "-"], capsys, monkeypatch, BROKEN)
    assert code == 1 and err.startswith("<stdin>:4:5: error: conv output height is -1")


def test_stdin_for_crosscheck_and_train(capsys, monkeypatch):
    pytest.importorskip("torch")
    code, out, err = main_with(["crosscheck", "-"], capsys, monkeypatch, TINY)
    assert code == 0 and "M" in out, err
    code, out, err = main_with(["crosscheck", "-q", "-"], capsys, monkeypatch, TINY)
    assert (code, out) == (0, ""), err
    trained = TINY + "train M(y: [N] int) {\n    loss cross_entropy(output, y)\n}\n"
    code, out, err = main_with(["train", "--overfit-batch", "-q", "-"],
                               capsys, monkeypatch, trained)
    assert (code, out) == (0, ""), err


# ---- SARIF ----------------------------------------------------------------------------


def _sarif_validator():
    schema = json.loads(SARIF_SCHEMA.read_text())
    assert schema["title"].startswith("Static Analysis Results Format (SARIF) Version 2.1.0")
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def test_sarif_output_is_valid_sarif_2_1_0(capsys):
    validator = _sarif_validator()
    broken = str(ROOT / "tests" / "errors" / "shapes.nn")
    assert cli.main(["check", "--format", "sarif", broken]) == 1
    log = json.loads(capsys.readouterr().out)
    validator.validate(log)
    assert cli.main(["check", "--format", "json", broken]) == 1
    listed = json.loads(capsys.readouterr().out)["errors"]
    results = log["runs"][0]["results"]
    assert len(results) == len(listed) > 10
    first = results[0]
    assert first["ruleId"] == "E301" and first["level"] == "error"
    assert first["message"]["text"].startswith("conv output height is -1\nF_out = floor(")
    loc = first["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == broken
    assert loc["region"] == {"startLine": 4, "startColumn": 5, "endLine": 4, "endColumn": 16}
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert [rules[r["ruleIndex"]]["id"] for r in results] == [r["ruleId"] for r in results]
    # a clean run is a valid log with no results; the summary line is not printed
    assert cli.main(["check", "--format", "sarif", str(ROOT / "specs")]) == 0
    cap = capsys.readouterr()
    clean = json.loads(cap.out)
    validator.validate(clean)
    assert clean["runs"][0]["results"] == [] and cap.err == ""


def test_sarif_of_stdin_names_it_as_a_valid_uri(capsys, monkeypatch):
    code, out, _ = main_with(["check", "--format", "sarif", "-"], capsys, monkeypatch, BROKEN)
    assert code == 1
    log = json.loads(out)
    _sarif_validator().validate(log)
    loc = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "%3Cstdin%3E"


# ---- versioned JSON outputs and their schemas -------------------------------------------


def _schema(name: str, capsys) -> jsonschema.Draft202012Validator:
    assert cli.main(["schema", name]) == 0
    printed = json.loads(capsys.readouterr().out)
    published = json.loads((ROOT / "nnspec" / "schemas" / f"{name}.json").read_text())
    assert printed == published  # the file in the package is what `nnspec schema` serves
    cls = jsonschema.validators.validator_for(printed)
    cls.check_schema(printed)
    return cls(printed)


def test_every_json_output_has_a_version_and_validates(capsys):
    check, summary, ir_schema = (_schema(n, capsys) for n in ("check", "summary", "ir"))
    assert cli.main(["schema"]) == 0  # the IR's, as before
    assert json.loads(capsys.readouterr().out) == ir_schema.schema
    for path in [*SPECS, ROOT / "tests" / "errors" / "shapes.nn"]:
        code = cli.main(["check", "--format", "json", str(path)])
        data = json.loads(capsys.readouterr().out)
        check.validate(data)
        assert data["version"] == 1 and code == (1 if data["error_count"] else 0)
    for path in SPECS:
        assert cli.main(["summary", "--json", str(path)]) == 0, path
        data = json.loads(capsys.readouterr().out)
        summary.validate(data)
        assert data["version"] == 1 and len(data["models"]) >= 1
        assert cli.main(["compile", "--target", "json", str(path)]) == 0
        data = json.loads(capsys.readouterr().out)
        ir_schema.validate(data)
        assert data["version"] == 1
    assert cli.main(["schema", "nonesuch"]) == 2


# ---- help, --quiet ---------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def test_every_option_and_subcommand_has_help():
    parser = cli.build_parser()
    sub = _subparsers(parser)
    helped = {a.dest for a in sub._choices_actions if a.help}
    assert set(sub.choices) == helped, set(sub.choices) - helped
    missing = [a.dest for a in parser._actions if not a.help]
    for name, p in sub.choices.items():
        if _is_stub(name):
            continue
        missing += [f"{name} {a.option_strings or a.dest}" for a in p._actions if not a.help]
    assert not missing, missing
    # --help prints it all without error
    for name in sub.choices:
        with pytest.raises(SystemExit) as e:
            parser.parse_args([name, "--help"])
        assert e.value.code == 0


def test_quiet_silences_what_is_optional(tmp_path, capsys):
    out = tmp_path / "lenet.json"
    lenet = str(ROOT / "specs" / "lenet5.nn")
    assert cli.main(["compile", lenet, "-o", str(out)]) == 0
    assert capsys.readouterr().err == f"nnspec: wrote {out}\n"
    assert cli.main(["compile", "-q", lenet, "-o", str(out)]) == 0
    assert capsys.readouterr().err == "" and json.loads(out.read_text())["version"] == 1
    assert cli.main(["check", "-q", lenet]) == 0
    assert capsys.readouterr() == ("", "")


# ---- a core install: torch unimportable ----------------------------------------------

#: Runs each command line of argv (JSON) as cli.main with torch made unimportable, as in a
#: core install, and prints {"code", "out", "err"} of each as JSON.
_NO_TORCH = """
import contextlib, io, json, sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
from nnspec.tools.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
sys.__stdout__.write(json.dumps(results))
"""


def test_a_core_install_without_torch_names_the_extra():
    extra = "this needs the torch extra: pip install 'nnspec[torch]'"
    needs = [["crosscheck", "specs/lenet5.nn"], ["crosscheck", "--grad", "specs/dqn.nn"],
             ["train", "--overfit-batch", "specs/lenet5.nn"]]
    runs = needs + [["compile", "specs/lenet5.nn", "--target", "torch"], ["check", "specs"]]
    r = subprocess.run([sys.executable, "-c", _NO_TORCH, json.dumps(runs)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)
    for argv, got in zip(needs, results):
        assert got == {"code": 2, "out": "", "err": f"nnspec: error: {argv[0]}: {extra}\n"}
    compiled, checked = results[len(needs):]
    # the source emitter needs no torch; where it still imports it, the same answer
    assert (compiled["code"], compiled["err"]) in (
        (0, ""), (2, f"nnspec: error: compile: {extra}\n"))
    if compiled["code"] == 0:
        assert "class LeNet5" in compiled["out"]
    assert checked["code"] == 0 and "no errors" in checked["err"]


# ---- pre-commit hooks, py.typed ----------------------------------------------------------


def test_pre_commit_hooks_name_existing_commands():
    yaml = pytest.importorskip("yaml")
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert {h["id"] for h in hooks} == {"nnspec-check", "nnspec-fmt"}
    parser = cli.build_parser()
    for h in hooks:
        assert {"id", "name", "entry", "language"} <= h.keys()
        assert re.search(h["files"], "specs/lenet5.nn") and not re.search(h["files"], "a.py")
        argv = shlex.split(h["entry"])
        assert argv[0] == "nnspec" and argv[1] in _subparsers(parser).choices
        if _is_stub(argv[1]):
            continue
        args = parser.parse_args(argv[1:] + ["specs/lenet5.nn"])  # pre-commit appends files
        assert args.func is not None
    check = next(h for h in hooks if h["id"] == "nnspec-check")
    r = run(*shlex.split(check["entry"])[1:], "specs/lenet5.nn", "specs/resnet18.nn")
    assert r.returncode == 0, r.stderr


def test_the_package_is_typed():
    assert (ROOT / "nnspec" / "py.typed").is_file()


# ---- the README's examples -----------------------------------------------------------


def _readme_examples() -> list[tuple[str, str]]:
    """Each ``$ nnspec ...`` and ``$ cat FILE`` line of the README's code blocks and the
    output shown under it (up to the next ``$`` line or the block's end)."""
    readme = (ROOT / "README.md").read_text()
    found = []
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", readme, re.S | re.M)
    blocks += re.findall(r"^~~~[a-z]*\n(.*?)^~~~", readme, re.S | re.M)
    for block in blocks:
        lines = block.split("\n")
        for i, line in enumerate(lines):
            if line.startswith(("$ nnspec ", "$ cat ")):
                shown = []
                for more in lines[i + 1:]:
                    if more.startswith("$ "):
                        break
                    shown.append(more)
                found.append((line[2:], "\n".join(shown).strip("\n")))
    return found


def test_readme_example_outputs_are_what_nnspec_prints(tmp_path, monkeypatch, capsys):
    """Run in a folder holding the bundled specs and the files the README shows with
    ``$ cat``, as a reader who copied them would; stdout then stderr, as a terminal shows
    a run's output."""
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    examples = _readme_examples()
    commands = [c for c, _ in examples]
    assert "nnspec check specs/" in commands and "nnspec check broken.nn" in commands
    assert "nnspec summary specs/lenet5.nn --narrow" in commands
    for command, shown in examples:
        if command.startswith("cat "):
            (tmp_path / command.split()[1]).write_text(shown + "\n")
            continue
        monkeypatch.chdir(tmp_path)
        code = cli.main(shlex.split(command)[1:])
        cap = capsys.readouterr()
        assert code in (0, 1), (command, cap.err)
        assert (cap.out + cap.err).strip("\n") == shown, command


def test_readme_run_command_writes_only_ignored_files():
    readme = (ROOT / "README.md").read_text()
    setup = next(line for line in readme.splitlines()
                 if line.startswith("python3 -m pip install") and "nnspec compile" in line)
    written = re.findall(r"nnspec compile \S+ -o (\S+)", setup)
    assert written
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT,
                            capture_output=True, text=True)
    if inside.returncode != 0:
        pytest.skip("not a git checkout (an exported tree): .gitignore cannot be asked")
    for path in written:
        r = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert r.returncode == 0, f"{path} would be left untracked in the repository"
        folder = str(Path(path).parent)
        assert folder == "." or f"mkdir -p {folder}" in setup  # compile needs the folder
