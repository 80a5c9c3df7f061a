"""The send engine: every delivery of the plan's communiques, exactly once or loudly in doubt.

Headless: it reports progress as small frozen events (a callback and/or `events()`), and the
send screen and `relcomm send` render them. One engine run holds the send lock beside the
ledger, turns deliveries a dead process left in `sending` into `in doubt`, creates a `queued`
delivery for each (communique, recipient) not yet known, and works through the queue. The
engine knows no channel: each one declares its `settings` (how many deliveries at once, how
fast, its `RetryPolicy`, from `[transport.smtp]` for email and `[channels.NAME]` for the others)
and the engine keeps them.

The exactly-once rule lives in two awaits per delivery:
* before the first byte that can deliver it (an email's text, a webhook's request, a page's
  write): the channel awaits `intent.commit()`, which commits the `sending` row (Message-ID
  already stored); a delivery still waiting for a connection has none, so after a crash only
  deliveries that may have gone out can be in doubt;
* right after the answer: the outcome is committed.
Writes from all workers are group-committed (one transaction, one fsync, for whatever the
workers asked for meanwhile), so durability costs little and nothing is claimed early: at
most `in_flight` deliveries (the busiest channel's count) can ever be in doubt after a crash.

Transient failures (4xx, 5xx over HTTP, a connection lost before the message was complete) are
retried here, and only here, with the channel's `RetryPolicy`: exponential backoff with jitter up
to `max_attempts`, then left `deferred` (a later run tries again). A receiver's HTTP Retry-After
replaces the backoff when longer, up to RETRY_AFTER_MAX (60 s) per retry; a longer ask is not
waited for: the delivery is deferred at once for the next run. A connection lost after the
message was complete is `in doubt` and is never retried by itself. Failures that would fail every delivery alike (auth, TLS, unreachable
server, sender refused) stop the run with one `RunStopped` and a `SendStopped` exception.

Messages are rendered from the loaded plan's snapshot of its files, never from the disk. A file
that changes on disk after the plan was loaded (and checked) stops the run the same way: the
engine compares the disk with the snapshot before the run, before each message (lstat: cheap),
and re-reads every file at the start of each communique and every few seconds (`plan.files.FileWatch`).

The rest of the package: `events` (what a run reports, and its tally), `jobs` (which deliveries,
in what order, at what pace, retried when), `committer` (the group commit), `outbox` (the dry
run), `testsend` (the test send). Their public names are importable from here too.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Callable, Iterator, Mapping, Sequence

from ..channels import Channel, ChannelStopped, DeliveryJob, DeliveryWithdrawn, Intent, Outcome
from ..plan.files import FileWatch
from ..plan.model import Plan
from ..store.ledger import (
    ACCEPTED, AWAITING, DEFERRED, IN_DOUBT, QUEUED, REJECTED, SENDING, Ledger, LedgerError, LedgerStorageError,
)
from ..store.lock import SendLock, SendLockedError
from .channel_set import ChannelSet
from .committer import Committer
from .events import (  # noqa: F401  (re-exported: the events are the engine's API)
    CommuniqueSkipped, DeliveryChanged, Event, Progress, RunFinished, RunStopped, RunSummary, SendError, SendStopped,
    Tally,
)
from .jobs import (  # noqa: F401  (re-exported)
    Pace, RetryQueue, Target, channel_options, delivery_audience, ledger_counts, parse_rate, pending_jobs, prepare_deliveries,
    requeued_states, select_communiques, sender_domain,
)
from .outbox import DryRunResult, dry_run  # noqa: F401  (re-exported)
from .testsend import SendTestResult, send_test_message  # noqa: F401  (re-exported)

Render = Callable[[DeliveryJob], object]


def _invitations_for_send(plan: Plan, ledger: Ledger, communiques: list):
    """invitations.send.for_send, imported in the worker thread: icalendar is slow to import and the
    app's event loop must not wait for it."""
    from ..invitations.send import for_send  # icalendar: slow to import, see above

    return for_send(plan, ledger, communiques)


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
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        retry_after_max: float | None = None,
        channels: Mapping[str, Callable[..., Channel]] | None = None,
        progress_interval: float = 0.1,
        render: Render | Mapping[str, Render] | None = None,
        person_keys: Mapping[str, str] | None = None,
    ) -> None:
        self.plan, self.ledger = plan, ledger
        # recipient key -> the plan member it stands for (a follow-up to a corrected address):
        # receipts count people, and the corrected address's delivery is still that person's.
        self.person_keys = {k.strip().lower(): v.strip().lower() for k, v in (person_keys or {}).items()}
        self.only = list(only or [])
        self.resend_in_doubt, self.retry_failed = resend_in_doubt, retry_failed
        self.who, self.host, self.mode = who, host, mode
        # Overrides of every channel's retry policy (tests shrink the waits); None: the channel's own.
        retry_overrides = {k: v for k, v in (("backoff_base", backoff_base), ("backoff_max", backoff_max),
                                             ("retry_after_max", retry_after_max)) if v is not None}
        # password: the transport's login (email's SMTP password), channels without one ignore it;
        # render: for every channel, or per channel name; default: each channel's own (compose)
        self._channels = ChannelSet(password=password, render=render, overrides=channels or {},
                                    retry_overrides=retry_overrides)
        self._running = asyncio.Event()
        self._running.set()
        self._cancel = asyncio.Event()
        self._stopped: tuple[str, str] | None = None
        self._tally = Tally(on_event, progress_interval, lambda: self.paused)
        self._retries = RetryQueue()
        self._files = FileWatch(plan)
        self.run_id: int | None = None
        self.channel_stats: dict[str, object] = {}  # per channel: e.g. email's SMTP round trips

    # -- control ---------------------------------------------------------------------

    def pause(self) -> None:
        """No new message starts until `resume()`; messages already talking to the server finish."""
        if self._running.is_set():
            self._running.clear()
            self._tally.progress(force=True)

    def resume(self) -> None:
        if not self._running.is_set():
            self._running.set()
            self._tally.progress(force=True)

    def cancel(self) -> None:
        """Stop starting messages; the run ends as soon as those in flight have their replies."""
        self._cancel.set()
        self._running.set()
        self._retries.changed.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def in_flight(self) -> int:
        """Deliveries under way at once: as many as the busiest of the run's channels takes (each
        channel is also held to its own count). The bound on `sending` rows."""
        return max((p.settings.in_flight for p in self._channels.paces.values()), default=1)

    def events(self) -> AsyncIterator[Event]:
        """Every event of the run, ending after RunFinished. Subscribe before `run()`."""
        return self._tally.subscribe()

    def _stop(self, message: str, hint: str) -> None:
        """The run stops: the first reason is the one reported."""
        if self._stopped is None:
            self._stopped = (message, hint)
        self.cancel()

    # -- the run ---------------------------------------------------------------------

    async def run(self) -> RunSummary:
        lock = SendLock(self.ledger.path.parent)
        try:
            await lock.acquire_async()
        except (SendLockedError, LedgerError) as error:  # held by another send; or a link, not the user's
            raise SendError(error.message, error.hint) from None
        try:
            return await self._run_locked()
        except LedgerError as error:
            # The ledger's file failed (full, read-only, locked) outside a delivery: say so plainly.
            raise SendError(error.message, error.hint) from None
        finally:
            lock.release()

    async def _run_locked(self) -> RunSummary:
        self._tally.started = time.monotonic()
        plan, ledger, release = self.plan, self.ledger, self.plan.release.version
        await asyncio.to_thread(ledger.recover_in_doubt)  # we hold the lock: `sending` is a dead process's
        communiques = select_communiques(plan, self.only)
        skipped: list[CommuniqueSkipped] = []
        # Calendar invitations: each message's UID and SEQUENCE, an update to those invited at an
        # older time, nothing more for a cancelled or past one (invitations/send.py).
        self.plan, communiques, held = await asyncio.to_thread(_invitations_for_send, plan, ledger, communiques)
        plan = self.plan
        for note in held:
            skipped.append(CommuniqueSkipped(note.communique_id, "email", note.reason))
            self._tally.emit(skipped[-1])
        targets: list[Target] = []
        for communique in communiques:
            if self._channels.factory(communique.channel) is None:
                skipped.append(CommuniqueSkipped(communique.id, communique.channel,
                                                 f"not sent: channel {communique.channel} not available yet"))
                self._tally.emit(skipped[-1])
            else:
                targets.append(Target.of(plan, communique))
        if self.mode == "send" and communiques and all(c.spec.reminder_for for c in communiques):
            self.mode = "follow-up"  # the audit record tells reminders from the first send
        self.run_id = await asyncio.to_thread(ledger.start_run, self.mode, release, plan.digest, self.who, self.host)
        await asyncio.to_thread(prepare_deliveries, ledger, plan, targets, self.person_keys,
                                requeued_states(self.resend_in_doubt, self.retry_failed))
        for target in targets:
            self._tally.seed(target.communique.id, ledger.counts(release, target.communique.id))
        self._tally.progress(force=True)
        self._committer = Committer(ledger)
        try:
            changed = await asyncio.to_thread(self._files.full)
            if changed is not None:
                self._stop(changed.message, changed.hint)
            elif (cannot := await self._channels.open(plan, (t.communique.channel for t in targets))) is not None:
                self._stop(*cannot)
            if self._stopped is None:
                jobs = pending_jobs(ledger, plan, targets, self._files, self._tally.states)
                # As many workers as the busiest channel takes at once (each channel says how many:
                # email a few per connection, so one is on the wire while the next is ready to chain).
                # Communiques go in plan order: the next one starts as the last of this one's are
                # under way. Each worker holds at most one committed intent: that bounds the `sending` rows.
                await asyncio.gather(*(self._worker(jobs) for _ in range(self.in_flight)))
        finally:
            self.channel_stats = await self._channels.close()
            await self._settle_retries()
            await self._committer.close()
        return await self._finish(targets, skipped)

    async def _finish(self, targets: list[Target], skipped: list[CommuniqueSkipped]) -> RunSummary:
        total, per = await asyncio.to_thread(ledger_counts, self.ledger, self.plan, targets)
        summary = RunSummary(self.run_id, total, per, tuple(skipped), self._stopped[0] if self._stopped else None,
                             self._cancel.is_set() and not self._stopped, time.monotonic() - self._tally.started,
                             self._tally.finished)
        outcome = "stopped: " + self._stopped[0] if self._stopped else ("cancelled" if self._cancel.is_set() else "finished")
        try:
            await asyncio.to_thread(self.ledger.finish_run, self.run_id, outcome)
        except LedgerError:
            if not self._stopped:
                raise
            # Stopped because the ledger cannot be written: the run stays unfinished in it.
        self._tally.progress(force=True)
        if self._stopped:
            self._tally.emit(RunStopped(*self._stopped))
        self._tally.emit(RunFinished(summary))
        if self._stopped:
            raise SendStopped(self._stopped[0], self._stopped[1], summary)
        return summary

    # -- the workers -----------------------------------------------------------------

    async def _worker(self, jobs: Iterator[DeliveryJob]) -> None:
        while (job := await self._next_job(jobs)) is not None:
            pace = self._channels.paces[job.communique.channel]
            async with pace.slots:  # no more of this channel's deliveries at once than it takes
                if not await pace.wait_for_slot(self._cancel):
                    return self._retries.hold(job, "not started: the run was cancelled")
                if not await self._files_unchanged():
                    return self._retries.hold(job, "not started: a file of the plan changed")
                await self._attempt(job)

    async def _next_job(self, jobs: Iterator[DeliveryJob]) -> DeliveryJob | None:
        while True:
            self._retries.changed.clear()
            if self._cancel.is_set():
                return None
            if not self._running.is_set():
                await self._running.wait()
                continue
            job = self._retries.next_due() or next(jobs, None)
            if job is not None:
                return job
            if not self._retries.waiting:
                return None  # a job still in flight is retried by the worker that has it
            await self._retries.changed.wait()  # a retry comes due, another worker takes it, or a cancel

    async def _files_unchanged(self) -> bool:
        """False (and the run stops) when a file of the plan no longer matches what was loaded."""
        watch = self._files
        # The full re-read runs in a thread: a members list on a slow disk must not stall the connections.
        changed = await asyncio.to_thread(watch.full) if watch.full_due() else watch.quick()
        if changed is None:
            return True
        self._stop(changed.message, changed.hint)
        return False

    async def _attempt(self, job: DeliveryJob) -> None:
        committed = False
        self._retries.taken(job)

        async def commit_intent() -> None:
            nonlocal committed
            # The last moment before the first byte: a pause holds here, a cancel withdraws.
            if not self._running.is_set():
                await self._running.wait()
            if self._cancel.is_set():
                raise DeliveryWithdrawn(job.delivery_id)
            try:
                await self._committer.submit([Ledger.sending_work(job.delivery_id, self.run_id)])
            except asyncio.CancelledError:
                committed = True  # the channel no longer needs it, but the write is queued: it lands
                self._tally.set_state(job, SENDING)  # and counts an attempt, so say so (the send screen counts these)
                raise
            committed = True
            self._tally.set_state(job, SENDING)

        try:
            outcome = await self._channels[job.communique.channel].deliver(job, Intent(commit_intent))
        except DeliveryWithdrawn:
            return  # still queued in the ledger; a later run sends it
        except ChannelStopped as error:
            self._stop(error.message, error.hint)
            if committed:  # refused before any message text went out
                await self._record(job, DEFERRED, f"not sent: {error.message}")
            return
        except LedgerStorageError as error:
            # The `sending` row could not be written (disk full, read-only, locked): nothing went out,
            # and nothing more may go out until the ledger can record it.
            return self._stop(f"{error.message}; nothing more was sent", error.hint)
        except LedgerError as error:
            # e.g. marked delivered meanwhile: the ledger refused the intent, nothing was sent.
            self._tally.emit(DeliveryChanged(job.delivery_id, job.communique.id, job.recipient.display if job.recipient else "",
                                             self._tally.states.get(job.delivery_id, QUEUED), error.message))
            return
        except Exception as error:  # a bug: be honest about what may have gone out, and stop
            self._stop(f"internal error while sending: {type(error).__name__}: {error}",
                       "please report this; the ledger says exactly where the send stands")
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
            message = getattr(error, "message", None) or f"cannot write the ledger: {error}"
            return self._stop(f"{message}; the messages whose outcome could not be recorded will show as in doubt",
                              getattr(error, "hint", None) or "check free disk space and the state folder")
        self._tally.set_state(job, state, detail, attempted)

    async def _handle(self, job: DeliveryJob, outcome: Outcome, attempted: bool = False) -> None:
        words = " ".join(p for p in (outcome.reply, outcome.detail) if p)
        final = {"accepted": ACCEPTED, "rejected": REJECTED, "in_doubt": IN_DOUBT}.get(outcome.state)
        if final is not None:
            return await self._record(job, final, outcome.reply if final == ACCEPTED else words, attempted)
        if outcome.state == "awaiting":
            return await self._record(job, AWAITING, words)  # a manual step: nothing was attempted yet
        retry = self._channels.paces[job.communique.channel].retry  # transient: retried with the channel's policy
        if retry.gives_up(job.attempt) or self._cancel.is_set():
            return await self._record(job, DEFERRED, f"gave up after {job.attempt} attempt(s): {words}", attempted)
        refused = retry.refuses_wait(outcome.retry_after)
        if refused:  # not waited for: a receiver cannot hold the run (400 digits once waited 4 minutes)
            return await self._record(job, DEFERRED, f"not retried in this run: {refused}: {words}", attempted)
        delay = retry.delay(job.attempt, outcome.retry_after)  # the receiver's Retry-After when longer
        await self._record(job, DEFERRED, f"retrying in {delay:.1f} s (attempt {job.attempt} of "
                                          f"{retry.max_attempts}): {words}", attempted)
        job.attempt += 1
        self._retries.later(job, delay, words)

    async def _settle_retries(self) -> None:
        """Deliveries left waiting for a retry when the run ended say so (a later run retries them)."""
        for job, words in self._retries.drain():
            if self._tally.states.get(job.delivery_id) == DEFERRED:
                await self._record(job, DEFERRED, f"not retried: the run ended ({words})")
