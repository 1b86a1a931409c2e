"""``nnspec explain``: every code nnspec can report has an entry, and every entry's example
is run through ``nnspec check``, which must report exactly that code, while the fixed spec
checks clean (so the examples cannot rot). SARIF rules carry the entries' descriptions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nnspec.tools import cli, explain

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nnspec"
TABLE = explain.table()

#: codes that no single spec text can show, and why (a file system, a bug, a huge input)
NO_EXAMPLE = {"E001", "E003", "E004", "E005", "E006", "E018", "E029", "E051", "E066", "E217",
              "E219", "E399", "E999"}


def emitted_codes() -> set[str]:
    """Every code written as a string literal in nnspec's source (explain's table aside)."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name != "explain.py":
            found |= set(re.findall(r"[\"']([EW]\d{3})[\"']", path.read_text("utf-8")))
    return found


def unexplained(codes: set[str], table: dict) -> list[str]:
    return sorted(codes - set(table))


def test_every_code_nnspec_can_report_is_explained():
    codes = emitted_codes()
    assert len(codes) > 100
    assert unexplained(codes, TABLE) == []
    assert sorted(set(TABLE) - codes) == [], "entries for codes nnspec no longer reports"


def test_a_code_without_an_entry_is_caught():
    smaller = {c: e for c, e in TABLE.items() if c != "E043"}
    assert unexplained(emitted_codes(), smaller) == ["E043"]


def test_only_the_listed_codes_lack_an_example():
    assert {c for c, e in TABLE.items() if e.example is None} == NO_EXAMPLE
    assert all(TABLE[c].why_no_example for c in NO_EXAMPLE)


def _check(tmp_path: Path, text: str, capsys) -> tuple[int, list[str]]:
    """``nnspec check --format json`` on the text (IR JSON when it starts with "{"): the
    exit status and the codes reported, errors and warnings."""
    path = tmp_path / ("example.json" if text.lstrip().startswith("{") else "example.nn")
    path.write_text(text, encoding="utf-8")
    code = cli.main(["check", "--format", "json", str(path)])
    data = json.loads(capsys.readouterr().out)
    return code, [d["code"] for d in data["errors"] + data.get("warnings", [])]


@pytest.mark.parametrize("code", sorted(set(TABLE) - NO_EXAMPLE))
def test_the_example_has_exactly_its_code_and_the_fix_checks_clean(code, tmp_path, capsys):
    e = TABLE[code]
    status, got = _check(_fresh(tmp_path, "bad"), e.example, capsys)
    assert got and set(got) == {code}, f"{code}'s example reports {got}"
    assert status == (1 if code.startswith("E") else 0)
    status, got = _check(_fresh(tmp_path, "fixed"), e.fixed, capsys)
    assert (status, got) == (0, []), f"{code}'s fixed spec reports {got}"


def _fresh(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def test_explain_prints_the_meaning_the_example_and_the_fix(capsys):
    assert cli.main(["explain", "e43"]) == 0
    out = capsys.readouterr().out
    e = TABLE["E043"]
    assert out.startswith("E043: unknown layer kind\n")
    assert "    model M(x: [N, 8]) {\n        dence 4\n    }" in out
    assert "Fix: spell the kind as nnspec does" in out
    assert out.index("dence 4") < out.index("Fix:") < out.rindex("dense 4")
    assert e.meaning.split()[0] in out and "\x1b[" not in out
    assert cli.main(["explain", "5"]) == 0
    assert "Example: none (it needs a file of many megabytes)" in capsys.readouterr().out


def test_explain_without_a_code_lists_every_code(capsys):
    assert cli.main(["explain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(TABLE)
    assert "E043  unknown layer kind" in lines


def test_an_unknown_code_is_a_usage_error_with_a_suggestion(capsys):
    assert cli.main(["explain", "E1000"]) == 2
    err = capsys.readouterr().err
    assert err == "nnspec: error: no error code E1000 (did you mean E100?); nnspec explain " \
                  "lists them all\n"


def test_the_table_format_is_checked():
    good = "## E900 a title\nmeaning\nexample:\n    bad\nfix: do this\n    good\n"
    (e,) = explain.parse(good).values()
    assert (e.title, e.meaning, e.example, e.fix, e.fixed) == (
        "a title", "meaning", "bad\n", "do this", "good\n")
    with pytest.raises(ValueError, match="E900 needs"):
        explain.parse("## E900 a title\nmeaning\nexample:\n    bad\n")
    with pytest.raises(ValueError, match="twice"):
        explain.parse(good + good)


def test_sarif_rules_carry_descriptions_and_help(capsys):
    broken = str(ROOT / "tests" / "errors" / "shapes.nn")
    assert cli.main(["check", "--format", "sarif", broken]) == 1
    rules = json.loads(capsys.readouterr().out)["runs"][0]["tool"]["driver"]["rules"]
    assert rules
    for rule in rules:
        e = TABLE[rule["id"]]
        assert rule["shortDescription"] == {"text": e.title}
        assert rule["fullDescription"] == {"text": e.meaning}
        assert rule["helpUri"] == explain.HELP_URI
        assert e.fix in rule["help"]["text"]
