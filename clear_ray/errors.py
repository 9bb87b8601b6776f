"""Errors that end a search with one line for the user instead of a traceback."""


class SearchStopped(RuntimeError):
    """The search cannot go on; the message says why and, where it can, what to do."""
