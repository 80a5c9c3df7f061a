"""Snapshots of the send screen at 80x24 and 120x40: the typed confirmation (reached as a user
reaches it: every group reviewed on the checklist, then s), and a finished send
with one rejected recipient (pytest --snapshot-update to refresh).

Deterministic by construction: rate and ETA are hidden (show_rate=False), accepted rows show no
server reply (it carries the server's queue id), and Message-IDs get a counter instead of random bits.
"""

from __future__ import annotations

import itertools
import secrets
from pathlib import Path

import pytest
from textual.widgets import DataTable

from relcomm_tui.store.ledger import REJECTED
from faulty_mailserver import FaultyMailServer, PermFail
from relcomm_tui.tui.dialogs.confirm_send import ConfirmSendDialog
from relcomm_tui.tui.screens.checklist import ChecklistScreen
from relcomm_tui.tui.screens.send import SendScreen
from relcomm_tui.demo.webhook_receiver import WebhookReceiver
from test_tui_send import copy_orion, hooks, make_app, send_done, server  # noqa: F401
from tui_helpers import settle, user_config  # noqa: F401

SIZES = [(80, 24), (120, 40)]


@pytest.fixture
def steady_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = itertools.count(1)
    monkeypatch.setattr(secrets, "token_hex", lambda n=None: f"{next(counter):0{2 * (n or 4)}x}")


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_confirmation_dialog(snap_compare, tmp_path: Path, server: FaultyMailServer, hooks: WebhookReceiver,
                             user_config: Path, size):
    app = make_app(copy_orion(tmp_path, server, hooks), tmp_path)

    async def open_send(pilot):
        # As a user does: review every group on the checklist (space marks a row and moves down),
        # see Send unlock, press s, start typing the version.
        await settle(pilot)
        checklist = app.screen
        assert isinstance(checklist, ChecklistScreen)
        table = checklist.query_one("#groups", DataTable)
        table.focus()
        for _ in range(table.row_count):
            await pilot.press("space")
        await settle(pilot)
        assert checklist.send_lock is None, checklist.send_lock
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmSendDialog)
        await pilot.press(*"4.2")

    assert snap_compare(app, terminal_size=size, run_before=open_send)


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_send_finished_with_one_rejected(snap_compare, tmp_path: Path, server: FaultyMailServer,
                                         hooks: WebhookReceiver, user_config: Path, steady_ids, size):
    server.faults["priya.raman@orion.example.com"] = PermFail(msg="5.1.1 Priya has left the company")
    app = make_app(copy_orion(tmp_path, server, hooks), tmp_path)

    async def send_all(pilot):
        await settle(pilot)
        app.push_screen(SendScreen(start=True, show_rate=False))
        await send_done(pilot)
        screen = app.screen
        rejected = next(ident for ident, row in screen.rows.items() if row.state == REJECTED)
        table = screen.query_one("#deliveries", DataTable)
        table.move_cursor(row=table.get_row_index(rejected))
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=send_all)


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_manual_step_done_dialog(snap_compare, tmp_path: Path, server: FaultyMailServer,
                                 hooks: WebhookReceiver, user_config: Path, steady_ids, size):
    app = make_app(copy_orion(tmp_path, server, hooks), tmp_path)

    async def tick(pilot):
        await settle(pilot)
        app.push_screen(SendScreen(start=True, show_rate=False))
        await send_done(pilot)
        screen = app.screen
        manual = next(ident for ident, row in screen.rows.items() if row.channel == "manual")
        table = screen.query_one("#deliveries", DataTable)
        table.move_cursor(row=table.get_row_index(manual))
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
        assert type(app.screen).__name__ == "ManualDoneDialog"
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=tick)
