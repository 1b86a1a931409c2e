"""`nnspec fmt`: the canonical layout, its safety (same program, stable) and the command."""

from __future__ import annotations

import io
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nnspec.tools import cli
from nnspec.tools import fmt
from nnspec import api
from nnspec.core.diagnostics import SpecError

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = sorted((ROOT / "specs").glob("*.nn")) + [ROOT / "nnspec" / "stdlib" / "transformer.nn"]
IDS = [p.name for p in BUNDLED]


def _ir(text: str, path: str) -> dict:
    """The IR of a spec without what depends on the layout or the file's place: spans,
    file names, and the whitespace of each layer's source text."""
    def strip(x):
        if isinstance(x, dict):
            return {k: ("".join(v.split()) if k == "text" else
                        [c[0] for c in v] if k == "called_from" else strip(v))
                    for k, v in x.items()
                    if k not in ("arg_spans", "file") and not k.endswith("span")}
        if isinstance(x, list):
            return [strip(y) for y in x]
        return x
    return strip(api.loads(text, path).program.model_dump(mode="json"))


def main_with(argv, capsys, monkeypatch, stdin: str = ""):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    code = cli.main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


# ---- the bundled specs -------------------------------------------------------------------


#: A model for the library of blocks, which has none: every block is used.
USES_STDLIB = """use "transformer.nn"
model M(src: [N, S, 64], tgt: [N, T, 64]) {
    mem = src | Encoder(64, 4, 128, 0.1, 2) | EncoderLayer(64, 4, 128)
    y = tgt | DecoderLayer(mem=mem, d=64, heads=4, ff=128)
            | Decoder(mem=mem, d=64, heads=4, ff=128, n=2)
    Transformer(y, mem, 64, 4, 1, 1, 128)
}
"""


@pytest.mark.parametrize("path", BUNDLED, ids=IDS)
def test_formatting_a_bundled_spec_keeps_its_ir_and_is_stable(path, tmp_path):
    text = path.read_text()
    out = fmt.format_text(text, str(path))
    assert fmt.format_text(out, str(path)) == out
    if path.parent.name == "stdlib":  # the IR of a model that uses the formatted blocks
        (tmp_path / path.name).write_text(out)
        before = _ir(USES_STDLIB, str(ROOT / "specs" / "m.nn"))
        after = _ir(USES_STDLIB, str(tmp_path / "m.nn"))
        assert len(before["models"][0]["nodes"]) > 50
    else:
        before, after = _ir(text, str(path)), _ir(out, str(path))
    assert before["models"] and after == before
    # only layout changes: the same characters outside whitespace, comments included
    assert "".join(out.split()) == "".join(text.split())
    assert max(len(line) for line in out.splitlines()) <= 100


def _messy(text: str, rng: random.Random) -> str:
    """The same spec laid out badly: extra spaces and tabs between tokens (never inside one,
    never removing a space), random indentation, trailing blanks, extra blank lines, CRLF."""
    out = []
    for line in text.split("\n"):
        toks, comment = fmt._tokens(line)
        if line.startswith("}") and rng.random() < 0.5:
            out.append("")
        if not toks:
            out.append((" " * rng.randrange(6) + (comment or "")).rstrip() if comment
                       else " " * rng.randrange(3))
        else:
            pieces = [m.group() for m in fmt._TOKEN.finditer(line.split("#", 1)[0]
                                                             if comment else line)]
            s = " " * rng.randrange(8)
            for p in pieces:
                s += (p + rng.choice(["", "", " ", "\t", "  "]) if not p.isspace()
                      else p + rng.choice(["", " ", "\t"]))
            out.append(s + (" " * rng.randrange(1, 6) + comment if comment else ""))
        # blank lines where the layout has none: after one, after '{', before '}'
        if (not toks and not comment or line.rstrip().endswith("{")) and rng.random() < 0.5:
            out.append(" " * rng.randrange(3))
    return "\n\n" + "\r\n".join(out) + "\n\n\n"


@pytest.mark.parametrize("path", BUNDLED, ids=IDS)
def test_any_layout_of_a_spec_formats_the_same(path):
    text = path.read_text()
    want = fmt.format_text(text, str(path))
    rng = random.Random(path.name)
    for _ in range(3):
        messy = _messy(text, rng)
        assert _ir(messy, str(path)) == _ir(text, str(path))  # the mess means the same
        assert fmt.format_text(messy, str(path)) == want


