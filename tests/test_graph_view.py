"""`nnspec graph --format html`: the interactive viewer, laid out in the browser by elkjs.

The page is opened in headless Chromium (the DevTools pipe driver of test_graph) and its
DOM is checked against numbers worked out from the IR: the nodes drawn for the fold state,
the height of the laid-out graph before and after a fold, what a search finds, the details
of a clicked node. The page needs no Graphviz; the browser tests skip without chromium.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

import nnspec
from nnspec.tools import graph
from nnspec.tools.cli import main
from test_graph import CHROMIUM, ROOT, SPECS, Browser, expected_nodes


def page_of(name: str, tmp: Path, depth=None) -> tuple[object, Path]:
    spec = nnspec.load(str(ROOT / "specs" / f"{name}.nn"))
    text, g, _ = graph.render(spec, "html", depth=depth)
    path = tmp / f"{name}-{depth}.html"
    path.write_text(text, encoding="utf-8")
    return spec, path


def drawn_count(spec, depth) -> int:
    """Nodes drawn with the blocks below ``depth`` folded, by the graph's own folding."""
    return len(graph.build(spec, depth=depth).nodes)


# ---- the page as text (no browser) ---------------------------------------------------------


def test_page_is_self_contained_and_holds_the_whole_graph(tmp_path):
    spec, path = page_of("gpt2", tmp_path)
    text = path.read_text(encoding="utf-8")
    assert "http://" not in text.split("<script>/* elkjs")[0].replace(
        "http://www.w3.org/2000/svg", "")
    assert "src=" not in text and "<link" not in text
    # the elkjs licence header is kept
    assert "SPDX-License-Identifier: EPL-2.0" in text
    data = json.loads(text.split('id="nnspec-data">', 1)[1].split("</script>", 1)[0])
    assert len(data["nodes"]) == expected_nodes(spec) == 295
    # GPT-2 is big: it opens folded to depth 1, i.e. its 12 blocks h.0 .. h.11 and the
    # 24 blocks inside them
    assert data["depth"] == 1
    levels = [data["clusters"][c]["level"] for c in data["fold"]]
    assert min(levels) == 1 and len([x for x in levels if x == 1]) == 12
    assert len(data["fold"]) == 12 * 3
    # the tied head: one dashed edge from wte to lm_head
    names = {n["id"]: (n["info"] or {}).get("name") for n in data["nodes"]}
    ties = [(names[s], names[d], lab) for s, d, lab, k in data["edges"] if k == "tie"]
    assert ties == [("transformer.wte", "lm_head", "weight = transformer.wte.weight")]


def test_small_models_open_unfolded_and_depth_is_honoured(tmp_path):
    text = page_of("resnet18", tmp_path)[1].read_text(encoding="utf-8")
    data = json.loads(text.split('id="nnspec-data">', 1)[1].split("</script>", 1)[0])
    assert data["depth"] is None and data["fold"] == []
    text = page_of("resnet18", tmp_path, depth=0)[1].read_text(encoding="utf-8")
    data = json.loads(text.split('id="nnspec-data">', 1)[1].split("</script>", 1)[0])
    assert sorted(data["clusters"][c]["label"][0] for c in data["fold"]
                  if data["clusters"][c]["level"] == 0) == [
        "Basic layer1.0", "Basic layer1.1", "Layer layer2", "Layer layer3", "Layer layer4"]


def test_details_shapes_pieces_and_labels():
    spec = nnspec.load(str(ROOT / "specs" / "gpt2.nn"))
    g = graph.build(spec, details=True)
    by_name = {n.info["name"]: n for n in g.nodes if n.kind == "layer"}
    rows = {r.node.name: r for r in spec.layers()}
    c_fc = by_name["transformer.h.3.mlp.c_fc"]
    assert c_fc.info["op"] == "dense" and c_fc.info["family"] == "linear"
    assert c_fc.params == rows["transformer.h.3.mlp.c_fc"].params == 768 * 3072 + 3072
    assert c_fc.info["ins"] == ["[N, T, 768]"] and c_fc.info["out"] == "[N, T, 3072]"
    assert c_fc.info["where"].endswith("gpt2.nn:36")
    # each edge out of chunk carries its own piece of the tuple
    chunk = by_name["transformer.h.0.attn.chunk_0"]
    out = [e.label for e in g.edges if e.src == chunk.id]
    pieces = rows["transformer.h.0.attn.chunk_0"].output.items
    assert out == [f"[{i}] {t}" for i, t in enumerate(pieces)] and len(out) == 3
    # an automatic name says the kind: shown once
    assert by_name["transformer.h.0.mlp.gelu_0"].lines == ["gelu_0", "gelu approximate=tanh"]
    r18 = graph.build(nnspec.load(str(ROOT / "specs" / "resnet18.nn")))
    relu = [n.lines for n in r18.nodes if n.lines[0] == "relu_0"]
    assert relu and all(lines == ["relu_0"] for lines in relu)
    # families colour the nodes
    fams = {n.info["op"]: n.info["family"] for n in g.nodes if n.kind == "layer"}
    assert fams["layernorm"] == "norm" and fams["sdpa"] == "attention"
    assert fams["gelu"] == "activation" and fams["embedding"] == "embedding"


