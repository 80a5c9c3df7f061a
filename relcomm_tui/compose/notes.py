"""The release-notes section for this version, taken from the plan's notes file (e.g. CHANGELOG.md).

The section is the Markdown under the first heading that names the version (`## 4.2.0 - 2026-11-26`,
`# v4.2.0`), up to the next heading of the same or a higher level.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")

_CACHE: dict[tuple[str, int, int, str], "NotesSection"] = {}


@dataclass(frozen=True)
class NotesSection:
    text: str           # the section's body, without its heading; "" when not found
    found: bool         # a heading naming the version exists
    line: int | None    # its line in the notes file
    problem: str = ""   # why there is no section (file missing, unreadable, no heading)


def version_pattern(version: str) -> re.Pattern[str]:
    # "4.2.0" must not match "14.2.0", "4.2.01" or "4.2.0-rc1".
    return re.compile(rf"(?<![0-9A-Za-z.])v?{re.escape(version)}(?![0-9A-Za-z.+-]*[0-9A-Za-z])")


def find_section(text: str, version: str) -> tuple[str, int | None]:
    pattern = version_pattern(version)
    lines = text.splitlines()
    in_fence = False
    start = level = None
    for number, line in enumerate(lines):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        heading = _HEADING.match(line)
        if not heading:
            continue
        depth = len(heading.group(1))
        if start is None:
            if pattern.search(heading.group(2) or ""):
                start, level = number, depth
        elif depth <= level:  # type: ignore[operator]
            return "\n".join(lines[start + 1:number]).strip("\n"), start + 1
    if start is None:
        return "", None
    return "\n".join(lines[start + 1:]).strip("\n"), start + 1


def notes_section(notes_file: Path | None, version: str) -> NotesSection:
    """The section for `version`, re-read when the file changes on disk."""
    if notes_file is None:
        return NotesSection("", False, None, "no notes file is configured")
    try:
        stat = os.stat(notes_file)
    except FileNotFoundError:
        return NotesSection("", False, None, f"release notes file not found: {notes_file}")
    except OSError as error:
        return NotesSection("", False, None, f"cannot read the release notes file: {error.strerror}")
    key = (str(notes_file), stat.st_mtime_ns, stat.st_size, version)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    try:
        text = notes_file.read_bytes().decode("utf-8-sig")
    except IsADirectoryError:
        return NotesSection("", False, None, f"the release notes path is a folder: {notes_file}")
    except OSError as error:
        return NotesSection("", False, None, f"cannot read the release notes file: {error.strerror}")
    except UnicodeDecodeError:
        return NotesSection("", False, None, "the release notes file is not UTF-8 text")
    body, line = find_section(text, version)
    if line is None:
        section = NotesSection("", False, None, f"no section for {version} in {notes_file.name}")
    else:
        section = NotesSection(body, True, line)
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[key] = section
    return section
