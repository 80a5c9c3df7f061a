"""Correlation of parsed reports with a real ledger's deliveries (issues 10.7, 11.1): credited only
by the random identifiers relcomm sent; another send's identifiers, a date before the send or an
address alone never credit a delivery."""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime

import pytest

from relcomm_tui.store.ledger import DeliveryIntent, Ledger, delivery_id
from relcomm_tui.receipts.correlate import (
    AMBIGUOUS, ANOTHER_SEND, BEFORE_SENT, BY_ADDRESS, BY_ENVELOPE_ID, BY_LEGACY_ENVELOPE_ID, BY_MESSAGE_ID, NOT_OURS,
    Correlator, bare_address, normalize_message_id,
)
from relcomm_tui.receipts.parse import parse_message

LATER = dt.timedelta(minutes=10)


def rfc_date(delta: dt.timedelta = LATER) -> str:
    return format_datetime(dt.datetime.now(dt.timezone.utc) + delta)


def iso(delta: dt.timedelta = LATER) -> str:
    return (dt.datetime.now(dt.timezone.utc) + delta).isoformat(timespec="milliseconds")


def dsn(*, envid: str | None = None, final: str = "x@example.com", original: str | None = None,
        action: str = "failed", status: str = "5.1.1", headers: str = "", date: str | None = None) -> bytes:
    per_message = "Reporting-MTA: dns; mx.example.com\n" + (f"Original-Envelope-Id: {envid}\n" if envid else "")
    per_recipient = (f"Original-Recipient: rfc822; {original}\n" if original else "") + \
        f"Final-Recipient: rfc822; {final}\nAction: {action}\nStatus: {status}\n"
    returned = f"--B\nContent-Type: text/rfc822-headers\n\n{headers}\n" if headers else ""
    return (f"From: MAILER-DAEMON@mx.example.com\nTo: receipts@orion.example.com\nSubject: Delivery report\n"
            f"Date: {date or rfc_date()}\n"
            f"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n"
            f"--B\nContent-Type: text/plain\n\nreport\n\n--B\nContent-Type: message/delivery-status\n\n"
            f"{per_message}\n{per_recipient}\n{returned}--B--\n").encode()


def mdn(original_message_id: str | None, reader: str = "alice@example.com") -> bytes:
    original = f"Original-Message-ID: {original_message_id}\n" if original_message_id else ""
    return (f"From: {reader}\nTo: receipts@orion.example.com\nSubject: Read: news\nMIME-Version: 1.0\n"
            f"Content-Type: multipart/report; report-type=disposition-notification; boundary=\"B\"\n\n"
            f"--B\nContent-Type: text/plain\n\nread\n\n--B\nContent-Type: message/disposition-notification\n\n"
            f"Final-Recipient: rfc822; {reader}\n{original}"
            f"Disposition: manual-action/MDN-sent-manually; displayed\n\n--B--\n").encode()


def mark_sent(ledger: Ledger, version: str) -> None:
    for record in ledger.deliveries(version):
        ledger.mark_sending([record.id])
        ledger.mark_outcome(record.id, "accepted", "250 ok")


@pytest.fixture
def ledger(tmp_path):
    with Ledger.open(tmp_path) as opened:
        intents = [DeliveryIntent("news", key, key, "customers", "email")
                   for key in ("alice@example.com", "Bob@Example.com", "carol@example.com")]
        intents.append(DeliveryIntent("chat", "alice@example.com", "alice", "customers", "webhook"))
        opened.ensure_deliveries("4.1.0", [DeliveryIntent("news", "old@example.com", "old", "customers", "email")],
                                 domain="orion.example.com")
        mark_sent(opened, "4.1.0")
        opened.ensure_deliveries("4.2.0", intents, domain="orion.example.com")
        mark_sent(opened, "4.2.0")
        yield opened


def correlator(ledger: Ledger) -> Correlator:
    return Correlator.for_ledger(ledger, "4.2.0")


def news(ledger: Ledger, key: str, version: str = "4.2.0"):
    return next(d for d in ledger.deliveries(version, "news") if d.recipient_key == key)


def match_one(ledger, raw: bytes, at: str | None = None):
    [match] = correlator(ledger).match(parse_message(raw), at or iso())
    return match


def test_identifiers_are_random_stored_and_not_computable(ledger):
    alice = news(ledger, "alice@example.com")
    computed = delivery_id("4.2.0", "news", "alice@example.com")
    assert alice.id == computed  # the ledger's own key...
    assert computed not in alice.envelope_id and computed not in alice.message_id  # ...is never what is sent
    others = [d for d in ledger.deliveries("4.2.0")]
    assert len({d.envelope_id for d in others}) == len({d.message_id for d in others}) == len(others)
    assert all(len(d.envelope_id) >= 40 for d in others)  # "relcomm." + 128 random bits in hex


def test_envelope_id_credits_even_with_a_different_recipient(ledger):
    alice = news(ledger, "alice@example.com")
    match = match_one(ledger, dsn(envid=alice.envelope_id, final="alias@elsewhere.example"))
    assert (match.delivery.id, match.how, match.verified) == (alice.id, BY_ENVELOPE_ID, True)