def test_shared_layer_is_a_dashed_edge_in_dot():
    spec = nnspec.load(str(ROOT / "specs" / "transformer_base.nn"))
    g = graph.build(spec)
    kinds = sorted(e.kind for e in g.edges if e.kind in ("tie", "shared"))
    assert kinds == ["shared", "tie"]
    text, _ = graph.to_dot(g)
    assert text.count("style=dashed constraint=false") == 2


def test_html_needs_no_graphviz(tmp_path, monkeypatch, capsys):
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda n, *a, **k: None if n == "dot"
                        else real(n, *a, **k))
    out = tmp_path / "x.html"
    assert main(["graph", str(ROOT / "specs" / "lenet5.nn"), "-o", str(out)]) == 0
    assert "nnspec-data" in out.read_text(encoding="utf-8")


def test_missing_asset_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from nnspec.tools.graph import view

    view._asset.cache_clear()
    monkeypatch.setattr(view, "_ASSETS", tmp_path / "nowhere")
    try:
        assert main(["graph", str(ROOT / "specs" / "lenet5.nn"), "-o",
                     str(tmp_path / "x.html")]) == 2
    finally:
        view._asset.cache_clear()
    err = capsys.readouterr().err
    assert "elk.bundled.js is missing" in err and "Traceback" not in err


# ---- in Chromium ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    b = Browser(CHROMIUM, str(tmp_path_factory.mktemp("chromium-profile")))
    try:
        yield b
    finally:
        b.close()


def layouts(b, s) -> int:
    return int(b.eval(s, "document.documentElement.getAttribute('data-nnspec-layouts')") or 0)


def wait_layout(b, s, after: int = 0, timeout: float = 60) -> int:
    """Wait until the page has finished more than ``after`` layouts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = layouts(b, s)
        if n > after and b.eval(s, "document.getElementById('nnspec-status')"
                                   ".textContent.indexOf('laying out') < 0"):
            return n
        time.sleep(0.05)
    raise TimeoutError(f"no layout after {after}: "
                       + str(b.eval(s, "document.getElementById('nnspec-status').textContent")))


def height(b, s) -> float:
    """The laid-out graph's height: ELK's and the drawn scene's bounding box."""
    h, box = b.eval(s, "[+document.getElementById('view').getAttribute('data-graph-height'),"
                       " document.getElementById('scene').getBBox().height]")
    assert abs(h - box) < 0.1 * h
    return h


def drawn(b, s) -> int:
    return b.eval(s, "document.querySelectorAll('#scene g.node').length")


CLICK = "(function (el) { el.dispatchEvent(new MouseEvent('click', {bubbles: true})); })"


def test_every_spec_opens_in_chromium(browser, tmp_path):
    for path in SPECS:
        spec, page = page_of(path.stem, tmp_path)
        g = graph.build(spec)
        s = browser.open(page.as_uri())
        wait_layout(browser, s)
        ready = browser.eval(s, "document.documentElement.getAttribute('data-nnspec-ready')")
        assert ready == str(expected_nodes(spec)), path.stem
        depth = graph.default_depth(g, None)
        assert drawn(browser, s) == drawn_count(spec, depth), path.stem
        edges = browser.eval(s, "document.querySelectorAll('#scene g.edge').length")
        assert edges > 0 and height(browser, s) > 0, path.stem
        assert browser.problems(s) == [], path.stem
        browser.send("Target.detachFromTarget", {"sessionId": s})


