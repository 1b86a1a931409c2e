"""Hostile specs: huge literals, deep nesting, runaway expansion and error recovery.

Each input here once crashed nnspec (RecursionError, ValueError from int(), a minute and
6 GB of expansion) or reported only the first of several errors.
"""

from __future__ import annotations

import nnspec
from nnspec.core.limits import MAX_NESTING, MAX_NODES, MAX_WORDS
from nnspec.frontends.nn.parse import MAX_BRACKET_DEPTH


def errors(text: str) -> list[tuple[int, int, str]]:
    spec = nnspec.loads(text, "t.nn", strict=False)
    return [(d.span.line, d.span.col, d.code) for d in spec.diagnostics]


def diags(text: str):
    return nnspec.loads(text, "t.nn", strict=False).diagnostics


# ---- integers ----------------------------------------------------------------------


def test_int_literal_longer_than_pythons_limit_is_located():
    text = "const a = 1" + "0" * 5000 + "\nmodel M(x: [N, 4]) {\n    dense a\n}\n"
    ds = diags(text)
    assert [(d.span.line, d.span.col, d.code) for d in ds] == [(1, 11, "E019")]
    assert "integer literal too large (5,001 digits)" in ds[0].message


def test_int_literal_beyond_int64_in_a_shape():
    assert errors("model M(x: [N, 99999999999999999999]) {\n    relu\n}\n") == [(1, 16, "E019")]
    # the largest int64 is accepted; leading zeros do not make a literal long
    assert errors("model M(x: [N, 9223372036854775807]) {\n    relu\n}\n") == []
    assert errors("model M(x: [N, " + "0" * 60 + "4]) {\n    relu\n}\n") == []


def test_constant_squared_34_times_stops_at_int64():
    lines = ["const a0 = 2"] + [f"const a{i} = a{i - 1} * a{i - 1}" for i in range(1, 35)]
    text = "\n".join(lines) + "\nmodel M(x: [N, 4]) {\n    dense a34\n}\n"
    ds = diags(text)
    # 2^(2^6) is the first beyond int64: line 7 (a6); later constants are silent
    assert [(d.span.line, d.code) for d in ds] == [(7, "E019")]
    assert "beyond int64" in ds[0].message and "10^19" in ds[0].message


def test_symbolic_polynomial_that_doubles_is_refused():
    s = "(A + B + C + D + E + F)"
    text = f"model M(x: [N, {' * '.join([s] * 30)}]) {{\n    relu\n}}\n"
    ds = diags(text)
    assert [d.code for d in ds] == ["E018"]
    assert "more than 256 terms" in ds[0].message


def test_output_size_beyond_int64():
    text = ("model M(x: [N, 4611686018427387904], y: [N, 4611686018427387904]) {\n"
            "    concat(x, y, dim=1)\n}\n")
    ds = diags(text)
    assert [(d.span.line, d.code) for d in ds] == [(2, "E300")]
    assert "9223372036854775808 is beyond int64" in ds[0].message


# ---- nesting -----------------------------------------------------------------------


def test_deep_nesting_is_a_located_error_everywhere():
    n = 50_000
    cases = {
        "brackets": "const a = " + "[" * n + "1" + "]" * n,
        "tuples": "const a = " + "(1, " * n + "1" + ")" * n,
        "floor": "model M(x: [N, " + "floor(" * n + "N / 2" + ")" * n + "]) {\n    relu\n}",
        "negation": "const a = " + "-" * n + "1",
        "sum": "const a = " + " + ".join(["1"] * 10_000),
        "floordiv": "model M(x: [N, " + " // ".join(["N"] * 10_000) + "]) {\n    relu\n}",
        "pipeline plus": "model M(x: [N, 4]) {\n    " + " + ".join(["relu"] * 10_000) + "\n}",
        "annotation": "model M(x: [N, 4]) {\n    relu : [N, " + " * ".join(["1"] * 10_000)
                      + "]\n}",
        "call args": "model M(x: [N, 4]) {\n    " + "relu(" * 2000 + "x" + ")" * 2000 + "\n}",
    }
    for what, text in cases.items():
        ds = diags(text + "\n")
        assert [d.code for d in ds] == ["E029"], (what, [d.render() for d in ds])
        assert any(w in ds[0].message for w in (
            f"nested more than {MAX_NESTING} levels", f"nested more than {MAX_BRACKET_DEPTH}",
            f"more than {MAX_BRACKET_DEPTH} minus signs", f"more than {MAX_WORDS:,} words")), \
            ds[0].message


def test_a_file_of_too_many_words_is_refused_at_the_first_word_too_many():
    text = "model M(x: [N, 4]) {\n" + "    relu\n" * MAX_WORDS + "}\n"
    ds = diags(text)
    # the header is 5 words (`model`, `M(x:`, `[N,`, `4])`, `{`); word MAX_WORDS + 1 is the
    # relu on line MAX_WORDS - 3
    assert [(d.span.line, d.span.col, d.code) for d in ds] == [(MAX_WORDS - 3, 5, "E029")]


