"""Torch helpers of the attention layer: its masks, and :class:`SDPAttention` (attention on
F.scaled_dot_product_attention for the options nn.MultiheadAttention lacks).

The source emitter copies these definitions into generated files: inside them only the
names torch, nn, F and math are used, the rotary embeddings' apply_rope (imported from
the rope layer's helpers, copied with them) and the sdpa layer's visible and
softcapped_attention (likewise).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .rope import apply_rope
from .sdpa import softcapped_attention, visible


def causal_mask(q, kv):
    """[T, S] bool mask, True where a query would see a later key (masked out)."""
    return torch.ones(q.shape[1], kv.shape[1], dtype=torch.bool, device=q.device).triu(1)


def causal_padding_mask(q, kv, mask, heads):
    """The causal mask and a key-padding mask [N, S] (nonzero = padded) merged as
    nn.MultiheadAttention merges them: a [N * heads, T, S] bool attn_mask."""
    n, t, s = q.shape[0], q.shape[1], kv.shape[1]
    future = torch.ones(t, s, dtype=torch.bool, device=q.device).triu(1)
    merged = future[None, None] | (mask != 0)[:, None, None, :]
    return merged.expand(n, heads, t, s).reshape(n * heads, t, s)


class MaskedAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention (the same arguments and state_dict) for a layer with a
    key-padding mask: a query whose keys are all masked attends to nothing, so its output
    is the output projection's bias (zeros before the projection), in every mode.

    That is what nn.MultiheadAttention's regular path gives; its inference fast path (eval
    mode without grad) gives NaN instead. Such rows are computed unmasked, so that no NaN
    arises anywhere (not in a backward pass either), and then replaced.
    """

    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights=True,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        empty = None
        if key_padding_mask is not None:  # [N, S] bool
            rows = key_padding_mask.all(-1)
            key_padding_mask = key_padding_mask & ~rows[:, None]
            empty = rows[:, None, None]
        elif attn_mask is not None and attn_mask.dim() == 3:  # [N * heads, T, S] bool
            rows = attn_mask.all(-1)
            attn_mask = attn_mask & ~rows[..., None]
            empty = rows.reshape(query.shape[0], -1, rows.shape[-1])[:, 0, :, None]
        out, weights = super().forward(
            query,
            key,
            value,
            key_padding_mask=key_padding_mask,
            need_weights=need_weights,
            attn_mask=attn_mask,
            average_attn_weights=average_attn_weights,
            is_causal=is_causal,
        )
        if empty is not None:
            bias = self.out_proj.bias
            fill = bias if bias is not None else out.new_zeros(())
            out = torch.where(empty, fill, out)
        return out, weights


def attention_mask(t, s, like, key_padding_mask=None, attn_mask=None, causal=False, window=None):
    """The masks of an attention layer merged into one attn_mask for
    F.scaled_dot_product_attention, broadcasting to [N, heads, T, S], or None without masks.
    A float mask takes the dtype of ``like`` (the queries), every mask its device.

    causal is aligned bottom-right: query i sees the keys j <= i + S - T; a sliding window
    keeps the keys j > i + S - T - window (and, without causal, j < i + S - T + window),
    as :func:`visible`. The key-padding
    mask [N, S] is nonzero where a key is padded; an int attn_mask ([T, S], [N, T, S] or
    [N, heads, T, S]) is nonzero where a query may attend (SDPA's bool mask), a float one is
    added to the scores. A query that sees no key gets zeros from SDPA (no NaN, in the
    backward pass either): the output projection's bias, as the NumPy backend gives.
    """
    allowed = None
    if causal or window is not None:
        allowed = visible(t, s, like.device, causal, window)
    if key_padding_mask is not None:
        keep = (key_padding_mask.to(like.device) == 0)[:, None, None, :]
        allowed = keep if allowed is None else allowed & keep
    if attn_mask is None:
        return allowed
    m = (attn_mask[:, None] if attn_mask.dim() == 3 else attn_mask).to(like.device)
    if m.is_floating_point():
        m = m.to(like.dtype)
        return m if allowed is None else m.masked_fill(~allowed, -math.inf)
    return m != 0 if allowed is None else allowed & (m != 0)


