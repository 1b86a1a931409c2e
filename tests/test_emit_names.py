"""Names that clash in generated code: Python keywords and builtins, the generated file's own
globals and helpers, torch.nn.Module attributes and mangled ``__names``, in every role a
name can take in a spec. Each is either refused by ``check`` with a located error, or both
torch backends accept it with the same state_dict keys and the same outputs."""

from __future__ import annotations

import json
import keyword
import re

import pytest

from _util import import_source
import nnspec
from nnspec.ir.names import MODULE_ATTRS, MODULE_DATA, child_name_problem, py_name

torch = pytest.importorskip("torch")

from nnspec.backends.torch import build_module, emit_source  # noqa: E402
from nnspec.core.diagnostics import SpecError  # noqa: E402

# Names the generated file defines, imports or calls, and the helpers it may copy in.
FILE_NAMES = ["torch", "nn", "F", "math", "self", "dims", "x", "v", "v1", "v2", "v3", "Model",
              "ChoGRU", "add_sinusoidal", "LearnedPositions", "causal_mask",
              "causal_padding_mask", "lstm_flat", "lstm_initial_state"]
BUILTINS = ["float", "int", "super", "getattr", "setattr", "object", "print", "len", "range",
            "isinstance", "ValueError", "__import__", "__builtins__", "__name__", "__file__"]
# mangled inside a class body, private, or class attributes of the generated class
UNDERSCORED = ["__fc", "__x__", "_x", "_", "__", "___", "__qualname__", "__firstlineno__",
               "__static_attributes__", "__slots__", "__init__", "__class__"]
# SpecModule's own attributes, and the words of the .nn language
OTHERS = ["seed", "model_name", "spec_model", "locations", "line_map", "_steps", "_out",
          "_load", "_run", "trace", "dynamic_shapes", "model", "block", "use", "const",
          "check", "return", "as", "fc"]
PY_NAMES = list(dict.fromkeys(keyword.kwlist + keyword.softkwlist + FILE_NAMES + BUILTINS
                              + UNDERSCORED + OTHERS))
NAMES = list(dict.fromkeys(PY_NAMES + sorted(MODULE_ATTRS)))
# a class or block name never becomes an attribute: a sample of nn.Module's is enough there
FEW_ATTRS = ["forward", "training", "_modules", "__dict__", "eval", "compile", "type", "to",
             "state_dict", "_version"]
# torch keeps data under these on every module: no submodule can have them
BAD_CHILD = [n for n in NAMES if n in MODULE_DATA]
GOOD_CHILD = [n for n in NAMES if n not in MODULE_DATA]


def _model_role(names):
    """One model per name; each copies in helpers (positional: add_sinusoidal and math, gru
    reset=before: ChoGRU) and uses the symbols (dims)."""
    text = "".join(f"""
model {n}(x: [N, 3, 4]) {{
    positional
    gru 2 reset=before
    dense 4 as fc
    reshape [N, 12]
    leaky_relu 0.5
}}""" for n in names)
    keys = ["gru_0.weight_ih_l0", "gru_0.weight_hh_l0", "gru_0.bias_ih_l0", "gru_0.bias_hh_l0",
            "fc.weight", "fc.bias"]
    return text, list(names), {n: keys for n in names}, 1


def _block_role(names):
    blocks = "".join(f"""
block {n}(x, c=4) {{
    y = x | dense c
    return y
}}""" for n in names)
    # each on a continuation line: a line starting with `return` would be a return
    body = "\n".join(f"        | {n}" for n in names)
    text = (f"{blocks}\nmodel M(q: [N, 3, 4]) {{\n    q\n{body}\n"
            "    positional | leaky_relu 0.5\n}\n")
    seen: dict[str, int] = {}  # an instance is named after the lowercased block: Model, model
    keys = []
    for n in names:
        i = seen[n.lower()] = seen.get(n.lower(), -1) + 1
        keys += [f"{n.lower()}_{i}.dense_0.{w}" for w in ("weight", "bias")]
    return text, ["M"], {"M": keys}, 1


def _input_role(names):
    ins = ", ".join(f"{n}: [N, 3, 4]" for n in names)
    text = f"""model M({ins}) {{
    add({", ".join(names)})
    positional
    dense 4 as fc
    reshape [N, 12]
    leaky_relu 0.5
}}"""
    return text, ["M"], {"M": ["fc.weight", "fc.bias"]}, len(names)


def _value_role(names):
    body = "\n".join(f"    {n} = q | dense 4 as l{i}" for i, n in enumerate(names))
    text = f"""model M(q: [N, 3, 4]) {{
{body}
    add({", ".join(names)})
    positional | leaky_relu 0.5
}}"""
    keys = [f"l{i}.{w}" for i in range(len(names)) for w in ("weight", "bias")]
    return text, ["M"], {"M": keys}, 1


