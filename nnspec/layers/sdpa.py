"""sdpa: scaled dot-product attention of tensors already projected and split into heads,
``sdpa(q, k, v)`` as torch.nn.functional.scaled_dot_product_attention.

q is [..., T, D], k [..., S, D] and v [..., S, Dv]; the output is [..., T, Dv], the
leading dims broadcast as torch's. ``causal`` lets query i see the keys j <= i + S - T:
the mask is aligned to the bottom-right corner, so that a block of T queries at the end of
S keys (a cache) sees every earlier key; SDPA's own ``is_causal`` aligns it top-left, which
is the same only when S == T (the torch backend passes is_causal then, and an explicit mask
otherwise). Grouped-query attention (SDPA's enable_gqa) follows from the shapes: with q,
k and v of rank 4 or more ([N, H, T, D]), k and v may have fewer heads (axis -3) than q,
if they divide q's, each shared by a group of query heads. ``mask=`` is a tensor
broadcastable to [..., T, S]: an int mask (nonzero = attend, as SDPA's bool mask) or a
float mask added to the scores. A query that sees no key gets zero weights (its output is
zero), as SDPA gives. ``dropout`` applies to the attention weights in training only.

``window=<w>`` (w >= 1) is a sliding window, aligned bottom-right as causal: query i, at
position p = i + S - T, sees the keys j > p - w; with causal the w most recent keys, itself
included (Mistral), without causal also j < p + w (the keys nearer than w on either side).
``softcap=<c>`` (c > 0) soft-caps the scaled scores s to c * tanh(s / c) before the mask is
added or applied (Gemma 2's attn_logit_softcapping); the torch backend then computes the
scores itself (torch.sdpa.softcapped_attention), as no fused kernel takes it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Annotated, Optional

from pydantic import BeforeValidator, Strict, field_validator

from ..core.dims import Dim
from .attention import visible_numpy
from .base import (
    FLOAT,
    INT,
    MODULE,
    Bool,
    In,
    Int,
    LayerKind,
    Params,
    Prev,
    ShapeError,
    TensorType,
    TorchCall,
    TorchModule,
    TorchPlan,
    need_float,
    npops,
    positive,
    probability,
    prod,
    register,
)

_HELPERS = "nnspec.layers.torch.sdpa"
_NAMES = ("q", "k", "v")


def _number(v):
    # `scale=1` is 1.0; true or "0.5" is not a number (pydantic would convert both)
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


Number = Annotated[float, Strict(), BeforeValidator(_number)]


def _broadcast_leading(named: list, what: str):
    """The leading dims of several (name, TensorType, leading dims) broadcast as NumPy's,
    symbolically; dims that do not are E363 naming both tensors and the axis."""
    out: list = []
    rank = max(len(lead) for _, _, lead in named)
    for i in range(1, rank + 1):
        got = None  # (name, tensor, dim) that set this axis, other than 1
        for name, t, lead in named:
            if i > len(lead):
                continue
            d = lead[len(lead) - i]
            if d == 1:
                continue
            if got is None:
                got = (name, t, d)
            elif got[2] != d:
                ax = -i - 2
                raise ShapeError(f"{what}: the leading dims of {got[0]} {got[1]} and {name} "
                                 f"{t} do not broadcast: dim {got[2]} against {d} (axis "
                                 f"{ax})", code="E363",
                                 hint="leading dims must be equal or 1")
        out.append(got[2] if got is not None else Dim.const(1))
    return tuple(reversed(out))


@register
class Sdpa(LayerKind):
    """Scaled dot-product attention: softmax(q kᵀ * scale + mask) v, with q [..., T, D],
    k [..., S, D], v [..., S, Dv] -> [..., T, Dv]; see the module docstring."""

    name = "sdpa"
    aliases = ("scaled_dot_product_attention",)
    arity = 3
    tensor_args = ("mask",)
    synonyms = {"attn_mask": "mask", "is_causal": "causal", "dropout_p": "dropout",
                "attn_logit_softcapping": "softcap", "sliding_window": "window"}
    ranks = (2, None)
    layout = "[..., T, D]"
    summary = ("scaled dot-product attention of projected heads: sdpa(q, k, v) [causal] "
               "[mask=<value>] [scale=] [softcap=] [window=] [dropout=] (causal aligned "
               "bottom-right; GQA by shapes)")

    class Params(Params):
        mask: Optional[Int] = None
        causal: Bool = False
        scale: Optional[Number] = None
        softcap: Optional[Number] = None
        window: Optional[Int] = None
        dropout: float = 0.0

        _dropout = probability("dropout")
        _window = positive("window")

        @field_validator("softcap")
        @classmethod
        def _softcap(cls, v):
            if v is not None and not v > 0:
                raise ValueError("must be > 0")
            return v

    def input_count_problem(self, p, n):
        if n != 3:
            return f"sdpa takes three tensors, sdpa(q, k, v), got {n}"
        return None

    # ---- shapes ------------------------------------------------------------------------

    def _groups(self, ins) -> tuple[int, int]:
        """Query heads per k head and per v head: more than 1 for grouped-query attention,
        which q, k and v of rank 4 or more ([N, H, T, D]) get when k's or v's heads (axis
        -3, concrete) are fewer than q's and divide them (SDPA's enable_gqa); else (1, 1)."""
        q, k, v = ins[:3]
        if min(q.rank, k.rank, v.rank) < 4:
            return 1, 1
        h = q.shape[-3]
        out = []
        for t in (k, v):
            hk = t.shape[-3]
            grouped = h.is_const and hk.is_const and 1 < hk.value < h.value \
                and h.value % hk.value == 0
            out.append(h.value // hk.value if grouped else 1)
        if out == [1, 1]:
            return 1, 1
        # under gqa both are repeated to q's heads, as SDPA's repeat_interleave does
        for name, t in (("k", k), ("v", v)):
            hk = t.shape[-3]
            if not (hk.is_const and h.value % hk.value == 0):
                raise ShapeError(f"sdpa: grouped-query attention shares each key/value head "
                                 f"among query heads, but {name} {t} has {hk} heads, which "
                                 f"do not divide the {h} of q {q}", code="E355",
                                 hint=f"give k and v numbers of heads that divide {h}")
        return h.value // k.shape[-3].value, h.value // v.shape[-3].value

    def _leading(self, ins) -> tuple:
        """The output's leading dims (checked): q's, k's and v's broadcast, with k's and v's
        heads counted as q's under grouped-query attention."""
        q, k, v = ins[:3]
        gqa = self._groups(ins) != (1, 1)
        leads = []
        for name, t in zip(_NAMES, (q, k, v)):
            lead = tuple(t.shape[:-2])
            if gqa and name != "q":
                lead = lead[:-1] + (q.shape[-3],)
            leads.append((name, t, lead))
        try:
            return _broadcast_leading(leads, "sdpa")
        except ShapeError as e:
            hint = e.hint
            if min(q.rank, k.rank, v.rank) >= 4 and any(
                    t.shape[-3] != q.shape[-3] for t in (k, v)):
                hint = ("grouped-query attention shares each key/value head among query "
                        "heads: k's and v's heads (axis -3) must divide q's")
            raise ShapeError(e.message, code=e.code, hint=hint) from None

    def infer(self, p, ins):
        q, k, v = ins[:3]
        for name, t in zip(_NAMES, (q, k, v)):
            need_float(t, f"sdpa's {name}")
            if t.rank < 2:
                raise ShapeError(f"sdpa's {name} must be [..., {'T' if name == 'q' else 'S'}, "
                                 f"D] (rank 2 or more), got {t} (rank {t.rank})", code="E357")
        t_, d = q.shape[-2:]
        s, dk = k.shape[-2:]
        sv, dv = v.shape[-2:]
        if dk != d:
            raise ShapeError(f"sdpa: q and k must have the same head dim (the last): q {q} has "
                             f"{d}, k {k} has {dk}", code="E353")
        if sv != s:
            raise ShapeError(f"sdpa: k and v must have as many positions (axis -2): k {k} has "
                             f"{s}, v {v} has {sv}", code="E354")
        lead = self._leading(ins)
        mask = self.extra(p, ins, "mask")
        if mask is not None:
            self._check_mask(mask, lead + (t_, s))
        return TensorType(lead + (t_, dv), FLOAT)

    def _check_mask(self, mask: TensorType, target: tuple) -> None:
        want = "[" + ", ".join(str(x) for x in target) + "]"
        kinds = "an int mask (nonzero = attend) or an additive float mask"
        if mask.rank < 2:
            raise ShapeError(f"sdpa's mask {mask} must be [..., T, S] (rank 2 or more)",
                             arg="mask", code="E356",
                             hint="[1, S] is one row of keys for every query")
        if mask.rank > len(target):
            raise ShapeError(f"sdpa's mask {mask} has more axes than the scores {want} "
                             "(queries by keys)", arg="mask", code="E356", hint=kinds)
        for i in range(1, mask.rank + 1):
            dm, dt = mask.shape[-i], target[-i]
            if dm != 1 and dm != dt:
                raise ShapeError(f"sdpa's mask {mask} does not broadcast to the scores {want} "
                                 f"(queries by keys): dim {dm} against {dt} (axis {-i})",
                                 arg="mask", code="E356",
                                 hint=f"each dim must be equal or 1; {kinds}")

    def macs(self, p, ins, out):
        # q kᵀ: T*S*D per leading index, then (weights) v: T*S*Dv
        q, k = ins[0], ins[1]
        return prod(out.shape[:-1]) * k.shape[-2] * (q.shape[-1] + out.shape[-1])

    # ---- torch -------------------------------------------------------------------------

    def torch(self, p, ins, out):
        q, k = ins[0], ins[1]
        calls: list = []
        mask = None
        if p.mask is not None:
            if ins[p.mask].dtype == INT:
                calls.append(TorchCall(".bool", (In(p.mask),)))  # nonzero = attend
                mask = Prev()
            else:
                mask = In(p.mask)
        is_causal = False
        if p.window is not None:
            wkw: dict = {"causal": True} if p.causal else {}
            if mask is not None:
                wkw["mask"] = mask
            calls.append(TorchCall(f"{_HELPERS}:window_mask", (In(0), In(1), p.window), wkw))
            mask = Prev()
        elif p.causal:
            if mask is not None:
                calls.append(TorchCall(f"{_HELPERS}:with_causal", (mask, In(0), In(1))))
                mask = Prev()
            elif q.shape[-2] == k.shape[-2] and p.softcap is None:
                is_causal = True  # top-left is bottom-right when S == T
            else:
                calls.append(TorchCall(f"{_HELPERS}:causal_lower_right", (In(0), In(1))))
                mask = Prev()
        kw: dict = {}
        if mask is not None:
            kw["attn_mask"] = mask
        if is_causal:
            kw["is_causal"] = True
        if p.scale is not None:
            kw["scale"] = p.scale
        if self._groups(ins) != (1, 1):
            kw["enable_gqa"] = True
        qkv = (In(0), In(1), In(2))
        if p.softcap is not None:  # the scores are needed: no fused kernel
            if p.dropout == 0:
                calls.append(TorchCall(f"{_HELPERS}:softcapped_attention", qkv,
                                       {**kw, "softcap": p.softcap}))
                return TorchPlan(None, calls)
            calls.append(TorchCall(MODULE, qkv, kw))
            return TorchPlan(TorchModule(f"{_HELPERS}:SoftcappedAttention",
                                         (p.softcap, p.dropout)), calls)
        if p.dropout == 0:
            calls.append(TorchCall("F.scaled_dot_product_attention", qkv, kw))
            return TorchPlan(None, calls)
        # SDPA's dropout_p applies whatever the mode: the module passes p in training only
        calls.append(TorchCall(MODULE, qkv, kw))
        return TorchPlan(TorchModule(f"{_HELPERS}:ScaledDotProductAttention", (p.dropout,)),
                         calls)

    # ---- numpy -------------------------------------------------------------------------

    def _kv(self, xs):
        """q, and k and v with their heads repeated under grouped-query attention."""
        import numpy as np

        q, k, v = (np.asarray(x) for x in xs[:3])
        gk, gv = self._groups([TensorType(x.shape) for x in (q, k, v)])
        if (gk, gv) != (1, 1):
            k, v = np.repeat(k, gk, axis=-3), np.repeat(v, gv, axis=-3)
        return q, k, v

    def _scale(self, p, q) -> float:
        return 1.0 / math.sqrt(q.shape[-1]) if p.scale is None else p.scale

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        q, k, v = self._kv(xs)
        dt = np.result_type(q, k, v)
        scores = np.matmul(q, np.swapaxes(k, -1, -2)) * dt.type(self._scale(p, q))
        capped = None
        if p.softcap is not None:  # Gemma 2: c * tanh(s / c), before the mask
            capped = np.tanh(scores / dt.type(p.softcap))
            scores = capped * dt.type(p.softcap)
        if p.mask is not None:
            m = np.asarray(xs[p.mask])
            if np.issubdtype(m.dtype, np.integer) or m.dtype == bool:
                scores = np.where(m != 0, scores, -np.inf)
            else:
                scores = scores + m.astype(dt)
        seen = visible_numpy(q.shape[-2], k.shape[-2], p.causal, p.window)
        if seen is not None:
            scores = np.where(seen, scores, -np.inf)
        # softmax with a max shift; a query that sees no key gets zero weights
        top = scores.max(axis=-1, keepdims=True)
        top = np.where(np.isneginf(top), 0.0, top)
        e = np.exp(scores - top)
        total = e.sum(axis=-1, keepdims=True)
        attn = (e / np.where(total == 0, 1.0, total)).astype(dt)
        rec = ctx.saved
        if rec is not None:
            rec.update(sdpa_attn=attn, sdpa_drop=None, sdpa_tanh=capped)
        if rec is not None and ctx.training and p.dropout > 0:
            # the same draw as dropout(attn), kept as the scale mask (0 or 1/(1-p))
            drop = npops.dropout(np.ones_like(attn), p.dropout, True, ctx.rng)
            rec["sdpa_drop"] = drop
            attn = attn * drop
        else:
            attn = npops.dropout(attn, p.dropout, ctx.training, ctx.rng)
        return np.matmul(attn, v)

    def backward(self, p, w, xs, y, gy, ctx):
        """y = (D ⊙ A) v with A = softmax(S), S = cap(q kᵀ * scale) + M (M the float mask, or
        -inf where a mask, causality or the window hides a key; cap(s) = c tanh(s / c) with
        softcap, else s), D the dropout mask. Backwards: dv = (D ⊙ A)ᵀ dy, dA = D ⊙ (dy vᵀ),
        the softmax's dS = A ⊙ (dA - Σ_j dA ⊙ A) (zero where A is), dM = dS, dR = dS ⊙ (1 -
        tanh²) under softcap (else dS), dq = dR k * scale, dk = dRᵀ q * scale; each summed
        over the axes it
        was broadcast along, and k's and v's over the query heads that share them (GQA).
        An int mask gets no gradient."""
        import numpy as np

        from .tensorops import unbroadcast

        rec = ctx.saved
        if not rec or "sdpa_attn" not in rec:
            if ctx.training and p.dropout > 0:
                raise ValueError("sdpa's backward needs the dropout mask its forward drew: "
                                 "run the forward with ctx.saved set")
            rec = {}
            self.numpy(p, w, xs, replace(ctx, saved=rec, updates={}))
        q, k, v = self._kv(xs)
        dt = np.result_type(q, k, v)
        gy = np.asarray(gy, dtype=dt)
        attn, drop = rec["sdpa_attn"], rec["sdpa_drop"]
        kept = attn if drop is None else attn * drop
        gv = unbroadcast(np.matmul(np.swapaxes(kept, -1, -2), gy), v.shape)
        ga = unbroadcast(np.matmul(gy, np.swapaxes(v, -1, -2)), attn.shape)
        if drop is not None:
            ga = ga * drop
        gs = gm = attn * (ga - np.sum(ga * attn, axis=-1, keepdims=True))
        if p.softcap is not None:  # d(c tanh(s / c)) / ds = 1 - tanh²
            gs = gs * (1 - rec["sdpa_tanh"] ** 2)
        scale = dt.type(self._scale(p, q))
        qk = np.broadcast_shapes(q.shape[:-2], k.shape[:-2]) + (q.shape[-2], k.shape[-2])
        gs_qk = unbroadcast(gs, qk)
        gq = unbroadcast(np.matmul(gs_qk, k) * scale, q.shape)
        gk = unbroadcast(np.matmul(np.swapaxes(gs_qk, -1, -2), q) * scale, k.shape)
        gxs: list = [gq, _heads_back(gk, xs[1]), _heads_back(gv, xs[2])]
        gxs += [None] * (len(xs) - 3)
        if p.mask is not None:
            m = np.asarray(xs[p.mask])
            if not (np.issubdtype(m.dtype, np.integer) or m.dtype == bool):
                gxs[p.mask] = unbroadcast(gm, m.shape).astype(m.dtype)
        return gxs, {}

    def detail(self, p, ins):
        q, k, v = ins[:3]
        parts = [f"q={q}", f"k={k}", f"v={v}"]
        if p.mask is not None:
            parts.append(f"mask={ins[p.mask]}")
        if p.causal:
            parts.append("causal")
        for arg in ("scale", "softcap", "window"):
            if getattr(p, arg) is not None:
                parts.append(f"{arg}={getattr(p, arg)}")
        if p.dropout:
            parts.append(f"dropout={p.dropout}")
        if self._groups(ins) != (1, 1):
            parts.append("gqa")
        return " ".join(parts)

    def sample(self):
        ins = [TensorType((2, 4, 3, 4)), TensorType((2, 2, 5, 4)), TensorType((2, 2, 5, 3)),
               TensorType((3, 5), INT)]
        return {"mask": 3, "causal": True, "scale": 0.3, "dropout": 0.25}, ins

    def samples(self):
        # a float mask with broadcast leading dims, T > S (a query that sees no key);
        # causal with S == T (is_causal in torch); rank 2 with a float [T, S] mask
        return [self.sample(),
                ({"mask": 3, "causal": True},
                 [TensorType((2, 1, 4, 3)), TensorType((1, 2, 3, 3)), TensorType((2, 1, 3, 2)),
                  TensorType((2, 1, 1, 3))]),
                ({"causal": True, "scale": 1.5},
                 [TensorType((2, 4, 3)), TensorType((2, 4, 3)), TensorType((1, 4, 5))]),
                ({"mask": 3}, [TensorType((3, 4)), TensorType((5, 4)), TensorType((5, 2)),
                               TensorType((3, 5))]),
                # soft-capped GQA under a causal sliding window and an int mask, dropout
                ({"mask": 3, "causal": True, "window": 2, "softcap": 0.4, "dropout": 0.25},
                 [TensorType((2, 4, 3, 4)), TensorType((2, 2, 5, 4)), TensorType((2, 2, 5, 3)),
                  TensorType((3, 5), INT)])]


def _heads_back(g, x):
    """The gradient of k or v whose heads were repeated for grouped-query attention: summed
    over each group of query heads that shared one."""
    x_shape = x.shape
    if g.shape == x_shape:
        return g
    hk = x_shape[-3]
    return g.reshape(g.shape[:-3] + (hk, g.shape[-3] // hk) + g.shape[-2:]).sum(axis=-3)
