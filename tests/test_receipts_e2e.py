"""End to end: send through the engine to the loopback server, let it write real DSNs and read
receipts into the plan's receipts Maildir, refresh, and check each recipient's receipt."""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime

import pytest

from receipts_helpers import FOREIGN_DSN, add_to_maildir, render, reply_from, write_plan
from relcomm_tui.delivery.engine import SendEngine
from relcomm_tui.store.ledger import Ledger
from relcomm_tui.demo.mailserver import LoopbackMailServer
from relcomm_tui.plan.loader import load_plan
from relcomm_tui.receipts.followup import FollowUpError, follow_up, prepare_follow_up
from relcomm_tui.receipts.refresh import ConfiguredSource, plan_sources, refresh
from relcomm_tui.receipts.sources import ImapSource
from relcomm_tui.receipts.status import BOUNCED, CONFIRMED, REACHED, build_status


@pytest.fixture
def sent(tmp_path):
    """A plan sent to the loopback server, every report written; yields (plan, ledger, server)."""
    receipts = tmp_path / "plan" / "receipts"
    server = LoopbackMailServer(maildir=tmp_path / "mail", write_reports_to=receipts, report_delay=(0.0, 0.0),
                                mdn_fraction=1.0, seed=7)
    with server:
        plan = load_plan(write_plan(tmp_path / "plan", server.port))
        ledger = Ledger.open(tmp_path / "state")
        yield plan, ledger, server
        ledger.close()


async def send_all(plan, ledger, server):
    summary = await SendEngine(plan, ledger, render=render).run()
    assert summary.counts["accepted"] == 4, summary
    server.flush_reports()
    return summary


async def test_receipts_from_the_loopback_server(sent):
    plan, ledger, server = sent
    await send_all(plan, ledger, server)
    # 4 success DSNs (the bounce is accepted, then fails), 1 failure DSN, 2 MDNs (news asks, ops does not)
    assert len(server.written_reports) == 6

    result = refresh(plan, ledger)
    assert result.problems == []
    assert result.read == 6 and result.reports == 6
    assert result.matched == 6 and result.unmatched == 0

    status = build_status(plan, ledger)
    rows = {(r.communique_id, r.recipient_key): r for r in status.rows}
    alice = rows["news", "alice@example.com"]
    assert alice.delivered and alice.displayed and not alice.bounced
    assert alice.standing == CONFIRMED
    bob = rows["news", "bob.unknown@example.com"]
    assert bob.bounced and not bob.delivered and bob.standing == BOUNCED
    assert bob.reason.startswith("5.1.1") and "User unknown" in bob.reason
    carol = rows["news", "carol@example.com"]
    assert carol.displayed and carol.standing == CONFIRMED
    dave = rows["ops-notice", "dave@example.com"]
    assert dave.delivered and not dave.displayed and dave.standing == REACHED

    news = next(c for c in status.by_communique if c.id == "news")
    assert (news.total, news.reached, news.confirmed, news.bounced, news.unknown) == (3, 2, 2, 1, 0)
    assert round(news.percent(news.bounced), 1) == 33.3
    customers = next(c for c in status.by_group if c.id == "customers")
    assert customers.bounced == 1


async def test_refresh_is_incremental_and_never_double_counts(sent):
    plan, ledger, server = sent
    await send_all(plan, ledger, server)
    first = refresh(plan, ledger)
    assert first.read == 6 and first.new_receipts == 6
    again = refresh(plan, ledger)
    assert again.read == 0 and again.new_receipts == 0
    assert len(ledger.receipts()) == 6

    # A human reply (by In-Reply-To) and a report of someone else's message arrive.
    carol = next(d for d in ledger.deliveries("4.2.0") if d.recipient_key == "carol@example.com")
    receipts_dir = plan.root / "receipts"
    when = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(minutes=1)
    add_to_maildir(receipts_dir, reply_from("carol@example.com", carol.message_id, date=format_datetime(when)))
    add_to_maildir(receipts_dir, FOREIGN_DSN)
    third = refresh(plan, ledger)
    assert third.read == 2
    assert third.matched == 1 and third.unmatched == 1 and third.unmatched_total == 1
    status = build_status(plan, ledger)
    assert status.unmatched == 1
    row = status.row(carol.id)
    assert row.acknowledged == when.isoformat(timespec="milliseconds")
    assert refresh(plan, ledger).read == 0


async def test_a_source_that_cannot_be_read_is_a_problem_and_the_others_still_read(sent):
    plan, ledger, server = sent
    await send_all(plan, ledger, server)
    closed = ConfiguredSource("imap:closed", "IMAP 127.0.0.1:1",
                              lambda: ImapSource("imap://u@127.0.0.1:1/INBOX?plaintext=1", "pw", timeout=2))
    result = refresh(plan, ledger, sources=[closed, *plan_sources(plan)])
    assert [p.source for p in result.problems] == ["IMAP 127.0.0.1:1"]
    assert "cannot read IMAP 127.0.0.1:1" in result.problems[0].message and result.problems[0].hint
    assert result.read == 6


async def test_follow_up_sends_the_reminder_to_the_chosen_only_and_only_once(sent):
    plan, ledger, server = sent
    await send_all(plan, ledger, server)
    refresh(plan, ledger)
    before = len(server.messages)

    # Bob bounced: follow up at a corrected address; Alice too (as typed in the app).
    summary = await follow_up(plan, ledger, "news", ["bob.unknown@example.com", "alice@example.com"],
                              corrections={"bob.unknown@example.com": "bob@example.com"}, render=render)
    assert summary.exit_code == 0
    sent_now = server.messages[before:]
    assert sorted(m.rcpt_tos[0] for m in sent_now) == ["alice@example.com", "bob@example.com"]
    reminders = ledger.deliveries("4.2.0", "news-reminder")
    assert sorted(d.recipient_key for d in reminders) == ["alice@example.com", "bob@example.com"]
    assert {d.state for d in reminders} == {"accepted"}
    assert {r.mode for r in ledger.runs()} >= {"follow-up"}

    # The same follow-up again sends nothing: exactly once.
    await follow_up(plan, ledger, "news", ["alice@example.com"], render=render)
    assert len(server.messages) == before + 2


def test_follow_up_errors_are_values_with_hints(tmp_path):
    plan = load_plan(write_plan(tmp_path / "plan", 2525))
    with pytest.raises(FollowUpError) as error:
        prepare_follow_up(plan, "ops-notice", ["dave@example.com"])
    assert "no reminder" in error.value.message and 'reminder_for = "ops-notice"' in error.value.hint
    with pytest.raises(FollowUpError) as error:
        prepare_follow_up(plan, "news", ["alice@example.com"], {"alice@example.com": "not an address"})
    assert "not a valid email address" in error.value.message
    prepared = prepare_follow_up(plan, "news", ["alice@example.com", "nobody@example.com"])
    assert [r.email for _, r in prepared.people] == ["alice@example.com"]
    assert prepared.left_out and "nobody@example.com" in prepared.left_out[0]