def _layer_alias_role(names):
    body = "\n".join(f"    dense 4 as {n}" for n in names)
    text = f"model M(q: [N, 3, 4]) {{\n{body}\n    positional | leaky_relu 0.5\n}}\n"
    keys = [f"{n}.{w}" for n in names for w in ("weight", "bias")]
    return text, ["M"], {"M": keys}, 1


def _block_alias_role(names):
    body = "\n".join(f"    B as {n}" for n in names)
    text = f"""block B(x) {{
    y = x | dense 4 as {names[0]}
    return y
}}
model M(q: [N, 3, 4]) {{
{body}
    positional | leaky_relu 0.5
}}"""
    keys = [f"{n}.{names[0]}.{w}" for n in names for w in ("weight", "bias")]
    return text, ["M"], {"M": keys}, 1


def _repeat_alias_role(names):
    body = "\n".join(f"    dense 4 * 2 as {n}" for n in names)
    text = f"model M(q: [N, 3, 4]) {{\n{body}\n    positional | leaky_relu 0.5\n}}\n"
    keys = [f"{n}.{i}.{w}" for n in names for i in (0, 1) for w in ("weight", "bias")]
    return text, ["M"], {"M": keys}, 1


# role -> (spec builder, the names it must accept)
ROLES = {
    "model": (_model_role, PY_NAMES + FEW_ATTRS),
    "block": (_block_role, PY_NAMES + FEW_ATTRS),
    "input": (_input_role, NAMES),
    # a statement starting with `return` is a return statement
    "value": (_value_role, [n for n in NAMES if n != "return"]),
    "layer_alias": (_layer_alias_role, GOOD_CHILD),
    "block_alias": (_block_alias_role, GOOD_CHILD),
    "repeat_alias": (_repeat_alias_role, GOOD_CHILD),
}


