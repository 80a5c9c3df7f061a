"""Where relcomm's packaged data lives: sample plans (and themes) in a checkout or an installed wheel.

In a checkout they are top-level folders; an installed wheel carries them under
`relcomm_tui/_data/` (pyproject force-includes them there).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # relcomm_tui/ (this module lives in common/)


def data_dir(name: str) -> Path:
    """The folder `name` ("sample_plans", "themes"); raises FileNotFoundError when missing."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"relcomm's {name} folder is missing from this installation; reinstall relcomm")


def sample_plan(name: str = "orion") -> Path:
    return data_dir("sample_plans") / name
