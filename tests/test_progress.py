"""Progress bars on standard error: drawn only on a terminal and without -q; the stages and
layer counts crosscheck, crosscheck --grad, train and import report."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

import nnspec
from nnspec.tools import cli
from nnspec.tools.progress import Counted, Progress, progress

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "specs" / "lenet5.nn")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Recorder(Progress):
    """Records what a command reports."""

    def __init__(self):
        self.stages: list[tuple[str, int | None]] = []
        self.steps: dict[str, int] = {}
        self.postfix: list[dict] = []
        self.closed = 0

    def stage(self, text, total=None):
        self.stages.append((text, total))
        self.steps[text] = 0

    def advance(self, n=1, **postfix):
        self.steps[self.stages[-1][0]] += n
        if postfix:
            self.postfix.append(postfix)

    def close(self):
        self.closed += 1


def test_no_bar_when_piped_disabled_or_without_tqdm(monkeypatch):
    assert type(progress(True, stream=io.StringIO())) is Progress
    assert type(progress(False, stream=Terminal())) is Progress
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)  # not installed
    assert type(progress(True, stream=Terminal())) is Progress


def test_bar_on_a_terminal_shows_stage_count_and_postfix_then_erases_itself():
    pytest.importorskip("tqdm")
    term = Terminal()
    with progress(True, unit="step", stream=term) as bar:
        bar.stage("Net: training", 4)
        for _ in range(4):
            bar.advance(loss=0.123456)
        bar._bar.refresh()
        drawn = term.getvalue()
    assert "Net: training" in drawn and "4/4" in drawn and "loss=0.1235" in drawn
    assert term.getvalue().endswith("\r") or term.getvalue().endswith("\x1b[A")  # erased


def test_counted_ticks_after_each_step_forwards_backwards_and_by_index():
    ticks = []
    plan = Counted(["a", "b", "c"], lambda: ticks.append(1))
    assert list(plan) == ["a", "b", "c"] and len(ticks) == 3
    assert list(reversed(plan)) == ["c", "b", "a"] and len(ticks) == 6
    assert [plan[k] for k in range(3)] == ["a", "b", "c"] and len(ticks) == 8  # 1 and 2


def test_crosscheck_reports_stages_and_every_layer():
    pytest.importorskip("torch")
    from nnspec.tools.crosscheck import crosscheck

    spec = nnspec.load(LENET)
    n = len(spec.model("LeNet5").nodes)
    bar = Recorder()
    report = crosscheck(spec, "LeNet5", progress=bar)
    assert report.ok
    names = [s for s, _ in bar.stages]
    assert names == ["LeNet5: drawing weights", "LeNet5: building the torch module",
                     "LeNet5: NumPy forward", "LeNet5: torch forward", "LeNet5: comparing"]
    assert bar.stages[2][1] == n and bar.steps["LeNet5: NumPy forward"] == n
    assert bar.steps["LeNet5: torch forward"] == n - 1  # the last step ends with the stage
    assert bar.steps["LeNet5: comparing"] == n and bar.closed == 1
    # the backends' plans are left as they were
    again = crosscheck(spec, "LeNet5")
    assert [r.max_rel for r in again.rows] == [r.max_rel for r in report.rows]


def test_crosscheck_grad_counts_forward_backward_and_comparisons():
    pytest.importorskip("torch")
    from nnspec.tools.crosscheck import crosscheck_grad

    spec = nnspec.load(LENET)
    n = len(spec.model("LeNet5").nodes)
    bar = Recorder()
    report = crosscheck_grad(spec, "LeNet5", progress=bar)
    assert report.ok
    total = dict(bar.stages)["LeNet5: NumPy forward and backward"]
    assert bar.steps["LeNet5: NumPy forward and backward"] == total == 4 * n
    assert ("LeNet5: torch backward", None) in bar.stages
    assert bar.steps["LeNet5: comparing"] == len(report.params) - 1 + n  # less input x


def test_train_reports_each_step_with_its_loss():
    pytest.importorskip("torch")
    from nnspec.tools.trainer import overfit

    bar = Recorder()
    report = overfit(nnspec.load(LENET), "LeNet5", steps=3, progress=bar)
    assert bar.stages[-1] == ("LeNet5: training", 3) and bar.steps["LeNet5: training"] == 3
    assert [p["loss"] for p in bar.postfix] == report.losses


@pytest.mark.parametrize("argv", [
    ["crosscheck", LENET],
    ["train", "--overfit-batch", "--steps", "5", LENET],
])
def test_commands_draw_on_a_terminal_and_not_with_q_or_piped(argv, monkeypatch, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("tqdm")
    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    assert cli.main(argv) == 0
    assert "LeNet5: " in term.getvalue()
    assert "ok:" in capsys.readouterr().out  # the report is on stdout, apart from the bar
    quiet = Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    assert cli.main([argv[0], "-q", *argv[1:]]) == 0
    assert quiet.getvalue() == "" and capsys.readouterr().out == ""
    monkeypatch.undo()
    assert cli.main(argv) == 0
    assert capsys.readouterr().err == ""  # piped: no bar


def test_import_draws_its_stages_on_a_terminal(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("tqdm")
    (tmp_path / "tiny_net.py").write_text(
        "import torch\n\ndef build():\n"
        "    return torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.ReLU())\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    argv = ["import", "tiny_net:build", "--input", "x: [N, 4]"]
    assert cli.main(argv) == 0
    assert "dense" in capsys.readouterr().out
    assert "tracing tiny_net:build" in term.getvalue()
    assert "checking the written spec" in term.getvalue()
    quiet = Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    assert cli.main([*argv, "-q"]) == 0
    assert quiet.getvalue() == ""


def test_graph_draws_its_stage_on_a_terminal(tmp_path, monkeypatch):
    pytest.importorskip("tqdm")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed")
    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    out = tmp_path / "g.svg"
    assert cli.main(["graph", LENET, "-o", str(out)]) == 0
    assert "drawing SVG" in term.getvalue() and out.read_text().startswith("<")
    quiet = Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    assert cli.main(["graph", "-q", LENET, "-o", str(out)]) == 0
    assert quiet.getvalue() == ""
