"""Completion (:func:`completions`): from the line up to the cursor, what may be typed
there (:class:`~nnspec.tools.lsp.analysis.Item` objects): a layer kind or block where a
stage starts, a layer's keyword arguments after its name, a block's parameters inside its
call, the top-level keywords at the start of a line.
"""

from __future__ import annotations

import re

from .analysis import Analysis, Item
from .lookup import _WORD, _signature

_ASSIGN = re.compile(r"^\s*[A-Za-z_]\w*(\s*,\s*[A-Za-z_]\w*)*\s*=(?!=)")
_TOP_KEYWORDS = ("model", "block", "const", "use", "check", "train")


def completions(an: Analysis | None, before: str) -> list[Item]:
    """What may be typed at the end of ``before`` (the line up to the cursor): a layer kind
    or block where a stage starts, a layer's keyword arguments after its name, a block's
    parameters inside its call, the top-level keywords at the start of a line."""
    from ...layers import REGISTRY

    code, depth, opens, stage_at = _scan(before)
    if code is None:
        return []  # in a comment or a string
    scope = an.scope if an is not None else None
    if depth:  # inside a call: the called layer's or block's arguments
        head = _WORD.findall(code[:opens[-1]][-80:])
        called = head[-1] if head and code[:opens[-1]].endswith(head[-1]) else None
        if called in REGISTRY:
            return _argument_items(REGISTRY[called], code[opens[-1] + 1:])
        if scope is not None and called in scope.blocks:
            blk = scope.blocks[called]
            return [Item(p.name + "=", "argument", f"{called} parameter",
                         insert=p.name + "=") for p in blk.params[1:]]
        return []
    stage = code[stage_at:]
    if stage_at == 0:
        m = _ASSIGN.match(stage)
        if m:
            stage = stage[m.end():]
        stage = re.sub(r"^\s*return\b", "", stage)
    word = re.fullmatch(r"\s*([A-Za-z_]\w*)?", stage)
    if word is not None:
        prefix = word.group(1) or ""
        if stage_at == 0 and not before[:1].isspace() and not _ASSIGN.match(code):
            return [Item(k, "keyword") for k in _TOP_KEYWORDS if _match(k, prefix) is not None]
        return _stage_items(an, prefix)
    m = re.match(r"\s*([A-Za-z_]\w*)\s+(.*)$", stage, re.S)
    if m is None or m.group(1) not in REGISTRY:
        return []
    rest = m.group(2)
    if re.search(r"[=\w.]$", rest) and re.search(r"=\S*$", rest):
        return []  # a value is being typed
    return _argument_items(REGISTRY[m.group(1)], rest)


def _match(label: str, prefix: str) -> int | None:
    """How ``label`` matches what is typed: 0 it starts with it, 1 case aside, 2 its
    letters in order (``cv`` for ``conv``); None it does not."""
    if label.startswith(prefix):
        return 0
    low, want = label.lower(), prefix.lower()
    if low.startswith(want):
        return 1
    it = iter(low)
    return 2 if all(ch in it for ch in want) else None


def _usage(an: Analysis | None) -> dict[str, int]:
    """How often each word is written in the document's code (comments aside)."""
    if an is None:
        return {}
    got = an._usage
    if got is None:
        from collections import Counter

        got = an._usage = Counter(w for line in an.lines
                                  for w in _WORD.findall(line.split("#", 1)[0]))
    return got


def _stage_items(an: Analysis | None, prefix: str) -> list[Item]:
    """The layer kinds and blocks that match ``prefix``, best first: by how they match,
    then by how often the document uses them (a kind's other names count for it), a
    kind's own name before its other names, shorter first."""
    from ...layers import REGISTRY

    used = _usage(an)
    kind_use: dict[str, int] = {}
    for key, kind in REGISTRY.items():
        kind_use[kind.name] = kind_use.get(kind.name, 0) + used.get(key, 0)
    ranked = []
    for key, kind in REGISTRY.items():
        how = _match(key, prefix)
        if how is None:
            continue
        summary = kind.summary.split("\n")[0]
        same = f" (the same as {kind.name})" if key != kind.name else ""
        more = kind.summary if summary != kind.summary else ""
        item = Item(key, "layer", summary + same, doc=more, signature=_kind_signature(kind))
        ranked.append(((how, -used.get(key, 0), -kind_use[kind.name], key != kind.name,
                        len(key), key), item))
    scope = an.scope if an is not None else None
    if scope is not None:
        for name, blk in scope.blocks.items():
            how = _match(name, prefix)
            if how is not None:
                sig = _signature(blk)
                item = Item(name, "block", f"block {sig}", signature=sig[len(name):])
                ranked.append(((how, -used.get(name, 0), 0, False, len(name), name), item))
    ranked.sort(key=lambda p: p[0])
    return [item for _, item in ranked]