class SDPAttention(nn.Module):
    """Multi-head attention on F.scaled_dot_product_attention, for what nn.MultiheadAttention
    does not offer: an attn_mask next to the key-padding mask, causal masking aligned
    bottom-right when keys and queries differ in number, grouped-query attention (kv_heads <
    num_heads: each group of num_heads // kv_heads query heads shares one key/value head;
    kv_heads=1 is multi-query attention), a scale other than 1/sqrt(head_dim), and rotary
    embeddings on q and k (positions 0..S-1 for the keys, S-T..S-1 for the queries), a
    sliding window (an attn_mask, see :func:`attention_mask`), and attention logit
    soft-capping (Gemma 2: scores s -> softcap * tanh(s / softcap) before the masks and the
    softmax; it needs the scores, so :func:`softcapped_attention` instead of SDPA).

    qkv='packed' has nn.MultiheadAttention's parameters and initialisation (in_proj_weight
    [3E, E] xavier-uniform, zero biases, out_proj); qkv='separate' has HF LLaMA's nn.Linear
    children q_proj, k_proj, v_proj and o_proj with nn.Linear's initialisation, k_proj and
    v_proj [kv_heads * head_dim, E]. A query that sees no key gets zeros before the output
    projection (the output is its bias), as the NumPy backend gives.
    """

    def __init__(
        self,
        embed_dim,
        num_heads,
        kv_heads=None,
        dropout=0.0,
        bias=True,
        qkv="packed",
        causal=False,
        scale=None,
        rope=False,
        rope_theta=10000.0,
        rope_layout="half",
        softcap=None,
        window=None,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.kv_heads = num_heads if kv_heads is None else kv_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.packed = qkv == "packed"
        self.causal = causal
        self.scale = scale
        self.rope = rope
        self.rope_theta = rope_theta
        self.rope_layout = rope_layout
        self.softcap = softcap
        self.window = window
        if self.packed:
            if self.kv_heads != num_heads:
                raise ValueError("grouped-query attention needs qkv='separate'")
            self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
            self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim)) if bias else None
            self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
            nn.init.xavier_uniform_(self.in_proj_weight)
            if bias:
                nn.init.zeros_(self.out_proj.bias)
        else:
            kv_dim = self.kv_heads * self.head_dim
            self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
            self.k_proj = nn.Linear(embed_dim, kv_dim, bias=bias)
            self.v_proj = nn.Linear(embed_dim, kv_dim, bias=bias)
            self.o_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def forward(self, query, key, value, key_padding_mask=None, attn_mask=None):
        n, t, s = query.shape[0], query.shape[1], key.shape[1]
        if self.packed:
            wq, wk, wv = self.in_proj_weight.chunk(3)
            bq, bk, bv = (None,) * 3 if self.in_proj_bias is None else self.in_proj_bias.chunk(3)
            q, k, v = F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)
        else:
            q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        q = q.view(n, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(n, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(n, s, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.rope:
            q = apply_rope(q, self.rope_theta, self.rope_layout, offset=s - t)
            k = apply_rope(k, self.rope_theta, self.rope_layout)
        # causal alone over as many keys as queries is SDPA's own causal mask (its fast
        # kernels); otherwise the masks are merged into one
        is_causal = (
            self.causal
            and t == s
            and key_padding_mask is None
            and attn_mask is None
            and self.window is None
            and self.softcap is None
        )
        mask = None
        if not is_causal:
            mask = attention_mask(t, s, q, key_padding_mask, attn_mask, self.causal, self.window)
        gqa = self.kv_heads != self.num_heads
        if self.softcap is not None:
            p = self.dropout if self.training else 0.0
            y = softcapped_attention(q, k, v, mask, p, self.scale, gqa, self.softcap)
        else:
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=is_causal,
                scale=self.scale,
                enable_gqa=gqa,
            )
        y = y.transpose(1, 2).reshape(n, t, self.num_heads * self.head_dim)
        return self.out_proj(y) if self.packed else self.o_proj(y)
