"""How receipts fold into a recipient's standing (reached, confirmed, bounced, unknown)."""

from __future__ import annotations

import pytest

from relcomm_tui.receipts.status import BOUNCED, CONFIRMED, REACHED, UNKNOWN, RecipientReceipt, apply_receipt, fate_of


def row(channel: str = "email", state: str = "accepted") -> RecipientReceipt:
    return RecipientReceipt("d1", "news", channel, "customers", "Ann <ann@example.com>", "ann@example.com", state,
                            sent="2026-11-27T09:00:00", accepted="2026-11-27T09:00:00" if state == "accepted" else None)


def receipt(kind: str, action: str = "", at: str = "2026-11-27T10:00:00", status: str = "", diagnostic: str = ""):
    return {"kind": kind, "action": action, "at": at, "status": status or None, "diagnostic": diagnostic or None}


@pytest.mark.parametrize(("receipts", "standing"), [
    ([], UNKNOWN),
    ([receipt("dsn", "delivered")], REACHED),
    ([receipt("dsn", "delayed")], UNKNOWN),
    ([receipt("dsn", "failed", status="5.1.1")], BOUNCED),
    ([receipt("dsn", "failed", "2026-11-27T10:00"), receipt("dsn", "delivered", "2026-11-27T11:00")], REACHED),
    ([receipt("dsn", "delivered", "2026-11-27T09:30"), receipt("dsn", "failed", "2026-11-27T10:00")], BOUNCED),
    ([receipt("mdn", "displayed")], CONFIRMED),
    ([receipt("mdn", "deleted")], REACHED),
    ([receipt("auto-reply", "auto-replied")], REACHED),  # never an acknowledgement
    ([receipt("complaint", "complained")], REACHED),
    ([receipt("reply", "replied")], CONFIRMED),
    ([receipt("dsn", "failed", status="5.1.1"), receipt("reply", "replied")], CONFIRMED),
])
def test_standing(receipts, standing):
    r = row()
    for item in receipts:
        apply_receipt(r, item)
    assert r.standing == standing
    assert r.receipts == len(receipts)


def test_reason_and_times():
    r = row()
    apply_receipt(r, receipt("dsn", "failed", status="5.1.1", diagnostic="smtp; 550 User unknown"))
    assert r.reason == "5.1.1 smtp; 550 User unknown"
    apply_receipt(r, receipt("mdn", "displayed", at="2026-11-27T12:00:00"))
    apply_receipt(r, receipt("mdn", "displayed", at="2026-11-27T11:00:00"))
    assert r.displayed == "2026-11-27T11:00:00" and r.last_update == "2026-11-27T12:00:00"
    complaint = row()
    apply_receipt(complaint, receipt("complaint", "complained", diagnostic="abuse"))
    assert complaint.complained and complaint.reason == "abuse"


def test_other_channels():
    assert row("webhook").standing == REACHED  # the webhook answered
    assert row("webhook", "rejected").standing == UNKNOWN
    assert row("manual", "marked delivered").standing == CONFIRMED  # the engineer confirmed the step
    assert row("manual", "queued").standing == UNKNOWN


def fate(receipts, **fields):
    r = row()
    for name, value in fields.items():
        setattr(r, name, value)
    for item in receipts:
        apply_receipt(r, item)
    return fate_of(r)


def test_a_delay_shows_since_when_and_why_until_something_settles_it():
    delayed = receipt("dsn", "delayed", "2026-11-27T10:00:00+00:00", "4.4.1", "connection timed out")
    again = receipt("dsn", "delayed", "2026-11-27T14:00:00+00:00", "4.4.1", "host unreachable")
    shown = fate([delayed, again])
    assert (shown.outcome, shown.standing) == ("delayed", UNKNOWN)
    assert shown.text == "delayed since 2026-11-27 10:00 UTC: 4.4.1 host unreachable"  # first time, latest words
    assert fate([delayed, receipt("dsn", "delivered", "2026-11-27T15:00:00+00:00")]).outcome == "delivered"
    assert fate([delayed, receipt("dsn", "failed", "2026-11-27T15:00:00+00:00", "5.4.7", "expired")]).text == \
        "bounced: 5.4.7 expired"
    assert fate([receipt("dsn", "delayed", status="4.7.1")]).text.endswith(": 4.7.1")
    assert fate([receipt("dsn", "delayed")]).text.endswith(": no reason given")


def test_relayed_is_reached_not_delivered_nor_confirmed():
    shown = fate([receipt("dsn", "relayed", status="2.0.0")])
    assert (shown.outcome, shown.standing, shown.text) == ("relayed", REACHED, "relayed (the next server gives no reports)")
    r = row()
    apply_receipt(r, receipt("dsn", "relayed"))
    assert r.relayed and not r.delivered


def test_unverified_reports_never_decide_a_fate():
    by_address = dict(receipt("dsn", "failed", "2026-11-27T11:00:00+00:00", "5.1.1", "unknown"), matched_by="address")
    shown = fate([by_address])
    assert (shown.outcome, shown.standing) == ("unverified", UNKNOWN)
    assert shown.text == "unverified: matched by address only: says bounced (5.1.1 unknown)"
    settled = fate([receipt("dsn", "delivered", "2026-11-27T10:00:00+00:00"), by_address])
    assert (settled.outcome, settled.standing) == ("delivered", REACHED)
    assert settled.describe().endswith("unverified report: matched by address only: says bounced (5.1.1 unknown)")
    read = dict(receipt("mdn", "displayed"), matched_by="address")
    assert fate([read]).standing == UNKNOWN
    guessable = dict(receipt("dsn", "failed", status="5.1.1"), matched_by="legacy-envelope-id")
    assert "old, guessable envelope id" in fate([guessable]).text


def test_a_receipt_dated_before_the_send_is_only_shown():
    early = receipt("dsn", "delivered", "2026-11-27T08:00:00+00:00")
    shown = fate([early], first_sent="2026-11-27T09:00:00.000+00:00")
    assert shown.standing == UNKNOWN and shown.text == "unverified: dated before it was sent: says delivered"
    skewed = receipt("dsn", "delivered", "2026-11-27T08:59:00+00:00")  # a remote clock a minute slow
    assert fate([skewed], first_sent="2026-11-27T09:00:00.000+00:00").outcome == "delivered"


def test_the_latest_settling_report_decides_and_a_bounce_wins_a_tie():
    at = "2026-11-27T10:00:00+00:00"
    assert fate([receipt("dsn", "delivered", at), receipt("dsn", "failed", at, "5.0.0")]).outcome == "bounced"
    assert fate([receipt("dsn", "failed", "2026-11-27T09:00:00+00:00"), receipt("auto-reply", "auto-replied", at)]
                ).outcome == "auto-replied"
