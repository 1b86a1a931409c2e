"""attention (multi-head scaled dot-product attention, torch.nn.MultiheadAttention) and
positional (sinusoidal or learned positional encodings)."""

from __future__ import annotations

import math
from typing import Optional

from .base import (
    DEFAULT_INIT,
    InitArg,
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
    W,
    concrete,
    fan_in_bound,
    need_float,
    need_rank,
    npops,
    positive,
    probability,
    register,
)

_HELPERS = "nnspec.layers.attention_torch"


@register
class Attention(LayerKind):
    """Multi-head attention over [N, T, E] -> [N, T, E], with input and output projections
    (nn.MultiheadAttention(E, heads, batch_first=True)); keys and values come from the input
    itself, or from ``kv=<value>`` [N, S, E] (cross-attention)."""

    name = "attention"
    aliases = ("mha",)
    positional = ("heads",)
    synonyms = {"num_heads": "heads", "key_padding_mask": "mask", "is_causal": "causal",
                "memory": "kv"}
    tensor_args = ("kv", "mask")
    summary = ("multi-head attention: attention heads=<h> [kv=<value>] [causal] [mask=<value>] "
               "[dropout=0.1] [bias=false]")

    class Params(Params):
        heads: Int
        kv: Optional[Int] = None
        mask: Optional[Int] = None
        causal: Bool = False
        dropout: float = 0.0
        bias: Bool = True
        init: InitArg = DEFAULT_INIT
        bias_init: InitArg = DEFAULT_INIT

        _heads = positive("heads")

        _dropout = probability("dropout")

    def infer(self, p, ins):
        x = ins[0]
        need_rank(x, {3}, "attention", "[N, T, E]")
        need_float(x, "attention")
        e = concrete(x.shape[2], "attention's width (the last dim)")
        if e % p.heads:
            raise ShapeError(f"heads must divide the width, but {p.heads} does not divide {e}",
                             arg="heads",
                             hint=f"the width {e} splits evenly into "
                                  f"{', '.join(str(h) for h in _head_counts(e, p.heads))} "
                                  f"heads")
        kv = self.extra(p, ins, "kv")
        if kv is not None:
            if kv.rank != 3:
                raise ShapeError(f"attention's kv must be [N, S, E] (rank 3), got {kv}", arg="kv")
            need_float(kv, "attention's kv")
            if kv.shape[2] != x.shape[2]:
                raise ShapeError(f"cross-attention needs keys/values as wide as the query: the "
                                 f"query {x} has width {x.shape[2]} but kv {kv} has width "
                                 f"{kv.shape[2]}", arg="kv",
                                 hint="project kv to the query's width with a dense layer")
            if kv.shape[0] != x.shape[0]:
                raise ShapeError(f"the query {x} and kv {kv} have different batch sizes "
                                 f"({x.shape[0]} and {kv.shape[0]})", arg="kv")
            s = kv.shape[1]
        else:
            s = x.shape[1]
        if p.causal and s != x.shape[1]:
            raise ShapeError(f"causal attention needs as many keys as queries, but the query has "
                             f"{x.shape[1]} positions and kv has {s}", arg="causal")
        mask = self.extra(p, ins, "mask")
        if mask is not None:
            if mask.dtype != INT or mask.rank != 2 or mask.shape[0] != x.shape[0] \
                    or mask.shape[1] != s:
                raise ShapeError(f"the key-padding mask must be [{x.shape[0]}, {s}] int "
                                 f"([N, S], nonzero = padded), got {mask}", arg="mask")
        return TensorType(x.shape, FLOAT)

    def weights(self, p, ins, out):
        e = ins[0].shape[2].value
        # nn.MultiheadAttention._reset_parameters: xavier_uniform_ on the [3E, E] in_proj_weight,
        # zero biases; out_proj keeps nn.Linear's default weight init
        w = {"in_proj_weight": W((3 * e, e), ("uniform", math.sqrt(6.0 / (e + 3 * e))))}
        if p.bias:
            w["in_proj_bias"] = W((3 * e,), ("zeros",))
        w["out_proj.weight"] = W((e, e), ("uniform", fan_in_bound(e)))
        if p.bias:
            w["out_proj.bias"] = W((e,), ("zeros",))
        return w

    def macs(self, p, ins, out):
        x = ins[0]
        n, t, e = x.shape
        kv = self.extra(p, ins, "kv")
        s = kv.shape[1] if kv is not None else t
        ev = e.value
        # Q and output projections over T positions, K and V projections over S positions,
        # then Q Kᵀ and (attention weights) V: T*S*E each
        return n * (t * (2 * ev * ev) + s * (2 * ev * ev) + (t * s) * (2 * ev))

    def torch(self, p, ins, out):
        e = ins[0].shape[2].value
        kw = {"dropout": p.dropout, "bias": p.bias, "batch_first": True}
        # with a key-padding mask, a query may see no key at all: MaskedAttention gives it
        # the NumPy backend's result (the output bias) in every mode
        cls = f"{_HELPERS}:MaskedAttention" if p.mask is not None else "MultiheadAttention"
        module = TorchModule(cls, (e, p.heads), kw)
        kv = In(p.kv) if p.kv is not None else In(0)
        calls = []
        call_kw: dict = {"need_weights": False}
        if p.mask is not None and p.causal:
            # nn.MultiheadAttention merges the two masks the same way: [N*heads, T, S]
            calls.append(TorchCall(f"{_HELPERS}:causal_padding_mask",
                                   (In(0), kv, In(p.mask), p.heads)))
            call_kw["attn_mask"] = Prev()
        elif p.mask is not None:
            calls.append(TorchCall(".ne", (In(p.mask), 0)))
            call_kw["key_padding_mask"] = Prev()
        elif p.causal:
            calls.append(TorchCall(f"{_HELPERS}:causal_mask", (In(0), kv)))
            call_kw["attn_mask"] = Prev()
            call_kw["is_causal"] = True
        calls.append(TorchCall(MODULE, (In(0), kv, kv), call_kw))
        calls.append(TorchCall("getitem", (Prev(), 0)))
        return TorchPlan(module, calls)

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = np.asarray(xs[0])
        kv = np.asarray(xs[p.kv]) if p.kv is not None else x
        n, t, e = x.shape
        s = kv.shape[1]
        h = p.heads
        d = e // h
        wq, wk, wv = np.split(np.asarray(w["in_proj_weight"]), 3, axis=0)
        bq = bk = bv = None
        if "in_proj_bias" in w:
            bq, bk, bv = np.split(np.asarray(w["in_proj_bias"]), 3)
        # heads first ([N, h, T, d]) so that QKᵀ and AV are batched matmuls (BLAS)
        q = npops.linear(x, wq, bq).reshape(n, t, h, d).transpose(0, 2, 1, 3)
        k = npops.linear(kv, wk, bk).reshape(n, s, h, d).transpose(0, 2, 3, 1)
        v = npops.linear(kv, wv, bv).reshape(n, s, h, d).transpose(0, 2, 1, 3)
        scores = np.matmul(q, k)
        scores *= 1.0 / math.sqrt(d)
        masked = np.zeros((n, 1, t, s), dtype=bool)
        if p.causal:
            masked = masked | np.triu(np.ones((t, s), dtype=bool), 1)[None, None]
        if p.mask is not None:
            masked = masked | (np.asarray(xs[p.mask]) != 0)[:, None, None, :]
        if masked.any():
            scores = np.where(masked, -np.inf, scores)
        # a query whose keys are all masked attends to nothing: zero weights, so its output
        # is the output projection's bias, as nn.MultiheadAttention's regular path gives
        # (the torch backend uses attention_torch.MaskedAttention to get it in every mode)
        empty = masked.all(axis=-1, keepdims=True)
        if empty.any():
            scores = np.where(empty, 0.0, scores)
        attn = npops.softmax(scores, -1)
        if empty.any():
            attn = np.where(empty, 0.0, attn)
        rec = ctx.saved
        if rec is not None:
            rec.update(q=q, k=k, v=v, attn=attn, mask=None)
        if rec is not None and ctx.training and p.dropout > 0:
            # the same draw as dropout(attn), kept as the scale mask (0 or 1/(1-p))
            mask = npops.dropout(np.ones_like(attn), p.dropout, True, ctx.rng)
            rec["mask"] = mask
            attn = attn * mask
        else:
            attn = npops.dropout(attn, p.dropout, ctx.training, ctx.rng)
        y = np.matmul(attn, v).transpose(0, 2, 1, 3).reshape(n, t, e)
        if rec is not None:
            rec["y"] = y
        return npops.linear(y, w["out_proj.weight"], w.get("out_proj.bias"))

    def backward(self, p, w, xs, y, gy, ctx):
        """out = Y W_oᵀ + b_o with Y = (D ⊙ A) V per head, A = softmax(Q Kᵀ / √d) (masked
        scores -inf; a query with no key has A = 0), D the dropout mask. Backwards: dY =
        dout W_o, dV = (D ⊙ A)ᵀ dY, dA = D ⊙ (dY Vᵀ), the softmax's dS = A ⊙ (dA - Σ_j dA
        ⊙ A) (zero where A is), dQ = dS K / √d, dK = dSᵀ Q / √d; then the projections:
        dW_q = dQᵀ x, dx = dQ W_q, and the same for K and V on kv (which is x for
        self-attention). The key-padding mask is int and gets no gradient."""
        import numpy as np

        rec = ctx.saved
        if not rec or "attn" not in rec:
            if ctx.training and p.dropout > 0:
                raise ValueError("attention's backward needs the dropout mask its forward "
                                 "drew: run the forward with ctx.saved set")
            from dataclasses import replace

            rec = {}
            self.numpy(p, w, xs, replace(ctx, saved=rec, updates={}))
        x = np.asarray(xs[0])
        kv = np.asarray(xs[p.kv]) if p.kv is not None else x
        n, t, e = x.shape
        s = kv.shape[1]
        h = p.heads
        d = e // h
        dt = x.dtype
        gy = np.asarray(gy, dtype=dt)
        q, k, v, attn = rec["q"], rec["k"], rec["v"], rec["attn"]
        w_in = np.asarray(w["in_proj_weight"], dtype=dt)
        w_out = np.asarray(w["out_proj.weight"], dtype=dt)
        gw = {"out_proj.weight": gy.reshape(-1, e).T @ rec["y"].reshape(-1, e)}
        if p.bias:
            gw["out_proj.bias"] = gy.reshape(-1, e).sum(axis=0)
        dyh = (gy @ w_out).reshape(n, t, h, d).transpose(0, 2, 1, 3)  # [N, h, T, d]
        drop = rec["mask"]
        kept = attn if drop is None else attn * drop
        dv = np.matmul(kept.transpose(0, 1, 3, 2), dyh)  # [N, h, S, d]
        da = np.matmul(dyh, v.transpose(0, 1, 3, 2))  # [N, h, T, S]
        if drop is not None:
            da *= drop
        ds = attn * (da - np.sum(da * attn, axis=-1, keepdims=True))
        ds *= 1.0 / math.sqrt(d)
        dq = np.matmul(ds, k.transpose(0, 1, 3, 2))  # k is [N, h, d, S]
        dk = np.matmul(ds.transpose(0, 1, 3, 2), q)  # [N, h, S, d]

        def merge(g, length):
            return g.transpose(0, 2, 1, 3).reshape(n * length, e)

        dq, dk, dv = merge(dq, t), merge(dk, s), merge(dv, s)
        x2, kv2 = x.reshape(-1, e), kv.reshape(-1, e)
        gw["in_proj_weight"] = np.concatenate([dq.T @ x2, dk.T @ kv2, dv.T @ kv2], axis=0)
        if p.bias:
            gw["in_proj_bias"] = np.concatenate([dq.sum(0), dk.sum(0), dv.sum(0)])
        wq, wk, wv = np.split(w_in, 3, axis=0)
        gx = (dq @ wq).reshape(n, t, e)
        gkv = (dk @ wk + dv @ wv).reshape(n, s, e)
        gxs: list = [None] * len(xs)
        if p.kv is None:
            gxs[0] = gx + gkv
        else:
            gxs[0] = gx
            gxs[p.kv] = gkv if gxs[p.kv] is None else gxs[p.kv] + gkv
        return gxs, gw

    def detail(self, p, ins):
        parts = [f"heads={p.heads}", f"head_dim={ins[0].shape[2].value // p.heads}"]
        if p.kv is not None:
            parts.append(f"kv={ins[p.kv]}")
        if p.causal:
            parts.append("causal")
        if p.mask is not None:
            parts.append(f"mask={ins[p.mask]}")
        if p.dropout:
            parts.append(f"dropout={p.dropout}")
        if not p.bias:
            parts.append("bias=false")
        return " ".join(parts)

    def sample(self):
        ins = [TensorType((2, 3, 4)), TensorType((2, 3, 4)), TensorType((2, 3), INT)]
        return ({"heads": 2, "kv": 1, "mask": 2, "causal": True, "dropout": 0.25,
                 "bias": False}, ins)


