"""Front ends: one folder per input language, each making the IR (``nnspec.ir``).
``nn``: the ``.nn`` text language."""
