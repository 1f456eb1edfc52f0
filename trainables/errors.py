"""The one error a user sees for bad input."""

from __future__ import annotations

MAX_QUOTED = 200
"""Most characters of user input a message quotes (:func:`quote`, :func:`shorten`)."""

MAX_MESSAGE = 2000
"""Most characters of a :class:`ConfigError` message, field included. The longest legitimate
message lists every config path (about 900 characters); anything longer quotes too much."""

ELLIPSIS = "…"


def shorten(text: str, limit: int = MAX_QUOTED) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" where it was cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + ELLIPSIS


def quote(value: object, limit: int = MAX_QUOTED) -> str:
    """``repr(value)`` for a message, cut to at most ``limit`` characters."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's limit on digits to print
        text = f"<an integer of {value.bit_length():,} bits>" if isinstance(value, int) else "?"
    return shorten(text, limit)


class ConfigError(ValueError):
    """Bad user input, reported in the user's terms.

    The message names the field (as a dotted config path), the value given and what is allowed.
    Command-line entry points turn it into one line on stderr and exit code 2, so the message is
    kept to one line (line breaks become spaces) of at most :data:`MAX_MESSAGE` characters, the
    field to at most :data:`MAX_QUOTED`; ``field`` keeps the name in full.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        text = f"{shorten(field)}: {message}" if field else message
        super().__init__(shorten(text.replace("\r", " ").replace("\n", " "), MAX_MESSAGE))
