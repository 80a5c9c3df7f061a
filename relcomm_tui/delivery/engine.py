"""The send engine: every delivery of the plan's communiques, exactly once or loudly in doubt.

Headless: it reports progress as small frozen events (a callback and/or `events()`), and the
send screen and `relcomm send` render them. One engine run holds the send lock beside the
ledger, turns deliveries a dead process left in `sending` into `in doubt`, creates a `queued`
delivery for each (communique, recipient) not yet known, and works through the queue with
`concurrency` workers and at most `rate` messages per time.

The exactly-once rule lives in two awaits per message:
* before the message's text (the bytes that can deliver it): the `sending` row (Message-ID
  already stored) is committed; a message still waiting for a connection has none, so after a
  crash only messages that were on a live connection can be in doubt;
* right after the reply: the outcome is committed.
Writes from all workers are group-committed (one transaction, one fsync, for whatever the
workers asked for meanwhile), so durability costs little and nothing is claimed early: at
most WORKERS_PER_CONNECTION x `concurrency` deliveries can ever be in doubt after a crash.

Transient failures (4xx, a connection lost before the message was complete) are retried
with exponential backoff and jitter up to `max_attempts`, then left `deferred` (a later run
tries again). A receiver's HTTP Retry-After replaces the backoff when longer, up to
`channels.RETRY_AFTER_MAX` (60 s) per retry; a longer ask is not waited for: the delivery is
deferred at once for the next run. A connection lost after the message was complete is `in doubt` and is never
retried by itself. Failures that would fail every delivery alike (auth, TLS, unreachable
server, sender refused) stop the run with one `RunStopped` and a `SendStopped` exception.

Messages are rendered from the loaded plan's snapshot of its files, never from the disk. A file
that changes on disk after the plan was loaded (and checked) stops the run the same way: the
engine compares the disk with the snapshot before the run, before each message (lstat: cheap),
and re-reads every file at the start of each communique and every few seconds (`plan.files.FileWatch`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import mailbox
import random
import re
import secrets
import time
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import AsyncIterator, Callable, Iterator, Mapping, Sequence

from ..common.errors import UserError
from ..channels import RETRY_AFTER_MAX, Channel, ChannelStopped, DeliveryJob, DeliveryWithdrawn, Outcome, channel_factory
from ..store.ledger import (
    ACCEPTED, AWAITING, DEFERRED, FINAL_STATES, IN_DOUBT, MARKED_DELIVERED, QUEUED, REJECTED, SENDING, STATES,
    DeliveryIntent, Ledger, LedgerError, LedgerStorageError, new_envelope_id, new_message_id,
)
from ..store.lock import SendLock, SendLockedError
from ..plan.files import FileChange, FileWatch, changes
from ..plan.model import Communique, Plan, Recipient, StakeholderGroup

# Engine workers per SMTP connection: one message on the wire, one queued to chain behind it
# (pipelining), one being rendered. Email commits `sending` only for the message whose text is
# next on a live connection (and the one chained behind it), so after a crash at most about
# 2 x concurrency deliveries are in doubt, each with its envelope at the server.
WORKERS_PER_CONNECTION = 3

# -- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryChanged:
    delivery_id: str
    communique_id: str
    recipient: str          # display form, "Name <addr>"
    state: str              # a ledger state
    detail: str = ""        # the server's words or our explanation
    attempted: bool = False  # this outcome counts an attempt that never showed `sending` (refused at RCPT)


@dataclass(frozen=True)
class Progress:
    counts: Mapping[str, int]                         # state -> deliveries, for this run's communiques
    per_communique: Mapping[str, Mapping[str, int]]   # communique id -> state -> deliveries
    total: int
    done: int                                          # accepted, marked delivered, rejected, in doubt
    rate: float                                        # messages finished per second, this run
    paused: bool = False

    @property
    def eta_seconds(self) -> float | None:
        left = self.total - self.done
        return left / self.rate if self.rate > 0 and left > 0 else (0.0 if left <= 0 else None)


@dataclass(frozen=True)
class CommuniqueSkipped:
    communique_id: str
    channel: str
    reason: str


@dataclass(frozen=True)
class RunStopped:
    reason: str
    hint: str = ""


@dataclass(frozen=True)
class RunSummary:
    run_id: int | None
    counts: Mapping[str, int]
    per_communique: Mapping[str, Mapping[str, int]]
    skipped: tuple[CommuniqueSkipped, ...] = ()
    stopped: str | None = None
    cancelled: bool = False
    elapsed: float = 0.0
    sent_this_run: int = 0

    @property
    def exit_code(self) -> int:
        """0 when every delivery is accepted (or marked delivered); 1 otherwise."""
        if self.stopped or self.cancelled:
            return 1
        # A manual step handed to its person (awaiting) is all a send can do for it.
        unfinished = sum(n for state, n in self.counts.items() if state not in FINAL_STATES and state != AWAITING)
        return 0 if unfinished == 0 else 1


@dataclass(frozen=True)
class RunFinished:
    summary: RunSummary


Event = DeliveryChanged | Progress | CommuniqueSkipped | RunStopped | RunFinished


class SendError(UserError):
    """Sending cannot start or go on; `hint` says what to do. Never a traceback for the user."""


class SendStopped(SendError):
    """The run stopped at once (auth, TLS, unreachable server...); see `summary`."""

    def __init__(self, message: str, hint: str = "", summary: RunSummary | None = None) -> None:
        super().__init__(message, hint)
        self.summary = summary


# -- helpers -------------------------------------------------------------------------------


def parse_rate(text: str | None) -> float | None:
    """Messages per second from "120/min", "2/s", "1000/hour"; None for no limit."""
    if not text:
        return None
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*", text)
    if not found:
        raise SendError(f"rate {text!r} is not understood", 'write it like "120/min", "2/s" or "1000/hour"')
    amount = float(found.group(1))
    per = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}[found.group(2)]
    return amount / per if amount > 0 else None


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


class _Committer:
    """Group commit: writes asked for while a commit runs go together into the next one."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._pending: list[tuple[list, asyncio.Future]] = []
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())
        self.commits = 0

    async def submit(self, works: list) -> None:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((works, future))
        self._wakeup.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                # In a thread: an fsync must not stall the event loop (and the other connections).
                await asyncio.to_thread(self.ledger.apply, [w for works, _ in batch for w in works])
                self.commits += 1
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
            except Exception:
                # One bad write must not sink the others: redo them one by one.
                for works, future in batch:
                    try:
                        await asyncio.to_thread(self.ledger.apply, works)
                        self.commits += 1
                        if not future.done():
                            future.set_result(None)
                    except Exception as error:
                        if not future.done():
                            future.set_exception(error)

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


