"""The webhook channel against a real HTTP receiver on loopback: receipts, retries, rejections,
hangs, preset payload shapes, idempotency keys, secrets and dry runs."""

from __future__ import annotations

import email.utils
import json
import re
import time

import campaign
import pytest

from http_receiver import IntentLog, Reply, channel_plan, fake_render, hang, job_for, receiver, rehearse  # noqa: F401
from relcomm_tui.channels.presets import to_mrkdwn
from relcomm_tui.channels.webhook import WebhookChannel
from relcomm_tui.transport.http import HttpTimeouts, parse_retry_after, redact

FAST = HttpTimeouts(connect=0.5, total=0.5)


def hook_plan(tmp_path, url, preset="slack", extra=""):
    return channel_plan(tmp_path, f"""
        [[communiques]]
        id = "eng-chat"
        to = ["engineering"]
        channel = "webhook"
        preset = "{preset}"
        url = "{url}"
        body = "unused: the tests render with fake_render"
        {extra}
    """)


async def deliver(plan, timeouts=FAST, render=None, **options):
    channel = WebhookChannel(plan, render=render or fake_render(), timeouts=timeouts, **options)
    await channel.open()
    try:
        job = job_for(plan, "eng-chat")
        log = IntentLog()
        outcome = await channel.deliver(job, log.intent())
        return outcome, job, log
    finally:
        await channel.close()


async def send(plan, **options):
    """Through the engine, with short waits: retries are the engine's, never the channel's."""
    from relcomm_tui.delivery.engine import SendEngine
    from relcomm_tui.store.ledger import Ledger

    ledger = Ledger.open(plan.state_dir)
    fast = {"webhook": lambda plan, **kw: WebhookChannel(plan, timeouts=FAST, **kw)}
    summary = await SendEngine(plan, ledger, backoff_base=0.01, backoff_max=0.05, channels=fast, **options).run()
    [record] = ledger.deliveries("4.2.0")
    ledger.close()
    return summary, record


async def test_200_is_a_receipt_with_status_and_excerpt(tmp_path, receiver):
    receiver.answer("/hook", Reply(200, "ok " + "x" * 500))
    plan = hook_plan(tmp_path, receiver.url("/hook"))
    outcome, job, log = await deliver(plan)
    assert outcome.state == "accepted"
    assert outcome.reply.startswith("HTTP 200 OK: ok xxx")
    assert len(outcome.reply) <= len("HTTP 200 OK: ") + 200
    assert log.calls == 1
    [request] = receiver.requests_for("/hook")
    assert request.method == "POST"
    assert request.headers["idempotency-key"] == job.envelope_id
    assert request.headers["content-type"] == "application/json"


async def test_intent_is_committed_before_the_request_leaves(tmp_path, receiver):
    plan = hook_plan(tmp_path, receiver.url("/hook"))
    channel = WebhookChannel(plan, render=fake_render(), timeouts=FAST)
    await channel.open()
    log = IntentLog(receiver)
    await channel.deliver(job_for(plan, "eng-chat"), log.intent())
    await channel.close()
    assert log.requests_before == [0]
    assert len(receiver.requests) == 1


async def test_429_with_retry_after_is_waited_for_then_one_success(tmp_path, receiver):
    receiver.script("/hook", Reply(429, "slow down", {"Retry-After": "1"}), Reply(429, "slow down", {"Retry-After": "1"}))
    receiver.answer("/hook", Reply(200, "ok"))
    plan = hook_plan(tmp_path, receiver.url("/hook"))
    outcome, _, log = await deliver(plan)
    assert outcome.state == "transient" and outcome.retry_after == 1.0  # the engine waits it, not the channel
    assert len(receiver.requests_for("/hook")) == 1 and log.calls == 1
    summary, record = await send(plan)
    assert record.state == "accepted" and record.attempts == 2
    first, second = receiver.requests_for("/hook")[1:]
    assert second.at - first.at >= 0.95, "Retry-After: 1 was not honoured"
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == record.envelope_id


