"""What a send reports while it runs: small frozen events, and the tally they are made from.

The send screen and `relcomm send` render these; nothing here knows a channel or the screen.
`Tally` keeps this run's counts (per state, per communique) and hands every event to the
callback and to each `events()` subscriber; a `Progress` at most every `interval` seconds.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Mapping

from ..channels import DeliveryJob
from ..common.errors import UserError
from ..store.ledger import ACCEPTED, AWAITING, FINAL_STATES, IN_DOUBT, MARKED_DELIVERED, REJECTED, STATES


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


class Tally:
    """This run's deliveries by state, and everyone listening."""

    def __init__(self, on_event: Callable[[Event], None] | None, interval: float,
                 paused: Callable[[], bool]) -> None:
        self._on_event = on_event
        self._subscribers: list[asyncio.Queue] = []
        self.interval = interval
        self._paused = paused
        self.counts: dict[str, int] = {}
        self.per_communique: dict[str, dict[str, int]] = {}
        self.states: dict[str, str] = {}  # delivery id -> state, for the deliveries this run touched
        self.finished = 0                 # deliveries that reached an outcome in this run
        self.started = time.monotonic()
        self._last_progress = 0.0

    def subscribe(self) -> AsyncIterator[Event]:
        queue: asyncio.Queue = asyncio.Queue()
        self._subscribers.append(queue)

        async def stream() -> AsyncIterator[Event]:
            while True:
                event = await queue.get()
                yield event
                if isinstance(event, RunFinished):
                    return

        return stream()

    def emit(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)
        for queue in self._subscribers:
            queue.put_nowait(event)

    def seed(self, communique_id: str, counts: Mapping[str, int]) -> None:
        """The ledger's counts for a communique before this run touches it."""
        self.per_communique[communique_id] = dict(counts)
        for state, n in counts.items():
            self.counts[state] = self.counts.get(state, 0) + n

    def set_state(self, job: DeliveryJob, state: str, detail: str = "", attempted: bool = False) -> None:
        before = self.states.get(job.delivery_id)
        per = self.per_communique.setdefault(job.communique.id, {s: 0 for s in STATES})
        if before is not None:
            self.counts[before] -= 1
            per[before] -= 1
        self.counts[state] = self.counts.get(state, 0) + 1
        per[state] += 1
        self.states[job.delivery_id] = state
        if state in (ACCEPTED, REJECTED, IN_DOUBT, AWAITING):
            self.finished += 1
        recipient = job.recipient.display if job.recipient else ""
        self.emit(DeliveryChanged(job.delivery_id, job.communique.id, recipient, state, detail, attempted))
        self.progress()

    def progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < self.interval:
            return
        self._last_progress = now
        elapsed = max(now - self.started, 1e-6)
        done = sum(self.counts.get(s, 0) for s in (ACCEPTED, MARKED_DELIVERED, REJECTED, IN_DOUBT, AWAITING))
        self.emit(Progress(
            counts=dict(self.counts), per_communique={k: dict(v) for k, v in self.per_communique.items()},
            total=sum(self.counts.values()), done=done, rate=self.finished / elapsed, paused=self._paused(),
        ))
