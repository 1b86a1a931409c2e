"""Tensors computed from sizes alone in an exported graph (see exported.py): evaluated on
the CPU at the two example sizes and recognised as what nnspec writes for them: position
ids (``arange``), zeros, attention masks that keep every key or are causal, and the
cosines and sines of rotary embeddings (``rope``, its theta read off the values). A tensor
that is none of these is an error naming it: nothing is approximated.
"""

from __future__ import annotations

import math
import operator

import torch
from torch import fx

from .trace import ImportFailure

aten = torch.ops.aten
#: assertions in an exported graph: no value
_SKIP = {aten._assert_tensor_metadata, aten._assert_scalar, aten.sym_constrain_range_for_size,
         aten.sym_constrain_range, aten._assert_async}


def _packet(target):
    return getattr(target, "overloadpacket", target)


class SizedTensors:
    """The recognisers, mixed into the graph rebuilder (which provides ``nodes``,
    ``examples``, ``inputs``, ``state``, ``model``, ``_is_data``, ``_tensor``, ``_new``,
    ``_arg``, ``_where`` and the ``consts``/``rope``/``absorbed`` tables)."""

    # ---- rotary embeddings ------------------------------------------------------------------
    def _find_rope(self):
        """``x * cos + rotate_half(x) * sin`` with cos and sin computed from sizes (HF's
        apply_rotary_pos_emb): nnspec's ``rope``, its theta read off the cosines."""
        for n in self.nodes:
            if n.op != "call_function" or _packet(n.target) is not aten.add \
                    or not all(isinstance(a, fx.Node) for a in n.args[:2]):
                continue
            found = self._rope_at(n)
            if found is not None:
                self.rope[n] = found[:2]
                self.absorbed |= found[2]

    def _rope_at(self, n):
        m1, m2 = n.args[:2]
        if not all(_packet(m.target) is aten.mul for m in (m1, m2) if m.op == "call_function") \
                or m1.op != "call_function" or m2.op != "call_function":
            return None
        split = [self._data_and_const(m) for m in (m1, m2)]
        if None in split:
            return None
        (x, cos), (r, sin) = split
        if _packet(getattr(r, "target", None)) is not aten.cat:
            (r, sin), (x, cos) = split
        if _packet(getattr(r, "target", None)) is not aten.cat:
            return None
        parts = list(r.args[0])
        if len(parts) != 2 or _packet(parts[0].target) is not aten.neg:
            return None
        hi, lo = parts[0].args[0], parts[1]
        if not all(_packet(getattr(p, "target", None)) is aten.slice and p.args[0] is x
                   for p in (hi, lo)):
            return None
        theta = self._theta(cos, sin, x)
        if theta is None:
            return None
        inner = {m1, m2, r, parts[0], hi, lo}
        if any(u not in inner and u is not n for m in inner for u in m.users):
            return None
        return x, theta, inner

    def _data_and_const(self, m):
        a, b = m.args[:2]
        if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)):
            return None
        if self._is_data(a) and not self._is_data(b) and self._tensor(b):
            return a, b
        if self._is_data(b) and not self._is_data(a) and self._tensor(a):
            return b, a
        return None

    def _theta(self, cos, sin, x):
        """The base of the angles when cos and sin are rope's (layout half, every feature
        rotated, positions from 0) at both example sizes, else None."""
        try:
            cs, ss = self._values(cos), self._values(sin)
        except ImportFailure:
            return None
        theta = None
        for c, s in zip(cs, ss):
            t, d = c.shape[-2], c.shape[-1]
            if d != x.meta["val"].shape[-1] or d % 2 or t < 2:
                return None
            c2, s2 = c.reshape(-1, t, d)[0].double(), s.reshape(-1, t, d)[0].double()
            if theta is None:  # position 1, pair 1: the angle theta^(-2/d)
                ang = math.atan2(float(s2[1, 1]), float(c2[1, 1]))
                if ang <= 0:
                    return None
                theta = float(round(ang ** (-d / 2)))
            inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
            emb = torch.outer(torch.arange(t, dtype=torch.float64), inv)
            emb = torch.cat((emb, emb), -1)
            tol = 1e-5 if c.dtype != torch.float64 else 1e-9
            if (c2 - emb.cos()).abs().max() > tol * max(1, t) or \
                    (s2 - emb.sin()).abs().max() > tol * max(1, t):
                return None
        return theta

    # ---- tensors computed from sizes -----------------------------------------------------
    def _sym_value(self, n):
        raise ImportFailure(f"{self._where(n)}: a size of a tensor computed from sizes")

    def _evaluate(self, n, example: list, memo: dict):
        if not isinstance(n, fx.Node):
            return n
        if n in memo:
            return memo[n]
        if n.op == "placeholder":
            if n.name in self.inputs:
                ex = example[self.inputs.index(n.name)]
                v = torch.zeros(ex.shape, dtype=ex.dtype)
            else:
                v = self._state_value(n)
        else:
            t = _packet(n.target)
            if t in _SKIP:
                return None  # assertions
            ev = lambda a: _cpu(self._evaluate(a, example, memo))  # noqa: E731
            args = fx.node.map_aggregate(n.args, ev)
            kwargs = dict(fx.node.map_aggregate(n.kwargs, ev))
            if "device" in kwargs:
                kwargs["device"] = "cpu"
            v = n.target(*args, **kwargs)
        memo[n] = v
        return v

    def _state_value(self, n):
        name = self.state[n.name]
        kept = getattr(self.model, "_nnspec_buffers", {})
        if name in kept:
            return kept[name]
        try:
            v = self.model.get_buffer(name)
        except AttributeError:
            v = self.model.get_parameter(name)
        if v.is_meta:
            raise _Unknown(name)
        return v.detach().cpu()

    def _values(self, n, examples: list | None = None) -> list:
        """``n``'s value at each example size (``examples``: other inputs, same ranks)."""
        examples = self.examples if examples is None else examples
        out = []
        for ex in examples:
            try:
                out.append(self._evaluate(n, ex, {}))
            except _Unknown as e:
                raise ImportFailure(f"{self._where(n)}: {n.name} is computed from the "
                                    f"buffer {e} (not materialised on the meta device)"
                                    ) from None
        return out

    def _longer(self, size: int) -> list:
        """The first example inputs with every dim that varies between the two examples
        (the symbols) set to ``size``."""
        a, b = self.examples
        return [[x.new_zeros([d if d == e else size for d, e in zip(x.shape, y.shape)])
                 for x, y in zip(a, b)]]

    def _mask_kind(self, mask, sdpa):
        """``none`` (every key kept), ``causal``, or ``("window", w)``: causal, each query
        seeing its w most recent keys, itself included (Mistral's sliding window), at both
        example sizes, and past the config's ``sliding_window`` where it has one (a window
        longer than the traced sizes would look causal)."""
        examples = list(self.examples)
        w = getattr(getattr(self.model, "config", None), "sliding_window", None)
        if isinstance(w, int) and not isinstance(w, bool) and 0 < w <= 1 << 14:
            examples += self._longer(w + 3)
        kinds = set()
        for m in self._values(mask, examples):
            keep = m if m.dtype == torch.bool else m > torch.finfo(torch.float32).min / 2
            t, s = keep.shape[-2], keep.shape[-1]
            tril = torch.ones(t, s, dtype=torch.bool).tril()
            band = int(keep.reshape(-1, t, s)[0, -1].sum())
            if bool(keep.all()):
                kinds.add("none")
            elif t == s and torch.equal(keep, tril.expand_as(keep)):
                kinds.add("causal")
            elif t == s and band < t and torch.equal(
                    keep, (tril & ~tril.tril(-band)).expand_as(keep)):
                kinds.add(("window", band))
            else:
                kinds.add("other")
        if kinds in ({"causal", ("window", w)}, {("window", w)}):
            return ("window", w)
        if len(kinds) != 1 or "other" in kinds or any(isinstance(k, tuple) for k in kinds):
            raise ImportFailure(f"{self._where(sdpa)}: an attention mask computed from sizes "
                                "that is neither causal, a sliding window nor empty")
        return kinds.pop()

    def _constant(self, n):
        """A tensor computed from sizes, as new-graph nodes: position ids (``arange``
        along the last axis, broadcast), zeros (token type ids), a single value (a
        ``full_like``), or else the operations that compute it, each one of nnspec's
        constant kinds (T5's relative-position buckets: arange, comparisons, abs, log,
        where, minimum)."""
        if n in self.consts:
            return self.consts[n]
        node = self._recognise(n)
        if node is None:
            for a in n.all_input_nodes:
                if a not in self.env and self._is_const(a):
                    self._constant(a)
            node = self._translate(n, _packet(n.target))
        self.consts[n] = node
        return node

    def _recognise(self, n):
        values = self._values(n)
        if _packet(n.target) in (aten.full_like, aten.new_full, aten.full) and all(
                v.numel() and bool((v == v.reshape(-1)[0]).all()) for v in values):
            return values[0].reshape(-1)[0].item()  # one value, as a number
        if all(v.numel() == 1 and v.dtype != torch.bool for v in values) and \
                len({v.item() for v in values}) == 1:
            return values[0].item()  # one value (Gemma's embedding scale): a number
        shapes = [tuple(v.shape) for v in values]
        if any(v.dtype.is_floating_point or v.dtype == torch.bool for v in values) or \
                not all(shapes):
            return None
        last = [s[-1] for s in shapes]
        rng = [torch.arange(s[-1]).expand(s) for s in shapes]
        offset = {int(v.reshape(-1)[0]) for v in values}
        if len(offset) == 1 and all(torch.equal(v, r + v.reshape(-1)[0])
                                    for v, r in zip(values, rng)):
            size = self._size_node(last, n)
            node = self._new("call_function", torch.arange, (size,), n)
            if offset != {0}:  # positions from an offset (OPT's 2)
                node = self._new("call_function", operator.add, (node, offset.pop()), n)
        elif all(not bool(v.any()) for v in values):
            size = self._size_node(last, n)
            node = self._new("call_function", torch.arange, (size,), n)
            node = self._new("call_function", operator.mul, (node, 0), n)
        else:
            return None
        lead = [1] * (len(shapes[0]) - 1)
        if lead:
            node = self._new("call_method", "reshape", (node, *lead, size), n)
        return node

    def _all_true(self, n) -> bool:
        """A condition computed from sizes that holds everywhere at both example sizes."""
        try:
            return all(bool(v.all()) for v in self._values(n))
        except ImportFailure:
            return False

    def _size_node(self, pair: list, old):
        """A new-graph value equal to ``pair`` (its values at the two example sizes): a
        number, or ``x.size(d)`` of an input whose dim follows the same symbol."""
        if pair[0] == pair[1]:
            return int(pair[0])
        for name in self.inputs:
            i = self.inputs.index(name)
            for d in range(self.examples[0][i].dim()):
                if [ex[i].shape[d] for ex in self.examples] == list(pair):
                    ph = self.by_name[name]
                    return self._new("call_method", "size", (self.env[ph], d), old)
        raise ImportFailure(f"{self._where(old)}: a size {tuple(pair)} that follows no input")


def _cpu(v):
    """Values evaluated on the CPU: a meta device named in an argument is the CPU's."""
    if isinstance(v, torch.device) and v.type == "meta":
        return torch.device("cpu")
    return v


def sdpa_window(q, k, v, window, scale=None, enable_gqa=False):
    """Marks sdpa with a sliding window (causal) in a rebuilt graph: shapes only."""
    import torch.nn.functional as F

    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale,
                                          enable_gqa=enable_gqa)


def rope(x, theta):
    """Marks nnspec's ``rope`` (layout half, on axis -2) in a rebuilt graph: shapes only."""
    return x.clone()


class _Unknown(Exception):
    pass
