"""The grammar file and its LALR tables, shipped precomputed as JSON next to it (see
``parse.parser``): reading them, and writing them again after a grammar change."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

_GRAMMAR_FILE = "nnspec.lark"


def grammar_path() -> Path:
    """The grammar file: inside the installed package, or in the source tree's grammar/."""
    here = Path(__file__).resolve().parents[2]  # the nnspec package
    for cand in (here / "grammar" / _GRAMMAR_FILE, here.parent / "grammar" / _GRAMMAR_FILE):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"nnspec grammar {_GRAMMAR_FILE} not found next to {here}")


def grammar_text() -> str:
    return grammar_path().read_text()


def tables_path() -> Path:
    return grammar_path().with_suffix(".tables.json")


def driver_path() -> Path:
    return grammar_path().with_suffix(".driver.json")


def _grammar_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_tables(text: str, transformer):
    """The parser from the shipped tables, or None when they do not fit the grammar/Lark."""
    import lark
    from lark import Lark

    try:
        tables = json.loads(tables_path().read_text(encoding="utf-8"),
                            object_hook=_from_json)
    except (OSError, ValueError):
        return None
    if (not isinstance(tables, dict) or tables.get("grammar_sha256") != _grammar_digest(text)
            or tables.get("lark_version") != lark.__version__):
        return None
    try:
        return Lark._load_from_dict(tables["data"], tables["memo"], transformer=transformer)
    except Exception:  # tables Lark cannot read back: build from the grammar instead
        return None


# Lark's serialised parser has int-keyed dicts and tuples, which JSON has not: they are
# written as {"__items__": [[key, value], ...]} and {"__tuple__": [...]} (and so is a dict
# that would read as one of those).
def _to_json(x):
    if isinstance(x, dict):
        if all(isinstance(k, str) for k in x) and not (
                len(x) == 1 and next(iter(x)) in ("__items__", "__tuple__")):
            return {k: _to_json(v) for k, v in x.items()}
        return {"__items__": [[_to_json(k), _to_json(v)] for k, v in x.items()]}
    if isinstance(x, tuple):
        return {"__tuple__": [_to_json(v) for v in x]}
    if isinstance(x, list):
        return [_to_json(v) for v in x]
    return x


def _from_json(d: dict):
    if len(d) == 1:
        if "__items__" in d:
            return {k: v for k, v in d["__items__"]}
        if "__tuple__" in d:
            return tuple(d["__tuple__"])
    return d


def tables_json() -> str:
    """The shipped tables' text for the current grammar and Lark version.

    After changing the grammar, regenerate them with
    ``python -c "from nnspec.frontends.nn import parse; parse.write_tables()"``; a test
    checks that the shipped tables belong to the grammar and parse like a freshly built parser.
    """
    import lark
    from lark import Lark
    from lark.grammar import Rule
    from lark.lexer import TerminalDef

    text = grammar_text()
    data, memo = Lark(text, parser="lalr", maybe_placeholders=True).memo_serialize(
        [TerminalDef, Rule])
    table = data.get("parser", {}).get("parser", {})
    if isinstance(table.get("states"), dict):
        # the LALR actions, (kind, argument) pairs that Lark unpacks on loading: written as
        # JSON arrays, not as tuples, which are decoded one object at a time
        table["states"] = {state: {tok: list(act) for tok, act in actions.items()}
                           for state, actions in table["states"].items()}
    return json.dumps({"grammar_sha256": _grammar_digest(text), "lark_version": lark.__version__,
                       "data": _to_json(data), "memo": _to_json(memo)},
                      separators=(",", ":")) + "\n"


def write_tables() -> None:
    """Regenerate the shipped tables (see :func:`tables_json`) and the driver's
    (:func:`driver_json`)."""
    tables_path().write_text(tables_json(), encoding="utf-8")
    driver_path().write_text(driver_json(), encoding="utf-8")


