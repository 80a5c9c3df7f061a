"""Nothing outside relcomm_tui/tui/ (and the `relcomm PLAN` entry point) may import Textual or Rich.

Each module is imported in a fresh interpreter, so a module that only imports Textual through
another one is caught too. Modules are discovered with pkgutil, so new ones are covered at once.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import relcomm_tui

UI_PREFIXES = ("relcomm_tui.tui", "relcomm_tui.commands.app")


def headless_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(relcomm_tui.__path__, prefix="relcomm_tui.", onerror=lambda name: None):
        if info.name.startswith(UI_PREFIXES):
            continue
        names.append(info.name)
    return sorted(names)


def test_discovery_finds_the_layers():
    names = headless_modules()
    for expected in ("relcomm_tui.plan.loader", "relcomm_tui.checks.rules", "relcomm_tui.compose", "relcomm_tui.common.config",
                     "relcomm_tui.commands.main"):
        assert expected in names
    assert not any(name.startswith("relcomm_tui.tui") for name in names)


@pytest.mark.parametrize("module", headless_modules())
def test_module_does_not_import_textual_or_rich(module: str):
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(leaked))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{module} pulls in {result.stdout.strip()}"


def test_the_ui_does_import_textual():
    # The check above would pass vacuously if the subprocess could not see Textual at all.
    code = "import sys, relcomm_tui.tui.themes; print('textual' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "True", result.stderr
