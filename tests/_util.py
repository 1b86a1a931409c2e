"""Helpers shared by the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def import_source(path: Path, name: str):
    """Import a generated Python file (e.g. the output of `nnspec compile`) as a module."""
    mspec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(mspec)
    sys.modules[name] = mod  # dataclasses and pickling look modules up by name
    try:
        mspec.loader.exec_module(mod)
    finally:
        del sys.modules[name]
    return mod
