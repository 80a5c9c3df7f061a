"""The send engine against a real loopback SMTP server (aiosmtpd, with faults) and a real ledger.

Decision on a connection lost mid-DATA: lost *before* the final "." reached the socket, the
server cannot have accepted the message, so it is retried; lost *after* it, the message may
have been accepted, so the delivery is `in doubt` and is never resent unless asked (then with
the same Message-ID). Both are tested below.
"""

from __future__ import annotations

import asyncio
import email
import re
import socket
import subprocess
import time

import pytest

from relcomm_tui.store import ledger as L
from relcomm_tui.delivery.engine import (
    CommuniqueSkipped, DeliveryChanged, Progress, RunFinished, RunStopped, SendEngine, SendError, SendStopped,
    dry_run, send_test_message,
)
from relcomm_tui.store.ledger import Ledger
from relcomm_tui.store.lock import SendLock
from faulty_mailserver import Delay, DropConnection, FaultyMailServer, PermFail, TempFail

from send_helpers import load, simple_render, write_plan
from waits import parked_on_pause, until


def workers(sender: SendEngine) -> int:
    return sender.in_flight  # what the channels declared: for email, 3 per SMTP connection


async def paused_and_quiet(sender: SendEngine, ledger, server, task) -> None:
    """Wait until the pause has taken effect: workers parked on it, nothing in flight, and no
    message reaching the server for a while. Not every worker parks on the pause itself (one may
    wait for the connection a parked worker holds), so quiet is what is waited for; if the pause
    did not hold, messages keep arriving and this fails at its deadline."""
    await until(lambda: task.done() or (parked_on_pause(sender) >= 1 and ledger.counts("4.2.0")[L.SENDING] == 0),
                "a worker parked on the pause and nothing in flight")
    assert not task.done(), "the run went on to the end while paused"
    seen, quiet = len(server.messages), 0
    while quiet < 100:  # 100 looks in a row (at least 0.5 s) with nothing new sent or in flight
        await asyncio.sleep(0.005)
        now = len(server.messages)
        quiet = quiet + 1 if now == seen and ledger.counts("4.2.0")[L.SENDING] == 0 else 0
        seen = now
        assert not task.done(), "the run went on to the end while paused"


@pytest.fixture
async def server(tmp_path):
    server = FaultyMailServer(maildir=tmp_path / "server-mail")
    await server.start_async()
    yield server
    await server.stop_async()


def setup(tmp_path, server_port, **options):
    plan = load(write_plan(tmp_path / "plan", server_port, **options))
    return plan, Ledger.open(plan.state_dir)


def engine(plan, ledger, events=None, **options) -> SendEngine:
    options.setdefault("backoff_base", 0.01)
    return SendEngine(plan, ledger, render=simple_render, on_event=(events.append if events is not None else None),
                      **options)


def addresses(server) -> list[str]:
    return sorted(r for m in server.messages for r in m.rcpt_tos)


CHAT = """
[[communiques]]
id = "chat"
to = ["engineering"]
channel = "webhook"
url = { env = "RELCOMM_TEST_HOOK" }
body = "released"
"""


async def test_one_message_per_recipient_with_dsn_and_the_ledgers_ids(tmp_path, server, monkeypatch):
    from relcomm_tui import channels

    # A channel not built (yet) is skipped and said so, not failed.
    monkeypatch.delitem(channels.REGISTRY, "webhook", raising=False)
    plan, ledger = setup(tmp_path, server.port, recipients=5, extra_communiques=CHAT)
    events = []
    summary = await engine(plan, ledger, events).run()
    assert summary.exit_code == 0 and summary.counts[L.ACCEPTED] == 5
    assert addresses(server) == sorted(f"customer{i}@example.com" for i in range(5))
    records = {r.recipient_key: r for r in ledger.deliveries("4.2.0")}
    assert set(r.communique_id for r in records.values()) == {"news"}  # the follow-up was not sent
    for message in server.messages:
        (rcpt,) = message.rcpt_tos
        record = records[rcpt]
        assert record.state == L.ACCEPTED and record.reply.startswith("250") and record.accepted_at
        assert message.mail_from == "receipts@orion.example.com"  # the return path is receipts_to
        assert message.mail_options["RET"] == "HDRS"
        # the ledger's random ids are sent, never the computable delivery id (issue 10.7)
        assert message.mail_options["ENVID"] == record.envelope_id != record.id
        assert record.id not in message.data.decode(errors="replace")
        assert message.rcpt_options[0]["NOTIFY"] == ["SUCCESS", "FAILURE", "DELAY"]
        assert message.rcpt_options[0]["ORCPT"] == f"rfc822;{rcpt}"
        parsed = email.message_from_bytes(message.data)
        assert parsed["Message-ID"] == record.message_id
        assert ".leading dot line" in parsed.get_payload()  # dot-stuffing undone by the server
    skipped = [e for e in events if isinstance(e, CommuniqueSkipped)]
    assert [(s.communique_id, s.reason) for s in skipped] == [("chat", "not sent: channel webhook not available yet")]
    assert isinstance(events[-1], RunFinished)
    (run,) = ledger.runs("4.2.0")
    assert run.mode == "send" and run.finished and run.outcome == "finished" and run.who


