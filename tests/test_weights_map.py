"""``nnspec weights map``: checkpoints matched to specs by structure, loaded and compared
with the models they came from (torchvision's ResNet-18, Hugging Face's GPT-2)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

import nnspec  # noqa: E402
from nnspec.backends.checkpoint import (  # noqa: E402
    CheckpointError,
    MappingError,
    map_weights,
    read_checkpoint,
)
from nnspec.backends.numpy import NumpyModel  # noqa: E402
from nnspec.backends.torch import build_module  # noqa: E402
from nnspec.tools import cli  # noqa: E402

SPECS = Path(__file__).resolve().parents[1] / "specs"
GPT2_CONSTS = {"layers": 2, "d": 32, "heads": 4, "vocab": 100, "context": 16}
GPT2_FLAGS = [f for k, v in GPT2_CONSTS.items() for f in ("--const", f"{k}={v}")]


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main(["weights", "map", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


# ---- torchvision's ResNet-18 ------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet():
    """torchvision's resnet18 with random weights and batchnorm statistics (eval mode)."""
    from _torchvision import models

    torch.manual_seed(0)
    net = models().resnet18().eval()
    with torch.no_grad():
        for name, b in net.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0, 0.1)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
            elif name.endswith("num_batches_tracked"):
                b.fill_(7)
        for name, p in net.named_parameters():
            if "bn" in name or "downsample.1" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
    return net


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_resnet18_loads_and_computes_as_torchvision(resnet, tmp_path, fmt):
    path = tmp_path / f"resnet18.{fmt}"
    state = resnet.state_dict()
    if fmt == "pt":
        torch.save(state, path)
    else:
        safetensors_torch.save_file(state, str(path))
    spec = nnspec.load(str(SPECS / "resnet18.nn"))
    wm = map_weights(spec, path)
    assert wm.ok, wm.problems()
    how = {r.spec: (r.checkpoint, r.how) for r in wm.rows}
    assert how["layer1.1.bn2.running_var"] == ("layer1.1.bn2.running_var", "name")
    assert how["layer2.down_0.conv1.weight"] == ("layer2.0.conv1.weight", "structure")
    assert how["layer3.basic_0.conv2.weight"] == ("layer3.1.conv2.weight", "structure")
    assert how["layer4.down_0.downsample_bn.running_mean"] == \
        ("layer4.0.downsample.1.running_mean", "structure")
    assert not [r for r in wm.rows if r.spec is None]  # nothing of the checkpoint left out
    net = build_module(spec, params=wm.state_dict(), dtype=torch.float64).eval()
    net.load_state_dict(wm.state_dict(), strict=True)
    assert int(net.state_dict()["layer2.down_0.bn1.num_batches_tracked"]) == 7
    x = torch.randn(1, 3, 224, 224, dtype=torch.float64)
    ref = resnet.double()
    try:
        with torch.no_grad():
            want, got = ref(x), net(x)
    finally:
        resnet.float()
    assert _rel(got, want) <= 1e-12


def test_resnet18_from_the_command_line(resnet, tmp_path, capsys):
    ck, out = tmp_path / "resnet18.pt", tmp_path / "renamed.pt"
    torch.save(resnet.state_dict(), ck)
    rc, table, err = _run(capsys, SPECS / "resnet18.nn", ck, "-o", out)
    assert rc == 0, err
    lines = table.splitlines()
    assert lines[0].startswith("ResNet18 <- ") and "(torch, 122 tensors)" in lines[0]
    row = next(line.split() for line in lines if line.startswith("layer2.down_0.conv1.weight"))
    assert row == ["layer2.down_0.conv1.weight", "[128,", "64,", "3,", "3]",
                   "layer2.0.conv1.weight", "structure"]
    assert lines[-1] == ("ResNet18: 122 of 122 keys from the checkpoint (32 by name, 90 by "
                         "structure, 0 transposed); 0 checkpoint tensors left out; no problems")
    assert f"wrote {out}" in err
    renamed = torch.load(out, weights_only=True)
    spec = nnspec.load(str(SPECS / "resnet18.nn"))
    assert list(renamed) == list(spec.state_shapes())
    net = build_module(spec, seed=1)
    net.load_state_dict(renamed, strict=True)
    assert torch.equal(net.layer3.basic_0.conv1.weight, resnet.layer3[1].conv1.weight)


