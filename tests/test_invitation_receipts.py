"""Answers to a calendar invitation as receipts: real iTIP replies shaped as Outlook/Exchange, Google
Calendar, Apple Calendar and Thunderbird send them (tests/itip/, README there), read by the real
receipts refresh from a Maildir, correlated by the event's UID and the attendee, shown per recipient.

The invitations themselves went out through a loopback aiosmtpd server with the real engine; the
ledger's event UID is set to the one the fixtures answer (as if those clients had answered it)."""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

import pytest

from relcomm_tui.compose.invited import plan_event
from relcomm_tui.delivery.engine import SendEngine
from relcomm_tui.invitations import store
from relcomm_tui.store.ledger import Ledger
from relcomm_tui.demo.mailserver import LoopbackMailServer
from relcomm_tui.plan import load_plan
from relcomm_tui.plan.invitation import fingerprint
from relcomm_tui.receipts.parse import parse_message
from relcomm_tui.receipts.refresh import refresh
from relcomm_tui.receipts.status import CONFIRMED, REACHED, UNKNOWN, build_status

from test_invitation_send import PEOPLE, write

ITIP = Path(__file__).parent / "itip"
UID = "relcomm.5f1b2c3d4e5f60718293a4b5c6d7e8f9@vega.example.com"
NOOR = '"Noor Haddad" <noor@vega.example.com>'


def dated_now(raw: bytes) -> bytes:
    """The fixture as it would arrive today: only its Date header changes (a reply dated before the
    invitation went out is never credited)."""
    return re.sub(rb"(?m)^Date: [^\r\n]*", b"Date: " + formatdate(usegmt=True).encode(), raw, count=1)


def deliver(maildir: Path, name: str) -> None:
    mailbox.Maildir(maildir, create=True).add(dated_now((ITIP / name).read_bytes()))


@pytest.fixture
def sent(tmp_path):
    """Invitations to Dana, Ada and Noor accepted by a real loopback server, under the fixtures' UID."""
    with LoopbackMailServer(maildir=tmp_path / "server-mail") as server:
        plan_file = write(tmp_path / "plan", server.port, people=PEOPLE + [NOOR])
        with open(plan_file, "a", encoding="utf-8") as handle:
            handle.write('[receipts]\nsources = [{ maildir = "../receipts" }]\n')
        plan = load_plan(plan_file)
        ledger = Ledger.open(tmp_path / "plan" / ".relcomm")
        communique = plan.communique("presentation")
        store.record(ledger, "2.0.0", "presentation", "REQUEST", plan_event(plan, communique),
                     fingerprint(communique.spec), uid=UID)
        import asyncio

        asyncio.run(SendEngine(plan, ledger).run())
        assert len(server.messages) == 3
        for accepted in server.messages:
            assert UID.encode() in accepted.data.replace(b"\r\n ", b"")
        yield plan_file, ledger, tmp_path / "receipts"


def fates(plan_file, ledger) -> dict[str, tuple[str, str]]:
    status = build_status(load_plan(plan_file), ledger)
    return {row.recipient_key: (row.fate.outcome, row.standing) for row in status.rows
            if row.communique_id == "presentation"}