@dataclass
class _Target:
    communique: Communique
    people: dict[str, tuple[StakeholderGroup, Recipient]]


# -- the engine ----------------------------------------------------------------------------


class SendEngine:
    """One send of a plan. `await run()` once; `pause()`, `resume()`, `cancel()` from anywhere in the loop."""

    def __init__(
        self,
        plan: Plan,
        ledger: Ledger,
        *,
        only: Sequence[str] | None = None,
        password: str | None = None,
        resend_in_doubt: bool = False,
        retry_failed: bool = False,
        on_event: Callable[[Event], None] | None = None,
        who: str | None = None,
        host: str | None = None,
        mode: str = "send",
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        retry_after_max: float = RETRY_AFTER_MAX,
        channels: Mapping[str, Callable[..., Channel]] | None = None,
        progress_interval: float = 0.1,
        render: Callable[[DeliveryJob], object] | None = None,
        person_keys: Mapping[str, str] | None = None,
    ) -> None:
        self.plan = plan
        # recipient key -> the plan member it stands for (a follow-up to a corrected address):
        # receipts count people, and the corrected address's delivery is still that person's.
        self.person_keys = {k.strip().lower(): v.strip().lower() for k, v in (person_keys or {}).items()}
        self.ledger = ledger
        self.only = list(only or [])
        self.password = password
        self.resend_in_doubt = resend_in_doubt
        self.retry_failed = retry_failed
        self._on_event = on_event
        self.who, self.host = who, host
        self.mode = mode
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self._channel_overrides = dict(channels or {})
        self.progress_interval = progress_interval
        self._render = render  # email messages; default: the compose layer
        self.rate = parse_rate(plan.smtp.rate)
        self.max_attempts = plan.smtp.max_attempts
        self.concurrency = plan.smtp.concurrency
        self.state_dir = ledger.path.parent
        self._subscribers: list[asyncio.Queue] = []
        self._running = asyncio.Event()
        self._running.set()
        self._cancel = asyncio.Event()
        self._changed = asyncio.Event()  # a retry came due or was taken: waiting workers look again
        self._stopped: tuple[str, str] | None = None
        self._counts: dict[str, int] = {}
        self._per_communique: dict[str, dict[str, int]] = {}
        self._states: dict[str, str] = {}
        self._finished_this_run = 0
        self._started = 0.0
        self._last_progress = 0.0
        self._next_slot = 0.0
        self._retry_queue: asyncio.Queue[DeliveryJob] = asyncio.Queue()
        self._retry_waiting: dict[str, tuple[DeliveryJob, str]] = {}
        self._channels: dict[str, Channel] = {}
        self.run_id: int | None = None
        self.channel_stats: dict[str, object] = {}
        self._files = FileWatch(plan)

    # -- control ---------------------------------------------------------------------

    def pause(self) -> None:
        """No new message starts until `resume()`; messages already talking to the server finish."""
        if self._running.is_set():
            self._running.clear()
            self._progress(force=True)

    def resume(self) -> None:
        if not self._running.is_set():
            self._running.set()
            self._progress(force=True)

    def cancel(self) -> None:
        """Stop starting messages; the run ends as soon as those in flight have their replies."""
        self._cancel.set()
        self._running.set()
        self._changed.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    # -- events ----------------------------------------------------------------------

    def events(self) -> AsyncIterator[Event]:
        """Every event of the run, ending after RunFinished. Subscribe before `run()`."""
        queue: asyncio.Queue = asyncio.Queue()
        self._subscribers.append(queue)

        async def stream() -> AsyncIterator[Event]:
            while True:
                event = await queue.get()
                yield event
                if isinstance(event, RunFinished):
                    return

        return stream()

    def _emit(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)
        for queue in self._subscribers:
            queue.put_nowait(event)

    def _set_state(self, job: DeliveryJob, state: str, detail: str = "", attempted: bool = False) -> None:
        before = self._states.get(job.delivery_id)
        per = self._per_communique.setdefault(job.communique.id, {s: 0 for s in STATES})
        if before is not None:
            self._counts[before] -= 1
            per[before] -= 1
        self._counts[state] = self._counts.get(state, 0) + 1
        per[state] += 1
        self._states[job.delivery_id] = state
        if state in (ACCEPTED, REJECTED, IN_DOUBT, AWAITING):
            self._finished_this_run += 1
        recipient = job.recipient.display if job.recipient else ""
        self._emit(DeliveryChanged(job.delivery_id, job.communique.id, recipient, state, detail, attempted))
        self._progress()

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < self.progress_interval:
            return
        self._last_progress = now
        elapsed = max(now - self._started, 1e-6)
        done = sum(self._counts.get(s, 0) for s in (ACCEPTED, MARKED_DELIVERED, REJECTED, IN_DOUBT, AWAITING))
        self._emit(Progress(
            counts=dict(self._counts), per_communique={k: dict(v) for k, v in self._per_communique.items()},
            total=sum(self._counts.values()), done=done, rate=self._finished_this_run / elapsed, paused=self.paused,
        ))

    # -- the run ---------------------------------------------------------------------

    async def run(self) -> RunSummary:
        lock = SendLock(self.state_dir)
        try:
            await lock.acquire_async()
        except SendLockedError as error:
            raise SendError(error.message, error.hint) from None
        except LedgerError as error:  # the lock is a link or not the user's (state.py)
            raise SendError(error.message, error.hint) from None
        try:
            return await self._run_locked()
        except LedgerError as error:
            # The ledger's file failed (full, read-only, locked) outside a delivery: say so plainly.
            raise SendError(error.message, error.hint) from None
        finally:
            lock.release()

    async def _run_locked(self) -> RunSummary:
        self._started = time.monotonic()
        release = self.plan.release.version
        ledger = self.ledger
        # We hold the lock: a `sending` row now can only be a dead process's.
        await asyncio.to_thread(ledger.recover_in_doubt)
        communiques = select_communiques(self.plan, self.only)
        skipped: list[CommuniqueSkipped] = []
        targets: list[_Target] = []
        for communique in communiques:
            factory = self._channel_overrides.get(communique.channel) or channel_factory(communique.channel)
            if factory is None:
                note = CommuniqueSkipped(communique.id, communique.channel,
                                         f"not sent: channel {communique.channel} not available yet")
                skipped.append(note)
                self._emit(note)
                continue
            audience = delivery_audience(self.plan, communique)
            targets.append(_Target(communique, {r.key: (g, r) for g, r in audience}))
        if self.mode == "send" and communiques and all(c.spec.reminder_for for c in communiques):
            self.mode = "follow-up"  # the audit record tells reminders from the first send
        self.run_id = await asyncio.to_thread(
            ledger.start_run, self.mode, release, self.plan.digest, self.who, self.host)
        domain = sender_domain(self.plan)

        def prepare() -> None:
            for target in targets:
                intents = (DeliveryIntent(target.communique.id, key, recipient.display, group.id, target.communique.channel,
                                          self.person_keys.get(key))
                           for key, (group, recipient) in target.people.items())
                ledger.ensure_deliveries(release, intents, domain=domain)
                again = []
                if self.resend_in_doubt:
                    again.append(IN_DOUBT)
                if self.retry_failed:
                    again.append(REJECTED)
                if again:
                    ledger.requeue([row[0] for row in ledger.pending(release, target.communique.id, again)])

        await asyncio.to_thread(prepare)
        for target in targets:
            per = ledger.counts(release, target.communique.id)
            self._per_communique[target.communique.id] = dict(per)
            for state, n in per.items():
                self._counts[state] = self._counts.get(state, 0) + n
        self._progress(force=True)

        committer = _Committer(ledger)
        self._committer = committer
        try:
            changed = await asyncio.to_thread(self._files.full)
            if changed is not None:
                self._stop_for_change(changed)
            else:
                await self._open_channels(targets)
            if self._stopped is None:
                jobs = self._jobs(targets)
                # More workers than connections: while some render and wait for the ledger, a
                # connection has its current message and the next one ready to chain. Each worker
                # holds at most one committed intent: that bounds the `sending` rows.
                workers = [asyncio.create_task(self._worker(jobs))
                           for _ in range(WORKERS_PER_CONNECTION * max(1, self.concurrency))]
                await asyncio.gather(*workers)
        finally:
            await self._close_channels()
            await self._settle_retries()
            await committer.close()
        summary = await self._summary(targets, skipped)
        outcome = "stopped: " + self._stopped[0] if self._stopped else ("cancelled" if self._cancel.is_set() else "finished")
        try:
            await asyncio.to_thread(ledger.finish_run, self.run_id, outcome)
        except LedgerError:
            if not self._stopped:
                raise
            # Stopped because the ledger cannot be written: the run stays unfinished in it.
        self._progress(force=True)
        if self._stopped:
            self._emit(RunStopped(*self._stopped))
        self._emit(RunFinished(summary))
        if self._stopped:
            raise SendStopped(self._stopped[0], self._stopped[1], summary)
        return summary

    async def _open_channels(self, targets: list[_Target]) -> None:
        for name in dict.fromkeys(t.communique.channel for t in targets):
            factory = self._channel_overrides.get(name) or channel_factory(name)
            assert factory is not None
            kwargs = {"password": self.password, "render": self._render} if name == "email" else {}
            channel = factory(self.plan, **kwargs)
            self._channels[name] = channel
            try:
                await channel.open()
            except ChannelStopped as error:
                self._stopped = (error.message, error.hint)
                return

    async def _close_channels(self) -> None:
        for name, channel in self._channels.items():
            self.channel_stats[name] = {"round_trips": getattr(channel, "round_trips", None)}
            try:
                await channel.close()
            except Exception:
                pass  # closing politely is best effort; every outcome is already recorded

    def _jobs(self, targets: list[_Target]) -> Iterator[DeliveryJob]:
        release = self.plan.release.version
        for target in targets:
            self._files.full_soon()  # every file is read again before a communique's first message
            rows = self.ledger.pending(release, target.communique.id, (QUEUED, DEFERRED))
            for ident, key, message_id, _attempts, state, envelope_id in rows:
                group, recipient = target.people.get(key, (None, None))
                if recipient is None:
                    continue  # no longer in the plan's audience: leave the row as history
                self._states.setdefault(ident, state)
                # The ledger's random ids, made once: a resend carries the same ones (issue 10.7).
                yield DeliveryJob(ident, target.communique, group, recipient, message_id, envelope_id or ident)

    async def _worker(self, jobs: Iterator[DeliveryJob]) -> None:
        while True:
            job = await self._next_job(jobs)
            if job is None:
                return
            if not await self._wait_for_slot():
                self._retry_waiting.setdefault(job.delivery_id, (job, "not started: the run was cancelled"))
                return
            if not await self._files_unchanged():
                self._retry_waiting.setdefault(job.delivery_id, (job, "not started: a file of the plan changed"))
                return
            await self._attempt(job)

    async def _files_unchanged(self) -> bool:
        """False (and the run stops) when a file of the plan no longer matches what was loaded."""
        watch = self._files
        # The full re-read runs in a thread: a members list on a slow disk must not stall the connections.
        changed = await asyncio.to_thread(watch.full) if watch.full_due() else watch.quick()
        if changed is None:
            return True
        self._stop_for_change(changed)
        return False

    def _stop_for_change(self, change: FileChange) -> None:
        if self._stopped is None:
            self._stopped = (change.message, change.hint)
        self.cancel()

    async def _next_job(self, jobs: Iterator[DeliveryJob]) -> DeliveryJob | None:
        while True:
            self._changed.clear()
            if self._cancel.is_set():
                return None
            if not self._running.is_set():
                await self._wait_running()
                continue
            if not self._retry_queue.empty():
                return self._retry_queue.get_nowait()
            job = next(jobs, None)
            if job is not None:
                return job
            if not self._retry_waiting:
                return None  # a job still in flight is retried by the worker that has it
            # Wait for a retry to come due, another worker to take it, or a cancel.
            await self._changed.wait()

    def _retry_due(self, job: DeliveryJob) -> None:
        self._retry_queue.put_nowait(job)
        self._changed.set()

    async def _wait_running(self) -> None:
        await self._running.wait()

    async def _wait_for_slot(self) -> bool:
        """Honour `rate`; False when cancelled meanwhile."""
        if self.rate is None:
            return not self._cancel.is_set()
        now = time.monotonic()
        start = max(now, self._next_slot)
        self._next_slot = start + 1.0 / self.rate
        if start > now:
            try:
                await asyncio.wait_for(self._cancel.wait(), start - now)
                return False
            except asyncio.TimeoutError:
                pass
        return not self._cancel.is_set()

    async def _attempt(self, job: DeliveryJob) -> None:
        committed = False
        if self._retry_waiting.pop(job.delivery_id, None) is not None:
            self._changed.set()

        async def commit_intent() -> None:
            nonlocal committed
            # The last moment before the message's text: a pause holds here, a cancel withdraws.
            if not self._running.is_set():
                await self._running.wait()
            if self._cancel.is_set():
                raise DeliveryWithdrawn(job.delivery_id)
            try:
                await self._committer.submit([Ledger.sending_work(job.delivery_id, self.run_id)])
            except asyncio.CancelledError:
                committed = True  # the channel no longer needs it, but the write is queued: it lands
                self._set_state(job, SENDING)  # and counts an attempt, so say so (the send screen counts these)
                raise
            committed = True
            self._set_state(job, SENDING)

        job.commit_intent = commit_intent
        channel = self._channels[job.communique.channel]
        try:
            outcome = await channel.deliver(job)
        except DeliveryWithdrawn:
            return  # still queued in the ledger; a later run sends it
        except ChannelStopped as error:
            if self._stopped is None:
                self._stopped = (error.message, error.hint)
            self.cancel()
            if committed:  # refused before any message text went out
                await self._record(job, DEFERRED, f"not sent: {error.message}")
            return
        except LedgerStorageError as error:
            # The `sending` row could not be written (disk full, read-only, locked): the text
            # never went out, and nothing more may go out until the ledger can record it.
            if self._stopped is None:
                self._stopped = (f"{error.message}; nothing more was sent", error.hint)
            self.cancel()
            return
        except LedgerError as error:
            # e.g. marked delivered meanwhile: the ledger refused the intent, nothing was sent.
            self._emit(DeliveryChanged(job.delivery_id, job.communique.id, job.recipient.display if job.recipient else "",
                                       self._states.get(job.delivery_id, QUEUED), error.message))
            return
        except Exception as error:  # a bug: be honest about what may have gone out, and stop
            if self._stopped is None:
                self._stopped = (f"internal error while sending: {type(error).__name__}: {error}",
                                 "please report this; the ledger says exactly where the send stands")
            self.cancel()
            if committed:
                await self._record(job, IN_DOUBT, f"internal error after the send started: {error}")
            return
        # An attempt that ended before its `sending` row (refused at RCPT, lost before the text)
        # still counts as an attempt.
        await self._handle(job, outcome, attempted=not committed)

    async def _record(self, job: DeliveryJob, state: str, detail: str, attempted: bool = False) -> None:
        try:
            await self._committer.submit([Ledger.outcome_work(job.delivery_id, state, detail, attempted)])
        except Exception as error:
            if self._stopped is None:
                message = getattr(error, "message", None) or f"cannot write the ledger: {error}"
                self._stopped = (f"{message}; the messages whose outcome could not be recorded will show as in doubt",
                                 getattr(error, "hint", None) or "check free disk space and the state folder")
            self.cancel()
            return
        self._set_state(job, state, detail, attempted)

    async def _handle(self, job: DeliveryJob, outcome: Outcome, attempted: bool = False) -> None:
        words = " ".join(p for p in (outcome.reply, outcome.detail) if p)
        if outcome.state == "accepted":
            await self._record(job, ACCEPTED, outcome.reply, attempted)
        elif outcome.state == "rejected":
            await self._record(job, REJECTED, words, attempted)
        elif outcome.state == "in_doubt":
            await self._record(job, IN_DOUBT, words, attempted)
        elif outcome.state == "awaiting":
            await self._record(job, AWAITING, words)  # a manual step: nothing was attempted yet
        else:
            if job.attempt >= self.max_attempts or self._cancel.is_set():
                await self._record(job, DEFERRED, f"gave up after {job.attempt} attempt(s): {words}", attempted)
                return
            delay = min(self.backoff_max, self.backoff_base * 2 ** (job.attempt - 1)) * random.uniform(0.5, 1.0)
            if outcome.retry_after is not None:  # the receiver said when (HTTP Retry-After)
                if outcome.retry_after > self.retry_after_max:
                    # Not waited for: a receiver cannot hold the run (400 digits once waited 4 minutes).
                    await self._record(job, DEFERRED, f"not retried in this run: {words}", attempted)
                    return
                delay = max(delay, outcome.retry_after)
            await self._record(job, DEFERRED, f"retrying in {delay:.1f} s (attempt {job.attempt} of "
                                              f"{self.max_attempts}): {words}", attempted)
            job.attempt += 1
            self._retry_waiting[job.delivery_id] = (job, words)
            asyncio.get_running_loop().call_later(delay, self._retry_due, job)

    async def _settle_retries(self) -> None:
        """Deliveries left waiting for a retry when the run ended say so (a later run retries them)."""
        waiting, self._retry_waiting = self._retry_waiting, {}
        for job, words in waiting.values():
            if self._states.get(job.delivery_id) == DEFERRED:
                await self._record(job, DEFERRED, f"not retried: the run ended ({words})")

    async def _summary(self, targets: list[_Target], skipped: list[CommuniqueSkipped]) -> RunSummary:
        release = self.plan.release.version

        def read() -> tuple[dict, dict]:
            per = {t.communique.id: self.ledger.counts(release, t.communique.id) for t in targets}
            total = {state: sum(p[state] for p in per.values()) for state in STATES}
            return total, per

        total, per = await asyncio.to_thread(read)
        return RunSummary(self.run_id, total, per, tuple(skipped),
                          self._stopped[0] if self._stopped else None, self._cancel.is_set() and not self._stopped,
                          time.monotonic() - self._started, self._finished_this_run)