# ---- Hugging Face's GPT-2 -------------------------------------------------------------


def _hf_gpt2():
    if importlib.util.find_spec("torchvision") is not None:  # transformers imports it
        from _torchvision import models

        models()
    transformers = pytest.importorskip("transformers")
    c = GPT2_CONSTS
    config = transformers.GPT2Config(vocab_size=c["vocab"], n_positions=c["context"],
                                     n_embd=c["d"], n_layer=c["layers"], n_head=c["heads"],
                                     bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # biases and layernorms away from their initial 0 and 1
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """(the HF model, its save_pretrained folder with safetensors)."""
    model = _hf_gpt2()
    folder = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(folder, safe_serialization=True)
    return model, folder


def _gpt2_spec():
    return nnspec.load(str(SPECS / "gpt2.nn"), consts=GPT2_CONSTS)


def _hf_logits(model, tokens):
    model.double()
    try:
        with torch.no_grad():
            return model(tokens).logits
    finally:
        model.float()


def test_gpt2_from_save_pretrained_matches_hf_logits(gpt2):
    model, folder = gpt2
    spec = _gpt2_spec()
    wm = map_weights(spec, folder)
    assert wm.ok, wm.problems()
    how = {r.spec: r for r in wm.rows if r.spec}
    qkv = how["transformer.h.1.attn.c_attn.weight"]
    assert (qkv.how, qkv.checkpoint_shape, qkv.note) == ("transposed", (32, 96),
                                                         "HF Conv1D [in, out]")
    assert how["transformer.h.0.attn.c_proj.weight"].how == "transposed"  # square: by layout
    assert how["lm_head.weight"].how == "tied"
    assert how["lm_head.weight"].checkpoint == "transformer.wte.weight"
    tokens = torch.randint(0, GPT2_CONSTS["vocab"], (2, GPT2_CONSTS["context"]))
    want = _hf_logits(model, tokens)
    net = build_module(spec, params=wm.state_dict(), dtype=torch.float64).eval()
    with torch.no_grad():
        got = net(tokens)
    assert _rel(got, want) <= 1e-10
    ref = NumpyModel(spec, params=wm.arrays(np.float64), dtype=np.float64)
    assert _rel(ref(tokens.numpy()), want.numpy()) <= 1e-10


def test_gpt2_torch_state_dict_lists_masks_and_the_tied_head(gpt2, tmp_path):
    """A torch state_dict as older transformers saved it: a causal-mask buffer ``attn.bias``
    and ``attn.masked_bias`` per block (ignored, and listed), lm_head.weight as the very
    tensor of wte (a duplicate)."""
    model, _ = gpt2
    state = {}
    for k, v in model.state_dict().items():
        state[k] = v
        if k.endswith("ln_1.bias"):
            block = k.removesuffix("ln_1.bias")
            state[block + "attn.bias"] = torch.tril(torch.ones(16, 16)).view(1, 1, 16, 16)
            state[block + "attn.masked_bias"] = torch.tensor(-1e4)
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path)
    wm = map_weights(_gpt2_spec(), path)
    assert wm.ok, wm.problems()
    left = {r.checkpoint: (r.how, r.note) for r in wm.rows if r.spec is None}
    assert left == {
        "transformer.h.0.attn.bias": ("ignored", "no spec key takes it"),
        "transformer.h.0.attn.masked_bias": ("ignored", "no spec key takes it"),
        "transformer.h.1.attn.bias": ("ignored", "no spec key takes it"),
        "transformer.h.1.attn.masked_bias": ("ignored", "no spec key takes it"),
        "lm_head.weight": ("duplicate", "the same tensor as transformer.wte.weight")}
    assert "transformer.h.0.attn.bias [1, 1, 16, 16]" in wm.table()
    sd = wm.state_dict()
    assert sd["lm_head.weight"] is sd["transformer.wte.weight"]
    assert torch.equal(sd["transformer.h.0.mlp.c_fc.weight"],
                       model.transformer.h[0].mlp.c_fc.weight.t())


