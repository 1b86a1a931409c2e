"""The command line, run as users run it (a subprocess) where start-up matters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnspec.tools import cli

ROOT = Path(__file__).resolve().parent.parent
ERRORS = ROOT / "tests" / "errors"


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "nnspec", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_check_specs_passes_and_never_imports_torch():
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "nnspec", "check", "specs"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    assert "nnspec.tools.cli" in imported and "nnspec.frontends.nn.lalr" in imported
    assert "lark" not in imported  # specs that parse are parsed without it
    assert not any(m == "torch" or m.startswith("torch.") for m in imported)
    assert "no errors" in r.stderr


def test_check_reports_errors_with_location_and_exit_1():
    r = run("check", str(ERRORS / "shapes.nn"))
    assert r.returncode == 1
    assert f"{ERRORS / 'shapes.nn'}:4:5: error: conv output height is -1 [E301]" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def test_check_json_and_github_formats():
    r = run("check", "--format", "json", str(ERRORS / "names.nn"))
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["files"] == 1
    first = data["errors"][0]
    assert {"file", "line", "col", "message", "code"} <= first.keys()
    r = run("check", "--format", "github", str(ERRORS / "names.nn"))
    assert r.stdout.startswith("::error file=")
    assert ",line=7,col=12," in r.stdout


def test_check_usage_errors_exit_2():
    assert run("check", "no/such/file.nn").returncode == 2
    assert run("frobnicate").returncode == 2
    assert run().returncode == 2


def test_internal_errors_exit_3_in_one_line(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(cli, "cmd_layers", boom)
    assert cli.main(["layers"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError: kaboom" in err
    with pytest.raises(RuntimeError):
        cli.main(["--debug", "layers"])


def test_summary_text_and_json():
    r = run("summary", "specs/lenet5.nn")
    assert r.returncode == 0
    assert "total: 61,706 parameters" in r.stdout
    r = run("summary", "specs/lenet5.nn", "--json")
    data = json.loads(r.stdout)
    assert data["version"] == 1 and len(data["models"]) == 1
    assert data["models"][0]["params"] == 61706
    assert data["models"][0]["layers"][0] == {
        "name": "conv_0", "kind": "conv", "line": 3,
        "args": "out=6 k=(5, 5) s=(1, 1) pads=((0, 0), (0, 0))",
        "inputs": [["N", 1, 32, 32]],
        "output": ["N", 6, 28, 28], "output_text": "[N, 6, 28, 28]", "params": 156,
        "trainable": 156, "non_trainable": 0, "buffers": 0,
        "param_percent": round(100 * 156 / 61706, 4),
        "macs": "117600*N",
        "macs_text": "117,600*N", "layers": 1, "connected_to": ["x"], "internal": False,
        "shared": False}


def test_compile_json_round_trip(tmp_path):
    out = tmp_path / "lenet.json"
    r = run("compile", "specs/lenet5.nn", "--target", "json", "-o", str(out))
    assert r.returncode == 0, r.stderr
    r = run("summary", str(out), "--json")
    assert json.loads(r.stdout)["models"][0]["params"] == 61706


def test_compile_writes_atomically(tmp_path, monkeypatch):
    from nnspec.core import util

    target = tmp_path / "model.json"
    target.write_text("previous contents")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(util.os, "replace", failing_replace)
    with pytest.raises(OSError):
        util.write_atomic(str(target), "new contents")
    assert target.read_text() == "previous contents"
    assert os.listdir(tmp_path) == ["model.json"]


def test_layers_lists_every_kind():
    r = run("layers")
    assert r.returncode == 0
    for kind in ("dense", "conv2d", "maxpool", "batchnorm", "layernorm", "softmax", "reshape"):
        assert f"\n{kind} " in "\n" + r.stdout


def test_huge_model_is_checked_instantly_and_refused_by_crosscheck():
    r = run("summary", "specs/dense_1e12.nn")
    assert r.returncode == 0
    assert "1,000,001,000,000" in r.stdout
    pytest.importorskip("torch")
    r = run("crosscheck", "specs/dense_1e12.nn")
    assert r.returncode == 1
    assert "refusing to allocate" in r.stderr and "8,000,008,000,000 bytes" in r.stderr


def test_compile_emits_every_model_of_a_file(tmp_path):
    pytest.importorskip("torch")
    from _util import import_source

    out = tmp_path / "ae.py"
    r = run("compile", "specs/autoencoder_mlp.nn", "-o", str(out))
    assert r.returncode == 0, r.stderr
    mod = import_source(out, "ae")
    import torch

    z = mod.Encoder()(torch.zeros(3, 784))
    assert tuple(mod.Decoder()(z).shape) == (3, 784)
