"""Delay and expiry reports as real servers send them (issue 11.3, 11.4, 11.6), in tests/reports/.

The postfix-3.7-* files were captured from a real Postfix 3.7.11 (its own config and spool, a loopback
receiving server that greylists, defers and fills mailboxes); the others were written from the
servers' own texts (Exim deliver.c warning messages, OpenSMTPD bounce.c, sendmail, qmail-send,
Exchange 2019). See tests/reports/README.md.

Every reason must be the server's words about that recipient, never boilerplate: the check runs
over these files and over the whole real bounce corpus, with its own list of phrases real MTAs wrap
around their reports.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from parse_strict import strict_parsing  # noqa: F401  (autouse: unexpected exceptions fail)
from relcomm_tui.receipts.parse import parse_message
from relcomm_tui.receipts.reasons import status_meaning
from test_bounce_corpus import corpus_dir

REPORTS = Path(__file__).parent / "reports"

# file -> envelope id (or None), then per recipient: (address, action, status, words the reason must hold)
EXPECTED = {
    # real delays: delayed, with the remote server's reply as the reason
    "postfix-3.7-delay-greylisted-450.eml": ("orion-4.2.1-greylisted", [
        ("greylisted@example.net", "delayed", "4.2.0", "450 4.2.0 <greylisted@example.net>: Recipient address rejected: Greylisted")]),
    "postfix-3.7-delay-greylisting-451-4.7.1.eml": ("orion-4.2.1-slow", [
        ("slow@example.net", "delayed", "4.7.1", "451 4.7.1 Please try again later (greylisting in action)")]),
    "postfix-3.7-delay-mailbox-full-452.eml": ("orion-4.2.1-full", [
        ("full@example.net", "delayed", "4.2.2", "Mailbox full, try again later")]),
    "postfix-3.7-delay-connection-refused.eml": ("orion-4.2.1-ops", [
        ("ops@down.example.net", "delayed", "4.4.1", "connect to 127.0.0.1[127.0.0.1]:2627: Connection refused")]),
    "exim-4.96-warning-greylisted.eml": ("orion-4.2.1-dana", [
        ("dana@example.net", "delayed", "4.7.1", "451 4.7.1 Greylisting in action, please come back later")]),
    "exim-4.96-warning-host-lookup.eml": ("orion-4.2.1-ops", [
        ("ops@lookup.example.net", "delayed", "4.0.0", "host lookup did not complete")]),
    "exim-4.80-warning-text-only.eml": (None, [
        ("erin@example.net", "delayed", "4.2.0", "450 4.2.0 <erin@example.net>: Recipient address rejected: Greylisted"),
        ("finn@example.com", "delayed", "", "451 Temporary local problem - please try later")]),
    "opensmtpd-6.8-delay-greylisted.eml": (None, [
        ("frank@example.net", "delayed", "4.7.1", "451 4.7.1 Greylisted, please retry in 300 seconds")]),
    "sendmail-8.17-warning-greylisted.eml": ("orion-4.2.1-hugo", [
        ("hugo@example.net", "delayed", "4.7.1", "451 4.7.1 Greylisted, please try again in 5 minutes")]),
    "exchange-2019-delay.eml": (None, [  # 4.4.7 without an expiry text: still a delay
        ("grace@example.net", "delayed", "4.4.7", "400 4.4.7 Message delayed")]),
    # final failures, whatever the label says
    "opensmtpd-6.8-expired.eml": (None, [
        ("frank@example.net", "failed", "4.4.7", "Envelope expired"),  # "Action: delayed": the envelope is gone
        ("gwen@example.org", "delayed", "4.4.1", "Network error on destination MXs")]),
    "qmail-1.03-queue-lifetime.eml": (None, [
        ("ivan@example.net", "failed", "4.4.1", "this message has been in the queue too long")]),
    "postfix-3.7-failed-after-queue-lifetime.eml": ("orion-4.2.1-full", [
        ("full@example.net", "failed", "4.2.2", "452 4.2.2 <full@example.net>: Mailbox full")]),
}


def test_every_report_fixture_is_checked():
    assert sorted(p.name for p in REPORTS.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_report_fixture(name):
    envid, recipients = EXPECTED[name]
    report = parse_message((REPORTS / name).read_bytes())
    assert report.kind == "dsn", report.problem
    assert report.envelope_id == envid
    got = [(r.address, r.action, r.status) for r in report.recipients]
    assert got == [(a, action, status) for a, action, status, _ in recipients]
    for r, (_, _, _, words) in zip(report.recipients, recipients):
        assert words in r.diagnostic, r.diagnostic
        assert len(r.diagnostic) <= 300


def test_relcomm_identifiers_survive_in_every_fixture_with_returned_headers():
    """Correlation (issue 11.1) needs the Message-ID relcomm put in the message."""
    for name in EXPECTED:
        report = parse_message((REPORTS / name).read_bytes())
        if name.startswith("exim-4.80"):  # the text-only warning returns no headers
            assert report.original_message_id is None
            continue
        assert report.original_message_id and report.original_message_id.startswith("orion-4.2.1."), name


# --------------------------------------------------------------------------- no boilerplate, ever

# What real MTAs wrap around every report (kept apart from the parser's own list on purpose: this is
# the judge, not the implementation). Lowercase; whitespace in the reason is collapsed first.
BOILERPLATE = [
    # Exim
    "this message was created automatically by mail delivery software",
    "no action is required on your part",
    "delivery attempts will continue for some time",
    "this warning may be repeated at intervals",
    "eventually the mail delivery software will give up",
    "has not yet been delivered to one or more of its recipients",
    "could not be delivered to one or more of its recipients",
    "the following address(es) failed",
    "this is a permanent error",
    # Postfix
    "this is the mail system at host",
    "i'm sorry to have to inform you",
    "this is a warning only",
    "you do not need to resend your message",
    "it will be retried until it is",
    "for further assistance, please send mail to",
    "please include this problem report",
    "delete your own text from the attached returned message",
    # OpenSMTPD
    "this is the mailer-daemon, please do not reply",
    "a message is delayed for more than",
    "please note that this is only a temporary failure report",
    "the message is kept in the queue for up to",
    "you do not need to re-send the message",
    "below is a copy of the original message",
    "an error has occurred while attempting to deliver a message",
    # sendmail
    "this is a warning message only",
    "the original message was received at",
    "transcript of session follows",
    "warning: message still undelivered after",
    "will keep trying until message is",
    # qmail
    "this is the qmail-send program",
    "i wasn't able to deliver your message to the following addresses",
    "sorry it didn't work out",
    "below this line is a copy of the message",
    # Exchange, Gmail, generic
    "delivery has failed to these recipients or groups",
    "delivery is delayed to these recipients or groups",
    "this message hasn't been delivered yet",
    "the server will keep trying to deliver this message",
    "you'll be notified if the message can't be delivered",
    "diagnostic information for administrators",
    "this is an automatically generated delivery status notification",
    "google tried to deliver your message",
    "we recommend contacting the other email provider",
    "message will be retried for",
]


def all_reports():
    corpus = corpus_dir()
    assert corpus is not None, "bounce corpus not found (see tests/test_bounce_corpus.py)"
    for path in sorted((corpus / "emails").iterdir()) + sorted(REPORTS.glob("*.eml")):
        yield path, parse_message(path.read_bytes())


def test_no_reason_is_boilerplate():
    checked = 0
    offenders = []
    for path, report in all_reports():
        if report.kind != "dsn":
            continue
        for r in report.recipients:
            checked += 1
            reason = " ".join(r.diagnostic.split()).lower()
            hits = [phrase for phrase in BOILERPLATE if phrase in reason]
            if hits:
                offenders.append(f"{path.name} {r.address}: {hits[0]!r} in {r.diagnostic[:120]!r}")
    assert checked > 400
    assert offenders == []


def test_a_report_with_a_status_always_has_a_reason():
    """When the server gives no words at all, the status code's RFC 3463 meaning is the reason."""
    missing = [f"{path.name} {r.address} {r.status}" for path, report in all_reports() if report.kind == "dsn"
               for r in report.recipients if r.status and not r.diagnostic.strip()]
    assert missing == []


@pytest.mark.parametrize("status, meaning", [
    ("5.1.1", "Bad destination mailbox address"),
    ("4.4.7", "Delivery time expired"),
    ("5.2.2", "Mailbox full"),
    ("4.7.1", "Delivery not authorized, message refused"),
    ("5.7.26", "Multiple authentication checks failed"),
    ("5.1.10", "Recipient address has null MX"),
    ("5.7.509", "Security or policy status"),  # a detail nobody registered: its subject
    ("2.0.0", "Other undefined status"),
    ("6.1.1", ""),
    ("5.1", ""),
    ("", ""),
])
def test_status_meaning(status, meaning):
    assert status_meaning(status) == meaning
