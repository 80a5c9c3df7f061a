"""Correlation of parsed reports with the ledger's deliveries: ENVID, then Message-ID, then recipient."""

from __future__ import annotations

import pytest

from relcomm_tui.ledger import DeliveryIntent, Ledger
from relcomm_tui.receipts.correlate import (
    BY_ENVELOPE_ID, BY_MESSAGE_ID, BY_RECIPIENT, Correlator, bare_address, normalize_message_id,
)
from relcomm_tui.receipts.parse import parse_message


def dsn(*, envid: str | None = None, final: str = "x@example.com", original: str | None = None,
        action: str = "failed", status: str = "5.1.1", headers: str = "") -> bytes:
    per_message = "Reporting-MTA: dns; mx.example.com\n" + (f"Original-Envelope-Id: {envid}\n" if envid else "")
    per_recipient = (f"Original-Recipient: rfc822; {original}\n" if original else "") + \
        f"Final-Recipient: rfc822; {final}\nAction: {action}\nStatus: {status}\n"
    returned = f"--B\nContent-Type: text/rfc822-headers\n\n{headers}\n" if headers else ""
    return (f"From: MAILER-DAEMON@mx.example.com\nTo: receipts@orion.example.com\nSubject: Delivery report\n"
            f"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n"
            f"--B\nContent-Type: text/plain\n\nreport\n\n--B\nContent-Type: message/delivery-status\n\n"
            f"{per_message}\n{per_recipient}\n{returned}--B--\n").encode()


def mdn(original_message_id: str, reader: str = "alice@example.com") -> bytes:
    return (f"From: {reader}\nTo: receipts@orion.example.com\nSubject: Read: news\nMIME-Version: 1.0\n"
            f"Content-Type: multipart/report; report-type=disposition-notification; boundary=\"B\"\n\n"
            f"--B\nContent-Type: text/plain\n\nread\n\n--B\nContent-Type: message/disposition-notification\n\n"
            f"Final-Recipient: rfc822; {reader}\nOriginal-Message-ID: {original_message_id}\n"
            f"Disposition: manual-action/MDN-sent-manually; displayed\n\n--B--\n").encode()


@pytest.fixture
def ledger(tmp_path):
    with Ledger.open(tmp_path) as opened:
        intents = [DeliveryIntent("news", key, key, "customers", "email")
                   for key in ("alice@example.com", "Bob@Example.com")]
        intents.append(DeliveryIntent("chat", "alice@example.com", "alice", "customers", "webhook"))
        opened.ensure_deliveries("4.2.0", intents, domain="orion.example.com")
        opened.ensure_deliveries("4.1.0", [DeliveryIntent("news", "old@example.com", "old", "customers", "email")],
                                 domain="orion.example.com")
        yield opened


def correlator(ledger: Ledger) -> Correlator:
    return Correlator(ledger.deliveries("4.2.0"), ledger.delivery, ledger.delivery_by_message_id)


def news(ledger: Ledger, key: str, version: str = "4.2.0"):
    return next(d for d in ledger.deliveries(version, "news") if d.recipient_key == key)


def test_envelope_id_wins_over_a_different_recipient(ledger):
    alice = news(ledger, "alice@example.com")
    [match] = correlator(ledger).match(parse_message(dsn(envid=alice.envelope_id, final="alias@elsewhere.example")))
    assert (match.delivery.id, match.how) == (alice.id, BY_ENVELOPE_ID)


def test_envelope_id_of_an_earlier_release_still_matches(ledger):
    old = news(ledger, "old@example.com", "4.1.0")
    [match] = correlator(ledger).match(parse_message(dsn(envid=old.envelope_id, final="old@example.com")))
    assert match.delivery.id == old.id
    # ...but by address alone, only this release's deliveries are candidates.
    [by_address] = correlator(ledger).match(parse_message(dsn(final="old@example.com")))
    assert by_address.delivery is None and by_address.how is None


def test_original_message_id_of_a_read_receipt(ledger):
    bob = news(ledger, "bob@example.com")
    [match] = correlator(ledger).match(parse_message(mdn(bob.message_id, reader="someone-else@example.com")))
    assert (match.delivery.id, match.how) == (bob.id, BY_MESSAGE_ID)


def test_message_id_in_the_returned_headers(ledger):
    bob = news(ledger, "bob@example.com")
    headers = f"From: release@orion.example.com\nTo: forwarded@else.example\nMessage-ID: {bob.message_id}\n"
    [match] = correlator(ledger).match(parse_message(dsn(final="forwarded@else.example", headers=headers)))
    assert (match.delivery.id, match.how) == (bob.id, BY_MESSAGE_ID)


def test_reply_by_in_reply_to(ledger):
    alice = news(ledger, "alice@example.com")
    raw = (f"From: Alice <alice.private@home.example>\nTo: release@orion.example.com\nSubject: Re: news\n"
           f"In-Reply-To: {alice.message_id}\n\nThanks!\n").encode()
    report = parse_message(raw)
    assert report.kind == "reply"
    [match] = correlator(ledger).match(report)
    assert (match.delivery.id, match.how) == (alice.id, BY_MESSAGE_ID)


def test_recipient_original_before_final_and_case_insensitive(ledger):
    bob = news(ledger, "bob@example.com")
    [match] = correlator(ledger).match(parse_message(
        dsn(original="BOB@example.COM", final="alice@example.com")))
    assert (match.delivery.id, match.how) == (bob.id, BY_RECIPIENT)


def test_recipient_with_several_deliveries_prefers_email(ledger):
    alice = news(ledger, "alice@example.com")
    [match] = correlator(ledger).match(parse_message(dsn(final="Alice@Example.com")))
    assert match.delivery.id == alice.id and match.delivery.channel == "email"


def test_unmatched_report_is_returned_without_delivery(ledger):
    matches = correlator(ledger).match(parse_message(dsn(envid="not-ours", final="stranger@else.example")))
    assert [(m.delivery, m.how) for m in matches] == [(None, None)]
    assert matches[0].outcome.address == "stranger@else.example"


def test_normalizers():
    assert normalize_message_id(" <Rel.1@Orion.Example> ") == normalize_message_id("rel.1@orion.example")
    assert bare_address("rfc822; <Bob@Example.com>") == "bob@example.com"
    assert bare_address("") == ""
