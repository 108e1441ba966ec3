"""The one error type the CLI reports to the user."""

from __future__ import annotations


class CliError(Exception):
    """A failure shown as ``Error: <message>`` on stderr, with exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
