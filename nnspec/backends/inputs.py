"""Errors of a model's run-time inputs, shared by the back ends."""


class InputError(ValueError):
    """An input array does not fit the model's declared input."""