async def test_500_then_200_is_retried_with_backoff(tmp_path, receiver):
    receiver.script("/hook", Reply(500, "oops"))
    plan = hook_plan(tmp_path, receiver.url("/hook"))
    summary, record = await send(plan)
    assert record.state == "accepted" and summary.exit_code == 0
    assert [r.method for r in receiver.requests_for("/hook")] == ["POST", "POST"]


async def test_5xx_every_time_is_deferred_after_max_attempts_from_the_plan(tmp_path, receiver):
    receiver.answer("/hook", Reply(503, "maintenance"))
    plan = channel_plan(tmp_path / "three", f"""
        [channels.webhook]
        max_attempts = 3

        [[communiques]]
        id = "eng-chat"
        to = ["engineering"]
        channel = "webhook"
        url = "{receiver.url('/hook')}"
        body = "x"
    """)
    summary, record = await send(plan)
    assert record.state == "deferred"
    assert "HTTP 503" in record.reply and "maintenance" in record.reply
    assert "gave up after 3 attempt" in record.reply
    assert len(receiver.requests_for("/hook")) == 3, "[channels.webhook] max_attempts, not [transport.smtp]'s 5"


async def test_retry_after_beyond_the_cap_defers_at_once(tmp_path, receiver):
    receiver.answer("/hook", Reply(429, "later", {"Retry-After": "3600"}))
    plan = hook_plan(tmp_path, receiver.url("/hook"))
    summary, record = await send(plan)
    assert record.state == "deferred"
    assert "3600 s" in record.reply and "not retried in this run" in record.reply
    assert len(receiver.requests_for("/hook")) == 1


async def test_400_is_rejected_with_the_response_text(tmp_path, receiver):
    receiver.answer("/hook", Reply(400, "invalid_payload: missing text"))
    plan = hook_plan(tmp_path, receiver.url("/hook"))
    outcome, _, _ = await deliver(plan)
    assert outcome.state == "rejected"
    assert "HTTP 400" in outcome.reply and "invalid_payload: missing text" in outcome.reply
    assert len(receiver.requests_for("/hook")) == 1, "a 4xx is never retried"


@pytest.mark.campaign
async def test_a_hanging_receiver_is_bounded_and_left_in_doubt_not_posted_twice(tmp_path, receiver):
    receiver.answer("/hook", hang(10))
    plan = hook_plan(tmp_path, receiver.url("/hook"))
    outcome, _, _ = await deliver(plan, HttpTimeouts(connect=0.3, total=0.3))  # answers after 10 s: accepted, had it waited
    posts = len(receiver.requests_for("/hook"))
    campaign.record("fault", "webhook: no answer after the post", tried=1, held=int(outcome.state == "in_doubt"),
                    duplicates=posts - 1)
    assert outcome.state == "in_doubt"  # the chat may show it: never re-posted without the engineer
    assert "did not answer within 0.3 s" in outcome.reply
    assert "may have it" in outcome.detail
    assert posts == 1


async def test_connection_refused_is_transient_and_never_shows_the_url(tmp_path):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    plan = hook_plan(tmp_path, f"http://127.0.0.1:{port}/services/T000/B000/SECRETTOKEN")
    outcome, _, _ = await deliver(plan)
    assert outcome.state == "transient"
    assert "cannot connect" in outcome.reply
    assert "SECRETTOKEN" not in outcome.reply + outcome.detail


