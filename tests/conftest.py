"""Test-session set-up: torchvision's op schemas are declared before anything imports it
(transformers imports torchvision when it is installed; see _torchvision.py)."""

import importlib.util

if importlib.util.find_spec("torch") is not None:
    from _torchvision import declare_ops

    declare_ops()
