"""`nnspec lsp`'s editing features through pygls's client: formatting, document symbols,
inlay hints of each line's shape, quick fixes for "did you mean", ranked completion, and
hover on a model with errors. The expected texts are written here, not computed by nnspec
(but for the formatter's output, which ``test_fmt`` pins down).
"""

from __future__ import annotations

import re

import pytest
from test_lsp import SPECS, Session, _run, _utf16, types

from nnspec.tools.fmt import format_text


@pytest.fixture(scope="module")
def lsp(tmp_path_factory):
    if types is None:
        pytest.skip("needs the lsp extra: pip install 'nnspec[lsp]'")
    work = tmp_path_factory.mktemp("lsp_features")
    s = Session(work)
    s.work = work
    yield s
    s.close()


def _open(lsp, name: str, text: str) -> str:
    path = lsp.work / name
    path.write_text(text)
    uri = lsp.open(path, text)
    lsp.diags(uri)  # checked: the requests below see this text
    return uri


def _whole(text: str) -> types.Range:
    lines = text.split("\n")
    return types.Range(start=types.Position(line=0, character=0),
                       end=types.Position(line=len(lines) - 1, character=_utf16(lines[-1])))


def _apply(text: str, edits: list) -> str:
    """The text after the edits (one line each or the whole text; in UTF-16 columns)."""
    lines = text.split("\n")

    def offset(p) -> int:
        line = lines[p.line]
        units = 0
        for i, ch in enumerate(line):
            if units >= p.character:
                return sum(len(x) + 1 for x in lines[:p.line]) + i
            units += _utf16(ch)
        return sum(len(x) + 1 for x in lines[:p.line]) + len(line)

    for e in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character),
                    reverse=True):
        text = text[:offset(e.range.start)] + e.new_text + text[offset(e.range.end):]
    return text


# ---- without the client ----------------------------------------------------------------

_ANNOTATED = re.compile(r"^(\s+[^#]*?)\s+(: \[[^\]]*\])\s*$")


@pytest.mark.parametrize("name", ["lenet5.nn", "resnet18.nn", "vgg16.nn", "seq2seq_gru.nn"])
def test_inlay_hints_are_the_annotations_they_replace(name):
    """A bundled spec with its shape annotations taken out: the hint at the end of each of
    those lines is the annotation (a block call's value included: seq2seq's Encode returns
    its GRU's final state, not the GRU's pair of outputs)."""
    from nnspec.tools import lsp as server

    path = SPECS / name
    lines, want = [], {}
    for i, line in enumerate(path.read_text().split("\n")):
        m = _ANNOTATED.match(line)
        if m is None or line.lstrip().startswith(("model", "block", "train")):
            lines.append(line)
        else:
            lines.append(m.group(1))
            want[i] = (len(m.group(1)), m.group(2))
    assert len(want) >= 2
    an = server.analyze("\n".join(lines), str(path))
    got = {h.line: (h.char, h.label) for h in server.inlay_hints(an)}
    assert {i: got.get(i) for i in want} == want


def _inside(a, b) -> bool:
    return (b.line, b.char) <= (a.line, a.char) and \
        (a.end_line, a.end_char) <= (b.end_line, b.end_char)


def test_editing_features_anywhere_in_the_bundled_specs():
    """Symbols, hints, fixes and formatting of every bundled spec and of prefixes of one
    (as while it is typed) never fail; a bundled spec is formatted already and has a
    symbol for each of its models."""
    from nnspec.tools import lsp as server

    for path in sorted(SPECS.glob("*.nn")):
        text = path.read_text()
        an = server.analyze(text, str(path))
        got = server.symbols(an)
        assert {s.name for s in got if s.kind == "model"} == \
            set(an.scope.models) - an.scope.imported, path
        for s in got:  # an editor refuses a name outside its symbol, a child outside it
            assert _inside(s.name_loc, s.loc), (path, s)
            assert all(_inside(c.loc, s.loc) and _inside(c.name_loc, c.loc)
                       for c in s.children), (path, s)
        server.inlay_hints(an)
        assert server.fixes(an, 0, 0, len(an.lines), 0) == []
        assert server.formatted(text, str(path)) is None, path
    text = (SPECS / "resnet18.nn").read_text()
    for cut in range(0, len(text), 61):
        an = server.analyze(text[:cut], "typed.nn")
        server.symbols(an)
        server.inlay_hints(an)
        server.fixes(an, 0, 0, len(an.lines), 0)
        server.formatted(text[:cut], "typed.nn")


# ---- formatting -----------------------------------------------------------------------

def _format(lsp, uri):
    return lsp.call(lsp.client.text_document_formatting_async(types.DocumentFormattingParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        options=types.FormattingOptions(tab_size=4, insert_spaces=True))))