def load_driver(text: str) -> dict | None:
    """The shipped tables of ``lalr.Driver``, or None when they were not made from this
    grammar by the Lark installed (read from its source, without importing it)."""
    try:
        data = json.loads(driver_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (not isinstance(data, dict) or data.get("grammar_sha256") != _grammar_digest(text)
            or data.get("lark_version") != _lark_version()):
        return None
    return data


def _lark_version() -> str | None:
    """The installed Lark's version, as ``lark.__version__`` would say (read from its
    ``__init__.py``: importing Lark is what the driver saves)."""
    lark = sys.modules.get("lark")
    if lark is not None:
        return getattr(lark, "__version__", None)
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec("lark")
    if spec is None or not spec.origin:
        return None
    try:
        source = Path(spec.origin).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    import re

    m = re.search(r"""^__version__(?:\s*:\s*str)?\s*=\s*["']([^"']+)["']\s*$""", source, re.M)
    return m.group(1) if m else None


def driver_json() -> str:
    """The tables of ``lalr.Driver``, taken from a Lark parser of the grammar: its LALR
    states, its rules with what Lark's tree builder does with their children, and its
    contextual lexer's scanners (patterns in Lark's order, keywords, ignored terminals)."""
    import functools

    import lark
    from lark import Lark
    from lark.lexer import PatternStr, UnlessCallback
    from lark.parse_tree_builder import (
        ChildFilterLALR,
        ChildFilterLALR_NoPlaceholders,
        ExpandSingleChild,
    )
    from lark.parsers.lalr_analysis import Shift

    text = grammar_text()
    p = Lark(text, parser="lalr", maybe_placeholders=True)
    table = p.parser.parser.parser.parse_table
    rules: list = []
    index: dict = {}
    for rule, chain in p._parse_tree_builder.rule_builders:
        expand1, keep, tail = False, None, 0
        for w in chain:
            if w is ExpandSingleChild:
                expand1 = True
            elif isinstance(w, functools.partial) and w.func is ChildFilterLALR:
                keep, tail = [list(x) for x in w.args[0]], w.args[1]
            elif isinstance(w, functools.partial) and w.func is ChildFilterLALR_NoPlaceholders:
                keep = [[i, bool(x), 0] for i, x in w.args[0]]
            else:
                raise ValueError(f"the driver cannot replay {w!r} of rule {rule}")
        index[rule] = len(rules)
        name = rule.alias or rule.options.template_source or rule.origin.name
        rules.append([str(rule.origin.name), len(rule.expansion), str(name), expand1, keep,
                      tail])
    n = max(table.states) + 1
    assert sorted(table.states) == list(range(n))
    states = [{} for _ in range(n)]
    for s, actions in table.states.items():
        for sym, (action, arg) in actions.items():
            states[s][str(sym)] = arg if action is Shift else ~index[arg]
    ctx = p.parser.lexer
    root = ctx.root_lexer
    # every terminal in Lark's order (priority, width, name): each state's scanner tries its
    # own in this order
    terminals = [[t.name, t.pattern.to_regexp()] for t in root.terminals]
    lexers: list = []
    by_id: dict = {}
    state_lexer = []
    uses: dict = {}
    for s in range(n):
        lx = ctx.lexers[s]
        if id(lx) not in by_id:
            by_id[id(lx)] = len(lexers)
            allow = [t.name for t in lx.scanner.terminals]  # (lx.callback is made with it)
            unless = {}
            for type_, cb in lx.callback.items():
                if not isinstance(cb, UnlessCallback):
                    raise ValueError(f"the driver cannot replay lexer callback {cb!r}")
                words = {}
                for t in cb.scanner.terminals:
                    if not isinstance(t.pattern, PatternStr) or t.pattern.flags:
                        raise ValueError(f"the driver cannot replay keyword {t}")
                    words.setdefault(t.pattern.value, t.name)
                unless[type_] = words
            lexers.append({"allow": allow, "unless": unless})
        state_lexer.append(by_id[id(lx)])
        for name in lexers[by_id[id(lx)]]["allow"]:
            uses[name] = uses.get(name, 0) + 1
    # the terminals of one scan tried first in every state: Lark's global scanner, less those
    # that few states accept (a PATH after `as` would hide every INT)
    union = [t.name for t in root.scanner.terminals if uses.get(t.name, 0) * 50 >= n]
    g_flags = p.lexer_conf.g_regex_flags
    if g_flags or any(t.pattern.flags for t in root.terminals):
        raise ValueError("the driver cannot replay regular expression flags")
    data = {"grammar_sha256": _grammar_digest(text), "lark_version": lark.__version__,
            "start": table.start_states["start"], "end": table.end_states["start"],
            "rules": rules, "states": states, "state_lexer": state_lexer, "lexers": lexers,
            "terminals": terminals, "union": union, "ignore": sorted(root.ignore_types),
            "newline": sorted(root.newline_types)}
    return json.dumps(data, separators=(",", ":")) + "\n"
