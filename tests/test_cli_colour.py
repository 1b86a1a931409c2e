"""The command line's terminal manners: colour (``--color``, NO_COLOR, a terminal or not),
did-you-mean hints for misspelt options, commands and choices, and ``summary``/``graph``
refusing a folder."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from nnspec.core.diagnostics import Diagnostic
from nnspec.core.source import Source, Span
from nnspec.tools import cli, common

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")
BROKEN = "model M(x: [N, 16, 5, 5]) {\n    conv 8 k=7\n}\n"


@pytest.fixture
def broken(tmp_path) -> str:
    path = tmp_path / "broken.nn"
    path.write_text(BROKEN)
    return str(path)


def _run(argv, capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


class _Terminal:
    def isatty(self) -> bool:
        return True


class _Pipe:
    def isatty(self) -> bool:
        return False


def test_colour_is_off_by_default_off_a_terminal(broken, capsys):
    code, out, _ = _run(["check", broken], capsys)
    assert code == 1 and "\x1b" not in out
    assert out.startswith(f"{broken}:2:5: error: conv output height is -1 [E301]\n")


@pytest.mark.parametrize("argv", [["--color", "always", "check"], ["check", "--color=always"],
                                  ["--colour=always", "check"]])
def test_color_always_styles_the_diagnostic_and_only_adds_escapes(argv, broken, capsys):
    _, plain, _ = _run(["check", broken], capsys)
    code, out, _ = _run([*argv, broken], capsys)
    assert code == 1 and ANSI.sub("", out) == plain
    first, source, carets = out.splitlines()[:3]
    assert first == (f"\x1b[1m{broken}:2:5:\x1b[0m \x1b[1;31merror:\x1b[0m "
                     "\x1b[1mconv output height is -1\x1b[0m \x1b[1;31m[E301]\x1b[0m")
    assert source == "        conv 8 k=7"
    assert carets == "        \x1b[1;31m" + "^" * len("conv 8 k=7") + "\x1b[0m"
    assert "  \x1b[1;36mhint:\x1b[0m pad with p=1" in out


def test_color_never_wins_over_a_terminal(broken, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    _, auto, _ = _run(["check", broken], capsys)
    _, never, _ = _run(["check", "--color", "never", broken], capsys)
    assert "\x1b[1;31merror:" in auto and "\x1b" not in never


def test_auto_colours_a_terminal_unless_no_color_is_set(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    common.set_color("auto")
    assert common.use_color(_Terminal()) and not common.use_color(_Pipe())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not common.use_color(_Terminal())
    common.set_color("always")
    assert common.use_color(_Pipe())  # the flag overrides NO_COLOR
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    common.set_color(None)
    assert not common.use_color(_Terminal())


def test_errors_on_stderr_follow_the_flag_too(broken, capsys):
    code, _, err = _run(["--color", "always", "summary", broken], capsys)
    assert code == 1 and "\x1b[1;31merror:\x1b[0m" in err
    code, _, err = _run(["--color", "always", "summary", "nonesuch.nn"], capsys)
    assert code == 2 and err == "nnspec: \x1b[1;31merror:\x1b[0m no such file: nonesuch.nn\n"


def test_a_warning_is_yellow_and_plain_text_is_unchanged():
    d = Diagnostic("W001", "the value 'y' is computed but never used",
                   Span("m.nn", 1, 1, 1, 2), hint="use it", severity="warning")
    src = {"m.nn": Source("m.nn", "y = x\n")}
    assert d.render(src) == ("m.nn:1:1: warning: the value 'y' is computed but never used "
                             "[W001]\n    y = x\n    ^\n  hint: use it")
    coloured = d.render(src, color=True)
    assert "\x1b[1;33mwarning:\x1b[0m" in coloured and "\x1b[1;33m^\x1b[0m" in coloured
    assert ANSI.sub("", coloured) == d.render(src)


def test_a_misspelt_option_gets_a_suggestion_not_the_usage(broken, capsys):
    code, out, err = _run(["check", "--fromat", "json", broken], capsys)
    assert (code, out) == (2, "")
    assert err == ("nnspec check: error: unrecognized arguments: --fromat\n"
                   "  hint: did you mean --format? (see nnspec check --help)\n")
    _, _, err = _run(["summary", broken, "--jsno"], capsys)
    assert "did you mean --json?" in err and "usage:" not in err


def test_a_misspelt_command_or_choice_gets_a_suggestion(broken, capsys):
    code, _, err = _run(["chek", broken], capsys)
    assert code == 2 and err.endswith("\n  hint: did you mean check?\n")
    assert "invalid choice: 'chek'" in err and "usage:" not in err
    code, _, err = _run(["check", "--format", "jsn", broken], capsys)
    assert code == 2 and err.endswith("\n  hint: did you mean json?\n")


def test_an_option_like_nothing_gets_the_commands_usage(broken, capsys):
    code, _, err = _run(["check", "--zzzzzz", broken], capsys)
    assert code == 2 and "hint:" not in err
    assert err.startswith("usage: nnspec check ")
    assert err.endswith("nnspec check: error: unrecognized arguments: --zzzzzz\n")


@pytest.mark.parametrize("command", ["summary", "graph"])
def test_summary_and_graph_refuse_a_folder_naming_its_specs(command, tmp_path, capsys):
    (tmp_path / "a.nn").write_text("model A(x: [N, 4]) {\n    dense 2\n}\n")
    (tmp_path / "b.nn").write_text("model B(x: [N, 4]) {\n    dense 2\n}\n")
    code, out, err = _run([command, str(tmp_path)], capsys)
    a, b = tmp_path / "a.nn", tmp_path / "b.nn"
    assert (code, out) == (2, "")
    assert err == (f"nnspec: error: {command} takes one spec file, and {tmp_path} is a folder; "
                   f"its specs: {a}, {b} (nnspec {command} {a}; nnspec check takes "
                   "folders)\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run([command, str(empty)], capsys)
    assert code == 2 and "a folder with no .nn files in it" in err