def test_bundled_specs_are_in_the_canonical_layout():
    """The bundled specs are kept formatted (``nnspec fmt --check specs nnspec/stdlib``)."""
    unformatted = [p.name for p in BUNDLED if fmt.format_text(p.read_text()) != p.read_text()]
    assert not unformatted, f"run: nnspec fmt specs nnspec/stdlib ({unformatted})"


# ---- the layout, by hand -------------------------------------------------------------------

MESSY = """\


use   "transformer.nn"
const  d=512
const h = d/8   # heads
const neg = - 1
# a block
block  Basic (x , c, stride = 1) {

\ty=x|conv c k = 3 s = stride p=1|batchnorm
\t  # a note
\t   |conv c k=3 p=1   :[ N ,c*2, H/2, -1]
    y , z = x | gru 8 state | leaky_relu -0.2 h0 = x   # trailing
    return relu( y+x )  : [N, 3 * H, (H - 1) // 2]


    # end of body

}
model M(x: [N, 3, 32, 32]int)->[N, 10] {
    dense 10 * 2 as fc
        adaptive_avgpool (6,6)|dense (64 * 2) : [N,128]
    softmax -1
    dense 10 as a_very_long_name_for_the_last_layer_of_all | relu : [N, 10]
}
check M(x=M) -> [N, -1]
train M(label: [N] int) {
    loss cross_entropy(output, label) + 0.1*mse(output,x)
    optimizer adam lr=1e-3 betas=(0.9,0.99)
}
"""

CANONICAL = """\
use "transformer.nn"
const d = 512
const h = d / 8  # heads
const neg = -1

# a block
block Basic(x, c, stride=1) {
    y = x | conv c k=3 s=stride p=1 | batchnorm
          # a note
          | conv c k=3 p=1  : [N, c*2, H/2, -1]
    y, z = x | gru 8 state | leaky_relu -0.2 h0=x  # trailing
    return relu(y + x)      : [N, 3*H, (H - 1)//2]

    # end of body
}

model M(x: [N, 3, 32, 32] int) -> [N, 10] {
    dense 10 * 2 as fc
    adaptive_avgpool (6, 6) | dense (64 * 2)                       : [N, 128]
    softmax -1
    dense 10 as a_very_long_name_for_the_last_layer_of_all | relu  : [N, 10]
}

check M(x=M) -> [N, -1]

train M(label: [N] int) {
    loss cross_entropy(output, label) + 0.1 * mse(output, x)
    optimizer adam lr=1e-3 betas=(0.9, 0.99)
}
"""


def test_the_canonical_layout():
    assert fmt.format_text(MESSY) == CANONICAL
    assert fmt.format_text(CANONICAL) == CANONICAL


def test_a_continuation_without_a_pipe_before_it_stays_at_the_statements_indent():
    text = ("block B(x, c) {\n  conv c k=4 s=2 p=1 as conv\n      | batchnorm as bn | relu\n"
            "    y = x\n  | relu\n}\n")
    assert fmt.format_text(text) == ("block B(x, c) {\n    conv c k=4 s=2 p=1 as conv\n"
                                     "    | batchnorm as bn | relu\n    y = x\n    | relu\n}\n")


def test_a_space_that_means_something_is_kept():
    # `f (x)` is a layer given one parenthesised argument, `f(x)` a call; `-` a sign
    text = "model M(x: [N, 4]) -> [N, 4] {\n    identity (x)\n    leaky_relu   -0.5\n}\n"
    out = fmt.format_text(text)
    assert "    identity (x)\n" in out and "    leaky_relu -0.5\n" in out


def test_alignment_sets_apart_only_far_longer_statements():
    body = ["conv 8 k=3 as c1", "flatten", "dense 10", "conv 8 k=3 s=2 p=1 bias=false "
            "init=normal(0, 0.02) as c2 | relu"]
    text = ("model M(x: [N, 3, 8, 8]) {\n" + "".join(f"    {b} : [_]\n" for b in body)
            + "\n    dense 4 : [_]\n}\n")
    lines = fmt.format_text(text).splitlines()
    assert lines[1:4] == ["    conv 8 k=3 as c1  : [_]", "    flatten           : [_]",
                          "    dense 10          : [_]"]
    assert lines[4].endswith("as c2 | relu   : [_]")  # an outlier: three spaces
    assert lines[6] == "    dense 4  : [_]"  # a blank line starts a new run


