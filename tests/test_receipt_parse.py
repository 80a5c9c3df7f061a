"""Focused tests of relcomm_tui.receipts.parse with small hand-built messages."""

from __future__ import annotations

import time
from email.message import EmailMessage, Message
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from relcomm_tui.receipts.parse import RecipientOutcome, Report, parse_message, report_to_json

from parse_strict import strict_parsing  # noqa: F401  (autouse: unexpected exceptions fail)


def _original() -> EmailMessage:
    orig = EmailMessage()
    orig["From"] = "Release Bot <releases@example.com>"
    orig["To"] = "alice@example.org, bob@example.net"
    orig["Subject"] = "Orion 2.4 released"
    orig["Message-ID"] = "<orion-2.4.1234@example.com>"
    orig.set_content("Orion 2.4 is out.\n")
    return orig


def _report(report_type: str, human: str, fields: str, subtype: str, attach_headers_only=False) -> bytes:
    """A multipart/report built with the email package; the machine-readable part is
    given as raw text (the email package cannot generate message/delivery-status)."""
    outer = MIMEMultipart("report", report_type=report_type)
    outer["From"] = "Mail Delivery System <MAILER-DAEMON@mx.example.org>"
    outer["To"] = "releases@example.com"
    outer["Subject"] = "Delivery Status Notification"
    outer["Message-ID"] = "<report-1@mx.example.org>"
    outer.attach(MIMEText(human))
    placeholder = MIMEText("@@FIELDS@@")
    outer.attach(placeholder)
    if attach_headers_only:
        hdrs = MIMEText("".join(f"{k}: {v}\n" for k, v in _original().items()), "rfc822-headers")
        outer.attach(hdrs)
    else:
        outer.attach(MIMEMessage(_original()))
    raw = outer.as_bytes()
    head, _, rest = raw.partition(b"@@FIELDS@@")
    # swap the placeholder's headers for the report part's content type
    cut = head.rfind(b"Content-Type: text/plain")
    head = head[:cut] + f"Content-Type: message/{subtype}\n\n".encode()
    return head + fields.encode("utf-8") + rest


# --------------------------------------------------------------------------- DSN


def test_standard_dsn_delivered_and_failed_with_envid_and_original_recipient():
    fields = (
        "Reporting-MTA: dns; mx.example.org\n"
        "Original-Envelope-Id: orion+2B2.4+3Dabc\n"
        "Arrival-Date: Mon, 1 Jan 2024 10:00:00 +0000\n"
        "\n"
        "Original-Recipient: rfc822;Alice@Example.org\n"
        "Final-Recipient: rfc822;alice.smith@mail.example.org\n"
        "Action: delivered\n"
        "Status: 2.0.0\n"
        "\n"
        "Final-Recipient: rfc822; <bob@example.net>\n"
        "Action: failed\n"
        "Status: 5.0.0\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown\n"
    )
    raw = _report("delivery-status", "Your message was delivered to some recipients.", fields,
                  "delivery-status")
    r = parse_message(raw)
    assert r.kind == "dsn"
    assert r.problem is None
    assert r.envelope_id == "orion+2.4=abc"
    assert r.original_message_id == "orion-2.4.1234@example.com"
    assert r.message_id == "report-1@mx.example.org"
    assert r.from_address == "mailer-daemon@mx.example.org"
    assert len(r.recipients) == 2
    alice, bob = r.recipients
    assert alice.address == "alice@example.org"  # Original-Recipient preferred
    assert alice.final_recipient == "alice.smith@mail.example.org"
    assert alice.original_recipient == "alice@example.org"
    assert alice.action == "delivered"
    assert alice.status == "2.0.0"
    assert bob.address == "bob@example.net"
    assert bob.action == "failed"
    assert bob.status == "5.1.1"  # the remote server's precise code beats the generic 5.0.0
    assert "User unknown" in bob.diagnostic
    assert len(bob.diagnostic) <= 300

    js = report_to_json("x.eml", r)
    assert set(js) == {"file", "kind", "recipients", "original_message_id", "envelope_id"}
    assert js["file"] == "x.eml"
    assert js["recipients"][1] == {
        "address": "bob@example.net",
        "action": "failed",
        "status": "5.1.1",
        "diagnostic": bob.diagnostic,
    }


def test_global_delivery_status_delayed_with_headers_only():
    fields = (
        "Reporting-MTA: dns; mx.example.org\n\n"
        "Final-Recipient: utf-8; jörg@example.de\n"
        "Action: delayed\n"
        "Status: 4.4.1\n"
        "Will-Retry-Until: Tue, 2 Jan 2024 10:00:00 +0000\n"
    )
    raw = _report("global-delivery-status", "Still trying.", fields, "global-delivery-status",
                  attach_headers_only=True)
    r = parse_message(raw)
    assert r.kind == "dsn"
    assert [(x.address, x.action, x.status) for x in r.recipients] == [("jörg@example.de", "delayed", "4.4.1")]
    assert r.original_message_id == "orion-2.4.1234@example.com"


def test_postfix_style_plain_bounce_without_dsn_part():
    msg = EmailMessage()
    msg["From"] = "MAILER-DAEMON@mx.example.org (Mail Delivery System)"
    msg["To"] = "releases@example.com"
    msg["Subject"] = "Undelivered Mail Returned to Sender"
    msg.set_content(
        "This is the mail system at host mx.example.org.\n\n"
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients.\n\n"
        "<carol@example.net>: host mx.example.net[192.0.2.1] said: 550 5.2.2\n"
        "    <carol@example.net>: Mailbox full (in reply to RCPT TO command)\n\n"
        "--- Below this line is a copy of the message.\n\n"
        "From: releases@example.com\nTo: carol@example.net\n"
        "Message-ID: <orion-2.4.1234@example.com>\nSubject: Orion\n\nhello\n"
    )
    r = parse_message(msg.as_bytes())
    assert r.kind == "dsn"
    assert [(x.address, x.action, x.status) for x in r.recipients] == [("carol@example.net", "failed", "5.2.2")]
    assert "Mailbox full" in r.recipients[0].diagnostic or "550" in r.recipients[0].diagnostic
    assert r.original_message_id == "orion-2.4.1234@example.com"


