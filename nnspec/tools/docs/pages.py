"""The bodies of the reference pages: one per layer kind, the list of kinds, the losses (from
:data:`nnspec.layers.losses.LOSSES`) and the error codes (``nnspec explain``'s table, each
example run through the checker to show what it reports)."""

from __future__ import annotations

from html import escape

from .html import kind_file, pre
from .kinds import KindDoc


def _code(text: str) -> str:
    return f"<code>{escape(text)}</code>"


def kind_page(d: KindDoc) -> str:
    out = [f"<h1>{escape(d.name)}</h1>",
           f'<p><span class="tag">family: {escape(d.family)}</span>'
           f'<span class="tag">input: {escape(d.arity)}</span>'
           + ('<span class="tag">reference backward</span>' if d.has_backward else "")
           + "</p>"]
    if d.usage:
        out.append(f'<p class="usage">{escape(d.usage)}</p>')
    if d.about:
        out.append(f"<p>{escape(d.about)}</p>")
    if d.aliases:
        out.append("<p>Also written: " + ", ".join(_code(a) for a in d.aliases) + ".</p>")
    out.append('<h2 id="arguments">Arguments</h2>')
    if d.arguments:
        out.append("<table><tr><th>argument</th><th>type</th><th>default</th>"
                   "<th>how it is written</th></tr>")
        for a in d.arguments:
            how = []
            if a.positional:
                how.append("may be given by position")
            if a.flag:
                how.append(f"a bare word means true ({_code(a.name)})")
            if a.tensor:
                how.append(f"names a value: {_code(a.name + '=h')}")
            if a.long_names:
                how.append("also " + ", ".join(_code(n) for n in a.long_names))
            default = "<em>required</em>" if a.required else _code(a.default)
            out.append(f"<tr><td>{_code(a.name)}</td><td>{escape(a.type)}</td>"
                       f"<td>{default}</td><td>{'; '.join(how)}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>None.</p>")
    out.append('<h2 id="shape">Shape rule</h2>')
    if d.formula:
        args = f" with {_code(d.formula_args)}" if d.formula_args else ""
        out.append(f"<p>The kind's shape rule on symbolic inputs{args} (dims it needs "
                   "to know stay numbers):</p>")
        out.append(pre(d.formula, "formula"))
    if d.layout:
        out.append(f"<p>Input layout: {_code(d.layout)}.</p>")
    out.append('<h2 id="example">Example</h2>')
    out.append("<p>A spec that uses it (checked when this page was built):</p>")
    out.append(pre(d.example))
    out.append(f"<p>Its summary ({_code('nnspec summary --all')}):</p>")
    out.append(pre(d.summary))
    out.append('<h2 id="torch">PyTorch equivalent</h2>')
    out.append(f"<p>What {_code('nnspec compile')} writes for the example:</p>")
    out.append(pre(d.torch))
    return "\n".join(out)


def kinds_index(docs: list[KindDoc]) -> str:
    out = ["<h1>Layer kinds</h1>",
           f"<p>{len(docs)} kinds (aliases folded), by family; {_code('nnspec layers')} "
           "lists them too.</p>"]
    fam = None
    for d in docs:
        if d.family != fam:
            if fam is not None:
                out.append("</table>")
            fam = d.family
            out.append(f'<h2 id="family-{escape(fam)}">{escape(fam)}</h2><table>')
        out.append(f'<tr><td><a href="{kind_file(d.name)}">{escape(d.name)}</a></td>'
                   f"<td>{escape(d.usage or d.about)}</td></tr>")
    if fam is not None:
        out.append("</table>")
    return "\n".join(out)


