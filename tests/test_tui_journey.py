"""The demo journey through the real app: every screen a release engineer reads shows rendered
text, never template source (issue 13: `Call {{ recipient.name }}`, `Reminder: {{ release.name }}`,
`releases/{{ release.version }}.html`).
"""

from __future__ import annotations

import pytest

from pathlib import Path

from textual.screen import ModalScreen
from textual.widgets import DataTable, OptionList

from demo_journey import demo_plan, screen_text, template_source_in, wait_for  # noqa: F401
from relcomm_tui.tui.dialogs.confirm_follow_up import ConfirmFollowUpDialog
from relcomm_tui.tui.dialogs.confirm_send import ConfirmSendDialog
from relcomm_tui.tui.dialogs.manual_done import ManualDoneDialog
from relcomm_tui.tui.screens.preview import PreviewScreen
from relcomm_tui.tui.screens.delivery_detail import DeliveryDetailScreen
from relcomm_tui.tui.screens.receipts import ReceiptsScreen
from relcomm_tui.tui.screens.send import SendScreen
from test_tui_send import confirm, send_done
from tui_helpers import settle, user_config  # noqa: F401


def no_template_source(app, where: str, seen: list[str]) -> None:
    text = screen_text(app)
    seen.append(text)
    shown = template_source_in(text)
    assert not shown, f"{where} shows template source:\n" + "\n".join(shown)
    if not isinstance(app.screen, ModalScreen):
        footer_fits(app, where)


def footer_fits(app, where: str) -> None:
    """The footer's keys end before the last column (a cut footer runs to the edge), help and quit shown."""
    footer = screen_text(app).splitlines()[-1]
    assert len(footer.rstrip()) < app.size.width - 1, f"{where}: the footer is cut: {footer!r}"
    assert "? Help" in footer and "q Quit" in footer, f"{where}: {footer!r}"


@pytest.mark.timeout(600)  # the whole demo journey, every screen: minutes on a loaded 2-core machine
async def test_every_screen_of_the_demo_shows_rendered_text(demo_plan, tmp_path: Path):
    app = demo_plan.app()
    seen: list[str] = []
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        no_template_source(app, "the checklist", seen)
        await pilot.press("f")
        no_template_source(app, "the findings", seen)
        await pilot.press("shift+tab")  # back to the groups
        app.screen.action_focus_groups()
        for _ in app.plan.groups:
            await pilot.press("space")
        await settle(pilot)

        await pilot.press("p")
        await settle(pilot)
        preview = app.screen
        assert isinstance(preview, PreviewScreen)
        for index, communique in enumerate(app.plan.communiques):
            preview.query_one("#communiques", OptionList).highlighted = index
            await settle(pilot)
            no_template_source(app, f"the preview of {communique.id} ({communique.channel})", seen)
            await pilot.press("m")
            await settle(pilot)
            no_template_source(app, f"the raw view of {communique.id}", seen)
            await pilot.press("m")
            await settle(pilot)
        assert any("Writes:" in text and "4.2.0.html" in text for text in seen)

        await pilot.press("escape", "s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmSendDialog)
        no_template_source(app, "the send confirmation", seen)
        await confirm(pilot)
        send = app.screen
        assert isinstance(send, SendScreen)
        await send_done(pilot)
        table = send.query_one("#deliveries", DataTable)
        manual = [ident for ident, row in send.rows.items() if row.channel == "manual"]
        assert manual
        table.move_cursor(row=table.get_row_index(manual[0]))
        await pilot.pause()
        no_template_source(app, "the send screen on a manual step", seen)
        assert "Manual step: Call Dana Chief" in screen_text(app)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ManualDoneDialog)
        no_template_source(app, "the manual-step dialog", seen)
        assert "Call Dana Chief" in screen_text(app)
        await pilot.press("escape")

        demo_plan.server.flush_reports()
        await pilot.press("escape", "c")
        await settle(pilot)
        receipts = app.screen
        assert isinstance(receipts, ReceiptsScreen)
        await wait_for(pilot, lambda: receipts.last_refreshed is not None)
        await settle(pilot)
        no_template_source(app, "the receipts", seen)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, DeliveryDetailScreen)
        no_template_source(app, "the detail view of a delivery", seen)
        await pilot.press("escape")
        await pilot.pause()

        # Follow up one customer who has not confirmed: the reminder's subject is shown rendered.
        rows = [r for r in receipts.visible_rows()
                if r.communique_id == "customer-announcement" and r.standing not in ("confirmed", "bounced")]
        assert rows
        receipts.query_one("#receipts", DataTable).move_cursor(
            row=receipts.query_one("#receipts", DataTable).get_row_index(rows[0].delivery_id))
        await pilot.press("space", "f")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmFollowUpDialog))
        no_template_source(app, "the follow-up confirmation", seen)
        assert "Subject: Reminder: Orion 4.2.0" in screen_text(app)
        await pilot.press("n")
        await settle(pilot)