def test_model_and_block_are_set_apart_with_their_comments():
    text = ("const a = 1\n# the block\nblock B(x) {\n    relu\n}\nmodel M(x: [N]) {\n"
            "    B()\n}\ncheck M\n\n\n\n# end\n")
    assert fmt.format_text(text) == ("const a = 1\n\n# the block\nblock B(x) {\n    relu\n}\n\n"
                                     "model M(x: [N]) {\n    B()\n}\n\ncheck M\n\n# end\n")


def test_a_file_without_a_final_newline_and_an_empty_file():
    assert fmt.format_text("model M(x: [N]) {\n relu\n}") == "model M(x: [N]) {\n    relu\n}\n"
    assert fmt.format_text("") == ""
    assert fmt.format_text("\n\n# only a comment   \n\n") == "# only a comment\n"


def test_syntax_errors_raise_the_checks_diagnostics():
    with pytest.raises(SpecError) as e:
        fmt.format_text("model M(x: [N]) {\n    conv 8 k=\n}\n", "bad.nn")
    assert e.value.render().startswith("bad.nn:2:14: error: syntax error: unexpected end of "
                                       "line [E100]")


def test_a_layout_that_would_change_the_program_is_refused(monkeypatch):
    monkeypatch.setattr(fmt, "layout", lambda text: text.replace("relu", "tanh"))
    with pytest.raises(fmt.FormatError, match="would change the program"):
        fmt.format_text("model M(x: [N]) {\n  relu\n}\n")


# ---- the command -------------------------------------------------------------------------


def _spec(tmp_path, name="m.nn", text=MESSY) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_fmt_rewrites_files_and_folders(tmp_path, capsys, monkeypatch):
    a = _spec(tmp_path)
    (tmp_path / "sub").mkdir()
    b = _spec(tmp_path / "sub", "b.nn", CANONICAL)
    c = _spec(tmp_path / "sub", "notes.txt", "not a spec")  # folders give .nn files only
    code, out, err = main_with(["fmt", str(tmp_path)], capsys, monkeypatch)
    assert (code, out) == (0, "")
    assert err == "nnspec fmt: reformatted 1 file, 1 unchanged\n"
    assert a.read_text() == CANONICAL and b.read_text() == CANONICAL
    assert c.read_text() == "not a spec"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["b.nn", "m.nn", "notes.txt", "sub"]
    assert main_with(["fmt", "-q", str(a)], capsys, monkeypatch) == (0, "", "")


def test_fmt_check_prints_a_diff_and_changes_nothing(tmp_path, capsys, monkeypatch):
    a = _spec(tmp_path)
    b = _spec(tmp_path, "b.nn", CANONICAL)
    code, out, err = main_with(["fmt", "--check", str(a), str(b)], capsys, monkeypatch)
    assert code == 1 and a.read_text() == MESSY
    assert out.startswith(f"--- {a}\n+++ {a} (formatted)\n@@ ")
    assert "\n-const  d=512\n" in out and "\n+const d = 512\n" in out and str(b) not in out
    assert err == "nnspec fmt: would reformat 1 file, 1 unchanged\n"
    assert main_with(["fmt", "--check", str(b)], capsys, monkeypatch) == (
        0, "", "nnspec fmt: would reformat 0 files, 1 unchanged\n")
    code, out2, _ = main_with(["fmt", "--diff", str(a)], capsys, monkeypatch)
    assert code == 0 and out2 == out.split(f"--- {b}")[0] and a.read_text() == MESSY


def test_fmt_check_passes_after_fmt(tmp_path, capsys, monkeypatch):
    for p in BUNDLED:
        _spec(tmp_path, p.name, p.read_text())
    assert main_with(["fmt", "-q", str(tmp_path)], capsys, monkeypatch)[0] == 0
    assert main_with(["fmt", "--check", str(tmp_path)], capsys, monkeypatch) == (
        0, "", f"nnspec fmt: would reformat 0 files, {len(BUNDLED)} unchanged\n")


