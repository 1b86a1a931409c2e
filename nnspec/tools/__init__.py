"""The tools that drive the stages: the command line (``cli``), the formatter (``fmt``),
the graph picture (``graph``), the language server (``lsp``), the cross-check of the two
back ends (``crosscheck``), the trainability check (``trainer``) and the Pygments lexer."""
