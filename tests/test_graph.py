"""`nnspec graph`: DOT, SVG and HTML pictures of every bundled spec.

Counts are checked against the IR (one drawn node per layer, per model input and per value
a model returns), shapes on edges against static inference, folding with ``--depth``
against counts worked out by hand from specs/resnet18.nn, and the pages are opened in
headless Chromium (driven over its DevTools pipe, one browser for all of them) to see that
they load without errors or network requests and that their DOM holds the nodes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import nnspec
from nnspec.tools import graph
from nnspec.tools.cli import main
from nnspec.layers.base import TupleType

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.nn"))
SVG_NS = "{http://www.w3.org/2000/svg}"
HAVE_DOT = shutil.which("dot") is not None
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="Graphviz's dot is not installed")


def expected_nodes(spec, model=None) -> int:
    """Drawn nodes without folding: the IR's nodes, inputs and returned values."""
    models = [spec.model(model)] if model else spec.program.models
    total = 0
    for m in models:
        out = spec.types(m.name).output()
        total += len(m.nodes) + len(m.inputs)
        total += len(out.items) if isinstance(out, TupleType) else 1
    return total


def svg_groups(svg_text: str, cls: str) -> list[ET.Element]:
    root = ET.fromstring(svg_text)
    return [g for g in root.iter(f"{SVG_NS}g") if cls in (g.get("class") or "").split()]


