"""attention (multi-head scaled dot-product attention, torch.nn.MultiheadAttention)."""

from __future__ import annotations

import math
from typing import Literal, Optional

from pydantic import field_validator

from .base import (
    DEFAULT_INIT,
    FLOAT,
    INT,
    MODULE,
    Bool,
    In,
    InitArg,
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

_HELPERS = "nnspec.layers.torch.attention"


#: rotary embeddings' default base (LLaMA-1/2, RoFormer)
ROPE_THETA = 10000.0


@register
class Attention(LayerKind):
    """Multi-head attention over [N, T, E] -> [N, T, E], with input and output projections
    (nn.MultiheadAttention(E, heads, batch_first=True)); keys and values come from the input
    itself, or from ``kv=<value>`` [N, S, E] (cross-attention).

    Masks, combined (a key is seen only where every mask lets it through):

    - ``mask=<value>`` [N, S] int: the key-padding mask, **nonzero = padded** (ignored);
    - ``attn_mask=<value>``: [T, S], [N, T, S] or [N, heads, T, S] (N and heads may be 1,
      broadcast). An int mask is SDPA's bool mask, **nonzero = attend** (the opposite of
      ``mask``); a float mask is added to the scores (-inf blocks a key);
    - ``causal``: query i sees the keys j <= i + S - T, aligned bottom-right (a block of T
      queries at the end of S keys, as SDPA's and FlashAttention's bottom-right causal
      masks); S and T are taken at run time, so symbolic sizes are fine. With S < T the
      first T - S queries see no key;
    - ``window=<w>`` (w >= 1), a sliding window: query i, at position p = i + S - T among
      the keys (bottom-right, as causal), sees the keys j > p - w. With causal that is the
      w most recent keys, itself included (Mistral's sliding window); without causal also
      j < p + w, a band of the keys nearer than w on either side.

``softcap=<c>`` (c > 0) soft-caps the attention logits as Gemma 2's
``attn_logit_softcapping``: the scaled scores s become c * tanh(s / c) before a float
attn_mask is added, the masks applied and the softmax taken.

    A query that sees no key at all attends to nothing: its output is the output
    projection's bias.

    ``kv_heads=<k>`` (dividing heads) is grouped-query attention, kv_heads=1 multi-query:
    each group of heads/k query heads shares one key/value head. It needs separate
    projections: ``qkv=separate`` gives HF LLaMA's ``q_proj k_proj v_proj o_proj`` nn.Linear
    weights (k_proj and v_proj [k * head_dim, E]) with nn.Linear's default initialisation
    (weights and biases uniform in ±1/sqrt(E)), instead of nn.MultiheadAttention's packed
    ``in_proj_weight`` (the default). ``scale=`` replaces 1/sqrt(head_dim). ``rope`` applies
    rotary position embeddings to q and k per head after the projection (``rope_theta``,
    ``rope_layout=half`` as HF's rotate_half or ``interleaved`` pairs (2i, 2i+1) as RoFormer
    and Meta's LLaMA); the keys have positions 0..S-1, the queries S-T..S-1 (bottom-right,
    as causal). nn.MultiheadAttention serves the plain cases; with any of these options the
    torch layer is torch.attention.SDPAttention (F.scaled_dot_product_attention).
    """

    name = "attention"
    aliases = ("mha",)
    positional = ("heads",)
    synonyms = {"num_heads": "heads", "key_padding_mask": "mask", "is_causal": "causal",
                "memory": "kv", "num_kv_heads": "kv_heads", "num_key_value_heads": "kv_heads",
                "theta": "rope_theta", "rope_base": "rope_theta",
                "attn_logit_softcapping": "softcap", "sliding_window": "window"}
    tensor_args = ("kv", "mask", "attn_mask")
    summary = ("multi-head attention: attention heads=<h> [kv=<value>] [causal] [mask=<value>] "
               "[attn_mask=<value>] [kv_heads=<k>] [qkv=packed|separate] [scale=<s>] "
               "[rope [rope_theta=10000.0] [rope_layout=half|interleaved]] [softcap=<c>] "
               "[window=<w>] [dropout=0.1] [bias=false]")

    class Params(Params):
        heads: Int
        kv: Optional[Int] = None
        mask: Optional[Int] = None
        attn_mask: Optional[Int] = None
        causal: Bool = False
        kv_heads: Optional[Int] = None
        qkv: Literal["packed", "separate"] = "packed"
        scale: Optional[float] = None
        rope: Bool = False
        rope_theta: float = ROPE_THETA
        rope_layout: Literal["half", "interleaved"] = "half"
        softcap: Optional[float] = None
        window: Optional[Int] = None
        dropout: float = 0.0
        bias: Bool = True
        init: InitArg = DEFAULT_INIT
        bias_init: InitArg = DEFAULT_INIT

        _heads = positive("heads", "kv_heads", "window")

        _dropout = probability("dropout")

        @field_validator("scale", "rope_theta", "softcap")
        @classmethod
        def _positive_float(cls, v):
            if v is not None and not v > 0:
                raise ValueError("must be > 0")
            return v

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
        kvh = _kv_heads(p)
        if p.heads % kvh:
            raise ShapeError(f"kv_heads must divide heads, but {kvh} does not divide "
                             f"{p.heads}", arg="kv_heads",
                             hint=f"{p.heads} query heads share key/value heads in groups: "
                                  f"kv_heads={', '.join(_divisors(p.heads))}")
        if kvh != p.heads and p.qkv == "packed":
            raise ShapeError(f"grouped-query attention (kv_heads={kvh} < heads={p.heads}) "
                             "needs separate projections: the packed in_proj_weight has as "
                             "many key/value heads as query heads", arg="kv_heads",
                             hint="add qkv=separate (q_proj, k_proj, v_proj, o_proj)")
        if p.rope and (e // p.heads) % 2:
            raise ShapeError(f"rotary embeddings turn pairs of features, but the head width "
                             f"{e // p.heads} ({e} / {p.heads} heads) is odd", arg="rope")
        if not p.rope:
            for arg, default in (("rope_theta", ROPE_THETA), ("rope_layout", "half")):
                if getattr(p, arg) != default:
                    raise ShapeError(f"{arg}={getattr(p, arg)} sets the rotary embeddings, but "
                                     "this attention applies none", arg=arg,
                                     hint=f"add rope, or remove {arg}")
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
        mask = self.extra(p, ins, "mask")
        if mask is not None:
            if mask.dtype != INT or mask.rank != 2 or mask.shape[0] != x.shape[0] \
                    or mask.shape[1] != s:
                raise ShapeError(f"the key-padding mask must be [{x.shape[0]}, {s}] int "
                                 f"([N, S], nonzero = padded), got {mask}", arg="mask")
        am = self.extra(p, ins, "attn_mask")
        if am is not None:
            _check_attn_mask(am, x.shape[0], p.heads, x.shape[1], s)
        return TensorType(x.shape, FLOAT)

    def _sdpa(self, p, ins) -> bool:
        """Whether the layer needs torch.attention.SDPAttention (nn.MultiheadAttention
        serves the rest, with the plans and state_dicts it always had)."""
        kv = self.extra(p, ins, "kv")
        bottom_right = p.causal and kv is not None and kv.shape[1] != ins[0].shape[1]
        return (p.attn_mask is not None or _kv_heads(p) != p.heads or p.qkv == "separate"
                or p.scale is not None or p.rope or bottom_right or p.softcap is not None
                or p.window is not None)

    def weights(self, p, ins, out):
        e = ins[0].shape[2].value
        if p.qkv == "separate":
            # HF LLaMA's nn.Linear projections, nn.Linear's default initialisation
            kvd = _kv_heads(p) * (e // p.heads)
            w = {}
            for name, rows in (("q_proj", e), ("k_proj", kvd), ("v_proj", kvd), ("o_proj", e)):
                w[f"{name}.weight"] = W((rows, e), ("uniform", fan_in_bound(e)))
                if p.bias:
                    w[f"{name}.bias"] = W((rows,), ("uniform", fan_in_bound(e)))
            return w
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
        kvd = _kv_heads(p) * (ev // p.heads)
        # Q and output projections over T positions, K and V projections (kv_heads * head_dim
        # wide) over S positions, then Q Kᵀ and (attention weights) V: T*S*E each; rotary
        # embeddings: two multiplies per rotated feature of q and k
        rope = 2 * (t * ev + s * kvd) if p.rope else 0
        return n * (t * (2 * ev * ev) + s * (2 * ev * kvd) + (t * s) * (2 * ev) + rope)

    def torch(self, p, ins, out):
        e = ins[0].shape[2].value
        kv = In(p.kv) if p.kv is not None else In(0)
        if self._sdpa(p, ins):
            kw = {"kv_heads": p.kv_heads, "dropout": p.dropout, "bias": p.bias, "qkv": p.qkv,
                  "causal": p.causal, "scale": p.scale, "rope": p.rope,
                  "rope_theta": p.rope_theta, "rope_layout": p.rope_layout,
                  "softcap": p.softcap, "window": p.window}
            module = TorchModule(f"{_HELPERS}:SDPAttention", (e, p.heads), kw)
            call_kw = {}
            if p.mask is not None:
                call_kw["key_padding_mask"] = In(p.mask)
            if p.attn_mask is not None:
                call_kw["attn_mask"] = In(p.attn_mask)
            return TorchPlan(module, [TorchCall(MODULE, (In(0), kv, kv), call_kw)])
        kw = {"dropout": p.dropout, "bias": p.bias, "batch_first": True}
        # with a key-padding mask, a query may see no key at all: MaskedAttention gives it
        # the NumPy backend's result (the output bias) in every mode
        cls = f"{_HELPERS}:MaskedAttention" if p.mask is not None else "MultiheadAttention"
        module = TorchModule(cls, (e, p.heads), kw)
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
        hk = _kv_heads(p)
        d = e // h
        (wq, bq), (wk, bk), (wv, bv), (wo, bo) = _projections(p, w)
        # heads first ([N, h, T, d]) so that QKᵀ and AV are batched matmuls (BLAS)
        q = npops.linear(x, wq, bq).reshape(n, t, h, d).transpose(0, 2, 1, 3)
        k = npops.linear(kv, wk, bk).reshape(n, s, hk, d).transpose(0, 2, 1, 3)
        v = npops.linear(kv, wv, bv).reshape(n, s, hk, d).transpose(0, 2, 1, 3)
        if p.rope:
            q = rope_numpy(q, 2, p.rope_theta, p.rope_layout, offset=s - t)
            k = rope_numpy(k, 2, p.rope_theta, p.rope_layout)
        if hk != h:  # each key/value head serves h // hk consecutive query heads
            k, v = np.repeat(k, h // hk, axis=1), np.repeat(v, h // hk, axis=1)
        scores = np.matmul(q, k.transpose(0, 1, 3, 2))
        scores *= _scale(p, d)
        if p.softcap is not None:  # Gemma 2: c * tanh(s / c), before the masks
            capped = np.tanh(scores / p.softcap)
            scores = capped * p.softcap
        masked = None
        additive = False
        seen = visible_numpy(t, s, p.causal, p.window)
        if seen is not None:  # bottom-right: query i sits at position i + S - T
            masked = ~seen[None, None]
        if p.mask is not None:
            pad = (np.asarray(xs[p.mask]) != 0)[:, None, None, :]
            masked = pad if masked is None else masked | pad
        if p.attn_mask is not None:
            am = _mask4(np.asarray(xs[p.attn_mask]))
            additive = np.issubdtype(am.dtype, np.floating)
            if additive:
                scores = scores + am.astype(scores.dtype)
            else:
                masked = (am == 0) if masked is None else masked | (am == 0)
        if masked is not None and masked.any():
            scores = np.where(masked, -np.inf, scores)
        # a query whose keys are all masked attends to nothing: zero weights, so its output
        # is the output projection's bias, as nn.MultiheadAttention's regular path gives
        # (the torch backend uses torch.attention.MaskedAttention to get it in every mode)
        if additive:  # -inf in the float mask blocks a key too
            empty = np.isneginf(scores).all(axis=-1, keepdims=True)
        else:
            empty = np.zeros((), bool) if masked is None else masked.all(axis=-1, keepdims=True)
        if empty.any():
            scores = np.where(empty, 0.0, scores)
        attn = npops.softmax(scores, -1)
        if empty.any():
            attn = np.where(empty, 0.0, attn)
        rec = ctx.saved
        if rec is not None:
            rec.update(q=q, k=k, v=v, attn=attn, mask=None,
                       tanh=capped if p.softcap is not None else None)
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
        return npops.linear(y, wo, bo)

    def backward(self, p, w, xs, y, gy, ctx):
        """out = Y W_oᵀ + b_o with Y = (D ⊙ A) V per head, A = softmax(c Q Kᵀ + M) (c the
        scale, M a float attn_mask; masked scores -inf; a query with no key has A = 0), D the
        dropout mask. Backwards: dY = dout W_o, dV = (D ⊙ A)ᵀ dY, dA = D ⊙ (dY Vᵀ), the
        softmax's dS = A ⊙ (dA - Σ_j dA ⊙ A) (zero where A is), dM = dS summed over the axes
        M broadcasts, dQ = c dS K, dK = c dSᵀ Q. A key/value head shared by a group of query
        heads (kv_heads) sums the group's dK and dV; rotary embeddings are rotations, so
        their backward turns dQ and dK back by the same angles. Then the projections:
        dW_q = dQᵀ x, dx = dQ W_q, and the same for K and V on kv (which is x for
        self-attention). The int masks get no gradient."""
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
        hk = _kv_heads(p)
        d = e // h
        dt = x.dtype
        gy = np.asarray(gy, dtype=dt)
        q, k, v, attn = rec["q"], rec["k"], rec["v"], rec["attn"]
        (wq, _), (wk, _), (wv, _), (wo, _) = (
            (np.asarray(a, dtype=dt), b) for a, b in _projections(p, w))
        o_name = "o_proj" if p.qkv == "separate" else "out_proj"
        gw = {f"{o_name}.weight": gy.reshape(-1, e).T @ rec["y"].reshape(-1, e)}
        if p.bias:
            gw[f"{o_name}.bias"] = gy.reshape(-1, e).sum(axis=0)
        dyh = (gy @ wo).reshape(n, t, h, d).transpose(0, 2, 1, 3)  # [N, h, T, d]
        drop = rec["mask"]
        kept = attn if drop is None else attn * drop
        dv = np.matmul(kept.transpose(0, 1, 3, 2), dyh)  # [N, h, S, d]
        da = np.matmul(dyh, v.transpose(0, 1, 3, 2))  # [N, h, T, S]
        if drop is not None:
            da *= drop
        ds = attn * (da - np.sum(da * attn, axis=-1, keepdims=True))
        gxs: list = [None] * len(xs)
        if p.attn_mask is not None:
            m = np.asarray(xs[p.attn_mask])
            if np.issubdtype(m.dtype, np.floating):
                gxs[p.attn_mask] = _unbroadcast(ds, m.shape).astype(dt, copy=False)
        if p.softcap is not None:  # d(c tanh(s / c)) / ds = 1 - tanh²
            ds *= 1 - rec["tanh"] ** 2
        ds *= _scale(p, d)
        dq = np.matmul(ds, k)  # [N, h, T, d]
        dk = np.matmul(ds.transpose(0, 1, 3, 2), q)  # [N, h, S, d]
        if hk != h:  # a shared key/value head: the sum over its group of query heads
            dk = dk.reshape(n, hk, h // hk, s, d).sum(axis=2)
            dv = dv.reshape(n, hk, h // hk, s, d).sum(axis=2)
        if p.rope:
            dq = rope_numpy(dq, 2, p.rope_theta, p.rope_layout, offset=s - t, inverse=True)
            dk = rope_numpy(dk, 2, p.rope_theta, p.rope_layout, inverse=True)

        def merge(g, length):
            return g.transpose(0, 2, 1, 3).reshape(n * length, -1)

        dq, dk, dv = merge(dq, t), merge(dk, s), merge(dv, s)
        x2, kv2 = x.reshape(-1, e), kv.reshape(-1, e)
        if p.qkv == "separate":
            for name, g, inp in (("q_proj", dq, x2), ("k_proj", dk, kv2), ("v_proj", dv, kv2)):
                gw[f"{name}.weight"] = g.T @ inp
                if p.bias:
                    gw[f"{name}.bias"] = g.sum(0)
        else:
            gw["in_proj_weight"] = np.concatenate([dq.T @ x2, dk.T @ kv2, dv.T @ kv2], axis=0)
            if p.bias:
                gw["in_proj_bias"] = np.concatenate([dq.sum(0), dk.sum(0), dv.sum(0)])
        gx = (dq @ wq).reshape(n, t, e)
        gkv = (dk @ wk + dv @ wv).reshape(n, s, e)
        if p.kv is None:
            gxs[0] = gx + gkv
        else:
            gxs[0] = gx
            gxs[p.kv] = gkv if gxs[p.kv] is None else gxs[p.kv] + gkv
        return gxs, gw

    def detail(self, p, ins):
        parts = [f"heads={p.heads}", f"head_dim={ins[0].shape[2].value // p.heads}"]
        if p.kv_heads is not None:
            parts.append(f"kv_heads={p.kv_heads}")
        if p.qkv != "packed":
            parts.append(f"qkv={p.qkv}")
        if p.kv is not None:
            parts.append(f"kv={ins[p.kv]}")
        if p.causal:
            parts.append("causal")
        if p.mask is not None:
            parts.append(f"mask={ins[p.mask]}")
        if p.attn_mask is not None:
            parts.append(f"attn_mask={ins[p.attn_mask]}")
        for arg in ("scale", "softcap", "window"):
            if getattr(p, arg) is not None:
                parts.append(f"{arg}={getattr(p, arg)}")
        if p.rope:
            parts.append("rope")
            if p.rope_theta != ROPE_THETA:
                parts.append(f"rope_theta={p.rope_theta}")
            if p.rope_layout != "half":
                parts.append(f"rope_layout={p.rope_layout}")
        if p.dropout:
            parts.append(f"dropout={p.dropout}")
        if not p.bias:
            parts.append("bias=false")
        return " ".join(parts)

    def sample(self):
        ins = [TensorType((2, 3, 4)), TensorType((2, 3, 4)), TensorType((2, 3), INT)]
        return ({"heads": 2, "kv": 1, "mask": 2, "causal": True, "dropout": 0.25,
                 "bias": False}, ins)

    def samples(self):
        # cross-attention with more keys than queries (bottom-right causal), an additive
        # per-head mask, separate projections, a scale and interleaved rotary embeddings
        cross = [TensorType((2, 3, 8)), TensorType((2, 5, 8)), TensorType((2, 2, 3, 5))]
        # grouped-query self-attention with an int [T, S] mask and a key-padding mask
        gqa = [TensorType((2, 3, 8)), TensorType((3, 3), INT), TensorType((2, 3), INT)]
        return [self.sample(),
                ({"heads": 2, "kv": 1, "attn_mask": 2, "causal": True, "qkv": "separate",
                  "scale": 0.3, "rope": True, "rope_theta": 100.0,
                  "rope_layout": "interleaved"}, cross),
                ({"heads": 4, "kv_heads": 2, "qkv": "separate", "attn_mask": 1, "mask": 2,
                  "causal": True, "bias": False}, gqa),
                # soft-capped logits, a sliding window without causal, a float mask
                ({"heads": 2, "kv": 1, "attn_mask": 2, "softcap": 0.5, "window": 2}, cross)]


def visible_numpy(t: int, s: int, causal: bool, window):
    """[T, S] bool, True where query i (at position p = i + S - T) sees key j: j <= p with
    causal, p - window < j with a window (and j < p + window without causal); None when
    neither is set."""
    import numpy as np

    if not causal and window is None:
        return None
    pos, j = np.arange(t)[:, None] + (s - t), np.arange(s)[None, :]
    seen = j <= pos if causal else np.ones((t, s), bool)
    if window is not None:
        seen = seen & (j > pos - window) & (causal | (j < pos + window))
    return seen


def _kv_heads(p) -> int:
    return p.heads if p.kv_heads is None else p.kv_heads


def _scale(p, d: int) -> float:
    return p.scale if p.scale is not None else 1.0 / math.sqrt(d)


def _divisors(n: int) -> list[str]:
    """The divisors of a head count (a small number), as text; at most 12, the largest last."""
    found = [k for k in range(1, min(n, HINT_SCAN) + 1) if n % k == 0]
    if n > HINT_SCAN:
        found.append(n)
    return [str(k) for k in (found if len(found) <= 12 else found[:11] + found[-1:])]


def _check_attn_mask(am: TensorType, n, heads: int, t, s) -> None:
    """attn_mask: [T, S], [N, T, S] or [N, heads, T, S], N and heads may be 1."""
    forms = {2: [t, s], 3: [n, t, s], 4: [n, heads, t, s]}
    want = forms.get(am.rank)
    texts = [f"[{', '.join(str(d) for d in f)}]" for f in forms.values()]
    shown = f"{', '.join(texts[:-1])} or {texts[-1]}"
    kind = ("int, nonzero = attend" if am.dtype == INT else "float, added to the scores")
    if want is None:
        raise ShapeError(f"attention's attn_mask must be {shown}, got {am} (rank {am.rank})",
                         arg="attn_mask")
    for i, (got, exp) in enumerate(zip(am.shape, want)):
        if got == exp or (i < am.rank - 2 and got.is_const and got.value == 1):
            continue
        exp_text = f"[{', '.join(str(d) for d in want)}]"
        raise ShapeError(f"attention's attn_mask must be {exp_text} ({kind}), got {am}: "
                         f"dim {i} is {got}, not {exp}", arg="attn_mask",
                         notes=[f"the mask has one of the shapes {shown} (queries by keys; "
                                "N and heads may be 1)"])


def _projections(p, w) -> tuple:
    """((weight, bias) of q, k, v and the output projection) in either layout."""
    import numpy as np

    if p.qkv == "separate":
        return tuple((w[f"{n}.weight"], w.get(f"{n}.bias"))
                     for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
    wq, wk, wv = np.split(np.asarray(w["in_proj_weight"]), 3, axis=0)
    bq = bk = bv = None
    if "in_proj_bias" in w:
        bq, bk, bv = np.split(np.asarray(w["in_proj_bias"]), 3)
    return (wq, bq), (wk, bk), (wv, bv), (w["out_proj.weight"], w.get("out_proj.bias"))


def _mask4(m):
    """An attn_mask as [N|1, heads|1, T, S]: [T, S] and [N, T, S] get the missing axes."""
    if m.ndim == 3:
        return m[:, None]
    return m[None, None] if m.ndim == 2 else m


def _unbroadcast(g, shape):
    """g [N, heads, T, S] summed back to the shape of the attn_mask that _mask4 and
    broadcasting took to it."""
    shape = tuple(shape)
    m4 = {2: (1, 1) + shape, 3: shape[:1] + (1,) + shape[1:]}.get(len(shape), shape)
    axes = tuple(i for i in range(4) if m4[i] == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def rope_numpy(x, positions_axis: int, theta: float = ROPE_THETA, layout: str = "half",
               offset: int = 0, inverse: bool = False):
    """Rotary position embeddings (RoFormer) on x, whose last axis holds the features (an
    even number D) and whose ``positions_axis`` runs over the positions 0, 1, ... (plus
    ``offset``); ``inverse`` turns the other way (the transpose: the backward). The math is
    the rope kind's (:func:`nnspec.layers.rope.rotary`)."""
    import numpy as np

    from .rope import rotary

    return rotary(np.asarray(x), positions_axis, theta, layout, offset,
                  sign=-1.0 if inverse else 1.0)


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