def test_formatting_is_one_whole_document_edit(lsp):
    # no newline at the end, and a last line with characters outside the BMP: the edit's
    # end is counted in UTF-16 units
    text = "model M(x: [N, 8]) -> [N, 4] {\n  dense  4:[N,4]\n}\n# 😀😀 end"
    uri = _open(lsp, "fmt.nn", text)
    edits = _format(lsp, uri)
    assert len(edits) == 1
    assert edits[0].range == _whole(text) and edits[0].range.end.character == 10
    assert edits[0].new_text == format_text(text, "fmt.nn")
    assert "    dense 4  : [N, 4]\n" in edits[0].new_text
    # formatted already: no edit
    lsp.replace(uri, edits[0].new_text)
    lsp.diags(uri)
    assert list(_format(lsp, uri)) == []


def test_formatting_leaves_a_syntax_error_alone(lsp):
    text = "model M(x: [N, 8]) {\n  dense  4 (\n}\n"
    uri = _open(lsp, "fmt_broken.nn", text)
    assert lsp.diags(uri)  # the syntax error is reported
    assert list(_format(lsp, uri)) == []


# ---- document symbols ------------------------------------------------------------------

OUTLINE = """\
use "transformer.nn"
const d = 64

block Head(x, n, p=0.1) {
    y = x | dropout p
    y | dense n
}

model Net(x: [N, 16]) -> [N, 3] {
    h = x | dense d
    Head(3)
}

train Net(label: [N] int) {
    loss cross_entropy(output, label)
}
"""


def test_document_symbols(lsp):
    uri = _open(lsp, "outline.nn", OUTLINE)
    got = lsp.call(lsp.client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=types.TextDocumentIdentifier(uri=uri))))
    S = types.SymbolKind
    # the blocks of the used file are not this document's
    assert [(s.name, s.kind) for s in got] == [("d", S.Constant), ("Head", S.Function),
                                              ("Net", S.Class), ("Net", S.Event)]
    d, head, net, train = got
    assert d.detail == "64" and d.range.start.line == 1
    # a block: from its header to its closing brace; its name selected
    assert (head.range.start.line, head.range.end.line) == (3, 6)
    assert (head.range.start.character, head.range.end.character) == (0, 1)
    assert head.selection_range.start == types.Position(line=3, character=6)
    assert head.selection_range.end == types.Position(line=3, character=10)
    assert head.detail == "(x, n, p=0.1)"
    assert [(c.name, c.kind) for c in head.children] == [
        ("x", S.TypeParameter), ("n", S.TypeParameter), ("p", S.TypeParameter),
        ("y", S.Variable)]
    assert (net.range.start.line, net.range.end.line) == (8, 11)
    assert net.detail == "(x: [N, 16]) -> [N, 3]"
    assert [(c.name, c.detail) for c in net.children] == [("x", "[N, 16]"), ("h", None)]
    assert (train.range.start.line, train.range.end.line) == (13, 15)
    assert train.detail == "(label: [N] int)"


# ---- inlay hints -----------------------------------------------------------------------

HINTS = """\
block Twice(x, c) {
    x | dense c | relu
      | dense c
}

model Net(x: [N, 16]) -> [N, 8] {
    h = x | dense 32           # a comment
    Twice(24) | dropout 0.1
    Twice(8)                   : [N, 8]
}

model Bad(x: [N, 3, 8, 8]) {
    conv 4 k=3
    conv 4 k=9
    flatten
}
"""


def _hints(lsp, uri, text):
    return lsp.call(lsp.client.text_document_inlay_hint_async(types.InlayHintParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=_whole(text))))


def test_inlay_hints_show_each_lines_shape(lsp):
    uri = _open(lsp, "hints.nn", HINTS)
    lines = HINTS.split("\n")
    got = {(h.position.line, h.position.character): h for h in _hints(lsp, uri, HINTS)}
    want = {
        # a block's line: one shape per call
        (1, len(lines[1])): ": [N, 24] | [N, 8]",
        (2, len(lines[2])): ": [N, 24] | [N, 8]",
        # at the code's end, before the comment
        (6, len(lines[6].split("#")[0].rstrip())): ": [N, 32]",
        (7, len(lines[7])): ": [N, 24]",
        # line 8 has its annotation; Bad's second conv fails: no hint there or after
        (12, len(lines[12])): ": [N, 4, 6, 6]",
    }
    assert {k: h.label for k, h in got.items()} == want
    assert all(h.kind == types.InlayHintKind.Type and h.padding_left for h in got.values())
    assert "2 shapes" in got[(1, len(lines[1]))].tooltip
    # a range asks for its lines only
    part = lsp.call(lsp.client.text_document_inlay_hint_async(types.InlayHintParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=types.Position(line=6, character=0),
                          end=types.Position(line=7, character=0)))))
    assert sorted(h.position.line for h in part) == [6, 7]