def test_an_earlier_release_in_this_ledger_is_credited_to_its_own_delivery(ledger):
    old = news(ledger, "old@example.com", "4.1.0")
    match = match_one(ledger, dsn(envid=old.envelope_id, final="old@example.com"))
    assert (match.delivery.id, match.how) == (old.id, BY_ENVELOPE_ID)


def test_message_ids_read_receipt_returned_headers_and_reply(ledger):
    bob = news(ledger, "bob@example.com")
    match = match_one(ledger, mdn(bob.message_id, reader="someone-else@example.com"))
    assert (match.delivery.id, match.how) == (bob.id, BY_MESSAGE_ID)
    headers = f"From: release@orion.example.com\nTo: forwarded@else.example\nMessage-ID: {bob.message_id}\n"
    match = match_one(ledger, dsn(final="forwarded@else.example", headers=headers))
    assert (match.delivery.id, match.how) == (bob.id, BY_MESSAGE_ID)
    alice = news(ledger, "alice@example.com")
    raw = (f"From: Alice <alice.private@home.example>\nTo: release@orion.example.com\nSubject: Re: news\n"
           f"Date: {rfc_date()}\nIn-Reply-To: {alice.message_id}\n\nThanks!\n").encode()
    assert parse_message(raw).kind == "reply"
    match = match_one(ledger, raw)
    assert (match.delivery.id, match.how) == (alice.id, BY_MESSAGE_ID)


def test_a_strangers_read_receipt_naming_only_an_address_is_unverified(ledger):
    """Issue 10.7: an MDN naming only Final-Recipient: bob@... is at most 'matched by address'."""
    bob = news(ledger, "bob@example.com")
    match = match_one(ledger, mdn(None, reader="bob@example.com"))
    assert (match.delivery.id, match.how, match.verified) == (bob.id, BY_ADDRESS, False)


def test_an_envelope_id_computed_from_the_plan_credits_nothing(ledger):
    """Issue 10.7: the old ENVID was delivery_id(version, communique, address); forging it fails."""
    computed = delivery_id("4.2.0", "news", "carol@example.com")
    match = match_one(ledger, dsn(envid=computed, final="carol@example.com"))
    assert (match.delivery, match.how, match.note) == (None, None, ANOTHER_SEND)


def test_identifiers_of_another_send_are_never_credited_here(ledger, tmp_path):
    """Issue 11.1: a report for another ledger's user15 carries that send's ids: never this one's."""
    with Ledger.open(tmp_path / "other") as other:
        other.ensure_deliveries("4.2.1", [DeliveryIntent("news", "carol@example.com", "carol", "customers", "email")],
                                domain="orion.example.com")
        mark_sent(other, "4.2.1")
        theirs = other.deliveries("4.2.1")[0]
    assert theirs.envelope_id != news(ledger, "carol@example.com").envelope_id
    for raw in (dsn(envid=theirs.envelope_id, final="carol@example.com"),
                dsn(final="carol@example.com", headers=f"Message-ID: {theirs.message_id}\nX-Relcomm-Release: 4.2.1\n"),
                mdn(theirs.message_id, reader="carol@example.com")):
        match = match_one(ledger, raw)
        assert (match.delivery, match.note) == (None, ANOTHER_SEND)


def test_returned_relcomm_headers_name_the_send(ledger):
    carol = news(ledger, "carol@example.com")
    # No ids, but the returned headers say 4.2.1, which this ledger never sent.
    match = match_one(ledger, dsn(final="carol@example.com", headers="Subject: x\nX-Relcomm-Release: 4.2.1\n"))
    assert (match.delivery, match.note) == (None, ANOTHER_SEND)
    # An id of ours with headers of another release or communique: not ours to credit.
    for header in ("X-Relcomm-Release: 4.1.0", "X-Relcomm-Communique: chat"):
        match = match_one(ledger, dsn(envid=carol.envelope_id, final="carol@example.com", headers=f"{header}\n"))
        assert (match.delivery, match.note) == (None, ANOTHER_SEND)
    # Agreeing headers change nothing.
    match = match_one(ledger, dsn(envid=carol.envelope_id, final="carol@example.com",
                                  headers="X-Relcomm-Release: 4.2.0\nX-Relcomm-Communique: news\n"))
    assert match.delivery.id == carol.id and match.verified


def test_returned_headers_are_compared_as_sent_not_as_encoded(ledger):
    """A non-ASCII release version comes back RFC 2047-encoded (and maybe folded): still ours."""
    ledger.ensure_deliveries("4.2.0-β", [DeliveryIntent("news", "eve@example.com", "eve", "customers", "email")],
                             domain="orion.example.com")
    mark_sent(ledger, "4.2.0-β")
    eve = ledger.deliveries("4.2.0-β")[0]
    headers = "X-Relcomm-Release: =?utf-8?q?4=2E2=2E0-=CE=B2?=\nX-Relcomm-Communique:\n news\n"
    match = match_one(ledger, dsn(envid=eve.envelope_id, final="eve@example.com", headers=headers))
    assert (match.delivery.id, match.how) == (eve.id, BY_ENVELOPE_ID)