def test_qmail_style_bounce():
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\nTo: releases@example.com\nSubject: failure notice\n\n"
        b"Hi. This is the qmail-send program at mx.example.org.\n"
        b"I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        b"This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        b"<dave@example.net>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
        b"--- Below this line is a copy of the message.\n\n"
        b"Message-ID: <m-1@example.com>\nTo: dave@example.net\n\nbody\n"
    )
    r = parse_message(raw)
    assert r.kind == "dsn"
    assert [(x.address, x.action, x.status) for x in r.recipients] == [("dave@example.net", "failed", "5.1.1")]
    assert r.original_message_id == "m-1@example.com"


def test_ses_json_bounce():
    body = (
        '{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":'
        '[{"emailAddress":"erin@example.net","action":"failed","status":"5.1.1",'
        '"diagnosticCode":"smtp; 550 5.1.1 user unknown"}]},'
        '"mail":{"messageId":"0100-ses-id","headers":[{"name":"Message-ID","value":"<orig-9@example.com>"}]}}'
    )
    msg = EmailMessage()
    msg["From"] = "no-reply@sns.amazonaws.com"
    msg["Subject"] = "AWS Notification Message"
    msg.set_content(body)
    r = parse_message(msg.as_bytes())
    assert r.kind == "dsn"
    assert [(x.address, x.action, x.status) for x in r.recipients] == [("erin@example.net", "failed", "5.1.1")]
    assert r.original_message_id == "orig-9@example.com"


# --------------------------------------------------------------------------- MDN / ARF / auto / reply


def test_mdn_displayed():
    fields = (
        "Reporting-UA: mua.example.org; Thunderbird\n"
        "Original-Recipient: rfc822;alice@example.org\n"
        "Final-Recipient: rfc822;alice@example.org\n"
        "Original-Message-ID: <orion-2.4.1234@example.com>\n"
        "Disposition: manual-action/MDN-sent-manually; displayed\n"
    )
    raw = _report("disposition-notification", "The message was displayed.", fields,
                  "disposition-notification", attach_headers_only=True)
    r = parse_message(raw)
    assert r.kind == "mdn"
    assert r.original_message_id == "orion-2.4.1234@example.com"
    assert [(x.address, x.action) for x in r.recipients] == [("alice@example.org", "displayed")]


def test_mdn_deleted_modifier_stripped():
    fields = (
        "Final-Recipient: rfc822;bob@example.net\n"
        "Original-Message-ID: <x@y>\n"
        "Disposition: automatic-action/MDN-sent-automatically; deleted/error\n"
    )
    r = parse_message(_report("disposition-notification", "deleted", fields, "disposition-notification"))
    assert r.kind == "mdn"
    assert r.recipients[0].action == "deleted"
    assert r.original_message_id == "x@y"


def test_auto_reply():
    msg = EmailMessage()
    msg["From"] = "Alice <Alice@Example.org>"
    msg["To"] = "releases@example.com"
    msg["Subject"] = "Out of Office: Orion 2.4 released"
    msg["Auto-Submitted"] = "auto-replied"
    msg["In-Reply-To"] = "<orion-2.4.1234@example.com>"
    msg["Message-ID"] = "<ooo-1@example.org>"
    msg.set_content("I am away until Monday.\n")
    r = parse_message(msg.as_bytes())
    assert r.kind == "auto-reply"
    assert [(x.address, x.action) for x in r.recipients] == [("alice@example.org", "auto-replied")]
    assert r.in_reply_to == ["orion-2.4.1234@example.com"]
    assert r.original_message_id == "orion-2.4.1234@example.com"
    assert r.message_id == "ooo-1@example.org"


def test_auto_reply_by_subject_only():
    msg = EmailMessage()
    msg["From"] = "bob@example.net"
    msg["Subject"] = "Automatic reply: Orion 2.4 released"
    msg.set_content("Away.\n")
    assert parse_message(msg.as_bytes()).kind == "auto-reply"


def test_arf_complaint():
    fields = (
        "Feedback-Type: abuse\n"
        "User-Agent: SomeFBL/1.0\n"
        "Version: 1\n"
        "Original-Mail-From: <releases@example.com>\n"
        "Original-Rcpt-To: <frank@example.net>\n"
    )
    raw = _report("feedback-report", "This is an abuse report.", fields, "feedback-report")
    r = parse_message(raw)
    assert r.kind == "complaint"
    assert [(x.address, x.action) for x in r.recipients] == [("frank@example.net", "complained")]
    assert r.recipients[0].diagnostic == "abuse"
    assert r.original_message_id == "orion-2.4.1234@example.com"


def test_arf_complaint_recipient_from_attached_message():
    fields = "Feedback-Type: abuse\nUser-Agent: x/1\nVersion: 1\n"
    r = parse_message(_report("feedback-report", "abuse", fields, "feedback-report"))
    assert r.kind == "complaint"
    assert sorted(x.address for x in r.recipients) == ["alice@example.org", "bob@example.net"]


def test_human_reply():
    msg = EmailMessage()
    msg["From"] = "Grace Hopper <Grace@Example.net>"
    msg["To"] = "releases@example.com"
    msg["Subject"] = "Re: Orion 2.4 released"
    msg["In-Reply-To"] = "<orion-2.4.1234@example.com>"
    msg["References"] = "<thread-0@example.com> <orion-2.4.1234@example.com>"
    msg["Message-ID"] = "<reply-1@example.net>"
    msg.set_content("Thanks! Does this fix the upgrade bug?\n")
    r = parse_message(msg.as_bytes())
    assert r.kind == "reply"
    assert r.in_reply_to == ["orion-2.4.1234@example.com", "thread-0@example.com"]
    assert [(x.address, x.action) for x in r.recipients] == [("grace@example.net", "replied")]
    assert r.subject == "Re: Orion 2.4 released"
    assert r.from_address == "grace@example.net"


