"""A checkpoint's tensors matched to a spec's state_dict keys (``nnspec weights map``).

    >>> wm = map_weights(spec, "resnet18.pt")         # or .safetensors, .bin, an HF folder
    >>> print(wm.table())                             # spec key <- checkpoint key, and why
    >>> net = build_module(spec, params=wm.state_dict())
    >>> wm.save("renamed.safetensors")

Reading is lazy: a ``.safetensors`` file through ``safe_open`` (the header only; a tensor
is a view of the mapped file when it is asked for), a torch file with
``torch.load(weights_only=True, mmap=True)``, so nothing in it is executed and its tensors
stay on disk until used. A Hugging Face folder (``model.safetensors``,
``pytorch_model.bin``, or their sharded ``.index.json``) reads as one checkpoint.

The matching (``checkpoint_match``) pairs the spec's entries with the checkpoint's by
structure: order, role (``weight``, ``bias``, ``running_mean``, ...) and shape, keys of the
same name anchoring it and name similarity breaking ties; HF Conv1D's ``[in, out]`` weights
load transposed, a tied spec entry takes its source's tensor, a missing
``num_batches_tracked`` is 0. A spec key left without a tensor, a pair whose shapes differ
and a key two tensors could fill equally well are problems, named in the table.
"""

from __future__ import annotations

import io
import json
import os

from ..core.util import OutputError, write_atomic
from ..ir.spec import Spec
from ..layers.base import INT, W
from .checkpoint_match import Row, match, shape_text

__all__ = ["Checkpoint", "CheckpointError", "MappingError", "Row", "WeightMap",
           "map_weights", "read_checkpoint"]

#: files of a Hugging Face model folder, in the order they are looked for
_FOLDER_FILES = ("model.safetensors.index.json", "model.safetensors",
                 "pytorch_model.bin.index.json", "pytorch_model.bin")
#: keys under which training checkpoints keep the state_dict
_WRAPPERS = ("state_dict", "model_state_dict", "model", "module", "net")


class CheckpointError(Exception):
    """A file that is not a checkpoint nnspec can read, with a one-line reason."""


class MappingError(ValueError):
    """The checkpoint does not map onto the spec; the message names the keys."""


# ---- reading ------------------------------------------------------------------------------


class Checkpoint:
    """A checkpoint's tensors by key, read lazily: ``keys`` (in the file's order),
    ``shapes``, ``dtypes``, ``aliases`` (a key that is another's storage -> that key) and
    :meth:`get`; ``ordered`` says whether the order means anything (torch files keep the
    module order, safetensors sorts its keys); ``reads`` lists the keys read so far."""

    def __init__(self, path: str, fmt: str, ordered: bool, shapes: dict, dtypes: dict,
                 getter, aliases: dict | None = None, note: str = ""):
        self.path, self.format, self.ordered, self.note = path, fmt, ordered, note
        self.keys = list(shapes)
        self.shapes, self.dtypes = shapes, dtypes
        self.aliases = aliases or {}
        self.reads: list[str] = []
        self._get = getter

    def get(self, key: str):
        """The tensor ``key`` (a torch.Tensor; a view of the file where the format allows)."""
        self.reads.append(key)
        return self._get(key)

    def describe(self) -> str:
        """The path, the format and the number of tensors."""
        extra = f", {self.note}" if self.note else ""
        return f"{self.path} ({self.format}, {len(self.keys)} tensors{extra})"


