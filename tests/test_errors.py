"""Broken specs with their expected errors written inline (`# E: text` on the line).

Every marked line must produce an error whose message (with notes and hint) contains the
text, and no unmarked line may produce one: all independent errors in a file are
reported in one run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import nnspec
from nnspec.core.diagnostics import SpecError

HERE = Path(__file__).parent / "errors"
MARK = re.compile(r"#\s*E:\s*(.+?)\s*$")
FILES = sorted(p for p in HERE.glob("*.nn") if not p.name.startswith("cycle_"))


def expectations(path: Path) -> dict[int, str]:
    out = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        m = MARK.search(line)
        if m:
            out[i] = m.group(1)
    return out


def full_text(d) -> str:
    parts = [d.message] + d.notes + ([d.hint] if d.hint else [])
    return " ".join(parts).replace("; hint:", ";").replace("\n", " ")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_expected_errors(path):
    spec = nnspec.load(str(path), strict=False)
    want = expectations(path)
    got: dict[int, list[str]] = {}
    for d in spec.diagnostics:
        assert d.span is not None, d.message
        assert d.span.file == str(path), f"error in another file: {d.span}: {d.message}"
        got.setdefault(d.span.line, []).append(full_text(d) + f" [{d.code}]")
    unexpected = {ln: msgs for ln, msgs in got.items() if ln not in want}
    assert not unexpected, f"unexpected errors: {unexpected}"
    for line, text in want.items():
        assert line in got, f"line {line}: expected an error containing {text!r}, got none"
        needle = text.replace("; did you mean", " did you mean")
        hay = " ".join(got[line]).replace("; did you mean", " did you mean").replace(
            "hint: ", "")
        assert needle in hay or all(w in hay for w in needle.split("; ")), \
            f"line {line}: expected {text!r} in {got[line]}"


def test_rendered_error_has_location_caret_formula_and_origin():
    text = (HERE / "shapes.nn").read_text()
    spec = nnspec.loads(text, "tiny.nn", strict=False)
    rendered = SpecError(spec.diagnostics, spec.sources).render()
    block = rendered.split("tiny.nn:4:5: error: conv output height is -1")[1]
    lines = block.splitlines()
    assert lines[1].split("#")[0].strip() == "conv 32 k=7"
    assert lines[2] == "    " + " " * 4 + "^" * len("conv 32 k=7")
    assert "F_out = floor((F_in - k + 2p) / s) + 1 = floor((5 - 7 + 2*0) / 1) + 1 = -1" in block
    assert "input here is [N, 16, 5, 5] (from line 3: maxpool k=2 s=2)" in block
    assert "hint: pad with p=1, or use a smaller kernel" in block


def test_argument_error_underlines_the_argument():
    spec = nnspec.loads("model M(x: [N, 3, 8, 8]) {\n    conv 8 k=3 s=0\n}\n", "m.nn",
                        strict=False)
    (d,) = spec.diagnostics
    assert (d.span.line, d.span.col, d.span.end_col) == (2, 16, 19)


def test_import_cycle_is_reported_at_the_use_line():
    spec = nnspec.load(str(HERE / "cycle_a.nn"), strict=False)
    (d,) = spec.diagnostics
    assert "import cycle" in d.message
    assert d.span.file.endswith("cycle_b.nn") and d.span.line == 1


def test_syntax_error_in_one_file_does_not_hide_others(tmp_path):
    (tmp_path / "a.nn").write_text("model A(x: [N, 4]) {\n    dense 8 |\n}\n")
    (tmp_path / "b.nn").write_text("model B(x: [N, 4]) {\n    dense 0\n}\n")
    diags = [d for f in ("a.nn", "b.nn")
             for d in nnspec.load(str(tmp_path / f), strict=False).diagnostics]
    assert [d.span.line for d in diags] == [2, 2]


def test_error_inside_a_block_names_the_call_site():
    text = ('block Wide(x, c) {\n    dense c | relu\n    conv c k=3\n}\n'
            'model M(x: [N, 4]) {\n    dense 8\n    Wide(16)\n}\n')
    spec = nnspec.loads(text, "b.nn", strict=False)
    (d,) = spec.diagnostics
    assert (d.span.line, d.span.col) == (3, 5)
    assert "in block Wide, called at b.nn:7:5" in d.notes


def test_lowering_error_inside_a_block_names_the_call_site():
    text = 'block B(x) {\n    dense 4 widht=3\n}\nmodel M(x: [N, 4]) {\n    B()\n}\n'
    (d,) = nnspec.loads(text, "b.nn", strict=False).diagnostics
    assert d.span.line == 2 and "in block B, called at b.nn:5:5" in d.notes
