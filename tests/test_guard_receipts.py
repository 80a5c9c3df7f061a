"""What is believed about a delivery (issue 15): the status code a report is read as, and which of
two deliveries to one address a report is credited to.

Seen to fail by hand with: the first code of a Diagnostic-Code used instead of the last
(receipts/parse.py `_status_in_diagnostic`), and a report matched by address credited to one of
several fitting deliveries (receipts/correlate.py `len(fitting) == 1` loosened), and ids naming the
older delivery credited to the newer.
"""

from __future__ import annotations

import datetime as dt

import pytest
from parse_strict import strict_parsing  # noqa: F401  (autouse: unexpected exceptions fail)
from test_correlate import dsn, iso, ledger, match_one, news  # noqa: F401  (ledger is a fixture)

from relcomm_tui.store.ledger import DeliveryIntent
from relcomm_tui.receipts.correlate import AMBIGUOUS, BY_ADDRESS, BY_ENVELOPE_ID, BY_MESSAGE_ID
from relcomm_tui.receipts.parse import parse_message


def report_with_diagnostic(status: str, diagnostic: str) -> bytes:
    return (b"From: MAILER-DAEMON@mx.example.org\nTo: receipts@orion.example.com\nSubject: failure\n"
            b"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n"
            b"--B\nContent-Type: text/plain\n\nfailed\n\n--B\nContent-Type: message/delivery-status\n\n"
            b"Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; bob@example.net\nAction: failed\n"
            + f"Status: {status}\nDiagnostic-Code: smtp; {diagnostic}\n\n--B--\n".encode())


@pytest.mark.parametrize(("status", "diagnostic", "expected"), [
    # a relay's log of earlier tries, then the remote server's final word
    ("5.0.0", "451 4.7.1 greylisted, try again; 550 5.1.1 <bob@example.net>: user unknown", "5.1.1"),
    ("5.0.0", "after 550 5.2.2 mailbox full then 554 5.7.1 rejected by policy", "5.7.1"),
    # no code in the words: Status stands
    ("5.1.2", "host not found", "5.1.2"),
])
def test_the_last_status_code_in_a_diagnostic_is_the_one_read(status, diagnostic, expected):
    report = parse_message(report_with_diagnostic(status, diagnostic))
    [outcome] = report.recipients
    assert (outcome.address, outcome.action, outcome.status) == ("bob@example.net", "failed", expected)


def two_deliveries_to_bob(ledger):
    """Bob got the announcement an hour ago and a reminder ten minutes ago."""
    bob = news(ledger, "bob@example.com")
    ledger.ensure_deliveries("4.2.0", [DeliveryIntent("news-reminder", "bob@example.com", "bob", "customers", "email")],
                             domain="orion.example.com")
    reminder = ledger.deliveries("4.2.0", "news-reminder")[0]
    ledger.apply([lambda db, ident=ident, at=at: db.execute("UPDATE deliveries SET sent_at=? WHERE id=?", (at, ident))
                  for ident, at in ((bob.id, iso(-dt.timedelta(hours=1))),
                                    (reminder.id, iso(-dt.timedelta(minutes=10))))])
    return ledger.delivery(bob.id), ledger.delivery(reminder.id)


def test_with_two_deliveries_to_one_address_each_id_credits_its_own(ledger):
    older, newer = two_deliveries_to_bob(ledger)
    match = match_one(ledger, dsn(envid=older.envelope_id, final="bob@example.com"))
    assert (match.delivery.id, match.how) == (older.id, BY_ENVELOPE_ID)
    match = match_one(ledger, dsn(envid=newer.envelope_id, final="bob@example.com"))
    assert (match.delivery.id, match.how) == (newer.id, BY_ENVELOPE_ID)
    match = match_one(ledger, dsn(final="bob@example.com", headers=f"Message-ID: {newer.message_id}\n"))
    assert (match.delivery.id, match.how) == (newer.id, BY_MESSAGE_ID)
    match = match_one(ledger, dsn(final="bob@example.com", headers=f"Message-ID: {older.message_id}\n"))
    assert (match.delivery.id, match.how) == (older.id, BY_MESSAGE_ID)


def test_with_two_deliveries_to_one_address_an_address_alone_credits_only_the_one_that_fits(ledger):
    older, newer = two_deliveries_to_bob(ledger)
    # Dated after both: either could be meant, so neither (never the oldest, never the newest).
    match = match_one(ledger, dsn(final="bob@example.com"), iso())
    assert (match.delivery, match.how, match.note) == (None, None, AMBIGUOUS)
    # Dated between the two: only the older had been sent.
    match = match_one(ledger, dsn(final="bob@example.com"), iso(-dt.timedelta(minutes=30)))
    assert (match.delivery.id, match.how, match.verified) == (older.id, BY_ADDRESS, False)


def report_for(fields: str) -> bytes:
    """A delivery-status report with one recipient block made of `fields` (header lines)."""
    return (b"From: MAILER-DAEMON@mx.example.org\nTo: receipts@orion.example.com\nSubject: failure\n"
            b"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n"
            b"--B\nContent-Type: text/plain\n\nfailed\n\n--B\nContent-Type: message/delivery-status\n\n"
            b"Reporting-MTA: dns; mx.example.org\n\n" + fields.encode() + b"\n\n--B--\n")


def test_an_original_recipient_of_another_address_type_is_not_read_as_a_mailbox():
    """`Original-Recipient: x400; ...` names no Internet mailbox: the report is about the final
    recipient (seen to fail with the type test dropped, or `and` loosened to `or`)."""
    [outcome] = parse_message(report_for("Original-Recipient: x400; c=us;a=mail;s=bob@x400.example\n"
                                         "Final-Recipient: rfc822; bob@example.net\nAction: failed\nStatus: 5.1.1")).recipients
    assert outcome.address == "bob@example.net"
    [outcome] = parse_message(report_for("Original-Recipient: utf-8; bob@example.org\n"
                                         "Final-Recipient: rfc822; bob@example.net\nAction: failed\nStatus: 5.1.1")).recipients
    assert outcome.address == "bob@example.org"  # the address as sent, when its type is a mailbox


def test_the_address_type_ends_at_the_first_semicolon():
    # a quoted local part may hold a semicolon: the type is what comes before the first one
    [outcome] = parse_message(report_for('Original-Recipient: rfc822; "bob;ops"@example.org\n'
                                         "Final-Recipient: rfc822; relay@example.net\nAction: failed\nStatus: 5.1.1")).recipients
    assert outcome.address == '"bob;ops"@example.org'


@pytest.mark.parametrize(("diagnostic", "kept"), [
    ("x-mail-system-type; 550 5.1.1 no such user", "550 5.1.1 no such user"),  # type of 18: the type is dropped
    ("x-mail-system-typeab; 550 5.1.1 no such user", "x-mail-system-typeab; 550 5.1.1 no such user"),  # ';' at 20: words
])
def test_a_diagnostic_type_is_read_only_within_its_first_twenty_characters(diagnostic, kept):
    [outcome] = parse_message(report_for("Final-Recipient: rfc822; bob@example.net\nAction: failed\nStatus: 5.0.0\n"
                                         f"Diagnostic-Code: {diagnostic}")).recipients
    assert outcome.diagnostic.strip() == kept and outcome.status == "5.1.1"
