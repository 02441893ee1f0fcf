"""The one exception type for bad user input, so callers can tell it from bugs."""


class InputError(ValueError):
    """Bad input: the message names the file, key or value and says how to fix it."""