def test_reply_about_a_delivery_problem_is_still_a_reply():
    msg = EmailMessage()
    msg["From"] = "Bob <bob@example.net>"
    msg["Subject"] = "Re: Delivery failed for the Orion mail?"
    msg["In-Reply-To"] = "<orion-2.4.1234@example.com>"
    msg.set_content("Your message could not be delivered to carol@example.org: 550 5.1.1 user unknown.\n")
    r = parse_message(msg.as_bytes())
    assert r.kind == "reply"
    assert [(x.address, x.action) for x in r.recipients] == [("bob@example.net", "replied")]


def test_exim_bounce_with_envelope_id_in_returned_headers():
    raw = (
        b"From: Mail Delivery System <Mailer-Daemon@mx.example.org>\nTo: releases@example.com\n"
        b"Subject: Mail delivery failed: returning message to sender\nAuto-Submitted: auto-replied\n"
        b"X-Failed-Recipients: heidi@example.net\n\n"
        b"This message was created automatically by mail delivery software.\n\n"
        b"A message that you sent could not be delivered to one or more of its\n"
        b"recipients. This is a permanent error. The following address(es) failed:\n\n"
        b"  heidi@example.net\n    host mx.example.net [192.0.2.7]\n"
        b"    SMTP error from remote mail server after RCPT TO:<heidi@example.net>:\n"
        b"    550 5.1.1 No such user\n\n"
        b"------ This is a copy of the message, including all the headers. ------\n\n"
        b"Message-ID: <orion-7@example.com>\nX-Envelope-Id: orion-7\nTo: heidi@example.net\n\nhi\n"
    )
    r = parse_message(raw)
    assert r.kind == "dsn"
    assert [(x.address, x.action, x.status) for x in r.recipients] == [("heidi@example.net", "failed", "5.1.1")]
    assert r.original_message_id == "orion-7@example.com"
    assert r.envelope_id == "orion-7"


def test_plain_message_is_none():
    msg = EmailMessage()
    msg["From"] = "someone@example.net"
    msg["Subject"] = "Lunch?"
    msg.set_content("Are you free?\n")
    r = parse_message(msg.as_bytes())
    assert r.kind == "none"
    assert r.recipients == []


# --------------------------------------------------------------------------- hostile input


def _assert_none(r: Report) -> None:
    assert isinstance(r, Report)
    assert r.kind == "none"
    assert r.problem


def test_empty_bytes():
    _assert_none(parse_message(b""))
    _assert_none(parse_message(b"\r\n\r\n"))


def test_not_bytes():
    _assert_none(parse_message(None))  # type: ignore[arg-type]


def test_binary_garbage():
    import random

    rnd = random.Random(42)
    for n in (1, 17, 4096, 100_000):
        blob = bytes(rnd.getrandbits(8) for _ in range(n))
        r = parse_message(blob)
        assert isinstance(r, Report)
        assert r.kind in ("none",)


def test_huge_part_is_capped():
    big = b"x" * (20 * 1024 * 1024)
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\nTo: a@example.com\nSubject: Undelivered Mail\n"
        b"MIME-Version: 1.0\nContent-Type: text/plain\n\n" + big
    )
    t0 = time.perf_counter()
    r = parse_message(raw)
    elapsed = time.perf_counter() - t0
    assert r.kind == "none"
    assert r.problem
    assert elapsed < 10


def test_bad_charset_and_encoding():
    raw = (
        b"From: =?x-no-such-charset?Q?Bad?= <mailer-daemon@mx.example.org>\n"
        b"To: a@example.com\nSubject: =?bogus?B?!!!?=\nMIME-Version: 1.0\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\nContent-Transfer-Encoding: base64\n\n"
        b"@@@ not base64 \xff\xfe\n"
    )
    r = parse_message(raw)
    assert isinstance(r, Report)
    assert r.kind == "none"
    assert r.problem


def test_multipart_without_boundary():
    raw = (
        b"From: x@example.com\nTo: y@example.com\nSubject: hi\nMIME-Version: 1.0\n"
        b"Content-Type: multipart/report; report-type=delivery-status\n\n"
        b"--nothing\nContent-Type: text/plain\n\nhello\n--nothing--\n"
    )
    r = parse_message(raw)
    assert isinstance(r, Report)
    assert r.kind == "none"
    assert r.problem


def test_deeply_nested_message():
    inner: Message = MIMEText("x")
    for _ in range(200):
        outer = MIMEMultipart()
        outer.attach(inner)
        inner = outer
    inner["Subject"] = "nested"
    r = parse_message(inner.as_bytes())
    assert isinstance(r, Report)
    assert r.kind == "none"


@pytest.mark.parametrize(
    "raw, problem",
    [
        (b"\x00\x01\x02", "no headers found"),
        (b"Content-Type: multipart/mixed; boundary=\"\"\n\n--\n--\n", "multipart not closed"),
        (b"Subject: x\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822;\nAction:\n", None),
        (b"Subject: x\nContent-Type: message/rfc822\n\n", None),
        (b"From: \n" * 5000, None),
    ],
)
def test_odd_inputs_never_raise(raw, problem):
    # strict mode (parse_strict): an exception the parser did not expect fails here, it is not hidden
    r = parse_message(raw)
    assert (r.kind, r.recipients, r.problem) == ("none", [], problem)


# --------------------------------------------------------------------------- strict mode

NO_BOUNDARY_DSN = (
    b"From: MAILER-DAEMON@mx.example.org\nSubject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
    b"Content-Type: multipart/report; report-type=delivery-status\n\n"
    b"--lost\nContent-Type: text/plain; charset=iso-8859-1\n\nYour message could not be delivered.\n\n"
    b"--lost\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
    b"Final-Recipient: rfc822; carol@example.net\nAction: failed\nStatus: 5.1.1\n"
    b"Diagnostic-Code: smtp; 550 5.1.1 <carol@example.net>: User unknown\n\n--lost--\n"
)


def _boom(*args, **kwargs):
    raise RuntimeError("injected bug")


