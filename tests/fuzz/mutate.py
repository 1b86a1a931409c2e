"""The mutation fuzzer: mutants of the bundled specs and of their JSON IR.

Every mutant is a pure function of ``(seed, index)``, so a failure is reproduced by its
two numbers alone (``python -m tests.fuzz --replay mutant:SEED:INDEX``).

Spec mutations work on tokens (deletion, duplication, swap, replacement), numbers (edge
values, literals longer than Python's int-string limit, floats that overflow), structure
(deep nesting, long operator chains, self-calling blocks, huge repetitions), and bytes
(random bytes, invalid UTF-8, unicode marks, NUL, form feeds, line-ending changes).
IR mutations change a JSON value's type or value, drop or duplicate keys, point node
inputs at unknown or later ids, swap ops, and truncate or corrupt the JSON text.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# ---- the seed corpus -----------------------------------------------------------------------


def _bundled_paths() -> list[Path]:
    import nnspec

    pkg = Path(nnspec.__file__).resolve().parent
    specs = sorted((REPO / "specs").glob("*.nn")) or sorted((pkg.parent / "specs").glob("*.nn"))
    return specs + sorted((pkg / "stdlib").glob("*.nn"))


@lru_cache(maxsize=None)
def seed_specs() -> tuple[tuple[str, str], ...]:
    """(file name, text) of every bundled spec."""
    return tuple((p.name, p.read_text(encoding="utf-8")) for p in _bundled_paths())


@lru_cache(maxsize=None)
def seed_irs() -> tuple[tuple[str, str], ...]:
    """(file name, JSON IR text) of every bundled spec that loads cleanly."""
    import nnspec

    out = []
    for p in _bundled_paths():
        name = f"{p.parent.name}/{p.name}"  # relative, as `nnspec compile` run there writes
        spec = nnspec.loads(p.read_text(encoding="utf-8"), name, strict=False)
        if spec.ok and spec.program is not None:
            out.append((p.stem + ".json", spec.program.to_json()))
    return tuple(out)


# ---- tokens --------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<comment>\#[^\n]*)
  | (?P<string>"[^"\n]*")
  | (?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<op>->|//|[-+*/|,:=()\[\]{}])
  | (?P<nl>\r?\n)
  | (?P<ws>[ \t]+)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)


def tokenize(text: str) -> list[tuple[str, str]]:
    return [(m.lastgroup, m.group()) for m in _TOKEN.finditer(text)]


def _layer_words() -> list[str]:
    from nnspec.layers import REGISTRY

    return sorted(REGISTRY)


KEYWORDS = ["model", "block", "const", "use", "check", "return", "as", "int", "float",
            "true", "false", "same", "valid", "global", "ceil", "state", "causal", "learned",
            "scale", "bidirectional", "N", "T", "H", "W", "x", "y", "_", "self", "None",
            "__class__", "training", "forward", "torch", "math", "nn", "F", "inf", "nan"]
OPERATORS = ["(", ")", "[", "]", "{", "}", ",", ":", "=", "|", "+", "-", "*", "/", "//",
             "->", "\n", "#", '"', "!", "@", ";", ".", "\\"]
EDGE_NUMBERS = ["0", "-1", "1", "2", "3", "-0", str(2**31), str(2**31 - 1), str(2**63),
                str(2**63 - 1), str(2**64), str(10**20), "1" + "0" * 4300, "9" * 4301,
                "1" + "0" * 5000, "1e309", "-1e309", "1e-400", "0.0", "-0.0", "1e308",
                "5e-324", "0.5", "1.0", "1e5", "00", "007", "1_000", "1.", ".5", "1e", "0x10",
                "nan", "inf", "-inf", "1e-5", "0.9999999999999999", "2.5"]
UNICODE = ["\u0301", "\u202e", "\u200f", "\u200b", "\ufeff", "\x00", "\x0c", "\x0b", "\x1b",
           "\x85", "\u2028", "\u2029", "\ufffd", "\uff11", "é", "ñ", "\U0001f600", "Ω", "ℕ",
           "\u00a0", "\t", "\r", "\x7f", "\u0300" * 50, "\ud7ff", "\u3000", "\u0663"]
BAD_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82",
            b"\xf4\x90\x80\x80", b"\x80", b"\xf8\x88\x80\x80\x80", b"\x00\x00"]


@dataclass
class Mutant:
    """One mutated input: its bytes, the file name it runs as, what was done to it."""

    seed: int
    index: int
    source: str  # the bundled file it came from
    name: str  # case.nn or case.json
    data: bytes
    mutations: list[str]

    @property
    def label(self) -> str:
        return f"mutant:{self.seed}:{self.index}"

    def head(self, lines: int = 3, width: int = 120) -> str:
        text = self.data[:4000].decode("utf-8", "replace")
        out = [ln[:width] + ("…" if len(ln) > width else "") for ln in text.splitlines()[:lines]]
        return "\n".join(out)


# ---- spec text mutations ---------------------------------------------------------------------


def _pick_span(rng: random.Random, toks: list) -> int:
    """A token index, preferring meaningful tokens over whitespace."""
    if not toks:
        return 0
    for _ in range(8):
        i = rng.randrange(len(toks))
        if toks[i][0] not in ("ws",):
            return i
    return rng.randrange(len(toks))


def _random_token(rng: random.Random, toks: list) -> str:
    choice = rng.random()
    if choice < 0.3 and toks:
        return rng.choice(toks)[1]
    if choice < 0.5:
        return rng.choice(_layer_words())
    if choice < 0.7:
        return rng.choice(KEYWORDS)
    if choice < 0.85:
        return rng.choice(OPERATORS)
    return rng.choice(EDGE_NUMBERS)


def _deep(rng: random.Random) -> str:
    depth = rng.choice([50, 200, 1000, 3000, 10000, 50000])
    form = rng.randrange(7)
    if form == 0:
        return "(" * depth + "1" + ")" * depth
    if form == 1:
        return "[" * depth + "N" + "]" * depth
    if form == 2:
        return "floor(" * depth + "N" + ")" * depth
    if form == 3:
        return "(1, " * depth + "1" + ")" * depth
    if form == 4:
        return "-" * depth + "1"
    if form == 5:
        return "ceil(" * depth + "H / 2" + ")" * depth
    return "(" * depth  # unbalanced


def _chain(rng: random.Random) -> str:
    n = rng.choice([100, 1000, 3000, 10000])
    atom = rng.choice(["a", "N", "1", "relu", "x", "2", "H"])
    op = rng.choice([" + ", " // ", " * ", " - ", " / ", " | ", "+"])
    return op.join([atom] * n)


def _structure(rng: random.Random) -> str:
    """A whole definition that stresses expansion or recursion."""
    form = rng.randrange(9)
    if form == 0:
        return "block A(x) {\n    a = x | A()\n    b = x | A()\n    return a + b\n}\n"
    if form == 1:
        return "block B(x) {\n    B()\n}\nblock C(x) {\n    D()\n}\nblock D(x) {\n    C()\n}\n"
    if form == 2:
        n = rng.choice([10**6, 10**9, 2**63, 10**30])
        return f"model R(x: [N, 4]) {{\n    relu * {n}\n}}\n"
    if form == 3:
        lines = ["const a0 = " + rng.choice(["2", "10", "N"])]
        lines += [f"const a{i + 1} = a{i} * a{i}" for i in range(rng.choice([20, 34, 64]))]
        return "\n".join(lines) + "\n"
    if form == 4:
        s = " * ".join(["(A + B + C + D)"] * rng.choice([10, 30, 60]))
        return f"model P(x: [N, {s}]) {{\n    relu\n}}\n"
    if form == 5:
        blocks = [f"block L{i}(x) {{\n    L{i + 1}() * 10\n}}\n" for i in range(9)]
        return "".join(blocks) + "block L9(x) {\n    relu\n}\nmodel E(x: [N, 4]) {\n    L0()\n}\n"
    if form == 6:
        return "{" * rng.choice([1000, 50000]) + "\n"
    if form == 7:
        return "model Q(x: [N, 4]) {\n" + "    relu\n" * rng.choice([1000, 20000]) + "}\n"
    return "use \"" + "a" * rng.choice([255, 300, 5000]) + ".nn\"\n"


def mutate_text(rng: random.Random, text: str, others: list[str]) -> tuple[bytes, list[str]]:
    """Apply 1-3 random mutations to spec text; returns the bytes and what was done."""
    done: list[str] = []
    data: bytes | None = None
    rounds = rng.choice([1, 1, 1, 2, 2, 3])
    for _ in range(20):  # some operators do not apply (no number to replace): draw again
        if len(done) >= rounds:
            break
        toks = tokenize(text)
        op = rng.randrange(16)
        i = _pick_span(rng, toks)
        if op == 0 and toks:  # delete 1-3 tokens
            n = rng.choice([1, 1, 2, 3])
            done.append(f"delete {toks[i][1]!r}")
            del toks[i:i + n]
        elif op == 1 and toks:
            n = rng.choice([1, 1, 2, 5])
            done.append(f"duplicate {''.join(t for _, t in toks[i:i + n])!r}")
            toks[i:i] = toks[i:i + n]
        elif op == 2 and toks:
            j = _pick_span(rng, toks)
            done.append(f"swap {toks[i][1]!r} {toks[j][1]!r}")
            toks[i], toks[j] = toks[j], toks[i]
        elif op == 3 and toks:
            new = _random_token(rng, toks)
            done.append(f"replace {toks[i][1]!r} -> {new[:20]!r}")
            toks[i] = ("other", new)
        elif op in (4, 5):  # an edge number in place of a number
            nums = [k for k, t in enumerate(toks) if t[0] == "number"]
            if nums:
                k = rng.choice(nums)
                new = rng.choice(EDGE_NUMBERS)
                done.append(f"number {toks[k][1]} -> {new[:20]}")
                toks[k] = ("number", new)
        elif op == 6:
            new = _deep(rng)
            done.append(f"deep nesting {new[:12]!r}x{len(new)}")
            toks[i:i + 1] = [("other", new)]
        elif op == 7:
            new = _chain(rng)
            done.append(f"chain {new[:12]!r}x{len(new)}")
            toks[i:i + 1] = [("other", new)]
        elif op == 8:
            new = _structure(rng)
            done.append(f"structure {new[:30]!r}")
            toks.insert(0 if rng.random() < 0.5 else len(toks), ("other", new))
        elif op == 9:  # a long line
            n = rng.choice([1000, 50000])
            new = rng.choice(["{", "relu ", "x", " ", "#", "a" * 100 + " "]) * n
            done.append(f"long line {new[:8]!r}x{n}")
            toks.insert(i, ("other", new + "\n"))
        elif op == 10:
            new = rng.choice(UNICODE)
            done.append(f"unicode {new[:3]!r}")
            toks.insert(i, ("other", new))
        elif op == 11:  # line endings
            form = rng.randrange(4)
            joined = "".join(t for _, t in toks)
            joined = [joined.replace("\n", "\r\n"), joined.replace("\n", "\r"),
                      joined.rstrip("\n"), joined.replace("\n", "\n\x0c", 3)][form]
            done.append(["CRLF", "CR", "no final newline", "form feeds"][form])
            toks = [("other", joined)]
        elif op == 12 and others:  # splice a line of another spec
            line = rng.choice(rng.choice(others).splitlines() or [""])
            done.append(f"splice {line[:30]!r}")
            toks.insert(i, ("other", "\n" + line + "\n"))
        elif op == 13:  # repetition or size edge after a stage
            new = rng.choice([" * 0", " * -1", " * 1000000000", " * 2", " * (2, 3)", " * N"])
            done.append(f"repeat {new!r}")
            k = next((k for k in range(i, len(toks)) if toks[k][0] == "nl"), len(toks))
            toks.insert(k, ("other", new))
        elif op == 14:  # truncate
            cut = rng.randrange(len(toks) + 1)
            done.append(f"truncate at token {cut}")
            toks = toks[:cut]
        else:  # byte-level: random bytes or invalid UTF-8
            raw = "".join(t for _, t in toks).encode("utf-8")
            pos = rng.randrange(len(raw) + 1)
            if rng.random() < 0.5:
                ins = rng.choice(BAD_UTF8)
            else:
                ins = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 64])))
            done.append(f"bytes {ins[:8]!r} at {pos}")
            data = raw[:pos] + ins + raw[pos:]
            try:
                text = data.decode("utf-8")
                data = None
            except UnicodeDecodeError:
                break  # no more text-level mutations on non-UTF-8 input
            continue
        text = "".join(t for _, t in toks)
    if data is None:
        data = text.encode("utf-8", "surrogatepass")
    return data, done


# ---- JSON IR mutations ---------------------------------------------------------------------


def _paths(obj, prefix=()):
    """Every (path, value) in a JSON tree."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def _set(obj, path, value) -> None:
    _get(obj, path[:-1])[path[-1]] = value


