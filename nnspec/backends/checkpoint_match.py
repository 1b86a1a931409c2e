"""The matching behind ``nnspec weights map``: a checkpoint's tensors paired with a spec's
state_dict entries by structure.

Both sides are sequences of (key, role, shape), the role being the last name part
(``weight``, ``bias``, ``running_mean``, ...). Keys of the same name, role and shape (in
order on both sides) anchor the pairing; between anchors a sequence alignment pairs the
most entries of equal role and shape, the similarity of the dotted names breaking ties, and
an entry that pairings as good fill differently is ambiguous. A checkpoint whose order
means nothing (safetensors sorts its keys) is first put in the spec's order, module by
module, as far as the names tell; a torch file is tried in its own order too. Hugging Face's
Conv1D weights (GPT-2's ``c_attn``, ``c_proj``, ``c_fc``) are ``[in, out]``, and pair
transposed. What stays unpaired becomes rows: a shape mismatch (the same name, or the same
role between the same pairs), a missing spec entry, an ignored checkpoint tensor.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import re
from dataclasses import dataclass

from ..layers.base import INT, W

#: Hugging Face Conv1D modules (GPT-2 and its kin), whose weights are [in, out]
_CONV1D = re.compile(r"(^|\.)(c_attn|c_proj|c_fc|q_attn)\.weight$")
_CONV1D_TELL = re.compile(r"(^|\.)(c_attn|c_fc)\.weight$")  # out > in: the layout shows
_FUZZY = 0.6  # the least name similarity that places an unknown module name
_DIGITS = re.compile(r"[0-9]+")


@dataclass
class Row:
    """One line of the map. ``how``: ``name`` (the same key), ``structure`` (another name,
    matched by position, role and shape), ``transposed`` (a known [in, out] layout),
    ``tied`` (the tensor of the spec entry it is tied to), ``default`` (a
    ``num_batches_tracked`` the checkpoint lacks: 0), ``ignored`` and ``duplicate``
    (checkpoint tensors not loaded), or a problem: ``missing``, ``mismatch``,
    ``ambiguous``."""

    spec: str | None
    shape: tuple | None
    checkpoint: str | None = None
    checkpoint_shape: tuple | None = None
    how: str = ""
    note: str = ""

    @property
    def problem(self) -> bool:
        return self.how in ("missing", "mismatch", "ambiguous")


def _role(key: str) -> str:
    return key.rpartition(".")[2]


@functools.lru_cache(maxsize=1 << 16)
def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _sim(a: str, b: str) -> int:
    """Name similarity in thousandths: 900 for the names with their numbers masked (so that
    the blocks of a model share one comparison) and 100 for the numbers that agree. Equal
    figures are a tie that structure alone decides."""
    (ma, da), (mb, db) = _numbers(a), _numbers(b)
    same = sum(x == y for x, y in zip(da, db)) / max(len(da), len(db)) if da or db else 1.0
    return round(900 * _ratio(ma, mb) + 100 * same)


@functools.lru_cache(maxsize=1 << 16)
def _numbers(name: str) -> tuple[str, tuple[str, ...]]:
    return _DIGITS.sub("#", name), tuple(_DIGITS.findall(name))


def _alike(a: str, b: str) -> int:
    """:func:`_sim`, and at least 800 when one name holds the other (``fc`` in ``fc_out``)."""
    short, long = sorted((a, b), key=len)
    return max(_sim(a, b), 800 if len(short) > 1 and short in long else 0)


def shape_text(s) -> str:
    return "[" + ", ".join(str(d) for d in s) + "]"


def _spec_order(keys: list[str], spec_keys: list[str]) -> list[str]:
    """Checkpoint keys put in the spec's order, module by module: a module's own tensors
    first, then its submodules, each placed where the spec first uses that name (or one
    like it) after its parent's place; numbered submodules by number."""
    mods: dict[str, list[int]] = {}
    leaves: dict[str, list[int]] = {}
    for i, k in enumerate(spec_keys):
        parts = k.split(".")
        leaves.setdefault(parts[-1], []).append(i)
        for p in dict.fromkeys(parts[:-1]):
            mods.setdefault(p, []).append(i)
    alike: dict[tuple, str | None] = {}

    def first(index: dict, name: str, p: int) -> int | None:
        if name not in index:
            key = (id(index), name)
            if key not in alike:
                best = max(index, key=lambda n: _alike(n, name), default=None)
                alike[key] = best if best is not None and _alike(best, name) >= 1000 * _FUZZY \
                    else None
            name = alike[key]
            if name is None:
                return None
        idx = index[name]
        j = bisect.bisect_left(idx, p)
        return idx[j] if j < len(idx) else None

    root: tuple[dict, list] = ({}, [])
    for k in keys:
        parts = k.split(".")
        node = root
        for p in parts[:-1]:
            node = node[0].setdefault(p, ({}, []))
        node[1].append((parts[-1], k))
    out: list[str] = []
    inf = len(spec_keys) + 1

    def walk(node, p: int) -> None:
        def at(q):
            return inf if q is None else q

        out.extend(k for _, k in sorted(node[1], key=lambda t: (at(first(leaves, t[0], p)),
                                                                 t[0])))
        kids = []
        for name, kid in node[0].items():
            if name.isdigit():
                kids.append(((p, 0, int(name), ""), p, kid))
            else:
                q = first(mods, name, p)
                kids.append(((at(q), 1, 0, name), p if q is None else q, kid))
        for _, q, kid in sorted(kids, key=lambda t: t[0]):
            walk(kid, q)

    walk(root, 0)
    return out