def test_ids_of_two_deliveries_credit_neither(ledger):
    alice, bob = news(ledger, "alice@example.com"), news(ledger, "bob@example.com")
    match = match_one(ledger, dsn(envid=alice.envelope_id, final="alice@example.com",
                                  headers=f"Message-ID: {bob.message_id}\n"))
    assert (match.delivery, match.note) == (None, ANOTHER_SEND)


def test_a_report_dated_before_the_send_is_never_credited(ledger):
    alice = news(ledger, "alice@example.com")
    hour_ago = -dt.timedelta(hours=1)
    match = match_one(ledger, dsn(envid=alice.envelope_id, final="alice@example.com"), iso(hour_ago))
    assert (match.delivery, match.note) == (None, BEFORE_SENT)
    match = match_one(ledger, dsn(final="alice@example.com"), iso(hour_ago))
    assert (match.delivery, match.note) == (None, BEFORE_SENT)
    # A remote clock a few seconds slow is forgiven when the report holds the random id.
    match = match_one(ledger, dsn(envid=alice.envelope_id, final="alice@example.com"), iso(-dt.timedelta(seconds=20)))
    assert match.delivery.id == alice.id


def test_a_delivery_never_sent_credits_nothing(ledger):
    ledger.ensure_deliveries("4.2.0", [DeliveryIntent("news", "dan@example.com", "dan", "customers", "email")],
                             domain="orion.example.com")
    dan = news(ledger, "dan@example.com")
    assert dan.sent_at is None
    assert match_one(ledger, dsn(envid=dan.envelope_id, final="dan@example.com")).note == BEFORE_SENT
    assert match_one(ledger, dsn(final="dan@example.com")).delivery is None


def test_by_address_only_when_exactly_one_delivery_fits(ledger):
    bob = news(ledger, "bob@example.com")
    match = match_one(ledger, dsn(original="BOB@example.COM", final="alice@example.com"))
    assert (match.delivery.id, match.how) == (bob.id, BY_ADDRESS)  # Original-Recipient first, case-folded
    # A reminder went to Bob 10 minutes ago, the first message an hour ago.
    ledger.ensure_deliveries("4.2.0", [DeliveryIntent("news-reminder", "bob@example.com", "bob", "customers", "email")],
                             domain="orion.example.com")
    reminder = ledger.deliveries("4.2.0", "news-reminder")[0]
    ledger.apply([lambda db, ident=ident, at=at: db.execute("UPDATE deliveries SET sent_at=? WHERE id=?", (at, ident))
                  for ident, at in ((bob.id, iso(-dt.timedelta(hours=1))),
                                    (reminder.id, iso(-dt.timedelta(minutes=10))))])
    # Now both fit: neither is chosen.
    match = match_one(ledger, dsn(final="bob@example.com"), iso())
    assert (match.delivery, match.note) == (None, AMBIGUOUS)
    # A report dated between the two can only be about the first.
    match = match_one(ledger, dsn(final="bob@example.com"), iso(-dt.timedelta(minutes=30)))
    assert (match.delivery.id, match.how) == (bob.id, BY_ADDRESS)
    # Only email deliveries are candidates: alice's webhook post is not.
    match = match_one(ledger, dsn(final="alice@example.com"))
    assert match.delivery.channel == "email"


def test_an_old_guessable_envelope_id_alone_is_unverified(ledger):
    """A ledger written before ids were random sent ENVID = delivery id: anyone can compute it."""
    carol = news(ledger, "carol@example.com")
    ledger.apply([lambda db: db.execute("UPDATE deliveries SET envelope_id=id WHERE id=?", (carol.id,))])
    match = match_one(ledger, dsn(envid=carol.id, final="carol@example.com"))
    assert (match.delivery.id, match.how, match.verified) == (carol.id, BY_LEGACY_ENVELOPE_ID, False)
    # With the message's Message-ID too (real DSNs return the headers), it is verified.
    match = match_one(ledger, dsn(envid=carol.id, final="carol@example.com", headers=f"Message-ID: {carol.message_id}\n"))
    assert (match.how, match.verified) == (BY_MESSAGE_ID, True)


def test_someone_elses_message_is_not_ours_even_for_a_known_address(ledger):
    match = match_one(ledger, dsn(envid="not-one-of-ours", final="alice@example.com"))
    assert (match.delivery, match.how, match.note) == (None, None, NOT_OURS)
    headers = "Message-ID: <a1b2@mail.elsewhere.example>\n"
    assert match_one(ledger, dsn(final="alice@example.com", headers=headers)).delivery is None


def test_normalizers():
    assert normalize_message_id(" <Rel.1@Orion.Example> ") == normalize_message_id("rel.1@orion.example")
    assert bare_address("rfc822; <Bob@Example.com>") == "bob@example.com"
    assert bare_address("") == ""
