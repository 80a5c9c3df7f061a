"""Exactly-once for the channels that are not email: webhook and publish commit the delivery's
intent (the ledger's `sending` row) before their side effect (the POST, the page written, the
PUT), and a process killed between the two leaves the delivery `in doubt`: never silently sent
again by a plain rerun, sent once more only when the engineer asks (resend in doubt).

The kill is real: the sender runs in a child process whose ledger SIGKILLs it the moment the
`sending` row is durable, so nothing after the commit can run. Were the side effect done first,
the receiver (or the folder) would have it; it has nothing.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from http_receiver import IntentLog, channel_plan, fake_render, job_for, receiver  # noqa: F401
from relcomm_tui.channels.publish import PublishChannel
from relcomm_tui.channels.webhook import WebhookChannel
from relcomm_tui.delivery.engine import SendEngine
from relcomm_tui.store import ledger as L
from relcomm_tui.store.ledger import Ledger
from relcomm_tui.transport.http import HttpTimeouts

FAST = HttpTimeouts(connect=0.5, total=2)

# The child: a real engine run whose ledger dies (SIGKILL) right after the first `sending` commit.
CHILD = """
import asyncio, os, signal, sys
from relcomm_tui.delivery.engine import SendEngine
from relcomm_tui.plan.loader import load_plan
from relcomm_tui.store import ledger as L
from relcomm_tui.store.ledger import Ledger

apply = Ledger.apply

def apply_then_die(self, works):
    done = apply(self, works)
    if any(r.state == L.SENDING for r in self.deliveries("4.2.0")):
        os.kill(os.getpid(), signal.SIGKILL)  # the intent is durable; the side effect never starts
    return done

Ledger.apply = apply_then_die
plan = load_plan(sys.argv[1])
asyncio.run(SendEngine(plan, Ledger.open(plan.state_dir)).run())
"""


def killed_after_intent(plan_file: Path) -> None:
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), str(plan_file)],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr


def webhook_plan(folder: Path, receiver) -> Path:
    channel_plan(folder, f"""
        [[communiques]]
        id = "eng-chat"
        to = ["engineering"]
        channel = "webhook"
        preset = "slack"
        url = "{receiver.url('/hook')}"
        body = "Orion is live"
    """)
    return folder / "plan.toml"


def publish_plan(folder: Path, receiver) -> Path:
    channel_plan(folder, f"""
        [[communiques]]
        id = "release-page"
        to = ["engineering"]
        channel = "publish"
        path = "www/{{{{ release.version }}}}.html"
        put_url = "{receiver.url('/dav/4.2.0.html')}"
        body = "# Orion 4.2.0"
    """)
    return folder / "plan.toml"


async def test_webhook_commits_the_intent_before_the_request(tmp_path, receiver):
    plan = channel_plan(tmp_path, f"""
        [[communiques]]
        id = "eng-chat"
        to = ["engineering"]
        channel = "webhook"
        url = "{receiver.url('/hook')}"
        body = "x"
    """)
    channel = WebhookChannel(plan, render=fake_render(), timeouts=FAST)
    log = IntentLog(receiver)
    await channel.open()
    try:
        outcome = await channel.deliver(job_for(plan, "eng-chat"), log.intent())
    finally:
        await channel.close()
    assert outcome.state == "accepted"
    assert log.requests_before == [0] and len(receiver.requests) == 1  # committed once, before the only POST


async def test_publish_commits_the_intent_before_the_page_is_written_or_put(tmp_path, receiver):
    plan = channel_plan(tmp_path, f"""
        [[communiques]]
        id = "release-page"
        to = ["engineering"]
        channel = "publish"
        path = "www/{{{{ release.version }}}}.html"
        put_url = "{receiver.url('/dav/4.2.0.html')}"
        body = "# Orion"
    """)
    page = tmp_path / "www" / "4.2.0.html"
    log = IntentLog(receiver, observe=page.exists)
    channel = PublishChannel(plan, render=fake_render(html="<p>x</p>"), timeouts=FAST)
    await channel.open()
    try:
        outcome = await channel.deliver(job_for(plan, "release-page"), log.intent())
    finally:
        await channel.close()
    assert outcome.state == "accepted", outcome
    assert log.observed == [False] and log.requests_before == [0]  # no page, no PUT when the intent was committed
    assert page.exists() and len(receiver.requests_for("/dav/4.2.0.html", "PUT")) == 1


async def test_a_refused_delivery_never_commits_its_intent(tmp_path, receiver):
    """A communique that cannot go out as written is refused before anything: no `sending` row,
    so no delivery can be in doubt for it."""
    plan = channel_plan(tmp_path, """
        [[communiques]]
        id = "release-page"
        to = ["engineering"]
        channel = "publish"
        body = "# Orion"
    """)
    log = IntentLog(receiver)
    outcome = await PublishChannel(plan, render=fake_render()).deliver(job_for(plan, "release-page"), log.intent())
    assert outcome.state == "rejected" and "neither `path` nor `put_url`" in outcome.detail
    assert log.calls == 0


@pytest.mark.parametrize("kind", ["webhook", "publish"])
def test_killed_between_intent_and_side_effect_is_in_doubt_and_never_silently_resent(tmp_path, receiver, kind):
    plan_file = (webhook_plan if kind == "webhook" else publish_plan)(tmp_path / "plan", receiver)
    page = tmp_path / "plan" / "www" / "4.2.0.html"
    killed_after_intent(plan_file)
    assert receiver.requests == [] and not page.exists()  # the intent came first: nothing went out

    from relcomm_tui.plan.loader import load_plan

    plan = load_plan(plan_file)
    ledger = Ledger.open(plan.state_dir)  # no live sender: its `sending` row becomes in doubt
    [record] = ledger.deliveries("4.2.0")
    assert record.state == L.IN_DOUBT

    summary = asyncio.run(SendEngine(plan, ledger, backoff_base=0.01).run())
    assert summary.exit_code == 1 and ledger.delivery(record.id).state == L.IN_DOUBT
    assert receiver.requests == [] and not page.exists(), "a plain rerun never sends an in-doubt delivery"

    asyncio.run(SendEngine(plan, ledger, resend_in_doubt=True, backoff_base=0.01).run())
    assert ledger.delivery(record.id).state == L.ACCEPTED
    assert len(receiver.requests) == 1  # sent once, on request
    assert page.exists() == (kind == "publish")
    ledger.close()

