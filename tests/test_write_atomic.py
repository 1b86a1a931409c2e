"""Output files are never half-written and never left behind: a run killed while writing
leaves the previous file and no temp file (or one that the next write removes), a temp file
some live run holds is left alone, and a read-only target is refused with nothing changed."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nnspec.core import util

ROOT = Path(__file__).resolve().parent.parent

# a writer that stops inside write_atomic, after the new text is written and before the
# rename, says so on stdout and waits to be killed
_WRITER = textwrap.dedent("""
    import os, sys, time
    from nnspec.core import util
    if sys.argv[2] == "named":
        del os.O_TMPFILE
    def stuck(fd):
        print("writing", flush=True)
        time.sleep(60)
    util.os.fsync = stuck
    util.write_atomic(sys.argv[1], "new " * 100_000)
""")


def _kill_while_writing(target: Path, how: str) -> None:
    p = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), how], cwd=ROOT,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "writing\n"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)


def _temps(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(".tmp"))


def _can_name_unnamed_files(folder: Path) -> bool:
    """Whether this system links an O_TMPFILE into a folder (some sandboxes cannot)."""
    if not hasattr(os, "O_TMPFILE"):
        return False
    fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o600)
    try:
        os.link(f"/proc/self/fd/{fd}", folder / "probe")
    except OSError:
        return False
    finally:
        os.close(fd)
    os.unlink(folder / "probe")
    return True


def test_a_run_killed_while_writing_leaves_the_old_file_and_nothing_else(tmp_path):
    if not _can_name_unnamed_files(tmp_path):
        pytest.skip("no unnamed files here: see the test of stale temp files below")
    target = tmp_path / "model.py"
    target.write_text("old")
    for _ in range(2):
        _kill_while_writing(target, "unnamed")
    assert os.listdir(tmp_path) == ["model.py"] and target.read_text() == "old"


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_the_next_write_removes_the_temp_files_of_killed_runs(tmp_path):
    target = tmp_path / "model.py"
    target.write_text("old")
    _kill_while_writing(target, "named")
    first = _temps(tmp_path)
    _kill_while_writing(target, "named")  # removes the first run's temp file
    left = _temps(tmp_path)
    assert len(first) == len(left) == 1 and first != left
    assert left[0].startswith(".model.py.nnspec-")
    assert target.read_text() == "old"
    util.write_atomic(str(target), "new")
    assert os.listdir(tmp_path) == ["model.py"] and target.read_text() == "new"


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_a_temp_file_a_live_run_holds_is_left_alone(tmp_path, monkeypatch):
    target = tmp_path / "model.py"
    target.write_text("old")
    monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    fd, live = util._new_temp(str(tmp_path), util._temp_prefix(str(target)), 0o644)
    try:
        util.write_atomic(str(target), "new")
        assert _temps(tmp_path) == [os.path.basename(live)]
    finally:
        os.close(fd)
    util.write_atomic(str(target), "newer")  # the holder is gone: its file is stale now
    assert os.listdir(tmp_path) == ["model.py"] and target.read_text() == "newer"


def test_the_temp_files_of_another_target_are_left_alone(tmp_path):
    other = tmp_path / ".other.py.nnspec-abcd1234.tmp"
    other.write_text("x")
    util.write_atomic(str(tmp_path / "model.py"), "new")
    assert sorted(os.listdir(tmp_path)) == [other.name, "model.py"]


def test_the_temp_name_fits_a_file_name_for_a_long_target():
    prefix = util._temp_prefix("/x/" + "é" * 120 + ".py")
    assert len(os.fsencode(prefix)) + len("xxxxxxxx.tmp") <= 255


def test_the_mode_of_a_replaced_file_is_kept(tmp_path):
    target = tmp_path / "model.py"
    target.write_text("old")
    target.chmod(0o604)
    util.write_atomic(str(target), "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o604 and target.read_text() == "new"


@pytest.mark.parametrize("through_link", [False, True])
def test_a_read_only_target_is_refused_and_left_as_it_was(tmp_path, through_link):
    target = tmp_path / "model.py"
    target.write_text("old")
    target.chmod(0o444)
    path = target
    if through_link:
        path = tmp_path / "link.py"
        path.symlink_to(target)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(util.OutputError, match=r"it is read-only \(mode 0444\)"):
        util.write_atomic(str(path), "new")
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == before
    assert stat.S_IMODE(target.stat().st_mode) == 0o444


def test_compile_refuses_a_read_only_output_with_exit_2(tmp_path, capsys):
    from nnspec.tools.cli import main

    spec = tmp_path / "m.nn"
    spec.write_text("model M(x: [N, 4]) {\n    dense 2\n}\n")
    out = tmp_path / "m.py"
    out.write_text("# kept\n")
    out.chmod(0o444)
    assert main(["compile", str(spec), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {out}: it is read-only (mode 0444)" in err
    assert out.read_text() == "# kept\n" and sorted(os.listdir(tmp_path)) == ["m.nn", "m.py"]
    out.chmod(0o644)
    assert main(["compile", str(spec), "-o", str(out), "-q"]) == 0
    assert "class M(nn.Module)" in out.read_text()
