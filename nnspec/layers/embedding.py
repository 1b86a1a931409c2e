"""embedding: a lookup table from int token ids to vectors (torch.nn.Embedding)."""

from __future__ import annotations

from .base import (
    DEFAULT_INIT,
    INT,
    InitArg,
    Int,
    LayerKind,
    Params,
    ShapeError,
    TensorType,
    TorchModule,
    TorchPlan,
    W,
    positive,
    register,
)


@register
class Embedding(LayerKind):
    """Token ids [N, T] int -> vectors [N, T, width]: row ``id`` of ``weight`` [vocab, width].

    ``weight`` is initialised normal(0, 1) as PyTorch does; with ``padding=<idx>`` PyTorch
    zeroes that row at initialisation (and never updates it). ``padding`` may be negative
    (counted from the end), as torch's ``padding_idx``.
    """

    name = "embedding"
    positional = ("vocab", "width")
    synonyms = {"num_embeddings": "vocab", "input_dim": "vocab", "embedding_dim": "width",
                "output_dim": "width", "dim": "width", "padding_idx": "padding"}
    summary = "token ids -> vectors: embedding <vocab> <width> [padding=<idx>]"

    class Params(Params):
        vocab: Int
        width: Int
        padding: Int | None = None
        init: InitArg = DEFAULT_INIT

        _pos = positive("vocab", "width")

    def _padding(self, p) -> int | None:
        """The padding row as an index in [0, vocab), or None."""
        if p.padding is None:
            return None
        if not -p.vocab <= p.padding < p.vocab:
            raise ShapeError(f"padding must be a row of the table, in [{-p.vocab}, "
                             f"{p.vocab - 1}], but it is {p.padding}", arg="padding")
        return p.padding % p.vocab

    def infer(self, p, ins):
        (x,) = ins
        if x.dtype != INT:
            raise ShapeError(f"embedding takes int token ids, got {x}",
                             hint="declare the input as int: tokens: [N, T] int")
        self._padding(p)
        return TensorType(x.shape + (p.width,))

    def weights(self, p, ins, out):
        pad = self._padding(p)
        # ("normal", std, row): the row PyTorch zeroes at initialisation
        init = ("normal", 1.0) if pad is None else ("normal", 1.0, pad)
        return {"weight": W((p.vocab, p.width), init)}

    def torch(self, p, ins, out):
        pad = self._padding(p)
        kw = {} if pad is None else {"padding_idx": pad}
        return TorchPlan(TorchModule("Embedding", (p.vocab, p.width), kw), [])

    def numpy(self, p, w, xs, ctx):
        import numpy as np

        ids = np.asarray(xs[0])
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"embedding takes integer token ids, got {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= p.vocab):
            bad = ids.min() if ids.min() < 0 else ids.max()
            raise IndexError(f"token id {bad} is out of range for an embedding of "
                             f"{p.vocab} rows")
        return np.take(np.asarray(w["weight"]), ids, axis=0)

    def backward(self, p, w, xs, y, gy, ctx):
        """dW[i] = Σ of dy over the positions holding token i (a scatter-add); the padding
        row gets none, as torch's padding_idx. The ids are ints: no gradient."""
        import numpy as np

        ids = np.asarray(xs[0]).reshape(-1)
        gy = np.asarray(gy)
        table = np.zeros((p.vocab, p.width), gy.dtype)
        np.add.at(table, ids, gy.reshape(-1, p.width))
        pad = self._padding(p)
        if pad is not None:
            table[pad] = 0
        return [None], {"weight": table}

    def sample(self):
        return {"vocab": 7, "width": 3, "padding": 1}, [TensorType((2, 5), INT)]