def test_a_multipart_without_boundary_is_recovered():
    r = parse_message(NO_BOUNDARY_DSN)
    assert r.kind == "dsn"
    assert [(x.address, x.action, x.status) for x in r.recipients] == [("carol@example.net", "failed", "5.1.1")]


@pytest.mark.parametrize("where", ["_recover_multipart", "_decode_bytes", "_lookup_charset", "_dsn_from_fields"])
def test_an_injected_bug_fails_in_strict_mode_and_degrades_for_users(monkeypatch, where):
    from relcomm_tui.receipts import parse

    monkeypatch.setattr(parse, where, _boom)
    with pytest.raises(RuntimeError, match="injected bug"):
        parse_message(NO_BOUNDARY_DSN)
    monkeypatch.setenv(parse.STRICT_ENV, "0")  # what users run: never a traceback
    r = parse_message(NO_BOUNDARY_DSN)
    assert (r.kind, r.problem) == ("none", "unparseable message (RuntimeError)")


def test_an_injected_bug_in_a_tolerant_place_fails_in_strict_mode(monkeypatch):
    """Header decoding goes on after a broken encoded word; a bug there must not hide behind that."""
    from relcomm_tui.receipts import parse

    monkeypatch.setattr(parse, "make_header", _boom)
    raw = b"From: =?utf-8?q?Mail_Delivery?= <mailer-daemon@mx.example.org>\nSubject: =?utf-8?q?hi?=\n\nhello\n"
    with pytest.raises(RuntimeError, match="injected bug"):
        parse_message(raw)
    monkeypatch.setenv(parse.STRICT_ENV, "")
    assert parse_message(raw).from_address == "mailer-daemon@mx.example.org"


def test_broken_charsets_are_message_errors_not_bugs():
    """What a stranger's message makes the standard library raise is expected, even in strict mode."""
    raw = (b"From: =?utf-8\x00?q?x?= <mailer-daemon@mx.example.org>\nSubject: =?x-nope?q?y?=\n"
           b"Content-Type: text/plain; charset=\"utf-8\x00\"\nContent-Transfer-Encoding: base64\n\n@@@\xff\n")
    r = parse_message(raw)
    assert r.kind == "none"
    assert r.problem and "undecodable" in r.problem


# --------------------------------------------------------------------------- linear time on hostile lines


def test_a_report_followed_by_a_flood_of_short_lines_is_still_read():
    from relcomm_tui.receipts import parse

    raw = NO_BOUNDARY_DSN.replace(b"--lost--\n", b"--lost--\n" + b"\n" * (parse.MAX_LINES * 2))
    r = parse_message(raw)
    assert [(x.address, x.action) for x in r.recipients] == [("carol@example.net", "failed")]
    flood = b"From: someone@example.org\nSubject: hi\n\n" + b"\n" * (parse.MAX_LINES * 2)
    assert "lines: only the first ones were parsed" in (parse_message(flood).problem or "")
    # bare CR line ends count as lines too (issue 11.7): the email package splits on them, and
    # before they were not counted (4 MB of CRs: 4 million line objects, 80 MB)
    cr_flood = flood.replace(b"\n", b"\r")
    assert "lines: only the first ones were parsed" in (parse_message(cr_flood).problem or "")


@pytest.mark.parametrize("line", [b"|", b"#", b"-", b"\t", b"\n"])
def test_one_long_line_costs_linear_time(line):
    """A bounce whose text is one run of a single character: each of these backtracked quadratically
    or cubically (8 KB of '|' took minutes). Time 1 KB and 32 KB: 32 times the text, at most ~64
    times the work, whatever the machine's speed (quadratic would be 1,000 times)."""
    head = (b"From: MAILER-DAEMON@mx.example.org\nSubject: Undelivered Mail Returned to Sender\n"
            b"Content-Type: text/plain\n\nThis message could not be delivered to bob@example.net.\n")

    def cost(n: int) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            r = parse_message(head + line * n)
            best = min(best, time.perf_counter() - start)
        assert r.kind == "dsn" and r.recipients[0].address == "bob@example.net"
        return best

    small, big = cost(1024), cost(32 * 1024)
    assert big < max(small, 0.001) * 200, f"{big:.3f}s for 32 KB against {small:.4f}s for 1 KB"


# --------------------------------------------------------------------------- fates and reasons (issue 11)


def _delay_dsn(fields: str, human: str = "Your message is delayed.", subject: str = "Delayed Mail") -> bytes:
    raw = _report("delivery-status", human, fields, "delivery-status")
    return raw.replace(b"Subject: Delivery Status Notification", f"Subject: {subject}".encode(), 1)


def _one(raw: bytes):
    r = parse_message(raw)
    assert r.kind == "dsn" and len(r.recipients) == 1, (r.kind, r.recipients)
    return r.recipients[0]


@pytest.mark.parametrize("diagnostic", [
    "smtp; 451 4.4.7 Message expired in queue",
    "X-Postfix; delivery time expired",
    "smtp; 421 4.4.2 Connection timed out; giving up on this message",
    "x-local; retry timeout exceeded",
    "smtp; 451 4.4.7 delivery time expiry reached",
    "x-unix; message expiry exceeded, removed from the queue",
    "smtp; 451 4.4.7 Queue expiry",
])
def test_a_delay_whose_server_words_say_it_is_over_is_a_failure(diagnostic):
    fields = (f"Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; bob@example.net\n"
              f"Action: delayed\nStatus: 4.4.7\nDiagnostic-Code: {diagnostic}\n")
    r = _one(_delay_dsn(fields))
    assert r.action == "failed"
    assert r.diagnostic == diagnostic.split(";", 1)[1].strip()  # the server's words, as they are


