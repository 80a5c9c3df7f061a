"""Each reason that keeps Send locked, alone (issue 15): every test reviews the Orion sample as a user
does, breaks exactly one thing, and checks the lock names that reason and nothing else, and that
pressing `s` opens nothing.

Each of these was seen to fail with the reason taken out of the lock rule (a `severity == "errors"`
typo; the "no release gate configured", "plan on disk does not load", "not reviewed" and "gate not
passed" lines removed one at a time). They drive the real app through Pilot, so they hold wherever
the rule lives (tui/screens/checklist.py today, relcomm_tui/app/readiness.py after issue 13).
"""

from __future__ import annotations

import re
from pathlib import Path

from textual.widgets import DataTable, Static

from relcomm_tui.plan import consent
from relcomm_tui.plan import load_plan
from relcomm_tui.tui.app import build_app
from relcomm_tui.tui.screens.checklist import ChecklistScreen
from tui_helpers import orion, settle, text_of, user_config  # noqa: F401

SIZE = (80, 24)
GROUPS = 6  # rows of the Orion sample's group table; 5 of them required (engineering is not)


async def review(pilot, screen: ChecklistScreen, rows: int = GROUPS) -> None:
    """Mark the first `rows` groups reviewed with the space key, as a user does."""
    table = screen.query_one("#groups", DataTable)
    table.focus()
    table.move_cursor(row=0)
    for _ in range(rows):
        await pilot.press("space")  # marks the row and moves down
    await settle(pilot)


async def assert_locked_by(pilot, screen: ChecklistScreen, reason: str) -> None:
    """Locked for exactly this reason, said on the status line, and `s` opens nothing: it says why
    (issue 13: `s` stays in the footer and answers with the lock's reasons)."""
    assert screen.send_lock == f"Send locked: {reason}"
    assert text_of(screen.query_one("#send-status", Static)) == f"Send locked: {reason}"
    stack = list(pilot.app.screen_stack)
    said = len(pilot.app._notifications)
    await pilot.press("s")
    await settle(pilot)
    assert len(pilot.app._notifications) == said + 1, "s on a locked checklist said nothing"
    assert pilot.app.screen is screen, f"s opened {type(pilot.app.screen).__name__} on a locked checklist"
    assert list(pilot.app.screen_stack) == stack  # no dialog either


async def test_the_sample_reviewed_is_ready_so_each_lock_below_comes_from_its_one_change(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        await review(pilot, screen)
        assert screen.send_lock is None
        assert screen.check_action("send", ()) is True


async def test_an_error_finding_locks_send(orion: Path):
    # One invalid address in a required group: an error finding, nothing else wrong.
    orion.write_text(orion.read_text().replace("tom.becker@orion.example.com", "tom.becker@@orion"))
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        errors = [f for f in screen.findings if f.severity == "error"]
        assert [f.id for f in errors] == ["address-invalid"]
        await review(pilot, screen)
        await assert_locked_by(pilot, screen, "1 error")


async def test_two_error_findings_are_counted(orion: Path):
    text = orion.read_text().replace("tom.becker@orion.example.com", "tom.becker@@orion")
    orion.write_text(text.replace("lucia.ortiz@orion.example.com", "lucia.ortiz@"))
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert sum(f.severity == "error" for f in screen.findings) == 2
        await review(pilot, screen)
        await assert_locked_by(pilot, screen, "2 errors")


async def test_no_release_gate_configured_warns_but_does_not_lock(orion: Path):
    """One rule for the app and `relcomm send` (app/readiness.py): a plan without a gate is sent,
    with a warning said where the engineer confirms. Without the warning the app would send a
    gate-less plan silently."""
    text = orion.read_text()
    assert 'gate = "scripts/release-ok.sh"\n' in text
    orion.write_text(text.replace('gate = "scripts/release-ok.sh"\n', ""))
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert [f.severity for f in screen.findings if f.id == "gate-none"] == ["warning"]  # not an error
        await review(pilot, screen)
        assert screen.send_lock is None
        assert "no release gate" in text_of(screen.query_one("#send-status", Static)).lower()


async def test_a_plan_that_no_longer_loads_on_disk_locks_send(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        await review(pilot, screen)
        assert screen.send_lock is None
        # Edited on disk into something that does not load; r reloads. The last good plan stays on
        # screen, reviewed, but it is not what is on disk: nothing may be sent from it.
        orion.write_text(orion.read_text().replace("[release]", "[release", 1))
        await pilot.press("r")
        await settle(pilot)
        assert "does not load" in text_of(screen.query_one("#problem", Static))
        assert len(screen.reviewed) == GROUPS
        await assert_locked_by(pilot, screen, "the plan on disk does not load (r reloads)")
        # Fixed on disk again: r unlocks... after the changed plan is reviewed again (the same text
        # has the same digest, so the marks still hold).
        orion.write_text(orion.read_text().replace("[release", "[release]", 1))
        await pilot.press("r")
        await settle(pilot)
        assert screen.send_lock is None


async def test_one_required_group_not_reviewed_locks_send(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        await review(pilot, screen, rows=GROUPS - 1)  # all but the last row, exec (required)
        assert "exec" not in screen.reviewed and len(screen.reviewed) == GROUPS - 1
        await assert_locked_by(pilot, screen, "1 required group not reviewed")


async def test_an_optional_group_left_unreviewed_does_not_lock_send(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        await review(pilot, screen)
        table = screen.query_one("#groups", DataTable)
        table.move_cursor(row=table.get_row_index("engineering"))
        await pilot.press("u")  # takes the mark back from the optional group (space only marks: issue 13)
        await settle(pilot)
        assert "engineering" not in screen.reviewed
        assert screen.send_lock is None


async def test_a_failing_gate_alone_locks_send(orion: Path):
    gate = orion.parent / "scripts" / "release-ok.sh"
    gate.write_text("#!/bin/sh\necho 'canary unhealthy'\nexit 1\n")
    consent.allow(load_plan(orion))  # the engineer allowed this script: it runs, and fails
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        # The failing gate is itself an error finding; the lock names both, and nothing else.
        assert [f.id for f in screen.findings if f.severity == "error"] == ["gate-failed"]
        await review(pilot, screen)
        await assert_locked_by(pilot, screen, "1 error · gate not passed")
        assert re.search(r"gate ✗ not passed", text_of(screen.query_one("#release", Static)))