async def test_each_delivery_goes_queued_sending_accepted_and_rerun_skips_it(tmp_path, server):
    plan, ledger = setup(tmp_path, server.port, recipients=2)
    events = []
    await engine(plan, ledger, events).run()
    for record in ledger.deliveries("4.2.0"):
        states = [e.state for e in events if isinstance(e, DeliveryChanged) and e.delivery_id == record.id]
        assert states == [L.SENDING, L.ACCEPTED]
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[0].counts[L.QUEUED] == 2 and progress[-1].done == 2 == progress[-1].total
    again = await engine(plan, ledger).run()
    assert again.sent_this_run == 0 and again.exit_code == 0
    assert len(server.messages) == 2


async def test_follow_up_goes_only_when_named(tmp_path, server):
    plan, ledger = setup(tmp_path, server.port, recipients=2)
    summary = await engine(plan, ledger, only=["reminder"]).run()
    assert set(summary.per_communique) == {"reminder"}
    assert {email.message_from_bytes(m.data)["Subject"] for m in server.messages} == {"Reminder: Orion 4.2.0"}
    assert [r.mode for r in ledger.runs("4.2.0")] == ["follow-up"]
    with pytest.raises(SendError, match="no communique 'nope'"):
        await engine(plan, ledger, only=["nope"]).run()


async def test_no_dsn_parameters_when_the_plan_does_not_ask(tmp_path, server):
    plan, ledger = setup(tmp_path, server.port, recipients=1, dsn=False)
    await engine(plan, ledger).run()
    (message,) = server.messages
    assert "ENVID" not in message.mail_options and "NOTIFY" not in message.rcpt_options[0]


async def test_read_receipts_add_disposition_notification_to(tmp_path, server):
    plan, ledger = setup(tmp_path, server.port, recipients=1, read_receipts=True)
    await engine(plan, ledger).run()
    parsed = email.message_from_bytes(server.messages[0].data)
    assert parsed["Disposition-Notification-To"] == "receipts@orion.example.com"


async def test_4xx_then_success_is_retried_and_accepted_once(tmp_path, server):
    server.faults["customer1@example.com"] = TempFail(times=2)
    plan, ledger = setup(tmp_path, server.port, recipients=3, max_attempts=3)
    events = []
    summary = await engine(plan, ledger, events).run()
    assert summary.exit_code == 0
    assert addresses(server).count("customer1@example.com") == 1
    (record,) = [r for r in ledger.deliveries("4.2.0") if r.recipient_key == "customer1@example.com"]
    assert record.state == L.ACCEPTED and record.attempts == 3
    states = [e.state for e in events if isinstance(e, DeliveryChanged) and e.delivery_id == record.id]
    # `sending` is committed as the envelope goes out and awaited only before the text, so an
    # attempt refused at RCPT may or may not have shown it; the accepted one always did.
    assert [s for s in states if s != L.SENDING] == [L.DEFERRED, L.DEFERRED, L.ACCEPTED]
    assert states[-2:] == [L.SENDING, L.ACCEPTED]
    deferred = [e for e in events if isinstance(e, DeliveryChanged) and e.state == L.DEFERRED]
    assert "retrying in" in deferred[0].detail and "451" in deferred[0].detail


