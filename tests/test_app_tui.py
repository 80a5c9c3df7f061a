"""The app on the application layer, through Pilot with real servers and ledgers: manual steps are
ticked without review once the send started (from a thread), a run never starts past the one rule,
and the receipts screen's follow-up asks for the SMTP password as a send does (app.credentials)."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import pytest
from textual.widgets import Input

from receipts_helpers import render, write_plan as write_receipts_plan
from relcomm_tui.app.review import groups_to_review, sign_off
from relcomm_tui.commands.main import main
from relcomm_tui.delivery.engine import SendEngine
from faulty_mailserver import FaultyMailServer, PermFail
from relcomm_tui.demo.webhook_receiver import WebhookReceiver
from relcomm_tui.plan import load_plan
from relcomm_tui.store.ledger import AWAITING, MARKED_DELIVERED, REJECTED, Ledger
from relcomm_tui.tui.app import RelcommApp
from relcomm_tui.tui.dialogs.confirm_follow_up import ConfirmFollowUpDialog
from relcomm_tui.tui.dialogs.manual_done import ManualDoneDialog
from relcomm_tui.tui.dialogs.password import PasswordDialog
from relcomm_tui.tui.screens.checklist import ChecklistScreen
from relcomm_tui.tui.screens.receipts import ReceiptsScreen
from relcomm_tui.tui.screens.send import SendScreen
from tui_helpers import SAMPLE, without_script, settle, text_of, user_config  # noqa: F401
from demo_journey import screen_text


async def wait_for(pilot, condition, steps: int = 300) -> None:
    """For what a worker brings (a dialog it pushes, a row it records): check, let the loop run."""
    for _ in range(steps):
        if condition():
            return
        await pilot.pause(0.02)
    assert condition(), "condition not reached"


def orion_sent_then_edited(tmp_path: Path, server: FaultyMailServer, hooks: WebhookReceiver) -> Path:
    """Orion reviewed and sent headless, then edited: its reviews are for the old plan."""
    folder = tmp_path / "orion"
    shutil.copytree(SAMPLE, folder, ignore=shutil.ignore_patterns(".relcomm"))
    plan_file = folder / "plan.toml"
    text = plan_file.read_text(encoding="utf-8").replace("port = 2525", f"port = {server.port}")
    plan_file.write_text(text.replace("http://127.0.0.1:8765/", hooks.url("/")), encoding="utf-8")
    without_script(plan_file)  # this test is about one send of everything, not the script
    plan = load_plan(plan_file)
    with Ledger.open(plan.state_dir) as ledger:
        sign_off(ledger, plan, groups_to_review(plan, []))
    assert main(["send", str(plan_file), "--yes", "--allow-commands"]) == 1  # one refused
    text = plan_file.read_text(encoding="utf-8")
    plan_file.write_text(text.replace("before the public announcement", "before the announcement"), encoding="utf-8")
    return plan_file


async def test_after_a_send_manual_steps_are_ticked_without_review_and_nothing_is_resent(
        tmp_path: Path, user_config, monkeypatch: pytest.MonkeyPatch):
    writers: list[str] = []
    original = Ledger.mark_delivered

    def observed(self, *args, **kwargs):
        writers.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Ledger, "mark_delivered", observed)
    with FaultyMailServer(maildir=tmp_path / "maildir") as server, WebhookReceiver() as hooks:
        server.faults["priya.raman@orion.example.com"] = PermFail(msg="5.1.1 gone")
        plan_file = await asyncio.to_thread(orion_sent_then_edited, tmp_path, server, hooks)
        sent_before = len(server.messages)
        app = RelcommApp(load_plan(plan_file), allow_commands=True)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            checklist = app.screen
            assert isinstance(checklist, ChecklistScreen)
            # Nothing is left to send (done: no lock applies) but sending again, a retry, is locked by the edit.
            assert checklist.readiness().verdict == "done"
            assert "not-reviewed" in checklist.readiness(retry_failed=True).codes()
            status = text_of(checklist.query_one("#send-status"))
            assert status.startswith("Sent ") and "2 manual steps waiting" in status and "1 bounced" in status
            await pilot.press("s")  # opens on where things stand: viewing sends nothing
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, SendScreen)
            # Retrying the refused one is a send: the same rule refuses it, nothing reaches the server.
            assert screen.counts[REJECTED] == 1
            await pilot.press("f")
            await pilot.pause()
            assert not screen.running and len(server.messages) == sent_before
            # Ticking a manual step is not a send: no review needed.
            table = screen.table
            step = next(i for i, row in screen.rows.items() if row.channel == "manual" and row.state == AWAITING)
            table.move_cursor(row=table.get_row_index(step))
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ManualDoneDialog))
            app.screen.query_one(Input).value = "spoke at 17:40"
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.rows[step].state == MARKED_DELIVERED)
            await settle(pilot)
    assert writers and all(name != threading.main_thread().name for name in writers), writers
    with Ledger.open(load_plan(plan_file).state_dir) as ledger:
        record = ledger.delivery(step)
        assert record.state == MARKED_DELIVERED and "spoke at 17:40" in (record.reply or "")


async def test_reopened_at_80_columns_the_whole_send_status_shows(tmp_path: Path, user_config):
    """Reopening after a send, the status line says where things stand and what locks more sending:
    longer than 80 columns, it wraps instead of being cut (seen in tmux: "... · 2 bounced · c")."""
    with FaultyMailServer(maildir=tmp_path / "maildir") as server, WebhookReceiver() as hooks:
        server.faults["priya.raman@orion.example.com"] = PermFail(msg="5.1.1 gone")
        plan_file = await asyncio.to_thread(orion_sent_then_edited, tmp_path, server, hooks)
        app = RelcommApp(load_plan(plan_file), allow_commands=True)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            widget = app.screen.query_one("#send-status")
            status = text_of(widget)
            assert len(status) > 78 and status.endswith("· c receipts · s shows it")
            shown = " ".join(line.strip() for line in screen_text(app).splitlines()[widget.region.y:widget.region.bottom])
            assert " ".join(status.split()) == " ".join(shown.split())
            assert app.screen.query_one("#findings-box").region.height >= 3  # the rest still fits


async def test_a_follow_up_asks_for_the_smtp_password_as_a_send_does(tmp_path: Path, user_config,
                                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("RELCOMM_TEST_SMTP_PW", raising=False)
    with FaultyMailServer(maildir=tmp_path / "mail", auth=("bot", "s3cret"),
                            write_reports_to=tmp_path / "plan" / "receipts", report_delay=(0.0, 0.0),
                            mdn_fraction=1.0, seed=7) as server:
        path = write_receipts_plan(tmp_path / "plan", server.port)
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("timeout = 5", 'timeout = 5\nusername = "bot"\n'
                                     'password = { env = "RELCOMM_TEST_SMTP_PW" }'), encoding="utf-8")
        with Ledger.open(tmp_path / "state") as ledger:
            await SendEngine(load_plan(path), ledger, render=render, password="s3cret").run()
        server.flush_reports()
        app = RelcommApp(load_plan(path), state_dir=tmp_path / "state")
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            screen = ReceiptsScreen(send_options={"render": render}, auto_poll=False)
            await app.push_screen(screen)
            await settle(pilot)
            before = len(server.messages)
            table = screen.query_one("#receipts")
            table.move_cursor(row=0)
            await pilot.press("space", "f")  # follow up the selected one (alice)
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmFollowUpDialog))
            await pilot.press("y")
            # The plan's reference does not resolve: asked, masked, as the send screen asks.
            await wait_for(pilot, lambda: isinstance(app.screen, PasswordDialog))
            assert "RELCOMM_TEST_SMTP_PW" in text_of(app.screen.query_one("#password-why"))
            assert app.screen.query_one(Input).password
            await pilot.press(*"s3cret", "enter")
            await wait_for(pilot, lambda: len(server.messages) > before)
            await settle(pilot)
            assert app.ledger.deliveries("4.2.0", "news-reminder")
