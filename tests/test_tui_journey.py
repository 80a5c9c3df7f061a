"""The demo journey through the real app: every screen a release engineer reads shows rendered
text, never template source (issue 13: `Call {{ recipient.name }}`, `Reminder: {{ release.name }}`,
`releases/{{ release.version }}.html`).
"""

from __future__ import annotations

import asyncio

import pytest

from pathlib import Path

from textual.screen import ModalScreen
from textual.widgets import DataTable, OptionList

from demo_journey import demo_plan, screen_text, template_source_in, wait_for  # noqa: F401
from relcomm_tui.store.ledger import AWAITING
from relcomm_tui.tui.dialogs.ask import AskDialog
from relcomm_tui.tui.dialogs.confirm_follow_up import ConfirmFollowUpDialog
from relcomm_tui.tui.dialogs.confirm_send import ConfirmSendDialog
from relcomm_tui.tui.dialogs.manual_done import ManualDoneDialog
from relcomm_tui.tui.screens.preview import PreviewScreen
from relcomm_tui.tui.screens.delivery_detail import DeliveryDetailScreen
from relcomm_tui.tui.screens.receipts import ReceiptsScreen
from relcomm_tui.tui.screens.send import SendScreen
from test_tui_send import confirm
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


async def follow_script(pilot, send: SendScreen, seen: list[str], *, seconds: float = 180.0) -> None:
    """Play the engineer through the demo's script, as `relcomm demo` asks of them: tick each manual
    task, release the checkpoint, skip the waits (each asks first). Every screen on the way is
    checked; bounded, so a script that stops moving fails here instead of hanging the suite."""
    app = pilot.app
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not (send.script is not None and send.script.complete and not send.running):
        state = send.script
        assert loop.time() < deadline, f"the demo's script stopped moving: {state.summary() if state else None}"
        awaiting = [ident for ident, row in send.rows.items() if row.channel == "manual" and row.state == AWAITING]
        if state is None or app.screen is not send:
            await pilot.pause(0.05)
        elif awaiting:
            table = send.query_one("#deliveries", DataTable)
            table.move_cursor(row=table.get_row_index(awaiting[0]))
            await pilot.pause()
            no_template_source(app, "the send screen on a manual step", seen)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ManualDoneDialog))
            no_template_source(app, "the manual-step dialog", seen)
            await pilot.press("enter")  # the note is optional
            await wait_for(pilot, lambda: send.rows[awaiting[0]].state != AWAITING)
        elif send.check_action("release_checkpoint", ()) or send.check_action("skip_wait", ()):
            at_checkpoint = send.check_action("release_checkpoint", ())
            no_template_source(app, "the send screen " + ("at the checkpoint" if at_checkpoint else "waiting"), seen)
            await pilot.press("r" if at_checkpoint else "w")
            await wait_for(pilot, lambda: isinstance(app.screen, AskDialog))
            no_template_source(app, "the question before the script goes on", seen)
            await pilot.press("y")
            await pilot.pause(0.1)
        else:
            await pilot.pause(0.05)


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
        await follow_script(pilot, send, seen)
        assert any("Manual step: Call Dana Chief" in text for text in seen)
        assert any("Call Dana Chief" in text for text in seen if "Manual step done" in text)
        # The script is done: nothing to release or skip, so the footer offers the receipts instead.
        await pilot.pause()
        footer = screen_text(app).splitlines()[-1]
        assert "c Receipts" in footer and "Release" not in footer and "Skip wait" not in footer, footer

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