async def test_4xx_until_the_limit_is_deferred_with_the_reason(tmp_path, server):
    server.faults["customer0@example.com"] = TempFail(times=None, msg="4.2.2 Mailbox over quota")
    plan, ledger = setup(tmp_path, server.port, recipients=2, max_attempts=2)
    summary = await engine(plan, ledger).run()
    assert summary.exit_code == 1 and summary.counts[L.DEFERRED] == 1 and summary.counts[L.ACCEPTED] == 1
    (record,) = [r for r in ledger.deliveries("4.2.0") if r.state == L.DEFERRED]
    assert "gave up after 2 attempt(s)" in record.reply and "over quota" in record.reply
    # A later run tries deferred deliveries again.
    server.faults.clear()
    assert (await engine(plan, ledger).run()).exit_code == 0
    assert addresses(server).count("customer0@example.com") == 1


async def test_5xx_is_rejected_with_the_servers_words_and_the_run_goes_on(tmp_path, server):
    server.faults["customer1@example.com"] = PermFail()
    server.faults["customer2@example.com"] = PermFail(at="data", code=554, msg="5.7.1 Message refused")
    plan, ledger = setup(tmp_path, server.port, recipients=4)
    summary = await engine(plan, ledger).run()
    assert summary.exit_code == 1 and summary.counts[L.REJECTED] == 2 and summary.counts[L.ACCEPTED] == 2
    replies = {r.recipient_key: r.reply for r in ledger.deliveries("4.2.0") if r.state == L.REJECTED}
    assert replies == {"customer1@example.com": "550 5.1.1 User unknown",
                       "customer2@example.com": "554 5.7.1 Message refused"}
    assert addresses(server) == ["customer0@example.com", "customer3@example.com"]


async def test_connection_lost_after_the_data_is_in_doubt_and_never_resent_silently(tmp_path, server):
    server.faults["customer1@example.com"] = DropConnection(at="data", deliver=True)
    plan, ledger = setup(tmp_path, server.port, recipients=3)
    summary = await engine(plan, ledger).run()
    assert summary.exit_code == 1 and summary.counts[L.IN_DOUBT] == 1 and summary.counts[L.ACCEPTED] == 2
    (doubt,) = [r for r in ledger.deliveries("4.2.0") if r.state == L.IN_DOUBT]
    assert doubt.recipient_key == "customer1@example.com" and "may have accepted" in doubt.reply
    assert addresses(server).count("customer1@example.com") == 1  # it did arrive: a retry would duplicate
    again = await engine(plan, ledger).run()
    assert again.counts[L.IN_DOUBT] == 1 and len(server.messages) == 3
    # Only when asked: sent again with the same Message-ID, so clients can drop the duplicate.
    resent = await engine(plan, ledger, resend_in_doubt=True).run()
    assert resent.exit_code == 0
    copies = [email.message_from_bytes(m.data)["Message-ID"] for m in server.messages_for("customer1@example.com")]
    assert copies == [doubt.message_id, doubt.message_id]


async def test_connection_lost_before_the_data_is_retried_once(tmp_path, server):
    server.faults["customer0@example.com"] = DropConnection(at="rcpt")
    plan, ledger = setup(tmp_path, server.port, recipients=2)
    summary = await engine(plan, ledger).run()
    assert summary.exit_code == 0
    assert addresses(server) == ["customer0@example.com", "customer1@example.com"]


async def test_authentication(tmp_path, monkeypatch):
    server = FaultyMailServer(auth=("release-bot", "right horse"))
    await server.start_async()
    try:
        monkeypatch.setenv("RELCOMM_TEST_SMTP", "wrong")
        plan, ledger = setup(tmp_path, server.port, recipients=50, username="release-bot",
                             password_env="RELCOMM_TEST_SMTP")
        events = []
        with pytest.raises(SendStopped) as caught:
            await engine(plan, ledger, events).run()
        assert "refused the login for 'release-bot'" in caught.value.message
        assert "wrong" not in caught.value.message and "wrong" not in caught.value.hint
        assert [e for e in events if isinstance(e, RunStopped)] == [RunStopped(caught.value.message, caught.value.hint)]
        assert ledger.counts("4.2.0")[L.QUEUED] == 50  # one error, not fifty failed rows
        assert server.messages == []
        assert "stopped:" in ledger.runs("4.2.0")[-1].outcome
        # The right password (as the app would pass after a prompt) sends.
        summary = await engine(plan, ledger, password="right horse").run()
        assert summary.counts[L.ACCEPTED] == 50
        # The password is nowhere in the ledger.
        assert b"right horse" not in (plan.state_dir / "ledger.sqlite").read_bytes()
    finally:
        await server.stop_async()


