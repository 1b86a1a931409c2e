"""The differential generator: random *valid* specs, checked against PyTorch.

A spec is a pure function of ``(seed, index)``. The generator tracks the concrete size of
every axis at the dims it will bind (N, T, S, H, W, L: 1..8), and whether the axis is
symbolic, so that each layer it adds is valid for PyTorch at those dims: it covers every
kind of ``nnspec.layers.REGISTRY``, blocks, repetition (``* n``), residuals, concat,
element-wise products, multi-value layers (``y, h = gru ... state``), attention with
``mask=``, ``causal`` and ``kv=``, positional encodings, and shape annotations.

For each spec, :func:`differential` reports:

- ``invalid``: ``check`` rejects it (a generator bug or a false error in nnspec; the
  message tells which);
- ``shape``: a layer's inferred shape, with the dims substituted, differs from the
  shape the torch module produces (or torch fails on a layer nnspec accepts);
- ``backend``: ``crosscheck`` at float64 says the NumPy and torch backends disagree;
- ``internal``: an exception from nnspec on the way.
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass, field

from nnspec.layers import REGISTRY

from .runner import CaseTimeout, Failure, innermost_frame, time_limit


@dataclass
class Ax:
    """One axis: its size at the bound dims, and the bare symbol it still is (or None)."""

    value: int
    sym: str | None = None
    const: bool = True

    def text(self) -> str:
        if self.const:
            return str(self.value)
        return self.sym or "_"


def _const(v: int) -> Ax:
    return Ax(v)


def _derived(v: int, symbolic: bool) -> Ax:
    return Ax(v, None, not symbolic)


@dataclass
class Val:
    shape: list[Ax]
    dtype: str = "float"

    @property
    def rank(self) -> int:
        return len(self.shape)

    def copy(self) -> "Val":
        return Val([Ax(a.value, a.sym, a.const) for a in self.shape], self.dtype)

    def annotation(self) -> str:
        return "[" + ", ".join(a.text() for a in self.shape) + "]"


@dataclass
class Generated:
    seed: int
    index: int
    text: str
    dims: dict[str, int]
    features: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"generated:{self.seed}:{self.index}"


def _out_size(n: int, k: int, s: int, pb: int, pa: int, d: int, ceil: bool = False) -> int:
    """PyTorch's output size, with its rule for ceil mode (a last window that would start
    in the right padding is dropped)."""
    eff = n + pb + pa - d * (k - 1) - 1
    if eff < 0:
        return 0
    if not ceil:
        return eff // s + 1
    out = -(-eff // s) + 1
    if (out - 1) * s >= n + pb:
        out -= 1
    return out


class _Gen:
    """Builds one spec: statements of a model body, extra inputs, blocks."""

    def __init__(self, rng: random.Random, dims: dict[str, int]):
        self.rng = rng
        self.dims = dims
        self.lines: list[str] = []
        self.blocks: list[str] = []
        self.extra_inputs: list[str] = []
        self.features: set[str] = set()
        self.n_names = 0
        self.after_multi = False  # the last statement named several values
        self.in_block = False  # a block body cannot see the model's inputs (kv=, mask=, h0=)

    def name(self) -> str:
        self.n_names += 1
        return f"v{self.n_names}"

    # ---- single layers ------------------------------------------------------------------
    # each returns (stage text, output) or None when it does not apply to the input

    def conv(self, x: Val, preserve: bool = False):
        if x.rank not in (3, 4, 5) or x.dtype != "float" or not x.shape[1].const:
            return None
        r = self.rng
        n = x.rank - 2
        cin = x.shape[1].value
        out = cin if preserve else r.randint(1, 6)
        groups = r.choice([g for g in (1, 1, 2, 3, cin) if cin % g == 0 and out % g == 0])
        square = n == 1 or r.random() < 0.5
        k = [r.randint(1, 4)] * n if square else [r.randint(1, 4) for _ in range(n)]
        ktext = str(k[0]) if square else "(" + ", ".join(map(str, k)) + ")"
        d = r.choice([1, 1, 2])
        s = 1 if preserve else r.choice([1, 1, 2, 3])
        form = "same" if preserve else r.choice(["int", "int", "same", "valid", "tuple", "sides"])
        if form == "same":
            s = 1
        if form == "int":
            p = r.randint(0, 2)
            pads = [(p, p)] * n
            ptext = str(p)
        elif form == "tuple":
            pp = [r.randint(0, 2) for _ in range(n)]
            pads = [(a, a) for a in pp]
            ptext = "(" + ", ".join(map(str, pp)) + ("," if n == 1 else "") + ")"
        elif form == "sides":
            pads = [(r.randint(0, 2), r.randint(0, 2)) for _ in range(n)]
            ptext = "(" + ", ".join(f"({a}, {b})" for a, b in pads) + ("," if n == 1 else "") \
                + ")"
        elif form == "valid":
            pads = [(0, 0)] * n
            ptext = "valid"
        else:
            pads = None
            ptext = "same"
        shape = [x.shape[0], _const(out)]
        for i in range(n):
            ax = x.shape[2 + i]
            if pads is None:
                shape.append(Ax(ax.value, ax.sym, ax.const))
                continue
            v = _out_size(ax.value, k[i], s, *pads[i], d)
            if v < 1:
                return None
            shape.append(_derived(v, not ax.const))
        kind = r.choice(["conv", f"conv{n}d"])
        words = [kind, str(out), f"k={ktext}"]
        if s != 1:
            words.append(f"s={s}")
        words.append(f"p={ptext}")
        if d != 1:
            words.append(f"d={d}")
        if groups != 1:
            words.append(f"groups={groups}")
        if r.random() < 0.2:
            words.append("bias=false")
        if r.random() < 0.1:  # weight_norm over a dim of the weight [out, in/groups, *k]
            words.append(f"weight_norm={r.randint(0, n + 1)}")
            self.features.add("weight_norm")
        elif r.random() < 0.2:
            words.append(f"init={r.choice(['xavier', 'kaiming', 'default'])}")
        self.features.add(kind)
        return " ".join(words), Val(shape)

    def convtranspose(self, x: Val, preserve: bool = False):
        if x.rank not in (3, 4, 5) or x.dtype != "float" or not x.shape[1].const or preserve:
            return None
        r = self.rng
        n = x.rank - 2
        cin = x.shape[1].value
        out = r.randint(1, 6)
        groups = r.choice([g for g in (1, 1, 2, cin) if cin % g == 0 and out % g == 0])
        k = [r.randint(1, 4) for _ in range(n)]
        s, d = r.choice([1, 1, 2, 3]), r.choice([1, 1, 2])
        pads = [(r.randint(0, 2), r.randint(0, 2)) for _ in range(n)]
        if r.random() < 0.5:
            pads = [(pads[0][0],) * 2] * n
        op = [r.randint(0, max(s, d) - 1) if r.random() < 0.4 else 0 for _ in range(n)]
        shape = [x.shape[0], _const(out)]
        for i in range(n):
            ax = x.shape[2 + i]
            v = (ax.value - 1) * s - sum(pads[i]) + d * (k[i] - 1) + op[i] + 1
            if not 1 <= v <= 24:
                return None
            shape.append(_derived(v, not ax.const))
        spelling = r.choice(["convtranspose", f"convtranspose{n}d", "deconv",
                             f"conv_transpose{n}d"])
        kind = "convtranspose" if spelling in ("convtranspose", "deconv") \
            else f"convtranspose{n}d"
        tup = lambda v: "(" + ", ".join(map(str, v)) + ("," if n == 1 else "") + ")"  # noqa
        words = [spelling, str(out), f"k={tup(k)}", f"s={s}", f"d={d}"]
        words.append(f"p={pads[0][0]}" if len(set(pads)) == 1 and pads[0][0] == pads[0][1]
                     else "p=(" + ", ".join(f"({a}, {b})" for a, b in pads)
                     + ("," if n == 1 else "") + ")")
        if all(a.const for a in shape[2:]) and r.random() < 0.5:
            words.append(f"size={tup([a.value for a in shape[2:]])}")
        elif any(op):
            words.append(f"output_padding={tup(op)}")
        if groups != 1:
            words.append(f"groups={groups}")
        if r.random() < 0.2:
            words.append("bias=false")
        self.features.add(kind)
        return " ".join(words), Val(shape)

    def upsample(self, x: Val, preserve: bool = False):
        if x.rank not in (3, 4, 5) or x.dtype != "float" or preserve:
            return None
        r = self.rng
        n = x.rank - 2
        modes = ["nearest", "nearest_exact", ("linear", "bilinear", "trilinear")[n - 1]]
        if n == 2:
            modes.append("bicubic")
        mode = r.choice(modes)
        kind = r.choice(["upsample", f"upsample{n}d"])
        spelling = r.choice([kind, "interpolate"]) if kind == "upsample" else kind
        shape = list(x.shape[:2])
        if r.random() < 0.6 or not all(a.const for a in x.shape[2:]):
            scale = r.randint(1, 3)
            shape += [_derived(a.value * scale, not a.const) for a in x.shape[2:]]
            words = [spelling, f"scale={scale}"]
        else:
            size = [r.randint(1, 9) for _ in range(n)]
            shape += [_const(v) for v in size]
            words = [spelling, "size=(" + ", ".join(map(str, size)) + ("," if n == 1 else "")
                     + ")"]
        if mode != "nearest" or r.random() < 0.3:
            words.append(f"mode={mode}")
        if mode not in ("nearest", "nearest_exact") and r.random() < 0.4:
            words.append("align_corners")
        self.features.add(kind)
        return " ".join(words), Val(shape)

    def pixel_shuffle(self, x: Val, preserve: bool = False):
        if x.rank != 4 or x.dtype != "float" or preserve or not x.shape[1].const:
            return None
        r = self.rng
        c, h, w = x.shape[1], x.shape[2], x.shape[3]
        f = r.choice([2, 3])
        if r.random() < 0.6:
            # sub-pixel upsampling as super-resolution nets write it: a conv to C*r^2 first
            c_out = c.value if c.value % (f * f) == 0 else f * f * r.randint(1, 2)
            head = "" if c_out == c.value else f"conv {c_out} k=1 | "
            self.features.add("pixel_shuffle")
            return f"{head}pixel_shuffle {f}", Val([x.shape[0], _const(c_out // (f * f)),
                                                    _derived(h.value * f, not h.const),
                                                    _derived(w.value * f, not w.const)])
        if h.const and w.const and h.value >= f and w.value >= f:
            # space-to-depth of a size the factor divides: crop to it first when needed
            sh, sw = h.value - h.value % f, w.value - w.value % f
            head = "" if (sh, sw) == (h.value, w.value) else f"crop [{sh}, {sw}] | "
            self.features.add("pixel_unshuffle")
            if head:
                self.features.add("crop")
            return f"{head}pixel_unshuffle {f}", Val([x.shape[0], _const(c.value * f * f),
                                                       _const(sh // f), _const(sw // f)])
        return None

    def adaptive(self, x: Val, preserve: bool = False):
        if x.rank not in (3, 4, 5) or x.dtype != "float" or preserve:
            return None
        r = self.rng
        n = x.rank - 2
        mode = r.choice(["avg", "max"])
        kind = r.choice([f"adaptive_{mode}pool", f"adaptive_{mode}pool{n}d"])
        spelling = kind.replace(f"adaptive_{mode}pool", r.choice(
            [f"adaptive_{mode}pool", f"adaptive_{mode}_pool", f"adaptive{mode}pool"]))
        sizes = [None if r.random() < 0.25 else r.randint(1, 6) for _ in range(n)]
        if all(s is None for s in sizes) or (r.random() < 0.3 and None not in sizes):
            sizes = [sizes[0] or r.randint(1, 6)] * n
            text = str(sizes[0])
        else:
            text = "(" + ", ".join(r.choice(["None", "_"]) if s is None else str(s)
                                   for s in sizes) + ("," if n == 1 else "") + ")"
        shape = list(x.shape[:2]) + [Ax(a.value, a.sym, a.const) if s is None else _const(s)
                                     for a, s in zip(x.shape[2:], sizes)]
        self.features.add(kind)
        return f"{spelling} {text}", Val(shape)

    def padcrop(self, x: Val, preserve: bool = False):
        if x.rank not in (3, 4, 5) or x.dtype != "float" or preserve:
            return None
        r = self.rng
        n = x.rank - 2
        if r.random() < 0.5:
            mode = r.choice(["constant", "reflect", "replicate", "circular"])
            most = {"reflect": -1, "circular": 0}.get(mode, 2)
            pads = [(r.randint(0, max(0, min(2, a.value + most))),
                     r.randint(0, max(0, min(2, a.value + most)))) for a in x.shape[2:]]
            text = "(" + ", ".join(f"({a}, {b})" for a, b in pads) + ("," if n == 1 else "") + ")"
            words = ["pad", text]
            if mode != "constant":
                words.append(r.choice([mode, f"mode={mode}"]))
            elif r.random() < 0.3:
                words.append("value=0.5")
            self.features.add("pad")
            return " ".join(words), Val(list(x.shape[:2]) + [
                _derived(a.value + pb + pa, not a.const) for a, (pb, pa) in zip(x.shape[2:], pads)])
        # centre crop: a concrete axis to a size it holds, a symbolic one kept (_)
        sizes = [r.randint(1, a.value) if a.const else None for a in x.shape[2:]]
        text = "[" + ", ".join("_" if s is None else str(s) for s in sizes) + "]"
        self.features.add("crop")
        return f"crop {text}", Val(list(x.shape[:2]) + [
            Ax(a.value, a.sym, a.const) if s is None else _const(s)
            for a, s in zip(x.shape[2:], sizes)])

    def crop_skip(self, cur: Val, cur_name: str | None):
        """A U-Net skip: a padded copy cropped back to the value's size (crop_like)."""
        if cur.rank not in (3, 4, 5) or cur.dtype != "float":
            return None
        r = self.rng
        a = self._named(cur_name)
        pads = [(r.randint(0, 3), r.randint(0, 3)) for _ in range(cur.rank - 2)]
        b = self.name()
        self.lines.append(f"{b} = {a} | pad (" + ", ".join(f"({x}, {y})" for x, y in pads)
                          + ("," if len(pads) == 1 else "") + ")")
        out = self.name()
        self.lines.append(f"{out} = crop_like({b}, {a})")
        self.features |= {"pad", "crop_like"}
        return cur.copy(), out

    def pool(self, x: Val, preserve: bool = False):
        if x.rank not in (3, 4, 5) or x.dtype != "float" or preserve:
            return None
        r = self.rng
        n = x.rank - 2
        mode = r.choice(["max", "avg"])
        # volumes are rarer inputs: their own kinds get more of them
        kind = r.choice([f"{mode}pool", f"{mode}pool{n}d"] + [f"{mode}pool3d"] * (n == 3))
        self.features.add(kind)
        if r.random() < 0.12:
            return f"{kind} global", Val(x.shape[:2] + [_const(1) for _ in range(n)])
        k = r.randint(1, 3)
        s = r.choice([None, 1, 2, 3])
        stride = s if s is not None else k
        # within PyTorch's rule (p <= k // 2), or what it refuses (lowered with F.pad):
        # asymmetric, more than half the kernel, or same (stride 1). Pads stay below the
        # window's extent ke: a window wholly in the padding (-inf, or 0) is tested in
        # tests/test_pool3d_padding.py, and downstream it only turns a spec into NaNs
        d = r.choice([1, 1, 2])
        ke = d * (k - 1) + 1
        form = r.choice(["int", "int", "sides", "large", "same"])
        if form == "large" and ke - 1 < k // 2 + 1:
            form = "sides"
        if form == "same":  # the extra pad of an even window goes after, as for conv
            s = stride = 1
            pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)] * n
            ptext = "same"
        elif form == "int":
            p = r.randint(0, k // 2)
            pads = [(p, p)] * n
            ptext = str(p) if p else ""
        elif form == "large":
            p = r.randint(k // 2 + 1, ke - 1)
            pads = [(p, p)] * n
            ptext = str(p)
        else:
            pads = [(r.randint(0, ke - 1), r.randint(0, ke - 1)) for _ in range(n)]
            ptext = "(" + ", ".join(f"({a}, {b})" for a, b in pads) + ("," if n == 1 else "") \
                + ")"
        ceil = r.random() < 0.4
        shape = list(x.shape[:2])
        for i in range(n):
            ax = x.shape[2 + i]
            v = _out_size(ax.value, k, stride, *pads[i], d, ceil)
            if v < 1:
                return None
            shape.append(_derived(v, not ax.const))
        words = [kind, str(k) if r.random() < 0.5 else f"k={k}"]
        if s is not None:
            words.append(f"s={s}")
        if ptext:
            words.append(f"p={ptext}")
            self.features.add(f"pool-{form}")
        if d != 1:
            words.append(f"d={d}")
            self.features.add(f"{mode}pool-dilated")
        if ceil:
            words.append("ceil")
            self.features.add("ceil")
        if mode == "avg" and r.random() < 0.4:
            words.append("count_include_pad=false")
        return " ".join(words), Val(shape)

    def batchnorm(self, x: Val, preserve: bool = False):
        if x.rank not in (2, 3, 4, 5) or x.dtype != "float" or not x.shape[1].const:
            return None
        r = self.rng
        kind = r.choice(["batchnorm", {4: "batchnorm2d", 5: "batchnorm3d"}.get(x.rank,
                                                                               "batchnorm1d")])
        words = [kind]
        if r.random() < 0.3:
            words.append("eps=0.001")
        if r.random() < 0.2:
            words.append("momentum=0.2")
        if r.random() < 0.2:
            words.append("affine=false")
        others = 1
        for i, a in enumerate(x.shape):
            if i != 1:
                others *= a.value
        if r.random() < 0.2 and others > 1:  # batch statistics even in eval mode
            words.append("track=false")
        self.features.add(kind)
        return " ".join(words), x.copy()

    def layernorm(self, x: Val, preserve: bool = False):
        if x.dtype != "float" or x.rank < 2:
            return None
        r = self.rng
        axes = r.choice([1, 1, 2])
        if axes > x.rank - 1 or not all(a.const for a in x.shape[-axes:]):
            axes = 1
            if not x.shape[-1].const:
                return None
        kind = r.choice(["layernorm", "layernorm", "rmsnorm"])
        words = [kind] + ([str(axes)] if axes != 1 or r.random() < 0.3 else [])
        if kind == "layernorm" and x.rank >= 3 and x.shape[1].const and r.random() < 0.3:
            words = [kind, r.choice(["dim=1", "dim=(1,)", f"dim={1 - x.rank}"])]
        # x / sqrt(x² + eps) of one value multiplies rounding by 1/sqrt(eps) near 0 (with
        # torch's default eps, machine epsilon, by 1e8): no test of two backends
        one = kind == "rmsnorm" and all(a.value == 1 for a in x.shape[-axes:])
        if r.random() < 0.2 or one:
            words.append("eps=0.01" if one else "eps=1e-6")
        if r.random() < 0.2:
            words.append(r.choice(["affine=false", "bias=false" if kind == "layernorm"
                                   else "affine=false"]))
        self.features.add(kind)
        return " ".join(words), x.copy()

    def groupnorm(self, x: Val, preserve: bool = False):
        """groupnorm (a divisor of the channels) or instancenorm (rank 3 to 5, more than
        one position per channel)."""
        if x.rank < 2 or x.dtype != "float" or not x.shape[1].const:
            return None
        r = self.rng
        c = x.shape[1].value
        space = 1  # the run's sizes: torch refuses instance statistics of one position
        for a in x.shape[2:]:
            space *= a.value
        if r.random() < 0.5 or x.rank > 5 or x.rank < 3 or space < 2:
            kind = "groupnorm"  # more than one value per group
            groups = [d for d in range(1, c + 1) if c % d == 0 and c // d * space > 1]
            if not groups:
                return None
            words = [kind, str(r.choice(groups))]
            if r.random() < 0.2:
                words.append("affine=false")
        else:
            kind = r.choice(["instancenorm", f"instancenorm{x.rank - 2}d"])
            words = [kind]
            if r.random() < 0.4:
                words.append("affine")
            if r.random() < 0.3:
                words.append("track")
                if r.random() < 0.5:
                    words.append("momentum=0.2")
        if r.random() < 0.2:
            words.append("eps=0.001")
        self.features.add(kind)
        return " ".join(words), x.copy()

    def dropout(self, x: Val, preserve: bool = False):
        if x.dtype != "float":
            return None
        if x.rank >= 1 and self.rng.random() < 0.3:  # stochastic depth: whole examples
            self.features.add("drop_path")
            kind = self.rng.choice(["drop_path", "drop_path", "stochastic_depth"])
            return f"{kind} {self.rng.choice(['0.1', '0.5', '0'])}", x.copy()
        self.features.add("dropout")
        return f"dropout {self.rng.choice(['0.1', '0.5', '0'])}", x.copy()

    def activation(self, x: Val, preserve: bool = False):
        if x.dtype != "float":
            return None
        r = self.rng
        kind = r.choice(["relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid", "softmax",
                         "log_softmax", "identity", "silu", "relu6", "hardtanh", "hardswish",
                         "hardsigmoid", "clamp", "prelu", "mish", "softplus"])
        self.features.add(kind)
        text = kind
        if kind == "hardtanh" and r.random() < 0.6:
            text += f" {r.choice(['-2', '-0.5'])} {r.choice(['0.5', '3'])}"
        elif kind == "clamp":
            text += r.choice([" 0 6", " min=-0.5", " max=0.5", " -1 1"])
        elif kind == "prelu" and x.rank >= 2 and x.shape[1].const and r.random() < 0.5:
            text += f" {x.shape[1].value}"
        elif kind == "softplus" and r.random() < 0.5:
            text += r.choice([" 2", " beta=0.5 threshold=5", " threshold=1"])
        if kind == "leaky_relu" and r.random() < 0.6:
            text += f" {r.choice(['0.1', '0.2', '1.5'])}"
        elif kind == "elu" and r.random() < 0.6:
            text += f" {r.choice(['0.5', '2.0'])}"
        elif kind == "gelu" and r.random() < 0.4:
            text += " approximate=tanh"
        elif kind in ("softmax", "log_softmax") and r.random() < 0.7:
            text += f" {r.randint(-x.rank, x.rank - 1)}"
        return text, x.copy()

    def dense(self, x: Val, preserve: bool = False):
        if x.rank not in (2, 3) or x.dtype != "float" or not x.shape[-1].const:
            return None
        r = self.rng
        out = x.shape[-1].value if preserve else r.randint(1, 8)
        kind = r.choice(["dense", "dense", "linear"])
        words = [kind, str(out)]
        if r.random() < 0.2:
            words.append("bias=false")
        if r.random() < 0.1:
            words.append(f"weight_norm={r.randint(0, 1)}")
            self.features.add("weight_norm")
        elif r.random() < 0.1:  # the weight stored [in, out] (HF's Conv1D)
            words.append("layout=in_out")
            self.features.add("dense_in_out")
        elif r.random() < 0.2:
            words.append(f"init={r.choice(['xavier', 'kaiming'])}")
        self.features.add(kind)
        return " ".join(words), Val(x.shape[:-1] + [_const(out)])

    def flatten(self, x: Val, preserve: bool = False):
        if x.rank < 3 or preserve:
            return None
        r = self.rng
        if r.random() < 0.5:
            start, end, text = 1, x.rank - 1, "flatten"
        else:
            start = r.randint(1, x.rank - 2)
            end = r.randint(start, x.rank - 1)
            text = f"flatten start={start} end={r.choice([end, end - x.rank])}"
        merged = x.shape[start:end + 1]
        v = 1
        for a in merged:
            v *= a.value
        ax = _derived(v, not all(a.const for a in merged))
        self.features.add("flatten")
        return text, Val(x.shape[:start] + [ax] + x.shape[end + 1:], x.dtype)

    def unflatten(self, x: Val, preserve: bool = False):
        """One constant axis split in two (ShuffleNet's channel shuffle), one size -1."""
        axes = [i for i in range(1, x.rank) if x.shape[i].const and x.shape[i].value % 2 == 0]
        if preserve or not axes:
            return None
        r = self.rng
        i = r.choice(axes)
        a, b = 2, x.shape[i].value // 2
        sizes = r.choice([f"({a}, -1)", f"(-1, {b})", f"({a}, {b})"])
        dim = r.choice([i, i - x.rank])
        self.features.add("unflatten")
        return f"unflatten {dim} {sizes}", Val(x.shape[:i] + [_const(a), _const(b)] +
                                                x.shape[i + 1:], x.dtype)

    def reshape(self, x: Val, preserve: bool = False):
        if x.rank < 2 or preserve or x.shape[0].sym != "N":
            return None
        rest = x.shape[1:]
        total = 1
        for a in rest:
            total *= a.value
        if all(a.const for a in rest):
            divs = [a for a in range(1, total + 1) if total % a == 0]
            a = self.rng.choice(divs)
            if self.rng.random() < 0.5:
                text, shape = f"reshape [N, {a}, -1]", [x.shape[0], _const(a), _const(total // a)]
            else:
                text, shape = f"reshape [N, {a}, {total // a}]", \
                    [x.shape[0], _const(a), _const(total // a)]
        else:
            text, shape = "reshape [N, -1]", [x.shape[0], _derived(total, True)]
        self.features.add("reshape")
        return text, Val(shape, x.dtype)

    def last(self, x: Val, preserve: bool = False):
        if x.rank != 3 or preserve:
            return None
        self.features.add("last")
        return "last", Val([x.shape[0]] + x.shape[2:], x.dtype)

    def recurrent(self, x: Val, preserve: bool = False, multi: bool = False):
        if x.rank != 3 or x.dtype != "float" or not x.shape[2].const:
            return None
        r = self.rng
        kind = r.choice(["rnn", "gru", "lstm", "simple_rnn"])
        dirs = 2 if r.random() < 0.3 else 1
        layers = r.choice([1, 1, 2])
        hidden = x.shape[2].value // dirs if preserve else r.randint(1, 5)
        if hidden < 1 or hidden * dirs != x.shape[2].value and preserve:
            return None
        words = [kind, str(hidden)]
        if layers > 1:
            words.append(f"layers={layers}")
            if r.random() < 0.3:
                words.append("dropout=0.5")
        if dirs == 2:
            words.append("bidirectional")
        if r.random() < 0.2:
            words.append("bias=false")
        if kind in ("rnn", "simple_rnn") and r.random() < 0.3:
            words.append("nonlinearity=relu")
        if kind == "gru" and r.random() < 0.4:
            words.append(f"reset={r.choice(['before', 'after'])}")
        size = {"h0": hidden, "c0": hidden}  # of the states; h0's is the output's
        if kind == "lstm" and not preserve and hidden > 1 and r.random() < 0.3:
            size["h0"] = r.randint(1, hidden - 1)
            words.append(f"proj_size={size['h0']}")
            self.features.add("proj_size")
        free = not self.in_block and x.shape[0].sym == "N"  # may take the model's inputs
        if not preserve and free and r.random() < 0.3:
            names = ["h0"] + (["c0"] if kind == "lstm" else [])
            self.n_names += 1
            for nm in names:
                inp = f"{nm}_{self.n_names}"
                self.extra_inputs.append(f"{inp}: [{layers * dirs}, N, {size[nm]}]")
                words.append(f"{nm}={inp}")
            self.features.add("h0")
        if free and r.random() < 0.25:
            self.n_names += 1
            self.extra_inputs.append(f"len_{self.n_names}: [N] int")
            words.append(f"lengths=len_{self.n_names}")
            self.features.add("lengths")
        out = Val([x.shape[0], x.shape[1], _const(size["h0"] * dirs)])
        self.features.add({"simple_rnn": "rnn"}.get(kind, kind))
        if multi:
            words.append("state")
            self.features.add("state")
            n_states = 2 if kind == "lstm" else 1
            states = [Val([_const(layers * dirs), x.shape[0], _const(size[nm])])
                      for nm in ("h0", "c0")[:n_states]]
            return " ".join(words), out, states
        return " ".join(words), out

    def attention(self, x: Val, preserve: bool = False):
        if x.rank != 3 or x.dtype != "float" or not x.shape[2].const or x.shape[0].sym != "N":
            return None
        r = self.rng
        e = x.shape[2].value
        heads = r.choice([h for h in range(1, e + 1) if e % h == 0])
        kind = r.choice(["attention", "attention", "mha"])
        words = [kind, r.choice([str(heads), f"heads={heads}"])]
        t = x.shape[1]
        if t.const or t.sym:
            tdim = t.text()
        else:
            tdim = None
        keys = None if self.in_block else tdim
        if not self.in_block and r.random() < 0.3:
            s = r.choice(["S", str(r.randint(1, 5))])
            mem = f"mem{self.n_names}"
            self.extra_inputs.append(f"{mem}: [N, {s}, {e}]")
            words.append(f"kv={mem}")
            keys = s
            self.features.add("kv")
            if r.random() < 0.3:  # S != T: causal aligned bottom-right
                words.append("causal")
                self.features.add("causal-bottom-right")
        elif r.random() < 0.4:
            words.append("causal")
            self.features.add("causal")
        if keys is not None and r.random() < 0.35:
            m = f"pad{self.n_names}"
            self.extra_inputs.append(f"{m}: [N, {keys}] int")
            words.append(f"mask={m}")
            self.features.add("mask")
        if keys is not None and tdim is not None and r.random() < 0.25:
            # attn_mask: int (nonzero = attend) or float (added), [T, S] / [N, T, S] /
            # [N, heads, T, S]
            lead = r.choice(["", "N, ", f"N, {heads}, ", "N, 1, "])
            am = f"am{self.n_names}"
            dtype = r.choice(["", " int"])
            self.extra_inputs.append(f"{am}: [{lead}{tdim}, {keys}]{dtype}")
            words.append(f"attn_mask={am}")
            self.features.add("attn_mask")
        if r.random() < 0.25:  # separate projections, grouped-query when kv_heads < heads
            words.append("qkv=separate")
            kvh = r.choice([k for k in range(1, heads + 1) if heads % k == 0])
            if kvh != heads:
                words.append(f"kv_heads={kvh}")
                self.features.add("kv_heads")
            self.features.add("qkv-separate")
        if r.random() < 0.1:
            words.append(r.choice(["scale=0.5", "scale=0.125"]))
        if (e // heads) % 2 == 0 and r.random() < 0.2:
            words += ["rope"] + r.choice([[], ["rope_layout=interleaved"], ["rope_theta=100.0"]])
            self.features.add("rope-in-attention")
        if r.random() < 0.15:  # Gemma 2's logit soft-capping, Mistral's sliding window
            words.append(r.choice(["softcap=50.0", "softcap=0.5", "attn_logit_softcapping=2.0"]))
            self.features.add("softcap")
        if r.random() < 0.15:
            words.append(f"{r.choice(['window', 'sliding_window'])}={r.randint(1, 4)}")
            self.features.add("window")
        if r.random() < 0.2:
            words.append("dropout=0.1")
        if r.random() < 0.2:
            words.append("bias=false")
        self.n_names += 1
        self.features.add("attention")
        return " ".join(words), x.copy()

    def positional(self, x: Val, preserve: bool = False):
        if x.rank != 3 or x.dtype != "float" or not x.shape[2].const:
            return None
        r = self.rng
        kind = r.choice(["positional", "positional", "positional_encoding"])
        words = [kind]
        if r.random() < 0.4:
            words += ["learned", f"max_len={x.shape[1].value + r.randint(0, 3)}"]
        elif r.random() < 0.2:
            words.append(f"max_len={x.shape[1].value + r.randint(0, 3)}")
        if r.random() < 0.4:
            words.append("scale")
        self.features.add("positional")
        return " ".join(words), x.copy()

    def tensorop(self, x: Val, preserve: bool = False):
        """transpose / permute of the axes after the batch, or a reduction over some of
        them (mean, sum, amax, amin; keepdim or not), keeping the batch and one axis."""
        if x.rank < 3 or x.dtype != "float":
            return None
        r = self.rng
        kind = r.choice(["transpose", "permute", "roll", "mean", "sum", "amax", "amin"])
        if kind == "roll":  # along some axes, or over the flattened tensor
            self.features.add("roll")
            if r.random() < 0.2:
                return f"roll {r.randint(-7, 7)}", x.copy()
            axes = r.sample(range(-x.rank, x.rank), r.randint(1, 2))
            if len({a % x.rank for a in axes}) < len(axes):
                axes = axes[:1]
            shifts = [r.randint(-5, 5) for _ in axes]
            if len(axes) == 1 and r.random() < 0.5:
                return f"roll {shifts[0]} dims={axes[0]}", x.copy()
            return (f"roll ({', '.join(map(str, shifts))}) "
                    f"{r.choice(['dims', 'dim'])}=({', '.join(map(str, axes))})"), x.copy()
        if kind == "transpose":
            a, b = r.sample(range(1, x.rank), 2)
            shape = x.copy().shape
            shape[a], shape[b] = shape[b], shape[a]
            a, b = (v - x.rank if r.random() < 0.3 else v for v in (a, b))
            self.features.add("transpose")
            return f"{r.choice(['transpose', 'swapaxes'])} {a} {b}", Val(shape)
        if kind == "permute":
            rest = list(range(1, x.rank))
            r.shuffle(rest)
            order = [0] + rest
            self.features.add("permute")
            return (f"permute ({', '.join(map(str, order))})",
                    Val([x.copy().shape[i] for i in order]))
        if preserve:
            return None
        axes = sorted(r.sample(range(1, x.rank), r.randint(1, x.rank - 2)))
        keep = r.random() < 0.5
        shape = [(_const(1) if keep else None) if i in axes else a
                 for i, a in enumerate(x.copy().shape)]
        words = [r.choice([kind, {"amax": "max", "amin": "min"}.get(kind, kind)])]
        shown = [a - x.rank if r.random() < 0.3 else a for a in axes]
        words.append(str(shown[0]) if len(shown) == 1 and r.random() < 0.5
                     else "dim=(" + ", ".join(map(str, shown)) + ("," if len(shown) == 1
                                                                   else "") + ")")
        if keep:
            words.append(r.choice(["keepdim", "keepdim=true"]))
        self.features.add(kind)
        return " ".join(words), Val([a for a in shape if a is not None])

    def matmul_self(self, cur: Val, cur_name: str | None):
        """A Gram matrix: the value times its transpose over the last two axes."""
        if cur.rank < 3 or cur.dtype != "float":
            return None
        a = self._named(cur_name)
        t = self.name()
        self.lines.append(f"{t} = {a} | transpose -2 -1")
        out = self.name()
        self.lines.append(f"{out} = {self.rng.choice(['matmul', 'bmm'])}({a}, {t})")
        self.features |= {"transpose", "matmul"}
        shape = cur.copy().shape
        return Val(shape[:-1] + [Ax(shape[-2].value, shape[-2].sym, shape[-2].const)]), out

    def rope(self, x: Val, preserve: bool = False):
        """Rotary position embeddings: an even number of the last (concrete) axis's
        features rotated along an axis before it."""
        if x.rank < 2 or x.dtype != "float" or not x.shape[-1].const or x.shape[-1].value < 2:
            return None
        r = self.rng
        d = x.shape[-1].value
        words = [r.choice(["rope", "rope", "rotary"])]
        if d % 2 or r.random() < 0.2:
            words.append(f"{r.choice(['dim', 'rotary_dim'])}={2 * r.randint(1, d // 2)}")
        if r.random() < 0.3:
            a = r.randrange(x.rank - 1)
            words.append(f"axis={a - x.rank if r.random() < 0.5 else a}")
        if r.random() < 0.3:
            words.append(r.choice(["layout=interleaved", "layout=half"]))
        if r.random() < 0.2:
            words.append(r.choice(["theta=100.0", "base=500000", "offset=3"]))
        self.features.add("rope")
        return " ".join(words), x.copy()

    def sdpa_self(self, cur: Val, cur_name: str | None):
        """Self-attention of the value over its last two axes: sdpa(a, a, a), with a
        causal mask, a scale, soft-capping, a sliding window, dropout or a [1, T] mask input
        (int or float)."""
        if cur.rank < 2 or cur.dtype != "float":
            return None
        r = self.rng
        a = self._named(cur_name)
        args = [a, a, a]
        if r.random() < 0.4:
            args.append("causal")
        if r.random() < 0.2:
            args.append(r.choice(["scale=0.5", "scale=2.0"]))
        if r.random() < 0.15:
            args.append(r.choice(["softcap=20.0", "softcap=0.5"]))
            self.features.add("softcap")
        if r.random() < 0.15:
            args.append(f"window={r.randint(1, 3)}")
            self.features.add("window")
        if r.random() < 0.2:
            args.append("dropout=0.1")
        out = self.name()
        t = cur.shape[-2]
        if not self.in_block and (t.const or t.sym) and r.random() < 0.3:
            m = f"sm{self.n_names}"
            self.extra_inputs.append(f"{m}: [1, {t.text()}]{r.choice(['', ' int'])}")
            args.append(f"mask={m}")
        kind = r.choice(["sdpa", "sdpa", "scaled_dot_product_attention"])
        self.lines.append(f"{out} = {kind}({', '.join(args)})")
        self.features.add("sdpa")
        return cur.copy(), out

    # ---- capsules (nnspec/layers/capsule.py) ----
    def capsules(self, x: Val, preserve: bool = False):
        """squash over an axis, or on [N, caps, dim] with concrete caps and dim: a capsule
        layer with routing, the capsule lengths or the mask (by the longest capsule)."""
        if x.dtype != "float" or x.rank < 1:
            return None
        r = self.rng
        caps = x.rank == 3 and x.shape[1].const and x.shape[2].const
        kind = "squash" if preserve or not caps else r.choice(
            ["squash", "capsule", "capsule", "capsule_length", "capsule_mask"])
        if kind == "squash":
            words = ["squash"]
            if r.random() < 0.3:
                words.append(f"dim={r.randrange(-x.rank, x.rank)}")
            if r.random() < 0.2:
                words.append("eps=0.001")
            self.features.add("squash")
            return " ".join(words), x.copy()
        n = x.copy().shape[0]
        self.features.add(kind)
        if kind == "capsule":
            oc, od = r.randint(1, 4), r.randint(1, 5)
            words = [r.choice(["capsule", "digitcaps"]), str(oc), str(od)]
            if r.random() < 0.6:
                words.append(f"{r.choice(['r', 'routings'])}={r.randint(1, 4)}")
            return " ".join(words), Val([n, _const(oc), _const(od)])
        if kind == "capsule_length":
            return r.choice(["capsule_length", "length"]), Val(x.copy().shape[:-1])
        return "capsule_mask", Val([n, _const(x.shape[1].value * x.shape[2].value)])

    # ---- stochastic layers and RBMs (nnspec/layers/stochastic.py, rbm.py) ----
    def stochastic(self, x: Val, preserve: bool = False):
        """bernoulli or gaussian_noise on any float tensor; an rbm on a concrete last dim
        (its up-pass, Gibbs reconstruction or free energy). ``sample=always`` samples in
        eval mode too: crosscheck hands both backends the same noise."""
        if x.dtype != "float" or x.rank < 1:
            return None
        r = self.rng
        vis = x.shape[-1].const and x.rank >= 2
        kind = r.choice(["bernoulli", "gaussian_noise"] + (["rbm", "rbm"] if vis else []))
        mode = [f"sample={r.choice(['always', 'never', 'train'])}"] if r.random() < 0.4 else []
        self.features.add(kind)
        if kind == "bernoulli":
            return " ".join(["bernoulli"] + mode), x.copy()
        if kind == "gaussian_noise":
            return " ".join(["gaussian_noise", r.choice(["0.1", "1.0", "std=0.5"])] + mode), \
                x.copy()
        output = "visible" if preserve else r.choice(["hidden", "hidden", "visible",
                                                      "free_energy"])
        words = ["rbm", str(r.randint(1, 6))]
        if output != "hidden" or r.random() < 0.3:
            words.append(f"output={output}")
        if output == "visible" and r.random() < 0.6:
            words.append(f"k={r.randint(1, 3)}")
            if r.random() < 0.4:
                words.append("sample_visible")
        if output != "free_energy":
            words += mode
        if output == "hidden":
            return " ".join(words), Val(x.copy().shape[:-1] + [_const(int(words[1]))])
        if output == "visible":
            return " ".join(words), x.copy()
        return " ".join(words), Val(x.copy().shape[:-1])

    def learned(self, cur: Val, cur_name: str | None):
        """``g = param [...]`` joined to the value: a layer scale over the last axis
        ``(x * g)``, a broadcast bias ``x + g``, or a class token expanded to the batch and
        concatenated on axis 1 (``concat(expand(g, [N, -1, ...]), x, dim=1)``)."""
        if cur.dtype != "float" or cur.rank < 2 or not cur.shape[-1].const:
            return None
        r = self.rng
        a = self._named(cur_name)
        g, out = self.name(), self.name()
        init = r.choice(["", " init=normal(0, 0.02)", " init=ones", " init=constant(0.1)",
                         " init=trunc_normal(0, 0.02)", " init=xavier"])
        rest = cur.shape[2:]
        token = cur.shape[0].text() != "_" and all(ax.const for ax in rest)
        form = r.randrange(3 if token else 2)
        if form == 0:
            shape = [cur.shape[-1].value]
        else:
            shape = [1] * (cur.rank - 1) + [cur.shape[-1].value]
        if form == 2:
            shape = [1, 1] + [ax.value for ax in rest]
        if init == " init=xavier" and len(shape) < 2:
            init = ""
        kind = r.choice(["param", "param", "parameter"])
        self.lines.append(f"{g} = {kind} [{', '.join(map(str, shape))}]{init}")
        self.features.add("param")
        if form == 0:
            self.lines.append(f"{out} = ({a} * {g})")
            self.features.add("mul")
            return cur.copy(), out
        if form == 1:
            self.lines.append(f"{out} = {a} + {g}")
            self.features.add("add")
            return cur.copy(), out
        lead = cur.shape[0].text()
        self.lines.append(f"{out} = concat(expand({g}, [{lead}{', -1' * (cur.rank - 1)}]), "
                          f"{a}, dim=1)")
        self.features |= {"expand", "concat"}
        t = cur.shape[1]
        shape = cur.copy().shape
        shape[1] = Ax(t.value + 1) if t.const else _derived(t.value + 1, True)
        return Val(shape), out

    def gaussian_sample(self, cur: Val, cur_name: str | None):
        """z = sample_gaussian(mu, logvar) of a named value and a scaled copy of it."""
        if cur.dtype != "float":
            return None
        r = self.rng
        a = self._named(cur_name)
        lv, out = self.name(), self.name()
        self.lines.append(f"{lv} = ({a} * 0.5)")
        mode = f", sample={r.choice(['always', 'never'])}" if r.random() < 0.5 else ""
        self.lines.append(f"{out} = {r.choice(['sample_gaussian', 'reparameterize'])}"
                          f"({a}, {lv}{mode})")
        self.features |= {"mul", "sample_gaussian"}
        return cur.copy(), out

    LAYERS = ("conv", "pool", "batchnorm", "layernorm", "groupnorm", "dropout", "activation",
              "dense",
              "flatten", "unflatten", "reshape", "last", "recurrent", "attention", "positional",
              "convtranspose", "upsample", "pixel_shuffle", "adaptive", "padcrop", "tensorop",
              "rope", "capsules", "stochastic")

    def layer(self, x: Val, preserve: bool = False, tries: int = 12):
        """A random layer that applies to x (shape-preserving when ``preserve``)."""
        for _ in range(tries):
            fn = getattr(self, self.rng.choice(self.LAYERS))
            got = fn(x, preserve)
            if got is not None and (not preserve or _same(got[1], x)):
                return got
        return self.activation(x) if x.dtype == "float" else None

    # ---- statements --------------------------------------------------------------------

    def statement(self, cur: Val, cur_name: str | None):
        """Append one statement; returns (new value, its name or None)."""
        r = self.rng
        choice = r.random()
        if self.after_multi:  # `y, h = ...` has no single value: start from a name
            self.after_multi = False
            return self.pipeline(cur, cur_name, from_name=True)
        if cur.dtype != "float":
            return self.pipeline(cur, cur_name)
        if choice < 0.12:
            return self.residual(cur, cur_name)
        if choice < 0.2:
            return self.concat(cur, cur_name)
        if choice < 0.27:
            return self.repeat(cur)
        if choice < 0.34:
            return self.block_call(cur)
        if choice < 0.4:
            got = self.recurrent(cur, multi=True)
            if got is not None:
                text, out, states = got
                y = self.name()
                hs = [self.name() for _ in states]
                self.lines.append(f"{', '.join([y] + hs)} = {text}")
                self.after_multi = True
                self.features.add("item")  # each name is an item node
                if r.random() < 0.3:  # carry on from a state: [layers*dirs, N, hidden]
                    return states[0], hs[0]
                return out, y
        if choice < 0.43:
            got = self.crop_skip(cur, cur_name)
            if got is not None:
                return got
        if choice < 0.46:
            got = self.matmul_self(cur, cur_name)
            if got is not None:
                return got
        if choice < 0.48:
            got = self.sdpa_self(cur, cur_name)
            if got is not None:
                return got
        if choice < 0.5:
            got = self.arith(cur, cur_name)
            if got is not None:
                return got
        if choice < 0.53:
            got = self.subscript(cur, cur_name)
            if got is not None:
                return got
        if choice < 0.56:  # split / chunk into named pieces
            got = self.split_chunk(cur, cur_name)
            if got is not None:
                return got
        if choice < 0.58:  # a reparameterised Gaussian sample (nnspec/layers/stochastic.py)
            got = self.gaussian_sample(cur, cur_name)
            if got is not None:
                return got
        if choice < 0.61:  # a learned tensor joined to the value (nnspec/layers/param.py)
            got = self.learned(cur, cur_name)
            if got is not None:
                return got
        if choice < 0.63:  # entries picked by an int index input (nnspec/layers/gather.py)
            got = self.gather(cur, cur_name)
            if got is not None:
                return got
        if choice < 0.65:  # a weighting computed from a size (nnspec/layers/consts.py)
            got = self.size_weights(cur, cur_name)
            if got is not None:
                return got
        return self.pipeline(cur, cur_name)

    def size_weights(self, cur: Val, cur_name: str | None):
        """The value times weights of its last axis computed from that axis's size:
        ``arange``, a comparison, ``where``, ``minimum``/``maximum``, ``abs``, ``log`` and
        the casts, int all the way to the cast to float."""
        last = cur.shape[-1] if cur.rank else None
        if cur.dtype != "float" or last is None or self.in_block or not (last.const or last.sym):
            return None
        r = self.rng
        cmp = r.choice(["lt", "gt", "le", "ge", "eq", "ne"])
        c, c2 = r.randint(0, 3), r.randint(0, 2)
        a, pos, m, w, out = self._named(cur_name), self.name(), self.name(), self.name(), \
            self.name()
        self.lines += [f"{pos} = arange({last.text()})",
                       f"{m} = abs(({pos} - {c}))",
                       f"{m} = where({cmp}({m}, {c2}), maximum({m}, 1), minimum({m}, 2))",
                       f"{w} = log((to_float({m}) + 1))",
                       f"{w} = (to_float(to_int(({w} * 3))) / 3)"]
        if last.const and r.random() < 0.5:  # a number's weights: kept as a buffer
            keep = r.choice(["buffer", "buffer persistent"])
            self.lines.append(f"{w} = {w} | {keep} as {w}_{keep.split()[-1]}")
            self.features.add("buffer")
        self.lines.append(f"{out} = ({a} * {w})")
        self.features |= {"arange", "abs", "sub", cmp, "where", "maximum", "minimum", "log",
                          "to_float", "add", "to_int", "mul", "div"}
        return cur.copy(), out

    def gather(self, cur: Val, cur_name: str | None):
        """``gather(x, i, dim=d)`` with an int index input of the model: one entry per
        position of x's other axes, or an index of x's rank (torch.gather's; always on a
        rank-2 x, so that the value keeps rank 2 or more). Int inputs are drawn in {0, 1}:
        ``(i - 1)`` makes them -1 or 0, negative indices in range."""
        if cur.dtype != "float" or cur.rank < 2 or self.in_block:
            return None
        r = self.rng
        d = r.randrange(1, cur.rank)
        if not all(a.const or a.sym for i, a in enumerate(cur.shape) if i != d):
            return None
        shape = [a for i, a in enumerate(cur.shape) if i != d]
        if cur.rank == 2 or r.random() < 0.3:  # torch.gather's: the index has x's rank
            shape.insert(d, _const(r.randint(1, 3)))
        self.n_names += 1
        idx = f"idx_{self.n_names}"
        self.extra_inputs.append(f"{idx}: {Val(shape).annotation()} int")
        if cur.shape[d].value < 2 or r.random() < 0.5:
            idx = f"({idx} - 1)"
            self.features |= {"sub"}
        dim = d - cur.rank if r.random() < 0.3 else d
        a = self._named(cur_name)
        out = self.name()
        self.lines.append(f"{out} = gather({a}, {idx}, dim={dim})")
        self.features.add("gather")
        return Val([Ax(x.value, x.sym, x.const) for x in shape]), out

    def pipeline(self, cur: Val, cur_name: str | None, from_name: bool = False):
        r = self.rng
        stages = []
        val = cur
        for _ in range(r.choice([1, 1, 1, 2, 3])):
            got = self.layer(val)
            if got is None:
                break
            stages.append(got[0])
            val = got[1]
        if not stages:
            if not from_name:
                return cur, cur_name
            stages = ["identity"]
        text = " | ".join(stages)
        if r.random() < 0.15:
            text += "   : " + val.annotation()
            self.features.add("annotation")
        if r.random() < 0.4:
            name = self.name()
            src = f"{cur_name} | " if cur_name and (from_name or r.random() < 0.5) else ""
            self.lines.append(f"{name} = {src}{text}")
            return val, name
        self.lines.append(f"{cur_name} | {text}" if from_name else text)
        return val, None

    def _named(self, cur_name: str | None) -> str:
        """The current value's name (naming it first when it has none)."""
        if cur_name is not None:
            return cur_name
        name = self.name()
        self.lines.append(f"{name} = identity")
        return name

    def residual(self, cur: Val, cur_name: str | None):
        r = self.rng
        a = self._named(cur_name)
        stages = []
        for _ in range(r.choice([1, 2, 3])):
            got = self.layer(cur, preserve=True)
            if got is None:
                break
            stages.append(got[0])
        b = self.name()
        self.lines.append(f"{b} = {a} | {' | '.join(stages) or 'relu'}")
        form = r.randrange(5)
        out = self.name()
        join = [f"relu({b} + {a})", f"{b} + {a}", f"add({b}, {a})", f"({b} * {a})",
                f"mul({a}, {b}, {a})"][form]
        self.features.add("mul" if form >= 3 else "add")
        self.lines.append(f"{out} = {join}")
        return cur.copy(), out

    def arith(self, cur: Val, cur_name: str | None):
        """Element-wise arithmetic with numbers and broadcasting: a centring by a kept
        mean, a quotient by a positive tensor, scalings and (1 - x)."""
        if cur.dtype != "float":
            return None
        r = self.rng
        a = self._named(cur_name)
        out = self.name()
        form = r.randrange(4)
        if form == 0 and cur.rank >= 2:
            m = self.name()
            self.lines.append(f"{m} = {a} | mean dim=-1 keepdim")
            self.lines.append(f"{out} = ({a} - {m})")
            self.features |= {"mean", "sub"}
        elif form == 1:
            self.lines.append(f"{out} = ({a} / (1 + ({a} * {a})))")
            self.features |= {"div", "add", "mul"}
        elif form == 2:
            c = r.choice(["0.5", "2", "-1.5"])
            self.lines.append(f"{out} = {r.choice([f'({a} * {c})', f'({c} * {a})'])}")
            self.features.add("mul")
        else:
            self.lines.append(f"{out} = {r.choice([f'(1 - {a})', f'({a} / 4)', f'({a} - 0.5)'])}")
            self.features |= {"sub", "div"} if "/" in self.lines[-1] else {"sub"}
        return cur.copy(), out

    def subscript(self, cur: Val, cur_name: str | None):
        """Python indexing of a named value on an axis after the batch: an index (dropping
        the axis) or a slice with a step, on a concrete axis; ``...`` for the others."""
        if cur.rank < 3 or cur.dtype != "float":
            return None
        r = self.rng
        axes = [i for i in range(1, cur.rank) if cur.shape[i].const]
        if not axes:
            return None
        ax = r.choice(axes)
        n = cur.shape[ax].value
        shape = cur.copy().shape
        if r.random() < 0.4:
            item = str(r.randrange(-n, n))
            del shape[ax]
        else:
            start, step = r.randrange(0, n), r.choice([None, 1, 2, 3])
            item = f"{start}:" + (f":{step}" if step else "")
            shape[ax] = _const(len(range(start, n, step or 1)))
        if ax == cur.rank - 1 and r.random() < 0.5:
            text = f"..., {item}"
        else:
            text = ", ".join([":"] * ax + [item])
        a = self._named(cur_name)
        out = self.name()
        self.lines.append(f"{out} = {a}[{text}]")
        self.features.add("index")
        return Val(shape), out

    # ---- split / chunk: one value into named pieces ----
    def split_chunk(self, cur: Val, cur_name: str | None):
        """``a, b = x | split (2, 3) dim=1``, ``split 2``, ``chunk 3 dim=-1`` on a concrete
        axis after the batch (chunk's last piece smaller where torch still gives that many
        pieces); carries on from one piece, the others unread or joined again."""
        axes = [i for i in range(1, cur.rank) if cur.shape[i].const and cur.shape[i].value > 1]
        if not axes:
            return None
        r = self.rng
        ax = r.choice(axes)
        n = cur.shape[ax].value
        form = r.randrange(3)
        if form == 0:  # chunk: counts for which torch.chunk gives that many pieces
            counts = [c for c in range(2, min(n, 4) + 1) if -(-n // -(-n // c)) == c]
            c = r.choice(counts)
            each = -(-n // c)
            sizes = [each] * (c - 1) + [n - each * (c - 1)]
            words = ["chunk", str(c)]
            self.features.add("chunk")
        elif form == 1 and any(n % k == 0 and 2 <= n // k <= 4 for k in range(1, n)):
            k = r.choice([k for k in range(1, n) if n % k == 0 and 2 <= n // k <= 4])
            sizes = [k] * (n // k)
            words = ["split", str(k)]
            self.features.add("split")
        else:
            cuts = sorted(r.sample(range(1, n), min(n - 1, r.randint(1, 3))))
            sizes = [b - a for a, b in zip([0] + cuts, cuts + [n])]
            words = ["split", "(" + ", ".join(map(str, sizes)) + ")"]
            self.features.add("split")
        if ax != 1 or r.random() < 0.4:
            words.append(f"{r.choice(['dim', 'axis'])}={ax - cur.rank if r.random() < 0.5 else ax}")
        names = [self.name() for _ in sizes]
        src = f"{cur_name} | " if cur_name else ""
        self.lines.append(f"{', '.join(names)} = {src}{' '.join(words)}")
        self.features.add("item")
        self.after_multi = True
        pick = r.randrange(len(sizes))
        shape = cur.copy().shape
        shape[ax] = _const(sizes[pick])
        same = [i for i, z in enumerate(sizes) if z == sizes[pick] and i != pick]
        if same and r.random() < 0.5:  # two pieces of a size joined again
            out = self.name()
            self.lines.append(f"{out} = ({names[pick]} + {names[same[0]]})")
            self.features.add("add")
            self.after_multi = False
            return Val(shape), out
        return Val(shape), names[pick]

    def concat(self, cur: Val, cur_name: str | None):
        r = self.rng
        a = self._named(cur_name)
        got = None
        if cur.rank in (3, 4) and cur.shape[1].const and r.random() < 0.5 and cur.rank == 4:
            got = self.conv(cur, preserve=True)
        if got is None:
            got = self.layer(cur, preserve=True)
        b = self.name()
        self.lines.append(f"{b} = {a} | {got[0] if got else 'relu'}")
        dim = r.randint(1, cur.rank - 1) if cur.rank > 1 else 0
        if cur.rank > 1 and r.random() < 0.3:
            dim -= cur.rank
        ax = cur.shape[dim]
        shape = [Ax(x.value, x.sym, x.const) for x in cur.shape]
        shape[dim] = _derived(2 * ax.value, not ax.const)
        out = self.name()
        self.lines.append(f"{out} = concat({a}, {b}" + (f", dim={dim})" if dim != 1
                                                         or r.random() < 0.5 else ")"))
        self.features.add("concat")
        return Val(shape), out

    def repeat(self, cur: Val):
        r = self.rng
        n = r.randint(1, 3)
        if r.random() < 0.5:
            got = self.layer(cur, preserve=True)
            if got is None:
                return cur, None
            self.lines.append(f"{got[0]} * {n}")
            self.features.add("repeat")
            return got[1], None
        got = self.dense(cur) if cur.rank in (2, 3) else None
        if got is None:
            return self.pipeline(cur, None)
        self.lines.append(f"{got[0]} * {n}")
        self.features.add("repeat")
        return got[1], None

    def block_call(self, cur: Val):
        r = self.rng
        name = f"B{len(self.blocks)}"
        width = cur.shape[1].value if cur.rank > 1 and cur.shape[1].const else None
        body = []
        self.in_block = True
        for _ in range(r.choice([1, 2, 3])):
            got = self.layer(cur, preserve=True)
            if got is None:
                break
            body.append(got[0])
        self.in_block = False
        if not body:
            return cur, None
        params = ["x"]
        call_args = []
        if width is not None and cur.rank in (3, 4) and r.random() < 0.6:
            # a width parameter feeding a 1x1 conv that keeps the channels
            params.append("c")
            call_args.append(str(width))
            body.append(f"conv c k=1 p={r.choice([0, 'same', 'valid'])}")
            self.features.add("conv")
        if r.random() < 0.4:
            params.append("act=1")
            call_args.append(f"act={r.choice([1, 2])}")
        residual = r.random() < 0.5
        several = not residual and r.random() < 0.25  # return y, x
        lines = [f"block {name}({', '.join(params)}) {{"]
        if residual:
            lines.append(f"    y = x | {' | '.join(body)}")
            lines.append("    return relu(y + x)")
        elif several:
            lines.append(f"    y = x | {' | '.join(body)}")
            lines.append("    return y, x")
        else:
            lines += [f"    {b}" for b in body]
        lines.append("}")
        self.blocks.append("\n".join(lines))
        n = 1 if several else r.choice([1, 1, 2, 3])
        call = f"{name}({', '.join(call_args)})" + (f" * {n}" if n > 1 or r.random() < 0.3
                                                    else "")
        alias = None
        if r.random() < 0.3:
            alias = f"blk{len(self.blocks)}"
            call += f" as {alias}"
        first = None
        if several:  # y, x = B(...): carry on from y, as after any `a, b = ...`
            first = self.name()
            call = f"{first}, {self.name()} = {call}"
            self.features |= {"pack", "item"}
            self.after_multi = True
        self.lines.append(call)
        self.features.add("block")
        if alias is not None and r.random() < 0.6:
            # the same instance applied again (shared weights): its output keeps the shape
            if several:
                first = self.name()
                self.lines.append(f"{first}, {self.name()} = {alias}")
            else:
                self.lines.append(alias)
            self.features.add("shared")
        return cur.copy(), first


def _same(a: Val, b: Val) -> bool:
    return a.rank == b.rank and a.dtype == b.dtype and all(
        x.value == y.value and x.const == y.const and (x.const or x.sym == y.sym and x.sym)
        for x, y in zip(a.shape, b.shape))


# volumes only once the kinds for rank-5 inputs exist
_FAMILIES = ["image", "image", "seq1d", "seq", "seq", "tokens", "vector"] + (
    ["image3d"] if "conv3d" in REGISTRY else [])


def _start(rng: random.Random, dims: dict[str, int]) -> tuple[str, Val, list[str]]:
    """The model's main input: (declaration, value, features)."""
    fam = rng.choice(_FAMILIES)

    def axis(sym: str, lo: int, hi: int) -> Ax:
        v = rng.randint(lo, hi)
        if rng.random() < 0.6:
            dims[sym] = v
            return Ax(v, sym, False)
        return Ax(v)

    n = Ax(dims["N"], "N", False)
    if fam == "image":
        shape = [n, Ax(rng.randint(1, 4)), axis("H", 3, 8), axis("W", 3, 8)]
    elif fam == "image3d":
        shape = [n, Ax(rng.randint(1, 3)), axis("D", 2, 5), axis("H", 2, 5), axis("W", 2, 5)]
    elif fam == "seq1d":
        shape = [n, Ax(rng.randint(1, 4)), axis("L", 3, 8)]
    elif fam == "seq":
        shape = [n, axis("T", 1, 6), Ax(rng.choice([2, 3, 4, 6, 8]))]
    elif fam == "tokens":
        shape = [n, axis("T", 1, 6)]
        v = Val(shape, "int")
        return f"x: {v.annotation()} int", v, [fam]
    else:
        shape = [n, Ax(rng.randint(1, 8))]
    v = Val(shape)
    return f"x: {v.annotation()}", v, [fam]


def generate(seed: int, index: int) -> Generated:
    """The index-th random valid spec of the run with this seed."""
    rng = random.Random(f"generated:{seed}:{index}")
    dims = {"N": rng.randint(1, 3)}
    decl, cur, feats = _start(rng, dims)
    g = _Gen(rng, dims)
    name = None
    if cur.dtype == "int":
        vocab, width = rng.randint(2, 9), rng.choice([2, 4, 6, 8])
        pad = f" padding={rng.randint(0, vocab - 1)}" if rng.random() < 0.3 else ""
        g.lines.append(f"embedding {vocab} {width}{pad}")
        g.features.add("embedding")
        cur = Val(cur.shape + [_const(width)])
    for _ in range(rng.randint(1, 6)):
        cur, name = g.statement(cur, name)
    if g.after_multi:
        g.after_multi = False
        cur, name = g.pipeline(cur, name, from_name=True)
    if "S" in " ".join(g.extra_inputs):
        dims["S"] = rng.randint(1, 5)
    out_decl = ""
    if rng.random() < 0.3 and all(a.const or a.sym for a in cur.shape):
        out_decl = f" -> {cur.annotation()}"
        g.features.add("output")
    inputs = ", ".join([decl] + g.extra_inputs)
    body = "\n".join(f"    {ln}" for ln in g.lines)
    text = "\n".join(g.blocks + [f"model R({inputs}){out_decl} {{", body, "}", ""])
    if g.blocks:
        text = text.replace("}\nmodel", "}\n\nmodel")
    return Generated(seed, index, text, dict(dims), sorted(set(feats) | g.features))


# ---- the differential check ----------------------------------------------------------------


def _eval_shape(t, env) -> list:
    from nnspec.layers.base import TupleType

    if isinstance(t, TupleType):
        return [_eval_shape(i, env) for i in t.items]
    return tuple(d.evaluate(env) for d in t.shape)


def _runtime_shape(v) -> list:
    if isinstance(v, (tuple, list)):
        return [_runtime_shape(i) for i in v]
    return tuple(v.shape)


def differential(g: Generated, limit: float | None = 10.0) -> list[Failure]:
    """Check the spec, then compare every layer's inferred shape with torch's and the two
    backends with each other (float64) at the generated dims."""
    try:
        with time_limit(limit):
            return _differential(g)
    except CaseTimeout as e:
        return [Failure("timeout", f"Timeout @ {innermost_frame(e.__traceback__, False)}",
                        f"generated spec over {limit:g} s")]


def _differential(g: Generated) -> list[Failure]:
    import nnspec

    try:
        spec = nnspec.loads(g.text, "gen.nn", strict=False)
    except Exception as e:
        return [_internal(e, "load")]
    if not spec.ok:
        d = spec.diagnostics[0]
        return [Failure("invalid", f"rejected [{d.code}] @ {_first_word(d)}",
                        d.render(spec.sources)[:600])]
    model = spec.model().name
    failures = shape_failures(spec, model, g.dims, g.index)
    if any(f.kind in ("internal", "invalid") or f.cause.startswith("torch rejects")
           for f in failures):
        return failures
    from nnspec.tools.crosscheck import crosscheck

    try:
        report = crosscheck(spec, model, "float64", g.index, g.dims)
    except Exception as e:
        failures.append(_internal(e, "crosscheck"))
        return failures
    bad = report.first_divergence
    if bad is not None:
        failures.append(Failure("backend", f"backends differ @ {bad.kind}",
                                f"{bad.name} [{bad.kind}] line {bad.line}: max abs "
                                f"{bad.max_abs:.3g}, max rel {bad.max_rel:.3g}",
                                detail=report.render()))
    return failures


def shape_failures(spec, model: str, dims: dict[str, int], seed: int = 0) -> list[Failure]:
    """Run the torch module at ``dims`` and compare the shape of every layer's value with
    the inferred shape evaluated at those dims (the first layer that differs)."""
    import numpy as np

    try:
        import torch

        from nnspec.backends.torch import build_module
        from nnspec.tools.crosscheck import concrete_inputs

        mod = build_module(spec, model, seed=seed, dtype=torch.float64).eval()
        inputs = concrete_inputs(spec, model, dims, np.float64, seed)
    except Exception as e:
        return [_internal(e, "build")]
    types = spec.types(model).types
    m = spec.model(model)
    try:
        with torch.no_grad():
            values = mod.trace(*[torch.from_numpy(np.ascontiguousarray(a)) for a in inputs])
    except Exception as e:
        # torch refused a layer nnspec accepted: if an inferred size at these dims is below
        # 1, the dims are out of the spec's range (a generator bug), else nnspec is wrong
        bad = [n for n in m.nodes if types.get(n.id) is not None
               and any(v < 1 for v in _flat(_eval_shape(types[n.id], dims)))]
        if bad:
            return [Failure("invalid", f"size below 1 @ {bad[0].op}",
                            f"{bad[0].name}: {types[bad[0].id]} at {dims}")]
        note = " / ".join(getattr(e, "__notes__", [])[-1:])
        return [Failure("shape", f"torch rejects @ {_note_kind(note, m)}",
                        f"{type(e).__name__}: {str(e)[:200]} {note}")]
    for node in m.nodes:
        want = _eval_shape(types[node.id], dims)
        got = _runtime_shape(values[node.id])
        if _flat(want) != _flat(got):
            ceil = " ceil" if getattr(node.p, "ceil", False) else ""
            return [Failure(
                "shape", f"shape @ {node.op}{ceil}",
                f"{node.name} [{node.op}] line {node.span[1] if node.span else '?'}: inferred "
                f"{types[node.id]} = {want}, torch {got}")]
    return []


def _flat(x) -> tuple:
    if isinstance(x, list):
        return tuple(v for i in x for v in _flat(i))
    if isinstance(x, tuple) and x and isinstance(x[0], (tuple, list)):
        return tuple(v for i in x for v in _flat(i))
    return tuple(x)


def _first_word(d) -> str:
    return " ".join(d.message.split(" ")[:4]) if d.message else "?"


def _note_kind(note: str, m) -> str:
    for node in m.nodes:
        if f"(layer {node.name})" in note:
            return node.op
    return "?"


def _internal(e: BaseException, stage: str) -> Failure:
    return Failure("internal", f"{type(e).__name__} @ {innermost_frame(e.__traceback__)}",
                   f"[{stage}] {type(e).__name__}: {str(e)[:300]}",
                   detail="".join(traceback.format_exception(e))[-4000:])
