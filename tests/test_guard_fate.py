"""The one fate of a delivery, branch by branch, compared whole (issue 15: the first mutation run
of receipts/status.py left 140 of 249 mutants of fate_of alive, because the tests compared only
the outcome or the standing; the sentence, the time it dates from, the reason and the unverified
note are what every view shows)."""

from __future__ import annotations

import pytest

from relcomm_tui.receipts.status import (
    BOUNCED, CONFIRMED, REACHED, RELAYED_TEXT, UNKNOWN, Fate, RecipientReceipt, _earlier, _later, fate_of,
)

T1, T2, T3 = "2026-11-27T10:00:00+00:00", "2026-11-27T11:00:00+00:00", "2026-11-27T12:00:00+00:00"
W1, W2, W3 = "2026-11-27 10:00 UTC", "2026-11-27 11:00 UTC", "2026-11-27 12:00 UTC"


def row(channel: str = "email", state: str = "accepted", **fields) -> RecipientReceipt:
    return RecipientReceipt("d1", "news", channel, "customers", "Bob <bob@example.com>", "bob@example.com", state,
                            **fields)


CASES = [
    # confirmed: a person saw it
    (row(displayed=T1, last_update=T3), Fate("confirmed", CONFIRMED, f"confirmed: read {W1}", T1, "", "")),
    (row(acknowledged=T2), Fate("confirmed", CONFIRMED, f"confirmed: replied {W2}", T2, "", "")),
    (row(displayed=T3, acknowledged=T2), Fate("confirmed", CONFIRMED, f"confirmed: replied {W2}", T2, "", "")),
    (row(displayed=T1, acknowledged=T2), Fate("confirmed", CONFIRMED, f"confirmed: read {W1}", T1, "", "")),
    (row(displayed=T2, acknowledged=T2), Fate("confirmed", CONFIRMED, f"confirmed: replied {W2}", T2, "", "")),
    (row("manual", "marked delivered", last_update=T2),
     Fate("confirmed", CONFIRMED, "confirmed: done", T2, "", "")),
    (row(displayed=T1, bounced=T3, reason="5.1.1 gone"), Fate("confirmed", CONFIRMED, f"confirmed: read {W1}", T1, "", "")),
    # settled by the latest report
    (row(bounced=T2, reason="5.1.1 User unknown"),
     Fate("bounced", BOUNCED, "bounced: 5.1.1 User unknown", T2, "5.1.1 User unknown", "")),
    (row(bounced=T2), Fate("bounced", BOUNCED, "bounced: failed", T2, "failed", "")),
    (row(relayed=T2), Fate("relayed", REACHED, RELAYED_TEXT, T2, "", "")),
    (row(delivered=T2), Fate("delivered", REACHED, f"delivered {W2}", T2, "", "")),
    (row(auto_replied=T2), Fate("auto-replied", REACHED, f"auto-replied {W2}", T2, "", "")),
    (row(complained=T2, reason="abuse"), Fate("complained", REACHED, "complained: abuse", T2, "abuse", "")),
    (row(complained=T2), Fate("complained", REACHED, "complained: reported as spam", T2, "reported as spam", "")),
    (row(delivered=T1, bounced=T2, reason="r"), Fate("bounced", BOUNCED, "bounced: r", T2, "r", "")),
    (row(bounced=T1, delivered=T2, reason="r"), Fate("delivered", REACHED, f"delivered {W2}", T2, "", "")),
    (row(delivered=T2, bounced=T2, reason="r"), Fate("bounced", BOUNCED, "bounced: r", T2, "r", "")),  # tie: bounce
    (row(relayed=T2, delivered=T2), Fate("delivered", REACHED, f"delivered {W2}", T2, "", "")),
    (row(delivered=T2, auto_replied=T2), Fate("auto-replied", REACHED, f"auto-replied {W2}", T2, "", "")),
    (row(auto_replied=T2, complained=T2), Fate("complained", REACHED, "complained: reported as spam", T2,
                                                 "reported as spam", "")),
    (row(complained=T2, bounced=T2), Fate("bounced", BOUNCED, "bounced: failed", T2, "failed", "")),
    (row(delayed=T1, delivered=T2), Fate("delivered", REACHED, f"delivered {W2}", T2, "", "")),
    # delayed, nothing settled
    (row(delayed=T1, delay_reason="4.4.1 no answer"),
     Fate("delayed", UNKNOWN, f"delayed since {W1}: 4.4.1 no answer", T1, "4.4.1 no answer", "")),
    (row(delayed=T1), Fate("delayed", UNKNOWN, f"delayed since {W1}: no reason given", T1, "no reason given", "")),
    # what the ledger says
    (row(state="marked delivered", reply="marked delivered by alice: phoned", last_update=T2),
     Fate("marked delivered", REACHED, "marked delivered by alice: phoned", T2, "", "")),
    (row(state="marked delivered", last_update=T2), Fate("marked delivered", REACHED, "marked delivered", T2, "", "")),
    (row("webhook", accepted=T1), Fate("accepted", REACHED, "accepted by the webhook receiver", T1, "", "")),
    (row("publish", accepted=T1), Fate("accepted", REACHED, "accepted by the publish receiver", T1, "", "")),
    (row("email", accepted=T1, last_update=T2),
     Fate("accepted", UNKNOWN, "accepted by the server, no report yet", T2, "", "")),
    (row("manual", "awaiting", accepted=T1, last_update=T2), Fate("awaiting", UNKNOWN, "awaiting", T2, "", "")),
    (row(unverified="matched by address only: says bounced"),
     Fate("unverified", UNKNOWN, "unverified: matched by address only: says bounced", None, "",
          "matched by address only: says bounced")),
    (row(state="queued", last_update=T1), Fate("not sent", UNKNOWN, "not sent yet", T1, "", "")),
    (row(state="deferred", reply="451  4.3.0\n try later", last_update=T1),
     Fate("deferred", UNKNOWN, "deferred: 451 4.3.0 try later", T1, "", "")),
    (row(state="in doubt", reply="x" * 300, last_update=T1), Fate("in doubt", UNKNOWN, "in doubt: " + "x" * 200, T1, "", "")),
    (row(state="deferred", last_update=T1), Fate("deferred", UNKNOWN, "deferred", T1, "", "")),
    (row(state="rejected", reply="550 no", last_update=T1), Fate("rejected", UNKNOWN, "rejected", T1, "", "")),
    # an unverified note rides along with a verified fate
    (row(delivered=T2, unverified="u"), Fate("delivered", REACHED, f"delivered {W2}", T2, "", "u")),
    (row(bounced=T2, unverified="u"), Fate("bounced", BOUNCED, "bounced: failed", T2, "failed", "u")),
    (row(relayed=T2, unverified="u"), Fate("relayed", REACHED, RELAYED_TEXT, T2, "", "u")),
    (row(complained=T2, unverified="u"), Fate("complained", REACHED, "complained: reported as spam", T2,
                                              "reported as spam", "u")),
    (row(displayed=T1, unverified="u"), Fate("confirmed", CONFIRMED, f"confirmed: read {W1}", T1, "", "u")),
    (row(delayed=T1, unverified="u"), Fate("delayed", UNKNOWN, f"delayed since {W1}: no reason given", T1,
                                           "no reason given", "u")),
    (row(state="marked delivered", last_update=T2, unverified="u"),
     Fate("marked delivered", REACHED, "marked delivered", T2, "", "u")),
    (row("webhook", accepted=T1, unverified="u"), Fate("accepted", REACHED, "accepted by the webhook receiver", T1,
                                                       "", "u")),
    # an answer to a calendar invitation is the fate, whatever else arrived (its time, not the read's)
    (row(rsvp="accepted", rsvp_at=T2, displayed=T1, unverified="u"),
     Fate("accepted", CONFIRMED, f"confirmed: accepted {W2}", T2, "", "u")),
    (row(rsvp="tentative", rsvp_at=T3, delivered=T1), Fate("tentative", REACHED, f"tentative {W3}", T3, "", "")),
    (row(rsvp="declined", rsvp_at=T2, bounced=T3, reason="5.1.1 gone"),
     Fate("declined", REACHED, f"declined {W2}", T2, "", "")),
    (row(rsvp="maybe", delivered=T2), Fate("delivered", REACHED, f"delivered {W2}", T2, "", "")),  # not an answer
]


@pytest.mark.parametrize(("receipt", "expected"), CASES)
def test_each_fate_whole(receipt, expected):
    assert fate_of(receipt) == expected
    assert receipt.standing == expected.standing
    assert receipt.is_reached == (expected.standing in (REACHED, CONFIRMED))


def test_the_view_formats_the_times():
    fate = fate_of(row(delivered=T2), when=lambda stamp: f"<{stamp}>")
    assert fate.text == f"delivered <{T2}>"


def test_describe_adds_what_unverified_reports_said_unless_that_is_the_fate():
    assert fate_of(row(delivered=T2, unverified="u")).describe() == f"delivered {W2} · unverified report: u"
    assert fate_of(row(unverified="u")).describe() == "unverified: u"
    assert fate_of(row(delivered=T2)).describe() == f"delivered {W2}"


@pytest.mark.parametrize(("a", "b", "later", "earlier"), [
    (T1, T2, T2, T1), (T2, T1, T2, T1), (None, T1, T1, T1), (T1, None, T1, T1), (None, None, None, None),
    ("", T1, T1, T1),
])
def test_later_and_earlier_ignore_missing_times(a, b, later, earlier):
    assert _later(a, b) == later
    assert _earlier(a, b) == earlier