def test_gpt2_bare_model_without_the_prefix(gpt2, tmp_path):
    """GPT2Model's keys (wte.weight, h.0.attn.c_attn.weight: no ``transformer.``) and no
    head: matched by structure, the head tied to the embedding."""
    model, _ = gpt2
    path = tmp_path / "bare.safetensors"
    safetensors_torch.save_file(model.transformer.state_dict(), str(path))
    spec = _gpt2_spec()
    wm = map_weights(spec, path)
    assert wm.ok, wm.problems()
    assert {r.how for r in wm.rows} == {"structure", "transposed", "tied"}
    assert [r.checkpoint for r in wm.rows][:3] == ["wte.weight", "wpe.weight", "h.0.ln_1.weight"]
    tokens = torch.randint(0, GPT2_CONSTS["vocab"], (1, 8))
    net = build_module(spec, params=wm.state_dict(), dtype=torch.float64).eval()
    with torch.no_grad():
        assert _rel(net(tokens), _hf_logits(model, tokens)) <= 1e-10


def test_an_untied_head_is_left_out_and_says_why(gpt2, tmp_path):
    model, _ = gpt2
    state = dict(model.state_dict())
    state["lm_head.weight"] = state["lm_head.weight"].clone()  # its own tensor now
    path = tmp_path / "untied.pt"
    torch.save(state, path)
    wm = map_weights(_gpt2_spec(), path)
    assert wm.ok
    assert [(r.how, r.note) for r in wm.rows if r.checkpoint == "lm_head.weight"] == [
        ("ignored", "the spec ties lm_head.weight to transformer.wte.weight")]


def test_gpt2_sharded_folder(gpt2, tmp_path):
    model, _ = gpt2
    model.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    wm = map_weights(_gpt2_spec(), tmp_path)
    assert wm.ok and len(wm.checkpoint.keys) == 28
    assert torch.equal(wm.state_dict()["transformer.ln_f.bias"], model.transformer.ln_f.bias)


@pytest.mark.parametrize("ext", ["safetensors", "pt"])
def test_gpt2_cli_writes_a_renamed_checkpoint(gpt2, tmp_path, capsys, ext):
    model, folder = gpt2
    out = tmp_path / f"gpt2-nnspec.{ext}"
    rc, table, err = _run(capsys, SPECS / "gpt2.nn", folder, "-o", out, *GPT2_FLAGS)
    assert rc == 0, err
    assert "transposed: HF Conv1D [in, out]" in table
    head = next(line for line in table.splitlines() if line.startswith("lm_head.weight "))
    assert head.split() == ["lm_head.weight", "[100,", "32]", "transformer.wte.weight",
                            "tied:", "the", "spec", "ties", "it", "to", "transformer.wte.weight"]
    spec = _gpt2_spec()
    if ext == "pt":
        state = torch.load(out, weights_only=True)
        assert list(state) == list(spec.state_shapes())
        net = build_module(spec, seed=1, dtype=torch.float64).eval()
        net.load_state_dict(state, strict=True)
    else:  # safetensors holds a shared tensor once: the tied head is its source's
        state = safetensors_torch.load_file(str(out))
        assert set(state) == set(spec.state_shapes()) - {"lm_head.weight"}
        net = build_module(spec, params=state, dtype=torch.float64).eval()
    tokens = torch.randint(0, GPT2_CONSTS["vocab"], (1, 8))
    with torch.no_grad():
        assert _rel(net(tokens), _hf_logits(model, tokens)) <= 1e-10