@pytest.mark.parametrize("diagnostic", [
    "smtp; 454 4.7.5 TLS handshake failed: certificate has expired",
    "smtp; 451 4.4.7 Message delayed, the queue entry will expire in 2 days",
    "smtp; 450 4.2.0 <bob@example.net>: Recipient address rejected: Greylisted",
    "smtp; 451 4.7.1 Password expired for relay account, try again later",
    "smtp; 451 4.4.7 We are not giving up yet",
    "smtp; 451 4.4.7 Message delayed, queue expiry in 3 days",
    "smtp; 451 4.4.7 not expired yet, retrying",
])
def test_a_real_delay_stays_a_delay(diagnostic):
    fields = (f"Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; bob@example.net\n"
              f"Action: delayed\nStatus: 4.4.7\nDiagnostic-Code: {diagnostic}\n")
    r = _one(_delay_dsn(fields))
    assert r.action == "delayed"
    assert r.diagnostic == diagnostic.split(";", 1)[1].strip()


def test_expiry_words_in_the_human_part_are_read_per_recipient():
    """OpenSMTPD lists "address: error" lines: only the expired envelope is failed."""
    human = ("    A message is delayed for more than 0 seconds for the following\n    list of recipients:\n\n"
             "bob@example.net: Envelope expired\ncarol@example.org: 421 4.7.0 Try again later\n\n"
             "    Please note that this is only a temporary failure report.\n")
    fields = ("Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; bob@example.net\nAction: delayed\n"
              "Status: 4.4.7\n\nFinal-Recipient: rfc822; carol@example.org\nAction: delayed\nStatus: 4.7.0\n")
    r = parse_message(_delay_dsn(fields, human))
    assert [(x.address, x.action, x.diagnostic) for x in r.recipients] == [
        ("bob@example.net", "failed", "Envelope expired"),
        ("carol@example.org", "delayed", "421 4.7.0 Try again later")]


def test_only_a_delay_is_turned_into_a_failure():
    human = "<bob@example.net>: delivered; your old message expired long ago, giving up on it\n"
    fields = ("Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; bob@example.net\nAction: delivered\n"
              "Status: 2.0.0\n")
    r = _one(_delay_dsn(fields, human, "Successful Mail Delivery Report"))
    assert r.action == "delivered"


def test_a_reason_without_server_words_is_the_status_meaning():
    human = ("This is an automatically generated Delivery Status Notification.\n\n"
             "THIS IS A WARNING MESSAGE ONLY.\n\nYOU DO NOT NEED TO RESEND YOUR MESSAGE.\n\n"
             "Delivery to the following recipients has been delayed.\n\n       bob@example.net\n")
    fields = "Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822;bob@example.net\nAction: delayed\nStatus: 4.4.1\n"
    r = _one(_delay_dsn(fields, human))
    assert (r.action, r.status, r.diagnostic) == ("delayed", "4.4.1", "No answer from host")


def test_a_diagnostic_code_that_says_nothing_gives_way_to_the_recipients_line():
    human = ("This is the mail system at host mx.example.org.\n\n"
             "<bob@example.net>: connect to mx.example.net[192.0.2.7]:25: Connection timed out\n")
    fields = ("Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; bob@example.net\nAction: delayed\n"
              "Status: 4.4.1\nDiagnostic-Code: X-Unix; 75\n")
    r = _one(_delay_dsn(fields, human))
    assert r.diagnostic == "connect to mx.example.net[192.0.2.7]:25: Connection timed out"


def test_a_version_number_in_the_subject_is_not_a_status_code():
    """Release announcements carry versions shaped like status codes ("Orion 5.1.1")."""
    text = (b"From: Mail Delivery System <Mailer-Daemon@relay.example.org>\nTo: releases@example.com\n"
            b"Subject: Warning: message 1UZtEa-0004xk-Ab delayed 24 hours\n\n"
            b"This message was created automatically by mail delivery software.\n"
            b"A message that you sent has not yet been delivered to one or more of its\n"
            b"recipients after more than 24 hours on the queue on relay.example.org.\n\n"
            b"The subject of the message is: Orion 5.1.1 released\n\n"
            b"The address to which the message has not yet been delivered is:\n\n"
            b"  bob@example.net\n    Delay reason: SMTP error from remote mail server after RCPT TO:<bob@example.net>:\n"
            b"    host mx.example.net [192.0.2.26]: 451 Temporary local problem - please try later\n")
    r = _one(text)
    assert (r.action, r.status) == ("delayed", "")
    assert r.diagnostic.endswith("451 Temporary local problem - please try later")

    # the returned message's Subject quoted in the Diagnostic-Code, after the real code
    fields = ("Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; alice@example.org\nAction: failed\n"
              "Status: 5.0.0\nDiagnostic-Code: smtp; 550 5.7.1 Message Orion 2.4 released blocked as spam\n")
    raw = _report("delivery-status", "failed", fields, "delivery-status")
    r = _one(raw.replace(b"Orion 2.4 released", b"Orion 5.1.1 released"))  # in the Subject and the diagnostic
    assert (r.status, r.diagnostic) == ("5.7.1", "550 5.7.1 Message Orion 5.1.1 released blocked as spam")


# --------------------------------------------------------------------------- each field of an MDN, a DSN's
# action from its status, a local-less recipient (issue 15: mutants that survived the tests above)


def _mdn(fields: str) -> Report:
    return parse_message(_report("disposition-notification", "x", fields, "disposition-notification",
                                 attach_headers_only=True))


@pytest.mark.parametrize(("fields", "expected", "message_id"), [
    # the original recipient is the address; the final one is kept beside it
    ("Original-Recipient: rfc822;Alice@Example.org\nFinal-Recipient: rfc822;Alice.Box@MX.example.org\n"
     "Original-Message-ID: <m@x>\nDisposition: manual-action/MDN-sent-manually; displayed\n",
     RecipientOutcome("alice@example.org", "alice.box@mx.example.org", "alice@example.org", "displayed", "",
                      "manual-action/MDN-sent-manually; displayed"), "m@x"),
    # an original recipient without a domain gives way to the final one; the type is lower-cased, no modifier
    ("Original-Recipient: rfc822;alice\nFinal-Recipient: rfc822;alice.box@mx.example.org\n"
     "Disposition: automatic-action/MDN-sent-automatically; Deleted/Error\n",
     RecipientOutcome("alice.box@mx.example.org", "alice.box@mx.example.org", "alice", "deleted", "",
                      "automatic-action/MDN-sent-automatically; Deleted/Error"), "orion-2.4.1234@example.com"),
    # no recipient fields: the MDN's sender; a disposition without modes is its own type
    ("Reporting-UA: x\nDisposition: displayed\n",
     RecipientOutcome("mailer-daemon@mx.example.org", "", "", "displayed", "", "displayed"),
     "orion-2.4.1234@example.com"),
    # no disposition at all: read as displayed (it is a read receipt), nothing to quote
    ("Reporting-UA: x\n", RecipientOutcome("mailer-daemon@mx.example.org", "", "", "displayed", "", ""),
     "orion-2.4.1234@example.com"),
])
def test_each_field_of_a_read_receipt_is_read(fields, expected, message_id):
    report = _mdn(fields)
    assert report.kind == "mdn" and report.recipients == [expected]
    assert report.original_message_id == message_id  # the field first, else the returned headers


