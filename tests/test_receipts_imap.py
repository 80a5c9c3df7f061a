"""End to end through IMAP: the loopback server's reports land in a real Dovecot mailbox on
loopback (IMAPS), and refresh reads them with the password from the plan's secret reference."""

from __future__ import annotations

import os

import pytest

from imap_server import DovecotServer
from receipts_helpers import add_to_maildir, render, reply_from, write_plan
from relcomm_tui.delivery.engine import SendEngine
from relcomm_tui.store.ledger import Ledger
from relcomm_tui.demo.mailserver import LoopbackMailServer
from relcomm_tui.plan.loader import load_plan
from relcomm_tui.receipts.refresh import refresh
from relcomm_tui.receipts.status import BOUNCED, CONFIRMED, REACHED, build_status



@pytest.fixture
def dovecot():
    why_not = DovecotServer.available()
    if why_not is not None:
        # .ci/run installs dovecot-imapd and sets RELCOMM_REQUIRE_IMAP, so CI can never skip this.
        if os.environ.get("RELCOMM_REQUIRE_IMAP"):
            pytest.fail(f"IMAP end to end cannot run but RELCOMM_REQUIRE_IMAP is set: {why_not}")
        pytest.skip(f"IMAP end to end: {why_not}")
    server = DovecotServer().start()
    try:
        yield server
    finally:
        server.stop()


async def test_receipts_through_imap(tmp_path, dovecot, monkeypatch):
    monkeypatch.setenv("RELCOMM_TEST_IMAP_PASSWORD", dovecot.password)
    with LoopbackMailServer(maildir=tmp_path / "mail", write_reports_to=dovecot.maildir, report_delay=(0.0, 0.0),
                            mdn_fraction=1.0, seed=7) as smtp:
        path = write_plan(tmp_path / "plan", smtp.port)
        text = path.read_text().replace(
            'sources = [{ maildir = "receipts" }]',
            f'sources = [{{ imap = "{dovecot.url}", password = {{ env = "RELCOMM_TEST_IMAP_PASSWORD" }} }}]')
        path.write_text(text)
        plan = load_plan(path)
        with Ledger.open(tmp_path / "state") as ledger:
            await SendEngine(plan, ledger, render=render).run()
            smtp.flush_reports()
            dovecot.chown()

            result = refresh(plan, ledger)
            assert result.problems == [], dovecot.log()
            assert result.read == 6 and result.matched == 6
            rows = {(r.communique_id, r.recipient_key): r for r in build_status(plan, ledger).rows}
            assert rows["news", "alice@example.com"].standing == CONFIRMED
            assert rows["news", "bob.unknown@example.com"].standing == BOUNCED
            assert rows["news", "bob.unknown@example.com"].reason.startswith("5.1.1")
            assert rows["ops-notice", "dave@example.com"].standing == REACHED

            assert refresh(plan, ledger).read == 0  # UIDVALIDITY:UID already seen
            dave = next(d for d in ledger.deliveries("4.2.0") if d.recipient_key == "dave@example.com")
            add_to_maildir(dovecot.maildir, reply_from("dave@example.com", dave.message_id))
            dovecot.chown()
            again = refresh(plan, ledger)
            assert again.read == 1 and again.matched == 1
            assert build_status(plan, ledger).row(dave.id).standing == CONFIRMED


async def test_a_wrong_imap_password_is_a_problem_with_a_hint(tmp_path, dovecot, monkeypatch):
    monkeypatch.setenv("RELCOMM_TEST_IMAP_PASSWORD", "wrong")
    path = write_plan(tmp_path / "plan", 2525)
    path.write_text(path.read_text().replace(
        'sources = [{ maildir = "receipts" }]',
        f'sources = [{{ imap = "{dovecot.url}", password = {{ env = "RELCOMM_TEST_IMAP_PASSWORD" }} }}]'))
    plan = load_plan(path)
    with Ledger.open(tmp_path / "state") as ledger:
        result = refresh(plan, ledger)
    assert len(result.problems) == 1 and "cannot read IMAP" in result.problems[0].message
    assert "Authentication failed" in result.problems[0].message and "b'" not in result.problems[0].message
    assert "password reference" in result.problems[0].hint


async def test_a_new_uidvalidity_rereads_the_mailbox_but_counts_each_report_once(tmp_path, dovecot, monkeypatch):
    """Issue 11.2: the server's mailbox is rebuilt (new UIDVALIDITY): every message is new by its
    UID, none is new by its content."""
    monkeypatch.setenv("RELCOMM_TEST_IMAP_PASSWORD", dovecot.password)
    with LoopbackMailServer(maildir=tmp_path / "mail", write_reports_to=dovecot.maildir, report_delay=(0.0, 0.0),
                            mdn_fraction=1.0, seed=7) as smtp:
        path = write_plan(tmp_path / "plan", smtp.port)
        path.write_text(path.read_text().replace(
            'sources = [{ maildir = "receipts" }]',
            f'sources = [{{ imap = "{dovecot.url}", password = {{ env = "RELCOMM_TEST_IMAP_PASSWORD" }} }}]'))
        plan = load_plan(path)
        with Ledger.open(tmp_path / "state") as ledger:
            await SendEngine(plan, ledger, render=render).run()
            smtp.flush_reports()
            dovecot.chown()
            first = refresh(plan, ledger)
            assert first.read == 6 and first.matched == 6, dovecot.log()
            before = {r.delivery_id: r.receipts for r in build_status(plan, ledger).rows}
            assert sum(before.values()) == 6

            dovecot.rebuild_mailbox(4242)
            again = refresh(plan, ledger)
            assert again.problems == [], dovecot.log()
            assert again.read == 6  # every UID is new under the new UIDVALIDITY...
            status = build_status(plan, ledger)
            assert {r.delivery_id: r.receipts for r in status.rows} == before  # ...none counts twice
            assert again.duplicates == 6 and again.new_receipts == 0
            assert refresh(plan, ledger).read == 0