def test_bracket_depth_error_is_located_at_the_first_bracket_too_deep():
    text = "model M(x: [N, 4]) {\n    dense " + "(" * 300 + "1" + ")" * 300 + "\n}\n"
    ds = diags(text)
    assert [(d.span.line, d.span.col, d.code) for d in ds] == [(2, 11 + MAX_BRACKET_DEPTH, "E029")]


def test_nesting_within_the_limit_still_works():
    text = "const a = " + "(" * 40 + "1 + 1" + ")" * 40 + "\nmodel M(x: [N, 4]) {\n" \
           "    dense " + "(" * 30 + "a * 2" + ")" * 30 + "\n}\n"
    spec = nnspec.loads(text, "t.nn")
    assert str(spec.output_type("M")) == "[N, 4]"


def test_a_deep_statement_does_not_hide_other_models():
    text = ("model A(x: [N, 4]) {\n    relu : [N, " + " + ".join(["1"] * 500) + "]\n}\n"
            "model B(x: [N, 4]) {\n    conv 3 k=3\n}\n")
    assert [c for _, _, c in errors(text)] == ["E029", "E300"]


# ---- expansion ---------------------------------------------------------------------


def test_block_that_calls_itself_twice():
    text = ("block A(x) {\n    a = x | A()\n    b = x | A()\n    return a + b\n}\n"
            "model M(x: [N, 4]) {\n    A()\n}\n")
    ds = diags(text)
    assert [(d.span.line, d.span.col, d.code) for d in ds] == [(2, 13, "E067"), (3, 13, "E067")]
    assert ds[0].message == "block A calls itself (A -> A)"


def test_mutual_recursion_names_the_cycle():
    text = ("block A(x) {\n    B()\n}\nblock B(x) {\n    A()\n}\n"
            "model M(x: [N, 4]) {\n    A()\n}\n")
    ds = diags(text)
    assert [d.message for d in ds] == ["block A calls itself (A -> B -> A)"]


def test_exponential_expansion_is_refused_with_the_count():
    lines = ["block B0(x) {\n    relu\n}"]
    for i in range(1, 40):
        lines.append(f"block B{i}(x) {{\n    B{i - 1}()\n    B{i - 1}()\n}}")
    text = "\n".join(lines) + "\nmodel M(x: [N, 4]) {\n    B39()\n}\n"
    ds = diags(text)
    assert [d.code for d in ds] == ["E059"]
    assert ds[0].message.startswith("model M expands to more than ")
    # located where the limit is reached, with the chain of calls that leads there
    assert ds[0].notes[-1] == "in block B39, called at t.nn:161:5"


def test_nested_repetition_is_refused():
    text = ("block R(x) {\n    relu * 5000\n}\n"
            "model M(x: [N, 4]) {\n    R() * 5000\n}\n")
    assert [c for _, _, c in errors(text)] == ["E059"]
    # a block that adds no layer still counts
    text = ("block I(x) {\n    return x\n}\nblock R(x) {\n    I() * 5000\n}\n"
            "model M(x: [N, 4]) {\n    R() * 5000\n}\n")
    ds = diags(text)
    assert [d.code for d in ds] == ["E059"]
    assert "layer and block expansions" in ds[0].message


def test_repeat_count_limit():
    ds = diags("model M(x: [N, 4]) {\n    relu * 1000000000\n}\n")
    assert [(d.span.line, d.span.col, d.code) for d in ds] == [(2, 12, "E039")]


def test_recurrent_layer_count_is_bounded():
    ds = diags("model M(x: [N, 3, 4]) {\n    gru 4 layers=100000000\n}\n")
    assert [(d.span.line, d.code) for d in ds] == [(2, "E046")]
    assert f"at most {MAX_NODES:,} stacked layers" in ds[0].message


# ---- every independent error -------------------------------------------------------

FIVE_TYPOS = """\
model M(x: [N, 3, 32, 32]) {
    conv 8 kernal=3
    rleu
    maxpol k=2 stirde=2
    batchnrom
    flatten
    dense 10
}
"""


def test_five_typos_give_five_errors_with_suggestions():
    got = [(d.span.line, d.span.col, d.code, d.message, d.hint.split("?")[0] + "?")
           for d in diags(FIVE_TYPOS)]
    assert got == [
        (2, 12, "E049", "unknown argument 'kernal' for conv", "did you mean 'kernel_size' / 'k'?"),
        (3, 5, "E043", "unknown layer kind 'rleu'", "did you mean 'relu'?"),
        (4, 5, "E043", "unknown layer kind 'maxpol'", "did you mean 'maxpool'?"),
        (4, 16, "E049", "unknown argument 'stirde' for maxpool",
         "did you mean 'stride' / 's' / 'strides'?"),
        (5, 5, "E043", "unknown layer kind 'batchnrom'", "did you mean 'batchnorm'?"),
    ]