def test_fmt_stdin_writes_stdout(capsys, monkeypatch):
    assert main_with(["fmt", "-"], capsys, monkeypatch, MESSY) == (
        0, CANONICAL, "nnspec fmt: reformatted 1 file, 0 unchanged\n")
    code, out, _ = main_with(["fmt", "--check", "-"], capsys, monkeypatch, MESSY)
    assert code == 1 and out.startswith("--- <stdin>\n+++ <stdin> (formatted)\n")


def test_fmt_leaves_a_spec_with_syntax_errors_as_check_reports_it(tmp_path, capsys,
                                                                  monkeypatch):
    bad = _spec(tmp_path, "bad.nn", "model M(x: [N])  {\n  conv 8 k=\n    dense 4 4 4 =\n}\n")
    ok = _spec(tmp_path, "ok.nn", MESSY)
    code, out, err = main_with(["fmt", str(bad), str(ok)], capsys, monkeypatch)
    assert code == 1 and out == ""
    assert bad.read_text().startswith("model M(x: [N])  {\n  conv 8 k=\n")
    assert ok.read_text() == CANONICAL  # the other files are still formatted
    checked = main_with(["check", "-q", str(bad)], capsys, monkeypatch)
    assert checked[0] == 1 and checked[1].count("[E100]") == 2
    assert err == checked[1] + ("nnspec fmt: reformatted 1 file, 0 unchanged, 1 not "
                                "formatted (errors)\n")
    assert "Traceback" not in err


def test_fmt_refuses_what_is_not_a_spec(tmp_path, capsys, monkeypatch):
    binary = tmp_path / "bin.nn"
    binary.write_bytes(b"model M(x: [N]) {\n    relu \xff\n}\n")
    code, out, err = main_with(["fmt", str(binary)], capsys, monkeypatch)
    assert code == 1 and out == "" and "not UTF-8 text (byte 0xff)" in err
    assert binary.read_bytes() == b"model M(x: [N]) {\n    relu \xff\n}\n"
    code, _, err = main_with(["fmt", str(tmp_path / "missing.nn")], capsys, monkeypatch)
    assert code == 2 and err == f"nnspec: error: no such file or folder: {tmp_path}/missing.nn\n"
    code, _, err = main_with(["fmt"], capsys, monkeypatch)
    assert code == 2 and "PATH" in err


def test_fmt_keeps_a_link_and_the_files_mode(tmp_path, capsys, monkeypatch):
    target = _spec(tmp_path, "real.nn")
    target.chmod(0o640)
    link = tmp_path / "link.nn"
    link.symlink_to(target)
    assert main_with(["fmt", "-q", str(link)], capsys, monkeypatch)[0] == 0
    assert link.is_symlink() and target.read_text() == CANONICAL
    assert target.stat().st_mode & 0o777 == 0o640


def test_an_internal_failure_leaves_the_file_and_says_so(tmp_path, capsys, monkeypatch):
    a = _spec(tmp_path)
    monkeypatch.setattr(fmt, "layout", lambda text: "")
    code, out, err = main_with(["fmt", str(a)], capsys, monkeypatch)
    assert code == 3 and a.read_text() == MESSY
    assert re.match(r"nnspec: internal error: .*m\.nn: formatting would change the program",
                    err)


_MODULES_AFTER = """
import sys
from nnspec.tools.cli import main
code = main(sys.argv[1:])
print(code, "nnspec.tools.fmt" in sys.modules,
      any(m == "torch" or m.startswith("torch.") for m in sys.modules))
"""


def test_fmt_never_imports_torch():
    r = subprocess.run([sys.executable, "-c", _MODULES_AFTER, "fmt", "--check", "-q",
                        "nnspec/stdlib/transformer.nn"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.split()[1:] == ["True", "False"], r.stdout + r.stderr


def test_subscripts_ties_and_several_returns_keep_their_layout():
    src = ("model M(x: [N, 4, 8]) {\n  y = x | dense 8 as enc\n  a = y[..., :2]\n"
           "  b = y[:,  -1]\n  c = y[1:3, ::2, 0]\n  d = y | dense 8 weight=enc.weight.T\n"
           "  return a,b\n}\n")
    want = ("model M(x: [N, 4, 8]) {\n    y = x | dense 8 as enc\n    a = y[..., :2]\n"
            "    b = y[:, -1]\n    c = y[1:3, ::2, 0]\n    d = y | dense 8 weight=enc.weight.T\n"
            "    return a, b\n}\n")
    assert fmt.format_text(src) == want
    assert fmt.format_text(want) == want
