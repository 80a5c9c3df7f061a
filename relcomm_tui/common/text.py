"""Words for counts, shared by the app and the command line so both say the same thing."""

from __future__ import annotations


def plural(count: int, word: str) -> str:
    """`1 group`, `2 groups` (regular English plurals only: every word relcomm counts is one)."""
    return f"{count} {word}{'' if count == 1 else 's'}"