def test_gpt2_json(gpt2, capsys):
    _, folder = gpt2
    rc, out, err = _run(capsys, SPECS / "gpt2.nn", folder, "--json", *GPT2_FLAGS)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["ok"] and doc["model"] == "GPT2Small" and doc["format"] == "safetensors"
    assert doc["problems"] == []
    row = next(r for r in doc["rows"] if r["spec"] == "transformer.h.0.mlp.c_fc.weight")
    assert row == {"spec": "transformer.h.0.mlp.c_fc.weight", "shape": [128, 32],
                   "checkpoint": "transformer.h.0.mlp.c_fc.weight",
                   "checkpoint_shape": [32, 128], "how": "transposed",
                   "note": "HF Conv1D [in, out]"}


def test_safetensors_reads_only_the_tensors_it_loads(tmp_path):
    """Mapping reads keys and shapes only; the state_dict reads the spec's tensors (as views
    of the mapped file) and never the large tensor nobody takes."""
    model = _hf_gpt2()
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    state["unused.table"] = torch.zeros(4096, 1024)  # 16 MiB
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(state, str(path))
    wm = map_weights(_gpt2_spec(), path)
    assert wm.ok and wm.checkpoint.reads == []
    assert [r.how for r in wm.rows if r.checkpoint == "unused.table"] == ["ignored"]
    sd = wm.state_dict()
    assert sorted(wm.checkpoint.reads) == sorted(set(state) - {"unused.table"})
    wte = sd["transformer.wte.weight"]
    assert torch.equal(wte, model.transformer.wte.weight)
    if os.path.exists("/proc/self/maps"):  # not a copy: the file's (copy-on-write) mapping
        assert _mapped_file(wte) == os.path.realpath(path)


def _mapped_file(t) -> str | None:
    """The file whose memory mapping holds the tensor's data (Linux), if any."""
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= t.data_ptr() < hi:
                return fields[5].strip() if len(fields) > 5 else None
    return None


# ---- problems: named, exit 1, nothing written -----------------------------------------------


SMALL = """
model Small(x: [N, 4]) -> [N, 3] {
    dense 4 as head
    relu
    dense 3 as fc
}
"""


@pytest.fixture()
def small(tmp_path):
    path = tmp_path / "small.nn"
    path.write_text(SMALL)
    return path


def _save(path, **tensors):
    torch.save({k.replace("__", "."): v for k, v in tensors.items()}, path)


def test_a_shape_mismatch_is_named(small, tmp_path, capsys):
    ck, out = tmp_path / "ck.pt", tmp_path / "out.pt"
    _save(ck, head__weight=torch.zeros(4, 4), head__bias=torch.zeros(4),
          fc__weight=torch.zeros(3, 5), fc__bias=torch.zeros(3))
    rc, table, err = _run(capsys, small, ck, "-o", out)
    assert rc == 1
    assert ("nnspec: error: fc.weight: the spec's shape is [3, 4] but the checkpoint's "
            "fc.weight is [3, 5]") in err
    assert "ERROR mismatch: shapes differ" in table
    assert f"{out} not written" in err and not out.exists()
    wm = map_weights(nnspec.load(str(small)), ck)
    with pytest.raises(MappingError, match=r"fc\.weight"):
        wm.state_dict()


def test_renamed_layers_of_other_shapes_are_mismatches_by_position(small, tmp_path):
    ck = tmp_path / "ck.pt"
    _save(ck, a__weight=torch.zeros(4, 4), a__bias=torch.zeros(4),
          b__weight=torch.zeros(2, 4), b__bias=torch.zeros(2))
    wm = map_weights(nnspec.load(str(small)), ck)
    how = {r.spec: (r.checkpoint, r.how) for r in wm.rows}
    assert how == {"head.weight": ("a.weight", "structure"), "head.bias": ("a.bias", "structure"),
                   "fc.weight": ("b.weight", "mismatch"), "fc.bias": ("b.bias", "mismatch")}