def test_no_inlay_hint_on_a_line_with_an_error(lsp):
    # dense over a symbolic width fails at its line: the line before keeps its hint
    text = "model M(x: [N, C]) {\n    relu\n    dense 4\n}\n"
    uri = _open(lsp, "hints_bad.nn", text)
    assert [d.range.start.line for d in lsp.diags(uri)] == [2]
    got = _hints(lsp, uri, text)
    assert [(h.position.line, h.label) for h in got] == [(1, ": [N, C]")]


# ---- quick fixes ----------------------------------------------------------------------

def test_did_you_mean_quick_fixes(lsp):
    text = "model M(x: [N, 3, 32, 32]) {\n    conb 6 kernal=3\n    flatten\n}\n"
    uri = _open(lsp, "fixes.nn", text)
    diags = lsp.diags(uri)
    assert sorted(d.code for d in diags) == ["E043", "E049"]
    got = lsp.call(lsp.client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=types.Position(line=1, character=0),
                          end=types.Position(line=1, character=19)),
        context=types.CodeActionContext(diagnostics=diags))))
    titles = [(a.title, a.is_preferred) for a in got]
    assert titles == [("Replace 'conb' with 'conv'", True),
                      ("Replace 'kernal' with 'kernel_size'", True),
                      ("Replace 'kernal' with 'k'", False)]
    assert all(a.kind == types.CodeActionKind.QuickFix for a in got)
    assert [d.code for d in got[0].diagnostics] == ["E043"]
    fixed = text
    for a in (got[0], got[2]):
        (edits,) = a.edit.changes.values()
        assert list(a.edit.changes) == [uri] and len(edits) == 1
        fixed = _apply(fixed, edits)
    assert fixed == text.replace("conb 6 kernal=3", "conv 6 k=3")
    lsp.replace(uri, fixed)
    assert lsp.diags(uri) == []
    # a range away from the errors: nothing to fix there
    lsp.replace(uri, text)
    lsp.diags(uri)
    none = lsp.call(lsp.client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=types.Position(line=2, character=0),
                          end=types.Position(line=2, character=4)),
        context=types.CodeActionContext(diagnostics=[]))))
    assert list(none) == []


# ---- completion, hover ----------------------------------------------------------------

def _in_order(letters: str, word: str) -> bool:
    it = iter(word)
    return all(ch in it for ch in letters)


def test_completion_is_ranked_by_prefix_and_usage(lsp):
    from nnspec.layers import REGISTRY

    uri = _open(lsp, "rank.nn", "model M(x: [N, 3, 32, 32]) {\n    con\n}\n")
    items = lsp.complete(uri, 1, len("    con"))
    labels = [i.label for i in items]
    assert labels[0] == "conv" and len(labels) < 40
    assert labels.index("conv2d") < labels.index("deconv")  # prefix before inside
    assert all(_in_order("con", x) for x in labels)
    assert [i.sort_text for i in items] == sorted(i.sort_text for i in items)
    assert items[0].detail == REGISTRY["conv"].summary
    assert items[0].label_details.detail.startswith(" <out> k=<k>")
    # a kind the document uses comes first
    text = "model M(x: [N, 3, 32, 32]) {\n    conv2d 3 k=1 | conv2d 3 k=1\n    con\n}\n"
    lsp.replace(uri, text)
    lsp.diags(uri)
    assert [i.label for i in lsp.complete(uri, 2, len("    con"))][:2] == ["conv2d", "conv"]


def test_hover_on_a_model_with_errors_shows_what_is_known(lsp):
    text = ("model P(x: [N, 3, 32, 32]) -> [N, 32, 1, 1] {\n    maxpool k=2 s=2\n"
            "    maxpool k=2 s=2\n    conv 32 k=9\n}\n")
    uri = _open(lsp, "partial.nn", text)
    assert [d.range.start.line for d in lsp.diags(uri)] == [3]
    got = lsp.hover(uri, 0, 7).contents.value
    assert "None" not in got
    assert "x: [N, 3, 32, 32]" in got and "declared `[N, 32, 1, 1]`" in got
    assert "2 of 3 layers inferred" in got and "`[N, 3, 8, 8]`" in got
    assert "errors on line 4" in got


def test_the_server_starts_without_the_editing_features():
    """Building the server imports neither the formatter nor the outline: they are
    imported on their first request, so that ``initialize`` is answered sooner."""
    if types is None:
        pytest.skip("needs the lsp extra: pip install 'nnspec[lsp]'")
    out = _run("import sys; from nnspec.tools.lsp.server import _build_server; "
               "_build_server(0.0); print(sorted(m for m in ('nnspec.tools.fmt', "
               "'nnspec.tools.lsp.outline', 'nnspec.tools.lsp.actions', 'torch') "
               "if m in sys.modules))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
