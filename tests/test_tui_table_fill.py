"""The send screen with many recipients: the table opens with its first screenful and fills the
rest in slices; every row ends up in the table, counted once, reachable with G and by filter. The
table skips Textual's measuring of each new cell (its columns have set widths: widgets/tables.py),
so this also checks that nothing it needed was skipped: the scrollable height, the column widths."""

from __future__ import annotations

from pathlib import Path

from relcomm_tui.plan import load_plan
from relcomm_tui.tui.app import RelcommApp
from relcomm_tui.tui.screens.send import SendScreen
from relcomm_tui.tui.widgets.delivery_table import FIRST_ROWS
from send_helpers import write_plan
from tui_helpers import settle, user_config  # noqa: F401

RECIPIENTS = 700


async def test_a_large_table_fills_in_slices_and_every_row_is_reachable(tmp_path: Path, user_config):
    plan = load_plan(write_plan(tmp_path / "plan", 9, RECIPIENTS))  # nothing is sent: port 9 is never used
    app = RelcommApp(plan, state_dir=tmp_path / "state")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = SendScreen(only=["news"], show_rate=False)
        await app.push_screen(screen)
        table = screen.table
        assert table.row_count == FIRST_ROWS < RECIPIENTS and len(screen.rows) == RECIPIENTS  # all counted at once
        assert screen.counts["queued"] == RECIPIENTS
        for _ in range(500):
            if not table.to_add:
                break
            await pilot.pause(0.02)
        await pilot.pause()
        assert table.row_count == RECIPIENTS and not table.to_add
        assert table.virtual_size.height == RECIPIENTS + 1  # every row one line high, plus the header
        widths = {key.value: column.width for key, column in table.columns.items()}
        assert not any(column.auto_width for column in table.columns.values())
        assert widths["recipient"] > 20  # grew past its minimum towards the longest recipient
        assert sum(widths.values()) + 2 * len(widths) <= 80  # and the table still fits the terminal

        await pilot.press("G")  # the last row, drawn where the table shows it
        await pilot.pause()
        assert table.cursor_row == RECIPIENTS - 1
        shown = "\n".join(strip.text for strip in app.screen._compositor.render_strips())
        assert "customer699@example.com" in shown

        await pilot.press("slash")
        await pilot.press(*"customer69")
        await pilot.pause(0.3)
        assert table.row_count == 11  # customer69 and customer690-699
