"""The intermediate representation and its checks: the pydantic IR (``model``), the
validation of an IR that comes from outside (``validate``), the names the torch back end
can hold (``names``), static shape inference (``shapes``), a train section's settings
(``training``), and the checked program every back end and tool reads (``spec``, with its
summaries in ``summary``).

``nnspec.ir.Program`` and friends are the IR's classes (``nnspec.ir.model``);
``Program.from_json`` validates JSON as any input is (``nnspec.ir.validate.load``).
"""

from .model import (  # noqa: F401
    IR_VERSION,
    Assert,
    Check,
    Input,
    LossTerm,
    Model,
    Node,
    Program,
    Training,
    json_schema,
)


def _from_json(cls, text: str | bytes, path: str = "<ir>") -> Program:
    """The program of a JSON IR text, validated as any input is (see
    :mod:`nnspec.ir.validate`); raises :class:`nnspec.ir.validate.IRError`, a ValueError,
    with the diagnostics."""
    from .validate import load

    return load(text, path)


# A classmethod of Program for its users, defined here so that the IR's classes
# (``model``) never import their validation (``validate`` builds them); the validation is
# imported on first use, so that checking a .nn spec never loads it.
Program.from_json = classmethod(_from_json)