def test_an_ambiguous_pair_is_named(tmp_path, capsys):
    spec = tmp_path / "one.nn"
    spec.write_text("model One(x: [N, 4]) -> [N, 4] {\n    dense 4 as head\n}\n")
    ck, out = tmp_path / "ck.pt", tmp_path / "out.safetensors"
    # two layers, each named as unlike "head" as the other
    _save(ck, l1__weight=torch.zeros(4, 4), l1__bias=torch.zeros(4),
          l2__weight=torch.ones(4, 4), l2__bias=torch.ones(4))
    rc, table, err = _run(capsys, spec, ck, "-o", out)
    assert rc == 1 and not out.exists()
    assert ("head.weight [4, 4]: ambiguous: l1.weight or l2.weight fill it equally well"
            in err)
    assert "head.bias [4]: ambiguous: l1.bias or l2.bias fill it equally well" in err
    assert "ERROR ambiguous" in table
    # a name like the spec's breaks the tie
    _save(ck, l1__weight=torch.zeros(4, 4), l1__bias=torch.zeros(4),
          heads__weight=torch.ones(4, 4), heads__bias=torch.ones(4))
    wm = map_weights(nnspec.load(str(spec)), ck)
    assert [(r.spec, r.checkpoint, r.how) for r in wm.rows] == [
        (None, "l1.weight", "ignored"), (None, "l1.bias", "ignored"),
        ("head.weight", "heads.weight", "structure"), ("head.bias", "heads.bias", "structure")]


def test_a_missing_tensor_and_num_batches_tracked(tmp_path):
    spec = tmp_path / "bn.nn"
    spec.write_text("model Bn(x: [N, 3, 8, 8]) -> [N, 5, 8, 8] {\n"
                    "    conv 5 k=3 p=1 as conv\n    batchnorm as bn\n}\n")
    ck = tmp_path / "ck.pt"
    _save(ck, conv__weight=torch.zeros(5, 3, 3, 3), bn__weight=torch.ones(5),
          bn__bias=torch.zeros(5), bn__running_mean=torch.zeros(5),
          bn__running_var=torch.ones(5))
    wm = map_weights(nnspec.load(str(spec)), ck)
    rows = {r.spec: (r.how, r.note) for r in wm.rows}
    assert rows["conv.bias"] == ("missing", "no checkpoint tensor of its role and shape")
    assert rows["bn.num_batches_tracked"] == ("default", "not in the checkpoint: 0")
    assert wm.problems() == ["conv.bias [5]: no checkpoint tensor of its role and shape"]


def test_a_tensor_out_of_order_is_named(small, tmp_path):
    """The checkpoint holds fc's counterpart before head's, in its order and its names'."""
    ck = tmp_path / "ck.pt"
    _save(ck, m__weight=torch.zeros(3, 4), m__bias=torch.zeros(3),
          n__weight=torch.zeros(4, 4), n__bias=torch.zeros(4))
    wm = map_weights(nnspec.load(str(small)), ck)
    assert [(r.spec, r.checkpoint, r.how) for r in wm.rows] == [
        ("head.weight", None, "missing"), ("head.bias", None, "missing"),
        ("fc.weight", "m.weight", "structure"), ("fc.bias", "m.bias", "structure"),
        (None, "n.weight", "ignored"), (None, "n.bias", "ignored")]
    assert wm.problems() == [
        "head.weight [4, 4]: n.weight has its role and shape but is out of order",
        "head.bias [4]: n.bias has its role and shape but is out of order"]


