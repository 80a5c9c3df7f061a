"""The base of every error a user can cause: a message plus a hint on how to fix it."""

from __future__ import annotations


class UserError(Exception):
    """Shown to the user as the message and its hint, never as a traceback."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
