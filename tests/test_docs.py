"""`nnspec docs`: the reference site. It is built once into a temporary folder; the tests
count its pages against the registries, resolve every internal link and anchor, check every
kind's example as the page shows it, open pages in headless Chromium (no script errors, no
request leaving the site) and exercise the output's refusals and atomicity."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytest.importorskip("markdown_it")

import nnspec  # noqa: E402
from nnspec.layers import REGISTRY  # noqa: E402
from nnspec.layers.losses import LOSSES  # noqa: E402
from nnspec.tools import docs  # noqa: E402
from nnspec.tools.cli import main  # noqa: E402
from nnspec.tools.docs import kinds as docs_kinds  # noqa: E402
from nnspec.tools.explain import table as error_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KINDS = {id(k): k for k in REGISTRY.values()}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    assert main(["docs", "-q", "-o", str(out) + "/"]) == 0
    return out


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []  # (attribute, value)

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id":
                self.ids.add(value)
            if name in ("href", "src") and value is not None:
                self.refs.append((f"{tag}.{name}", value))


def _parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text("utf-8"))
    return p


def test_a_page_per_registered_kind(site):
    pages = sorted(site.glob("layer-*.html"))
    assert len(pages) == len(KINDS) > 100
    names = {p.name[len("layer-"):-len(".html")] for p in pages}
    assert names == {k.name for k in KINDS.values()}
    for f in ("index.html", "tour.html", "cli.html", "python.html", "kinds.html",
              "losses.html", "errors.html", "style.css", "site.js"):
        assert (site / f).is_file(), f
    # every alias is listed on its kind's page, every kind on the kinds page
    kinds_page = (site / "kinds.html").read_text("utf-8")
    for k in KINDS.values():
        assert f'href="layer-{k.name}.html"' in kinds_page
        page = (site / f"layer-{k.name}.html").read_text("utf-8")
        for alias in k.aliases:
            assert f"<code>{html.escape(alias)}</code>" in page, (k.name, alias)


def test_every_internal_link_resolves(site):
    parsed = {p.name: _parse(p) for p in site.glob("*.html")}
    checked = 0
    for name, links in parsed.items():
        for attr, ref in links.refs:
            parts = urlsplit(ref)
            if parts.scheme in ("http", "https", "mailto"):
                assert attr == "a.href", f"{name}: {attr}={ref} would load from the network"
                continue
            assert not parts.scheme and not parts.netloc, f"{name}: {ref}"
            target = unquote(parts.path) or name
            assert (site / target).is_file(), f"{name}: {ref} -> no file {target}"
            if parts.fragment:
                assert target in parsed, f"{name}: {ref}"
                assert unquote(parts.fragment) in parsed[target].ids, f"{name}: {ref}"
            checked += 1
    assert checked > 130 * 120  # every page links every kind from its sidebar


def _shown(page: str, heading: str) -> str:
    """The text of the first code block after the heading of that id."""
    after = page.split(f'id="{heading}"', 1)[1]
    return html.unescape(re.search(r"<pre><code>(.*?)</code></pre>", after, re.S).group(1))


def test_every_kinds_example_is_checked_as_shown(site):
    for k in KINDS.values():
        page = (site / f"layer-{k.name}.html").read_text("utf-8")
        example = _shown(page, "example")
        spec = nnspec.loads(example, f"{k.name}.nn", strict=False)
        assert not spec.diagnostics and not spec.warnings, (k.name, example)
        used = {n.kind.name for m in spec.program.models for n in m.nodes}
        assert k.name in used, (k.name, used)
        # the summary and the torch source are those of that example
        summary = page.split('id="example"', 1)[1].split('id="torch"', 1)[0]
        params = spec.param_count(spec.model_names[0])
        assert f"total: {params:,} parameters" in summary, k.name
        assert "class Example(nn.Module)" in _shown(page, "torch"), k.name


def test_shape_rule_is_the_kinds_own_on_symbols(site):
    conv = (site / "layer-conv.html").read_text("utf-8")
    assert "x: [N, 4, H, W]  -&gt;  [N, 6, floor(H/2) - 1, floor(W/2) - 1]" in conv
    dense = (site / "layer-dense.html").read_text("utf-8")
    assert "x: [N, 5]  -&gt;  [N, 3]" in dense
    assert "nn.Linear(5, 3)" in dense
    # the argument table: types, defaults, long names
    assert re.search(r"<td><code>k</code></td><td>int or \(int, \.\.\.\)</td>"
                     r"<td><em>required</em></td><td>also <code>kernel_size</code>", conv)
    assert re.search(r"<td><code>s</code></td><td>int or \(int, \.\.\.\)</td>"
                     r"<td><code>1</code></td>", conv)


def test_losses_and_error_codes(site):
    losses = (site / "losses.html").read_text("utf-8")
    for name, k in LOSSES.items():
        if name == k.name:
            assert f'id="loss-{name}"' in losses
    assert "F.cross_entropy(logits, target)" in losses
    errors = _parse(site / "errors.html")
    codes = error_table()
    assert set(codes) <= errors.ids
    page = (site / "errors.html").read_text("utf-8")
    assert page.count('<section class="entry"') == len(codes)
    # an example is followed by what check reports for it, code included
    e043 = page.split('id="E043"', 1)[1].split("</section>", 1)[0]
    assert "dence 4" in e043 and "[E043]" in e043 and "dense 4" in e043


def test_tour_renders_the_readmes_language_sections(site):
    tour = (site / "tour.html").read_text("utf-8")
    assert "<h1>A tour of the language</h1>" in tour
    assert "<table>" in tour and "<strong>Models</strong>" in tour
    assert '<a href="layer-conv.html"><code>conv</code></a>' in tour
    assert "model LeNet5(x: [N, 1, 32, 32]) -&gt; [N, 10] {" in tour
    # a ``## `` line in a fenced block is not a heading; the escaped pipes are cells' text
    cli_page = (site / "cli.html").read_text("utf-8")
    assert 'id="constants-from-the-command-line-const"' in cli_page
    assert "<code>mode=nearest|nearest_exact|linear|bilinear|" in tour  # within one cell


CHROMIUM = None
try:
    from tests.test_graph import CHROMIUM, Browser  # the DevTools-pipe driver
except ImportError:  # pragma: no cover
    Browser = None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None or Browser is None:
        pytest.skip("chromium is not installed")
    b = Browser(CHROMIUM, str(tmp_path_factory.mktemp("chromium-profile")))
    try:
        yield b
    finally:
        b.close()


def test_pages_open_in_chromium(site, browser):
    for name in ("index.html", "tour.html", "cli.html", "kinds.html", "losses.html",
                 "errors.html", "layer-conv.html", "layer-gru.html"):
        s = browser.open((site / name).as_uri())
        assert browser.eval(s, "document.title").endswith("nnspec")
        # every link the page shows points into the site (or is an external a href)
        bad = browser.eval(s, """(function () {
            var bad = [];
            document.querySelectorAll('a[href]').forEach(function (a) {
              var u = new URL(a.href);
              if (u.protocol !== 'file:' && u.protocol !== 'https:') { bad.push(a.href); }
            });
            return bad; })()""")
        assert bad == [], (name, bad)
        assert browser.eval(s, "getComputedStyle(document.querySelector('nav.side'))"
                               ".position") == "sticky", name  # the stylesheet loaded
        if name == "index.html":
            n = browser.eval(s, "document.querySelectorAll('nav.side li[data-name]').length")
            assert n == len(KINDS)
            shown = browser.eval(s, """(function () {
                var box = document.getElementById('filter');
                box.value = 'pool';
                box.dispatchEvent(new Event('input'));
                var n = 0;
                document.querySelectorAll('nav.side li[data-name]').forEach(function (li) {
                  if (li.style.display !== 'none') { n++; } });
                return n; })()""")
            assert shown == sum("pool" in k.name for k in KINDS.values())
        assert browser.problems(s) == [], name
        browser.send("Target.detachFromTarget", {"sessionId": s})


# ---- the output folder ---------------------------------------------------------------


def _run(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".nnspec-" in p.name or ".old-" in p.name)


def test_bad_flags_and_outputs_exit_2(tmp_path, capsys):
    code, err = _run(["docs"], capsys)
    assert code == 2 and "-o" in err
    code, err = _run(["docs", "-o", str(tmp_path / "s"), "--nope"], capsys)
    assert code == 2 and "--nope" in err
    f = tmp_path / "file.html"
    f.write_text("mine")
    code, err = _run(["docs", "-o", str(f)], capsys)
    assert code == 2 and "it is a file" in err and f.read_text() == "mine"
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep")
    code, err = _run(["docs", "-o", str(theirs)], capsys)
    assert code == 2 and "folder of other files" in err
    assert sorted(os.listdir(theirs)) == ["notes.txt"]
    code, err = _run(["docs", "-o", str(tmp_path / "missing" / "site")], capsys)
    assert code == 2 and "no such folder" in err
    code, err = _run(["docs", "-o", str(f / "site")], capsys)
    assert code == 2 and "no such folder" in err
    code, err = _run(["docs", "-o", "-"], capsys)
    assert code == 2 and "folder" in err
    code, err = _run(["docs", "-o", str(tmp_path / "s"), "--readme", str(tmp_path / "no.md")],
                     capsys)
    assert code == 2 and "cannot read the README" in err
    assert not (tmp_path / "s").exists() and _leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_unwritable_folder_exits_2(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, err = _run(["docs", "-o", str(ro / "site")], capsys)
    finally:
        ro.chmod(0o755)
    assert code == 2 and "not writable" in err and os.listdir(ro) == []


def test_a_failure_leaves_nothing_half_written(tmp_path, capsys, monkeypatch):
    out = tmp_path / "site"
    assert main(["docs", "-o", str(out)]) == 0
    assert "nnspec: wrote" in capsys.readouterr().err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # rebuilt over its own site: replaced
    assert main(["docs", "-q", "-o", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    def broken(kind):
        if kind.name == "gru":
            raise docs_kinds.ExampleError("the example of gru does not check")
        return real(kind)

    real = docs_kinds.kind_doc
    monkeypatch.setattr(docs_kinds, "kind_doc", broken)
    with pytest.raises(docs_kinds.ExampleError):
        docs.build(str(out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old site stays
    with pytest.raises(docs_kinds.ExampleError):
        docs.build(str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()
    assert _leftovers(tmp_path) == []
    # an empty folder is filled
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(docs_kinds, "kind_doc", real)
    assert main(["docs", "-q", "-o", str(empty)]) == 0
    assert (empty / "index.html").is_file()


def test_a_broken_example_stops_the_build():
    with pytest.raises(docs_kinds.ExampleError, match="E043"):
        docs_kinds.check_example("dense", "model M(x: [N, 4]) {\n    dence 3\n}\n")


def test_docs_never_imports_torch(tmp_path):
    code = ("import sys\nfrom nnspec.tools.cli import main\n"
            f"assert main(['docs', '-q', '-o', {str(tmp_path / 'site')!r}]) == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "site" / "index.html").is_file()
