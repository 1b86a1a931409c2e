"""``nnspec summary``: per-layer shapes, parameters, MACs and memory, as a table or JSON
(``nnspec schema summary``)."""

from __future__ import annotations

import json
import sys

from .common import (EXIT_OK, JSON_VERSION, UsageError, add_spec, fail, load, parse_dims,
                     pick_model, single_spec)


def _dim_json(d):
    """A dim as JSON: a number when it is one, its text when symbolic (``"N"``)."""
    return d.value if d.is_const else str(d)


def _shape_json(t):
    """A type's dims as JSON; a tuple type (``y, h = gru ... state``) as a list of them."""
    if t is None:
        return None
    if hasattr(t, "items"):
        return [_shape_json(i) for i in t.items]
    return [_dim_json(d) for d in t.shape]


def _maybe_dim(d):
    return None if d is None else _dim_json(d)


def _summary_json(s) -> dict:
    """One model of ``summary --json`` (nnspec/schemas/summary.json)."""
    from ..core.util import fmt_count

    m = s.model
    total = s.params + s.non_trainable
    rows = [{"name": r.name, "kind": r.kind, "line": r.line, "args": r.args,
             "inputs": [_shape_json(t) for t in r.inputs], "output": _shape_json(r.output),
             "output_text": str(r.output), "params": r.params + r.non_trainable,
             "trainable": r.params, "non_trainable": r.non_trainable, "buffers": r.buffers,
             "param_percent": round(100 * (r.params + r.non_trainable) / total, 4)
             if total else 0.0,
             "macs": _dim_json(r.macs), "macs_text": fmt_count(r.macs), "layers": r.layers,
             "connected_to": r.connected, "internal": r.internal, "shared": r.shared}
            for r in s.rows]
    return {"model": m.name,
            "inputs": [{"name": i.name, "shape": [_dim_json(d) for d in i.dims()],
                        "dtype": i.dtype} for i in m.inputs],
            "output": _shape_json(s.output), "layers": rows,
            "params": total, "trainable": s.params, "non_trainable": s.non_trainable,
            "buffers": s.buffers, "macs": _dim_json(s.macs), "dtype": s.dtype,
            "weight_bytes": s.weight_bytes, "batch_dim": s.batch,
            "activation_bytes": {"inference": _maybe_dim(s.inference_bytes),
                                 "training": _maybe_dim(s.training_bytes)}}


def fmt_bytes(n, units: str = "binary") -> str:
    """Bytes in binary (KiB, MiB: powers of 1024) or SI (kB, MB: powers of 1000) units; a
    symbolic size (a Dim) as its formula in bytes, a missing one as ``?``."""
    from ..core.util import fmt_count

    if n is None:
        return "?"
    if not isinstance(n, int):
        if not n.is_const:
            return f"{fmt_count(n)} B"
        n = n.value
    base, names = (1024, ("B", "KiB", "MiB", "GiB", "TiB", "PiB")) if units == "binary" \
        else (1000, ("B", "kB", "MB", "GB", "TB", "PB"))
    if n < base:
        return f"{n} B"
    value, i = float(n), 0
    while value >= base and i < len(names) - 1:
        value /= base
        i += 1
    return f"{value:,.1f} {names[i]}"