def _dsn(fields: str, to: str | None = None) -> Report:
    raw = _report("delivery-status", "x", "Reporting-MTA: dns;mx.example.org\n\n" + fields, "delivery-status")
    if to is not None:  # the returned message's To (the outer report's is releases@example.com)
        raw = raw.replace(b"To: alice@example.org, bob@example.net", b"To: " + to.encode())
    return parse_message(raw)


@pytest.mark.parametrize(("fields", "action"), [
    ("Final-Recipient: rfc822;a@x.org\nStatus: 2.0.0\n", "delivered"),
    ("Final-Recipient: rfc822;a@x.org\nStatus: 4.2.0\n", "delayed"),
    ("Final-Recipient: rfc822;a@x.org\nStatus: 5.1.1\n", "failed"),
    ("Final-Recipient: rfc822;a@x.org\nAction: bogus\nStatus: 2.0.0\n", "delivered"),
    ("Final-Recipient: rfc822;a@x.org\nAction: bogus\nStatus: 4.4.1\n", "delayed"),
])
def test_a_missing_or_unknown_action_follows_the_status(fields, action):
    assert [(r.address, r.action) for r in _dsn(fields).recipients] == [("a@x.org", action)]


@pytest.mark.parametrize(("fields", "to", "expected"), [
    # "@host" or a bare local part, alone in the report: the returned message's single To, lower-cased
    ("Final-Recipient: rfc822;@mx.example.org\nAction: failed\nStatus: 5.1.1\n", "Carol@Example.org",
     [("carol@example.org", "carol@example.org")]),
    ("Final-Recipient: rfc822;carol\nAction: failed\nStatus: 5.1.1\n", "Carol <carol@example.org>",
     [("carol@example.org", "carol@example.org")]),
    # the returned message had two recipients: which one is unknown, so nothing is guessed
    ("Final-Recipient: rfc822;carol\nAction: failed\nStatus: 5.1.1\n", "carol@example.org, dave@example.org",
     [("carol", "carol")]),
    # two recipients in the report: nothing is guessed either
    ("Final-Recipient: rfc822;carol\nAction: failed\nStatus: 5.1.1\n\n"
     "Final-Recipient: rfc822;dave@example.org\nAction: failed\nStatus: 5.1.1\n", "carol@example.org",
     [("carol", "carol"), ("dave@example.org", "dave@example.org")]),
    # a whole address is never replaced by the To
    ("Final-Recipient: rfc822;erin@example.org\nAction: failed\nStatus: 5.1.1\n", "carol@example.org",
     [("erin@example.org", "erin@example.org")]),
])
def test_a_recipient_without_a_local_part_is_taken_from_the_single_to(fields, to, expected):
    assert [(r.address, r.final_recipient) for r in _dsn(fields, to).recipients] == expected


def _dsn_rows(fields: str) -> list[tuple[str, str, str, str, str, str]]:
    return [(r.address, r.final_recipient, r.original_recipient, r.action, r.status, r.diagnostic)
            for r in _dsn(fields).recipients]


F = "Final-Recipient: rfc822;a@x.org\n"


@pytest.mark.parametrize(("fields", "status"), [
    # the server's own code in Diagnostic-Code wins when it is of the same class...
    (F + "Action: failed\nStatus: 2.1.5\nDiagnostic-Code: smtp; 250 2.6.0 queued\n", "2.6.0"),
    # ...when Status is only a class (x.0.0)...
    (F + "Action: failed\nStatus: 2.0.0\nDiagnostic-Code: smtp; 550 5.1.1 unknown\n", "5.1.1"),
    # ...when both are failures of some kind (4 or 5)...
    (F + "Action: failed\nStatus: 4.4.7\nDiagnostic-Code: smtp; 550 5.1.1 unknown\n", "5.1.1"),
    # ...or when there is no Status at all
    (F + "Action: failed\nDiagnostic-Code: smtp; 550 5.7.1 blocked\n", "5.7.1"),
    # a precise success is not overridden by a failure's words
    (F + "Action: failed\nStatus: 2.1.5\nDiagnostic-Code: smtp; 550 5.1.1 unknown\n", "2.1.5"),
])
def test_the_status_is_the_servers_own_code_when_it_is_more_precise(fields, status):
    assert [row[4] for row in _dsn_rows(fields)] == [status]


@pytest.mark.parametrize(("fields", "action"), [
    (F + "Action: Deliverable\nStatus: 2.1.5\n", "delivered"),      # sendmail -bv
    (F + "Action: Delay\nStatus: 4.4.1\n", "delayed"),
    (F + "Action: deferred\n", "delayed"),
    (F + "Action: retrying\nStatus: 5.0.0\n", "delayed"),            # the words win over the status
    (F + "Action: bogus\n", "failed"),                                # unknown, no status: a failure
    (F + "Action: failed (permanent)\nStatus: 5.1.1\n", "failed"),    # the first word
])
def test_an_action_in_other_words_is_read_as_the_standard_one(fields, action):
    assert [row[3] for row in _dsn_rows(fields)] == [action]