def test_folding_a_block_lays_the_graph_out_again(browser, tmp_path):
    spec, page = page_of("resnet18", tmp_path)
    s = browser.open(page.as_uri())
    n = wait_layout(browser, s)
    full_h = height(browser, s)
    assert drawn(browser, s) == expected_nodes(spec) == 71
    inside = sum(1 for x in spec.program.models[0].nodes if x.name.startswith("layer3."))
    cid = browser.eval(s, """Array.prototype.slice.call(document.querySelectorAll(
        '#scene g.cluster.nn-block')).filter(function (c) {
        return c.textContent.indexOf('Layer layer3') >= 0; })[0].getAttribute('data-id')""")
    browser.eval(s, CLICK + f"(document.querySelector('#scene g.cluster[data-id=\"{cid}\"]'))")
    n = wait_layout(browser, s, n)
    folded_h = height(browser, s)
    assert drawn(browser, s) == 71 - inside + 1
    assert folded_h < full_h - 200, (folded_h, full_h)  # no empty box left behind
    label = browser.eval(s, f"document.querySelector('#scene g.node[data-id=\"{cid}f\"]')"
                            ".textContent")
    assert label.startswith("▸ Layer layer3") and "[N, 256, 14, 14]" in label
    # click the folded block: back as it was
    browser.eval(s, CLICK + f"(document.querySelector('#scene g.node[data-id=\"{cid}f\"]'))")
    n = wait_layout(browser, s, n)
    assert drawn(browser, s) == 71 and abs(height(browser, s) - full_h) < 1
    assert browser.problems(s) == []


def test_gpt2_opens_at_depth_one_and_folds_all(browser, tmp_path):
    spec, page = page_of("gpt2", tmp_path)
    s = browser.open(page.as_uri())
    n = wait_layout(browser, s)
    assert drawn(browser, s) == drawn_count(spec, 1) == 19
    d1 = height(browser, s)
    browser.eval(s, CLICK + "(document.getElementById('fold-all'))")
    n = wait_layout(browser, s, n)
    assert drawn(browser, s) == drawn_count(spec, 0) == 4  # input, transformer, head, output
    d0 = height(browser, s)
    browser.eval(s, CLICK + "(document.getElementById('unfold-all'))")
    n = wait_layout(browser, s, n)
    assert drawn(browser, s) == expected_nodes(spec) == 295
    full = height(browser, s)
    assert d0 < 600 < d1 < full, (d0, d1, full)
    # the tied head is drawn as a dashed edge
    assert browser.eval(s, "document.querySelectorAll('#scene g.edge.nn-tie').length") == 1
    assert browser.eval(s, "getComputedStyle(document.querySelector("
                           "'#scene g.edge.nn-tie path')).strokeDasharray") != "none"
    # each edge out of chunk_0 carries its own piece
    g = graph.build(spec)
    chunk = [x.id for x in g.nodes if x.lines[0] == "chunk_0"][0]
    rows = {r.node.name: r for r in spec.layers()}
    pieces = rows["transformer.h.0.attn.chunk_0"].output.items
    labels = browser.eval(s, f"""Array.prototype.slice.call(document.querySelectorAll(
        '#scene g.edge[data-src="{chunk}"] text')).map(function (t) {{ return t.textContent; }})""")
    assert sorted(labels) == [f"[{i}] {t}" for i, t in enumerate(pieces)]
    assert browser.problems(s) == []