def read_checkpoint(path: str) -> Checkpoint:
    """The checkpoint at ``path``: a ``.safetensors`` file, a torch state_dict file (``.pt``,
    ``.pth``, ``.bin``; also one under a ``state_dict``/``model`` key) or a Hugging Face
    model folder. Raises CheckpointError for anything else."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return _read_folder(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file" if not os.path.exists(path)
                              else f"{path}: not a regular file")
    kind = _sniff(path)
    if kind == "safetensors":
        return _read_safetensors(path, [path])
    if kind == "torch":
        return _read_torch(path, [path])
    raise CheckpointError(f"{path}: not a checkpoint (neither a safetensors file nor a "
                          "torch.save file)")


def _sniff(path: str) -> str | None:
    with open(path, "rb") as f:
        head = f.read(9)
        size = os.fstat(f.fileno()).st_size
    if len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < size:
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch's zip file, or legacy pickle
        return "torch"
    return None


def _read_folder(path: str) -> Checkpoint:
    for name in _FOLDER_FILES:
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            continue
        if not name.endswith(".index.json"):
            return read_checkpoint(file)
        try:
            with open(file, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{file}: not a checkpoint index ({e})") from None
        for s in shards:
            if not isinstance(s, str) or os.path.basename(s) != s or s in (".", ".."):
                raise CheckpointError(f"{file}: the shard {s!r} is not a file name in "
                                      "the folder")
        files = [os.path.join(path, s) for s in shards]
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise CheckpointError(f"{file}: its shard {missing[0]} is missing")
        reader = _read_safetensors if name.startswith("model.") else _read_torch
        return reader(path, files)
    raise CheckpointError(f"{path}: a folder with no checkpoint in it (looked for "
                          f"{', '.join(_FOLDER_FILES)})")


def _read_safetensors(path: str, files: list[str]) -> Checkpoint:
    from safetensors import safe_open

    shapes, dtypes, owner = {}, {}, {}
    for file in files:
        try:
            f = safe_open(file, framework="pt", device="cpu")
            for k in f.keys():
                sl = f.get_slice(k)
                shapes[k], dtypes[k], owner[k] = tuple(sl.get_shape()), sl.get_dtype(), f
        except Exception as e:  # safetensors raises its own error type for a bad header
            raise CheckpointError(f"{file}: not a readable safetensors file "
                                  f"({_first_line(e)})") from None
    return Checkpoint(path, "safetensors", False, shapes, dtypes,
                      lambda k: owner[k].get_tensor(k))


def _read_torch(path: str, files: list[str]) -> Checkpoint:
    import pickle

    import torch

    state, note = {}, ""
    for file in files:
        try:
            try:
                obj = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap" not in str(e):
                    raise
                obj = torch.load(file, map_location="cpu", weights_only=True)  # legacy format
        except pickle.UnpicklingError as e:
            raise CheckpointError(
                f"{file}: holds more than tensors, which torch.load(weights_only=True) refuses "
                f"({_first_line(e)}); nothing in it was run: save the model's state_dict() "
                "instead") from None
        except Exception as e:
            raise CheckpointError(f"{file}: not a torch checkpoint ({_first_line(e)})") from None
        part, wrapper = _state_dict(obj, file)
        note = f"the state_dict under {wrapper!r}" if wrapper else note
        state.update(part)
    aliases, seen = {}, {}
    for k, t in state.items():
        sig = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
               tuple(t.stride()), t.dtype)
        if t.numel() and sig in seen:
            aliases[k] = seen[sig]
        seen.setdefault(sig, k)
    return Checkpoint(path, "torch", True, {k: tuple(t.shape) for k, t in state.items()},
                      {k: str(t.dtype).removeprefix("torch.") for k, t in state.items()},
                      state.__getitem__, aliases, note)


def _state_dict(obj, file: str) -> tuple[dict, str]:
    import torch

    def tensors(d) -> bool:
        return (isinstance(d, dict) and bool(d) and all(isinstance(k, str) for k in d)
                and all(isinstance(v, torch.Tensor) for v in d.values()))

    if tensors(obj):
        return obj, ""
    if isinstance(obj, dict):
        for w in _WRAPPERS:
            if tensors(obj.get(w)):
                return obj[w], w
    what = (f"a dict of {len(obj)} entries, not all tensors" if isinstance(obj, dict)
            else f"a {type(obj).__name__}")
    raise CheckpointError(f"{file}: not a state_dict ({what})")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


# ---- the map ------------------------------------------------------------------------------


class WeightMap:
    """How a checkpoint's tensors fill a spec model's state_dict: :attr:`rows` (one per spec
    entry and per checkpoint tensor left out), :attr:`ok`, :meth:`problems`,
    :meth:`table`; :meth:`state_dict` for ``build_module(spec, params=...)``,
    :meth:`arrays` for ``NumpyModel``, :meth:`save` for a renamed checkpoint."""

    def __init__(self, model: str, shapes: dict[str, W], checkpoint: Checkpoint,
                 rows: list[Row]):
        self.model, self.shapes, self.checkpoint, self.rows = model, shapes, checkpoint, rows

    @property
    def ok(self) -> bool:
        return not any(r.problem for r in self.rows)

    def problems(self) -> list[str]:
        """One line per problem, naming the spec key and the checkpoint's."""
        out = []
        for r in self.rows:
            if r.how == "mismatch":
                layout = " (read as HF Conv1D [in, out])" if "Conv1D" in r.note else ""
                out.append(f"{r.spec}: the spec's shape is {shape_text(r.shape)} but the "
                           f"checkpoint's {r.checkpoint} is {shape_text(r.checkpoint_shape)}"
                           + layout)
            elif r.how == "missing":
                out.append(f"{r.spec} {shape_text(r.shape)}: {r.note}")
            elif r.how == "ambiguous":
                out.append(f"{r.spec} {shape_text(r.shape)}: ambiguous: {r.note}")
        return out

    def counts(self) -> dict[str, int]:
        """How many rows of each ``how``."""
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.how] = out.get(r.how, 0) + 1
        return out

    def summary(self) -> str:
        """One line: the keys filled and how, the tensors left out, the problems."""
        c = self.counts()
        loaded = c.get("name", 0) + c.get("structure", 0) + c.get("transposed", 0)
        parts = [f"{c.get('name', 0)} by name", f"{c.get('structure', 0)} by structure",
                 f"{c.get('transposed', 0)} transposed"]
        tail = [f"{c[k]} {k}" for k in ("tied", "default") if c.get(k)]
        left = c.get("ignored", 0) + c.get("duplicate", 0)
        probs = len(self.problems())
        return (f"{self.model}: {loaded} of {len(self.shapes)} keys from the checkpoint "
                f"({', '.join(parts)})" + "".join(f", {t}" for t in tail)
                + f"; {left} checkpoint tensor{'s' * (left != 1)} left out; "
                + (f"{probs} problem{'s' * (probs != 1)}" if probs else "no problems"))

    def table(self) -> str:
        """The map as a table: spec key, its shape, the checkpoint key (and its shape where
        it differs), how; then a summary line."""
        body = [("spec key", "shape", "checkpoint key", "how")]
        for r in self.rows:
            ck = r.checkpoint or "-"
            if r.checkpoint_shape is not None:
                ck += " " + shape_text(r.checkpoint_shape)
            how = r.how if not r.note else f"{r.how}: {r.note}"
            if r.problem:
                how = "ERROR " + how
            body.append((r.spec or "-", shape_text(r.shape) if r.shape is not None else "-", ck,
                         how))
        widths = [max(len(row[c]) for row in body) for c in range(3)]
        lines = ["  ".join(x.ljust(wd) for x, wd in zip(row, widths + [0])).rstrip()
                 for row in body]
        lines.insert(0, f"{self.model} <- {self.checkpoint.describe()}")
        lines.append(self.summary())
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        def shape(s):
            return None if s is None else list(s)

        return {"version": 1, "model": self.model, "checkpoint": self.checkpoint.path,
                "format": self.checkpoint.format, "ok": self.ok,
                "rows": [{"spec": r.spec, "shape": shape(r.shape), "checkpoint": r.checkpoint,
                          "checkpoint_shape": shape(r.checkpoint_shape), "how": r.how,
                          "note": r.note} for r in self.rows],
                "problems": self.problems()}

    def _check(self) -> None:
        if not self.ok:
            probs = self.problems()
            more = f" (and {len(probs) - 3} more)" if len(probs) > 3 else ""
            raise MappingError("the checkpoint does not map onto the spec: "
                               + "; ".join(probs[:3]) + more)

    def state_dict(self) -> dict:
        """The spec's state_dict from the checkpoint (torch tensors, in the spec's order and
        the checkpoint's dtypes; views of the file where the format allows, transposed views
        for [in, out] layouts; a tied entry is its source's very tensor). Raises
        MappingError when the map has problems."""
        import torch

        self._check()
        out = {}
        for r in self.rows:
            if r.spec is None or r.how == "tied":
                continue
            w = self.shapes[r.spec]
            if r.how == "default":
                t = torch.zeros(r.shape, dtype=torch.int64)
            else:
                t = self.checkpoint.get(r.checkpoint)
                if r.how == "transposed":
                    t = t.t()
                if w.dtype == INT and t.dtype != torch.int64:
                    t = t.to(torch.int64)
            out[r.spec] = t
        return {k: out[w.tied] if w.tied else out[k] for k, w in self.shapes.items()}

    def arrays(self, dtype=None) -> dict:
        """:meth:`state_dict` as NumPy arrays (``dtype``, if given, for the float entries;
        bfloat16 becomes float32), for ``NumpyModel(spec, params=...)``."""
        import numpy as np
        import torch

        out: dict = {}
        done: dict[int, object] = {}
        for k, t in self.state_dict().items():
            if id(t) not in done:
                if t.dtype == torch.bfloat16:
                    t = t.float()
                a = t.detach().numpy()
                if dtype is not None and a.dtype.kind == "f":
                    a = a.astype(dtype, copy=False)
                done[id(t)] = np.asarray(a)
            out[k] = done[id(t)]
        return out

    def save(self, path: str) -> None:
        """Write the renamed checkpoint to ``path``: ``.safetensors`` (tied entries once,
        under their source's key, as safetensors stores shared tensors) or ``.pt``/``.pth``/
        ``.bin`` (torch.save, tied entries sharing one tensor), serialised in memory and
        written with ``write_atomic``: a failure leaves no file and any previous one
        untouched. Raises MappingError when the
        map has problems, OutputError for a path nnspec will not write."""
        ext = os.path.splitext(path)[1].lower()
        if ext not in (".safetensors", ".pt", ".pth", ".bin"):
            raise OutputError(f"cannot write {path}: a checkpoint is written as .safetensors "
                              "or .pt (.pth, .bin), and the name says which")
        self._check()
        sd = self.state_dict()
        if ext == ".safetensors":
            from safetensors.torch import save

            data = save({k: t.contiguous() for k, t in sd.items() if not self.shapes[k].tied},
                        metadata={"format": "pt"})
        else:
            import torch

            owned: dict[int, object] = {}
            for t in sd.values():
                if id(t) not in owned:
                    c = t.contiguous()
                    if c.untyped_storage().nbytes() != c.numel() * c.element_size():
                        c = c.clone()  # a view of a larger storage would save all of it
                    owned[id(t)] = c
            buf = io.BytesIO()
            torch.save({k: owned[id(t)] for k, t in sd.items()}, buf)
            data = buf.getvalue()
        write_atomic(path, data)


def map_weights(spec: Spec, checkpoint, model: str | None = None) -> WeightMap:
    """Match the checkpoint (a path, or a :class:`Checkpoint`) to ``model``'s state_dict
    keys (the spec's first model by default). Reads the checkpoint's keys and shapes, no
    tensor; raises CheckpointError for a file that is not a checkpoint."""
    spec.raise_for_errors()
    m = spec.model(model)
    shapes = spec.state_shapes(m.name)
    ck = checkpoint if isinstance(checkpoint, Checkpoint) else read_checkpoint(checkpoint)
    return WeightMap(m.name, shapes, ck, match(shapes, ck))