def _kind_signature(kind) -> str:
    """A kind's arguments, as ``nnspec``'s usage lines write them: `` <out> k=<k> [s=1]
    [ceil]`` (positional, required, optional with its default, flags)."""
    parts = [f"<{f}>" for f in kind.positional]
    for f, info in kind.fields().items():
        if f in kind.positional or f in kind.tensor_args:
            continue
        shown = f[:-1] if f.endswith("_") and kind.synonyms.get(f[:-1]) == f else f
        if info.is_required():
            parts.append(f"{shown}=<{shown}>")
        elif info.annotation is bool:
            parts.append(f"[{shown}]")
        else:
            parts.append(f"[{shown}={_plain(info.default)}]")
    return " " + " ".join(parts) if parts else ""


def _scan(before: str):
    """The line's code up to the cursor (None in a comment or string), the bracket depth
    there, where the open brackets are, and where the current stage starts."""
    depth, opens, stage_at, in_str = 0, [], 0, False
    for i, ch in enumerate(before):
        if in_str:
            in_str = ch != '"'
        elif ch == '"':
            in_str = True
        elif ch == "#":
            return None, 0, [], 0
        elif ch in "([":
            depth += 1
            opens.append(i)
        elif ch in ")]" and depth:
            depth -= 1
            opens.pop()
        elif ch == "|" and depth == 0:
            stage_at = i + 1
    if in_str:
        return None, 0, [], 0
    return before, depth, opens, stage_at


def _argument_items(kind, rest: str) -> list[Item]:
    """The kind's keyword arguments not given yet in ``rest``: each field as ``name=``
    (unless given already, by key or by position), its long names (``kernel_size=``), and a
    flag that is off by default also as its bare word (``ceil``). A field named with a
    trailing underscore (``global_``, a Python keyword) is offered by its language name."""
    from pydantic_core import PydanticUndefined

    atoms = _atoms(rest)
    keyed = {a.split("=", 1)[0].strip() for a in atoms if "=" in a}
    given = keyed | {kind.synonyms.get(k, k) for k in keyed}
    fields = kind.fields()
    flags = {w for w in atoms if _WORD.fullmatch(w)
             and fields.get(kind.synonyms.get(w, w)) is not None
             and fields[kind.synonyms.get(w, w)].annotation is bool}
    given |= {kind.synonyms.get(w, w) for w in flags}
    npos = sum(1 for a in atoms if "=" not in a and a not in flags)
    given |= set(kind.positional[:npos])
    longs: dict[str, list[str]] = {}
    for long, short in kind.synonyms.items():
        longs.setdefault(short, []).append(long)
    items = []
    for name, f in fields.items():
        if name in given:
            continue
        names = longs.get(name, [])
        shown = names[0] if name.endswith("_") and names else name
        names = [n for n in names if n != shown]
        default = f.default
        what = "required" if default is PydanticUndefined else f"default {_plain(default)}"
        if name in kind.tensor_args:
            what = "a named tensor"
        also = f"; also {', '.join(n + '=' for n in names)}" if names else ""
        items.append(Item(shown + "=", "argument", f"{kind.name}: {what}{also}",
                          kind.summary, shown + "="))
        for long in names:
            items.append(Item(long + "=", "argument", f"{kind.name}: the same as {shown}=",
                              kind.summary, long + "="))
        if f.annotation is bool and default is False:
            items.append(Item(shown, "argument", f"{kind.name}: flag ({shown}=true)",
                              kind.summary))
    return items


def _atoms(rest: str) -> list[str]:
    """The arguments written so far: runs of text separated by blanks outside brackets
    (``k=(3, 3)`` is one), without the one being typed at the end."""
    out, cur, depth = [], "", 0
    for ch in rest:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(depth - 1, 0)
        if ch.isspace() and depth == 0:
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
    return out


def _plain(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)
