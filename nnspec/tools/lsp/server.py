"""The pygls server of ``nnspec lsp`` (:func:`_build_server`): the document
synchronisation, diagnostics published after each (debounced) edit, hover, definition,
completion, formatting, document symbols, inlay hints and quick fixes over the analysis,
converting positions to and from the client's units. pygls and lsprotocol are imported
only inside its functions, when the server starts; the formatter and the outline's parts
on their first request.
"""

from __future__ import annotations

import os

from .analysis import Analysis, Loc, analyze, problems
from .completion import completions
from .lookup import definition, hover


def _one_line_logs() -> None:
    """pygls logs what it cannot handle (a message that is not JSON, say) with a traceback
    on stderr, the editor's log of the server: one line each instead (--debug keeps them)."""
    import logging
    import sys

    class OneLine(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            exc = record.exc_info[1] if record.exc_info else None
            why = f": {type(exc).__name__}: {exc}" if exc is not None else ""
            return f"nnspec lsp: {record.levelname.lower()}: {record.getMessage()}{why}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine())
    log = logging.getLogger("pygls")
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False


def _build_server(debounce: float):
    import asyncio

    from lsprotocol import types as T
    from pygls.lsp.server import LanguageServer
    from pygls.uris import from_fs_path

    from ... import __version__

    server = LanguageServer("nnspec", __version__,
                            text_document_sync_kind=T.TextDocumentSyncKind.Incremental)
    analyses: dict[str, Analysis] = {}
    pending: dict[str, asyncio.TimerHandle] = {}
    severity = {"error": T.DiagnosticSeverity.Error, "warning": T.DiagnosticSeverity.Warning}
    item_kind = {"layer": T.CompletionItemKind.Function, "block": T.CompletionItemKind.Class,
                 "argument": T.CompletionItemKind.Property,
                 "keyword": T.CompletionItemKind.Keyword}

    def doc_path(doc) -> str:
        return doc.path if doc.uri.startswith("file:") else doc.uri

    def codec():
        return server.workspace.position_codec

    def to_pos(lines: list[str], line0: int, char0: int):
        text = lines[line0] if 0 <= line0 < len(lines) else ""
        return T.Position(line=max(line0, 0),
                          character=codec().client_num_units(text[:max(char0, 0)]))

    def to_range(an: Analysis, loc: Loc):
        lines = an.file_lines(loc.file)
        return T.Range(start=to_pos(lines, loc.line, loc.char),
                       end=to_pos(lines, loc.end_line, loc.end_char))

    def to_location(an: Analysis, loc: Loc, here: str):
        """``here`` is the analysed document's URI (which need not name a file)."""
        uri = here if an.same_file(loc.file) else (
            from_fs_path(os.path.abspath(loc.file)) or loc.file)
        return T.Location(uri=uri, range=to_range(an, loc))

    def from_pos(an: Analysis, pos) -> tuple[int, int]:
        if pos.line >= len(an.lines):
            return pos.line, 0
        got = codec().position_from_client_units(
            an.lines, T.Position(line=pos.line, character=pos.character))
        return got.line, got.character

    def to_diagnostic(an: Analysis, p, uri: str):
        related = None
        if p.related is not None:
            related = [T.DiagnosticRelatedInformation(
                location=to_location(an, p.related, uri), message="the error is here")]
        return T.Diagnostic(
            range=to_range(an, p.loc), message=p.message, code=p.code, source="nnspec",
            severity=severity.get(p.severity, T.DiagnosticSeverity.Information),
            related_information=related)

    def check(uri: str) -> Analysis | None:
        pending.pop(uri, None)
        doc = server.workspace.text_documents.get(uri)
        if doc is None:
            return None
        here = os.path.abspath(doc_path(doc))
        overlays = {os.path.abspath(doc_path(d)): d.source
                    for u, d in server.workspace.text_documents.items() if u != uri}
        overlays.pop(here, None)
        try:
            an = analyze(doc.source, doc_path(doc), overlays)
            diags = [to_diagnostic(an, p, uri) for p in problems(an)]
        except Exception as e:  # never let a bug take the editor's server down
            an = None
            diags = [T.Diagnostic(
                range=T.Range(start=T.Position(line=0, character=0),
                              end=T.Position(line=0, character=0)),
                message=f"internal error: {type(e).__name__}: {e} (this is a bug in nnspec)",
                source="nnspec", severity=T.DiagnosticSeverity.Error)]
        if an is not None:
            analyses[uri] = an
        server.text_document_publish_diagnostics(T.PublishDiagnosticsParams(
            uri=uri, diagnostics=diags, version=doc.version))
        return an

    def schedule(uri: str, delay: float) -> None:
        old = pending.pop(uri, None)
        if old is not None:
            old.cancel()
        pending[uri] = asyncio.get_running_loop().call_later(delay, check, uri)

    def changed(uri: str, delay: float) -> None:
        """Re-check the document, and every open one that read it through ``use``."""
        schedule(uri, delay)
        doc = server.workspace.text_documents.get(uri)
        here = os.path.abspath(doc_path(doc)) if doc is not None else None
        for other, an in list(analyses.items()):
            if other != uri and here in an.files:
                schedule(other, delay)

    def current(uri: str) -> Analysis | None:
        """The analysis of the document's current text (checked now if an edit waits)."""
        if uri in pending or uri not in analyses:
            handle = pending.pop(uri, None)
            if handle is not None:
                handle.cancel()
            return check(uri) or analyses.get(uri)
        return analyses[uri]

    @server.feature(T.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls, params: T.DidOpenTextDocumentParams):
        changed(params.text_document.uri, 0.0)

    @server.feature(T.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls, params: T.DidChangeTextDocumentParams):
        changed(params.text_document.uri, debounce)

    @server.feature(T.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls, params: T.DidSaveTextDocumentParams):
        changed(params.text_document.uri, 0.0)

    @server.feature(T.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls, params: T.DidCloseTextDocumentParams):
        uri = params.text_document.uri
        handle = pending.pop(uri, None)
        if handle is not None:
            handle.cancel()
        an = analyses.pop(uri, None)
        server.text_document_publish_diagnostics(
            T.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        if an is not None:  # those that used it read the disk's text now
            here = os.path.abspath(an.path)
            for other, o in list(analyses.items()):
                if here in o.files:
                    schedule(other, 0.0)

    @server.feature(T.TEXT_DOCUMENT_HOVER)
    def on_hover(ls, params: T.HoverParams):
        an = current(params.text_document.uri)
        if an is None:
            return None
        text = hover(an, *from_pos(an, params.position))
        if text is None:
            return None
        return T.Hover(contents=T.MarkupContent(kind=T.MarkupKind.Markdown, value=text))

    @server.feature(T.TEXT_DOCUMENT_DEFINITION)
    def on_definition(ls, params: T.DefinitionParams):
        an = current(params.text_document.uri)
        if an is None:
            return None
        loc = definition(an, *from_pos(an, params.position))
        return [to_location(an, loc, params.text_document.uri)] if loc is not None else None

    @server.feature(T.TEXT_DOCUMENT_COMPLETION,
                    T.CompletionOptions(trigger_characters=[" ", "|", "("]))
    def on_completion(ls, params: T.CompletionParams):
        uri = params.text_document.uri
        doc = server.workspace.text_documents.get(uri)
        if doc is None:
            return None
        from ...core.source import Source

        lines = Source(doc_path(doc), doc.source).lines
        pos = params.position
        if pos.line >= len(lines):
            before = ""
        else:
            got = codec().position_from_client_units(
                lines, T.Position(line=pos.line, character=pos.character))
            before = lines[pos.line][:got.character]
        # the last analysis is enough to know the blocks; no re-check per keystroke
        items = completions(analyses.get(uri), before)
        return T.CompletionList(is_incomplete=False, items=[
            T.CompletionItem(label=i.label, kind=item_kind[i.kind], detail=i.detail or None,
                             documentation=i.doc or None, insert_text=i.insert,
                             sort_text=f"{n:04d}",  # the order given: best first
                             label_details=T.CompletionItemLabelDetails(detail=i.signature)
                             if i.signature else None)
            for n, i in enumerate(items)])

    _editing_features(server, T, current, to_range, to_diagnostic, from_pos, codec)
    return server


def _editing_features(server, T, current, to_range, to_diagnostic, from_pos, codec) -> None:
    """Formatting, document symbols, inlay hints and quick fixes, on ``server``."""
    import re

    symbol_kind = {"model": T.SymbolKind.Class, "block": T.SymbolKind.Function,
                   "const": T.SymbolKind.Constant, "train": T.SymbolKind.Event,
                   "input": T.SymbolKind.Variable, "parameter": T.SymbolKind.TypeParameter,
                   "value": T.SymbolKind.Variable}

    @server.feature(T.TEXT_DOCUMENT_FORMATTING)
    def on_formatting(ls, params: T.DocumentFormattingParams):
        from .actions import formatted

        doc = server.workspace.text_documents.get(params.text_document.uri)
        if doc is None:
            return None
        text = doc.source
        out = formatted(text, doc.path if doc.uri.startswith("file:") else doc.uri)
        if out is None:
            return []
        lines = re.split(r"\r\n|\r|\n", text)  # as the client counts lines
        end = T.Position(line=len(lines) - 1, character=codec().client_num_units(lines[-1]))
        return [T.TextEdit(range=T.Range(start=T.Position(line=0, character=0), end=end),
                           new_text=out)]

    def to_symbol(an: Analysis, s):
        return T.DocumentSymbol(
            name=s.name, kind=symbol_kind[s.kind], detail=s.detail or None,
            range=to_range(an, s.loc), selection_range=to_range(an, s.name_loc),
            children=[to_symbol(an, c) for c in s.children] or None)

    @server.feature(T.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def on_symbols(ls, params: T.DocumentSymbolParams):
        from .outline import symbols

        an = current(params.text_document.uri)
        return [to_symbol(an, s) for s in symbols(an)] if an is not None else None

    @server.feature(T.TEXT_DOCUMENT_INLAY_HINT, T.InlayHintOptions(resolve_provider=False))
    def on_inlay_hints(ls, params: T.InlayHintParams):
        from .outline import inlay_hints

        an = current(params.text_document.uri)
        if an is None:
            return None
        first, _ = from_pos(an, params.range.start)
        last, _ = from_pos(an, params.range.end)
        out = []
        for h in inlay_hints(an, first, last):
            pos = to_range(an, Loc(an.path, h.line, h.char, h.line, h.char)).start
            out.append(T.InlayHint(position=pos, label=h.label, kind=T.InlayHintKind.Type,
                                   padding_left=True, tooltip=h.tooltip or None))
        return out

    @server.feature(T.TEXT_DOCUMENT_CODE_ACTION, T.CodeActionOptions(
        code_action_kinds=[T.CodeActionKind.QuickFix]))
    def on_code_action(ls, params: T.CodeActionParams):
        from .actions import fixes

        uri = params.text_document.uri
        an = current(uri)
        if an is None:
            return None
        line, char = from_pos(an, params.range.start)
        end_line, end_char = from_pos(an, params.range.end)
        out = []
        for f in fixes(an, line, char, end_line, end_char):
            edit = T.TextEdit(range=to_range(an, f.loc), new_text=f.new)
            out.append(T.CodeAction(
                title=f.title, kind=T.CodeActionKind.QuickFix, is_preferred=f.preferred,
                diagnostics=[to_diagnostic(an, f.problem, uri)],
                edit=T.WorkspaceEdit(changes={uri: [edit]})))
        return out
