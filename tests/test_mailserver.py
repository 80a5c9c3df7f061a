"""The embedded loopback SMTP server, driven by a real aiosmtplib client.

The protocol, AUTH and report tests run against the demo's own server
(:class:`LoopbackMailServer`); the fault tests against the tests' extension of
it (:class:`FaultyMailServer`, also what the ``mailserver`` fixtures give).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox
import time

import aiosmtplib
import pytest

from faulty_mailserver import Delay, DropConnection, FaultyMailServer, PermFail, TempFail
from fixtures_mailserver import async_mailserver, mailserver, make_message  # noqa: F401
from relcomm_tui.demo.esmtp import xtext_decode
from relcomm_tui.demo.mailserver import BounceRule, LoopbackMailServer
from relcomm_tui.transport.xtext import encode as xtext_encode

SENDER = "releases@example.org"


async def connect(server: LoopbackMailServer, **kwargs) -> aiosmtplib.SMTP:
    client = aiosmtplib.SMTP(hostname=server.host, port=server.port, timeout=10, start_tls=False, **kwargs)
    await client.connect()
    await client.ehlo()
    return client


async def send(server, to="bob@example.com", *, mail_options=(), rcpt_options=(), msg=None):
    client = await connect(server)
    try:
        return await client.sendmail(
            SENDER,
            [to],
            (msg or make_message(to)).as_bytes(),
            mail_options=list(mail_options),
            rcpt_options=list(rcpt_options),
        )
    finally:
        if client.is_connected:
            await client.quit()


# --------------------------------------------------------------------------
# EHLO, DSN parameters


async def test_ehlo_advertises_extensions(mailserver):
    client = await connect(mailserver)
    for ext in ("pipelining", "8bitmime", "size", "enhancedstatuscodes", "dsn", "smtputf8"):
        assert client.supports_extension(ext), ext
    assert not client.supports_extension("auth")
    assert not client.supports_extension("starttls")
    rset = await client.rset()
    assert rset.code == 250 and rset.message.startswith("2.0.0")
    await client.quit()
    assert mailserver.connections_opened == 1


def test_xtext_round_trip():
    text = "rel 2024+1=ok/ü"
    encoded = xtext_encode(text)
    assert encoded == "rel+202024+2B1+3Dok/+C3+BC"
    assert xtext_decode(encoded) == text
    for bad in ("a+2", "a+2b", "a=b", "a b"):
        with pytest.raises(ValueError):
            xtext_decode(bad)


async def test_dsn_parameters_are_decoded_and_recorded(mailserver):
    envid = "relcomm:1.2.3 run=7+x"
    client = await connect(mailserver)
    mail = await client.mail(SENDER, options=["RET=HDRS", f"ENVID={xtext_encode(envid)}", "BODY=8BITMIME"])
    assert mail.message.startswith("2.1.0")
    rcpt = await client.rcpt(
        "bob@example.com",
        options=["NOTIFY=success,FAILURE", "ORCPT=rfc822;" + xtext_encode("Bob+Releases@Example.com")],
    )
    assert rcpt.message.startswith("2.1.5")
    await client.rcpt("carol@example.com", options=["NOTIFY=NEVER"])
    await client.rcpt("dave@example.com")
    data = await client.data(make_message(message_id="<m1@example.org>").as_bytes())
    assert data.code == 250
    await client.quit()

    [accepted] = mailserver.messages
    assert accepted.mail_from == SENDER
    assert accepted.mail_options == {"RET": "HDRS", "ENVID": envid, "BODY": "8BITMIME"}
    assert accepted.envid == envid
    assert accepted.rcpt_tos == ["bob@example.com", "carol@example.com", "dave@example.com"]
    assert accepted.rcpt_options == [
        {"NOTIFY": ["SUCCESS", "FAILURE"], "ORCPT": "rfc822;Bob+Releases@Example.com"},
        {"NOTIFY": ["NEVER"]},
        {},
    ]
    assert accepted.message_id == "<m1@example.org>"


async def test_sendmail_options_and_null_sender(mailserver):
    await send(mailserver, mail_options=["RET=FULL", "ENVID=abc"], rcpt_options=["NOTIFY=DELAY"])
    client = await connect(mailserver)
    response = await client.mail("", options=["RET=HDRS"])  # bounces use MAIL FROM:<>
    assert response.code == 250
    await client.quit()
    [accepted] = mailserver.messages
    assert accepted.mail_options["RET"] == "FULL" and accepted.mail_options["ENVID"] == "abc"
    assert isinstance(accepted.mail_options["SIZE"], int)
    assert accepted.rcpt_options == [{"NOTIFY": ["DELAY"]}]


@pytest.mark.parametrize(
    "command, params, code",
    [
        ("MAIL", "RET=ALL", 501),
        ("MAIL", "RET", 501),
        ("MAIL", "RET=FULL RET=HDRS", 501),
        ("MAIL", "ENVID=a+2", 501),
        ("MAIL", "ENVID=a+2b", 501),  # hex digits must be upper case
        ("MAIL", "ENVID=", 501),
        ("MAIL", "ENVID=" + "x" * 101, 501),
        ("MAIL", "SIZE=big", 501),
        ("MAIL", "FROBNICATE=1", 555),
        ("RCPT", "NOTIFY=NEVER,SUCCESS", 501),
        ("RCPT", "NOTIFY=SOMETIMES", 501),
        ("RCPT", "NOTIFY=SUCCESS,SUCCESS", 501),
        ("RCPT", "NOTIFY", 501),
        ("RCPT", "ORCPT=bob@example.com", 501),
        ("RCPT", "ORCPT=rfc822;", 501),
        ("RCPT", "ORCPT=rfc822;bob+ZZ@example.com", 501),
        ("RCPT", "RET=FULL", 555),
    ],
)
async def test_malformed_parameters_are_rejected(mailserver, command, params, code):
    client = await connect(mailserver)
    if command == "RCPT":
        await client.mail(SENDER)
        response = await client.execute_command(b"RCPT", b"TO:<bob@example.com>", *params.encode().split())
    else:
        response = await client.execute_command(b"MAIL", b"FROM:<" + SENDER.encode() + b">", *params.encode().split())
    assert response.code == code, response
    assert response.message[:1] == str(code)[0]  # enhanced status code present
    # The session is still usable after the error.
    await client.rset()
    await client.quit()


# --------------------------------------------------------------------------
# PIPELINING


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    lines = []
    while True:
        line = await asyncio.wait_for(reader.readline(), 5)
        lines.append(line)
        if line[3:4] != b"-":
            return b"".join(lines)


@pytest.mark.parametrize("data_delay", [0.0, 0.2])
async def test_pipelined_batch_in_one_write(tmp_path, data_delay):
    # With data_delay the client has half-closed before the DATA reply is
    # due: stock aiosmtpd cancels the session on EOF and loses the message.
    async with FaultyMailServer(maildir=tmp_path / "mail", data_delay=data_delay) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        assert (await read_reply(reader)).startswith(b"220 ")
        writer.write(b"EHLO client.example\r\n")
        assert b"250-PIPELINING" in await read_reply(reader)
        writer.write(
            b"MAIL FROM:<releases@example.org> RET=HDRS ENVID=batch+2B1\r\n"
            b"RCPT TO:<bob@example.com> NOTIFY=SUCCESS\r\n"
            b"RCPT TO:<carol@example.com> NOTIFY=BOGUS\r\n"
            b"RCPT TO:<dave@example.com>\r\n"
            b"DATA\r\n"
        )
        replies = [await read_reply(reader) for _ in range(5)]
        assert [r[:3] for r in replies] == [b"250", b"250", b"501", b"250", b"354"]
        assert replies[0].startswith(b"250 2.1.0") and replies[1].startswith(b"250 2.1.5")
        writer.write(b"Subject: pipelined\r\n\r\nbody\r\n..dot\r\n.\r\nQUIT\r\n")
        writer.write_eof()
        rest = await asyncio.wait_for(reader.read(), 5)
        assert rest.startswith(b"250 2.0.0") and b"221 2.0.0" in rest
        writer.close()

        [accepted] = server.messages
        assert accepted.rcpt_tos == ["bob@example.com", "dave@example.com"]
        assert accepted.mail_options == {"RET": "HDRS", "ENVID": "batch+1"}
        assert accepted.data == b"Subject: pipelined\r\n\r\nbody\r\n.dot\r\n"


async def test_pipelined_data_rejected_without_valid_recipient(mailserver):
    reader, writer = await asyncio.open_connection(mailserver.host, mailserver.port)
    await read_reply(reader)
    writer.write(b"EHLO client.example\r\n")
    await read_reply(reader)
    writer.write(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com> NOTIFY=X\r\nDATA\r\nQUIT\r\n")
    replies = [await read_reply(reader) for _ in range(4)]
    assert [r[:3] for r in replies] == [b"250", b"501", b"503", b"221"]
    writer.close()
    assert mailserver.messages == []


# --------------------------------------------------------------------------
# AUTH


@pytest.fixture
def auth_server(tmp_path):
    with LoopbackMailServer(maildir=tmp_path / "mail", auth=("relcomm", "s3cret")) as server:
        yield server


@pytest.mark.parametrize("method", ["auth_plain", "auth_login"])
async def test_auth_success(auth_server, method):
    client = await connect(auth_server)
    assert client.esmtp_extensions["auth"].split() == ["LOGIN", "PLAIN"]
    response = await getattr(client, method)("relcomm", "s3cret")
    assert response.code == 235
    await client.sendmail(SENDER, ["bob@example.com"], make_message().as_bytes())
    await client.quit()
    assert auth_server.messages_accepted == 1


@pytest.mark.parametrize("method", ["auth_plain", "auth_login"])
async def test_auth_failure_is_535(auth_server, method):
    client = await connect(auth_server)
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as info:
        await getattr(client, method)("relcomm", "wrong")
    assert info.value.code == 535
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await client.mail(SENDER)
    assert refused.value.code == 530
    await client.quit()


async def test_auth_not_offered_by_default(mailserver):
    client = await connect(mailserver)
    response = await client.execute_command(b"AUTH", b"PLAIN", b"AHUAcA==")
    assert response.code == 502
    await client.quit()


async def test_advertised_starttls_is_refused(tmp_path):
    with FaultyMailServer(advertise_starttls=True) as server:
        client = await connect(server)
        assert client.supports_extension("starttls")
        response = await client.execute_command(b"STARTTLS")
        assert response.code == 454
        await client.quit()


# --------------------------------------------------------------------------
# faults


async def test_tempfail_at_rcpt_then_accept(mailserver):
    mailserver.faults["Bob@Example.com"] = TempFail(times=2)
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
            await send(mailserver, "bob@example.com")
        assert info.value.recipients[0].code == 451
    await send(mailserver, "bob@example.com")
    await send(mailserver, "carol@example.com")
    assert [m.rcpt_tos for m in mailserver.messages] == [["bob@example.com"], ["carol@example.com"]]


async def test_tempfail_at_data_end(mailserver):
    mailserver.faults["bob@example.com"] = TempFail(code=452, msg="4.3.1 Insufficient storage", at="data")
    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        await send(mailserver)
    assert info.value.code == 452 and "4.3.1" in info.value.message
    assert mailserver.messages == []
    await send(mailserver)
    assert mailserver.messages_accepted == 1


async def test_permfail_every_time(mailserver):
    mailserver.faults["bob@example.com"] = PermFail()
    for _ in range(3):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
            await send(mailserver)
        assert info.value.recipients[0].code == 550
        assert "5.1.1 User unknown" in info.value.recipients[0].message
    mailserver.faults["carol@example.com"] = PermFail(code=554, msg="5.6.0 Content rejected", at="data")
    with pytest.raises(aiosmtplib.SMTPDataError) as data_info:
        await send(mailserver, "carol@example.com")
    assert data_info.value.code == 554
    assert mailserver.messages == []


@pytest.mark.parametrize("deliver", [False, True])
async def test_drop_connection_after_data(mailserver, deliver):
    mailserver.faults["bob@example.com"] = DropConnection(times=1, deliver=deliver)
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await send(mailserver)
    # "in doubt": the client got no reply; the message may or may not exist.
    assert mailserver.messages_accepted == (1 if deliver else 0)
    assert mailserver.connections_dropped == 1
    await send(mailserver)  # times=1: the retry goes through
    assert mailserver.messages_accepted == (2 if deliver else 1)


async def test_drop_connection_at_rcpt(mailserver):
    mailserver.faults["bob@example.com"] = DropConnection(at="rcpt")
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await send(mailserver)
    await send(mailserver)
    assert mailserver.messages_accepted == 1


async def test_delay_before_data_reply(mailserver):
    mailserver.faults["bob@example.com"] = Delay(0.3)
    delay = mailserver.faults["bob@example.com"]
    await send(mailserver, "carol@example.com")
    assert delay.fired == 0  # Carol's reply is not held back: the rule is Bob's alone
    started = time.monotonic()
    await send(mailserver, "bob@example.com")
    assert delay.fired == 1
    assert time.monotonic() - started >= 0.3  # a lower bound (load can only lengthen it)


async def test_delay_then_tempfail_list_of_rules(mailserver):
    mailserver.faults["bob@example.com"] = [Delay(0.1, times=1), TempFail(times=1, at="data")]
    with pytest.raises(aiosmtplib.SMTPDataError):
        await send(mailserver)
    await send(mailserver)
    assert mailserver.messages_accepted == 1


async def test_global_rcpt_delay(tmp_path):
    with FaultyMailServer(rcpt_delay=0.2) as server:
        started = time.monotonic()
        await send(server)
        assert time.monotonic() - started >= 0.2  # a lower bound (load can only lengthen it)


# --------------------------------------------------------------------------
# storage and loop modes


async def test_messages_land_in_maildir(mailserver, tmp_path):
    await send(mailserver, "bob@example.com", msg=make_message(subject="Release 9 ü", body="Grüße\n"))
    box = mailbox.Maildir(tmp_path / "maildir", create=False)
    [stored] = list(box)
    assert stored["Return-Path"] == f"<{SENDER}>"
    assert stored["Delivered-To"] == "bob@example.com"
    parsed = email.message_from_bytes(stored.as_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "Release 9 ü"
    assert parsed.get_content() == "Grüße\n"
    [accepted] = mailserver.messages
    assert accepted.maildir_key in box


async def test_async_mode_in_the_test_loop(async_mailserver):
    await send(async_mailserver, "bob@example.com")
    await send(async_mailserver, "carol@example.com")
    messages = await async_mailserver.wait_for_messages(2)
    assert [m.rcpt_tos[0] for m in messages] == ["bob@example.com", "carol@example.com"]
    assert async_mailserver.messages_for("CAROL@example.com")[0].rcpt_tos == ["carol@example.com"]
    assert async_mailserver.connections_opened == 2


def test_threaded_server_restart_and_stop_with_open_connection(tmp_path):
    server = LoopbackMailServer(maildir=tmp_path / "mail")
    server.start()

    async def open_and_leave():
        reader, writer = await asyncio.open_connection(server.host, server.port)
        await reader.readline()
        server.stop()  # must not hang on the open session
        assert await reader.read() == b""
        writer.close()

    asyncio.run(open_and_leave())


# --------------------------------------------------------------------------
# reports


@pytest.fixture
def report_server(tmp_path):
    server = LoopbackMailServer(
        maildir=tmp_path / "mail",
        write_reports_to=tmp_path / "receipts",
        report_delay=(60, 60),  # nothing is written unless flushed
        mdn_fraction=1.0,
        seed=7,
    )
    with server:
        yield server


def receipts(tmp_path) -> list[email.message.Message]:
    box = mailbox.Maildir(tmp_path / "receipts", create=False)
    return [email.message_from_bytes(box.get_bytes(key)) for key in sorted(box.keys())]


def report_fields(report: email.message.Message) -> tuple[email.message.Message, email.message.Message]:
    """(per-message, per-recipient) fields of a delivery-status report."""
    status = report.get_payload(1)
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()
    return per_message, per_recipient


async def test_success_dsn_only_when_notify_success(report_server, tmp_path):
    orcpt = "rfc822;" + xtext_encode("Bob+rel@example.com")
    await send(report_server, "bob@example.com", mail_options=["ENVID=" + xtext_encode("rel 1.2")],
               rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=" + orcpt])
    await send(report_server, "carol@example.com", rcpt_options=["NOTIFY=FAILURE"])
    assert receipts(tmp_path) == []
    assert [r.kind for r in report_server.pending_reports] == ["dsn-success"]
    assert report_server.flush_reports() == 1

    [dsn] = receipts(tmp_path)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["To"] == SENDER and dsn["Return-Path"] == "<>"
    per_message, per_recipient = report_fields(dsn)
    assert per_message["Original-Envelope-Id"] == "rel 1.2"
    assert per_message["Reporting-MTA"] == "dns; localhost"
    assert per_recipient["Original-Recipient"] == "rfc822;Bob+rel@example.com"
    assert per_recipient["Final-Recipient"] == "rfc822; bob@example.com"
    assert per_recipient["Action"] == "delivered"
    assert per_recipient["Status"] == "2.0.0"
    headers = dsn.get_payload(2)
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Message-ID: <rel-1.2.3.bob@example.org>" in headers.get_payload()


@pytest.mark.parametrize(
    "rcpt, status, diagnostic",
    [("unknown.user@example.com", "5.1.1", "smtp; 550 5.1.1"), ("box-full@example.com", "5.2.2", "smtp; 552 5.2.2")],
)
async def test_failure_dsn_for_bounce_rules(report_server, tmp_path, rcpt, status, diagnostic):
    await send(report_server, rcpt, mail_options=["RET=FULL", "ENVID=E1"])  # accepted at SMTP time
    assert report_server.messages_accepted == 1
    report_server.flush_reports()
    [dsn] = receipts(tmp_path)  # no MDN for a bounced recipient
    assert dsn.get_param("report-type") == "delivery-status"
    per_message, per_recipient = report_fields(dsn)
    assert per_message["Original-Envelope-Id"] == "E1"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == status
    assert " ".join(per_recipient["Diagnostic-Code"].split()).startswith(diagnostic)
    returned = dsn.get_payload(2)
    assert returned.get_content_type() == "message/rfc822"  # RET=FULL
    assert returned.get_payload(0)["Subject"] == "Release 1.2.3"


async def test_no_failure_dsn_with_notify_never(report_server, tmp_path):
    await send(report_server, "unknown@example.com", rcpt_options=["NOTIFY=NEVER"])
    assert report_server.flush_reports() == 0
    assert receipts(tmp_path) == []


async def test_mdn_only_when_disposition_notification_to(report_server, tmp_path):
    await send(report_server, "bob@example.com")
    assert report_server.flush_reports() == 0
    await send(report_server, "carol@example.com",
               msg=make_message("carol@example.com", message_id="<m2@example.org>", read_receipt_to=SENDER))
    report_server.flush_reports()
    [mdn] = receipts(tmp_path)
    assert mdn.get_content_type() == "multipart/report"
    assert mdn.get_param("report-type") == "disposition-notification"
    assert mdn["To"] == SENDER and mdn["From"] == "carol@example.com"
    notification = mdn.get_payload(1)
    assert notification.get_content_type() == "message/disposition-notification"
    fields = notification.get_payload(0)
    assert fields["Original-Message-ID"] == "<m2@example.org>"
    assert fields["Final-Recipient"] == "rfc822; carol@example.com"
    assert fields["Disposition"] == "manual-action/MDN-sent-manually; displayed"


async def test_mdn_fraction_is_seeded(tmp_path):
    async def mdn_recipients(seed):
        with LoopbackMailServer(write_reports_to=tmp_path / "receipts", mdn_fraction=0.3, seed=seed) as server:
            client = await connect(server)
            for i in range(20):
                to = f"user{i}@example.com"
                await client.sendmail(SENDER, [to], make_message(to, read_receipt_to=SENDER).as_bytes())
            await client.quit()
            return [r.recipient for r in server.pending_reports if r.kind == "mdn"]

    first, second = await mdn_recipients(1), await mdn_recipients(1)
    assert first == second
    assert 0 < len(first) < 20


async def test_reports_are_written_after_the_delay(tmp_path):
    with LoopbackMailServer(write_reports_to=tmp_path / "receipts", report_delay=(0.05, 0.1), seed=1) as server:
        await send(server, "bob@example.com", rcpt_options=["NOTIFY=SUCCESS"])
        deadline = time.monotonic() + 5
        while not server.written_reports and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert [r.kind for r, _ in server.written_reports] == ["dsn-success"]
        assert server.pending_reports == []
        assert len(receipts(tmp_path)) == 1


async def test_bounce_mode_smtp_rejects_at_rcpt(tmp_path):
    rules = [BounceRule("gone", "5.1.1", "550 5.1.1 <{rcpt}>: no such user")]
    with FaultyMailServer(bounce_mode="smtp", bounce_rules=rules, write_reports_to=tmp_path / "r") as server:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
            await send(server, "gone@example.com")
        assert info.value.recipients[0].code == 550
        assert "no such user" in info.value.recipients[0].message
        await send(server, "unknown@example.com")  # default rules are replaced
        assert server.messages_accepted == 1
        assert server.flush_reports() == 0


async def test_maildir_in_existing_empty_directory(tmp_path):
    # mailbox.Maildir(create=True) would not add tmp/new/cur to an existing directory.
    (tmp_path / "empty").mkdir()
    with LoopbackMailServer(maildir=tmp_path / "empty") as server:
        await send(server)
    assert len(mailbox.Maildir(tmp_path / "empty", create=False)) == 1


async def test_reports_in_async_mode_and_flush_after_stop(tmp_path):
    server = LoopbackMailServer(write_reports_to=tmp_path / "receipts", report_delay=(0.01, 0.02), seed=3)
    async with server:
        await send(server, "bob@example.com", rcpt_options=["NOTIFY=SUCCESS"])
        for _ in range(200):
            if server.written_reports:
                break
            await asyncio.sleep(0.01)
        assert len(server.written_reports) == 1
    # Reports still pending when the server stops are kept until flushed.
    server.reports.delay = (60, 60)
    async with server:
        await send(server, "carol@example.com", rcpt_options=["NOTIFY=SUCCESS"])
    assert [r.recipient for r in server.pending_reports] == ["carol@example.com"]
    assert server.flush_reports() == 1
    assert len(receipts(tmp_path)) == 2


async def test_delay_at_rcpt(mailserver):
    mailserver.faults["bob@example.com"] = Delay(0.2, at="rcpt", times=1)
    client = await connect(mailserver)
    await client.mail(SENDER)
    started = time.monotonic()
    await client.rcpt("bob@example.com")
    assert time.monotonic() - started >= 0.2
    await client.quit()