@pytest.mark.parametrize(("fields", "address", "final", "original"), [
    # an Original-Recipient that is not an address type is not the address
    ("Original-Recipient: x400;/c=us/a=x/\n" + F, "a@x.org", "a@x.org", "/c=us/a=x/"),
    ("Original-Recipient: utf-8;Bé@x.org\nFinal-Recipient: rfc822;b@mx.x.org\n", "bé@x.org", "b@mx.x.org", "bé@x.org"),
    ("Original-Recipient: c@x.org\nFinal-Recipient: rfc822;c@mx.x.org\n", "c@x.org", "c@mx.x.org", "c@x.org"),
    ("Original-Recipient: rfc822;d@x.org\n", "d@x.org", "", "d@x.org"),   # no Final-Recipient
    # a final recipient at a bare internal host name is where it was handed on, not the mailbox...
    ("Original-Recipient: rfc822;kijitora@neko.example.jp\nFinal-Recipient: rfc822;kijitora@server\n",
     "kijitora@neko.example.jp", "kijitora@neko.example.jp", "kijitora@neko.example.jp"),
    # ...unless the original one is internal too
    ("Original-Recipient: rfc822;kijitora@host\nFinal-Recipient: rfc822;kijitora@server\n",
     "kijitora@host", "kijitora@server", "kijitora@host"),
])
def test_the_recipient_is_the_original_address_when_there_is_one(fields, address, final, original):
    rows = _dsn_rows(fields + "Action: failed\nStatus: 5.1.1\n")
    assert [row[:3] for row in rows] == [(address, final, original)]


@pytest.mark.parametrize("fields", [
    # bare CR line ends, and a Diagnostic-Code folded over two lines (space or tab)
    F.replace("\n", "\r") + "Action: failed\rStatus: 5.1.1\rDiagnostic-Code: smtp; 550 5.1.1\r  mailbox unknown\r",
    F + "Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1\n\tmailbox unknown\n",
])
def test_line_ends_and_folded_fields_are_read(fields):
    assert _dsn_rows(fields) == [("a@x.org", "a@x.org", "", "failed", "5.1.1", "550 5.1.1 mailbox unknown")]


def test_a_message_id_without_a_domain_is_kept_without_its_brackets():
    report = _mdn("Original-Message-ID:   <local-only>  \nDisposition: manual-action/MDN-sent-manually; displayed\n")
    assert report.original_message_id == "local-only"


def test_more_corners_of_a_delivery_report():
    # an rfc822 Original-Recipient without a domain gives way to the final one
    assert _dsn_rows("Original-Recipient: rfc822;alice\nFinal-Recipient: rfc822;alice@x.org\n"
                     "Action: failed\nStatus: 5.1.1\n")[0][:3] == ("alice@x.org", "alice@x.org", "alice")
    # a recipient group naming nobody is skipped, and the next one is still read
    assert [row[0] for row in _dsn_rows("Final-Recipient: rfc822;\nAction: failed\nStatus: 5.1.1\n\n"
                                        + F + "Action: failed\nStatus: 5.1.1\n")] == ["a@x.org"]
    # "deliverable" (sendmail -bv) and "delay" are read as such whatever the status says, or without one
    assert [row[3] for row in _dsn_rows(F + "Action: deliverable\n")] == ["delivered"]
    assert [row[3] for row in _dsn_rows(F + "Action: delay\nStatus: 5.0.0\n")] == ["delayed"]


def test_a_local_less_recipient_stays_as_it_is_when_the_returned_message_has_no_to():
    raw = _report("delivery-status", "x", "Reporting-MTA: dns;mx\n\nFinal-Recipient: rfc822;carol\n"
                  "Action: failed\nStatus: 5.1.1\n", "delivery-status")
    raw = raw.replace(b"To: alice@example.org, bob@example.net\n", b"")
    assert [(r.address, r.final_recipient) for r in parse_message(raw).recipients] == [("carol", "carol")]


@pytest.mark.parametrize(("value", "expected"), [("<m@x> (sent by x)", "m@x"), ("<Xmas-list>", "Xmas-list")])
def test_an_original_message_id_is_the_id_alone(value, expected):
    report = _mdn(f"Original-Message-ID: {value}\nDisposition: manual-action/MDN-sent-manually; displayed\n")
    assert report.original_message_id == expected


@pytest.mark.parametrize(("diagnostic", "status"), [
    ("smtp; mailbox is full", "5.2.2"),      # no code from the server: the human part's code for it counts
    ("smtp; 550 5.0.0 refused", "5.0.0"),    # the server's own code stands, even a vague one
])
def test_a_class_only_status_takes_the_code_quoted_beside_the_recipient_only_when_the_server_gave_none(
        diagnostic, status):
    human = "Delivery failed.\n\n<a@x.org>: host mx.x.org said: 552 5.2.2 mailbox full\n"
    fields = ("Reporting-MTA: dns;mx\n\nFinal-Recipient: rfc822;a@x.org\nAction: failed\nStatus: 5.0.0\n"
              f"Diagnostic-Code: {diagnostic}\n")
    report = parse_message(_report("delivery-status", human, fields, "delivery-status"))
    assert [(r.address, r.status) for r in report.recipients] == [("a@x.org", status)]


def _summary(report: Report) -> tuple:
    return (report.kind, report.original_message_id,
            [(r.address, r.action, r.status, r.diagnostic) for r in report.recipients])


PLAIN_BOUNCE = (
    b"From MAILER-DAEMON  Mon Jan  1 10:00:00 2024\n"
    b"Return-Path: <>\nFrom: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>\n"
    b"To: releases@example.com\nSubject: Returned mail: see transcript for details\n\n"
    b"   ----- The following addresses had permanent fatal errors -----\n<alice@example.org>\n"
    b"    (reason: 550 5.1.1 User unknown)\n\n   ----- Original message follows -----\n"
    b"From: releases@example.com\nTo: alice@example.org\nMessage-ID: <orion-2.4.1234@example.com>\n"
    b"Subject: Orion 2.4 released\n\nOrion 2.4 is out.\n"
)


