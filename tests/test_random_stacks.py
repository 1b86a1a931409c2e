"""Differential test over random layer stacks (hypothesis).

A random stack of conv / transposed conv / pool / adaptive pool / pad / upsample / pixel
shuffle / norm / activation layers, written as a spec: when nnspec accepts it, every
inferred shape must equal the shape PyTorch actually produces and the NumPy interpreter
must agree with PyTorch; when nnspec rejects it, PyTorch must fail too.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import nnspec

torch = pytest.importorskip("torch")
from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module  # noqa: E402


@st.composite
def conv_layer(draw, rank):
    k = draw(st.integers(1, 4))
    s = draw(st.integers(1, 3))
    d = draw(st.integers(1, 2))
    groups = draw(st.sampled_from([1, 1, 2]))
    out = draw(st.sampled_from([2, 4, 6]))
    pad = draw(st.one_of(st.integers(0, 2), st.just("same"),
                         st.tuples(st.integers(0, 2), st.integers(0, 2))))
    if pad == "same":
        s = 1
    if isinstance(pad, tuple):  # per side: ((before, after),) or ((b, a), (b, a))
        pair = f"({pad[0]},{pad[1]})"  # no spaces: the torch reference splits on them
        pad = f"({pair},)" if rank == 1 else f"({pair},{pair})"
    kind = draw(st.sampled_from(["conv", f"conv{rank}d"]))
    return f"{kind} {out} k={k} s={s} p={pad} d={d} groups={groups}"


@st.composite
def convtranspose_layer(draw, rank):
    # stride <= 2 and k <= 3: five of them stay small enough to run
    k, s, d = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    p, op = draw(st.integers(0, 2)), draw(st.integers(0, 2))  # op >= max(s, d) is refused
    groups = draw(st.sampled_from([1, 1, 2]))
    out = draw(st.sampled_from([2, 4, 6]))
    kind = draw(st.sampled_from(["convtranspose", f"convtranspose{rank}d", "deconv"]))
    return f"{kind} {out} k={k} s={s} p={p} d={d} output_padding={op} groups={groups}"


@st.composite
def pool_layer(draw, rank):
    k = draw(st.integers(1, 3))
    s = draw(st.integers(1, 3))
    p = draw(st.integers(0, 1))
    ceil = draw(st.booleans())
    if draw(st.booleans()):
        d = draw(st.integers(1, 2))
        return f"maxpool k={k} s={s} p={p} d={d}" + (" ceil" if ceil else "")
    cip = draw(st.booleans())
    return (f"avgpool{rank}d k={k} s={s} p={p}" + (" ceil" if ceil else "")
            + ("" if cip else " count_include_pad=false"))


@st.composite
def adaptive_or_pad_layer(draw, rank):
    if draw(st.booleans()):
        mode = draw(st.sampled_from(["avg", "max"]))
        kind = draw(st.sampled_from([f"adaptive_{mode}pool", f"adaptive_{mode}pool{rank}d"]))
        return f"{kind} size={draw(st.integers(1, 6))}"  # larger than the input too
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    return f"pad p={draw(st.integers(0, 4))} mode={mode}"  # reflect: p < size, as torch


@st.composite
def resample_layer(draw, rank):
    if rank == 2 and draw(st.booleans()):
        kind = draw(st.sampled_from(["pixel_shuffle", "pixel_unshuffle"]))
        return f"{kind} {draw(st.integers(1, 2))}"  # channels or sizes may not divide
    scale = draw(st.sampled_from(["2", "3", "1.5", "0.5"]))
    mode = draw(st.sampled_from(["nearest", "nearest_exact",
                                 "linear" if rank == 1 else "bilinear"]))
    corners = mode.endswith("linear") and draw(st.booleans())
    return f"upsample {scale} mode={mode}" + (" align_corners" if corners else "")


@st.composite
def stack(draw):
    rank = draw(st.sampled_from([1, 2]))
    c = draw(st.sampled_from([2, 4]))
    sizes = [draw(st.integers(3, 12)) for _ in range(rank)]
    layers = []
    for _ in range(draw(st.integers(1, 5))):
        layers.append(draw(st.one_of(
            conv_layer(rank), pool_layer(rank), convtranspose_layer(rank),
            adaptive_or_pad_layer(rank), resample_layer(rank),
            st.sampled_from(["relu", "tanh", "gelu", "sigmoid", "batchnorm", "identity",
                             "leaky_relu 0.1", "elu", "softmax 1"]))))
    layers += ["flatten", draw(st.sampled_from(["dense 3", "dense 5 | log_softmax"]))]
    dims = ", ".join(["N", str(c)] + [str(x) for x in sizes])
    body = "\n".join(f"    {x}" for x in layers)
    return f"model R(x: [{dims}]) {{\n{body}\n}}\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack(), st.integers(1, 3))
def test_inferred_shapes_match_torch_and_backends_agree(text, batch):
    spec = nnspec.loads(text, "random.nn", strict=False)
    m = spec.model() if spec.program and spec.program.models else None
    x = np.random.default_rng(0).standard_normal(
        [batch] + [int(d) for d in m.inputs[0].shape[1:]])
    event("rejected by nnspec" if not spec.ok else "accepted")
    if not spec.ok:
        # nnspec says the stack is invalid: PyTorch must refuse it too
        assert all(d.code.startswith("E3") for d in spec.diagnostics), spec.diagnostics
        with pytest.raises((RuntimeError, ValueError)):
            torch_reference(text, spec, x)
        return
    mod = build_module(spec, seed=1, dtype=torch.float64).eval()
    with torch.no_grad():
        values = mod.trace(torch.from_numpy(x))
    env = {"N": batch}
    types = spec.types().types
    for node in m.nodes:
        want = tuple(d.evaluate(env) for d in types[node.id].shape)
        assert tuple(values[node.id].shape) == want, (node.text, want)
    params = {k: v.detach().numpy() for k, v in mod.state_dict().items()}
    ours = NumpyModel(spec, params=params, dtype=np.float64)(x)
    np.testing.assert_allclose(ours, values[m.output].numpy(), rtol=1e-9, atol=1e-10)


def torch_reference(text, spec, x):
    """Run the stack with PyTorch's own layers built from the same text, without nnspec's
    shape rules: any layer PyTorch rejects raises."""
    import torch.nn.functional as F

    t = torch.from_numpy(x)
    for line in text.splitlines()[1:-1]:
        for part in line.strip().split("|"):
            words = part.split()
            kind, args = words[0], {}
            pos = []
            for w in words[1:]:
                if "=" in w:
                    key, val = w.split("=", 1)
                    args[key] = val
                else:
                    pos.append(w)
            t = _apply_torch(F, kind, pos, args, t)
    return t


def _apply_torch(F, kind, pos, args, t):
    rank = t.dim() - 2
    if kind.startswith(("convtranspose", "deconv")):
        k, s, d, p = (int(args[a]) for a in ("k", "s", "d", "p"))
        op, g = int(args["output_padding"]), int(args["groups"])
        if t.shape[1] % g:
            raise ValueError("groups")
        w = torch.zeros(t.shape[1], int(pos[0]) // g, *[k] * rank, dtype=t.dtype)
        fn = F.conv_transpose1d if rank == 1 else F.conv_transpose2d
        return fn(t, w, None, s, p, op, g, d)
    if kind.startswith("conv"):
        k, s, d = int(args["k"]), int(args["s"]), int(args["d"])
        g = int(args["groups"])
        w = torch.zeros(int(pos[0]), t.shape[1] // g if t.shape[1] % g == 0 else 1, *[k] * rank,
                        dtype=t.dtype)
        if t.shape[1] % g:
            raise ValueError("groups")
        p = args["p"]
        if p == "same":
            pad = "same"
            if k % 2 == 0 or d * (k - 1) % 2:  # torch pads the extra one at the end
                total = d * (k - 1)
                t = F.pad(t, [total // 2, total - total // 2] * rank)
                pad = 0
        elif p.startswith("("):
            pairs = [int(v) for v in p.replace("(", "").replace(")", "").split(",") if v.strip()]
            flat = []
            for i in range(rank - 1, -1, -1):
                flat += [pairs[2 * i], pairs[2 * i + 1]]
            t = F.pad(t, flat)
            pad = 0
        else:
            pad = int(p)
        fn = F.conv1d if rank == 1 else F.conv2d
        return fn(t, w, None, s, pad, d, g)
    if kind.startswith("maxpool") or kind.startswith("avgpool"):
        k, s, p = int(args["k"]), int(args["s"]), int(args["p"])
        ceil = "ceil" in pos
        if kind.startswith("maxpool"):
            fn = F.max_pool1d if rank == 1 else F.max_pool2d
            return fn(t, k, s, p, int(args["d"]), ceil_mode=ceil)
        fn = F.avg_pool1d if rank == 1 else F.avg_pool2d
        return fn(t, k, s, p, ceil_mode=ceil,
                  count_include_pad=args.get("count_include_pad") != "false")
    if kind.startswith("adaptive_"):
        size = int(args["size"])
        fn = getattr(F, f"adaptive_{kind[9:12]}_pool{rank}d")
        return fn(t, size)
    if kind == "upsample":
        mode = args["mode"].replace("_", "-")
        corners = True if "align_corners" in pos else (None if mode.startswith("nearest")
                                                        else False)
        return F.interpolate(t, scale_factor=float(pos[0]), mode=mode, align_corners=corners)
    if kind in ("pixel_shuffle", "pixel_unshuffle"):
        return getattr(F, kind)(t, int(pos[0]))
    if kind == "pad":
        return F.pad(t, [int(args["p"])] * 2 * rank, mode=args["mode"])
    if kind == "flatten":
        return t.flatten(1)
    if kind == "dense":
        return t @ torch.zeros(t.shape[-1], int(pos[0]), dtype=t.dtype)
    return t
