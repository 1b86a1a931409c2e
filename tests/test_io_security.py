"""Files in and out: the parser tables, output paths, inputs that are not specs, excerpts,
GitHub annotations and the cap on printed errors."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from nnspec.tools import cli, common
from nnspec.frontends.nn import parse
from nnspec.core.diagnostics import Diagnostic
from nnspec.core.source import MAX_FILE_BYTES, Source, Span

ROOT = Path(__file__).resolve().parent.parent
OK_SPEC = "model M(x: [N, 4]) {\n    dense 3\n}\n"


@pytest.fixture
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "m.nn"
    path.write_text(OK_SPEC)
    return path


def main(*args) -> int:
    return cli.main([str(a) for a in args])


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (a read that blocks on a FIFO, say)."""
    def boom(signum, frame):
        raise TimeoutError(f"took over {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# -- the parser: no cache at a shared, guessable path --------------------------------------

_PLANT = """
import hashlib, os, pickle, sys
import lark

class Evil:
    def __reduce__(self):
        return (open, (sys.argv[2], "w"))

grammar = open(sys.argv[1]).read()
# the file Lark(grammar, parser="lalr", maybe_placeholders=True, cache=True) loads first
opts = "parserlalrmaybe_placeholdersTruecacheTrue"
digest = hashlib.sha256((grammar + opts + lark.__version__ + str(sys.version_info[:2])).encode())
digest = digest.hexdigest()
path = os.path.join(os.environ["TMPDIR"], ".lark_cache_%s_%s_%s_%s.tmp" % (
    sys.argv[3], digest, *sys.version_info[:2]))
with open(path, "wb") as f:
    f.write(digest.encode() + b"\\n")
    pickle.dump(Evil(), f)
"""

_CHECK_WATCHED = """
import sys
seen = []
def hook(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(sys.argv[1]):
        seen.append(args[0])
    if event == "pickle.find_class":
        seen.append("unpickled " + repr(args))
sys.addaudithook(hook)
from nnspec.tools import cli
rc = cli.main(["check", sys.argv[2]])
print("SEEN", seen)
sys.exit(rc)
"""


def test_a_planted_parser_cache_is_never_loaded(tmp_path, spec):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    marker = tmp_path / "pwned"
    env = dict(os.environ, TMPDIR=str(tmp))
    py = [sys.executable, "-c"]
    subprocess.run(py + [_PLANT, str(parse.grammar_path()), str(marker), getpass.getuser()],
                   env=env, check=True, timeout=60)
    r = subprocess.run(py + [_CHECK_WATCHED, str(tmp), str(spec)], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SEEN []" in r.stdout  # nothing in the temp dir opened, nothing unpickled
    assert not marker.exists()
    # the control: Lark's own cache would have run the planted file
    subprocess.run(py + ["import lark, sys; lark.Lark(open(sys.argv[1]).read(), parser='lalr', "
                         "maybe_placeholders=True, cache=True)", str(parse.grammar_path())],
                   env=env, capture_output=True, timeout=60)
    assert marker.exists()


def test_shipped_tables_belong_to_the_grammar_and_parse_like_a_fresh_parser(monkeypatch):
    import lark

    tables = json.loads(parse.tables_path().read_text())
    regen = 'regenerate: python -c "from nnspec.frontends.nn import parse; parse.write_tables()"'
    assert tables["grammar_sha256"] == hashlib.sha256(
        parse.grammar_text().encode()).hexdigest(), regen
    assert tables["lark_version"] == lark.__version__, regen
    shipped = parse._load_tables(parse.grammar_text())
    assert shipped is not None
    fresh = lark.Lark(parse.grammar_text(), parser="lalr", maybe_placeholders=True,
                      transformer=parse._builder)
    files = sorted([*ROOT.glob("specs/*.nn"), *ROOT.glob("nnspec/stdlib/*.nn"),
                    *ROOT.glob("tests/errors/*.nn")])
    assert len(files) > 10
    for f in files:
        text = f.read_text()
        got = []
        for p in (fresh, shipped):
            monkeypatch.setattr(parse, "_parser", p)
            module, errors, blanked = parse.parse_recover(text, str(f))
            got.append((repr(module), [d.render() for d in errors], blanked))
        assert got[0] == got[1], f


def test_tables_of_another_grammar_or_lark_are_not_used(monkeypatch):
    import lark

    assert parse._load_tables(parse.grammar_text() + "\n// changed\n") is None
    monkeypatch.setattr(lark, "__version__", "0.0.1")
    assert parse._load_tables(parse.grammar_text()) is None


def test_the_json_encoding_of_lark_data_keeps_int_keys_and_tuples():
    data = {"a": [1, (2, "x")], "__b": None, 3: {4: (True, {"c": 5})}}
    back = json.loads(json.dumps(parse._to_json(data)), object_hook=parse._from_json)
    assert back == data
    assert isinstance(back[3][4], tuple) and isinstance(back["a"][1], tuple)


# -- compile -o -------------------------------------------------------------------------------

def _compile_json(spec, out, capsys) -> tuple[int, str]:
    rc = main("compile", spec, "--target", "json", "-o", out)
    return rc, capsys.readouterr().err


def test_compile_to_dev_null_keeps_the_device(spec, capsys):
    rc, err = _compile_json(spec, "/dev/null", capsys)
    assert rc == 0 and err == "nnspec: wrote /dev/null\n"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_compile_to_dev_stdout_is_like_dash(spec, capsys):
    assert main("compile", spec, "--target", "json", "-o", "/dev/stdout") == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["models"][0]["name"] == "M"
    assert "wrote" not in out.err


def test_compile_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path, spec,
                                                                          capsys):
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to("real.json")
    rc, _ = _compile_json(spec, link, capsys)
    assert rc == 0
    assert link.is_symlink() and os.readlink(link) == "real.json"
    assert json.loads(real.read_text())["models"][0]["name"] == "M"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


def test_compile_to_a_fifo_writes_to_a_reader_and_refuses_without_one(tmp_path, spec, capsys):
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    with deadline(20):
        rc, err = _compile_json(spec, fifo, capsys)
    assert rc == 2
    assert err == f"nnspec: error: cannot write {fifo}: it is a FIFO that nobody reads\n"
    # a reader holds the FIFO open (the output fits in the pipe's buffer)
    with os.fdopen(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        with deadline(20):
            rc, _ = _compile_json(spec, fifo, capsys)
        got = f.read()
    assert rc == 0 and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert json.loads(got)["models"][0]["name"] == "M"


@pytest.mark.parametrize("case", ["folder", "trailing slash", "missing parent", "file parent"])
def test_bad_output_paths_are_usage_errors_and_change_nothing(tmp_path, spec, capsys, case):
    old = tmp_path / "old.json"
    old.write_text("old")
    out, why = {
        "folder": (tmp_path, "it is a folder"),
        "trailing slash": (f"{tmp_path}/new/", "the name ends with '/' (a folder)"),
        "missing parent": (tmp_path / "nope" / "x.json", f"no such folder {tmp_path}/nope"),
        "file parent": (old / "x.json", "Not a directory"),
    }[case]
    rc, err = _compile_json(spec, out, capsys)
    assert rc == 2
    assert err == f"nnspec: error: cannot write {out}: {why}\n"
    assert old.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]


def test_an_unwritable_folder_is_a_usage_error(tmp_path, spec, capsys, monkeypatch):
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    old = tmp_path / "old.json"
    old.write_text("old")
    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # what a read-only folder does
    rc, err = _compile_json(spec, old, capsys)
    assert rc == 2
    assert err == (f"nnspec: error: cannot write {old}: Permission denied "
                   f"(creating a file in {tmp_path})\n")
    assert old.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["old.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="a read-only folder does not stop root")
def test_a_read_only_folder_is_a_usage_error(tmp_path, spec, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        rc, err = _compile_json(spec, folder / "x.json", capsys)
    finally:
        folder.chmod(0o755)
    assert rc == 2 and "Permission denied" in err and not list(folder.iterdir())


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    from nnspec.core import util

    old = tmp_path / "old.json"
    old.write_text("old")

    def fail(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(util.OutputError, match="No space left on device"):
        util.write_atomic(str(old), "new")
    assert old.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["old.json"]


# -- reading: only regular files, of bounded size, of UTF-8 text ----------------------------

def _check(capsys, *paths, fmt="text") -> tuple[int, str]:
    with deadline(20):
        rc = main("check", "-q", "--format", fmt, *paths)
    return rc, capsys.readouterr().out


def test_a_fifo_is_refused_without_blocking(tmp_path, capsys):
    fifo = tmp_path / "f.nn"
    os.mkfifo(fifo)
    assert _check(capsys, fifo) == (
        1, f"{fifo}:1:1: error: {fifo} is not a regular file (a FIFO) [E004]\n")


def test_dev_zero_and_a_sparse_4_gib_file_are_refused_unread(tmp_path, capsys):
    assert _check(capsys, "/dev/zero") == (
        1, "/dev/zero:1:1: error: /dev/zero is not a regular file (a character device) [E004]\n")
    big = tmp_path / "big.nn"
    with open(big, "wb") as f:
        f.truncate(4 * 2**30)
    assert _check(capsys, big) == (
        1, f"{big}:1:1: error: {big} is too large for a spec (4,294,967,296 bytes; "
           "the limit is 16 MiB) [E005]\n")
    assert MAX_FILE_BYTES == 16 * 2**20


def test_json_ir_files_get_the_same_checks(tmp_path, capsys):
    fifo = tmp_path / "ir.json"
    os.mkfifo(fifo)
    assert _check(capsys, fifo) == (
        1, f"{fifo}:1:1: error: {fifo} is not a regular file (a FIFO) [E004]\n")
    with deadline(20):
        assert main("summary", fifo) == 1
    assert "is not a regular file (a FIFO) [E004]" in capsys.readouterr().err
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    rc, out = _check(capsys, big)
    assert rc == 1 and "is too large for a spec (16,777,217 bytes" in out


def test_not_utf8_is_located_at_the_first_bad_byte(tmp_path, capsys):
    bad = tmp_path / "bad.nn"
    bad.write_bytes(b"model M(x: [N, 4]) {\n    \xff\n}\n")  # repro R22
    assert _check(capsys, bad) == (
        1, f"{bad}:2:5: error: not UTF-8 text (byte 0xff) [E006]\n        \ufffd\n        ^\n")
    # the column counts characters, as Lark does; a BOM is not text
    bad.write_bytes(b"\xef\xbb\xbf# \xc3\xa9t\xc3\xa9\n# \xc3\xa9\xc3\x28\n")
    rc, out = _check(capsys, bad)
    assert out.startswith(f"{bad}:2:4: error: not UTF-8 text (byte 0xc3) [E006]\n")
    bad.write_bytes(b"\xef\xbb\xbf" + OK_SPEC.encode())
    assert _check(capsys, bad) == (0, "")


def test_use_of_a_folder_a_long_name_a_nul_or_a_bad_file_is_an_error_at_the_use(
        tmp_path, capsys):
    (tmp_path / "sub.nn").mkdir()
    (tmp_path / "bin.nn").write_bytes(b"model M(x: [N]) {\n  relu \xc3\x28\n}\n")
    long = "a" * 300 + ".nn"  # repro R15
    main_nn = tmp_path / "main.nn"
    main_nn.write_text(f'use "sub.nn"\nuse "{long}"\nuse "bin.nn"\nuse "x\0y.nn"\n' + OK_SPEC)
    rc, out = _check(capsys, main_nn)
    assert rc == 1
    errors = [line for line in out.splitlines() if ": error: " in line]
    sub = os.path.relpath(tmp_path / "sub.nn")
    lng = os.path.relpath(tmp_path / long)
    binf = os.path.relpath(tmp_path / "bin.nn")
    nul = os.path.relpath(tmp_path / "x\0y.nn")
    assert errors == [
        f"{binf}:2:8: error: not UTF-8 text (byte 0xc3) [E006]",
        f"{main_nn}:1:5: error: {sub} is a folder, not a file [E004]",
        f"{main_nn}:2:5: error: cannot read {lng}: File name too long [E001]",
        f"{main_nn}:4:5: error: cannot read {nul!r}: embedded null byte [E001]",
    ]
    assert f"  imported at {main_nn}:3:5" in out


def test_use_imports_nn_files_only_and_never_shows_another_file(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET line one\n")
    (tmp_path / "alias.nn").symlink_to(secret)
    main_nn = tmp_path / "main.nn"
    main_nn.write_text(f'use "{secret}"\nuse "alias.nn"\n' + OK_SPEC)
    rc, out = _check(capsys, main_nn)
    assert rc == 1 and "SECRET" not in out
    assert out.splitlines()[0] == (f"{main_nn}:1:5: error: use imports .nn spec files only, "
                                   f"not {secret} [E007]")
    assert f"{main_nn}:2:5: error: use imports .nn spec files only, not " in out
    # a folder is searched for .nn files; a link in it to another kind of file is skipped
    assert common.spec_files([str(tmp_path)]) == [str(main_nn)]


# -- GitHub annotations ---------------------------------------------------------------------

def test_github_format_escapes_file_names(tmp_path, capsys):
    folder = tmp_path / "a\n::warning file=x::injected,b;c%d"
    folder.mkdir()
    spec = folder / "m.nn"
    spec.write_text("model M(x: [N, 4]) {\n    rleu\n}\n")
    rc, out = _check(capsys, spec, fmt="github")
    assert rc == 1
    esc = (str(tmp_path) + "/a%0A%3A%3Awarning file=x%3A%3Ainjected%2Cb%3Bc%25d/m.nn")
    assert f"::error file={esc},line=2,col=5,endLine=2,endColumn=9,title=nnspec E" in out
    lines = out.splitlines()
    assert lines and all(line.startswith(f"::error file={esc},") for line in lines)
    d = Diagnostic("E001", "50% done\nnext: a, b", None, hint="x::y")
    assert d.github() == "::error title=nnspec E001::50%25 done%0Anext: a, b%0Ahint: x::y"


# -- excerpts -------------------------------------------------------------------------------

def test_a_long_line_is_cut_around_the_caret():
    src = Source("f.nn", "x" * 100 + "{" * 50_000 + "\n")
    got = src.excerpt(Span("f.nn", 1, 25_001, 1, 25_002))
    assert got == "    ..." + "{" * 120 + "...\n" + " " * 47 + "^"
    assert src.excerpt(Span("f.nn", 1, 3, 1, 5)) == (
        "    " + "x" * 100 + "{" * 20 + "...\n" + " " * 6 + "^^")
    assert src.excerpt(Span("f.nn", 1, 50_101, 1, 50_102)) == (
        "    ..." + "{" * 120 + "\n" + " " * 127 + "^")
    # a caret wider than the window stops at its edge
    assert src.excerpt(Span("f.nn", 1, 200, 1, 40_000)) == (
        "    ..." + "{" * 120 + "...\n" + " " * 47 + "^" * 80)
    # only the characters around the caret are looked at (a 16 MiB line stays instant)
    huge = Source("g.nn", "{" * 2_000_000 + "\n")
    assert huge.excerpt(Span("g.nn", 1, 1_000_001, 1, 1_000_002)) == (
        "    ..." + "{" * 120 + "...\n" + " " * 47 + "^")


def test_a_long_line_error_end_to_end(tmp_path, capsys):
    spec = tmp_path / "long.nn"
    spec.write_text("model M(x: [N, 4]) {\n    dense 3 " + "}" * 50_000 + "\n}\n")
    rc, out = _check(capsys, spec)
    assert rc == 1 and len(out) < 1000
    assert out.startswith(f"{spec}:2:13: error: syntax error: unexpected '}}' [E100]\n"
                          "        dense 3 " + "}" * 108 + "...\n" + " " * 16 + "^\n")


def test_lines_are_split_at_newlines_only():
    text = "model M(x: [N, 4]) {\n    dense\x0c3\n    relu\r\n    conv 3 k=3\n}\n"  # R21
    src = Source("f.nn", text)
    assert src.lines == ["model M(x: [N, 4]) {", "    dense\x0c3", "    relu",
                         "    conv 3 k=3", "}"]
    assert src.excerpt(Span("f.nn", 4, 5, 4, 15)) == "        conv 3 k=3\n        ^^^^^^^^^^"
    assert src.excerpt(Span("f.nn", 2, 11, 2, 12)) == "        dense\u240c3\n" + " " * 14 + "^"


def test_excerpts_expand_tabs_under_the_caret_and_show_control_characters():
    src = Source("f.nn", "\tconv 3\x1b[2J k=3\n\u4e2d\u6587 relu\n")
    assert src.excerpt(Span("f.nn", 1, 2, 1, 6)) == (
        "        conv 3\u241b[2J k=3\n        ^^^^")
    assert src.excerpt(Span("f.nn", 2, 4, 2, 8)) == "    \u4e2d\u6587 relu\n" + " " * 9 + "^^^^"


# -- the cap on printed errors --------------------------------------------------------------

def test_check_prints_at_most_100_errors(tmp_path, capsys):
    spec = tmp_path / "many.nn"
    spec.write_text("".join(f"model M{i}(x: [N, 4]) {{\n    rleu\n}}\n" for i in range(250)))
    rc, js = _check(capsys, spec, fmt="json")
    data = json.loads(js)
    n = data["error_count"]
    assert rc == 1 and n >= 250 and len(data["errors"]) == n
    with deadline(60):
        rc = main("check", spec)
    out = capsys.readouterr()
    assert rc == 1
    assert out.out.count(": error: ") == 100
    assert out.out.endswith(f"\n... and {n - 100:,} more errors\n")
    assert out.err == f"nnspec: checked 1 file, 250 models: {n} errors\n"
    rc, gh = _check(capsys, spec, fmt="github")
    assert rc == 1 and gh.count("::error ") == 100
    assert gh.endswith(f"... and {n - 100:,} more errors\n")
