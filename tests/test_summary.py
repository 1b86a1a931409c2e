"""``nnspec summary``: its figures against torchinfo's and against sums done by hand, block
folding, units, the narrow table and the one-shape JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nnspec
from nnspec.tools import cli, summary
from nnspec.core.dims import Dim

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn"))


def _summary_json(capsys, *args) -> dict:
    assert cli.main(["summary", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("spec, model, size", [
    ("lenet5.nn", "LeNet5", (1, 1, 32, 32)),
    ("resnet18.nn", "ResNet18", (1, 3, 224, 224)),
])
def test_params_split_and_layer_shapes_match_torchinfo(spec, model, size):
    torchinfo = pytest.importorskip("torchinfo")
    from nnspec.backends.torch import build_module

    loaded = nnspec.load(str(ROOT / "specs" / spec))
    module = build_module(loaded, model, seed=0)
    stats = torchinfo.summary(module, input_size=size, depth=100, verbose=0,
                              device="cpu", col_names=("output_size", "num_params"))
    ours = loaded.summary(model)
    assert ours.params + ours.non_trainable == stats.total_params
    assert ours.params == stats.trainable_params
    assert ours.non_trainable == stats.total_params - stats.trainable_params
    assert ours.buffers == sum(b.numel() for b in module.buffers())
    assert ours.weight_bytes == sum(t.numel() * t.element_size()
                                    for t in module.state_dict().values()
                                    if t.is_floating_point()) + \
        8 * sum(t.numel() for t in module.state_dict().values() if not t.is_floating_point())
    names = {id(m): n for n, m in module.named_modules()}
    rows = {r.name: r for r in ours.rows}
    seen = set()
    for info in stats.summary_list:
        if not info.is_leaf_layer:
            continue
        name = names[id(info.module)]
        row = rows[name]  # every torch module is a row of the summary
        seen.add(name)
        assert [d.evaluate({"N": 1}) for d in row.output.shape] == list(info.output_size), name
        assert row.params == info.trainable_params, name
    assert {r.name for r in ours.rows if r.params} <= seen
    assert len(seen) >= (7 if model == "LeNet5" else 40)  # tanh is no module


def test_lenet_memory_and_bytes_by_hand(capsys):
    s = nnspec.load(str(ROOT / "specs" / "lenet5.nn")).summary()
    outputs = {"conv_0": 6 * 28 * 28, "tanh_0": 6 * 28 * 28, "avgpool_0": 6 * 14 * 14,
               "conv_1": 16 * 10 * 10, "tanh_1": 16 * 10 * 10, "avgpool_1": 16 * 5 * 5,
               "dense_0": 120, "tanh_2": 120, "dense_1": 84, "tanh_3": 84, "dense_2": 10}
    image = 32 * 32
    # training: the input and every layer's output but flatten's (a view of its input)
    assert s.training_bytes == Dim.const(4 * (image + sum(outputs.values())))
    # inference: a chain, so the peak is the largest input + output of one layer (tanh_0)
    pairs = [image + outputs["conv_0"]] + [a + b for a, b in zip(
        list(outputs.values()), list(outputs.values())[1:])]
    assert s.inference_bytes == Dim.const(4 * max(pairs)) == Dim.const(4 * 2 * 6 * 28 * 28)
    assert s.weight_bytes == 4 * 61706 and s.batch == "N"
    data = _summary_json(capsys, str(ROOT / "specs" / "lenet5.nn"), "--dtype", "float64")
    m = data["models"][0]
    assert m["weight_bytes"] == 8 * 61706 and m["dtype"] == "float64"
    assert m["activation_bytes"] == {"inference": 8 * 2 * 6 * 28 * 28,
                                     "training": 8 * (image + sum(outputs.values()))}
    assert [r["params"] for r in m["layers"]] == [156, 0, 0, 2416, 0, 0, 0, 48120, 0, 10164,
                                                  0, 850]
    assert abs(sum(r["param_percent"] for r in m["layers"]) - 100) < 1e-6
    assert m["layers"][0]["inputs"] == [["N", 1, 32, 32]]
    assert m["layers"][0]["output"] == ["N", 6, 28, 28] and m["macs"] == "422824*N"


def test_symbolic_memory_is_a_formula_or_unknown_until_bound(capsys):
    path = str(ROOT / "specs" / "gru_sentiment.nn")
    m = _summary_json(capsys, path)["models"][0]
    assert m["activation_bytes"]["inference"] is None
    assert isinstance(m["activation_bytes"]["training"], str) and "T" in m["activation_bytes"][
        "training"]
    bound = _summary_json(capsys, path, "--dim", "T=10")["models"][0]["activation_bytes"]
    assert isinstance(bound["inference"], int) and isinstance(bound["training"], int)
    assert bound["training"] == Dim.parse(m["activation_bytes"]["training"]).evaluate({"T": 10})
    assert cli.main(["summary", path]) == 0
    out = capsys.readouterr().out
    assert "? inference" in out and "--dim T=SIZE" in out


def test_depth_folds_block_calls():
    spec = nnspec.load(str(ROOT / "specs" / "resnet18.nn"))
    full = spec.summary()
    one = spec.summary(depth=1)
    assert [r.name for r in one.rows] == ["conv1", "bn1", "relu_0", "maxpool_0", "layer1",
                                          "layer2", "layer3", "layer4", "avgpool_0",
                                          "flatten_0", "fc"]
    by = {r.name: r for r in one.rows}
    assert by["layer1"].kind == "Basic * 2" and by["layer2"].kind == "Layer"
    for name in ("layer1", "layer2", "layer3", "layer4"):
        members = [r for r in full.rows if r.name.startswith(name + ".")]
        assert by[name].params == sum(r.params for r in members)
        assert by[name].buffers == sum(r.buffers for r in members)
        assert by[name].layers == len(members)
        assert by[name].output == members[-1].output
    assert str(by["layer2"].inputs[0]) == "[N, 64, 56, 56]"
    assert sum(r.params for r in one.rows) == full.params == 11689512
    assert one.macs == full.macs
    two = spec.summary(depth=2)
    assert [r.name for r in two.rows if r.name.startswith("layer4")] == [
        "layer4.down_0", "layer4.basic_0"]
    assert [r.kind for r in two.rows if r.name.startswith("layer4")] == ["Down", "Basic"]
    assert len(spec.summary(depth=10).rows) == len(full.rows)
    assert cli.main(["summary", str(ROOT / "specs" / "resnet18.nn"), "--depth", "0"]) == 2


def test_units():
    assert summary.fmt_bytes(1536, "binary") == "1.5 KiB"
    assert summary.fmt_bytes(1536, "si") == "1.5 kB"
    assert summary.fmt_bytes(999, "si") == "999 B"
    assert summary.fmt_bytes(46796608, "si") == "46.8 MB"
    assert summary.fmt_bytes(46796608, "binary") == "44.6 MiB"
    assert summary.fmt_bytes(None) == "?"
    assert summary.fmt_bytes(Dim.parse("2568*T + 2056")) == "2,568*T + 2,056 B"


def test_narrow_table_fits_100_columns_for_every_bundled_spec(capsys):
    for path in SPECS:
        assert cli.main(["summary", "--narrow", str(path)]) == 0
        out = capsys.readouterr().out
        assert "total:" in out
        too_wide = [line for line in out.splitlines() if len(line) > 100]
        assert not too_wide, (path.name, too_wide[:1])


def test_json_has_one_shape_and_numbers_as_numbers(capsys):
    one = _summary_json(capsys, str(ROOT / "specs" / "lenet5.nn"))
    two = _summary_json(capsys, str(ROOT / "specs" / "autoencoder_mlp.nn"))
    assert one.keys() == two.keys() == {"version", "models"}
    assert len(one["models"]) == 1 and len(two["models"]) >= 2
    for m in one["models"] + two["models"]:
        assert isinstance(m["params"], int) and isinstance(m["weight_bytes"], int)
        for row in m["layers"]:
            assert all(isinstance(d, int) or not d.isdigit() for d in row["output"])
    huge = _summary_json(capsys, str(ROOT / "specs" / "dense_1e12.nn"))["models"][0]
    assert huge["params"] == 1_000_001_000_000


def _table(capsys, *args) -> list[str]:
    assert cli.main(["summary", *args]) == 0
    return capsys.readouterr().out.splitlines()


def _row(lines: list[str], name: str) -> str:
    return next(line for line in lines if line.split() and line.split()[0] == name)


def test_blocks_are_a_tree_and_internal_rows_hidden_unless_all(monkeypatch, capsys):
    gpt2 = str(ROOT / "specs" / "gpt2.nn")
    lines = _table(capsys, gpt2)
    names = [line[2:].split()[0] for line in lines[3:] if line.startswith("  ") and
             not line.startswith("  total")]
    assert names[:8] == ["transformer", "wte", "wpe", "drop", "h", "0", "ln_1", "attn"]
    attn = lines.index(_row(lines, "attn"))
    assert lines[attn].startswith("        attn ") and "CausalSelfAttention" in lines[attn]
    assert lines[attn + 1].startswith("          c_attn ")
    assert lines[attn + 2].split()[0] == "sdpa_0"  # chunk, items, reshapes, transposes hidden
    assert lines[attn].split()[-1] == "--"  # a block's row: its layers hold the figures
    assert not any(w in line for line in lines for w in ("item_0", "pack_0", "reshape_0"))
    assert "  (144 internal rows not shown: --all shows them)" in lines
    monkeypatch.setenv("COLUMNS", "160")
    every = _table(capsys, gpt2, "--all")
    assert any(line.split()[0] == "item_0" for line in every if line.split())
    assert not any("internal rows" in line for line in every)
    # the figures are the same whatever is shown
    assert lines[-6:-2] == every[-5:-1] and "total: 124,439,808" in lines[-6]


def test_connected_to_names_what_a_join_reads(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "250")
    lines = _table(capsys, str(ROOT / "specs" / "resnet18.nn"))
    head = lines[1]
    col = head.index("connected to")
    adds = [line for line in lines if line.split()[:1] == ["add_0"]]
    assert len(adds) == 8
    assert adds[0][col:].split("  ")[0] == "bn2, maxpool_0"  # y + x in layer1.0
    assert adds[1][col:].split("  ")[0] == "bn2, 0"  # x is block layer1.0's output
    assert _row(lines, "conv1")[col:].strip().startswith("9,408")  # a chain: blank
    s = nnspec.load(str(ROOT / "specs" / "resnet18.nn")).summary(depth=1)
    assert {r.name: r.connected for r in s.rows}["layer2"] == ["layer1.1.relu_1"]


def test_arguments_as_written_and_shared_layers_marked(tmp_path, monkeypatch, capsys):
    lines = _table(capsys, str(ROOT / "specs" / "capsnet.nn"), "--json")
    rows = {r["name"]: r for r in json.loads("\n".join(lines))["models"][0]["layers"]}
    assert rows["capsule_mask_0"]["args"] == "label=label"
    assert rows["capsule_mask_0"]["connected_to"] == ["digitcaps", "label"]
    assert rows["pack_0"]["internal"] and not rows["digitcaps"]["internal"]
    seq = nnspec.load(str(ROOT / "specs" / "seq2seq_gru.nn")).summary("Seq2Seq")
    gru = next(r for r in seq.rows if r.name == "decoder.gru")
    assert "h0=h0" in gru.args and "[1, N, 256]" not in gru.args
    text = ("model Siamese(a: [N, 6], b: [N, 6]) {\n"
            "    u = a | dense 8 as fc\n    v = b | fc\n    return u + v\n}\n")
    s = nnspec.loads(text).summary()
    assert [r.shared for r in s.rows] == [False, True, False] and s.params == 56
    path = tmp_path / "siamese.nn"
    path.write_text(text)
    monkeypatch.setenv("COLUMNS", "200")
    out = _table(capsys, str(path))
    fcs = [line.split()[:3] for line in out if line.split()[:1] == ["fc"]]
    assert fcs == [["fc", "dense", "out=8"], ["fc", "dense", "(shared)"]]
    assert _row(out, "add_0").split()[-4] == "fc"  # a join reads both applications of fc


@pytest.mark.parametrize("width, gone", [
    (250, []), (160, ["args"]), (120, ["args", "input", "connected to"]),
    (100, ["args", "input", "connected to"]),
])
def test_width_drops_columns_in_order_and_never_cuts_shapes(width, gone, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", str(width))
    lines = _table(capsys, str(ROOT / "specs" / "resnet18.nn"))
    head = lines[1]
    for col in ("args", "input", "connected to", "%"):
        assert (col not in head.split("  ")) == (col in gone) or col.strip() in head, col
    assert all(len(line) <= width for line in lines)
    full = nnspec.load(str(ROOT / "specs" / "resnet18.nn")).summary()
    shapes = {str(r.output) for r in full.rows}
    assert shapes <= {s for line in lines for s in shapes if s in line}
    assert summary.table_width(True, __import__("sys").stdout) == 100
