"""Issue 13, command line: `--version`, and the manual-step note's placeholder names nobody."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from textual.app import App
from textual.widgets import Input

from relcomm_tui import __version__
from relcomm_tui.plan import load_plan
from relcomm_tui.tui.dialogs.manual_done import ManualDoneDialog

ROOT = Path(__file__).resolve().parent.parent
ORION = ROOT / "sample_plans" / "orion" / "plan.toml"


def relcomm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relcomm_tui.commands.main", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_version_prints_the_version_and_exits_0() -> None:
    done = relcomm("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"relcomm {__version__}"
    # Also after a plan (`relcomm PLAN --version` is the app's parser): never "PLAN is required".
    after_plan = relcomm(str(ORION), "--version")
    assert after_plan.returncode == 0 and after_plan.stdout.strip() == f"relcomm {__version__}"


def test_help_lists_version() -> None:
    assert "--version" in relcomm("--help").stdout


async def test_the_manual_step_note_placeholder_names_no_one_from_any_plan() -> None:
    class Host(App):
        def on_mount(self) -> None:
            self.push_screen(ManualDoneDialog("Brief Sam Okafor", "Call Sam Okafor"))

    app = Host()
    async with app.run_test() as pilot:
        await pilot.pause()
        placeholder = app.screen.query_one("#manual-note", Input).placeholder
    assert placeholder.startswith("e.g.")
    names = {part for group in load_plan(ORION).groups for member in group.members for part in member.name.split()}
    assert names and not any(name in placeholder.split() or name in placeholder for name in names if len(name) > 2), placeholder
