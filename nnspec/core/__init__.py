"""Foundations every stage shares, importing nothing else of nnspec: source text and spans
(``source``), diagnostics (``diagnostics``), resource limits (``limits``), symbolic
dimensions and the output-size formula (``dims``), and small utilities (``util``)."""
