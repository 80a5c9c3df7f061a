"""Fixtures for tests that need a real HTTP receiver on loopback, and a small plan with other channels.

    from http_receiver import receiver, Reply, hang, channel_plan, job_for, fake_render  # noqa: F401

The server itself is `relcomm_tui.demo.webhook_receiver.WebhookReceiver` (the demo uses it too).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from relcomm_tui.channels import DeliveryJob
from relcomm_tui.compose import Rendered
from relcomm_tui.store.ledger import delivery_id, new_envelope_id
from relcomm_tui.plan.loader import load_plan
from relcomm_tui.demo.webhook_receiver import Reply, WebhookReceiver, hang, ntfy_reply, pagerduty_reply  # noqa: F401


@pytest.fixture
def receiver():
    with WebhookReceiver() as server:
        yield server


PLAN_HEAD = """\
format = 1

[release]
name = "Orion"
version = "4.2.0"
date = 2026-11-26

[sender]
from = "Release Engineering <release@example.com>"

[[stakeholders]]
id = "engineering"
name = "Engineering"
members = ["Engineering list <eng@example.com>"]

[[stakeholders]]
id = "exec"
name = "Executive staff"
members = [
  { name = "Dana Chief", email = "dana@example.com", phone = "+1 555 0100", role = "CEO" },
  { name = "Sam Okafor", phone = "+1 555 0101", role = "CTO" },
]
"""


def channel_plan(folder: Path, communiques: str):
    """Load a plan made of PLAN_HEAD and the given [[communiques]] tables."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "plan.toml"
    path.write_text(PLAN_HEAD + "\n" + textwrap.dedent(communiques), encoding="utf-8")
    return load_plan(path)


def job_for(plan, communique_id: str, member: int = 0) -> DeliveryJob:
    """The job the engine would hand a channel for one member of the communique's audience."""
    communique = plan.communique(communique_id)
    group, recipient = plan.audience(communique)[member]
    ident = delivery_id(plan.release.version, communique.id, recipient.key)
    envelope = new_envelope_id()  # random, as the ledger makes it: what goes out is never computable
    return DeliveryJob(ident, communique, group, recipient, f"<{envelope}@example.com>", envelope)


def fake_render(subject: str = "Orion 4.2.0 is live", text: str = "**Orion 4.2.0** is live. [Notes](https://x.example/4.2.0)",
                html: str | None = None):
    """A stand-in for compose.render at the channel layer: the channel's job is what happens after."""

    def render(job: DeliveryJob) -> Rendered:
        return Rendered(job.communique.id, job.communique.channel, subject, text, html)

    return render


class IntentLog:
    """Stands in for the engine's commit_intent and remembers that it was awaited before the post."""

    def __init__(self, receiver: WebhookReceiver | None = None) -> None:
        self.calls = 0
        self.requests_before: list[int] = []
        self.receiver = receiver

    def attach(self, job: DeliveryJob) -> DeliveryJob:
        async def commit_intent() -> None:
            self.calls += 1
            self.requests_before.append(len(self.receiver.requests) if self.receiver else 0)

        job.commit_intent = commit_intent
        return job