def test_search_unfolds_highlights_and_scrolls_to_the_node(browser, tmp_path):
    spec, page = page_of("gpt2", tmp_path)
    s = browser.open(page.as_uri())
    n = wait_layout(browser, s)
    want = [x.name for x in spec.program.models[0].nodes if "c_fc" in x.name]
    assert len(want) == 12
    browser.eval(s, """(function () { var q = document.getElementById('search');
        q.value = 'c_fc'; q.dispatchEvent(new Event('input')); })()""")
    # all 12 are in folded blocks: the 12 folded blocks h.0 .. h.11 light up
    assert browser.eval(s, "document.querySelectorAll('#scene g.node.hit').length") == 12
    assert browser.eval(s, "document.getElementById('found').textContent") == "12 matches"
    browser.eval(s, """document.getElementById('search').dispatchEvent(
        new KeyboardEvent('keydown', {key: 'Enter'}))""")
    n = wait_layout(browser, s, n)
    time.sleep(0.2)
    cur = browser.eval(s, """(function () { var c = document.querySelector('#scene g.node.current');
        var r = c.getBoundingClientRect(), v = document.getElementById('view').getBoundingClientRect();
        return [c.getAttribute('data-id'), c.classList.contains('hit'),
                r.left >= v.left && r.right <= v.right && r.top >= v.top && r.bottom <= v.bottom,
                document.querySelector('#details h2').textContent]; })()""")
    g = graph.build(spec)
    first = [x.id for x, m in zip([y for y in g.nodes if y.kind == "layer"],
                                  spec.program.models[0].nodes) if m.name == want[0]]
    assert cur == [first[0], True, True, want[0]]
    assert drawn(browser, s) > drawn_count(spec, 1)  # h.0 and its mlp were unfolded
    assert browser.problems(s) == []


def test_click_shows_details_and_wheel_zooms(browser, tmp_path):
    spec, page = page_of("lenet5", tmp_path)
    s = browser.open(page.as_uri())
    wait_layout(browser, s)
    row = spec.layers()[0]
    browser.eval(s, CLICK + "(document.querySelectorAll('#scene g.node.nn-layer')[0])")
    table = browser.eval(s, """Array.prototype.slice.call(document.querySelectorAll(
        '#details tr')).map(function (r) { return [r.cells[0].textContent.trim(),
        r.cells[1].textContent]; })""")
    table = dict(table)
    assert table["kind"] == "conv (conv)" and table["out"] == str(row.output)
    assert table["in"] == str(row.inputs[0]) and table["parameters"] == f"{row.params:,}"
    assert table["spec"].endswith(f"lenet5.nn:{row.node.span[1]}")
    before = browser.eval(s, "document.getElementById('scene').getAttribute('transform')")
    browser.eval(s, """document.getElementById('view').dispatchEvent(new WheelEvent('wheel',
        {deltaY: -300, clientX: 400, clientY: 300, bubbles: true, cancelable: true}))""")
    after = browser.eval(s, "document.getElementById('scene').getAttribute('transform')")
    k0, k1 = (float(t.split("scale(")[1].rstrip(")")) for t in (before, after))
    assert k1 > k0 * 1.3
    # drag pans
    browser.eval(s, """(function () { var v = document.getElementById('view');
        v.dispatchEvent(new PointerEvent('pointerdown', {clientX: 300, clientY: 300, bubbles: true}));
        window.dispatchEvent(new PointerEvent('pointermove', {clientX: 360, clientY: 340}));
        window.dispatchEvent(new PointerEvent('pointerup', {clientX: 360, clientY: 340})); })()""")
    moved = browser.eval(s, "document.getElementById('scene').getAttribute('transform')")
    x1, y1 = (float(v) for v in after.split("translate(")[1].split(")")[0].split(","))
    x2, y2 = (float(v) for v in moved.split("translate(")[1].split(")")[0].split(","))
    assert (round(x2 - x1), round(y2 - y1)) == (60, 40)
    assert browser.problems(s) == []


def test_a_graph_too_big_for_elk_is_drawn_by_ranks(browser, tmp_path):
    """Above the viewer's limit (1,000 drawn nodes) ELK is not asked (its recursion fails on
    a chain of thousands): every node is drawn, one rank after another."""
    lines = ["model Big(x: [N, 8]) {"] + ["    relu"] * 1005 + ["}"]
    spec = nnspec.loads("\n".join(lines) + "\n", "big.nn")
    text, g, _ = graph.render(spec, "html")
    page = tmp_path / "big.html"
    page.write_text(text, encoding="utf-8")
    s = browser.open(page.as_uri())
    wait_layout(browser, s)
    assert drawn(browser, s) == expected_nodes(spec) == 1007
    assert "laid out by ranks" in browser.eval(
        s, "document.getElementById('nnspec-status').textContent")
    ys = browser.eval(s, """Array.prototype.slice.call(document.querySelectorAll(
        '#scene g.node > rect')).map(function (r) { return +r.getAttribute('y'); })""")
    assert ys == sorted(ys) and len(set(ys)) == 1007  # a chain: one node per rank, in order
    assert height(browser, s) > 1007 * 30
    assert browser.problems(s) == []