# -- dry run and test send -----------------------------------------------------------------


@dataclass(frozen=True)
class DryRunResult:
    outbox: Path
    written: int
    skipped: tuple[CommuniqueSkipped, ...]
    failures: tuple[str, ...] = ()


def _refuse_changed_files(plan: Plan) -> None:
    changed = changes(plan)
    if changed is not None:
        raise SendError(changed.message.replace("; nothing more is sent", "; nothing was written or sent"),
                        "review the change, then load the plan again (relcomm validate PLAN, or `r` in the app)")


def _default_render(plan: Plan) -> Callable[[DeliveryJob], "object"]:
    from ..channels.email import default_render

    return default_render(plan)


def dry_run(plan: Plan, ledger: Ledger, *, only: Sequence[str] | None = None,
            render: Callable[[DeliveryJob], object] | None = None, who: str | None = None) -> DryRunResult:
    """Render every message into `<state>/outbox` (a Maildir); nothing is recorded as sent."""
    from ..store.state import check_outbox

    _refuse_changed_files(plan)
    build = render or _default_render(plan)
    outbox = ledger.path.parent / "outbox"
    try:
        check_outbox(ledger.path.parent, outbox)  # a shipped link there would receive every message
    except LedgerError as error:
        raise SendError(error.message, error.hint) from None
    box = mailbox.Maildir(outbox, create=True)
    run_id = ledger.start_run("dry-run", plan.release.version, plan.digest, who)
    written, skipped, failures = 0, [], []
    domain = sender_domain(plan)
    for communique in select_communiques(plan, only):
        if communique.channel != "email":
            from ..channels.webhook import dry_run_deliveries
            from ..store.ledger import delivery_id as make_id

            jobs = []
            for group, recipient in delivery_audience(plan, communique):
                ident = make_id(plan.release.version, communique.id, recipient.key)
                jobs.append(DeliveryJob(ident, communique, group, recipient, new_message_id(domain), new_envelope_id()))
            # Writes <outbox>/<communique>/<delivery>.json|.html|.txt: what would be posted or published.
            for _job, outcome in zip(jobs, dry_run_deliveries(plan, communique.channel, jobs, outbox)):
                if outcome.state == "accepted":
                    written += 1
                else:
                    failures.append(f"{communique.id}: {outcome.detail or outcome.reply}")
            continue
        for group, recipient in plan.audience(communique):
            from ..store.ledger import delivery_id as make_id

            ident = make_id(plan.release.version, communique.id, recipient.key)
            job = DeliveryJob(ident, communique, group, recipient, new_message_id(domain), new_envelope_id())
            try:
                message = build(job)
            except Exception as error:
                failures.append(f"{communique.id} -> {recipient.display}: {getattr(error, 'message', None) or error}")
                continue
            del message["X-Relcomm-Dry-Run"]
            message["X-Relcomm-Dry-Run"] = f"envelope to {recipient.email}; delivery {ident}"
            (outbox / "new" / box.add(message)).chmod(0o600)  # the state dir is private (mailbox uses the umask)
            written += 1
    ledger.finish_run(run_id, f"dry run: {written} message(s) in {outbox}")
    return DryRunResult(outbox, written, tuple(skipped), tuple(failures))


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
    from ..channels.email import EmailChannel

    _refuse_changed_files(plan)
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
    build = render or _default_render(plan)
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

    async def no_intent() -> None:
        return None

    job.commit_intent = no_intent
    run_id = await asyncio.to_thread(ledger.start_run, "test", plan.release.version, plan.digest, who)
    channel = EmailChannel(plan, password=password, render=test_message, concurrency=1)
    try:
        await channel.open()
        outcome = await channel.deliver(job)
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