def test_two_bad_arguments_on_one_line():
    text = "model M(x: [N, 4]) {\n    dense 10 bais=false init=bogus\n    dense 0\n}\n"
    got = [(d.span.line, d.span.col, d.code) for d in diags(text)]
    assert got == [(2, 14, "E049"), (3, 11, "E046")]
    text = "model M(x: [N, 3, 8, 8]) {\n    conv 0 k=0 s=0\n}\n"
    assert [(c, code) for _, c, code in errors(text)] == [(10, "E046"), (12, "E046"),
                                                          (16, "E046")]


def test_a_syntax_error_does_not_hide_a_shape_error_in_another_model():
    text = ("model A(x: [N, 4]) {\n    dense 4 +\n    relu\n}\n"
            "model B(x: [N, 4]) {\n    conv 3 k=3\n}\n")
    assert [(ln, code) for ln, _, code in errors(text)] == [(2, "E100"), (6, "E300")]


def test_a_broken_block_is_silent_where_it_is_used():
    text = ("block Bad(x) {\n    dense 4 +\n}\n"
            "model A(x: [N, 4]) {\n    Bad()\n    dense 4\n}\n"
            "model B(x: [N, 4]) {\n    conv 3 k=3\n}\n")
    assert [(ln, code) for ln, _, code in errors(text)] == [(2, "E100"), (9, "E300")]


def test_a_broken_constant_is_silent_where_it_is_used():
    text = ("const width = 4 +\n"
            "model A(x: [N, 4]) {\n    dense width\n}\n")
    assert [(ln, code) for ln, _, code in errors(text)] == [(1, "E100")]


def test_the_same_error_in_a_block_is_reported_once():
    text = ("block Bad(x) {\n    dense 4 bais=false\n}\n"
            "model A(x: [N, 4]) {\n    Bad()\n    Bad()\n}\n")
    assert [(ln, code) for ln, _, code in errors(text)] == [(2, "E049")]


def test_errors_after_a_failed_input_are_still_reported():
    # the first layer fails its shape rule; the typo below it is still found
    text = "model A(x: [N, 4]) {\n    dense 4 bais=false\n    relu slope=2\n}\n"
    assert [(ln, code) for ln, _, code in errors(text)] == [(2, "E049"), (3, "E049")]


def test_input_sizes_below_one_are_errors():
    assert errors("model M(x: [N, 0, 3]) {\n    relu\n}\n") == [(1, 12, "E068")]
    assert errors("model M(x: [N, -3]) {\n    relu\n}\n") == [(1, 12, "E068")]


def test_floor_and_ceil_are_not_dimension_names():
    ds = diags("model M(x: [N, 4]) {\n    relu : [N, ceil]\n}\n")
    assert [(d.span.line, d.span.col, d.code, d.message) for d in ds] == [
        (2, 16, "E023", "ceil is a function, not a dimension")]


def test_duplicate_input_and_parameter_names():
    assert errors("model R(x: [N, 2], x: [N, 3]) {\n    relu\n}\n") == [(1, 20, "E069")]
    text = "block B(x, x) {\n    relu\n}\nmodel M(x: [N, 2]) {\n    B()\n}\n"
    assert [(ln, code) for ln, _, code in errors(text)] == [(1, "E069")]


def test_a_50000_character_name_is_clipped_in_the_message():
    spec = nnspec.loads("model M(x: [N, 4]) {\n    " + "a" * 50_000 + "\n}\n", "t.nn",
                        strict=False)
    text = nnspec.SpecError(spec.diagnostics, spec.sources).render()
    first = text.splitlines()[0]
    assert first.startswith("t.nn:2:5: error: unknown layer kind 'aaaa")
    assert " ... " in first and first.endswith("aaaa' [E043]") and len(first) < 1050
    assert len(text) < 2500


def test_lowering_builds_nodes_as_model_construct_would():
    from nnspec.ir import model as ir

    spec = nnspec.loads("model M(x: [N, 4]) {\n    dense 3 bias=false as fc\n    relu\n}\n")
    assert ir._FAST_BUILD is True  # pydantic's layout is the one the fast path sets up
    for node in spec.program.models[0].nodes:
        slow = ir._slow_node(ir.Node, dict(node.__dict__), node.p)
        assert node == slow and node.model_fields_set == slow.model_fields_set
        assert node.model_dump_json() == slow.model_dump_json() and node.p is slow.p


def test_a_deep_loss_expression_is_a_located_limit_not_a_crash():
    """A train section's loss lines are walked by the nesting limit too (a 4,000-deep chain
    of divisions in a loss argument once overflowed the evaluator's recursion)."""
    chain = "1 / " * 4000 + "1"
    text = ("model M(x: [N, 4]) {\n    dense 2\n}\n"
            f"train M(y: [N] int) {{\n    loss cross_entropy(output, y, label_smoothing={chain})\n"
            "    optimizer sgd lr=0.1\n}\n")
    ds = nnspec.loads(text, strict=False).diagnostics
    assert [(d.code, d.span.line) for d in ds] == [("E029", 5)]