def test_each_clients_answer_is_shown_per_recipient(sent):
    plan_file, ledger, receipts = sent
    assert fates(plan_file, ledger)["dana@vega.example.com"] == ("accepted", UNKNOWN)  # by the relay only
    deliver(receipts, "outlook-exchange-accepted.eml")
    deliver(receipts, "google-calendar-tentative.eml")
    deliver(receipts, "apple-calendar-declined.eml")
    result = refresh(load_plan(plan_file), ledger)
    assert result.ok and result.reports == 3 and result.matched == 3 and result.unmatched == 0
    assert fates(plan_file, ledger) == {
        "dana@vega.example.com": ("accepted", CONFIRMED),
        "ada@vega.example.com": ("tentative", REACHED),
        "noor@vega.example.com": ("declined", REACHED),
    }
    status = build_status(load_plan(plan_file), ledger)
    dana = next(r for r in status.rows if r.recipient_key == "dana@vega.example.com")
    assert dana.fate.text.startswith("confirmed: accepted ")
    cover = next(c for c in status.by_communique if c.id == "presentation")
    assert (cover.total, cover.confirmed, cover.reached) == (3, 1, 3)

    # Ada changes her mind in Thunderbird (a later answer): the latest answer is her fate.
    deliver(receipts, "thunderbird-accepted-sequence-1.eml")
    # Dana declines from Thunderbird in Outlook-compatible mode (the whole message is the calendar).
    deliver(receipts, "thunderbird-outlook-compat-declined.eml")
    result = refresh(load_plan(plan_file), ledger)
    assert result.matched == 2
    assert fates(plan_file, ledger)["ada@vega.example.com"] == ("accepted", CONFIRMED)
    assert fates(plan_file, ledger)["dana@vega.example.com"] == ("declined", REACHED)

    # The same answer read again (another copy in the mailbox) counts once.
    deliver(receipts, "outlook-exchange-accepted.eml")
    assert refresh(load_plan(plan_file), ledger).duplicates == 1


def test_answers_for_other_events_are_never_credited(sent):
    plan_file, ledger, receipts = sent
    deliver(receipts, "outlook-exchange-another-send.eml")       # relcomm's UID shape, not this ledger's
    deliver(receipts, "google-calendar-someone-elses-meeting.eml")  # someone else's meeting
    result = refresh(load_plan(plan_file), ledger)
    assert result.reports == 2 and result.matched == 0 and result.other_send == 1 and result.unmatched == 1
    assert set(fates(plan_file, ledger).values()) == {("accepted", UNKNOWN)}
    notes = {r["note"] for r in ledger.receipts() if r["kind"] == "rsvp"}
    assert notes == {"another send", None} or notes == {"another send", ""}


def test_an_answer_from_someone_not_invited_or_dated_before_the_send_is_not_credited(sent):
    plan_file, ledger, receipts = sent
    raw = (ITIP / "google-calendar-tentative.eml").read_bytes()
    forwarded = dated_now(raw).replace(b"ada@vega.example.com", b"eve@elsewhere.example.net")
    mailbox.Maildir(receipts, create=True).add(forwarded)
    old = raw.replace(b"Message-ID: <calendar-8c1f", b"Message-ID: <calendar-old-8c1f")  # dated 2026-12-03 10:11
    old = re.sub(rb"(?m)^Date: [^\r\n]*", b"Date: Mon, 01 Jan 2024 10:00:00 +0000", old, count=1)
    mailbox.Maildir(receipts, create=True).add(old)
    result = refresh(load_plan(plan_file), ledger)
    assert result.reports == 2 and result.matched == 0
    notes = sorted(r["note"] for r in ledger.receipts() if r["kind"] == "rsvp")
    assert notes == ["dated before it was sent", "from someone not invited"]
    assert fates(plan_file, ledger)["ada@vega.example.com"] == ("accepted", UNKNOWN)


