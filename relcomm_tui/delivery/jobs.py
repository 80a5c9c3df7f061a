"""Which deliveries a send makes, in what order, at what pace, and when each is tried again.

* `select_communiques` and `delivery_audience`: what a send covers, and one delivery per person
  (email, manual) or per post (webhook, publish, pager);
* `prepare_deliveries` and `pending_jobs`: the ledger's rows for them, created once, then the
  queued and deferred ones as jobs carrying the ledger's ids;
* `Pace`: one channel's in-flight limit and rate, as the channel declared them;
* `RetryQueue`: deliveries waiting for their next try within this run.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Iterator, Mapping, Sequence

from ..channels import ChannelSettings, DeliveryJob, RetryPolicy
from ..channels.base import parse_rate as _parse_rate
from ..common.errors import UserError
from ..plan.files import FileWatch
from ..plan.model import Communique, Plan, Recipient, StakeholderGroup
from ..store.ledger import DEFERRED, IN_DOUBT, QUEUED, REJECTED, STATES, DeliveryIntent, Ledger
from .events import SendError


def parse_rate(text: str | None) -> float | None:
    """Messages per second from "120/min", "2/s", "1000/hour"; None for no limit."""
    try:
        return _parse_rate(text)
    except UserError as error:
        raise SendError(error.message, error.hint) from None


def sender_domain(plan: Plan) -> str:
    address = parseaddr(plan.sender.from_)[1]
    return address.rpartition("@")[2] or "relcomm.invalid"


def delivery_audience(plan: Plan, communique: Communique) -> list[tuple[StakeholderGroup, Recipient]]:
    """One delivery each: every person for email and manual steps; one post for a communique
    that goes to a channel (webhook, publish, pager), named after the groups it reaches."""
    if communique.per_recipient:
        return plan.audience(communique)
    groups = [g for g in (plan.group(ident) for ident in communique.to) if g is not None]
    if not groups:
        return []
    post = Recipient(name=", ".join(g.name for g in groups), email=None, group_id=groups[0].id,
                     location=communique.location)
    return [(groups[0], post)]


def select_communiques(plan: Plan, only: Sequence[str] | None) -> list[Communique]:
    """The communiques a send covers: all but follow-ups, or exactly those named by `only`."""
    if only:
        chosen = []
        for ident in only:
            communique = plan.communique(ident)
            if communique is None:
                known = ", ".join(c.id for c in plan.communiques)
                raise SendError(f"no communique {ident!r} in the plan", f"the plan has: {known}")
            if communique not in chosen:
                chosen.append(communique)
        return chosen
    return [c for c in plan.communiques if c.spec.reminder_for is None]


def channel_options(name: str, password: str | None, render: object) -> dict[str, object]:
    """What the engine gives every channel's factory: the login secret (channels without one
    ignore it) and the renderer: one for all channels, or one per channel name."""
    chosen = render.get(name) if isinstance(render, Mapping) else render
    options: dict[str, object] = {"password": password}
    if chosen is not None:
        options["render"] = chosen
    return options


@dataclass
class Target:
    """A communique of this send and its audience, by recipient key."""

    communique: Communique
    people: dict[str, tuple[StakeholderGroup, Recipient]]

    @classmethod
    def of(cls, plan: Plan, communique: Communique) -> "Target":
        return cls(communique, {r.key: (g, r) for g, r in delivery_audience(plan, communique)})


def prepare_deliveries(ledger: Ledger, plan: Plan, targets: list[Target], person_keys: Mapping[str, str],
                       again: Sequence[str] = ()) -> None:
    """A `queued` row for each delivery not yet known (its ids made once, here); the `again`
    states (in doubt, rejected) put back in the queue when the engineer asked. Blocking: run in a thread."""
    release, domain = plan.release.version, sender_domain(plan)
    for target in targets:
        channel = target.communique.channel
        intents = (DeliveryIntent(target.communique.id, key, recipient.display, group.id, channel, person_keys.get(key))
                   for key, (group, recipient) in target.people.items())
        ledger.ensure_deliveries(release, intents, domain=domain)
        if again:
            ledger.requeue([row[0] for row in ledger.pending(release, target.communique.id, list(again))])


def requeued_states(resend_in_doubt: bool, retry_failed: bool) -> tuple[str, ...]:
    return (IN_DOUBT,) * resend_in_doubt + (REJECTED,) * retry_failed


def pending_jobs(ledger: Ledger, plan: Plan, targets: list[Target], files: FileWatch,
                 states: dict[str, str]) -> Iterator[DeliveryJob]:
    """The queued and deferred deliveries, communique by communique, as jobs with the ledger's ids."""
    release = plan.release.version
    for target in targets:
        files.full_soon()  # every file is read again before a communique's first message
        rows = ledger.pending(release, target.communique.id, (QUEUED, DEFERRED))
        for ident, key, message_id, _attempts, state, envelope_id in rows:
            group, recipient = target.people.get(key, (None, None))
            if recipient is None:
                continue  # no longer in the plan's audience: leave the row as history
            states.setdefault(ident, state)
            # The ledger's random ids, made once: a resend carries the same ones (issue 10.7).
            yield DeliveryJob(ident, target.communique, group, recipient, message_id, envelope_id or ident)


def ledger_counts(ledger: Ledger, plan: Plan, targets: list[Target]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """The ledger's counts by state, in all and per communique of the send. Blocking: run in a thread."""
    per = {t.communique.id: ledger.counts(plan.release.version, t.communique.id) for t in targets}
    return {state: sum(p[state] for p in per.values()) for state in STATES}, per


@dataclass
class Pace:
    """One channel's pace in this run, as the channel declared it: deliveries at once, rate, retries."""

    settings: ChannelSettings
    retry: RetryPolicy
    slots: asyncio.Semaphore = field(init=False)
    next_slot: float = 0.0

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(max(1, self.settings.in_flight))

    async def wait_for_slot(self, cancel: asyncio.Event) -> bool:
        """Honour the channel's `rate`; False when cancelled meanwhile."""
        rate = self.settings.rate
        if rate is None:
            return not cancel.is_set()
        now = time.monotonic()
        start = max(now, self.next_slot)
        self.next_slot = start + 1.0 / rate
        if start > now:
            try:
                await asyncio.wait_for(cancel.wait(), start - now)
                return False
            except asyncio.TimeoutError:
                pass
        return not cancel.is_set()


class RetryQueue:
    """Deliveries waiting for their next try in this run; `changed` wakes the idle workers."""

    def __init__(self) -> None:
        self._due: asyncio.Queue[DeliveryJob] = asyncio.Queue()
        self.waiting: dict[str, tuple[DeliveryJob, str]] = {}  # delivery id -> (job, why it waits)
        self.changed = asyncio.Event()

    def later(self, job: DeliveryJob, delay: float, words: str) -> None:
        self.waiting[job.delivery_id] = (job, words)
        asyncio.get_running_loop().call_later(delay, self._come_due, job)

    def hold(self, job: DeliveryJob, why: str) -> None:
        """A job taken but not started (the run is ending): it waits, for the next run."""
        self.waiting.setdefault(job.delivery_id, (job, why))

    def taken(self, job: DeliveryJob) -> None:
        if self.waiting.pop(job.delivery_id, None) is not None:
            self.changed.set()

    def _come_due(self, job: DeliveryJob) -> None:
        self._due.put_nowait(job)
        self.changed.set()

    def next_due(self) -> DeliveryJob | None:
        return None if self._due.empty() else self._due.get_nowait()

    def drain(self) -> list[tuple[DeliveryJob, str]]:
        waiting, self.waiting = self.waiting, {}
        return list(waiting.values())
