"""relcomm's themes: TOML data files in `themes/`, turned into Textual `Theme`s.

The folder is `<repo>/themes` in a checkout and `relcomm_tui/_data/themes` in an installed wheel
(pyproject force-includes it there).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from textual.theme import Theme

DEFAULT_THEME = "relcomm-dark"
THEME_KEYS = ("name", "primary", "secondary", "accent", "background", "surface", "panel",
              "foreground", "success", "warning", "error", "dark")


@dataclass(frozen=True)
class ThemeProblem:
    file: Path
    message: str

    def __str__(self) -> str:
        return f"{self.file.name}: {self.message}"


def themes_dir() -> Path | None:
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_data" / "themes", package.parent / "themes"):
        if candidate.is_dir():
            return candidate
    return None


def load_themes(folder: Path | None = None) -> tuple[list[Theme], list[ThemeProblem]]:
    """Every theme file in the folder; a broken file is reported, the others still load."""
    folder = folder or themes_dir()
    themes: list[Theme] = []
    problems: list[ThemeProblem] = []
    if folder is None:
        return themes, problems
    for file in sorted(folder.glob("*.toml")):
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            problems.append(ThemeProblem(file, str(error)))
            continue
        unknown = sorted(set(data) - set(THEME_KEYS))
        if unknown or "name" not in data or "primary" not in data:
            problems.append(ThemeProblem(file, f"needs name and primary; unknown keys: {', '.join(unknown) or 'none'}"))
            continue
        try:
            themes.append(Theme(**data))
        except (TypeError, ValueError) as error:
            problems.append(ThemeProblem(file, str(error)))
    return themes, problems


def resolve_theme_name(name: str, available: set[str] | list[str]) -> str | None:
    """The registered theme the user meant: exact, or the short form (`dark` for `relcomm-dark`)."""
    for candidate in (name, f"relcomm-{name}"):
        if candidate in available:
            return candidate
    return None
