"""The user's own settings (not the plan's): for now the theme the app should open with.

Stored as TOML in platformdirs' user config folder (`~/.config/relcomm/config.toml` on Linux);
`RELCOMM_CONFIG_DIR` points it elsewhere (tests, shared deploy hosts). A missing or unreadable
file is never fatal: the app starts with defaults and says what was wrong.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w
from platformdirs import user_config_dir

from .files import atomic_write

CONFIG_DIR_ENV = "RELCOMM_CONFIG_DIR"
KNOWN_KEYS = {"theme"}


@dataclass(frozen=True)
class UserConfig:
    theme: str | None = None


@dataclass(frozen=True)
class ConfigProblem:
    message: str
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def config_dir() -> Path:
    override = os.environ.get(CONFIG_DIR_ENV)
    return Path(override) if override else Path(user_config_dir("relcomm"))


def config_path() -> Path:
    return config_dir() / "config.toml"


def load_config(path: Path | None = None) -> tuple[UserConfig, ConfigProblem | None]:
    """The saved settings, or defaults plus the reason they could not be read."""
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return UserConfig(), None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        return UserConfig(), ConfigProblem(f"could not read {path}: {error}", "fix or delete the file")
    unknown = sorted(set(data) - KNOWN_KEYS)
    theme = data.get("theme")
    if theme is not None and not isinstance(theme, str):
        return UserConfig(), ConfigProblem(f"{path}: theme must be a string", 'e.g. theme = "relcomm-dark"')
    problem = None
    if unknown:
        problem = ConfigProblem(f"{path}: unknown setting {', '.join(unknown)}", f"known: {', '.join(sorted(KNOWN_KEYS))}")
    return UserConfig(theme=theme), problem


def save_config(config: UserConfig, path: Path | None = None) -> ConfigProblem | None:
    """Write the settings; returns a problem instead of raising (a read-only home is not a crash)."""
    path = path or config_path()
    data = {key: value for key, value in {"theme": config.theme}.items() if value is not None}
    try:
        atomic_write(path, tomli_w.dumps(data).encode("utf-8"))  # a crash mid-write never leaves half a config
    except OSError as error:
        return ConfigProblem(f"could not save settings to {path}: {error}", f"set {CONFIG_DIR_ENV} to a writable folder")
    return None


def remember_theme(name: str) -> ConfigProblem | None:
    current, _ = load_config()
    if current.theme == name:
        return None
    return save_config(UserConfig(theme=name))
