"""``python -m nnspec``: the command line (nnspec.tools.cli)."""

from .tools.cli import main

raise SystemExit(main())
