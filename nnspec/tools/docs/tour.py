"""The pages made from the README's sections (the language tour, the command line, the Python
API), converted by markdown-it-py, the CommonMark parser the ``docs`` extra installs: the
README uses GitHub's tables, fenced blocks inside list items and escaped pipes in table
cells, which a small hand-written converter would get wrong at the edges."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

from ..common import UsageError

DOCS_EXTRA = "this needs the docs extra: pip install 'nnspec[docs]'"

#: the README's sections the site renders: (its "## " title, the page file, the page title)
SECTIONS = (("A tour of the language", "tour.html", "A tour of the language"),
            ("The command line", "cli.html", "The command line"),
            ("Python API", "python.html", "Python API"))


def markdown():
    """The converter: CommonMark with GitHub's tables, raw HTML in the text escaped."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        raise UsageError(f"nnspec docs renders the README's sections with markdown-it-py: "
                         f"{DOCS_EXTRA}") from None
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def readme_text(path: str | None) -> str:
    """The README: ``path``, else the one beside the package (a checkout), else the
    description the installed package carries (the same file, as it was at install)."""
    if path is not None:
        try:
            return Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise UsageError(f"cannot read the README {path}: {why}") from None
    import nnspec

    beside = Path(nnspec.__file__).resolve().parents[1] / "README.md"
    if beside.is_file():
        return beside.read_text("utf-8")
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        text = metadata("nnspec").get_payload() or metadata("nnspec").get("Description", "")
    except PackageNotFoundError:
        text = ""
    if not text:
        raise UsageError("cannot find nnspec's README: give it with --readme PATH")
    return text


def sections(text: str) -> dict[str, str]:
    """The README's level-2 sections by title (fenced blocks are skipped over, so that a
    ``## `` inside one is no heading), with the text before the first as ``""``."""
    out: dict[str, list[str]] = {"": []}
    current = ""
    fence = None
    for line in text.splitlines():
        m = re.match(r"^ {0,3}(`{3,}|~{3,})", line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
        if fence is None and line.startswith("## "):
            current = line[3:].strip()
            out[current] = []
            continue
        out[current].append(line)
    return {k: "\n".join(v) + "\n" for k, v in out.items()}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", unescape(re.sub(r"<[^>]+>", "", text)).lower()).strip("-")


def add_heading_ids(html: str) -> str:
    """Each heading gets an id from its text (``#set-up-two-commands``), made unique."""
    seen: dict[str, int] = {}

    def one(m):
        slug = _slug(m.group(2)) or "section"
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        slug = slug if n == 0 else f"{slug}-{n}"
        return f'<h{m.group(1)} id="{slug}">{m.group(2)}</h{m.group(1)}>'

    return re.sub(r"<h([1-6])>(.*?)</h\1>", one, html)


def link_kinds(html: str, files: dict[str, str]) -> str:
    """``<code>conv</code>`` outside code blocks and links becomes a link to the kind's page
    (``files``: every kind name and alias -> its page)."""
    parts = re.split(r"(<pre>.*?</pre>|<a [^>]*>.*?</a>)", html, flags=re.S)
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(
            r"<code>([A-Za-z_][A-Za-z0-9_]*)</code>",
            lambda m: (f'<a href="{files[m.group(1)]}"><code>{m.group(1)}</code></a>'
                       if m.group(1) in files else m.group(0)), parts[i])
    return "".join(parts)


def render(md, text: str, files: dict[str, str]) -> str:
    return link_kinds(add_heading_ids(md.render(text)), files)


def inline(md, text: str) -> str:
    return md.renderInline(text)


def intro(md, text: str) -> str:
    """The README's opening paragraph (before its first example)."""
    body = sections(text)[""]
    paras = [p for p in re.split(r"\n\s*\n", body) if p.strip() and not p.startswith("#")]
    return md.render(paras[0]) if paras else ""