#: How far from the requested head count the hint looks for head counts that divide the
#: width: the hint stays instant for any width (a width of 10^18 has no cheap divisor list).
HINT_SCAN = 1000


def _head_counts(e: int, heads: int, n: int = 6) -> list[int]:
    """Up to ``n`` head counts that divide the width ``e``, the nearest to ``heads`` first
    (scanning at most HINT_SCAN counts each side), listed in increasing order. 1 always
    divides, so the list is never empty."""
    found = {1}
    for step in range(HINT_SCAN + 1):
        for h in (heads - step, heads + step):
            if 1 <= h <= e and e % h == 0:
                found.add(h)
        if len(found) >= n:
            break
    return sorted(sorted(found, key=lambda h: (abs(h - heads), h))[:n])


@register
class Positional(LayerKind):
    """Adds positional encodings to [N, T, E]: sinusoidal ("Attention Is All You Need"; no
    weights) or learned (a [max_len, E] table, nn.Embedding's layout and init)."""

    name = "positional"
    aliases = ("positional_encoding",)
    synonyms = {"max_length": "max_len", "num_embeddings": "max_len"}
    summary = "positional encodings: positional [learned max_len=<L>] [scale] (scale: x*sqrt(E))"

    class Params(Params):
        learned: Bool = False
        max_len: Optional[Int] = None
        scale: Bool = False
        init: InitArg = DEFAULT_INIT

        _max_len = positive("max_len")

    def infer(self, p, ins):
        x = ins[0]
        need_rank(x, {3}, "positional", "[N, T, E]")
        need_float(x, "positional")
        concrete(x.shape[2], "positional's width (the last dim)")
        if p.learned and p.max_len is None:
            raise ShapeError("learned positions need a table size: positional learned "
                             "max_len=<L>", arg="learned",
                             hint="give the longest sequence length, e.g. max_len=512")
        t = x.shape[1]
        if p.max_len is not None and t.is_const and t.value > p.max_len:
            raise ShapeError(f"the sequence has {t.value} positions, more than max_len="
                             f"{p.max_len}", arg="max_len",
                             hint=f"raise max_len to at least {t.value}")
        return x

    def weights(self, p, ins, out):
        if not p.learned:
            return {}
        return {"weight": W((p.max_len, ins[0].shape[2].value), ("normal", 1.0))}

    def macs(self, p, ins, out):
        n, t, e = ins[0].shape
        return n * t * e * (2 if p.scale else 1)

    def torch(self, p, ins, out):
        e = ins[0].shape[2].value
        if p.learned:
            mod = TorchModule(f"{_HELPERS}:LearnedPositions", (p.max_len, e))
            args = (Prev(),) if p.scale else (In(0),)
            calls = [TorchCall("torch.mul", (In(0), math.sqrt(e)))] if p.scale else []
            return TorchPlan(mod, calls + [TorchCall(MODULE, args)])
        if p.max_len is not None:
            call = TorchCall(f"{_HELPERS}:add_sinusoidal", (In(0),),
                             {"scale": p.scale, "max_len": p.max_len})
        else:
            call = TorchCall(f"{_HELPERS}:add_sinusoidal", (In(0),), {"scale": p.scale})
        return TorchPlan(None, [call])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        x = np.asarray(xs[0])
        t, e = x.shape[1], x.shape[2]
        if p.max_len is not None and t > p.max_len:
            raise ValueError(f"the sequence has {t} positions, more than max_len={p.max_len}")
        if p.scale:
            x = x * math.sqrt(e)
        if p.learned:
            return x + np.asarray(w["weight"], dtype=x.dtype)[:t]
        return x + sinusoidal_table(t, e).astype(x.dtype)

    def backward(self, p, w, xs, y, gy, ctx):
        """y = x·√E (scale) + P[:T]: dx = dy·√E (or dy); a learned table's first T rows get
        Σ_n dy[n] and the rest zeros."""
        import numpy as np

        x = np.asarray(xs[0])
        gy = np.asarray(gy, dtype=x.dtype)
        gx = gy * math.sqrt(x.shape[2]) if p.scale else gy
        if not p.learned:
            return [gx], {}
        table = np.zeros(np.shape(w["weight"]), gy.dtype)
        table[:x.shape[1]] = gy.sum(axis=0)
        return [gx], {"weight": table}

    def sample(self):
        return {"learned": True, "max_len": 5, "scale": True}, [TensorType((2, 3, 4))]


def sinusoidal_table(t: int, e: int):
    """PE[pos, 2i] = sin(pos / 10000^(2i/E)), PE[pos, 2i+1] = cos(pos / 10000^(2i/E)):
    a float64 [t, e] array."""
    import numpy as np

    pos = np.arange(t, dtype=np.float64)[:, None]
    j = np.arange(e)
    angle = pos / np.power(10000.0, (j - j % 2).astype(np.float64) / e)
    return np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
