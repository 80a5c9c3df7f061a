"""Manual steps through the real engine and ledger: tasks await the engineer, confirm_manual records
who, when and the note; and the webhook's exactly-once rule across a killed process."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from http_receiver import Reply, channel_plan, hang, job_for, receiver, rehearse  # noqa: F401
from relcomm_tui.store import ledger as L
from relcomm_tui.channels.manual import ManualChannel, ManualError, confirm_manual, task_for
from relcomm_tui.channels.base import post_render as default_render
from relcomm_tui.delivery.engine import SendEngine, dry_run
from relcomm_tui.store.ledger import Ledger

MANUAL = """
    [[communiques]]
    id = "exec-briefing"
    to = ["exec"]
    channel = "manual"
    subject = "Brief the executive staff"
    instructions = "Call {{ recipient.name }} ({{ recipient.role }}, {{ recipient.phone }}) about {{ release.name }} {{ release.version }}."
"""


async def send(plan, only, **options):
    ledger = Ledger.open(plan.state_dir)
    summary = await SendEngine(plan, ledger, only=only, backoff_base=0.01, **options).run()
    return ledger, summary


async def test_manual_steps_await_confirmation_and_are_never_reissued(tmp_path):
    plan = channel_plan(tmp_path, MANUAL)
    ledger, summary = await send(plan, ["exec-briefing"])
    records = ledger.deliveries("4.2.0", "exec-briefing")
    assert [r.state for r in records] == [L.AWAITING, L.AWAITING]
    assert records[0].state_label == "awaiting confirmation"
    assert records[0].reply.startswith("to do by hand: Dana Chief (CEO), +1 555 0100")
    assert "Call Dana Chief (CEO, +1 555 0100) about Orion 4.2.0." in records[0].reply
    assert records[0].attempts == 0, "nothing was sent, so nothing was ever `sending`"
    assert summary.exit_code == 0, "a send has done all it can for a task handed to a person"

    _, again = await send(plan, ["exec-briefing"])
    assert [r.state for r in ledger.deliveries("4.2.0", "exec-briefing")] == [L.AWAITING, L.AWAITING]
    assert again.sent_this_run == 0


async def test_confirm_manual_records_who_when_and_the_note(tmp_path):
    plan = channel_plan(tmp_path, MANUAL)
    ledger, _ = await send(plan, ["exec-briefing"])
    dana, sam = ledger.deliveries("4.2.0", "exec-briefing")

    record = confirm_manual(ledger, dana.id, "alice", "  spoke to Dana\nat 17:40 ")
    assert record.state == L.MARKED_DELIVERED
    assert record.reply == "marked delivered by alice: spoke to Dana at 17:40"
    [receipt] = ledger.receipts(dana.id)
    assert receipt["kind"] == "manual" and receipt["action"] == "done"
    assert receipt["status"] == "alice" and receipt["diagnostic"] == "spoke to Dana at 17:40"
    assert receipt["at"] >= dana.updated

    # Without a name, the login is recorded.
    assert confirm_manual(ledger, sam.id).reply == f"marked delivered by {getpass.getuser()}"
    assert ledger.receipts(sam.id)[0]["diagnostic"] is None

    with pytest.raises(ManualError, match="already confirmed"):
        confirm_manual(ledger, dana.id, "bob")
    with pytest.raises(ManualError, match="no delivery"):
        confirm_manual(ledger, "nope", "bob")
    assert len(ledger.receipts(dana.id)) == 1


async def test_a_step_can_be_ticked_before_the_engine_ran(tmp_path):
    plan = channel_plan(tmp_path, MANUAL)
    ledger = Ledger.open(plan.state_dir)
    ledger.ensure_deliveries("4.2.0", [L.DeliveryIntent("exec-briefing", "dana@example.com", "Dana Chief", "exec",
                                                        "manual")], domain="example.com")
    [queued] = ledger.deliveries("4.2.0")
    assert confirm_manual(ledger, queued.id, "alice", "told her in the lift").state == L.MARKED_DELIVERED
    await SendEngine(plan, ledger, only=["exec-briefing"]).run()
    states = {r.recipient_key: r.state for r in ledger.deliveries("4.2.0")}
    assert states["dana@example.com"] == L.MARKED_DELIVERED  # never turned back into a task


def test_only_manual_deliveries_are_confirmed_this_way(tmp_path):
    ledger = Ledger.open(tmp_path / "state")
    ledger.ensure_deliveries("4.2.0", [L.DeliveryIntent("news", "a@example.com", "A", "customers", "email")],
                             domain="example.com")
    [email] = ledger.deliveries("4.2.0")
    with pytest.raises(ManualError, match="goes by email"):
        confirm_manual(ledger, email.id, "alice")
    assert ledger.delivery(email.id).state == L.QUEUED


async def test_task_text_and_dry_run(tmp_path):
    plan = channel_plan(tmp_path, MANUAL)
    job = job_for(plan, "exec-briefing", member=1)
    task = task_for(job, default_render(plan))
    assert task.contact == "Sam Okafor (CTO), +1 555 0101"
    assert task.title == "Brief the executive staff"
    outbox = tmp_path / "outbox"
    text = (await rehearse(ManualChannel(plan), job, outbox)).read_text()
    assert text == (outbox / "exec-briefing" / f"{job.delivery_id}.txt").read_text()
    assert "Person: Sam Okafor (CTO), +1 555 0101" in text and "Call Sam Okafor (CTO, +1 555 0101)" in text


def test_engine_dry_run_writes_every_channel_to_the_outbox(tmp_path, receiver):
    plan = channel_plan(tmp_path, MANUAL + f"""
    [[communiques]]
    id = "eng-chat"
    to = ["engineering", "exec"]
    channel = "webhook"
    preset = "slack"
    url = "{receiver.url('/hook')}"
    body = "{{{{ release.name }}}} {{{{ release.version }}}} is live"

    [[communiques]]
    id = "release-page"
    to = ["engineering"]
    channel = "publish"
    path = "www/{{{{ release.version }}}}.html"
    body = "# Orion"
    """)
    ledger = Ledger.open(plan.state_dir)
    result = dry_run(plan, ledger)
    outbox = plan.state_dir / "outbox"
    assert result.failures == ()
    assert len(list((outbox / "exec-briefing").glob("*.txt"))) == 2
    [post] = list((outbox / "eng-chat").glob("*.json"))  # one post for two groups, not one per person
    assert json.loads(post.read_text())["body"] == {"text": "Orion 4.2.0 is live"}
    assert len(list((outbox / "release-page").glob("*.html"))) == 1
    assert receiver.requests == [] and not (tmp_path / "www").exists()
    assert ledger.deliveries("4.2.0") == []


def test_a_webhook_post_killed_before_its_outcome_is_in_doubt_and_never_reposted(tmp_path, receiver):
    """The child process posts, the receiver holds the request, the child is killed before the
    answer: the restarted engine shows the delivery in doubt and does not post again; only an
    explicit resend does, with the same Idempotency-Key."""
    receiver.script("/hook", hang(30))
    receiver.answer("/hook", Reply(200, "ok"))
    plan_dir = tmp_path / "plan"
    plan = channel_plan(plan_dir, f"""
    [[communiques]]
    id = "eng-chat"
    to = ["engineering"]
    channel = "webhook"
    preset = "slack"
    url = "{receiver.url('/hook')}"
    body = "Orion is live"
    """)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import asyncio
        from relcomm_tui.delivery.engine import SendEngine
        from relcomm_tui.store.ledger import Ledger
        from relcomm_tui.plan.loader import load_plan
        plan = load_plan({str(plan_dir / "plan.toml")!r})
        asyncio.run(SendEngine(plan, Ledger.open(plan.state_dir)).run())
    """)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        [first] = receiver.wait_for(1, "/hook", timeout=30)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    ledger = Ledger.open(plan.state_dir)  # no live sender: `sending` becomes in doubt
    [record] = ledger.deliveries("4.2.0")
    assert record.state == L.IN_DOUBT
    # The key is the delivery's random id, stored in the ledger; never the computable internal id.
    assert first.headers["idempotency-key"] == record.envelope_id != record.id

    import asyncio

    summary = asyncio.run(SendEngine(plan, ledger, backoff_base=0.01).run())
    assert ledger.delivery(record.id).state == L.IN_DOUBT
    assert len(receiver.requests_for("/hook")) == 1, "an in-doubt post is never re-posted silently"
    assert summary.exit_code == 1

    asyncio.run(SendEngine(plan, ledger, resend_in_doubt=True, backoff_base=0.01).run())
    again = receiver.requests_for("/hook")
    assert len(again) == 2 and again[1].headers["idempotency-key"] == record.envelope_id
    assert ledger.delivery(record.id).state == L.ACCEPTED
