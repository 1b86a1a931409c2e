"""The pages' frame: one HTML layout with a sidebar (every page and every layer kind, with a
filter box), one stylesheet and one small script, all files of the site itself (no CDN, no
web font: the site works offline and from file: URLs)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

CSS = """\
:root { --fg: #1d2330; --muted: #5b6475; --bg: #ffffff; --side: #f4f6f9; --line: #dde2ea;
        --accent: #2956b2; --code: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: var(--bg); display: flex;
       font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
nav.side { width: 250px; flex: none; height: 100vh; position: sticky; top: 0;
           overflow-y: auto; background: var(--side); border-right: 1px solid var(--line);
           padding: 14px 12px; font-size: 14px; }
nav.side .brand { font-weight: 700; font-size: 17px; display: block; margin-bottom: 8px; }
nav.side h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .05em;
              color: var(--muted); margin: 14px 0 4px; }
nav.side ul { list-style: none; margin: 0; padding: 0; }
nav.side li a { display: block; padding: 1px 6px; border-radius: 4px; }
nav.side li a.here { background: #dfe7f7; font-weight: 600; }
nav.side .family { color: var(--muted); font-size: 12px; margin: 8px 0 0 2px; }
#filter { width: 100%; padding: 5px 7px; border: 1px solid var(--line); border-radius: 4px;
          font: inherit; }
main { flex: 1; min-width: 0; max-width: 1000px; padding: 20px 36px 60px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
            font-size: 13px; }
code { background: var(--code); padding: 1px 4px; border-radius: 3px; }
pre { background: var(--code); border: 1px solid var(--line); border-radius: 6px;
      padding: 10px 12px; overflow-x: auto; line-height: 1.4; }
pre code { background: none; padding: 0; }
table { border-collapse: collapse; margin: 10px 0; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left;
         vertical-align: top; }
th { background: var(--side); }
.usage { color: var(--muted); }
.formula { font-size: 15px; }
.tag { display: inline-block; font-size: 12px; padding: 0 6px; border-radius: 9px;
       background: #e6ecf7; color: #34456b; margin-right: 4px; }
section.entry { border-top: 1px solid var(--line); padding-top: 6px; margin-top: 22px; }
"""

SCRIPT = """\
// The sidebar's filter: hides the layer kinds whose names do not contain the text typed.
(function () {
  var box = document.getElementById('filter');
  if (!box) { return; }
  box.addEventListener('input', function () {
    var q = box.value.trim().toLowerCase();
    document.querySelectorAll('nav.side li[data-name]').forEach(function (li) {
      var hit = !q || li.getAttribute('data-name').indexOf(q) >= 0;
      li.style.display = hit ? '' : 'none';
    });
  });
})();
"""

#: the pages that are not a layer kind's, in the sidebar's order: (file, title)
PAGES = (("index.html", "Overview"), ("tour.html", "Language tour"),
         ("cli.html", "Command line"), ("python.html", "Python API"),
         ("kinds.html", "Layer kinds"), ("losses.html", "Losses"),
         ("errors.html", "Error codes"))


def kind_file(name: str) -> str:
    return f"layer-{name}.html"


@dataclass
class NavKind:
    name: str
    family: str


def sidebar(here: str, kinds: list[NavKind], version: str) -> str:
    def link(href: str, text: str) -> str:
        cls = ' class="here"' if href == here else ""
        return f'<a href="{escape(href)}"{cls}>{escape(text)}</a>'

    out = ['<nav class="side">', f'<a class="brand" href="index.html">nnspec {escape(version)}'
           '</a>', "<ul>"]
    out += [f"<li>{link(f, t)}</li>" for f, t in PAGES]
    out += ["</ul>", "<h2>Layer kinds</h2>",
            '<input id="filter" type="search" placeholder="filter kinds" '
            'aria-label="filter the layer kinds">', "<ul>"]
    fam = None
    for k in kinds:
        if k.family != fam:
            fam = k.family
            out.append(f'<li class="family">{escape(fam)}</li>')
        out.append(f'<li data-name="{escape(k.name)}">{link(kind_file(k.name), k.name)}</li>')
    out += ["</ul>", "</nav>"]
    return "\n".join(out)


def page(title: str, body: str, nav: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · nnspec</title>
<link rel="stylesheet" href="style.css">
</head>
<body>
{nav}
<main>
{body}
</main>
<script src="site.js"></script>
</body>
</html>
"""


def pre(text: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f"<pre{c}><code>{escape(text.rstrip())}</code></pre>"
