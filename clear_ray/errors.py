"""Errors that end a command with one line for the user instead of a traceback."""


class ConfigError(ValueError):
    """A user-facing configuration mistake; CLIs print it as one line and exit 2."""


class SearchStopped(RuntimeError):
    """The search cannot go on; the message says why and, where it can, what to do."""