async def test_url_and_header_from_secret_references(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("TEST_HOOK_URL", receiver.url("/secret-hook"))
    monkeypatch.setenv("TEST_HOOK_TOKEN", "Bearer s3cret")
    plan = channel_plan(tmp_path, """
        [[communiques]]
        id = "eng-chat"
        to = ["engineering"]
        channel = "webhook"
        preset = "json"
        method = "PUT"
        url = { env = "TEST_HOOK_URL" }
        headers = { Authorization = { env = "TEST_HOOK_TOKEN" }, X-Team = "release" }
        body = "x"
    """)
    outcome, _, _ = await deliver(plan)
    assert outcome.state == "accepted"
    [request] = receiver.requests_for("/secret-hook")
    assert request.method == "PUT"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["x-team"] == "release"


async def test_missing_secret_rejects_with_a_hint_and_posts_nothing(tmp_path, receiver, monkeypatch):
    monkeypatch.delenv("TEST_HOOK_URL_MISSING", raising=False)
    plan = channel_plan(tmp_path, """
        [[communiques]]
        id = "eng-chat"
        to = ["engineering"]
        channel = "webhook"
        preset = "slack"
        url = { env = "TEST_HOOK_URL_MISSING" }
        body = "x"
    """)
    outcome, _, log = await deliver(plan)
    assert outcome.state == "rejected"
    assert "TEST_HOOK_URL_MISSING is not set" in outcome.detail and "export" in outcome.detail
    assert log.calls == 0
    assert receiver.requests == []


@pytest.mark.parametrize("preset", ["slack", "teams", "mattermost", "googlechat", "json", "text"])
async def test_preset_payload_shapes(tmp_path, receiver, preset):
    plan = hook_plan(tmp_path, receiver.url(f"/{preset}"), preset=preset)
    outcome, _, _ = await deliver(plan)
    assert outcome.state == "accepted"
    [request] = receiver.requests_for(f"/{preset}")
    if preset == "text":
        assert request.headers["content-type"].startswith("text/plain")
        assert request.text.startswith("Orion 4.2.0 is live\n\n**Orion 4.2.0** is live.")
        return
    body = request.json()
    if preset == "slack":
        assert body == {"text": "*Orion 4.2.0 is live*\n\n*Orion 4.2.0* is live. <https://x.example/4.2.0|Notes>"}
    elif preset == "teams":
        assert body["type"] == "message"
        [attachment] = body["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
        title, text = card["body"]
        assert title["text"] == "Orion 4.2.0 is live" and title["weight"] == "Bolder"
        assert text["text"].startswith("**Orion 4.2.0** is live") and text["wrap"] is True
    elif preset == "mattermost":
        assert body == {"text": "**Orion 4.2.0 is live**\n\n**Orion 4.2.0** is live. [Notes](https://x.example/4.2.0)"}
    elif preset == "googlechat":
        assert body["text"].startswith("*Orion 4.2.0 is live*\n\n*Orion 4.2.0* is live.")
    elif preset == "json":
        assert body == {"release": "Orion", "version": "4.2.0", "subject": "Orion 4.2.0 is live",
                        "text": "**Orion 4.2.0** is live. [Notes](https://x.example/4.2.0)"}


async def test_no_preset_posts_the_rendered_json_and_rejects_broken_json(tmp_path, receiver):
    plan = hook_plan(tmp_path, receiver.url("/raw"), preset="json", extra="")
    plan = channel_plan(tmp_path / "raw", f"""
        [[communiques]]
        id = "eng-chat"
        to = ["engineering"]
        channel = "webhook"
        format = "json"
        url = "{receiver.url('/raw')}"
        body = "x"
    """)
    good = fake_render(text='{"event": "release", "version": "4.2.0"}')
    outcome, _, _ = await deliver(plan, render=good)
    assert outcome.state == "accepted"
    assert receiver.requests_for("/raw")[0].json() == {"event": "release", "version": "4.2.0"}
    outcome, _, log = await deliver(plan, render=fake_render(text='{"event": '))
    assert outcome.state == "rejected" and "valid JSON" in outcome.detail
    assert log.calls == 0 and len(receiver.requests_for("/raw")) == 1


async def test_dry_run_writes_the_outbox_and_posts_nothing(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("TEST_HOOK_TOKEN", "Bearer s3cret")
    plan = hook_plan(tmp_path, receiver.url("/hook/T0/SECRETPATH"),
                     extra='headers = { Authorization = { env = "TEST_HOOK_TOKEN" } }')
    outbox = tmp_path / "state" / "outbox"
    job = job_for(plan, "eng-chat")
    written = await rehearse(WebhookChannel(plan, render=fake_render()), job, outbox)
    assert receiver.requests == []
    assert written == outbox / "eng-chat" / f"{job.delivery_id}.json"
    document = json.loads(written.read_text())
    assert document["body"]["text"].startswith("*Orion 4.2.0 is live*")
    assert document["url"] == f"http://127.0.0.1:{receiver.port}/…"
    assert document["headers"]["Authorization"] == "(secret)"
    assert "SECRETPATH" not in written.read_text() and "s3cret" not in written.read_text()


def test_retry_after_forms():
    assert parse_retry_after("7") == 7.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(date, now) <= 31
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_redact_and_mrkdwn():
    assert redact("https://hooks.slack.com/services/T/B/XYZ") == "https://hooks.slack.com/…"
    assert redact("https://user:pw@example.com:8443") == "https://example.com:8443"
    assert to_mrkdwn("# Title\n**bold** and [link](https://a.b/c)") == "*Title*\n*bold* and <https://a.b/c|link>"


async def test_through_the_engine_one_post_per_communique_and_retry_after_honoured(tmp_path, receiver):
    from relcomm_tui.store import ledger as L
    from relcomm_tui.delivery.engine import SendEngine
    from relcomm_tui.store.ledger import Ledger

    receiver.script("/hook", Reply(429, "slow down", {"Retry-After": "1"}))
    plan = channel_plan(tmp_path, f"""
        [[communiques]]
        id = "eng-chat"
        to = ["engineering", "exec"]
        channel = "webhook"
        preset = "slack"
        url = "{receiver.url('/hook')}"
        body = "{{{{ release.name }}}} {{{{ release.version }}}} is live"
    """)
    ledger = Ledger.open(plan.state_dir)
    summary = await SendEngine(plan, ledger, backoff_base=0.01).run()
    [record] = ledger.deliveries("4.2.0")  # three people in two groups, one post
    assert record.state == L.ACCEPTED and record.attempts == 2
    assert record.recipient_display == "Engineering, Executive staff"
    assert record.reply.startswith("HTTP 200 OK")
    first, second = receiver.requests_for("/hook")
    assert second.at - first.at >= 0.95, "the engine waited the receiver's Retry-After, not its own 10 ms"
    assert second.json() == {"text": "Orion 4.2.0 is live"}
    assert summary.exit_code == 0


@pytest.mark.campaign
async def test_through_the_engine_a_post_without_answer_is_in_doubt_and_only_resent_on_request(tmp_path, receiver):
    from relcomm_tui.store import ledger as L
    from relcomm_tui.delivery.engine import SendEngine
    from relcomm_tui.store.ledger import Ledger

    receiver.script("/hook", hang(5))
    plan = channel_plan(tmp_path, f"""
        [[communiques]]
        id = "eng-chat"
        to = ["engineering"]
        channel = "webhook"
        preset = "slack"
        url = "{receiver.url('/hook')}"
        body = "{{{{ release.name }}}} is live"
    """)
    fast = {"webhook": lambda plan, **kw: WebhookChannel(plan, timeouts=HttpTimeouts(connect=0.3, total=0.3), **kw)}
    ledger = Ledger.open(plan.state_dir)
    await SendEngine(plan, ledger, backoff_base=0.01, channels=fast).run()
    [record] = ledger.deliveries("4.2.0")
    assert record.state == L.IN_DOUBT and "may have it" in (record.reply or "")
    await SendEngine(plan, ledger, backoff_base=0.01, channels=fast).run()  # a plain rerun
    after_rerun = len(receiver.requests_for("/hook"))
    await SendEngine(plan, ledger, backoff_base=0.01, channels=fast, resend_in_doubt=True).run()
    [record] = ledger.deliveries("4.2.0")
    posts = len(receiver.requests_for("/hook"))
    campaign.record("fault", "webhook: in doubt across reruns", tried=1, held=int(record.state == L.ACCEPTED),
                    duplicates=max(0, after_rerun - 1))
    assert after_rerun == 1, "a rerun never re-posts a delivery in doubt"
    assert posts == 2 and record.state == L.ACCEPTED  # resent once, on request


# -- issue 10, item 12: a receiver's Retry-After cannot hold the run ----------------------------


def test_retry_after_is_read_as_data_never_overflowed_or_crashed_on():
    from relcomm_tui.transport.retry import RETRY_AFTER_LONGEST

    assert parse_retry_after("9" * 400) == RETRY_AFTER_LONGEST  # was float("9"*400) = inf
    assert parse_retry_after("1" + "0" * 5000) == RETRY_AFTER_LONGEST  # longer than int() takes
    assert parse_retry_after("0000000000000000000000007") == 7.0
    assert parse_retry_after(" 60 ") == 60.0
    for odd in ("²", "٣", "1e9", "-5", "1.5", "inf", "nan", "0x10", "9" * 400 + "x"):
        assert parse_retry_after(odd) is None, odd  # Unicode digits used to raise in float()
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") == RETRY_AFTER_LONGEST


@pytest.mark.campaign
@pytest.mark.parametrize("asked", ["9" * 400, "3600", "61", "Fri, 31 Dec 9999 23:59:59 GMT"])
async def test_through_the_engine_a_retry_after_over_the_cap_defers_at_once_without_waiting(tmp_path, receiver, asked):
    """`Retry-After: 999…9` (400 digits) made relcomm send wait: parsed as inf, then waited for
    min(inf, the engine's 60 s backoff cap) per attempt, 4 minutes in all. Now anything over
    RETRY_AFTER_MAX is not waited for. Asserted on the delay the engine announces, not the clock."""
    from relcomm_tui.store import ledger as L
    from relcomm_tui.channels import RETRY_AFTER_MAX
    from relcomm_tui.delivery.engine import DeliveryChanged, SendEngine
    from relcomm_tui.store.ledger import Ledger

    receiver.answer("/hook", Reply(429, "slow down", {"Retry-After": asked}))
    plan = channel_plan(tmp_path, f"""
        [[communiques]]
        id = "eng-chat"
        to = ["engineering"]
        channel = "webhook"
        url = "{receiver.url('/hook')}"
        body = "{{{{ release.name }}}} is live"
    """)
    ledger = Ledger.open(plan.state_dir)
    announced: list[str] = []
    engine: SendEngine

    def on_event(event) -> None:
        if isinstance(event, DeliveryChanged) and event.state == L.DEFERRED:
            announced.append(event.detail)
            if "retrying in" in event.detail:
                engine.cancel()  # the code before the fix: seen what it would wait; do not wait it

    engine = SendEngine(plan, ledger, on_event=on_event)  # the CLI's own backoff settings
    await engine.run()
    waits = [float(m.group(1)) for d in announced for m in [re.search(r"retrying in ([0-9.]+) s", d)] if m]
    campaign.record("fault", f"webhook: Retry-After {asked[:12]}{'…' if len(asked) > 12 else ''} (over the cap)",
                    tried=1, held=int(not waits and len(receiver.requests_for("/hook")) == 1))
    assert waits == [], f"a receiver made the run wait {waits} s (cap {RETRY_AFTER_MAX:g} s)"
    [record] = ledger.deliveries("4.2.0")
    assert record.state == L.DEFERRED and "not retried in this run" in record.reply, record.reply
    assert "longer than relcomm waits" in record.reply and "inf" not in record.reply
    assert len(receiver.requests_for("/hook")) == 1
    ledger.close()


async def test_through_the_engine_a_retry_after_under_the_cap_is_waited_as_announced(tmp_path, receiver):
    from relcomm_tui.store import ledger as L
    from relcomm_tui.delivery.engine import DeliveryChanged, SendEngine
    from relcomm_tui.store.ledger import Ledger

    receiver.script("/hook", Reply(429, "slow down", {"Retry-After": "2"}))
    plan = channel_plan(tmp_path, f"""
        [[communiques]]
        id = "eng-chat"
        to = ["engineering"]
        channel = "webhook"
        url = "{receiver.url('/hook')}"
        body = "x"
    """)
    ledger = Ledger.open(plan.state_dir)
    announced: list[str] = []
    engine = SendEngine(plan, ledger, backoff_base=0.01, retry_after_max=3,
                        on_event=lambda e: announced.append(e.detail) if isinstance(e, DeliveryChanged) else None)
    await engine.run()
    assert any("retrying in 2.0 s" in detail for detail in announced), announced
    [record] = ledger.deliveries("4.2.0")
    assert record.state == L.ACCEPTED
    ledger.close()