def _plain(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def losses_page(kinds: list) -> str:
    out = ["<h1>Losses</h1>",
           "<p>The loss functions a <code>train</code> section's <code>loss</code> line may "
           f"combine (weighted sums of them); {_code('nnspec losses')} lists them too.</p>",
           "<ul>" + "".join(f'<li><a href="#loss-{escape(k.name)}">{escape(k.name)}</a></li>'
                            for k in kinds) + "</ul>"]
    for k in kinds:
        out.append(f'<section class="entry" id="loss-{escape(k.name)}">')
        out.append(f"<h2>{escape(k.name)}</h2>")
        out.append(pre(k.signature()))
        if k.about:
            out.append(f"<p>{escape(k.about)}</p>")
        if k.aliases:
            out.append("<p>Also written: " + ", ".join(_code(a) for a in k.aliases) + ".</p>")
        out.append("<p>Tensors: " + ", ".join(_code(t) for t in k.inputs) + ".</p>")
        rows = k.arguments()
        if rows:
            out.append("<table><tr><th>argument</th><th>default</th><th>choices</th></tr>")
            for name, default, choices in rows:
                out.append(f"<tr><td>{_code(name)}</td><td>{_code(_plain(default))}</td>"
                           f"<td>{' | '.join(escape(str(c)) for c in choices)}</td></tr>")
            out.append("</table>")
        try:
            src = k.torch_src(k.Params(), list(k.inputs))
        except Exception:  # a loss whose arguments have no defaults: no one-line form
            src = ""
        if src:
            out.append("<p>PyTorch, with the default arguments:</p>")
            out.append(pre(src))
        out.append("</section>")
    return "\n".join(out)


def _checked(text: str) -> str:
    """What ``nnspec check`` prints for an example (a spec, or IR JSON)."""
    from ... import api
    from ...core.diagnostics import render_all

    if text.lstrip().startswith("{"):
        spec = api.from_ir(text, "example.json")
    else:
        spec = api.loads(text, "example.nn", strict=False)
    return render_all(list(spec.diagnostics) + list(spec.warnings), spec.sources, None)


def errors_page(table: dict, inline) -> str:
    """``inline`` renders the Markdown of a meaning or fix (backticks as code)."""
    out = ["<h1>Error codes</h1>",
           f"<p>What {_code('nnspec explain CODE')} prints: each code's meaning, a spec "
           "that has the error with what <code>nnspec check</code> reports for it, and the "
           "fix.</p>", "<table>"]
    out += [f'<tr><td><a href="#{e.code}">{e.code}</a></td><td>{escape(e.title)}</td></tr>'
            for e in table.values()]
    out.append("</table>")
    for e in table.values():
        out.append(f'<section class="entry" id="{e.code}">')
        out.append(f"<h2>{e.code}: {escape(e.title)}</h2>")
        out.append(f"<p>{inline(e.meaning)}</p>")
        if e.example is None:
            out.append(f"<p><strong>Example:</strong> none ({inline(e.why_no_example)}).</p>")
            out.append(f"<p><strong>Fix:</strong> {inline(e.fix)}.</p>")
        else:
            out.append("<p><strong>Example</strong>:</p>")
            out.append(pre(e.example))
            reported = _checked(e.example)
            if reported:
                out.append(f"<p>{_code('nnspec check')} reports:</p>")
                out.append(pre(reported))
            out.append(f"<p><strong>Fix:</strong> {inline(e.fix)}:</p>")
            out.append(pre(e.fixed or ""))
        out.append("</section>")
    return "\n".join(out)


def index_page(intro: str, docs: list[KindDoc], n_losses: int, n_codes: int,
               version: str) -> str:
    families = sorted({d.family for d in docs})
    return "\n".join([
        f"<h1>nnspec {escape(version)} reference</h1>",
        intro,
        "<h2>Contents</h2>",
        "<ul>",
        '<li><a href="tour.html">A tour of the language</a>: models, pipelines, blocks, '
        "names, shapes, training sections.</li>",
        '<li><a href="cli.html">The command line</a>: every command and its options.</li>',
        '<li><a href="python.html">The Python API</a>.</li>',
        f'<li><a href="kinds.html">Layer kinds</a>: {len(docs)} kinds in {len(families)} '
        "families, each with its arguments, shape rule, a checked example, its summary and "
        "its PyTorch equivalent.</li>",
        f'<li><a href="losses.html">Losses</a>: the {n_losses} losses of '
        "<code>train</code> sections.</li>",
        f'<li><a href="errors.html">Error codes</a>: {n_codes} codes, each with an example '
        "and the fix.</li>",
        "</ul>",
        "<p>Generated by <code>nnspec docs</code> from nnspec's own registries: every "
        "example on these pages was checked when the site was built.</p>"])