EDGE_VALUES = [0, -1, 1, 2, 2**31, 2**63, -(2**63), 10**20, 10**40, 0.5, -0.0, 1e308,
               float("inf"), float("nan"), True, False, None, "", "N", "x", "nope", "-1",
               "floor(", "N +", "0", "(" * 300 + "N" + ")" * 300, [], {}, [1, 2], {"a": 1},
               "v1", "in_x", "1" * 5000]


def mutate_ir(rng: random.Random, text: str, ops: list[str]) -> tuple[bytes, list[str]]:
    """Apply 1-3 structural mutations to a JSON IR document."""
    doc = json.loads(text)
    done: list[str] = []
    rounds = rng.choice([1, 1, 2, 3])
    for _ in range(20):
        if len(done) >= rounds:
            break
        paths = [p for p, _ in _paths(doc) if p]
        if not paths:
            break
        path = rng.choice(paths)
        parent = _get(doc, path[:-1])
        value = _get(doc, path)
        op = rng.randrange(11)
        where = "/".join(str(p) for p in path)
        if op in (0, 1):
            new = rng.choice(EDGE_VALUES)
            done.append(f"set {where} = {str(new)[:30]}")
            _set(doc, path, new)
        elif op == 2 and isinstance(parent, dict):
            done.append(f"drop {where}")
            del parent[path[-1]]
        elif op == 2 and isinstance(parent, list):
            done.append(f"drop {where}")
            del parent[path[-1]]
        elif op == 3 and isinstance(parent, list):
            done.append(f"duplicate {where}")
            parent.insert(path[-1], json.loads(json.dumps(value)))
        elif op == 4:  # change the type of a value
            conv = rng.choice([str, lambda v: [v], lambda v: {"v": v}, lambda v: None,
                               lambda v: len(str(v)), lambda v: bool(v)])
            done.append(f"retype {where}")
            _set(doc, path, conv(value))
        elif op == 5:  # node inputs: unknown, later or own ids
            nodes = [(p, v) for p, v in _paths(doc) if p and p[-1] == "inputs"
                     and isinstance(v, list)]
            if nodes:
                p, v = rng.choice(nodes)
                ids = [x for _, x in _paths(doc) if isinstance(x, dict) and "id" in x]
                new = rng.choice(["nope", "", "in_missing"] + [str(x.get("id")) for x in ids])
                done.append(f"input {'/'.join(map(str, p))} -> {new}")
                if v and rng.random() < 0.7:
                    v[rng.randrange(len(v))] = new
                else:
                    v.append(new)
        elif op == 6:  # a wrong op
            nodes = [(p, v) for p, v in _paths(doc) if p and p[-1] == "op"]
            if nodes:
                p, _ = rng.choice(nodes)
                new = rng.choice(ops + ["nope", "", "__init__"])
                done.append(f"op {'/'.join(map(str, p))} -> {new}")
                _set(doc, p, new)
        elif op == 7:  # shapes and dims
            shapes = [(p, v) for p, v in _paths(doc) if p and p[-1] in ("shape", "dims")
                      and isinstance(v, list)]
            if shapes:
                p, v = rng.choice(shapes)
                form = rng.randrange(4)
                if form == 0:
                    v.clear()
                elif form == 1 and v:
                    v.pop()
                elif form == 2:
                    v.append(rng.choice(["N", "1", "0", "-3", "10**12", "1000000000000",
                                         "H", "_"]))
                else:
                    v[:] = [rng.choice(["N", "T", "2", "1", "0"]) for _ in range(
                        rng.choice([0, 1, 2, 5, 9]))]
                done.append(f"shape {'/'.join(map(str, p))} -> {v[:6]}")
        elif op == 8:  # params copied from another node
            params = [(p, v) for p, v in _paths(doc) if p and p[-1] == "params"]
            if len(params) > 1:
                (p1, _), (_, v2) = rng.sample(params, 2)
                done.append(f"params {'/'.join(map(str, p1))} from another node")
                _set(doc, p1, json.loads(json.dumps(v2)))
        elif op == 9 and isinstance(parent, list) and len(parent) > 1:
            done.append(f"shuffle {'/'.join(map(str, path[:-1]))}")
            rng.shuffle(parent)
        else:  # an unknown key
            if isinstance(value, dict):
                value[rng.choice(["extra", "id", "op", "params", "__proto__"])] = \
                    rng.choice(EDGE_VALUES)
                done.append(f"key in {where}")
    out = json.dumps(doc)
    if rng.random() < 0.08:  # text-level damage: truncation, duplicate keys, bad bytes
        form = rng.randrange(3)
        if form == 0:
            cut = rng.randrange(len(out) + 1)
            out = out[:cut]
            done.append(f"truncate json at {cut}")
        elif form == 1:
            out = out.replace('"op": ', '"op": "relu", "op": ', 1)
            done.append("duplicate key op")
        else:
            done.append("bad utf-8 in json")
            return out.encode() + b"\xff", done
    return out.encode("utf-8"), done