def _clip_cell(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    keep = width - 3
    return text[:(keep + 1) // 2] + "..." + text[len(text) - keep // 2:]


#: The width of ``summary --narrow``, and of a table written to a pipe or file (unless the
#: environment's COLUMNS says otherwise).
NARROW_COLUMNS = 100
#: The table's columns: (title, right-aligned). When the table is wider than the terminal,
#: the columns of DROP_ORDER go, in that order; then the name and kind cells are cut in their
#: middle. Output shapes, parameters and MACs are never cut.
COLUMNS = (("name", False), ("kind", False), ("args", False), ("input", False),
           ("output", False), ("connected to", False), ("params", True), ("%", True),
           ("MACs", True))
DROP_ORDER = ("args", "input", "connected to", "%")


def _table(cols: list[str], rows: list[dict], width: int | None) -> list[str]:
    """Aligned columns of ``rows`` (dicts by column title), columns dropped in DROP_ORDER
    and then the name and kind cut until a line fits ``width``; a column that is empty in
    every row is left out."""
    cols = [c for c in cols if any(r.get(c) for r in rows) or c in ("name", "output")]

    def widths(cs):
        return {c: max(len(str(r.get(c, ""))) for r in [dict(zip(cs, cs)), *rows]) for c in cs}

    def line_width(w):
        return 2 + sum(w.values()) + 2 * (len(w) - 1)

    w = widths(cols)
    if width is not None:
        for c in DROP_ORDER:
            if line_width(w) <= width:
                break
            if c in cols:
                cols.remove(c)
                w = widths(cols)
        for c, least in (("kind", 10), ("name", 12)):  # the kind is cut first
            while line_width(w) > width and w[c] > least:
                w[c] -= 1
    right = {title for title, r in COLUMNS if r}
    out = []
    for j, row in enumerate([dict(zip(cols, cols)), *rows]):
        cells = [_clip_name(str(row.get(c, "")), w[c]) if c == "name"
                 else _clip_cell(str(row.get(c, "")), w[c]) for c in cols]
        cells = [x.rjust(w[c]) if c in right else x.ljust(w[c]) for x, c in zip(cells, cols)]
        out.append("  " + "  ".join(cells).rstrip())
        if j == 0:
            out.append("  " + "  ".join("-" * w[c] for c in cols))
    return out


def _clip_name(text: str, width: int) -> str:
    """A tree's name cut in its own text, keeping the indentation that places it."""
    name = text.lstrip(" ")
    indent = text[:len(text) - len(name)]
    return indent + _clip_cell(name, max(width - len(indent), 4))


def _relative(name: str, scope: list[str], blocks: dict, node_id: str | None) -> str:
    """``name`` as seen from the block ``scope``: the common prefix left out, and a layer
    that ends a block (whose output is the block's) named by that block."""
    parts = name.split(".")
    k = 0
    while k < len(scope) and k < len(parts) - 1 and parts[k] == scope[k]:
        k += 1
    for end in range(k + 1, len(parts)):
        b = blocks.get(".".join(parts[:end]))
        if b is not None and node_id is not None and b.node_id == node_id:
            return ".".join(parts[k:end])
    return ".".join(parts[k:])


def _rows(s, show_all: bool) -> tuple[list[dict], int]:
    """The table's rows as dicts, block calls as rows of their own with their layers
    indented under them (torchinfo's tree); and the count of internal rows left out."""
    from ..core.util import fmt_count

    total = s.params + s.non_trainable
    ids = {r.name: r.node_id for r in s.rows}
    ids.update((k, b.node_id) for k, b in s.blocks.items())
    shown = [r for r in s.rows if show_all or not r.internal]
    names = {r.name for r in s.rows}
    out: list[dict] = []
    opened: list[str] = []
    previous = s.model.inputs[0].name if s.model.inputs else None
    for r in shown:
        parts = r.name.split(".")
        scope = parts[:-1]
        k = 0
        while k < len(opened) and k < len(scope) and opened[k] == scope[k]:
            k += 1
        for depth in range(k, len(scope)):
            b = s.blocks[".".join(scope[:depth + 1])]
            out.append({"name": "  " * depth + scope[depth], "kind": b.kind,
                        "input": _first(b), "output": str(b.output), "params": "--",
                        "MACs": "--"})
        opened = scope
        connected = list(dict.fromkeys(_folded_name(c, names) for c in r.connected))
        if connected == [previous] and len(r.inputs) < 2:  # a chain; a join always shows
            connected = []
        params = r.params + r.non_trainable
        out.append({"name": "  " * len(scope) + parts[-1],
                    "kind": r.kind + (" (shared)" if r.shared else ""),
                    "args": r.args, "input": _first(r), "output": str(r.output),
                    "connected to": ", ".join(_relative(c, scope, s.blocks, ids.get(c))
                                              for c in connected),
                    "params": f"{params:,}",
                    "%": f"{100 * params / total:.1f}%" if total else "-",
                    "MACs": fmt_count(r.macs)})
        previous = r.name
    return out, len(s.rows) - len(shown)


def _folded_name(name: str, names: set[str]) -> str:
    """The row that shows layer ``name``: itself, or the block call folded over it."""
    parts = name.split(".")
    for k in range(1, len(parts)):
        if ".".join(parts[:k]) in names:
            return ".".join(parts[:k])
    return name


def _first(r) -> str:
    return str(r.inputs[0]) if r.inputs else ""


def _summary_text(s, units: str, width: int | None, show_all: bool = False) -> list[str]:
    from ..core.util import fmt_count

    m = s.model
    total = s.params + s.non_trainable
    ins = ", ".join(f"{i.name}: [{', '.join(i.shape)}]" + (f" {i.dtype}" if i.dtype != "float"
                                                          else "") for i in m.inputs)
    lines = [f"model {m.name}({ins}) -> {s.output}"]  # a tuple for `gru 8 state`
    rows, hidden = _rows(s, show_all)
    lines += _table([c for c, _ in COLUMNS], rows, width)
    lines.append(f"  total: {total:,} parameters ({s.params:,} trainable, "
                 f"{s.non_trainable:,} non-trainable), {s.buffers:,} in buffers")
    lines.append(f"  MACs: {fmt_count(s.macs)}")
    lines.append(f"  weights: {fmt_bytes(s.weight_bytes, units)} in {s.dtype}")
    per = f"per sample ({s.batch} = 1)" if s.batch else "per pass"
    lines.append(f"  activations {per}: {fmt_bytes(s.inference_bytes, units)} inference, "
                 f"{fmt_bytes(s.training_bytes, units)} training")
    if s.inference_bytes is None:
        syms = sorted({x for r in s.rows for t in [r.output] for x in _type_symbols(t)}
                      - {s.batch})
        lines.append(f"  (the inference peak depends on {', '.join(syms)}: give a size with "
                     f"--dim {syms[0] if syms else 'T'}=SIZE)")
    if hidden:
        lines.append(f"  ({hidden} internal row{'s' if hidden != 1 else ''} not shown: "
                     "--all shows them)")
    if width is not None:  # a long formula (MACs of several symbols) is cut too
        lines = [_clip_cell(line, width) for line in lines]
    return lines


def _type_symbols(t) -> set[str]:
    if hasattr(t, "items"):
        return set().union(*(_type_symbols(i) for i in t.items))
    return set().union(*(d.symbols() for d in t.shape)) if t.shape else set()


def run(args) -> int:
    spec = load(single_spec(args.spec, "summary"))
    if spec.diagnostics:
        return fail(spec)
    if args.depth is not None and args.depth < 1:
        raise UsageError(f"--depth must be at least 1, got {args.depth}")
    dims = parse_dims(args.dim)
    models = [pick_model(spec, args.model)] if args.model else spec.program.models
    summaries = [spec.summary(m.name, args.dtype, args.depth, dims) for m in models]
    if args.json:
        print(json.dumps({"version": JSON_VERSION,
                          "models": [_summary_json(s) for s in summaries]}, indent=2))
        return EXIT_OK
    width = table_width(args.narrow, sys.stdout)
    for s in summaries:
        print("\n".join(_summary_text(s, args.units, width, args.all)))
        print()
    return EXIT_OK


def table_width(narrow: bool, stream) -> int:
    """The width the table fits: NARROW_COLUMNS with ``--narrow``; a terminal's width; else
    (a pipe or file) the environment's COLUMNS, or NARROW_COLUMNS."""
    import os
    import shutil

    if narrow:
        return NARROW_COLUMNS
    if stream.isatty():
        return shutil.get_terminal_size((NARROW_COLUMNS, 24)).columns
    value = os.environ.get("COLUMNS", "")
    return int(value) if value.isdigit() and int(value) > 0 else NARROW_COLUMNS


def add_arguments(p) -> None:
    add_spec(p)
    p.add_argument("--model", help="the model to summarise (default: every model)")
    p.add_argument("--json", action="store_true",
                   help="print JSON (nnspec schema summary) instead of a table")
    p.add_argument("--depth", type=int, metavar="K",
                   help="fold layers whose dotted name has more than K parts into one row "
                        "per block call (torchinfo's depth)")
    p.add_argument("--dtype", choices=("float32", "float64", "float16", "bfloat16"),
                   default="float32", help="element type for the byte figures "
                                           "(default float32; int tensors are int64)")
    p.add_argument("--units", choices=("binary", "si"), default="binary",
                   help="byte units: binary (KiB, MiB; the default) or si (kB, MB)")
    p.add_argument("--narrow", action="store_true",
                   help=f"fit the table in {NARROW_COLUMNS} columns, as when piped, also on "
                        "a wider terminal (columns dropped in order: args, input, connected "
                        "to, %%)")
    p.add_argument("--all", action="store_true",
                   help="show the internal rows too (item, pack, and views such as reshape "
                        "and transpose)")
    p.add_argument("--dim", action="append", metavar="NAME=SIZE",
                   help="bind a symbolic dim for the activation figures (the batch dim is 1)")
