"""The exception types for what a user must fix, so callers can tell them from bugs and say them in one line."""


class InputError(ValueError):
    """Bad input: the message names the file, key or value and says how to fix it."""


class NoSpaceError(InputError):
    """A full disk: not bad input, but as much the user's to fix, so it is told the same way."""


def first_line(err: BaseException) -> str:
    """An error's first line, to quote inside one sentence; its type where it has no message."""
    return next(iter(str(err).splitlines()), type(err).__name__)
