"""The output contract of a composition: ``check Decoder(Encoder) -> x`` says that the
composition returns exactly the type of the innermost model's input x (an autoencoder);
``-> [N, 1, 28, 28]`` states the shape itself. Mismatches name both shapes and the dim."""

from __future__ import annotations

import json

import pytest

import nnspec

AE = """
model Encoder(x: [N, 1, 28, 28]) -> [N, 32, 7, 7] {
    conv 16 k=3 s=2 p=1 | relu
    conv 32 k=3 s=2 p=1 | relu
}
model Decoder(z: [N, 32, 7, 7]) -> [N, 1, 28, 28] {
    convtranspose 16 k=3 s=2 p=1 output_padding=1 | relu
    convtranspose 1 k=3 s=2 p=1 output_padding=1 | sigmoid
}
model Short(z: [N, 32, 7, 7]) {
    convtranspose 16 k=3 s=2 p=1 | relu
    convtranspose 1 k=3 s=2 p=1 | sigmoid
}
model Pair(a: [N, 1, 28, 28], b: [N, 1, 28, 28]) -> [N, 32, 7, 7] {
    Encoder_like = a + b
    conv 16 k=3 s=2 p=1 | conv 32 k=3 s=2 p=1
}
"""


def diags(extra: str):
    spec = nnspec.loads(AE + extra, "ae.nn", strict=False)
    return [(d.span.line, d.span.col, d.code, d.message, d.notes) for d in spec.diagnostics]


LINE = AE.count("\n") + 1  # the line of the first check appended


@pytest.mark.parametrize("contract", ["x", "input", "[N, 1, 28, 28]", "[N, 1, _, _]"])
def test_an_autoencoder_returns_its_input_type(contract):
    assert diags(f"check Decoder(Encoder) -> {contract}\n") == []


def test_a_mismatch_names_both_shapes_and_the_dim():
    (d,) = diags("check Short(Encoder) -> x\n")
    assert d[:4] == (LINE, 25, "E323", "Short(Encoder) does not return Encoder's input x "
                     "[N, 1, 28, 28]: it gives [N, 1, 25, 25]")
    assert d[4] == ["Short(Encoder) gives [N, 1, 25, 25]", "Encoder's input x is [N, 1, 28, 28]",
                    "dim 2: Encoder's input x has 28, the composition gives 25"]


def test_an_explicit_shape_is_exact_symbols_included():
    (d,) = diags("check Decoder(Encoder) -> [M, 1, 28, 28]\n")
    assert d[2] == "E323" and d[4][-1] == ("dim 0: the declared shape has M, the composition "
                                           "gives N")
    (d,) = diags("check Decoder(Encoder) -> [N, 28, 28]\n")
    assert d[3] == ("Decoder(Encoder) returns a rank-4 tensor, but the declared shape has "
                    "rank 3")


def test_the_input_named_must_exist_and_be_unambiguous():
    (d,) = diags("check Decoder(Encoder) -> y\n")
    assert d[:4] == (LINE, 27, "E322", "Encoder has no input 'y' (its inputs: x)")
    (d,) = diags("check Decoder(Pair) -> input\n")
    assert d[2:4] == ("E323", "Pair has 2 inputs (a, b); say which one the composition "
                      "returns")


def test_symbolic_sizes_are_compared_exactly():
    spec = """
model E(x: [N, 1, H, W]) {
    conv 8 k=3 s=2 p=1
}
model D(z: [N, 8, H, W]) {
    convtranspose 1 k=3 s=2 p=1 output_padding=1
}
check D(E) -> x
"""
    got = nnspec.loads(spec, "s.nn", strict=False).diagnostics
    (d,) = got  # 2*(floor((H - 1)/2) + 1) is H only for even H
    assert d.code == "E323"
    assert d.notes[-1].startswith("dim 2: E's input x has H, the composition gives 2*")


def test_the_contract_is_in_the_ir_and_validated(tmp_path, capsys):
    spec = nnspec.loads(AE + "check Decoder(Encoder) -> x\ncheck Decoder(Encoder) -> "
                        "[N, 1, 28, 28]\n", "ae.nn")
    data = json.loads(spec.program.to_json())
    assert data["checks"][0]["returns_input"] == "x"
    assert data["checks"][1]["returns"] == ["N", "1", "28", "28"]
    data["checks"][1]["returns"] = ["N", "1", "28", "27"]
    bad = tmp_path / "ae.json"
    bad.write_text(json.dumps(data))
    from nnspec.tools.cli import main

    assert main(["check", str(bad)]) == 1
    out = capsys.readouterr()
    assert "does not return the declared shape [N, 1, 28, 27]" in out.out + out.err
    data["checks"][1]["returns"] = ["N", "1", "28", "1 +"]
    bad.write_text(json.dumps(data))
    assert main(["check", str(bad)]) == 1
    out = capsys.readouterr()
    assert "checks[1].returns[3]" in out.out + out.err and "[E212]" in out.out + out.err
