"""One error family for everything a user can get wrong.

Library code raises these and never exits; ``cli.main`` maps each family to an exit code and prints
the one-line message (never a traceback).
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Base class. ``str(err)`` is the one-line message shown to the user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


class UserInputError(EdgekitError):
    """Bad input the user can fix: a recipe, an option, a file path, a device profile."""

    exit_code = 2


class RecipeError(UserInputError):
    """A recipe (or a --set override) is malformed or invalid."""


class DataError(UserInputError):
    """A dataset is missing or unreadable."""


class WeightsError(UserInputError):
    """A weights file does not fit the model it is loaded into."""


class TrainingDiverged(EdgekitError):
    """The loss became NaN/inf or exploded; the build stops with the last good checkpoint kept."""


def suggest(name: str, choices) -> str | None:
    """Return a 'did you mean' hint for ``name`` among ``choices``, or None."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else None


#: longest echo of user input in a message: a 25 MB value must not become a 25 MB error line
EXCERPT_CHARS = 60


def excerpt(value, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` (a string as it is) on one line, cut to about ``limit`` characters."""
    try:
        text = value if isinstance(value, str) else repr(value)
    except ValueError:  # an int beyond Python's digit limit for str()
        return "<a number too long to show>"
    cut = text[:limit]
    shown = "".join(char if char.isprintable() else repr(char)[1:-1] for char in cut)
    return shown if len(text) <= limit else f"{shown}... ({len(text)} characters)"