def test_a_bounced_invitation_stays_a_bounce(sent, tmp_path):
    """A DSN returning the whole invitation (RET=FULL) holds a METHOD:REQUEST calendar: it is not an answer."""
    plan_file, ledger, receipts = sent
    original = next(iter((tmp_path / "server-mail" / "new").iterdir())).read_bytes()
    to = email.message_from_bytes(original, policy=email.policy.default)["To"].addresses[0].addr_spec
    # As Postfix writes a bounce with the whole message returned.
    raw = (f"From: MAILER-DAEMON@mx.vega.example.com (Mail Delivery System)\r\n"
           f"To: releases@vega.example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
           f"Date: {formatdate(usegmt=True)}\r\nMessage-ID: <20261203101500.1A2B3C@mx.vega.example.com>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n"
           '\tboundary="1A2B3C.1764756900/mx.vega.example.com"\r\n\r\n'
           "--1A2B3C.1764756900/mx.vega.example.com\r\nContent-Description: Notification\r\n"
           "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
           "I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.\r\n\r\n"
           "--1A2B3C.1764756900/mx.vega.example.com\r\nContent-Description: Delivery report\r\n"
           "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.vega.example.com\r\n\r\n"
           f"Final-Recipient: rfc822; {to}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
           "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n"
           "--1A2B3C.1764756900/mx.vega.example.com\r\nContent-Description: Undelivered Message\r\n"
           "Content-Type: message/rfc822\r\n\r\n").encode() + original + (
           b"\r\n--1A2B3C.1764756900/mx.vega.example.com--\r\n")
    assert b"method=REQUEST" in raw or b"method=\"REQUEST\"" in raw
    assert parse_message(raw).kind == "dsn"
    mailbox.Maildir(receipts, create=True).add(raw)
    assert refresh(load_plan(plan_file), ledger).matched == 1
    bounced = [o for o, _ in fates(plan_file, ledger).values()]
    assert bounced.count("bounced") == 1


def test_the_audit_record_and_status_json_carry_the_answers(sent):
    from relcomm_tui.audit.report import collect, render

    plan_file, ledger, receipts = sent
    deliver(receipts, "outlook-exchange-accepted.eml")
    deliver(receipts, "apple-calendar-declined.eml")
    refresh(load_plan(plan_file), ledger)
    record = collect(load_plan(plan_file), ledger)
    for fmt in ("md", "html", "csv"):
        text = render(record, fmt)
        assert "confirmed: accepted" in text and "declined" in text
    rows = build_status(load_plan(plan_file), ledger).as_dict()["recipients"]
    noor = next(r for r in rows if r["recipient_key"] == "noor@vega.example.com")
    assert noor["rsvp"] == "declined" and noor["fate"]["outcome"] == "declined" and noor["standing"] == "reached"


async def test_the_demo_server_answers_invitations_and_the_refresh_reads_them(tmp_path):
    """The embedded demo server writes Outlook-shaped answers for invitations it accepted; the real
    refresh credits them (what `relcomm demo` shows)."""
    people = [f'"Person {i}" <person{i}@vega.example.com>' for i in range(12)]
    receipts = tmp_path / "receipts"
    with LoopbackMailServer(maildir=tmp_path / "server-mail", write_reports_to=receipts, report_delay=(0.0, 0.0),
                            mdn_fraction=0.0, seed=7) as server:
        plan_file = write(tmp_path / "plan", server.port, people=people)
        with open(plan_file, "a", encoding="utf-8") as handle:
            handle.write('[receipts]\nsources = [{ maildir = "../receipts" }]\n')
        ledger = Ledger.open(tmp_path / "plan" / ".relcomm")
        await SendEngine(load_plan(plan_file), ledger).run()
        server.flush_reports()
    result = refresh(load_plan(plan_file), ledger)
    outcomes = [o for o, _ in fates(plan_file, ledger).values()]
    answered = [o for o in outcomes if o in ("accepted", "tentative", "declined")]
    credited = [r for r in ledger.receipts() if r["kind"] == "rsvp" and r["matched_by"] == "calendar-uid"]
    assert len(credited) == len(answered) > 0 and result.unmatched == 0
    assert len(set(answered)) >= 2  # the seeded mix has more than one kind of answer


def test_relcomm_receipts_counts_the_answers(sent, capsys):
    import json

    from relcomm_tui.commands.main import main

    plan_file, ledger, receipts = sent
    deliver(receipts, "outlook-exchange-accepted.eml")
    deliver(receipts, "apple-calendar-declined.eml")
    ledger.close()
    assert main(["receipts", str(plan_file), "--refresh"]) == 0
    out = capsys.readouterr().out
    assert "presentation: 3 invited · 1 accepted · 0 tentative · 1 declined · 1 no answer" in out
    assert main(["receipts", str(plan_file), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["invitation_answers"]["presentation"] == {"invited": 3, "accepted": 1, "tentative": 0,
                                                          "declined": 1, "no answer": 1}
