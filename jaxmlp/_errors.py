"""The errors several modules raise, each defined once."""


class RunError(ValueError):
    """A run folder or one of its files cannot be used; the message names it."""


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is neither prepared where we looked nor obtainable (offline, no files)."""


class DatasetError(ValueError):
    """The dataset was found but cannot be used: corrupt, or not image classification."""


class Invalid(ValueError):
    """A value that breaks a rule. ``str()`` is the whole message, the value included (for
    the caller who gave it); ``rule`` says what is wrong without the value: how a reader of
    a file reports it, never quoting what the file holds."""

    def __init__(self, rule: str, got=None, *, message=None):
        super().__init__(message or (rule if got is None else f"{rule}, got {got}"))
        self.rule = rule


class WrongType(Invalid, TypeError):
    """``Invalid`` for a value of the wrong type (a ``TypeError`` too)."""


def without_value(e: Exception, fallback: str) -> str:
    """What ``e`` says without quoting a value: its ``rule``, else ``fallback``."""
    return e.rule if isinstance(e, Invalid) else fallback
