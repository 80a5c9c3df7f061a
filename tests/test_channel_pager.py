"""The pager channel against a real loopback receiver: PagerDuty Events v2 and ntfy shapes and receipts."""

from __future__ import annotations

import json

from http_receiver import IntentLog, Reply, channel_plan, fake_render, job_for, ntfy_reply, pagerduty_reply, receiver, rehearse  # noqa: F401
from relcomm_tui.channels.pager import PagerChannel
from relcomm_tui.transport.http import HttpTimeouts

FAST = HttpTimeouts(connect=0.5, total=1)


def pager_plan(folder, url, preset, extra=""):
    return channel_plan(folder, f"""
        [[communiques]]
        id = "ops-page"
        to = ["engineering"]
        channel = "pager"
        preset = "{preset}"
        url = "{url}"
        subject = "Orion 4.2.0 deployed"
        body = "Watch the dashboards"
        {extra}
    """)


def pager(plan, **options):
    return PagerChannel(plan, render=fake_render(subject="Orion 4.2.0 deployed", text="Watch the dashboards"),
                        timeouts=FAST, **options)


async def page(plan, **options):
    channel = pager(plan, **options)
    await channel.open()
    try:
        log = IntentLog()
        job = job_for(plan, "ops-page")
        return await channel.deliver(job, log.intent()), job, log
    finally:
        await channel.close()


async def test_pagerduty_event_shape_and_receipt(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("TEST_PD_KEY", "R0UTINGKEY")
    receiver.answer("/v2/enqueue", Reply(202, pagerduty_reply))
    plan = pager_plan(tmp_path, receiver.url("/v2/enqueue"), "pagerduty",
                      extra='routing_key = { env = "TEST_PD_KEY" }\n        severity = "warning"')
    outcome, job, log = await page(plan)
    assert outcome.state == "accepted", outcome
    [request] = receiver.requests_for("/v2/enqueue")
    assert request.json() == {
        "routing_key": "R0UTINGKEY", "event_action": "trigger", "dedup_key": job.envelope_id,
        "payload": {"summary": "Orion 4.2.0 deployed", "source": "relcomm Orion 4.2.0", "severity": "warning",
                    "custom_details": {"release": "Orion", "version": "4.2.0", "text": "Watch the dashboards"}},
    }
    assert outcome.reply == f"HTTP 202 Accepted: dedup_key {job.envelope_id}; Event processed"
    assert "R0UTINGKEY" not in outcome.reply and log.calls == 1


async def test_pagerduty_invalid_event_is_rejected_with_its_words(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("TEST_PD_KEY", "bad")
    receiver.answer("/v2/enqueue", Reply(400, {"status": "invalid event", "message": "Event object is invalid",
                                               "errors": ["Length of 'routing_key' is incorrect"]}))
    plan = pager_plan(tmp_path, receiver.url("/v2/enqueue"), "pagerduty", extra='routing_key = { env = "TEST_PD_KEY" }')
    outcome, _, _ = await page(plan)
    assert outcome.state == "rejected"
    assert "HTTP 400" in outcome.reply and "routing_key' is incorrect" in outcome.reply


async def test_pagerduty_throttled_then_accepted(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("TEST_PD_KEY", "k")
    receiver.script("/v2/enqueue", Reply(429, {"status": "throttled"}, {"Retry-After": "0"}))
    receiver.answer("/v2/enqueue", Reply(202, pagerduty_reply))
    plan = pager_plan(tmp_path, receiver.url("/v2/enqueue"), "pagerduty", extra='routing_key = { env = "TEST_PD_KEY" }')
    from relcomm_tui.delivery.engine import SendEngine
    from relcomm_tui.store.ledger import Ledger

    ledger = Ledger.open(plan.state_dir)
    fast = {"pager": lambda plan, **kw: pager(plan, **{k: v for k, v in kw.items() if k != "render"})}
    await SendEngine(plan, ledger, backoff_base=0.01, channels=fast).run()  # the engine retries, not the channel
    [record] = ledger.deliveries("4.2.0")
    assert record.state == "accepted" and record.attempts == 2
    first, second = receiver.requests_for("/v2/enqueue")
    assert first.json()["dedup_key"] == second.json()["dedup_key"] == record.envelope_id
    ledger.close()


async def test_pagerduty_without_routing_key_is_rejected_before_anything_is_sent(tmp_path, receiver):
    plan = pager_plan(tmp_path, receiver.url("/v2/enqueue"), "pagerduty")
    outcome, _, log = await page(plan)
    assert outcome.state == "rejected" and "routing_key" in outcome.detail
    assert receiver.requests == [] and log.calls == 0


async def test_ntfy_topic_headers_and_receipt(tmp_path, receiver):
    receiver.answer("/orion-releases", Reply(200, ntfy_reply))
    plan = pager_plan(tmp_path, receiver.url("/orion-releases"), "ntfy", extra='severity = "critical"')
    outcome, _, _ = await page(plan)
    assert outcome.state == "accepted"
    [request] = receiver.requests_for("/orion-releases")
    assert request.text == "Watch the dashboards"
    assert request.headers["title"] == "Orion 4.2.0 deployed"
    assert request.headers["priority"] == "5"
    assert outcome.reply.startswith("HTTP 200 OK: id msg")


async def test_an_answer_without_an_id_is_accepted_but_says_so(tmp_path, receiver):
    receiver.answer("/topic", Reply(200, "ok"))
    plan = pager_plan(tmp_path, receiver.url("/topic"), "ntfy")
    outcome, _, _ = await page(plan)
    assert outcome.state == "accepted" and "no acknowledgement id" in outcome.reply


async def test_dry_run_masks_the_routing_key(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("TEST_PD_KEY", "R0UTINGKEY")
    plan = pager_plan(tmp_path, receiver.url("/v2/enqueue"), "pagerduty", extra='routing_key = { env = "TEST_PD_KEY" }')
    outbox = tmp_path / "outbox"
    job = job_for(plan, "ops-page")
    written = (await rehearse(pager(plan), job, outbox)).read_text()
    assert receiver.requests == []
    assert json.loads(written)["body"]["routing_key"] == "(secret)"
    assert "R0UTINGKEY" not in written
