"""Keys a mutt, aerc or lazygit user reaches for, and a checklist that keeps up with the files
(issue 13): j/k, g/G and home/end on every list; space reviews and moves on, never undoing a
review on the last row; the checklist watches the plan's files; the "plan changed" banner clears."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, OptionList, Static

from relcomm_tui.tui.app import build_app
from relcomm_tui.tui.screens.checklist import ChecklistScreen
from tui_helpers import orion, settle, text_of, user_config, wait_until  # noqa: F401

SIZE = (80, 24)


async def test_list_keys_move_to_first_and_last_row_never_sideways(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#groups", DataTable)
        last = table.row_count - 1
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1
        await pilot.press("G")
        assert table.cursor_row == last
        await pilot.press("g")
        assert table.cursor_row == 0
        await pilot.press("end")
        assert table.cursor_row == last and table.scroll_x == 0
        await pilot.press("home")
        assert table.cursor_row == 0
        # The findings list answers to the same keys.
        await pilot.press("f")
        findings = app.screen.query_one("#findings", OptionList)
        assert findings.has_focus
        await pilot.press("f")
        assert table.has_focus, "f again goes back to the groups"


async def test_space_on_the_last_row_keeps_the_review(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        groups = [g.id for g in app.plan.groups]
        for _ in range(len(groups) + 3):  # pressing on past the last row
            await pilot.press("space")
        assert screen.reviewed == set(groups)
        assert screen.send_lock is None
        await pilot.press("u")
        assert screen.reviewed == set(groups) - {groups[-1]}, "u takes one mark back"


async def test_banner_clears_once_every_group_is_reviewed_again(orion: Path):
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        for _ in app.plan.groups:
            await pilot.press("space")
        orion.write_text(orion.read_text() + "\n# edited after review\n")
        await pilot.press("r")
        await settle(pilot)
        note = screen.query_one("#review-note", Static)
        assert note.display and "review every group again" in text_of(note)
        screen.query_one("#groups", DataTable).move_cursor(row=0)
        for _ in app.plan.groups:
            assert note.display
            await pilot.press("space")
        await pilot.pause()
        assert not note.display, "every group is reviewed again: the banner goes"


async def test_the_checklist_sees_a_fixed_template_without_r(orion: Path):
    template = orion.parent / "templates" / "internal.md.j2"
    good = template.read_text()
    template.write_text(good + "\n{{ release.nosuchfield }}\n")
    app = build_app(orion)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ChecklistScreen)
        assert any(f.severity == "error" for f in screen.findings)
        assert "1 error" in (screen.send_lock or "") or "errors" in (screen.send_lock or "")
        template.write_text(good)
        assert await wait_until(pilot, lambda: screen.findings is not None
                                and not any(f.severity == "error" for f in screen.findings))
        assert "error" not in (screen.send_lock or "")