def test_a_torch_file_in_another_order_follows_its_names(small, tmp_path):
    """Modules registered in another order than the spec's layers run: the names place
    them (fc_out after head_in, as fc after head)."""
    ck = tmp_path / "ck.pt"
    _save(ck, fc_out__weight=torch.zeros(3, 4), fc_out__bias=torch.zeros(3),
          head_in__weight=torch.zeros(4, 4), head_in__bias=torch.zeros(4))
    wm = map_weights(nnspec.load(str(small)), ck)
    assert [(r.spec, r.checkpoint) for r in wm.rows] == [
        ("head.weight", "head_in.weight"), ("head.bias", "head_in.bias"),
        ("fc.weight", "fc_out.weight"), ("fc.bias", "fc_out.bias")]
    assert wm.ok


def test_training_checkpoints_and_the_legacy_format(small, tmp_path):
    state = {"head.weight": torch.eye(4), "head.bias": torch.zeros(4),
             "fc.weight": torch.ones(3, 4), "fc.bias": torch.zeros(3)}
    wrapped, legacy = tmp_path / "train.pt", tmp_path / "legacy.pt"
    torch.save({"epoch": 3, "model_state_dict": state, "optimizer": {}}, wrapped)
    torch.save(state, legacy, _use_new_zipfile_serialization=False)  # cannot be mapped
    spec = nnspec.load(str(small))
    wm = map_weights(spec, wrapped)
    assert wm.ok and "the state_dict under 'model_state_dict'" in wm.table().splitlines()[0]
    wm = map_weights(spec, legacy)
    assert wm.ok and torch.equal(wm.state_dict()["fc.weight"], torch.ones(3, 4))


def test_not_a_checkpoint(small, tmp_path, capsys):
    bad, out = tmp_path / "notes.pt", tmp_path / "out.pt"
    bad.write_text("not a checkpoint\n")
    rc, _, err = _run(capsys, small, bad, "-o", out)
    assert rc == 1 and not out.exists()
    assert f"nnspec: error: {bad}: not a checkpoint" in err
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes((20).to_bytes(8, "little") + b"{not json at all}   " + bytes(8))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_checkpoint(fake)
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"not a state_dict \(a list\)"):
        read_checkpoint(tmp_path / "list.pt")


class _Payload:
    """What a malicious pickle would run on load: creating a file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_nothing_in_a_checkpoint_is_executed(small, tmp_path, capsys):
    marker = tmp_path / "ran"
    ck = tmp_path / "evil.pt"
    torch.save({"head.weight": torch.zeros(4, 4), "payload": _Payload(str(marker))}, ck)
    rc, _, err = _run(capsys, small, ck)
    assert rc == 1 and "holds more than tensors" in err and "nothing in it was run" in err
    assert not marker.exists()


def test_usage_errors(small, tmp_path, capsys):
    rc, _, err = _run(capsys, small, tmp_path / "missing.pt")
    assert rc == 2 and f"no such file: {tmp_path / 'missing.pt'}" in err
    ck = tmp_path / "ck.pt"
    _save(ck, head__weight=torch.zeros(4, 4), head__bias=torch.zeros(4),
          fc__weight=torch.zeros(3, 4), fc__bias=torch.zeros(3))
    rc, _, err = _run(capsys, small, ck, "-o", tmp_path / "out.txt")
    assert rc == 2 and "written as .safetensors or .pt" in err
    assert not (tmp_path / "out.txt").exists()
    rc, _, err = _run(capsys, small, ck, "-o", tmp_path / "no" / "out.pt")
    assert rc == 2 and "no such folder" in err
    rc, _, err = _run(capsys, small, ck, "--model", "Other")
    assert rc == 2 and "no model 'Other'" in err
    broken = tmp_path / "broken.nn"
    broken.write_text("model B(x: [N, 4]) -> [N, 5] {\n    dense 3\n}\n")
    rc, out, err = _run(capsys, broken, ck)
    assert rc == 1 and out == "" and "broken.nn:" in err
    rc, out, err = _run(capsys, small, ck, "-q", "-o", tmp_path / "ok.pt")
    assert (rc, out, err) == (0, "", "")
    assert os.path.exists(tmp_path / "ok.pt")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".nnspec-")]
