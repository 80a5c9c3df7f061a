"""How receipts fold into a recipient's standing (reached, confirmed, bounced, unknown)."""

from __future__ import annotations

import pytest

from relcomm_tui.receipts.status import BOUNCED, CONFIRMED, REACHED, UNKNOWN, RecipientReceipt, apply_receipt


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
