"""The standard library of blocks that a spec may ``use`` by name (``use transformer``)."""

from pathlib import Path

#: the folder of the library's .nn files
STDLIB = Path(__file__).resolve().parent
