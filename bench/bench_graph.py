"""`nnspec graph` on the 10,000-layer bench model, end to end (a fresh process each time:
parse, lower, infer, build the DOT text, lay it out with Graphviz's dot, write the file).

A model holds at most 5,000 layers (nnspec's limit), so the 10,000-layer bench model is
two 5,000-layer models of the mlp mix (dense 64 / relu / layernorm on [N, 64]) in one
file, joined by ``check Second(First)``: 10,004 drawn nodes (the layers, an input and an
output per model) and one composition edge.

It then draws GPT-2 (specs/gpt2.nn) and ResNet-50 (written below: torchvision's
resnet50, 25,557,032 parameters) as SVG and as the HTML viewer, and reports each file's
size and the command's time; with chromium installed, also the viewer's first layout in
the browser (GPT-2 opens folded to depth 1) and its layout with every block unfolded, as
the page measures them (elkjs, in the page's own thread).

Usage: python bench/bench_graph.py [--reps 3] [--format svg] [--only 10k|specs]

Goal (the project's): <= 5 s for the SVG. The DOT text alone (no layout) is timed too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from _common import ROOT, fmt_s, gen_model, machine, med, result, wait_quiet

GOAL_S = 5.0
PER_MODEL = 5_000

RESNET50 = """\
block Bottleneck(x, c) {
    y = x | conv c k=1 bias=false as conv1 | batchnorm as bn1 | relu
          | conv c k=3 p=1 bias=false as conv2 | batchnorm as bn2 | relu
          | conv (c*4) k=1 bias=false as conv3 | batchnorm as bn3
    return relu(y + x)
}

block Down(x, c, stride=2) {
    y = x | conv c k=1 bias=false as conv1 | batchnorm as bn1 | relu
          | conv c k=3 s=stride p=1 bias=false as conv2 | batchnorm as bn2 | relu
          | conv (c*4) k=1 bias=false as conv3 | batchnorm as bn3
    r = x | conv (c*4) k=1 s=stride bias=false as downsample_conv | batchnorm as downsample_bn
    return relu(y + r)
}

block Stage(x, c, n, stride) {
    Down(c, stride) | Bottleneck(c) * n
}

model ResNet50(x: [N, 3, 224, 224]) -> [N, 1000] {
    conv 64 k=7 s=2 p=3 bias=false as conv1 | batchnorm as bn1 | relu
    maxpool k=3 s=2 p=1
    Stage(64, 2, 1) as layer1
    Stage(128, 3, 2) as layer2
    Stage(256, 5, 2) as layer3
    Stage(512, 2, 2) as layer4
    avgpool global | flatten
    dense 1000 as fc
}
"""


def bench_spec() -> str:
    """Two 5,000-layer models, the second checked to take the first's output."""
    first = gen_model(PER_MODEL, "mlp").replace("model Gen(", "model First(", 1)
    second = gen_model(PER_MODEL, "mlp").replace("model Gen(", "model Second(", 1)
    return first + "\n" + second + "\ncheck Second(First)\n"


def time_graph(path: str, out: str, fmt: str) -> float:
    cmd = [sys.executable, "-m", "nnspec", "graph", path, "-o", out, "--format", fmt, "-q"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    t = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"nnspec graph failed ({proc.returncode}): {proc.stderr.strip()}")
    return t


def browser_layouts(html_path: str) -> tuple[float, float, int, int] | None:
    """The viewer's first layout and its layout unfolded (ms, as the page measures them),
    and the nodes drawn by each; None without chromium."""
    import pathlib

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        return None
    sys.path.insert(0, str(ROOT / "tests"))
    from test_graph import Browser  # the tests' DevTools pipe driver

    def wait(s, after: int) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            n = b.eval(s, "+document.documentElement.getAttribute('data-nnspec-layouts')")
            if n and n > after:
                return
            time.sleep(0.02)
        raise SystemExit("the viewer did not finish its layout")

    def attr(s, name: str) -> int:
        return int(b.eval(s, f"document.documentElement.getAttribute('{name}')"))

    with tempfile.TemporaryDirectory() as profile:
        b = Browser(exe, profile)
        try:
            s = b.open(pathlib.Path(html_path).as_uri())
            wait(s, 0)
            first, shown = attr(s, "data-nnspec-layout-ms"), attr(s, "data-nnspec-shown")
            b.eval(s, "document.getElementById('unfold-all').click()")
            wait(s, 1)
            return first, attr(s, "data-nnspec-layout-ms"), shown, attr(s, "data-nnspec-shown")
        finally:
            b.close()


def bench_specs(reps: int, tmp: str) -> None:
    """GPT-2 and ResNet-50: SVG and HTML, size and time."""
    r50 = os.path.join(tmp, "resnet50.nn")
    with open(r50, "w") as f:
        f.write(RESNET50)
    for name, path in (("GPT-2", str(ROOT / "specs" / "gpt2.nn")), ("ResNet-50", r50)):
        for fmt in ("svg", "html"):
            out = os.path.join(tmp, f"{name}.{fmt}")
            times = [time_graph(path, out, fmt) for _ in range(reps)]
            size = os.path.getsize(out)
            print(f"  {name} {fmt}: median {fmt_s(med(times))}, {size / 1024:,.0f} KiB")
        lay = browser_layouts(os.path.join(tmp, f"{name}.html"))
        if lay is None:
            print(f"  {name} in the browser: skipped (chromium is not installed)")
        else:
            print(f"  {name} in chromium: first layout {lay[0]} ms ({lay[2]} nodes drawn), "
                  f"unfolded {lay[1]} ms ({lay[3]} nodes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--format", choices=("svg", "html"), default="svg")
    ap.add_argument("--only", choices=("10k", "specs"), help="one part of the bench")
    args = ap.parse_args()
    print(f"bench_graph: {machine()}")
    if shutil.which("dot") is None:
        print("  Graphviz's dot is not installed (apt-get install graphviz): skipped")
        result("graph", "skipped (no dot)", f"<= {GOAL_S:.0f} s", None)
        return
    if args.only != "10k":
        with tempfile.TemporaryDirectory() as tmp:
            bench_specs(args.reps, tmp)
        if args.only == "specs":
            return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench10k.nn")
        with open(path, "w") as f:
            f.write(bench_spec())
        wait_quiet()
        dot_times = [time_graph(path, os.path.join(tmp, "g.dot"), "dot")
                     for _ in range(args.reps)]
        times = [time_graph(path, os.path.join(tmp, f"g.{args.format}"), args.format)
                 for _ in range(args.reps)]
        size = os.path.getsize(os.path.join(tmp, f"g.{args.format}"))
        with open(os.path.join(tmp, f"g.{args.format}"), encoding="utf-8") as f:
            nodes = f.read().count('class="node')
    print(f"  DOT text only: median {fmt_s(med(dot_times))} (min {fmt_s(min(dot_times))})")
    print(f"  {args.format}: median {fmt_s(med(times))} (min {fmt_s(min(times))}), "
          f"{size / 2**20:.1f} MiB, {nodes:,} nodes drawn")
    t = med(times)
    result("graph", f"nnspec graph 10k layers -> {args.format} {fmt_s(t)}",
           f"<= {GOAL_S:.0f} s", t <= GOAL_S)


if __name__ == "__main__":
    main()