@pytest.mark.parametrize("role", list(ROLES))
def test_every_name_compiles_and_runs_like_the_in_process_module(role, tmp_path):
    build, names = ROLES[role]
    text, models, keys, n_inputs = build(names)
    spec = nnspec.loads(text, "names.nn")
    src = emit_source(spec, all_models=True)
    path = tmp_path / f"gen_names_{role}.py"
    path.write_text(src)
    gen = import_source(path, f"gen_names_{role}")
    # one distinct class per model, after the copied helpers, named in the header comment
    classes = re.findall(r"^class (\w+)\(nn\.Module\):", src, re.M)[-len(models):]
    assert len(set(classes)) == len(models)
    for m, cls in zip(models, classes):
        assert f"# {m}{'' if cls == m else f' (class {cls})'}: PyTorch module" in src
    # the models of the model role share one body: one in-process module serves them all
    ref = build_module(spec, models[0], seed=1).eval()
    assert list(ref.state_dict()) == keys[models[0]]
    x = torch.rand(2, 3, 4) - 0.5
    args = [x + i for i in range(n_inputs)]
    with torch.no_grad():
        want = ref(*args)
    assert want.shape == ((2, 12) if role in ("model", "input") else (2, 3, 4))
    for m, cls in zip(models, classes):
        assert list(spec.state_shapes(m)) == keys[m]
        emitted = getattr(gen, cls)().eval()
        assert list(emitted.state_dict()) == keys[m]
        emitted.load_state_dict(ref.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(emitted(*args), want, rtol=0, atol=0)
    # nn.Module's own methods still work whatever the children are called
    for net in (ref, emitted):
        assert net.train().training and not net.eval().training
        assert list(net.to(torch.float64).state_dict()) == keys[models[-1]]


@pytest.mark.parametrize("role", ["layer", "block", "repeat", "inside_block"])
@pytest.mark.parametrize("name", BAD_CHILD)
def test_a_name_torch_keeps_data_under_is_a_located_error(name, role):
    stage = {"layer": f"dense 4 as {name}", "block": f"B as {name}",
             "repeat": f"dense 4 * 2 as {name}", "inside_block": "B"}[role]
    inner = f"dense 4 as {name}" if role == "inside_block" else "dense 4"
    text = f"""block B(x) {{
    y = x | {inner}
    return y
}}
model M(q: [N, 4]) {{
    {stage}
    relu
}}
"""
    spec = nnspec.loads(text, "bad.nn", strict=False)
    (d,) = spec.diagnostics
    line, col = (2, 13) if role == "inside_block" else (6, 5)
    assert (d.code, d.span.line, d.span.col) == ("E070", line, col)
    what = "its train/eval flag" if name == "training" else "data, not a method"
    assert d.message == (f"{name!r} cannot name a layer: every torch.nn.Module has an "
                         f"attribute {name!r} ({what})")
    assert d.hint == f"choose another name, e.g. `as {name.strip('_')}_layer`"
    with pytest.raises(SpecError):
        build_module(spec)  # the in-process module refuses exactly what check refuses
    with pytest.raises(SpecError):
        emit_source(spec)


def test_each_bad_name_is_reported_once_and_lowering_goes_on():
    text = "model M(q: [N, 4]) {\n    dense 4 as training\n    relu as _modules\n    rleu\n}\n"
    spec = nnspec.loads(text, "bad.nn", strict=False)
    got = [(d.code, d.span.line) for d in spec.diagnostics]
    assert {("E070", 2), ("E070", 3), ("E043", 4)} <= set(got)


def test_the_frozen_lists_are_torch_nn_module_attributes():
    probe = torch.nn.Module()
    # torch.export / dynamo, once used in the process, tag nn.Module with a private
    # ``___needs_generation_tag_patch`` attribute: not a name a user's layer meets
    names = {n for n in dir(probe) if not n.startswith("___")}
    assert MODULE_ATTRS == names
    # __weakref__ is data; it holds a (callable) weak reference once something, such as
    # dynamo, keeps one to the module
    assert MODULE_DATA == {n for n in names
                           if n == "__weakref__" or not callable(getattr(probe, n))}
    assert set(vars(probe)) <= MODULE_DATA


def test_check_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, nnspec; nnspec.loads('model M(q: [N, 4]) {\\n    dense 4 as "
            "training\\n}\\n', strict=False); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_json_ir_names_are_checked_like_spec_names():
    spec = nnspec.loads("model M(q: [N, 4]) {\n    dense 4 as a\n    dense 4 as b\n}\n", "t.nn")
    data = json.loads(spec.program.to_json())
    nodes = data["models"][0]["nodes"]
    # (first name, second name) -> (code, line): the second of two clashing names is wrong
    cases = {("training", "b"): ("E070", 2), ("a..x", "b"): ("E071", 2), ("a", "a"): ("E072", 3),
             ("a", "a.b"): ("E072", 3), ("a.b", "a"): ("E072", 3), ("b", "_buffers.x"): ("E070", 3)}
    for (first, second), want in cases.items():
        nodes[0]["name"], nodes[1]["name"] = first, second
        got = nnspec.api.from_ir(nnspec.ir.Program.model_validate(data))
        assert [(d.code, d.span.line) for d in got.diagnostics] == [want], (first, second)
        with pytest.raises(SpecError):
            build_module(got)
    nodes[0]["name"], nodes[1]["name"] = "forward", "x.__fc"  # fine: state_dict keys kept
    got = nnspec.api.from_ir(nnspec.ir.Program.model_validate(data))
    assert list(build_module(got, seed=0).state_dict()) == [
        "forward.weight", "forward.bias", "x.__fc.weight", "x.__fc.bias"]


def test_class_and_argument_renaming_is_deterministic():
    text = ("model torch(x: [N, 4]) {\n    dense 3 as a\n}\n"
            "model torch_(lambda: [N, 4], float: [N, 4], __y: [N, 4]) {\n"
            "    add(lambda, float, __y)\n}\n")
    src = emit_source(nnspec.loads(text, "t.nn"), all_models=True)
    assert src == emit_source(nnspec.loads(text, "t.nn"), all_models=True)
    # a plain name keeps its class; the clashing one takes the next free variant
    assert "class torch__(nn.Module):" in src and "class torch_(nn.Module):" in src
    assert "# torch (class torch__): PyTorch module" in src
    assert "def forward(self, lambda_, float_, y):" in src


def test_py_name():
    taken: set = set()
    assert [py_name(n, taken, {"float"}) for n in
            ["x", "x", "class", "float", "__a", "__", "é", "__1"]] == \
        ["x", "x_", "class_", "float_", "a", "v", "v_", "v1"]


def test_a_child_named_like_a_data_attribute_really_breaks_torch():
    # why those names are refused: train() cannot set the flag past a child called training
    net = torch.nn.Module()
    net._modules["training"] = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match="cannot assign"):
        net.eval()
    for name in ["training", "_modules", "forward", "__fc", "class", "seed", "0"]:
        assert (child_name_problem(name) is None) == (name not in MODULE_DATA)
    assert child_name_problem("") is not None and child_name_problem("a.b") is not None


def test_a_parenthesised_repeat_count_is_quoted_whole():
    from nnspec.backends.emit import emit_source

    spec = nnspec.loads("block B(x, c) {\n    x | dense c\n}\nmodel M(x: [N, 4]) {\n"
                        "    x | B(4) * (2 - 1) as layer\n    dense (4 * 2)\n}\n", "t7.nn")
    src = emit_source(spec)
    assert "t7.nn:5  B(4) * (2 - 1) as layer  -> [N, 4]" in src
    assert "t7.nn:6  dense (4 * 2)  -> [N, 8]" in src
