"""Highlighting: the Pygments lexer and the TextMate grammar, on every bundled spec.

What each token should be is worked out here from nnspec's own tokens (the formatter's
tokenizer, a copy of the grammar's terminals) and registries, not from either highlighter.
The TextMate grammar runs in the engine VS Code uses (vscode-textmate with the Oniguruma
regex engine, through node); those tests are skipped when node or the engine is missing
(``npm ci --prefix editors`` installs it).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pygments = pytest.importorskip("pygments")

from pygments.lexers import get_lexer_by_name, get_lexer_for_filename  # noqa: E402
from pygments.token import Comment, Error, Keyword, Name, Number, String  # noqa: E402

from nnspec.tools import fmt  # noqa: E402
from nnspec.tools import pygments_lexer as pl  # noqa: E402
from nnspec.layers.initializers import NAMES  # noqa: E402
from nnspec.layers import REGISTRY  # noqa: E402
from nnspec.layers.losses import LOSSES  # noqa: E402
from nnspec.ir.training import OPTIMIZERS, SETTINGS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EDITORS = ROOT / "editors"
BUNDLED = sorted((ROOT / "specs").glob("*.nn")) + [ROOT / "nnspec" / "stdlib" / "transformer.nn"]
IDS = [p.name for p in BUNDLED]


def grammar_keywords() -> set[str]:
    """The words of grammar/nnspec.lark: its quoted literals and keyword terminals."""
    text = (ROOT / "grammar" / "nnspec.lark").read_text()
    text = "\n".join(line.split("//", 1)[0] for line in text.splitlines())
    quoted = set(re.findall(r'"([A-Za-z_]+)"', text))
    return quoted | {m for m in re.findall(r'^[A-Z_]+: "([a-z]+)"$', text, re.M)}


# ---- what each token is, from nnspec's own tokens --------------------------------------


def expected(text: str) -> list[tuple[int, int, str, str]]:
    """(line, column, text, what) for the tokens whose class is certain: comment, string,
    int, float, keyword, layer (a layer kind starting a stage), kwarg, dim, dtype."""
    words = grammar_keywords()
    out = []
    section = None
    for n, line in enumerate(text.split("\n")):
        toks = []
        for m in fmt._TOKEN.finditer(line):
            if m.lastgroup == "comment":
                out.append((n, m.start(), m.group(), "comment"))
                break
            if m.lastgroup != "ws":
                toks.append((m.start(), m.lastgroup, m.group()))
        brackets: list[str] = []
        prev = None
        for i, (col, kind, tok) in enumerate(toks):
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            what = None
            if kind in ("string", "int", "float"):
                what = kind
            elif kind == "name" and tok in words and not (prev and prev[2] == "as"):
                what = "keyword"  # after `as` a word is a name: `... as model` (HF's prefix)
            elif kind == "name" and section == "train" and i == 0 and tok in SETTINGS:
                what = "keyword"
            elif kind == "name" and "[" in brackets:
                what = "dim" if nxt is None or nxt[2] != "(" else None
            elif kind == "name" and tok in ("int", "float") and prev and prev[2] == "]":
                what = "dtype"
            elif (kind == "name" and nxt is not None and nxt[2] == "="
                  and nxt[0] == col + len(tok) and i > 0):
                what = "kwarg"
            elif (kind == "call" and tok[:-1] in REGISTRY) or (
                    kind == "name" and tok in REGISTRY and section == "body"
                    and (prev is None or prev[2] in ("|", "="))):
                what = "layer"
                tok = tok.rstrip("(")
            if what:
                out.append((n, col, tok, what))
            if kind in ("call", "index") or tok in ("(", "["):  # index: `h[`
                brackets.append({"call": "(", "index": "["}.get(kind, tok))
            elif tok in (")", "]"):
                brackets.pop()
            prev = (col, kind, tok)
        if toks and toks[-1][2] == "{":
            section = "train" if toks[0][2] == "train" else "body"
        elif toks and toks[0][2] == "}":
            section = None
    return out


def test_the_expectations_find_what_they_should():
    text = ('model M(x: [N, 3*H] int) {\n    conv 8 k=3 as conv | relu  # c\n'
            '    y = x | dense (4 * N)\n}\ntrain M {\n    optimizer adam lr=1e-3\n}\n')
    got = {(t, w) for _, _, t, w in expected(text)}
    assert got == {("model", "keyword"), ("N", "dim"), ("3", "int"), ("H", "dim"),
                   ("int", "dtype"), ("conv", "layer"), ("8", "int"), ("k", "kwarg"),
                   ("as", "keyword"), ("relu", "layer"), ("# c", "comment"),
                   ("dense", "layer"), ("4", "int"), ("train", "keyword"),
                   ("optimizer", "keyword"), ("lr", "kwarg"), ("1e-3", "float")}


# ---- word lists ----------------------------------------------------------------------------


def test_the_word_lists_are_nnspecs():
    assert pl.LAYER_KINDS == tuple(sorted(REGISTRY))
    assert pl.LOSSES == tuple(sorted(LOSSES))
    assert pl.INITIALIZERS == tuple(sorted(NAMES))
    assert pl.OPTIMIZERS == tuple(sorted(OPTIMIZERS))
    assert set(pl.SETTINGS) == set(SETTINGS)
    assert set(pl.DECLARATIONS + pl.KEYWORDS) == grammar_keywords()
    assert {"model", "block", "use", "check", "train", "return", "as", "const", "loss"} <= (
        grammar_keywords())


# ---- Pygments ------------------------------------------------------------------------------

PYGMENTS_TYPES = {"comment": Comment.Single, "string": String, "int": Number.Integer,
                  "float": Number.Float, "keyword": Keyword, "layer": Name.Builtin,
                  "kwarg": Name.Attribute, "dim": Name.Variable, "dtype": Keyword.Type}


def test_the_lexer_is_registered_with_pygments():
    eps = importlib.metadata.entry_points(group="pygments.lexers")
    assert any(ep.value == "nnspec.tools.pygments_lexer:NnspecLexer" for ep in eps), (
        "reinstall nnspec (pip install -e .) to register its entry points")
    assert isinstance(get_lexer_by_name("nnspec"), pl.NnspecLexer)
    assert isinstance(get_lexer_for_filename("model.nn"), pl.NnspecLexer)
    r = subprocess.run([sys.executable, "-m", "pygments", "-l", "nnspec", "-f", "html",
                        str(ROOT / "specs" / "lenet5.nn")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert '<span class="kd">model</span>' in r.stdout
    assert '<span class="nb">conv</span>' in r.stdout


@pytest.mark.parametrize("path", BUNDLED, ids=IDS)
def test_pygments_lexes_a_bundled_spec(path):
    text = path.read_text()
    toks = list(pl.NnspecLexer(stripnl=False).get_tokens_unprocessed(text))
    assert "".join(v for _, _, v in toks) == text
    assert [v for _, t, v in toks if t in Error] == []
    at = {}
    for start, ttype, value in toks:
        for k in range(start, start + len(value)):
            at[k] = ttype
    offsets = [0]
    for line in text.split("\n"):
        offsets.append(offsets[-1] + len(line) + 1)
    exp = expected(text)
    assert {w for *_, w in exp} >= {"comment", "keyword", "layer"}
    wrong = []
    for n, col, tok, what in exp:
        types = {at[offsets[n] + col + k] for k in range(len(tok))}
        if not all(t in PYGMENTS_TYPES[what] for t in types):
            wrong.append((n + 1, tok, what, types))
    assert not wrong, wrong


# ---- TextMate ------------------------------------------------------------------------------

TEXTMATE_SCOPES = {"comment": "comment.line", "string": "string.quoted",
                   "int": "constant.numeric.integer", "float": "constant.numeric.float",
                   "keyword": ("keyword.", "storage.type."), "layer": "support.function.layer",
                   "kwarg": "variable.parameter", "dim": "variable.other.dim",
                   "dtype": "storage.type.dtype"}


def test_the_textmate_grammar_is_generated_and_its_regexes_compile():
    sys.path.insert(0, str(EDITORS))
    try:
        import build_grammar
    finally:
        sys.path.remove(str(EDITORS))
    committed = (EDITORS / "nnspec.tmLanguage.json").read_text()
    assert committed == build_grammar.text(), "run: python editors/build_grammar.py"
    lexer = (ROOT / "nnspec" / "tools" / "pygments_lexer.py").read_text()
    assert lexer == build_grammar.lexer_text(), "run: python editors/build_grammar.py"
    g = json.loads(committed)
    assert g["scopeName"] == "source.nnspec" and g["fileTypes"] == ["nn"]
    regexes = []

    def walk(x):
        if isinstance(x, dict):
            regexes.extend(x[k] for k in ("match", "begin", "end") if k in x)
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(g)
    assert len(regexes) > 30
    for rx in regexes:  # written in the subset that Python's re and Oniguruma share
        re.compile(rx)


def _textmate(paths: list[Path]) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    env = dict(os.environ)
    if os.environ.get("NNSPEC_NODE_MODULES"):
        env["NODE_PATH"] = os.environ["NNSPEC_NODE_MODULES"]
    r = subprocess.run([node, str(EDITORS / "tokenize.js"), *map(str, paths)],
                       capture_output=True, text=True, timeout=120, env=env)
    if r.returncode == 3:
        pytest.skip(f"{r.stderr.strip()} (npm ci --prefix editors)")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_the_textmate_grammar_scopes_every_bundled_spec():
    tokens = _textmate(BUNDLED)
    for path in BUNDLED:
        text = path.read_text()
        lines = text.split("\n")
        per_line = tokens[str(path)]
        assert len(per_line) == len(lines)
        scopes_at = []
        for line, toks in zip(lines, per_line):
            at = {}
            for start, end, scopes in toks:
                assert scopes[0] == "source.nnspec"
                for k in range(start, end):
                    at[k] = scopes
            # nothing but blanks is left without a scope of its own
            bare = [line[k] for k in range(len(line)) if not line[k].isspace()
                    and len(at.get(k, [])) < 2]
            assert not bare, (path.name, line, bare)
            scopes_at.append(at)
        wrong = []
        for n, col, tok, what in expected(text):
            want = TEXTMATE_SCOPES[what]
            for k in range(len(tok)):
                if not any(s.startswith(want) for s in scopes_at[n][col + k]):
                    wrong.append((path.name, n + 1, tok, what, scopes_at[n][col + k]))
                    break
        assert not wrong, wrong[:10]