# ---- cases ----------------------------------------------------------------------------------

CHECK_FORMATS = (["check", "{}"], ["check", "--format", "json", "{}"],
                 ["check", "--format", "github", "{}"])


def mutant(seed: int, index: int) -> Mutant:
    """The index-th mutant of the run with this seed: every 4th is a JSON IR mutant."""
    rng = random.Random(f"mutant:{seed}:{index}")
    if index % 4 == 3:
        source, text = rng.choice(seed_irs())
        data, done = mutate_ir(rng, text, _layer_words())
        return Mutant(seed, index, source, "case.json", data, done)
    specs = seed_specs()
    source, text = rng.choice(specs)
    data, done = mutate_text(rng, text, [t for _, t in specs])
    return Mutant(seed, index, source, "case.nn", data, done)


def commands(m: Mutant) -> list[list[str]]:
    """The command lines a mutant runs: ``check`` in one of the three formats (rotating),
    then, when it checks clean, ``summary``; ``compile --target json`` for every JSON
    mutant and a third of the others, and ``compile`` to PyTorch source for one in eight
    (each into the case folder)."""
    i = m.index
    cmds = [CHECK_FORMATS[(i // 4) % 3], ["summary", "{}"]]
    if i % 4 == 0 or i % 4 == 3:
        cmds.append(["compile", "{}", "--target", "json", "-o", "out.json"])
    if i % 16 == 5 or i % 16 == 7:
        cmds.append(["compile", "{}", "-o", "out.py"])
    return cmds
