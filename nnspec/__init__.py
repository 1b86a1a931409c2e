"""nnspec: a declarative model-spec compiler.

``.nn`` text -> Lark parser -> validated IR (pydantic) -> static shapes -> PyTorch module
or NumPy interpreter. See :mod:`nnspec.api` for the Python API.

The API's names are imported on first use, so that the command line starts without them
and sets itself up before pydantic is imported.
"""

__version__ = "0.1.0"

#: the Python API's names and the module each comes from
_API = {"LayerInfo": "api", "Spec": "api", "from_ir": "api", "load": "api", "loads": "api",
        "ConstError": "core.diagnostics", "Diagnostic": "core.diagnostics",
        "SpecError": "core.diagnostics"}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    where = _API.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