async def test_starttls_required_but_not_offered_stops_with_one_error(tmp_path, server):
    plan, ledger = setup(tmp_path, server.port, recipients=3, security="starttls")
    with pytest.raises(SendStopped, match="does not offer STARTTLS"):
        await engine(plan, ledger).run()
    assert server.messages == [] and ledger.counts("4.2.0")[L.QUEUED] == 3


async def test_connection_refused_stops_at_once(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    plan, ledger = setup(tmp_path, port, recipients=3)
    with pytest.raises(SendStopped, match="refused the connection") as caught:
        await engine(plan, ledger).run()
    assert "host and port" in caught.value.hint
    assert ledger.counts("4.2.0")[L.SENDING] == 0


async def test_unencrypted_smtp_is_refused_off_loopback(tmp_path):
    plan, ledger = setup(tmp_path, 25, recipients=1, host="smtp.example.com")
    with pytest.raises(SendStopped, match="only on loopback"):
        await engine(plan, ledger).run()


async def test_second_sender_is_refused(tmp_path, server):
    plan, ledger = setup(tmp_path, server.port, recipients=1)
    with SendLock(plan.state_dir):
        with pytest.raises(SendError, match=r"another relcomm process is sending this plan: PID \d+ on host .+ since "):
            await engine(plan, ledger).run()
    assert server.messages == []


class RecordingProxy:
    """TCP proxy that records each chunk the server side receives."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.chunks: list[bytes] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _client(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def pump(source, sink, record) -> None:
            try:
                while data := await source.read(65536):
                    if record:
                        self.chunks.append(data)
                    sink.write(data)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))


async def test_pipelining_sends_envelopes_in_one_write_and_chains_messages(tmp_path, server):
    server.data_delay = 0.01  # so that messages queue up behind each connection
    proxy = RecordingProxy(server.port)
    port = await proxy.start()
    plan, ledger = setup(tmp_path, port, recipients=12, concurrency=2)
    sender = engine(plan, ledger)
    assert (await sender.run()).counts[L.ACCEPTED] == 12
    proxy.server.close()
    envelope = re.compile(rb"MAIL FROM:<[^>]*>[^\r]*\r\nRCPT TO:<[^>]*>[^\r]*\r\nDATA\r\n")
    # Every MAIL went out in one write with its RCPT and DATA (RFC 2920)...
    assert sum(len(envelope.findall(chunk)) for chunk in proxy.chunks) == 12
    assert sum(chunk.count(b"MAIL FROM:") for chunk in proxy.chunks) == 12
    # ...and most rode on the previous message's end of text (the RFC 2920 section 4 exchange).
    chained = sum(len(re.findall(rb"\r\n\.\r\nMAIL FROM:", chunk)) for chunk in proxy.chunks)
    assert chained >= 6
    connections = server.connections_opened
    round_trips = sender.channel_stats["email"]["round_trips"]
    assert round_trips == connections + 12 + (12 - chained)  # EHLO, one per text, one per unchained envelope
    assert len(server.messages) == 12 and len(set(addresses(server))) == 12


async def test_connection_lost_while_chained_leaves_only_the_first_in_doubt(tmp_path, server):
    # customer1's text ends in the same write as customer2's envelope; the server drops the line
    # after customer1's text: customer1 is in doubt, customer2 is simply sent again.
    server.faults["customer1@example.com"] = DropConnection(at="data", deliver=True)
    server.data_delay = 0.01
    plan, ledger = setup(tmp_path, server.port, recipients=6, concurrency=1)
    summary = await engine(plan, ledger).run()
    assert summary.counts[L.IN_DOUBT] == 1 and summary.counts[L.ACCEPTED] == 5
    copies = addresses(server)
    assert copies == sorted(f"customer{i}@example.com" for i in range(6))  # one each, none twice


async def test_pause_holds_every_worker_and_resume_and_cancel_take_effect(tmp_path, server):
    server.data_delay = 0.05
    plan, ledger = setup(tmp_path, server.port, recipients=60, concurrency=2)
    events: list = []
    sender = engine(plan, ledger, events)
    task = asyncio.create_task(sender.run())
    await until(lambda: ledger.counts("4.2.0")[L.ACCEPTED] >= 4, "4 messages accepted")
    sender.pause()
    mark = len(events)
    # Messages already under way finish; then every worker waits on the pause, and from then on
    # nothing can start until resume (no time window to watch: the workers are parked).
    await paused_and_quiet(sender, ledger, server, task)
    assert len([e for e in events[mark:] if isinstance(e, DeliveryChanged) and e.state == L.SENDING]) <= workers(sender)
    assert any(isinstance(e, Progress) and e.paused for e in events[mark - 1:])
    paused_counts = ledger.counts("4.2.0")
    assert paused_counts[L.QUEUED] > 0 and len(server.messages) == paused_counts[L.ACCEPTED]
    sender.resume()
    await until(lambda: ledger.counts("4.2.0")[L.ACCEPTED] >= paused_counts[L.ACCEPTED] + 4, "4 more after resume")
    sender.cancel()
    cancelled_mark = len(events)
    summary = await asyncio.wait_for(task, 30)
    # Only what was already under way (at most one per worker) went on after the cancel.
    assert len([e for e in events[cancelled_mark:] if isinstance(e, DeliveryChanged) and e.state == L.SENDING]) <= workers(sender)
    assert summary.cancelled and summary.exit_code == 1
    assert 0 < summary.counts[L.QUEUED] < 60 and summary.counts[L.SENDING] == 0
    assert len(server.messages) == summary.counts[L.ACCEPTED]
    assert ledger.runs("4.2.0")[-1].outcome == "cancelled"


async def test_rate_limits_messages_per_second(tmp_path, server):
    plan, ledger = setup(tmp_path, server.port, recipients=6, rate="20/s")
    started = time.monotonic()
    await engine(plan, ledger).run()
    assert time.monotonic() - started >= 5 / 20
    assert len(server.messages) == 6


async def test_dry_run_writes_the_outbox_and_records_nothing_as_sent(tmp_path, server):
    plan, ledger = setup(tmp_path, server.port, recipients=4)
    result = dry_run(plan, ledger, render=simple_render)
    assert result.written == 4 and result.outbox == plan.state_dir / "outbox"
    import mailbox

    box = mailbox.Maildir(result.outbox, create=False)
    assert sorted(m["To"] for m in box) == sorted(f"Customer {i} <customer{i}@example.com>" for i in range(4))
    assert ledger.deliveries("4.2.0") == [] and server.messages == []
    assert [r.mode for r in ledger.runs("4.2.0")] == ["dry-run"]


async def test_test_send_goes_to_the_engineer_only_outside_the_deliveries(tmp_path, server):
    plan, ledger = setup(tmp_path, server.port, recipients=4)
    result = await send_test_message(plan, ledger, render=simple_render)
    (message,) = server.messages
    assert message.rcpt_tos == ["me@orion.example.com"]
    parsed = email.message_from_bytes(message.data)
    assert parsed["Subject"] == "[TEST] Orion 4.2.0 is out" == result.subject
    assert parsed["To"] == "me@orion.example.com" and "Hello Customer 0" in parsed.get_payload()
    assert ledger.deliveries("4.2.0") == []
    assert [r.mode for r in ledger.runs("4.2.0")] == ["test"]


async def test_without_pipelining_the_plain_exchange_is_used(tmp_path):
    # Stock aiosmtpd advertises neither PIPELINING nor DSN: one command per round trip, no DSN parameters.
    from aiosmtpd.controller import Controller

    class Sink:
        def __init__(self) -> None:
            self.envelopes = []

        async def handle_DATA(self, server, session, envelope):
            self.envelopes.append((envelope.mail_options, envelope.rcpt_tos, envelope.content))
            return "250 OK"

    sink = Sink()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        plan, ledger = setup(tmp_path, port, recipients=3, concurrency=1)
        sender = engine(plan, ledger)
        summary = await sender.run()
    finally:
        controller.stop()
    assert summary.counts[L.ACCEPTED] == 3
    assert sorted(r for _, rcpts, _ in sink.envelopes for r in rcpts) == [f"customer{i}@example.com" for i in range(3)]
    assert all("RET=HDRS" not in " ".join(options) for options, _, _ in sink.envelopes)
    assert sender.channel_stats["email"]["round_trips"] == 1 + 3 * 4  # EHLO, then MAIL, RCPT, DATA, text


async def test_events_iterator_ends_with_the_summary(tmp_path, server):
    plan, ledger = setup(tmp_path, server.port, recipients=2)
    sender = engine(plan, ledger)
    stream = sender.events()
    task = asyncio.create_task(sender.run())
    seen = [event async for event in stream]
    summary = await task
    assert isinstance(seen[-1], RunFinished) and seen[-1].summary == summary
    assert [e.state for e in seen if isinstance(e, DeliveryChanged)].count(L.ACCEPTED) == 2


async def test_cancel_while_paused_sends_nothing_more_and_leaves_nothing_sending(tmp_path, server):
    server.data_delay = 0.05
    plan, ledger = setup(tmp_path, server.port, recipients=30, concurrency=2)
    sender = engine(plan, ledger)
    task = asyncio.create_task(sender.run())
    await until(lambda: ledger.counts("4.2.0")[L.ACCEPTED] >= 2, "2 messages accepted")
    sender.pause()
    await paused_and_quiet(sender, ledger, server, task)
    sent_while_pausing = len(server.messages)
    sender.cancel()
    summary = await asyncio.wait_for(task, 30)
    assert summary.cancelled and summary.counts[L.SENDING] == 0
    assert len(server.messages) == sent_while_pausing == summary.counts[L.ACCEPTED]
    assert summary.counts[L.QUEUED] == 30 - summary.counts[L.ACCEPTED]


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for localhost (made with the openssl command)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def tls_controller(certificate, **options):
    import ssl

    from aiosmtpd.controller import Controller

    class Sink:
        def __init__(self) -> None:
            self.rcpts: list[str] = []

        async def handle_DATA(self, server, session, envelope):
            self.rcpts += envelope.rcpt_tos
            return "250 OK"

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port, **{k: context for k in options})
    return controller, sink, port


async def test_tls_certificates_are_verified(tmp_path, certificate, monkeypatch):
    controller, sink, port = tls_controller(certificate, ssl_context=True)
    controller.start()
    try:
        plan, ledger = setup(tmp_path, port, recipients=2, security="tls", host="localhost")
        with pytest.raises(SendStopped, match="does not verify"):
            await engine(plan, ledger).run()
        assert sink.rcpts == [] and ledger.counts("4.2.0")[L.QUEUED] == 2
        # Trusted (as a company CA would be), the same server is fine.
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
        assert (await engine(plan, ledger).run()).counts[L.ACCEPTED] == 2
        assert sorted(sink.rcpts) == ["customer0@example.com", "customer1@example.com"]
    finally:
        controller.stop()


async def test_starttls_upgrades_then_sends(tmp_path, certificate, monkeypatch):
    controller, sink, port = tls_controller(certificate, tls_context=True)
    controller.start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
        plan, ledger = setup(tmp_path, port, recipients=2, security="starttls", host="localhost")
        assert (await engine(plan, ledger).run()).counts[L.ACCEPTED] == 2
        assert len(sink.rcpts) == 2
    finally:
        controller.stop()


def test_xtext_and_dot_stuffing():
    from relcomm_tui.demo.mailserver import xtext_decode
    from relcomm_tui.transport.smtp import dot_stuff
    from relcomm_tui.transport.xtext import encode

    for text in ("ana+releases@example.com", "a=b@example.com", "plain@example.com", "zoë@例え.jp"):
        encoded = encode(text)
        assert all(33 <= ord(ch) <= 126 and ch != "=" for ch in encoded)
        assert xtext_decode(encoded) == text  # the demo server's strict decoder accepts what we send
    assert encode("a+b=c") == "a+2Bb+3Dc"
    assert dot_stuff(b".a\nb\r\n..c\rd") == b"..a\r\nb\r\n...c\r\nd\r\n.\r\n"
    assert dot_stuff(b"ends\r\n") == b"ends\r\n.\r\n"
