"""`nnspec lsp`: the real entry point (`python -m nnspec lsp`) driven by pygls's LSP client.

One server runs for the module; each test opens its own documents. The expectations are
computed from the spec texts here (line numbers, UTF-16 columns), not from nnspec.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
STDLIB = ROOT / "nnspec" / "stdlib" / "transformer.nn"
TIMEOUT = 20.0


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)


# ---- without pygls ------------------------------------------------------------


def test_import_is_cheap():
    out = _run("import sys, nnspec.tools.cli, nnspec.tools.lsp; "
                "print(sorted(m for m in ('pygls', 'lsprotocol', 'torch') "
                "if m in sys.modules))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_missing_pygls_is_a_usage_error(monkeypatch, capsys):
    from nnspec.tools.cli import main

    monkeypatch.setitem(sys.modules, "pygls", None)  # import pygls now raises ImportError
    monkeypatch.setitem(sys.modules, "pygls.lsp.server", None)
    assert main(["lsp"]) == 2
    err = capsys.readouterr().err
    assert err == "nnspec: error: this needs the lsp extra: pip install 'nnspec[lsp]'\n"


def test_bad_debounce_is_a_usage_error(capsys):
    from nnspec.tools.cli import main

    assert main(["lsp", "--debounce", "-5"]) == 2
    assert main(["lsp", "--debounce", "nan"]) == 2
    err = capsys.readouterr().err
    assert err.count("--debounce takes milliseconds") == 2 and "Traceback" not in err


def test_every_position_of_the_bundled_specs():
    """Hover, definition and completion anywhere in every bundled spec, and in every prefix
    of one (as while it is typed), never fail; hovering at a layer shows its output type
    as the API infers it."""
    import nnspec
    from nnspec.tools import lsp

    for path in sorted(SPECS.glob("*.nn")):
        text = path.read_text()
        an = lsp.analyze(text, str(path))
        assert lsp.problems(an) == [], path
        spec = nnspec.load(str(path))
        for m in spec.model_names:
            for r in spec.layers(m):
                file, line, col = r.node.span[:3]
                if r.node.called_from or Path(file).resolve() != path.resolve():
                    continue
                got = lsp.hover(an, line - 1, col - 1)
                assert got is not None and f"`{r.output}`" in got, (path, line, got)
        for i, line in enumerate(an.lines):
            for c in {0, len(line) // 2, len(line)}:
                lsp.hover(an, i, c)
                lsp.definition(an, i, c)
                lsp.completions(an, line[:c])
    text = (SPECS / "seq2seq_gru.nn").read_text()
    for cut in range(0, len(text), 97):
        an = lsp.analyze(text[:cut], "typed.nn")
        lines = an.lines or [""]
        lsp.problems(an)
        lsp.hover(an, len(lines) - 1, len(lines[-1]))
        lsp.definition(an, len(lines) - 1, len(lines[-1]))
        lsp.completions(an, lines[-1])


# ---- through the client ---------------------------------------------------------


try:
    from lsprotocol import types
    from pygls.lsp.client import LanguageClient
    from pygls.uris import from_fs_path
except ImportError:  # the tests above still run: they are about pygls being absent
    types = None


class Session:
    """A server subprocess and a client on an event loop of their own (in a thread)."""

    def __init__(self, cwd: Path):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = LanguageClient("nnspec-tests", "0")
        self.diagnostics: dict = {}  # uri -> the latest PublishDiagnosticsParams
        self.cond = threading.Condition()
        self.versions: dict[str, int] = {}

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def _publish(params):
            with self.cond:
                self.diagnostics[params.uri] = params
                self.cond.notify_all()

        self.call(self.client.start_io(sys.executable, "-m", "nnspec", "lsp", cwd=str(cwd)))
        self.call(self.client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), root_uri=from_fs_path(str(cwd)))))
        self.notify(self.client.initialized, types.InitializedParams())

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def notify(self, fn, params) -> None:
        self.loop.call_soon_threadsafe(fn, params)

    def open(self, path: Path, text: str | None = None) -> str:
        uri = from_fs_path(str(path))
        self.versions[uri] = 1
        text = path.read_text() if text is None else text
        self.notify(self.client.text_document_did_open, types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="nnspec", version=1,
                                                 text=text)))
        return uri

    def replace(self, uri: str, text: str) -> None:
        """A whole-text edit (as an editor's "select all, paste")."""
        self.versions[uri] += 1
        self.notify(self.client.text_document_did_change, types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(
                uri=uri, version=self.versions[uri]),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))

    def edit(self, uri: str, line: int, char: int, end_char: int, text: str) -> None:
        """An incremental edit of one line (UTF-16 columns)."""
        self.versions[uri] += 1
        rng = types.Range(start=types.Position(line=line, character=char),
                          end=types.Position(line=line, character=end_char))
        self.notify(self.client.text_document_did_change, types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(
                uri=uri, version=self.versions[uri]),
            content_changes=[types.TextDocumentContentChangePartial(range=rng, text=text)]))

    def diags(self, uri: str) -> list:
        """The diagnostics published for the document's latest version."""
        want = self.versions[uri]
        with self.cond:
            ok = self.cond.wait_for(lambda: uri in self.diagnostics and
                                    self.diagnostics[uri].version == want, TIMEOUT)
            assert ok, f"no diagnostics for version {want} of {uri}"
            return list(self.diagnostics[uri].diagnostics)

    def pos(self, uri: str, line: int, char: int) -> dict:
        return {"text_document": types.TextDocumentIdentifier(uri=uri),
                "position": types.Position(line=line, character=char)}

    def hover(self, uri, line, char):
        return self.call(self.client.text_document_hover_async(
            types.HoverParams(**self.pos(uri, line, char))))

    def definition(self, uri, line, char):
        return self.call(self.client.text_document_definition_async(
            types.DefinitionParams(**self.pos(uri, line, char))))

    def complete(self, uri, line, char) -> list:
        got = self.call(self.client.text_document_completion_async(
            types.CompletionParams(**self.pos(uri, line, char))))
        return got.items if isinstance(got, types.CompletionList) else list(got or [])

    def close(self) -> None:
        try:
            self.call(self.client.shutdown_async(None))
            self.notify(self.client.exit, None)
            self.call(self.client.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


@pytest.fixture(scope="module")
def lsp(tmp_path_factory):
    if types is None:
        pytest.skip("needs the lsp extra: pip install 'nnspec[lsp]'")
    work = tmp_path_factory.mktemp("lsp")
    s = Session(work)
    s.work = work
    yield s
    s.close()
    assert s.client._server.returncode == 0  # shutdown, then exit: status 0


def _line_of(text: str, start: str) -> int:
    return next(i for i, t in enumerate(text.split("\n")) if t.lstrip().startswith(start))


BROKEN = """\
# “quotes”, and a line with characters outside the BMP
model M(x: [N, 16, 5, 5]) {
    upsample 2 mode="😀😀" bogus=1
}
model P(x: [N, 3, 32, 32]) {
    maxpool k=2 s=2
    maxpool k=2 s=2
    maxpool k=2 s=2
    conv 32 k=7
}
"""


def test_diagnostics_of_a_bundled_spec_and_a_broken_one(lsp):
    assert lsp.diags(lsp.open(SPECS / "lenet5.nn")) == []
    path = lsp.work / "broken.nn"
    path.write_text(BROKEN)
    uri = lsp.open(path)
    got = sorted(lsp.diags(uri), key=lambda d: d.range.start.line)
    assert [d.code for d in got] == ["E049", "E301"]
    lines = BROKEN.split("\n")
    bogus = lines[2].index("bogus")
    assert (got[0].range.start.line, got[0].range.end.line) == (2, 2)
    # UTF-16 columns: each emoji before the argument is two code units
    assert got[0].range.start.character == _utf16(lines[2][:bogus]) == bogus + 2
    assert got[0].range.end.character == _utf16(lines[2][:bogus + len("bogus=1")])
    assert got[0].severity == types.DiagnosticSeverity.Error and got[0].source == "nnspec"
    assert "unknown argument 'bogus'" in got[0].message
    conv = _line_of(BROKEN, "conv 32")
    assert got[1].range.start.line == conv
    assert got[1].range.start.character == lines[conv].index("conv")
    assert got[1].range.end.character == len(lines[conv])
    assert "conv output height is -2" in got[1].message

    # an incremental edit in UTF-16 columns drops ` bogus=1`: what is left of the line is
    # `mode="😀😀"`, an invalid mode now checked, shown with the emoji intact
    col = _utf16(lines[2][:bogus - 1])
    lsp.edit(uri, 2, col, col + len(" bogus=1"), "")
    got = sorted(lsp.diags(uri), key=lambda d: d.range.start.line)
    assert [d.code for d in got] == ["E046", "E301"]
    assert "(received mode=😀😀)" in got[0].message
    assert got[0].range.end.character == _utf16(lines[2][:bogus - 1])
    lsp.replace(uri, BROKEN.replace("k=7", "k=3 p=1").replace('"😀😀" bogus=1', "nearest"))
    assert lsp.diags(uri) == []


def test_hover_shows_the_inferred_shape(lsp):
    text = (SPECS / "lenet5.nn").read_text()
    uri = lsp.open(SPECS / "lenet5.nn")
    line = _line_of(text, "conv 6 k=5")
    got = lsp.hover(uri, line, text.split("\n")[line].index("conv") + 1)
    assert got is not None and got.contents.kind == types.MarkupKind.Markdown
    assert "[N, 6, 28, 28]" in got.contents.value
    assert "156 parameters" in got.contents.value  # 6 * (1 * 5 * 5) + 6
    # the second conv: another shape; the model's header: its signature and total
    line = _line_of(text, "conv 16 k=5")
    assert "[N, 16, 10, 10]" in lsp.hover(uri, line, 6).contents.value
    head = lsp.hover(uri, _line_of(text, "model LeNet5"), 8).contents.value
    assert "[N, 10]" in head and "61,706 parameters" in head


def test_hover_over_a_block_call_sums_its_layers(lsp):
    text = (SPECS / "resnet18.nn").read_text()
    uri = lsp.open(SPECS / "resnet18.nn")
    line = _line_of(text, "Basic(64) * 2 as layer1")
    got = lsp.hover(uri, line, 6).contents.value
    # two BasicBlocks of 64 channels: 2 * (2 * 64*64*9 conv weights + 2 * 128 bn params)
    assert "**layer1**" in got and f"{2 * (2 * 64 * 64 * 9 + 2 * 128):,} parameters" in got
    assert "`[N, 64, 56, 56]` → `[N, 64, 56, 56]`" in got


def test_definition_of_a_stdlib_block_and_a_constant(lsp):
    spec = 'use "transformer.nn"\nconst d = 512\n' \
           "model Tagger(tokens: [N, T] int) -> [N, T, 17] {\n" \
           "    embedding 32000 d | positional scale\n" \
           "    EncoderLayer(d, heads=8, ff=2048) * 2 as layers\n" \
           "    dense 17\n}\n"
    path = lsp.work / "tagger.nn"
    path.write_text(spec)
    uri = lsp.open(path)
    assert lsp.diags(uri) == []
    line = _line_of(spec, "EncoderLayer(")
    got = lsp.definition(uri, line, 8)
    assert len(got) == 1
    assert Path(got[0].uri.removeprefix("file://")).resolve() == STDLIB.resolve()
    std = STDLIB.read_text().split("\n")
    want = _line_of(STDLIB.read_text(), "block EncoderLayer(")
    assert got[0].range.start.line == want
    assert std[want][got[0].range.start.character:].startswith("EncoderLayer(")
    # the constant `d`, used as an argument of the call
    got = lsp.definition(uri, line, spec.split("\n")[line].index("(d,") + 1)
    assert got[0].uri == uri and got[0].range.start.line == 1
    # on the `use` line: the file it imports
    got = lsp.definition(uri, 0, 8)
    assert Path(got[0].uri.removeprefix("file://")).resolve() == STDLIB.resolve()


def test_unsaved_buffer_of_a_used_file_is_preferred(lsp):
    (lsp.work / "blocks.nn").write_text("block Head(x, n) {\n    dense n\n}\n")
    main = lsp.work / "uses.nn"
    main.write_text('use "blocks.nn"\nmodel M(x: [N, 8]) -> [N, 4] {\n    Head(4)\n}\n')
    uri = lsp.open(main)
    assert lsp.diags(uri) == []
    # the open, unsaved blocks.nn makes Head give 5 features: uses.nn is re-checked
    blocks = lsp.open(lsp.work / "blocks.nn", "block Head(x, n) {\n    dense (n + 1)\n}\n")
    assert lsp.diags(blocks) == []
    with lsp.cond:  # uses.nn's own version has not changed: wait for a new publication
        assert lsp.cond.wait_for(lambda: lsp.diagnostics[uri].diagnostics, TIMEOUT)
        got = lsp.diagnostics[uri].diagnostics
    assert [d.code for d in got] == ["E311"]
    assert "[N, 5]" in got[0].message and got[0].range.start.line == 1
    # the saved text is unchanged
    assert "dense n\n" in (lsp.work / "blocks.nn").read_text()


def test_completion_of_layer_kinds_and_arguments(lsp):
    from nnspec.layers import REGISTRY

    path = lsp.work / "typing.nn"
    text = "model M(x: [N, 3, 32, 32]) {\n    con\n}\n"
    path.write_text(text)
    uri = lsp.open(path)
    items = {i.label: i for i in lsp.complete(uri, 1, len("    con"))}
    assert {"conv", "conv2d", "convtranspose"} <= set(items)
    assert "dense" not in items and "maxpool" not in items  # only what matches `con`
    assert items["conv"].detail == REGISTRY["conv"].summary
    assert items["conv"].kind == types.CompletionItemKind.Function
    assert not any(label.endswith("=") for label in items)

    lsp.replace(uri, "model M(x: [N, 3, 32, 32]) {\n    conv 6 \n}\n")
    args = {i.label for i in lsp.complete(uri, 1, len("    conv 6 "))}
    assert {"k=", "s=", "p=", "d=", "groups=", "bias=", "kernel_size=", "stride="} <= args
    assert "out=" not in args  # given by position already
    assert "heads=" not in args and "conv" not in args
    lsp.replace(uri, "model M(x: [N, 3, 32, 32]) {\n    conv 6 k=3 | maxpool k=2 \n}\n")
    line = "    conv 6 k=3 | maxpool k=2 "
    args = {i.label for i in lsp.complete(uri, 1, len(line))}
    assert {"s=", "ceil", "global"} <= args and "k=" not in args and "groups=" not in args
