"""The send screen's table answers to `/` (filter by words) and the list keys (issue 13)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable

from relcomm_tui.tui.screens.send import SendScreen
from test_tui_send import hooks, make_app, orion_plan, server  # noqa: F401
from tui_helpers import settle, user_config  # noqa: F401


async def test_slash_narrows_the_deliveries_and_escape_brings_them_back(orion_plan: Path, tmp_path: Path):
    app = make_app(orion_plan, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = SendScreen(show_rate=False)
        await app.push_screen(screen)
        await pilot.pause()
        table = screen.query_one("#deliveries", DataTable)
        everyone = table.row_count
        assert everyone == len(screen.rows) > 10
        await pilot.press("G")
        assert table.cursor_row == everyone - 1
        await pilot.press("g")
        assert table.cursor_row == 0
        await pilot.press("slash", *"exec-briefing")
        await pilot.pause(0.3)
        await settle(pilot)
        shown = [screen.rows[str(key.value)] for key in table.rows]
        assert shown and all(row.communique_id == "exec-briefing" for row in shown)
        assert table.row_count == sum(row.communique_id == "exec-briefing" for row in screen.rows.values())
        await pilot.press("escape")
        await pilot.pause(0.3)
        await settle(pilot)
        assert table.row_count == everyone
        # Kept with enter, the filter narrows the table; escape there clears it and stays on the
        # send screen (a tired engineer clearing a filter must not land in "stop the send?").
        await pilot.press("slash", *"exec-briefing", "enter")
        await pilot.pause(0.3)
        await settle(pilot)
        assert table.has_focus and table.row_count < everyone
        await pilot.press("escape")
        await pilot.pause(0.3)
        await settle(pilot)
        assert app.screen is screen and table.row_count == everyone
        await pilot.press("escape")  # no filter left: now escape goes back
        await settle(pilot)
        assert app.screen is not screen
