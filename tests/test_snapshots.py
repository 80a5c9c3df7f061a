"""Snapshots of each screen at 80x24 and 120x40 in the default theme (pytest --snapshot-update to refresh).

Every screen shows only plan-relative paths and no clock, so the pictures are the same on any machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from relcomm_tui.tui.app import build_app
from tui_helpers import orion, settle, user_config  # noqa: F401

SIZES = [(80, 24), (120, 40)]


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_checklist(snap_compare, orion: Path, size):
    assert snap_compare(build_app(orion), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_checklist_half_reviewed(snap_compare, orion: Path, size):
    async def review_two(pilot):
        await settle(pilot)
        await pilot.press("space", "space")
        await settle(pilot)

    assert snap_compare(build_app(orion), terminal_size=size, run_before=review_two)


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_preview(snap_compare, orion: Path, size):
    async def open_preview(pilot):
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)

    assert snap_compare(build_app(orion), terminal_size=size, run_before=open_preview)


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_help(snap_compare, orion: Path, size):
    async def open_help(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(build_app(orion), terminal_size=size, run_before=open_help)


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("communique", ["eng-chat", "release-page", "exec-briefing"])
def test_preview_of_each_channel(snap_compare, orion: Path, size, communique):
    async def open_preview(pilot):
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        ids = [c.id for c in pilot.app.plan.communiques]
        pilot.app.screen.query_one("#communiques").highlighted = ids.index(communique)
        await settle(pilot)

    assert snap_compare(build_app(orion), terminal_size=size, run_before=open_preview)


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_preview_raw_webhook_request(snap_compare, orion: Path, size):
    async def open_raw(pilot):
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        ids = [c.id for c in pilot.app.plan.communiques]
        pilot.app.screen.query_one("#communiques").highlighted = ids.index("eng-chat")
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)

    assert snap_compare(build_app(orion), terminal_size=size, run_before=open_raw)
