"""Every layer kind in the registry: a sample runs in both backends and they agree, and
no declared argument is silently ignored (each one reaches the shape rule or the
weights, and both backends)."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from nnspec.core.dims import Dim
from nnspec.layers.initializers import Init
from nnspec.layers import REGISTRY, ShapeError, TensorType
from nnspec.layers.base import NumpyCtx, TupleType

torch = pytest.importorskip("torch")
from nnspec.backends.torch import build_module  # noqa: E402

KINDS = sorted({k.name: k for k in REGISTRY.values()}.items())


def lit(v) -> str:
    """A Python value as spec source."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Dim):
        return str(v)
    if isinstance(v, tuple):
        if v and all(isinstance(x, Dim) for x in v):
            return "[" + ", ".join(lit(x) for x in v) + "]"
        inner = ", ".join(lit(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    return str(v)


def spec_for(kind, args: dict, ins: list[TensorType]) -> str:
    names = [f"x{i}" for i in range(len(ins))]
    inputs = ", ".join(f"{n}: [{', '.join(str(d) for d in t.shape)}]"
                       + (" int" if t.dtype == "int" else "") for n, t in zip(names, ins))
    if not ins:  # a kind with no input (param): the model's input is not read
        inputs = "unused: [1]"
    tensor_keys = {k for k in kind.tensor_args if args.get(k) is not None}
    main = [n for i, n in enumerate(names) if i not in {args[k] for k in tensor_keys}]
    kw = ", ".join(f"{k if k != 'global_' else 'global'}="
                   + (names[v] if k in tensor_keys else lit(v)) for k, v in args.items()
                   if v is not None)
    call = f"{kind.name}({', '.join(main + ([kw] if kw else []))})"
    if kind.name == "index":  # written as a subscript of a named value: x0[:, -1, 1::2]
        call = f"{names[0]}[{_subscripts(args['items'])}]"
    return f"model M({inputs}) {{\n    {call}\n}}\n"


def _subscripts(items) -> str:
    def one(it):
        if it == "...":
            return "..."
        if isinstance(it, tuple):
            start, stop, step = ("" if v is None else str(v) for v in it)
            return f"{start}:{stop}" + (f":{step}" if step else "")
        return str(it)
    return ", ".join(one(it) for it in items)


def observe(kind, args: dict, ins: list[TensorType]):
    """What each backend can see of a configuration: (shape rule + weights, numpy, torch)."""
    p = kind.Params.model_validate(args)
    out = kind.infer(p, ins)
    weights = kind.state(p, ins, out)  # the weights with the spec's initialisers
    rng = np.random.default_rng(0)

    def draw(t):
        if isinstance(t, TupleType):
            return tuple(draw(i) for i in t.items)
        if t.dtype == "int":
            return rng.integers(0, 3, size=[d.value for d in t.shape])
        return rng.standard_normal([d.value for d in t.shape])

    xs = [draw(t) for t in ins]
    w = {k: np.random.default_rng(1).standard_normal(v.shape) if v.dtype == "float"
         else np.zeros(v.shape, np.int64) for k, v in weights.items()}
    for k in w:
        if k.endswith("running_var"):
            w[k] = np.abs(w[k]) + 0.5
    shapes = (str(out), {k: (v.shape, v.init) for k, v in weights.items()})
    ev = kind.numpy(p, w, xs, NumpyCtx(training=False, rng=np.random.default_rng(2)))
    ctx = NumpyCtx(training=True, rng=np.random.default_rng(2))
    tr = kind.numpy(p, w, xs, ctx)
    flat = lambda a: b"".join(np.round(x, 9).tobytes() for x in a) if isinstance(a, tuple) \
        else np.round(a, 9).tobytes()  # noqa: E731
    numpy_view = (flat(ev), flat(tr),
                  {k: np.round(v, 9).tobytes() for k, v in ctx.updates.items()})
    plan = kind.torch(p, ins, out)
    torch_view = repr(plan)
    return shapes, numpy_view, torch_view


SAMPLES = [(f"{name}-{i}" if i else name, kind, sample) for name, kind in KINDS
           for i, sample in enumerate(kind.samples())]


@pytest.mark.parametrize("name,kind,sample", SAMPLES, ids=[n for n, _, _ in SAMPLES])
def test_sample_agrees_across_backends(name, kind, sample):
    args, ins = sample
    if any(isinstance(t, TupleType) for t in ins):
        pytest.skip("takes another layer's several values; covered by the recurrent tests")
    if kind.name == "buffer":
        pytest.skip("keeps a constant, never a model input; covered by test_consts_buffers")
    spec = nnspec.loads(spec_for(kind, args, ins), f"{name}.nn")
    params = {k: np.random.default_rng(3).standard_normal(w.shape) if w.dtype == "float"
              else np.zeros(w.shape, np.int64) for k, w in spec.state_shapes().items()}
    for k in spec.state_shapes():
        if k.endswith("running_var"):
            params[k] = np.abs(params[k]) + 0.5
    from nnspec.backends.numpy import NumpyModel

    ref = NumpyModel(spec, params=params, dtype=np.float64)
    mod = build_module(spec, params=params, dtype=torch.float64).eval()
    rng = np.random.default_rng(4)
    xs = [rng.integers(0, 3, size=[d.value for d in t.shape]) if t.dtype == "int"
          else rng.standard_normal([d.value for d in t.shape]) for t in ins or
          [TensorType((1,))]]
    a = ref(*xs)
    with torch.no_grad():
        b = mod(*[torch.from_numpy(x) for x in xs])
    out_t = spec.output_type()
    pairs = zip(a, b, out_t.items) if isinstance(out_t, TupleType) else [(a, b, out_t)]
    for x, y, t in pairs:
        y = y.detach().numpy()
        assert x.shape == y.shape == tuple(d.value for d in t.shape)
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)


def _flip(value, default):
    if isinstance(default, bool):
        return not default
    if isinstance(default, Init):  # init= / bias_init=: any other initialiser shows
        return "constant(0.5)"
    return None


def _mutate(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + 1
    if isinstance(v, float):
        return v * 0.5
    if isinstance(v, tuple) and v:
        return (_mutate(v[0]),) + v[1:]
    return None


@pytest.mark.parametrize("name,kind", KINDS, ids=[k for k, _ in KINDS])
def test_no_argument_is_ignored(name, kind):
    samples = kind.samples()
    bases: dict[int, tuple] = {}
    for field, info in kind.Params.model_fields.items():
        if info.is_required():
            continue
        i = next((j for j, (a, _) in enumerate(samples) if field in a), 0)
        args, ins = samples[i]
        if i not in bases:
            bases[i] = observe(kind, args, ins)
        base = bases[i]
        if field in args and args[field] != info.default:
            changed = {k: v for k, v in args.items() if k != field}
        else:
            flipped = _flip(args.get(field, info.default), info.default)
            assert flipped is not None, (
                f"{name}.sample() must give the optional argument {field!r} a non-default "
                "value, so that the test can show it is used")
            changed = {**args, field: flipped}
        ref = base
        try:
            other = observe(kind, changed, ins)
        except (ShapeError, ValueError):
            other = None
        if other is None and field not in changed and _mutate(args[field]) is not None:
            changed = {**args, field: _mutate(args[field])}
            try:
                other = observe(kind, changed, ins)
            except (ShapeError, ValueError):
                other = None
        if other is None:
            # the flipped flag conflicts with other sample arguments: compare minimal configs
            required = {k: v for k, v in args.items()
                        if kind.Params.model_fields[k].is_required()}
            other = observe(kind, {**required, field: changed[field]}, ins)
        shape_seen = ref[0] != other[0]
        assert shape_seen or ref[1] != other[1], f"{name}: {field} never reaches NumPy"
        assert shape_seen or ref[2] != other[2], f"{name}: {field} never reaches torch"


def test_every_kind_has_a_sample_and_a_summary():
    for name, kind in KINDS:
        for _args, ins in kind.samples():
            assert all(isinstance(t, (TensorType, TupleType)) for t in ins)
        assert kind.summary or kind.__doc__, name
