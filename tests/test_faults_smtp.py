"""Hardening campaign (issue 6), SMTP faults: a real loopback SMTP server injects each fault, the
real send engine (or the real `relcomm send`) sends through it, and each case compares the
ledger with what the server actually stored: nothing lost, nothing twice, the reason shown.

Decisions the cases pin down:
* 4xx anywhere (greeting, MAIL, RCPT, end of data) is retried with backoff and delivered
  exactly once when the fault clears; a 421 greeting is "busy", not a stop.
* 5xx at RCPT or end of data rejects that delivery with the server's words, once, never
  retried by itself; 5xx at MAIL refuses the sender, which would fail every delivery the same
  way: the run stops with one message and nothing counts as sent.
* A connection lost before the final "." left is retried; after it, the delivery is in doubt
  (the server may have it) and is resent only when asked, with the same Message-ID. A long
  text is handed to the operating system before its "." so a drop mid-text is provably
  before it.
* No greeting (silence, or bytes that are not SMTP), a required STARTTLS missing, a
  certificate that does not verify, a refused login: one clear stop, nothing sent, no
  password sent or shown.
"""

from __future__ import annotations

import email

import pytest

from relcomm_tui.store import ledger as L
from relcomm_tui.commands.main import main
from relcomm_tui.delivery.engine import DeliveryChanged, SendStopped
from faulty_mailserver import (
    CloseAfter, Delay, DropConnection, Garbage, FaultyMailServer, PermFail, TempFail,
)

import campaign
from faults_smtp_helpers import (
    assert_figures, copies, engine, figures, make_certificate, server_context, setup,
)
from send_helpers import simple_render, write_plan

N = campaign.scale("SMTP_FAULT_RECIPIENTS", 6)

