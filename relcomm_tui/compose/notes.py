"""The release-notes section for this version, taken from the plan's notes file (e.g. CHANGELOG.md).

The section is the Markdown under the first heading that names the version (`## 4.2.0 - 2026-11-26`,
`# v4.2.0`), up to the next heading of the same or a higher level. It comes from the notes file's
snapshot in the loaded plan (read once, at load), never from the disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..plan.model import FileSnapshot

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")

_CACHE: dict[tuple[str, str], "NotesSection"] = {}  # (digest, version) -> section: immutable values only


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


def notes_section(snapshot: FileSnapshot | None, version: str) -> NotesSection:
    """The section for `version` in the notes file as the plan loaded it."""
    if snapshot is None:
        return NotesSection("", False, None, "no notes file is configured")
    path = snapshot.path
    if snapshot.text is None:
        problem = {
            "missing": f"release notes file not found: {path}",
            "folder": f"the release notes path is a folder: {path}",
            "special": f"the release notes file is not a regular file: {path}",
            "encoding": "the release notes file is not UTF-8 text",
            "too-large": f"the release notes file is too large ({snapshot.detail}): {path}",
            "moved": f"the release notes file changed while it was read ({snapshot.detail}): {path}",
        }.get(snapshot.problem, f"cannot read the release notes file: {snapshot.detail}")
        return NotesSection("", False, None, problem)
    key = (snapshot.digest, version)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    body, line = find_section(snapshot.text, version)
    if line is None:
        section = NotesSection("", False, None, f"no section for {version} in {path.name}")
    else:
        section = NotesSection(body, True, line)
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[key] = section
    return section
