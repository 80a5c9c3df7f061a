"""One count everywhere (app.board): over a real send of the Orion sample (a loopback aiosmtpd server,
a loopback webhook receiver, a real ledger), the confirm dialog, the send screen, the checklist's
summary, `relcomm status --json`, `relcomm receipts --json` and the report count the same
deliveries: 40 = 33 emails (one per person) + 1 chat post + 1 release page + 1 page to on-call (one post each, whatever
the number of people their groups hold) + 4 manual steps; the follow-up is not part of the send.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

from relcomm_tui.app.review import groups_to_review, sign_off
from relcomm_tui.commands.main import main
from faulty_mailserver import FaultyMailServer, PermFail
from relcomm_tui.demo.webhook_receiver import WebhookReceiver
from relcomm_tui.plan import load_plan
from relcomm_tui.store.ledger import ACCEPTED, AWAITING, REJECTED, Ledger
from relcomm_tui.tui.app import RelcommApp
from relcomm_tui.tui.dialogs.confirm_send import ConfirmSendDialog
from relcomm_tui.tui.screens.checklist import ChecklistScreen
from relcomm_tui.tui.screens.send import SendScreen
from tui_helpers import SAMPLE, without_script, text_of, user_config  # noqa: F401

DELIVERIES = 40


def orion_copy(tmp_path: Path, smtp_port: int, hooks: WebhookReceiver) -> Path:
    folder = tmp_path / "orion"
    shutil.copytree(SAMPLE, folder, ignore=shutil.ignore_patterns(".relcomm"))
    plan = folder / "plan.toml"
    text = plan.read_text(encoding="utf-8").replace("port = 2525", f"port = {smtp_port}")
    plan.write_text(text.replace("http://127.0.0.1:8765/", hooks.url("/")), encoding="utf-8")
    without_script(plan)  # this test is about one send of everything, not the script
    loaded = load_plan(plan)
    with Ledger.open(loaded.state_dir) as ledger:
        sign_off(ledger, loaded, groups_to_review(loaded, []))
    return plan


async def cli_json(capsys, *argv: str) -> dict:
    capsys.readouterr()
    assert await asyncio.to_thread(main, list(argv)) == 0
    return json.loads(capsys.readouterr().out)


async def test_every_view_counts_the_same_deliveries_after_a_real_send(tmp_path: Path, user_config, capsys):
    with FaultyMailServer(maildir=tmp_path / "maildir") as server, WebhookReceiver() as hooks:
        server.faults["priya.raman@orion.example.com"] = PermFail(msg="5.1.1 Priya has left the company")
        plan = orion_copy(tmp_path, server.port, hooks)
        app = RelcommApp(load_plan(plan), allow_commands=True)
        async with app.run_test(size=(100, 30)) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            checklist = app.screen
            assert isinstance(checklist, ChecklistScreen) and checklist.send_lock is None
            await pilot.press("s")
            await pilot.pause()
            dialog = app.screen
            assert isinstance(dialog, ConfirmSendDialog)
            question = text_of(dialog.query_one("#confirm-question"))
            dialog_count = int(re.search(r": (\d+) deliveries over \d+ communiques\?", question).group(1))
            dialog.query_one("Input").value = "4.2.0"
            await pilot.press("enter")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, SendScreen)
            for _ in range(3):
                await app.workers.wait_for_complete([w for w in app.workers if w.group == "send"])
                await pilot.pause()
            screen_total = len(screen.rows)
            overall = text_of(screen.query_one("#overall-count"))
            screen_counts = dict(screen.counts)
            await pilot.press("escape")
            await pilot.pause()
            summary = text_of(checklist.query_one("#send-status"))

        status = await cli_json(capsys, "status", str(plan), "--json")
        receipts = await cli_json(capsys, "receipts", str(plan), "--json")
        capsys.readouterr()
        assert await asyncio.to_thread(main, ["report", str(plan)]) == 0
        report = capsys.readouterr().out
        report_total = int(re.search(r"^\| \*\*all\*\* \| (\d+) \|", report, re.MULTILINE).group(1))

    assert server.messages_accepted == 34  # 35 emails, one refused
    assert dialog_count == screen_total == DELIVERIES
    assert overall.endswith(f"/{DELIVERIES}")
    assert status["total"] == len(status["deliveries"]) == sum(status["counts"].values()) == DELIVERIES
    assert len(receipts["recipients"]) == receipts["overall"]["total"] == DELIVERIES
    assert report_total == DELIVERIES
    # The states agree too: the send screen, status and the checklist's summary.
    accepted = screen_counts[ACCEPTED]
    assert accepted == status["counts"][ACCEPTED] == DELIVERIES - 3  # all but the bounce and the 2 manual steps
    assert screen_counts[REJECTED] == status["counts"][REJECTED] == 1
    assert screen_counts[AWAITING] == status["counts"][AWAITING] == 2
    assert f"{accepted}/{DELIVERIES} accepted" in summary and "1 bounced" in summary
    assert "2 manual steps waiting" in summary and "c receipts" in summary
    assert sum(r["standing"] == "bounced" for r in receipts["recipients"]) == 1
