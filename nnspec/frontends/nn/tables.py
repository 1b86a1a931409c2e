"""The grammar file and its LALR tables, shipped precomputed as JSON next to it (see
``parse.parser``): reading them, and writing them again after a grammar change."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lark
from lark import Lark

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


def _grammar_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_tables(text: str, transformer) -> Lark | None:
    """The parser from the shipped tables, or None when they do not fit the grammar/Lark."""
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
    """Regenerate the shipped tables (see :func:`tables_json`)."""
    tables_path().write_text(tables_json(), encoding="utf-8")