def _align(spec: list, ck: list) -> tuple[list, dict]:
    """The best monotone pairing of ``spec`` and ``ck`` (lists of (key, role, shape)): the
    most pairs of equal role and shape, then the most similar names. Returns the pairs
    [(i, j)] and the ambiguities {i: ([j, ...], [i2, ...])}: spec entries that pairings as
    good fill from several tensors (the js), or whose tensor they give to other spec
    entries (the i2s)."""
    n, m = len(spec), len(ck)
    by_sig: dict[tuple, list[int]] = {}
    for j, (_, role, shape) in enumerate(ck):
        by_sig.setdefault((role, shape), []).append(j)
    big = 1001 * (min(n, m) + 1)  # one pair outweighs any sum of similarities
    w = [{j: big + _sim(key, ck[j][0]) for j in by_sig.get((role, shape), ())}
         for key, role, shape in spec]
    if not any(w):
        return [], {}
    fwd = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        row, up, wi = fwd[i], fwd[i - 1], w[i - 1]
        for j in range(1, m + 1):
            best = up[j] if up[j] >= row[j - 1] else row[j - 1]
            x = wi.get(j - 1)
            if x is not None and up[j - 1] + x > best:
                best = up[j - 1] + x
            row[j] = best
    bwd = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, down, wi = bwd[i], bwd[i + 1], w[i]
        for j in range(m - 1, -1, -1):
            best = down[j] if down[j] >= row[j + 1] else row[j + 1]
            x = wi.get(j)
            if x is not None and down[j + 1] + x > best:
                best = down[j + 1] + x
            row[j] = best
    opt = fwd[n][m]
    fills: dict[int, list[int]] = {}
    takers: dict[int, list[int]] = {}
    for i, wi in enumerate(w):
        for j, x in wi.items():
            if fwd[i][j] + x + bwd[i + 1][j + 1] == opt:
                fills.setdefault(i, []).append(j)
                takers.setdefault(j, []).append(i)
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        x = w[i].get(j)
        if x is not None and x + bwd[i + 1][j + 1] == bwd[i][j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif bwd[i + 1][j] == bwd[i][j]:
            i += 1
        else:
            j += 1
    amb = {i: (js, []) for i, js in fills.items() if len(js) > 1}
    for j, its in takers.items():
        if len(its) > 1:
            for i in its:
                amb.setdefault(i, ([j], []))[1].extend(x for x in its if x != i)
    return pairs, amb


def _anchored(spec: list, ck: list) -> tuple[list, dict]:
    """:func:`_align`, split at the keys both sides name alike (with equal role and shape,
    kept in order on both sides): only the stretches between them are aligned."""
    where = {key: j for j, (key, _, _) in enumerate(ck)}
    cands = [(i, where[key]) for i, (key, role, shape) in enumerate(spec)
             if key in where and ck[where[key]][1:] == (role, shape)]
    # the longest run of anchors increasing on both sides
    tails: list[int] = []  # per run length, the index into cands of the best run's end
    ends: list[int] = []   # and that run's last j
    prev: list[int | None] = []
    for n, (_, j) in enumerate(cands):
        k = bisect.bisect_left(ends, j)
        prev.append(tails[k - 1] if k else None)
        if k == len(tails):
            tails.append(n)
            ends.append(j)
        else:
            tails[k], ends[k] = n, j
    anchors = []
    t = tails[-1] if tails else None
    while t is not None:
        anchors.append(cands[t])
        t = prev[t]
    anchors.reverse()
    pairs, amb = [], {}
    lo_i = lo_j = 0
    for a_i, a_j in anchors + [(len(spec), len(ck))]:
        p, a = _align(spec[lo_i:a_i], ck[lo_j:a_j])
        pairs += [(lo_i + i, lo_j + j) for i, j in p]
        amb.update({lo_i + i: ([lo_j + j for j in js], [lo_i + x for x in xs])
                    for i, (js, xs) in a.items()})
        if a_i < len(spec):
            pairs.append((a_i, a_j))
        lo_i, lo_j = a_i + 1, a_j + 1
    return pairs, amb


def _conv1d(shapes: dict) -> set[str]:
    """The keys stored in HF Conv1D's [in, out] layout: all Conv1D weights, when those whose
    layout shows (c_attn, c_fc: out > in) are all [in, out]."""
    tell = [k for k in shapes if _CONV1D_TELL.search(k) and len(shapes[k]) == 2]
    if not tell or any(shapes[k][1] <= shapes[k][0] for k in tell):
        return set()
    return {k for k in shapes if _CONV1D.search(k) and len(shapes[k]) == 2}


def match(shapes: dict[str, W], ck) -> list[Row]:
    """The rows of the map of checkpoint ``ck`` (a ``checkpoint.Checkpoint``) onto the
    state_dict entries ``shapes`` (key -> W, in order)."""
    own = [k for k, w in shapes.items() if not w.tied]
    spec = [(k, _role(k), tuple(shapes[k].shape)) for k in own]
    flipped = _conv1d(ck.shapes)

    def entries(order):
        return [(k, _role(k), ck.shapes[k][::-1] if k in flipped else ck.shapes[k])
                for k in order if k not in ck.aliases]

    orders = [_spec_order(ck.keys, own)]
    if ck.ordered:
        orders.insert(0, ck.keys)
    best = None
    for order in orders:
        cks = entries(order)
        pairs, amb = _anchored(spec, cks)
        score = (len(pairs), -len(amb))
        if best is None or score > best[0]:
            best = (score, cks, pairs, amb)
    _, cks, pairs, amb = best
    return _rows(shapes, spec, cks, pairs, amb, flipped, ck)


def _rows(shapes, spec, cks, pairs, amb, flipped, ck) -> list[Row]:
    taken = dict(pairs)
    used = set(taken.values())
    # shape mismatches: the same name, else the same role and rank between the same pairs
    bad: dict[int, int] = {}
    free = {cks[j][0]: j for j in range(len(cks)) if j not in used}
    for i, (key, _, _) in enumerate(spec):
        if i not in taken and key in free and cks[free[key]][2] != spec[i][2]:
            bad[i] = free.pop(key)
    bounds = sorted(pairs) + [(len(spec), len(cks))]
    lo_i = lo_j = 0
    paired = set(bad.values())
    for hi_i, hi_j in bounds:
        left = [j for j in range(lo_j, hi_j) if j not in used and j not in paired]
        for i in range(lo_i, hi_i):
            if i in taken or i in bad:
                continue
            same = [j for j in left if cks[j][1] == spec[i][1]
                    and len(cks[j][2]) == len(spec[i][2])]
            if same:
                j = max(same, key=lambda j: _sim(spec[i][0], cks[j][0]))
                bad[i] = j
                left.remove(j)
        lo_i, lo_j = hi_i + 1, hi_j + 1
    placed = set(taken.values()) | set(bad.values())
    rows: list[Row] = []
    shown = 0  # checkpoint entries before this index are in the table

    def ignored(upto: int) -> None:
        nonlocal shown
        for j in range(shown, upto):
            if j not in placed:
                key = cks[j][0]
                tie = shapes[key].tied if key in shapes else ""
                rows.append(Row(None, None, key, ck.shapes[key], "ignored",
                                f"the spec ties {key} to {tie}" if tie
                                else "no spec key takes it"))
        shown = max(shown, upto)

    index = {k: i for i, (k, _, _) in enumerate(spec)}
    ck_of: dict[str, str] = {}
    for key, w in shapes.items():
        shape = tuple(w.shape)
        if w.tied:  # its checkpoint key is its source's, once known
            rows.append(Row(key, shape, w.tied, None, "tied", f"the spec ties it to {w.tied}"))
            continue
        i = index[key]
        if i in amb:
            js, rivals = amb[i]
            j = taken.get(i, js[0])
            ignored(j)
            ckey = cks[j][0]
            note = " or ".join(cks[x][0] for x in js) + " fill it equally well" if len(js) > 1 \
                else f"{ckey} fills {' or '.join(spec[x][0] for x in rivals)} equally well"
            rows.append(Row(key, shape, ckey, ck.shapes[ckey], "ambiguous", note))
        elif i in taken:
            j = taken[i]
            ignored(j)
            ckey = cks[j][0]
            ck_of[key] = ckey
            if ckey in flipped:
                rows.append(Row(key, shape, ckey, ck.shapes[ckey], "transposed",
                                "HF Conv1D [in, out]"))
            else:
                rows.append(Row(key, shape, ckey, None, "name" if ckey == key else "structure"))
        elif i in bad:
            ckey = cks[bad[i]][0]
            ignored(bad[i])
            rows.append(Row(key, shape, ckey, ck.shapes[ckey], "mismatch",
                            "shapes differ" + (" (read as HF Conv1D [in, out])"
                                               if ckey in flipped else "")))
        elif w.dtype == INT and spec[i][1] == "num_batches_tracked":
            rows.append(Row(key, shape, None, None, "default", "not in the checkpoint: 0"))
        else:
            fits = [cks[j][0] for j in range(len(cks))
                    if j not in placed and cks[j][1:] == spec[i][1:]]
            rows.append(Row(key, shape, None, None, "missing",
                            f"{fits[0]} has its role and shape but is out of order" if fits
                            else "no checkpoint tensor of its role and shape"))
    ignored(len(cks))
    for r in rows:
        if r.how == "tied":
            r.checkpoint = ck_of.get(r.checkpoint)
    for a, b in ck.aliases.items():
        rows.append(Row(None, None, a, ck.shapes[a], "duplicate", f"the same tensor as {b}"))
    return rows
