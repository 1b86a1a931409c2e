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
             "macs": _dim_json(r.macs), "macs_text": fmt_count(r.macs), "layers": r.layers}
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


#: The width of ``summary --narrow``.
NARROW_COLUMNS = 100


def _table(head, rows, right: set[int], width: int | None) -> list[str]:
    """Aligned columns; with ``width``, the text columns that are widest are cut (in their
    middle, ``...``) until a line fits."""
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    if width is not None:
        shrinkable = [i for i in range(len(head)) if i not in right]
        while 2 + sum(widths) + 2 * (len(widths) - 1) > width:
            i = max(shrinkable, key=lambda k: widths[k])
            if widths[i] <= 8:
                break
            widths[i] -= 1
    out = []
    for j, row in enumerate([head, *rows]):
        cells = [_clip_cell(str(c), widths[i]) for i, c in enumerate(row)]
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                 for i, c in enumerate(cells)]
        out.append("  " + "  ".join(cells).rstrip())
        if j == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    return out


def _summary_text(s, units: str, narrow_width: int | None) -> list[str]:
    from ..core.util import fmt_count

    m = s.model
    total = s.params + s.non_trainable

    def pct(r) -> str:
        return f"{100 * (r.params + r.non_trainable) / total:.1f}%" if total else "-"

    ins = ", ".join(f"{i.name}: [{', '.join(i.shape)}]" + (f" {i.dtype}" if i.dtype != "float"
                                                          else "") for i in m.inputs)
    lines = [f"model {m.name}({ins}) -> {s.output}"]  # a tuple for `gru 8 state`
    first_in = [str(r.inputs[0]) if r.inputs else "" for r in s.rows]
    if narrow_width is None:
        head = ("name", "kind", "args", "input", "output", "params", "%", "MACs")
        rows = [(r.name, r.kind, r.args, x, str(r.output), f"{r.params + r.non_trainable:,}",
                 pct(r), fmt_count(r.macs)) for r, x in zip(s.rows, first_in)]
        lines += _table(head, rows, {5, 6, 7}, None)
    else:
        head = ("name", "kind", "output", "params", "%", "MACs")
        rows = [(r.name, r.kind, str(r.output), f"{r.params + r.non_trainable:,}", pct(r),
                 fmt_count(r.macs)) for r in s.rows]
        lines += _table(head, rows, {3, 4, 5}, narrow_width)
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
    if narrow_width is not None:  # a long formula (MACs of several symbols) is cut too
        lines = [_clip_cell(line, narrow_width) for line in lines]
    return lines


def _type_symbols(t) -> set[str]:
    if hasattr(t, "items"):
        return set().union(*(_type_symbols(i) for i in t.items))
    return set().union(*(d.symbols() for d in t.shape)) if t.shape else set()


def run(args) -> int:
    import shutil

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
    narrow = NARROW_COLUMNS if args.narrow else None
    if narrow is None and sys.stdout.isatty():
        columns = shutil.get_terminal_size().columns
        wide = max(len(line) for s in summaries for line in _summary_text(s, args.units, None))
        narrow = columns if wide > columns else None
    for s in summaries:
        print("\n".join(_summary_text(s, args.units, narrow)))
        print()
    return EXIT_OK


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
                   help=f"fit the table in {NARROW_COLUMNS} columns (no args and input "
                        "columns; automatic on a narrower terminal)")
    p.add_argument("--dim", action="append", metavar="NAME=SIZE",
                   help="bind a symbolic dim for the activation figures (the batch dim is 1)")
