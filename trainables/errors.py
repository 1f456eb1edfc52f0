"""The one error a user sees for bad input."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input, reported in the user's terms.

    The message names the field (as a dotted config path), the value given and what is allowed.
    Command-line entry points turn it into one line on stderr and exit code 2.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)