@pytest.mark.parametrize("raw", [
    PLAIN_BOUNCE,
    _report("delivery-status", "Delivery failed.\n",
            "Reporting-MTA: dns;mx.example.org\n\nFinal-Recipient: rfc822;alice@example.org\n"
            "Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1\n  user unknown\n", "delivery-status"),
], ids=["plain-bounce", "dsn"])  # named: the DSN's MIME boundary is random, and pytest-xdist's workers must collect the same ids
def test_a_whole_message_with_bare_cr_line_ends_reads_as_with_lf(raw):
    """Issue 11.7: a report stored with old-Mac line ends (CR alone) is the same report; before,
    the headers were read but the body stayed one long line where no field or address was found
    (and an mbox "From " line swallowed the whole message)."""
    want = _summary(parse_message(raw))
    assert want[0] == "dsn" and want[2][0][:3] == ("alice@example.org", "failed", "5.1.1")
    assert _summary(parse_message(raw.replace(b"\n", b"\r"))) == want
    assert _summary(parse_message(raw.replace(b"\n", b"\r\n"))) == want


def test_a_stray_cr_inside_lines_of_an_lf_message_is_not_a_line_end():
    # the majority decides: a few CRs inside lines of an LF message are left to the email package
    raw = PLAIN_BOUNCE.replace(b"Orion 2.4 is out.", b"Orion\r2.4\ris\rout.")
    assert _summary(parse_message(raw)) == _summary(parse_message(PLAIN_BOUNCE))


QP_BOUNCE = (
    b"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\nTo: releases@example.com\n"
    b"Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
    b"Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: quoted-printable\n\n"
    b"This is the mail system at host mx.example.org.\n\n"
    b"<alice@exam=\nple.org>: host mx.example.org said: 550 5.1.1 User un=\nknown (in reply to RCPT=\n TO command)\n"
)


@pytest.mark.parametrize("pad", [b" ", b"\t ", b"  \r"])
def test_quoted_printable_soft_breaks_with_spaces_added_on_the_way_still_join_lines(pad):
    """Issue 11.7: RFC 2045 6.7 says spaces at the end of a quoted-printable line were added in
    transport and must be deleted before decoding; the email package keeps them, so '= ' was no
    soft line break and the recipient, status and diagnostic were cut in two (no report at all)."""
    want = [("alice@example.org", "failed", "5.1.1",
             "host mx.example.org said: 550 5.1.1 User unknown (in reply to RCPT TO command)")]
    for raw in (QP_BOUNCE, QP_BOUNCE.replace(b"=\n", b"=" + pad + b"\n")):
        report = parse_message(raw)
        assert report.kind == "dsn"
        assert [(r.address, r.action, r.status, r.diagnostic) for r in report.recipients] == want
    # a space that was encoded (=20) is data and stays
    assert "User un known" in parse_message(QP_BOUNCE.replace(b"un=\nknown", b"un=20=\nknown")).recipients[0].diagnostic


def _recipientless_dsn(extra_headers: bytes = b"") -> bytes:
    return (
        b"From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\nTo: releases@example.com\n"
        b"Subject: Undelivered Mail Returned to Sender\nAuto-Submitted: auto-replied\n" + extra_headers +
        b"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n"
        b"--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        b"\t--- Delivery report unavailable ---\n\n"
        b"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n"
        b"Arrival-Date: Mon, 1 Jan 2024 10:00:00 +0000\n\n--B--\n"
    )


@pytest.mark.parametrize("extra", [b"", b"In-Reply-To: <orion-2.4.1234@example.com>\n"])
def test_a_delivery_report_naming_no_recipient_is_never_an_auto_reply_or_a_reply(extra):
    """Issue 11.7: a multipart/report of delivery-status whose recipient cannot be found (Postfix's
    'Delivery report unavailable' without the returned message) was taken for an auto-reply from
    MAILER-DAEMON because Postfix marks its bounces 'Auto-Submitted: auto-replied' (or for a
    person's reply, with In-Reply-To). It is a report the parser could not read: it says so."""
    report = parse_message(_recipientless_dsn(extra))
    assert (report.kind, report.recipients) == ("none", [])
    assert "names no recipient" in (report.problem or "")


def test_an_auto_reply_that_is_not_a_delivery_report_is_still_one():
    raw = (b"From: Alice <alice@example.org>\nTo: releases@example.com\nSubject: Out of office\n"
           b"Auto-Submitted: auto-replied\nIn-Reply-To: <orion-2.4.1234@example.com>\n\nBack on Monday.\n")
    assert parse_message(raw).kind == "auto-reply"


@pytest.mark.parametrize("prefix", [b"\xef\xbb\xbf", b"\n", b"\r\n\r\n", b"\xef\xbb\xbf\n"])
def test_a_byte_order_mark_or_empty_lines_before_the_headers_are_skipped(prefix):
    """Issue 11.7: a report saved with a UTF-8 byte order mark (Windows editors) or empty lines in
    front (mbox exporters, pasted text) had no headers for the email package: the whole report was
    a body and nothing was found."""
    want = _summary(parse_message(PLAIN_BOUNCE))
    assert want[0] == "dsn"
    assert _summary(parse_message(prefix + PLAIN_BOUNCE)) == want
    assert _summary(parse_message(prefix + PLAIN_BOUNCE.split(b"\n", 1)[1])) == want  # without the From_ line


@pytest.mark.parametrize("value", ['rfc822; "john..doe"@example.org', 'rfc822; <"john..doe"@example.org>',
                                   'rfc822;<"John..Doe"@Example.org> ', '<"john..doe"@example.org>'])
def test_a_quoted_local_part_keeps_its_quotes_with_or_without_angle_brackets(value):
    """Issue 11.7: in angle brackets the opening quote of a quoted local part was stripped with the
    bracket, leaving 'john..doe"@example.org', an address nobody was sent to."""
    rows = _dsn_rows(f"Final-Recipient: {value}\nAction: failed\nStatus: 5.1.1\n")
    assert [row[:2] for row in rows] == [('"john..doe"@example.org', '"john..doe"@example.org')]