def texts(el: ET.Element) -> list[str]:
    return [t.text or "" for t in el.iter(f"{SVG_NS}text")]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Every bundled spec drawn once as SVG: {name: (spec, svg text, svg path)} (the HTML
    viewer is tested in test_graph_view)."""
    if not HAVE_DOT:
        pytest.skip("Graphviz's dot is not installed")
    out = tmp_path_factory.mktemp("graphs")
    res = {}
    for path in SPECS:
        spec = nnspec.load(str(path))
        svg, g, _ = graph.render(spec, "svg")
        (out / f"{path.stem}.svg").write_text(svg, encoding="utf-8")
        res[path.stem] = (spec, svg, out / f"{path.stem}.svg")
    return res


# ---- DOT (no Graphviz needed) -------------------------------------------------------------


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_dot_of_every_spec(path):
    spec = nnspec.load(str(path))
    g = graph.build(spec)
    text, boxes = graph.to_dot(g)
    assert text.startswith("digraph nnspec {") and text.rstrip().endswith("}")
    assert boxes
    n_nodes = sum(text.count(f'class="nn-{k}') for k in ("layer", "input", "output"))
    assert n_nodes == expected_nodes(spec)
    # every layer of the IR is a node whose label starts with its name's last part
    labels = [n.lines[0] for n in g.nodes if n.kind == "layer"]
    names = [n.name for m in spec.program.models for n in m.nodes]
    assert [lab == nm or nm.endswith("." + lab) for lab, nm in zip(labels, names)] \
        == [True] * len(names)
    # one cluster per model, one per distinct block instance (dotted name prefix)
    for m in spec.program.models:
        prefixes = {n.name.rsplit(".", 1)[0] for n in m.nodes if n.called_from}
        inner = [c for c in g.clusters.values() if c.kind == "block"
                 and c.id.startswith(f"m{spec.program.models.index(m)}c")]
        assert {c.label[0].split(" ", 1)[1] for c in inner} >= prefixes


def test_node_labels_show_kind_and_key_arguments():
    spec = nnspec.load(str(ROOT / "specs" / "lenet5.nn"))
    g = graph.build(spec)
    layers = [n.lines for n in g.nodes if n.kind == "layer"]
    assert layers[0] == ["conv_0", "conv 6 k=5", "156 params"]
    assert layers[2][:2] == ["avgpool_0", "avgpool k=2 s=2"]
    assert layers[-1] == ["dense_2", "dense 10", "850 params"]
    ins = [n.lines for n in g.nodes if n.kind == "input"]
    assert ins == [["input x", "[N, 1, 32, 32]"]]
    s2s = graph.build(nnspec.load(str(ROOT / "specs" / "seq2seq_gru.nn")))
    gru = [n for n in s2s.nodes if n.kind == "layer" and n.lines[1].startswith("gru")]
    assert [n.lines[1] for n in gru] == ["gru 256 state", "gru 256 h0", "gru 256 state",
                                          "gru 256 h0"]
    # the tensor argument's edge is named after it
    assert any(e.label == "h0: [1, N, 256]" for e in s2s.edges)


def test_edges_carry_the_inferred_shapes():
    spec = nnspec.load(str(ROOT / "specs" / "lenet5.nn"))
    g = graph.build(spec)
    rows = spec.layers()
    # a chain: input -> 12 layers -> output, each edge the producer's inferred output
    assert [e.label for e in g.edges] == ["[N, 1, 32, 32]"] + [str(r.output) for r in rows]
    assert [str(r.output) for r in rows][:3] == ["[N, 6, 28, 28]", "[N, 6, 28, 28]",
                                                 "[N, 6, 14, 14]"]


def test_several_outputs_each_get_a_node(tmp_path):
    p = tmp_path / "two.nn"
    p.write_text("model M(x: [N, T, 4], y: [N, 3]) {\n    gru 8 state\n}\n")
    spec = nnspec.load(str(p))
    g = graph.build(spec)
    assert g.count("input") == 2 and g.count("output") == 2
    assert sorted(e.label for e in g.edges if e.dst.startswith("m0o")) == \
        ["[1, N, 8]", "[N, T, 8]"]


def test_depth_folds_blocks():
    spec = nnspec.load(str(ROOT / "specs" / "resnet18.nn"))
    full = graph.build(spec)
    assert len(full.nodes) == 69 + 2
    # depth 0: conv1 bn1 relu maxpool avgpool flatten fc, the blocks layer1.0 layer1.1
    # layer2 layer3 layer4, the input and the output
    d0 = graph.build(spec, depth=0)
    assert len(d0.nodes) == 7 + 5 + 2
    blocks = [n for n in d0.nodes if n.kind == "block"]
    assert [n.lines[0] for n in blocks] == ["Basic layer1.0", "Basic layer1.1",
                                            "Layer layer2", "Layer layer3", "Layer layer4"]
    assert blocks[2].lines[1:] == ["→ [N, 128, 28, 28]", "525,568 params"]
    assert sum(n.params for n in d0.nodes) == spec.param_count() == 11_689_512
    # depth 1: layer1's two blocks open (7 layers each), Layer's Down and Basic folded
    d1 = graph.build(spec, depth=1)
    assert len(d1.nodes) == 7 + 2 * 7 + 3 * 2 + 2
    assert [n.lines[0] for n in d1.nodes if n.kind == "block"][:2] == \
        ["Down layer2.down_0", "Basic layer2.basic_0"]
    assert len(graph.build(spec, depth=2).nodes) == len(full.nodes)
    # no edge inside a folded block, and every shape still on the edges between them
    assert ["[N, 64, 56, 56]"] * 2 + ["[N, 128, 28, 28]"] == \
        [e.label for e in d0.edges if e.src in {b.id for b in blocks[:3]}]


def test_compositions_join_the_models():
    spec = nnspec.load(str(ROOT / "specs" / "seq2seq_gru.nn"))
    g = graph.build(spec)
    checks = [e for e in g.edges if e.kind == "check"]
    assert len(checks) == 1
    by_id = {n.id: n for n in g.nodes}
    src, dst = by_id[checks[0].src], by_id[checks[0].dst]
    assert src.tooltip == "model Encoder, output: [1, N, 256]"
    assert dst.tooltip == "model Decoder, input h0: [1, N, 256]"
    assert checks[0].label == "check: [1, N, 256]"
    chain = nnspec.load(str(ROOT / "specs" / "conv_autoencoder.nn"))
    assert len(chain.program.checks) >= 1
    cg = graph.build(chain)
    assert len([e for e in cg.edges if e.kind == "check"]) == sum(
        len(c.chain) - 1 for c in chain.program.checks)
    # one model drawn: no composition
    one = graph.build(spec, [spec.model("Decoder")])
    assert not [e for e in one.edges if e.kind == "check"]


def test_dot_escape_keeps_text_literal():
    assert graph.dot_escape('a"b') == 'a\\"b'
    assert graph.dot_escape("\\N") == "\\\\N"
    assert graph.dot_escape("<b>&amp;") == "&lt;b&gt;&amp;amp;"
    assert graph.dot_escape("x\ny\x1b") == "x y "


HOSTILE = ['q"]; evil [label="x', "\\N \\G \\l", "<b>bold</b> &amp; &lt;", "</script><script>"]


@needs_dot
def test_hostile_text_is_shown_literally(tmp_path):
    """A spec's file name reaches the tooltips (the block call sites); text that would
    end a DOT string, use a Graphviz escape or an entity, or close a script is shown as
    it is, and adds no node."""
    name = 'a"b<script>&amp;\\N.nn'
    p = tmp_path / name
    p.write_text("block B(x) {\n    relu\n}\nmodel M(x: [N, 4]) {\n    B()\n}\n")
    spec = nnspec.load(str(p))
    g = graph.build(spec)
    g.nodes[0].lines = list(HOSTILE)  # straight into a label, as any text could be
    dot_text, _ = graph.to_dot(g)
    svg = graph.to_svg(dot_text)
    root = ET.fromstring(svg)  # well-formed XML
    assert len(svg_groups(svg, "node")) == 3
    node0 = [e for e in svg_groups(svg, "node") if e.get("id") == g.nodes[0].id][0]
    assert texts(node0) == HOSTILE
    tips = [a.get("{http://www.w3.org/1999/xlink}title") for a in root.iter(f"{SVG_NS}a")]
    assert any(t and name in t for t in tips)
    page = graph.to_page(graph.build(spec, details=True), name, {"x": "</script>"})
    # the text is JSON inside the page's scripts, which it cannot end
    assert page.count("<script") == 4 and page.count("</script>") == 4
    assert "<script>&amp;" not in page.split("<body>")[0]
    data = json.loads(page.split('id="nnspec-data">', 1)[1].split("</script>", 1)[0])
    assert any(name in c["tip"] for c in data["clusters"].values())


# ---- the command --------------------------------------------------------------------------


@needs_dot
def test_cli_writes_svg_dot_html(tmp_path, capsys):
    spec = str(ROOT / "specs" / "resnet18.nn")
    for ext in ("svg", "dot", "html"):
        out = tmp_path / f"r.{ext}"
        assert main(["graph", spec, "-o", str(out)]) == 0
        assert out.exists()
    assert "nnspec: wrote" in capsys.readouterr().err
    assert (tmp_path / "r.dot").read_text().startswith("digraph")
    assert len(svg_groups((tmp_path / "r.svg").read_text(), "node")) == 71
    assert "data-nnspec-ready" in (tmp_path / "r.html").read_text()
    assert main(["graph", spec, "--format", "dot", "--depth", "0"]) == 0
    folded = capsys.readouterr().out
    assert folded.count('class="nn-block') == 5  # five nodes, no block boxes
    assert folded.count("subgraph cluster_") == 1  # the model's
    assert main(["graph", spec, "--format", "svg", "--model", "ResNet18", "-q"]) == 0
    out = capsys.readouterr()
    assert out.out.lstrip().startswith("<?xml") and out.err == ""


def test_cli_errors(tmp_path, capsys):
    spec = str(ROOT / "specs" / "lenet5.nn")
    assert main(["graph", spec, "-o", str(tmp_path / "x.png")]) == 2
    assert "--format" in capsys.readouterr().err
    assert main(["graph", spec, "--depth", "-1", "--format", "dot"]) == 2
    assert main(["graph", spec, "--model", "Nope", "--format", "dot"]) == 2
    assert "no model 'Nope'" in capsys.readouterr().err
    assert main(["graph", str(tmp_path / "missing.nn"), "--format", "dot"]) == 2
    assert main(["graph", spec, "-o", str(tmp_path / "no" / "x.dot")]) == 2
    bad = tmp_path / "bad.nn"
    bad.write_text("model M(x: [N, 16, 5, 5]) {\n    conv 32 k=7\n}\n")
    assert main(["graph", str(bad), "-o", str(tmp_path / "bad.dot")]) == 1
    err = capsys.readouterr().err
    assert "bad.nn:2:5: error: conv output height is -1" in err
    assert not (tmp_path / "bad.dot").exists()


def test_without_graphviz(tmp_path, capsys, monkeypatch):
    spec = str(ROOT / "specs" / "lenet5.nn")
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda n, *a, **k: None if n == "dot"
                        else real(n, *a, **k))
    assert main(["graph", spec, "-o", str(tmp_path / "x.svg")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "apt-get install graphviz" in err
    assert not (tmp_path / "x.svg").exists()
    # the HTML viewer lays the graph out in the browser
    assert main(["graph", spec, "-o", str(tmp_path / "x.html")]) == 0
    assert main(["graph", spec, "-o", str(tmp_path / "x.dot")]) == 0
    assert (tmp_path / "x.dot").read_text().count('class="nn-layer') == 12


def test_graph_never_imports_torch():
    code = ("import sys; from nnspec.tools.cli import main; "
            "rc = main(['graph', 'specs/transformer_base.nn', '--format', 'dot', '-q']); "
            "sys.stderr.write(repr((rc, sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('torch', 'numpy')))))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    rc, mods = eval(proc.stderr.strip().splitlines()[-1])  # our own repr of (int, list)
    assert rc == 0 and "torch" not in mods


@needs_dot
def test_large_graph_labels_its_edges_after_layout():
    lines = ["model Big(x: [N, 8]) {"] + ["    relu"] * (graph.EDGE_LABEL_LIMIT + 5) + ["}"]
    spec = nnspec.loads("\n".join(lines) + "\n", "big.nn")
    svg, g, boxes = graph.render(spec, "svg")
    assert boxes and len(g.nodes) > graph.EDGE_LABEL_LIMIT
    edges = svg_groups(svg, "edge")
    assert len(edges) == len(g.edges) == graph.EDGE_LABEL_LIMIT + 6
    assert all(texts(e) == ["[N, 8]"] for e in edges)
    # dot's output arrives in many pieces: each box and edge is edited whole, once
    assert len(svg) > 4 * 65536
    boxes = [list(n.iter(f"{SVG_NS}rect")) for n in svg_groups(svg, "nn-layer")]
    assert len(boxes) == graph.EDGE_LABEL_LIMIT + 5 and all(len(b) == 1 for b in boxes)


@needs_dot
def test_layer_boxes_get_their_rounded_corners_after_the_layout():
    spec = nnspec.load(str(ROOT / "specs" / "lenet5.nn"))
    svg, g, _ = graph.render(spec, "svg")
    layers = svg_groups(svg, "nn-layer")
    assert len(layers) == g.count("layer") == 12
    for node in layers:
        (box,) = node.iter(f"{SVG_NS}rect")
        assert box.get("rx") == box.get("ry") == "12" and box.get("fill") == "#eef3fb"
        assert float(box.get("width")) > 36 and float(box.get("height")) > 30
        assert not list(node.iter(f"{SVG_NS}polygon")) and not list(node.iter(f"{SVG_NS}path"))
        x, y = float(box.get("x")), float(box.get("y"))
        for t in node.iter(f"{SVG_NS}text"):  # the box is where dot put the node's label
            assert x < float(t.get("x")) < x + float(box.get("width"))
            assert y < float(t.get("y")) < y + float(box.get("height"))
    # the other nodes keep dot's drawing; the DOT text keeps dot's own rounded boxes
    assert all(list(n.iter(f"{SVG_NS}polygon")) for n in svg_groups(svg, "nn-input"))
    assert graph.to_dot(g)[0].count('style="rounded,filled" fillcolor="#eef3fb"') == 12


# ---- SVG and HTML of every bundled spec -------------------------------------------------


@needs_dot
def test_svg_of_every_spec(rendered):
    for name, (spec, svg, _) in rendered.items():
        nodes = svg_groups(svg, "node")
        assert len(nodes) == expected_nodes(spec), name
        edges = svg_groups(svg, "edge")
        assert edges, name
        ties = sum(len(n.ties) + n.shared for m in spec.program.models for n in m.nodes)
        weights = [e for e in edges if "nn-tie" in e.get("class") or "nn-shared" in e.get("class")]
        assert len(weights) == ties, name
        for e in edges:  # every edge shows a shape, e.g. [N, 6, 28, 28] or a tuple of them
            if e in weights:
                continue
            label = texts(e)
            assert len(label) == 1 and ("[" in label[0] and label[0].endswith(("]", ")", "int"))
                                        ), (name, label)
        clusters = svg_groups(svg, "cluster")
        assert len(clusters) == len(spec.program.models) + len(_instances(spec)), name


def _instances(spec) -> set:
    """Every block instance of every model, at every depth: each block call of a layer
    takes one part of its dotted name, two when a repetition's index follows
    (``layer1.0``)."""
    out = set()
    for m in spec.program.models:
        for n in m.nodes:
            parts, i = n.name.split("."), 0
            for _ in n.called_from:
                j = i + 1
                if j < len(parts) - 1 and parts[j].isdigit():
                    j += 1
                if j >= len(parts):
                    break
                out.add((m.name, ".".join(parts[:j])))
                i = j
    return out


class Browser:
    """Headless Chromium over ``--remote-debugging-pipe`` (fds 3 and 4, NUL-separated
    JSON): one process for every page, so that the test does not start a browser per
    spec."""

    def __init__(self, exe: str, profile: str):
        r_cmd, w_cmd = os.pipe()  # we write commands -> chromium's fd 3
        r_ev, w_ev = os.pipe()  # chromium writes on fd 4 -> we read
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                "about:blank"]

        def fds():
            os.dup2(r_cmd, 3)
            os.dup2(w_ev, 4)

        self.proc = subprocess.Popen(args, preexec_fn=fds, pass_fds=(3, 4),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(r_cmd)
        os.close(w_ev)
        self.w = os.fdopen(w_cmd, "wb", buffering=0)
        self.r = os.fdopen(r_ev, "rb", buffering=0)
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict:
        import select

        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = self.r.read(1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.w.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            ans = self._read(deadline)
            if ans.get("id") == self.next_id:
                if "error" in ans:
                    raise RuntimeError(f"{method}: {ans['error']}")
                return ans.get("result", {})
            self.events.append(ans)

    def wait_event(self, method: str, session: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        for i, ev in enumerate(self.events):
            if ev.get("method") == method and ev.get("sessionId") == session:
                return self.events.pop(i)
        while True:
            ev = self._read(deadline)
            if ev.get("method") == method and ev.get("sessionId") == session:
                return ev
            self.events.append(ev)

    def open(self, url: str) -> str:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride", {"width": 1200, "height": 900,
                                                         "deviceScaleFactor": 1,
                                                         "mobile": False}, session)
        self.send("Page.navigate", {"url": url}, session)
        self.wait_event("Page.loadEventFired", session)
        return session

    def eval(self, session: str, expr: str):
        res = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                        session)
        if "exceptionDetails" in res:
            raise AssertionError(f"{expr}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def problems(self, session: str) -> list[str]:
        """Script errors, console errors and requests for anything but file: URLs."""
        out = []
        for ev in self.events:
            if ev.get("sessionId") != session:
                continue
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('text')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(f"console: {p.get('args')}")
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"log: {p['entry'].get('text')}")
            elif m == "Network.requestWillBeSent" and \
                    not p["request"]["url"].startswith(("file:", "data:", "about:")):
                out.append(f"request: {p['request']['url']}")
        return out

    def screenshot(self, session: str, path: Path) -> None:
        import base64

        data = self.send("Page.captureScreenshot", {"format": "png"}, session)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    b = Browser(CHROMIUM, str(tmp_path_factory.mktemp("chromium-profile")))
    try:
        yield b
    finally:
        b.close()


@needs_dot
def test_svg_pages_load_in_chromium(rendered, browser):
    """The plain SVG needs no script: every node is in the DOM, and nothing is requested."""
    for name, (spec, _, svg_path) in rendered.items():
        s = browser.open(svg_path.as_uri())
        assert browser.eval(s, "document.querySelectorAll('g.node').length") \
            == expected_nodes(spec), name
        assert browser.eval(s, "document.scripts.length") == 0
        assert browser.problems(s) == [], name
        browser.send("Target.detachFromTarget", {"sessionId": s})
