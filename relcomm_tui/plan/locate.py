"""Find the line a plan key was written on, so messages can point at it.

tomllib keeps no positions, so this scans the source for table headers and keys.
It understands the shapes plans use (tables, arrays of tables, `key = value`).
"""

from __future__ import annotations

import difflib
import functools
import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]+\")\s*=")


def keypath_text(parts: tuple[str | int, ...]) -> str:
    """("communiques", 2, "to") -> "communiques[2].to" (indexes as the user counts them, from 0)."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + (part if len(part) <= 80 else part[:76] + "...")
    return text


@functools.lru_cache(maxsize=8)  # one plan asks for thousands of lines (one per inline member): index it once
def _index(source: str) -> tuple[dict, dict]:
    """Map (table path, key) -> line and table path -> header line."""
    keys: dict[tuple, int] = {}
    headers: dict[tuple, int] = {}
    counts: dict[str, int] = {}
    current: tuple = ()
    for number, line in enumerate(source.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            names = header.group(2).replace('"', "").replace(" ", "").split(".")
            if header.group(1) == "[[":
                dotted = ".".join(names)
                counts[dotted] = counts.get(dotted, -1) + 1
                current = (*names, counts[dotted])
            elif names[0] in counts:
                # A sub-table of the latest array element, e.g. [communiques.headers].
                current = (names[0], counts[names[0]], *names[1:])
            else:
                current = tuple(names)
            headers.setdefault(current, number)
            continue
        key = _KEY.match(line)
        if key:
            keys.setdefault((current, key.group(1).strip('"')), number)
    return keys, headers


def find_line(source: str, parts: tuple[str | int, ...]) -> int | None:
    """Best-effort 1-based line for a key path, or None when it is not written out."""
    keys, headers = _index(source)
    if tuple(parts) in headers:
        return headers[tuple(parts)]
    for cut in range(len(parts) - 1, -1, -1):
        table, key = tuple(parts[:cut]), parts[cut]
        if (table, key) in keys:
            return keys[(table, key)]
        if table and table in headers:
            return headers[table]
    return None


def close_match(word: str, candidates, cutoff: float = 0.6) -> str | None:
    """The candidate closest to `word`, for a "did you mean" hint. A word of thousands of characters
    (a pasted blob, a fuzzer) gets no suggestion: difflib is quadratic and would take minutes."""
    if len(word) > 64:
        return None
    found = difflib.get_close_matches(word, [c for c in list(candidates)[:1000] if len(c) <= 64], n=1, cutoff=cutoff)
    return found[0] if found else None


def shown(value: object, limit: int = 80) -> str:
    """repr() for a message, cut short: a 200,000-character value must not fill the screen."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"