# Bounded: a stalled server must never hang a test (about 20 s for the file in CI sizes).
pytestmark = [pytest.mark.campaign, pytest.mark.timeout(60 + N // 4)]
SENDER = "receipts@orion.example.com"  # the return path: MAIL FROM faults are keyed on it


@pytest.fixture
async def server(tmp_path):
    server = FaultyMailServer(maildir=tmp_path / "server-mail")
    await server.start_async()
    yield server
    await server.stop_async()


def details(events, state=None) -> list[str]:
    return [e.detail for e in events if isinstance(e, DeliveryChanged) and (state is None or e.state == state)]


def mails_for(server, address: str) -> int:
    """How many MAIL transactions named `address` at RCPT (what the server was asked)."""
    return sum(1 for _, verb, arg in server.commands if verb == "RCPT" and f"<{address}>" in (arg or ""))


# -- 421 at the greeting ---------------------------------------------------------------------


async def test_421_at_greeting_is_busy_retried_and_delivered_once(tmp_path, server):
    busy = TempFail(at="greeting", code=421, msg="4.3.2 Service not available, closing transmission channel",
                    times=3)
    server.connection_faults.append(busy)
    plan, ledger = setup(tmp_path / "plan", server.port, recipients=N, concurrency=2, max_attempts=5)
    events: list = []
    summary = await engine(plan, ledger, events).run()
    f = figures(ledger, server, {L.ACCEPTED}).record("421 at greeting, clears")
    assert busy.fired == 3
    deferred = details(events, L.DEFERRED)
    assert deferred and all("is busy: 421 4.3.2 Service not available" in d for d in deferred)
    assert summary.exit_code == 0
    assert_figures(f)


def test_421_at_greeting_that_persists_defers_everything_with_the_reason(tmp_path, capsys):
    busy = TempFail(at="greeting", code=421, msg="4.3.2 Try again later", times=None)
    with FaultyMailServer(connection_faults=[busy]) as server:
        plan_file = write_plan(tmp_path / "plan", server.port, recipients=2, max_attempts=2)
        code = main(["send", str(plan_file), "--yes"])
        captured = capsys.readouterr()
        ledger = L.Ledger.open(tmp_path / "plan" / ".relcomm")
        f = figures(ledger, server, {L.DEFERRED})
        assert code == 1 and "Traceback" not in captured.out + captured.err
        assert "0 accepted, 2 deferred" in captured.out and "421 4.3.2 Try again later" in captured.out
        assert server.commands_named("MAIL") == [] and server.messages == []  # nothing counted, nothing sent
        for row in ledger.deliveries("4.2.0"):
            assert "gave up after 2 attempt(s)" in row.reply and "is busy: 421" in row.reply
        # When it clears, the next send delivers each exactly once.
        server.connection_faults.clear()
        assert main(["send", str(plan_file), "--yes"]) == 0
        capsys.readouterr()
        after = figures(ledger, server, {L.ACCEPTED})
    campaign.record("fault", "smtp: 421 at greeting, persists (CLI)", tried=f.tried + after.tried,
                    held=f.held + after.held, duplicates=after.duplicates, losses=f.losses + after.losses)
    assert_figures(f)
    assert_figures(after)


# -- 4xx and 5xx at MAIL, RCPT and the end of data ----------------------------------------------


TEMPORARY = {
    "mail": TempFail(at="mail", code=451, msg="4.3.0 Sender check unavailable", times=2),
    "rcpt": TempFail(at="rcpt", code=450, msg="4.2.0 Mailbox busy", times=2),
    "data": TempFail(at="data", code=452, msg="4.3.1 Insufficient storage", times=2),
}


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
async def test_4xx_is_retried_and_delivered_exactly_once(tmp_path, server, stage):
    rule = TempFail(**{k: getattr(TEMPORARY[stage], k) for k in ("at", "code", "msg", "times")})
    server.faults[SENDER if stage == "mail" else "customer1@example.com"] = rule
    plan, ledger = setup(tmp_path / "plan", server.port, recipients=N, max_attempts=4)
    events: list = []
    summary = await engine(plan, ledger, events).run()
    f = figures(ledger, server, {L.ACCEPTED}).record(f"4xx at {stage.upper()}")
    assert rule.fired == 2 and summary.exit_code == 0
    deferred = details(events, L.DEFERRED)
    assert len(deferred) == 2 and all(f"{rule.code} {rule.msg}" in d and "retrying in" in d for d in deferred)
    assert_figures(f)


async def test_5xx_at_mail_refuses_the_sender_once_and_stops(tmp_path, server):
    rule = PermFail(at="mail", code=553, msg="5.7.1 Sender address rejected: not owned by user")
    server.faults[SENDER] = rule
    plan, ledger = setup(tmp_path / "plan", server.port, recipients=N, concurrency=1)
    with pytest.raises(SendStopped) as caught:
        await engine(plan, ledger).run()
    f = figures(ledger, server, {L.QUEUED, L.DEFERRED}).record("5xx at MAIL (stop)")
    assert f"refused the sender {SENDER}: 553 5.7.1 Sender address rejected" in caught.value.message
    assert "receipts_to" in caught.value.hint
    assert len(server.commands_named("MAIL")) == 1  # never retried blindly
    assert server.messages == []
    rows = ledger.deliveries("4.2.0")
    assert [r.state for r in rows].count(L.DEFERRED) == 1  # the one that met it: "not sent", with the words
    assert all("553" in r.reply for r in rows if r.state == L.DEFERRED)
    assert_figures(f)


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_5xx_rejects_with_the_servers_words_once(tmp_path, server, stage):
    rule = PermFail(at=stage, code=554 if stage == "data" else 550,
                    msg="5.7.1 Message refused by policy" if stage == "data" else "5.1.1 No such user")
    server.faults["customer1@example.com"] = rule
    plan, ledger = setup(tmp_path / "plan", server.port, recipients=N, max_attempts=4)
    summary = await engine(plan, ledger).run()
    again = await engine(plan, ledger).run()  # a second run does not retry a rejection by itself
    f = figures(ledger, server, {"customer1@example.com": {L.REJECTED}}).record(f"5xx at {stage.upper()}")
    assert summary.exit_code == 1 and again.sent_this_run == 0
    (row,) = [r for r in ledger.deliveries("4.2.0") if r.state == L.REJECTED]
    assert row.recipient_key == "customer1@example.com" and row.reply == f"{rule.code} {rule.msg}"
    assert mails_for(server, "customer1@example.com") == 1 and rule.fired == 1
    assert_figures(f)


# -- connections that close ---------------------------------------------------------------------


async def test_server_closing_after_every_two_messages(tmp_path, server):
    closer = CloseAfter(messages=2, times=None)
    server.connection_faults.append(closer)
    server.data_delay = 0.005  # so that messages queue behind each other and chain
    plan, ledger = setup(tmp_path / "plan", server.port, recipients=2 * N + 1, concurrency=1)
    summary = await engine(plan, ledger).run()
    f = figures(ledger, server, {L.ACCEPTED}).record("closed after 2 messages")
    assert summary.exit_code == 0 and closer.fired >= N
    assert server.connections_opened >= N + 1
    assert_figures(f)


def big_render(address: str, size: int):
    """simple_render, with a text of `size` bytes for `address`."""

    def render(job):
        message = simple_render(job)
        if job.recipient.email.endswith(address):
            line = "Release notes: every change in Orion 4.2.0, one per line, for the record.\n"
            message.set_content(line * (size // len(line)))
        return message

    return render


async def test_connection_reset_mid_text_is_retried_not_in_doubt(tmp_path, server):
    # The server reads 64 KiB of a 6 MiB text and resets: the final "." cannot have left.
    drop = DropConnection(at="content", after_bytes=64 * 1024, times=1)
    server.faults["customer1@example.com"] = drop
    plan, ledger = setup(tmp_path / "plan", server.port, recipients=N, concurrency=1)
    events: list = []
    summary = await engine(plan, ledger, events, render=big_render("customer1@example.com", 6 << 20)).run()
    f = figures(ledger, server, {L.ACCEPTED}).record("reset mid-DATA (long text)")
    assert drop.fired == 1 and summary.exit_code == 0 and summary.counts[L.IN_DOUBT] == 0
    assert any("before the message was complete" in d for d in details(events, L.DEFERRED))
    assert len(email.message_from_bytes(server.messages_for("customer1@example.com")[0].data).get_payload()) > 6_000_000
    assert_figures(f)


async def test_connection_reset_mid_short_text_is_in_doubt_and_resent_only_when_asked(tmp_path, server):
    # A short text leaves in one write with its "."; the client cannot tell it from a drop
    # after the "." so the delivery is in doubt; the message chained behind it is retried.
    drop = DropConnection(at="content", after_bytes=10, times=1)
    server.faults["customer1@example.com"] = drop
    server.data_delay = 0.005
    plan, ledger = setup(tmp_path / "plan", server.port, recipients=N, concurrency=1)
    summary = await engine(plan, ledger).run()
    doubtful = figures(ledger, server, {"customer1@example.com": {L.IN_DOUBT}})
    assert summary.counts[L.IN_DOUBT] == 1 and "may have accepted" in [
        r.reply for r in ledger.deliveries("4.2.0") if r.state == L.IN_DOUBT][0]
    assert_figures(doubtful)
    resent = await engine(plan, ledger, resend_in_doubt=True).run()
    f = figures(ledger, server, {L.ACCEPTED}).record("reset mid-DATA (short text), resent")
    assert resent.exit_code == 0
    assert_figures(f)


# -- stalls --------------------------------------------------------------------------------------


def test_server_that_never_greets_stops_on_the_timeout_without_a_traceback(tmp_path, capsys):
    stall = Delay(at="greeting", seconds=3600, times=None)
    with FaultyMailServer(connection_faults=[stall]) as server:
        plan_file = write_plan(tmp_path / "plan", server.port, recipients=3, timeout=1)
        code = main(["send", str(plan_file), "--yes"])
        captured = capsys.readouterr()
        ledger = L.Ledger.open(tmp_path / "plan" / ".relcomm")
        f = figures(ledger, server, {L.QUEUED}).record("stall before the greeting (CLI)")
        assert code == 2 and "Traceback" not in captured.out + captured.err
        assert "did not greet as an SMTP server: no reply from the server within 1 s" in captured.err
        assert "raise timeout" in captured.err and "3 not sent yet" in captured.out
        assert server.commands == [] and server.messages == []
    assert_figures(f)


@pytest.mark.parametrize("stage", ["mail", "rcpt"])
async def test_server_that_stops_answering_before_the_text_is_retried(tmp_path, server, stage):
    stall = Delay(at=stage, seconds=3600, times=1)
    server.faults[SENDER if stage == "mail" else "customer1@example.com"] = stall
    plan, ledger = setup(tmp_path / "plan", server.port, recipients=N, timeout=1, concurrency=1)
    events: list = []
    summary = await engine(plan, ledger, events).run()
    f = figures(ledger, server, {L.ACCEPTED}).record(f"stall at {stage.upper()}")
    assert stall.fired == 1 and summary.exit_code == 0
    assert any("no reply from the server within 1 s (the plan's timeout)" in d for d in details(events, L.DEFERRED))
    assert_figures(f)


async def test_server_that_stops_answering_after_the_text_is_in_doubt(tmp_path, server):
    stall = Delay(at="data", seconds=3600, times=1)
    server.faults["customer1@example.com"] = stall
    plan, ledger = setup(tmp_path / "plan", server.port, recipients=N, timeout=1, concurrency=1)
    summary = await engine(plan, ledger).run()
    (row,) = [r for r in ledger.deliveries("4.2.0") if r.state == L.IN_DOUBT]
    assert row.recipient_key == "customer1@example.com" and summary.counts[L.IN_DOUBT] == 1
    assert "no reply from the server within 1 s" in row.reply and "may have accepted" in row.reply
    assert_figures(figures(ledger, server, {"customer1@example.com": {L.IN_DOUBT}}))
    await engine(plan, ledger, resend_in_doubt=True).run()
    f = figures(ledger, server, {L.ACCEPTED}).record("stall after DATA, resent")
    assert_figures(f)


# -- garbage ---------------------------------------------------------------------------------------


def test_garbage_instead_of_a_greeting_is_one_clear_stop(tmp_path, capsys):
    noise = Garbage(at="greeting", payload=b"\x15\x03\x01\x00\x02\x02\x46\r\n", times=None, close=True)
    with FaultyMailServer(connection_faults=[noise]) as server:
        plan_file = write_plan(tmp_path / "plan", server.port, recipients=3)
        code = main(["send", str(plan_file), "--yes"])
        captured = capsys.readouterr()
        ledger = L.Ledger.open(tmp_path / "plan" / ".relcomm")
        f = figures(ledger, server, {L.QUEUED}).record("garbage greeting (CLI)")
        assert code == 2 and "Traceback" not in captured.out + captured.err
        assert "did not greet as an SMTP server: the server sent something that is not an SMTP reply" in captured.err
        assert "port" in captured.err and server.messages == [] and noise.fired == 1
    assert_figures(f)


GARBAGE = {
    "no code": (Garbage(at="rcpt", payload=b"hello there, friend\r\n"), "customer1@example.com",
                "not an SMTP reply: b'hello there, friend\\r\\n'"),
    "over-long line": (Garbage(at="mail", payload=b"250 " + b"x" * 100_000 + b"\r\n"), SENDER,
                       "over-long reply line"),
    "binary": (Garbage(at="rcpt", payload=bytes(range(256)) + b"\n", close=True), "customer1@example.com",
               "not an SMTP reply"),
}


@pytest.mark.parametrize("kind", list(GARBAGE))
async def test_garbage_reply_before_the_text_is_a_clear_error_and_retried(tmp_path, server, kind):
    noise, address, words = GARBAGE[kind]
    noise = Garbage(payload=noise.payload, at=noise.at, close=noise.close, times=1)
    server.faults[address] = noise
    plan, ledger = setup(tmp_path / "plan", server.port, recipients=N, concurrency=1)
    events: list = []
    summary = await engine(plan, ledger, events).run()
    f = figures(ledger, server, {L.ACCEPTED}).record(f"garbage reply: {kind}")
    assert noise.fired == 1 and summary.exit_code == 0
    deferred = details(events, L.DEFERRED)
    assert len(deferred) == 1 and words in deferred[0] and "Traceback" not in deferred[0]
    assert_figures(f)


async def test_garbage_reply_after_the_text_is_in_doubt_never_twice(tmp_path, server):
    noise = Garbage(at="data", payload=b"OK!!\r\n", times=1)
    server.faults["customer1@example.com"] = noise
    plan, ledger = setup(tmp_path / "plan", server.port, recipients=N, concurrency=1)
    summary = await engine(plan, ledger).run()
    (row,) = [r for r in ledger.deliveries("4.2.0") if r.state == L.IN_DOUBT]
    assert summary.counts[L.IN_DOUBT] == 1 and "not an SMTP reply: b'OK!!\\r\\n'" in row.reply
    again = await engine(plan, ledger).run()  # not resent by itself
    assert again.sent_this_run == 0 and copies(server).get("customer1@example.com", 0) == 0
    await engine(plan, ledger, resend_in_doubt=True).run()
    f = figures(ledger, server, {L.ACCEPTED}).record("garbage after DATA, resent")
    assert_figures(f)


# -- TLS and login -------------------------------------------------------------------------------


@pytest.mark.parametrize("advertised", [False, True])
async def test_starttls_required_never_falls_back_to_plaintext(tmp_path, monkeypatch, advertised):
    # Not offered at all, or offered and then refused (454): either way no plaintext fallback.
    monkeypatch.setenv("RELCOMM_TEST_SMTP", "horse battery")
    server = FaultyMailServer(auth=("bot", "horse battery"), advertise_starttls=advertised)
    await server.start_async()
    try:
        plan, ledger = setup(tmp_path / "plan", server.port, recipients=N, security="starttls",
                             username="bot", password_env="RELCOMM_TEST_SMTP")
        with pytest.raises(SendStopped) as caught:
            await engine(plan, ledger).run()
        f = figures(ledger, server, {L.QUEUED}).record(
            "STARTTLS " + ("refused" if advertised else "not offered") + ", required")
        assert ("refused STARTTLS" if advertised else "does not offer STARTTLS") in caught.value.message
        verbs = {verb for _, verb, _ in server.commands}
        assert verbs <= {"EHLO", "STARTTLS", "QUIT"}  # no AUTH, no MAIL, no RCPT, no DATA
        assert server.messages == []
    finally:
        await server.stop_async()
    assert_figures(f)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    folder = tmp_path_factory.mktemp("certs")
    return {"localhost": make_certificate(folder, "localhost"), "other": make_certificate(folder, "mail.example.net")}


@pytest.mark.parametrize("security", ["tls", "starttls"])
@pytest.mark.parametrize("problem", ["self-signed", "wrong host"])
async def test_certificate_that_does_not_verify_is_refused_before_any_credential(
        tmp_path, monkeypatch, certificates, security, problem):
    cert, key = certificates["localhost" if problem == "self-signed" else "other"]
    if problem == "wrong host":
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trusted, but issued to mail.example.net
    monkeypatch.setenv("RELCOMM_TEST_SMTP", "horse battery")
    context = server_context(cert, key)
    server = FaultyMailServer(auth=("bot", "horse battery"),
                                **({"ssl_context": context} if security == "tls" else {"tls_context": context}))
    await server.start_async()
    try:
        plan, ledger = setup(tmp_path / "plan", server.port, recipients=N, security=security, host="localhost",
                             username="bot", password_env="RELCOMM_TEST_SMTP")
        with pytest.raises(SendStopped) as caught:
            await engine(plan, ledger).run()
        f = figures(ledger, server, {L.QUEUED}).record(f"certificate {problem} ({security})")
        message, hint = caught.value.message, caught.value.hint
        assert "TLS certificate of localhost" in message and "does not verify" in message
        assert ("self-signed" if problem == "self-signed" else "Hostname mismatch") in message
        assert "SSL_CERT_FILE" in hint and "host" in hint
        assert "horse battery" not in message + hint
        verbs = {verb for _, verb, _ in server.commands}
        assert verbs <= ({"EHLO", "STARTTLS"} if security == "starttls" else set())
        assert server.messages == []
    finally:
        await server.stop_async()
    assert_figures(f)


def test_login_refused_is_one_clear_stop_without_the_password(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RELCOMM_TEST_SMTP", "wrong-horse-battery")
    with FaultyMailServer(auth=("bot", "right-horse-battery")) as server:
        plan_file = write_plan(tmp_path / "plan", server.port, recipients=N, username="bot",
                               password_env="RELCOMM_TEST_SMTP")
        code = main(["send", str(plan_file), "--yes"])
        captured = capsys.readouterr()
        code_again = main(["send", str(plan_file), "--yes"])  # a second run asks once more, once
        captured_again = capsys.readouterr()
        ledger = L.Ledger.open(tmp_path / "plan" / ".relcomm")
        f = figures(ledger, server, {L.QUEUED}).record("535 authentication refused (CLI)")
        shown = captured.out + captured.err + captured_again.out + captured_again.err
        assert code == code_again == 2 and "Traceback" not in shown
        assert captured.err.count("refused the login for 'bot': 535") == 1
        assert "wrong-horse-battery" not in shown
        assert b"wrong-horse-battery" not in (tmp_path / "plan" / ".relcomm" / "ledger.sqlite").read_bytes()
        assert len(server.commands_named("AUTH")) == 2  # one try per run, no loop
        assert {arg for _, _, arg in server.commands_named("AUTH")} == {"PLAIN"}  # the log keeps no credential
        assert server.commands_named("MAIL") == [] and server.messages == []
    assert_figures(f)
