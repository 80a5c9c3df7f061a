"""Shared by the app tests and snapshots: a private copy of the Orion sample and ways to wait for the app.

Each test gets its own plan folder (so review state and edits never leak between tests) and its own
user config folder (so nothing touches ~/.config).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from relcomm_tui.plan import consent
from relcomm_tui.plan import load_plan

SAMPLE = Path(__file__).resolve().parent.parent / "sample_plans" / "orion"


@pytest.fixture
def user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "user-config"
    monkeypatch.setenv("RELCOMM_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def orion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user_config: Path) -> Path:
    """A clean copy of the Orion sample whose gate passes and whose webhook secret resolves."""
    folder = tmp_path / "orion"
    shutil.copytree(SAMPLE, folder, ignore=shutil.ignore_patterns(".relcomm"))
    monkeypatch.setenv("RELCOMM_CHAT_WEBHOOK", "http://127.0.0.1:9/chat-hook")
    consent.allow(load_plan(folder / "plan.toml"))  # the engineer allowed its gate before
    return folder / "plan.toml"


async def settle(pilot: Pilot) -> None:
    """Wait until every worker (checks, renders, reloads) is done and its messages are handled."""
    for _ in range(3):
        try:
            await pilot.app.workers.wait_for_complete()
        except WorkerCancelled:
            pass  # an exclusive worker was replaced by a newer one ("latest wins"); wait for that one
        await pilot.pause()


async def wait_until(pilot: Pilot, condition, *, seconds: float = 5.0) -> bool:
    """For what only a timer can bring (the live preview polls files): check, wait a tick, repeat."""
    steps = int(seconds / 0.05)
    for _ in range(steps):
        await settle(pilot)
        if condition():
            return True
        await pilot.pause(0.05)
    return condition()


def text_of(widget) -> str:
    """The plain text a Static shows."""
    content = widget.content
    return getattr(content, "plain", str(content))
