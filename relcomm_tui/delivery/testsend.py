"""The test send: one communique to the engineer alone, "[TEST] " before its subject.

Outside the deliveries: rendered for a real member of the audience (so the personalisation
shows) but addressed to `[sender] test_to`, through the email channel with one connection. Its
intent is `Intent.unrecorded()`: no delivery row, so nothing can be in doubt; the run is logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Callable

from ..channels import ChannelStopped, DeliveryJob, Intent
from ..channels.email import EmailChannel, default_render
from ..plan.model import Plan, Recipient
from ..store.ledger import Ledger, new_envelope_id, new_message_id
from .events import SendError, SendStopped
from .jobs import sender_domain
from .outbox import refuse_changed_files


@dataclass(frozen=True)
class SendTestResult:
    to: str
    subject: str
    reply: str
    message_id: str


async def send_test_message(plan: Plan, ledger: Ledger, *, communique_id: str | None = None, to: str | None = None,
                    password: str | None = None, render: Callable[[DeliveryJob], object] | None = None,
                    who: str | None = None) -> SendTestResult:
    """Send one communique to the engineer alone, "[TEST] " before the subject, outside the deliveries."""
    refuse_changed_files(plan)
    address = to or plan.sender.test_to
    if not address:
        raise SendError("no address for a test send", "set [sender] test_to in the plan, or give the address")
    emails = [c for c in plan.communiques if c.channel == "email"]
    communique = plan.communique(communique_id) if communique_id else (emails[0] if emails else None)
    if communique is None or communique.channel != "email":
        raise SendError(f"no email communique {communique_id or ''} to test-send".replace("  ", " "),
                        "name an email communique of the plan")
    audience = plan.audience(communique)
    group, sample = audience[0] if audience else (None, None)
    build = render or default_render(plan)
    ident = "test-" + secrets.token_hex(6)
    message_id = new_message_id(sender_domain(plan))

    subjects: list[str] = []

    def test_message(job: DeliveryJob):
        # Rendered for a real member of the audience, so the personalisation shows.
        message = build(dataclasses.replace(job, recipient=sample))
        subject = "[TEST] " + str(message["Subject"] or "")
        subjects.append(subject)
        del message["Subject"]
        message["Subject"] = subject
        del message["To"]
        message["To"] = address
        return message

    test_recipient = Recipient(name="", email=parseaddr(address)[1], group_id=group.id if group else "",
                               location=communique.location)
    job = DeliveryJob(ident, communique, group, test_recipient, message_id, new_envelope_id())
    run_id = await asyncio.to_thread(ledger.start_run, "test", plan.release.version, plan.digest, who)
    channel = EmailChannel(plan, password=password, render=test_message, concurrency=1)
    try:
        await channel.open()
        outcome = await channel.deliver(job, Intent.unrecorded())  # outside the deliveries: nothing to be in doubt about
    except ChannelStopped as error:
        await asyncio.to_thread(ledger.finish_run, run_id, f"stopped: {error.message}")
        raise SendStopped(error.message, error.hint) from None
    finally:
        await channel.close()
    words = " ".join(p for p in (outcome.reply, outcome.detail) if p)
    await asyncio.to_thread(ledger.finish_run, run_id, f"test send to {address}: {outcome.state} {words}")
    if outcome.state != "accepted":
        raise SendError(f"the test message to {address} was not accepted: {words}",
                        "fix the problem and test again; nothing was sent to the stakeholders")
    return SendTestResult(address, subjects[-1] if subjects else "", outcome.reply, message_id)
