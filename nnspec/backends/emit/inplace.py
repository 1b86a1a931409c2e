"""Which element-wise ops of a generated ``forward`` run in place, as torchvision's ResNet
does them (``nn.ReLU(inplace=True)``, ``out += identity``), and which value is a head's
logits.

An op runs in place on its first operand only where that can change nothing else:

- the value has exactly one reader in the model (this op), so no later line reads it and
  no view of it is alive; it is not an argument of the class (the caller's tensor) nor a
  value the class or the model returns;
- it was made in this class by a layer whose backward does not read its output (a
  convolution, a batch norm, a dense layer, an addition: :data:`FRESH`), so autograd's
  saved tensors are untouched; a sigmoid's or tanh's output, saved for its backward,
  never is;
- for ``+=``, the sum has the first operand's shape and dtype (no broadcasting into it).
"""

from __future__ import annotations

from ...layers.base import In

# layers whose output is a new tensor that their own backward never reads
FRESH = frozenset({"conv", "convtranspose", "batchnorm", "dense", "add", "layernorm",
                   "groupnorm", "instancenorm", "rmsnorm", "maxpool", "avgpool"})
# losses that take logits
_LOGIT_LOSSES = ("cross_entropy", "nll", "logits")


def _readers(em, m) -> dict:
    got = em.__dict__.setdefault("_readers", {}).get(m.name)
    if got is None:
        got = {}
        for node in m.nodes:
            for v in node.inputs:
                got[v] = got.get(v, 0) + 1
        em._readers[m.name] = got
    return got


def in_place(em, m, s, plans, k: int, reads: list) -> str | None:
    """``"relu"`` or ``"add"`` where item k of scope s may run in place, else None."""
    kind, x, _ = s.items[k]
    node, _, plan = plans[x]
    calls = plan.calls
    if kind != "node" or len(calls) != 1 or calls[0].kwargs or not reads:
        return None
    call = calls[0]
    if call.fn == "F.relu" and call.args == (In(0),):
        mode = "relu"
    elif call.fn == "torch.add" and call.args == (In(0), In(1)) and len(reads) == 2 \
            and reads[0] != reads[1]:
        mode = "add"
    else:
        return None
    v = reads[0]
    if _readers(em, m).get(v) != 1 or v in (s.output, m.output):
        return None
    producer = next((plans[y][0] for kd, y, _ in s.items[:k]
                     if kd == "node" and plans[y][0].id == v), None)
    if producer is None or producer.op not in FRESH or producer.id in m.output_names:
        return None
    if mode == "add":
        types = em.spec.types(m.name).types
        if str(types.get(v)) != str(types.get(node.id)):
            return None
    return mode


def is_head(spec, m, node) -> bool:
    """The model's output is a dense layer's and its train section's loss takes logits."""
    from ...ir import training as T

    if node.op != "dense":
        return False
    t = T.training_for(spec.program, m.name)
    return t is not None and any(any(w in term.loss for w in _LOGIT_LOSSES)
                                 for term in t.terms)
