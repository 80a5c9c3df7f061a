"""Where the script stands: a pure function of the plan's steps, the ledger's facts and the time.

`evaluate(steps, facts, events, now)` says, for every step, whether it is done, running, waiting
(for what, until when), at its checkpoint or halted (and why), and what to do now: which events to
record (a step became ready, finished, halted) and which steps to start. No I/O, no Textual, no
clock of its own: the runner (runner.py), `relcomm status` and the app's timeline all ask it, so
they never disagree, and tests give it any time they like.

The rules, in the order a step meets them:
1. `after`: every step or communique it names is done (a communique: every delivery has its outcome
   and every manual task is ticked; a step: all its communiques). With `confirmed = N`, also N% of
   the people those communiques reach have confirmed (read receipt, reply, ticked).
2. The moment that first holds is recorded (`ready`); `wait` counts from it, so a resumed send
   never shortens a wait. `not_before` is an absolute time. Skipping (the engineer's choice,
   recorded) ends both.
3. `checkpoint`: the engineer releases it (app or `relcomm release`); it may be released during the wait.
4. No step is halted: a step whose `halt_if` holds once it is sent stops every later start until
   the engineer overrides it (recorded) or the failures are fixed (a retry that is accepted).
A step that was started and is not sent yet is simply started again (a killed or stopped send resumes).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from ..store.ledger import ACCEPTED, AWAITING, DEFERRED, IN_DOUBT, MARKED_DELIVERED, REJECTED
from ..common.times import format_time
from ..plan.model import Step

# Step statuses, in the user's words.
DONE, RUNNING, WAITING, CHECKPOINT, HALTED, READY = "done", "running", "waiting", "checkpoint", "halted", "ready"
STATUS_LABELS = {DONE: "done", RUNNING: "sending", WAITING: "waiting", CHECKPOINT: "at checkpoint",
                 HALTED: "halted", READY: "ready"}

# Script events (ledger table script_events, kind column).
EV_READY, EV_STARTED, EV_FINISHED = "ready", "started", "finished"
EV_RELEASED, EV_WAIT_SKIPPED, EV_HALTED, EV_OVERRIDDEN = "released", "wait skipped", "halted", "halt overridden"
EVENT_KINDS = (EV_READY, EV_STARTED, EV_FINISHED, EV_RELEASED, EV_WAIT_SKIPPED, EV_HALTED, EV_OVERRIDDEN)

# Deliveries that have their outcome for this send: nothing more happens to them by itself.
OUTCOME_STATES = (ACCEPTED, MARKED_DELIVERED, REJECTED, IN_DOUBT, DEFERRED, AWAITING)
POST_CHANNELS = ("webhook", "pager", "publish")


@dataclass(frozen=True)
class CommuniqueFacts:
    """What the ledger (and the reports read so far) say about one communique."""

    channel: str
    expected: int                      # deliveries it has: one per person, or one post
    counts: Mapping[str, int] = field(default_factory=dict)  # ledger state -> deliveries that exist
    confirmed: int = 0                 # people who confirmed (read receipt, reply, ticked)
    bounced: int = 0                   # accepted, then bounced in the reports read

    @property
    def outcomes(self) -> int:
        return sum(self.counts.get(state, 0) for state in OUTCOME_STATES)

    @property
    def sent(self) -> bool:
        """Every delivery has its outcome: nothing is queued, sending or missing."""
        return self.outcomes >= self.expected

    @property
    def to_tick(self) -> int:
        return self.counts.get(AWAITING, 0)

    @property
    def done(self) -> bool:
        return self.sent and self.to_tick == 0

    @property
    def failed(self) -> int:
        return sum(self.counts.get(s, 0) for s in (REJECTED, IN_DOUBT, DEFERRED)) + self.bounced

    @property
    def per_person(self) -> bool:
        return self.channel in ("email", "manual")


@dataclass(frozen=True)
class ScriptEvent:
    step_id: str
    kind: str
    at: dt.datetime
    who: str = ""
    detail: str = ""


@dataclass(frozen=True)
class StepView:
    """One step as the timeline, `relcomm status` and the progress line show it."""

    step: Step
    status: str
    reason: str                         # what it waits for, or why it halted, in the user's words
    until: dt.datetime | None = None    # when the time it waits for comes (a countdown)
    checkpoint_open: bool = False       # at (or before, during a wait) its checkpoint: can be released
    wait_open: bool = False             # a wait or not_before still runs: can be skipped
    sent: int = 0                       # deliveries with their outcome
    total: int = 0                      # deliveries of its communiques
    to_tick: int = 0                    # sent; manual tasks still to be marked done

    @property
    def id(self) -> str:
        return self.step.id

    @property
    def label(self) -> str:
        return STATUS_LABELS[self.status]

    def as_dict(self, now: dt.datetime | None = None) -> dict:
        data = {"step": self.id, "status": self.status, "reason": self.reason, "sent": self.sent,
                "total": self.total, "communiques": list(self.step.send),
                "until": self.until.isoformat() if self.until else None,
                "checkpoint_open": self.checkpoint_open, "wait_open": self.wait_open}
        if now is not None and self.until is not None:
            data["seconds_left"] = max(0, round((self.until - now).total_seconds()))
        return data


@dataclass(frozen=True)
class ScriptState:
    steps: tuple[StepView, ...]
    record: tuple[tuple[str, str, str], ...] = ()   # (step id, kind, detail) to append now
    start: tuple[str, ...] = ()                     # steps whose communiques go out now
    next_change: dt.datetime | None = None          # the earliest time a wait ends
    halted: StepView | None = None                  # the step the script is halted at

    def view(self, step_id: str) -> StepView | None:
        return next((v for v in self.steps if v.id == step_id), None)

    @property
    def complete(self) -> bool:
        return all(v.status == DONE for v in self.steps)

    @property
    def sending_over(self) -> bool:
        """Everything is sent: what is left are manual tasks to tick that no step waits for."""
        return all(v.status == DONE or v.to_tick for v in self.steps)

    @property
    def summary(self) -> str:
        """One line: where the script stands."""
        if self.complete:
            return f"script done: {len(self.steps)} of {len(self.steps)} steps"
        if self.halted is not None:
            return f"halted at {self.halted.id}: {self.halted.reason}"
        done = sum(1 for v in self.steps if v.status == DONE)
        current = [v for v in self.steps if v.status in (RUNNING, READY, CHECKPOINT)] or \
                  [v for v in self.steps if v.status == WAITING and (v.until or v.checkpoint_open)] or \
                  [v for v in self.steps if v.status == WAITING]
        here = current[0] if current else None
        text = f"step {done + 1 if done < len(self.steps) else done} of {len(self.steps)}"
        if here is not None:
            text += f": {here.id} {here.label}" + (f" ({here.reason})" if here.reason else "")
        return text


def evaluate(steps: Sequence[Step], facts: Mapping[str, CommuniqueFacts], events: Iterable[ScriptEvent],
             now: dt.datetime, *, scale: float = 1.0) -> ScriptState:
    """Where every step stands at `now`, and what to do. `scale` compresses waits (demo, tests)."""
    events = list(events)
    by_step: dict[str, dict[str, list[ScriptEvent]]] = {}
    for event in events:
        by_step.setdefault(event.step_id, {}).setdefault(event.kind, []).append(event)
    step_ids = {s.id for s in steps}
    record: list[tuple[str, str, str]] = []

    def has(step_id: str, kind: str) -> bool:
        return bool(by_step.get(step_id, {}).get(kind))

    def first(step_id: str, kind: str) -> ScriptEvent | None:
        found = by_step.get(step_id, {}).get(kind)
        return found[0] if found else None

    def step_facts(step: Step) -> list[CommuniqueFacts]:
        return [facts[c] for c in step.send if c in facts]

    def step_sent(step: Step) -> bool:
        return all(f.sent for f in step_facts(step)) and (has(step.id, EV_STARTED) or bool(step.send))

    def step_done(step: Step) -> bool:
        own = step_facts(step)
        if not step.send:
            return has(step.id, EV_STARTED)
        # Sent outside the script (an earlier `--only`) counts too: nothing of it is sent again.
        return len(own) == len(step.send) and all(f.done for f in own)

    step_by_id = {s.id: s for s in steps}
    # A time of day ("17:00 UTC") is on the day the script started: its first recorded event.
    anchor = min((e.at for e in events), default=now)

    def dependency_done(ident: str) -> bool:
        if ident in step_ids:
            return step_done(step_by_id[ident])
        found = facts.get(ident)
        return found is not None and found.done

    def dependency_communiques(step: Step) -> list[CommuniqueFacts]:
        found: list[CommuniqueFacts] = []
        for ident in step.after:
            names = step_by_id[ident].send if ident in step_ids else (ident,)
            found.extend(facts[c] for c in names if c in facts)
        return found

    # Halts first: one halted step holds every later start.
    halt_reasons: dict[str, str] = {}
    for step in steps:
        if step.send and step_sent(step) and has(step.id, EV_STARTED):
            why = halt_reason(step, {c: facts[c] for c in step.send if c in facts})
            overridden = _latest(by_step, step.id, EV_OVERRIDDEN, EV_HALTED)
            if why and not overridden:
                halt_reasons[step.id] = why
                if not has(step.id, EV_HALTED):
                    record.append((step.id, EV_HALTED, why))
    held_by = next(iter(halt_reasons), None)

    views: list[StepView] = []
    start: list[str] = []
    dues: list[dt.datetime] = []
    for step in steps:
        own = step_facts(step)
        total = sum(f.expected for f in own)
        sent = sum(min(f.outcomes, f.expected) for f in own)
        started = has(step.id, EV_STARTED)
        common = {"sent": sent, "total": total}
        if step.id in halt_reasons:
            views.append(StepView(step, HALTED, halt_reasons[step.id], **common))
            continue
        if step_done(step) and (started or step.send):
            if not has(step.id, EV_FINISHED) and started:
                record.append((step.id, EV_FINISHED, ""))
            views.append(StepView(step, DONE, _done_text(own), **common))
            continue
        if started and not all(f.sent for f in own):
            start.append(step.id)  # resume: a killed or stopped send carries on with what is not sent
            views.append(StepView(step, RUNNING, f"{sent}/{total} sent", **common))
            continue
        if started:
            ticks = sum(f.to_tick for f in own)
            views.append(StepView(step, WAITING, f"{ticks} manual task{'s' if ticks != 1 else ''} to mark done "
                                  f"({', '.join(c for c in step.send if facts.get(c) and facts[c].to_tick)})",
                                  to_tick=ticks, **common))
            continue
        # Not started: what does it wait for?
        missing = [ident for ident in step.after if not dependency_done(ident)]
        if missing:
            views.append(StepView(step, WAITING, "after " + ", ".join(missing), **common))
            continue
        if step.confirmed:
            people = [f for f in dependency_communiques(step) if f.per_person]
            reached = sum(f.expected for f in people)
            confirmed = sum(f.confirmed for f in people)
            if reached and confirmed * 100 < step.confirmed * reached:
                views.append(StepView(step, WAITING, f"confirmations: {confirmed} of {reached} "
                                      f"(needs {step.confirmed}%)", **common))
                continue
        ready = first(step.id, EV_READY)
        ready_at = ready.at if ready else now
        if ready is None:
            record.append((step.id, EV_READY, ""))
        skipped = has(step.id, EV_WAIT_SKIPPED)
        waits: list[tuple[dt.datetime, str]] = []
        if step.wait and not skipped:
            waits.append((ready_at + dt.timedelta(seconds=step.wait / (scale or 1.0)), f"wait {step.wait_text}"))
        not_before = not_before_of(step, anchor)
        if not_before is not None and not skipped:
            waits.append((not_before, f"not before {format_time(not_before)}"))
        pending = [(due, what) for due, what in waits if due > now]
        checkpoint_open = bool(step.checkpoint) and not has(step.id, EV_RELEASED)
        if pending:
            due, what = max(pending)
            dues.append(due)
            reason = what + (f" · then checkpoint: {step.checkpoint}" if checkpoint_open else "")
            views.append(StepView(step, WAITING, reason, due, checkpoint_open, True, **common))
            continue
        if checkpoint_open:
            views.append(StepView(step, CHECKPOINT, step.checkpoint or "", None, True, **common))
            continue
        if held_by is not None:
            views.append(StepView(step, WAITING, f"held: the script is halted at {held_by}", **common))
            continue
        start.append(step.id)
        views.append(StepView(step, READY, "", **common))
    halted = next((v for v in views if v.status == HALTED), None)
    return ScriptState(tuple(views), tuple(record), tuple(start), min(dues) if dues else None, halted)


def halt_reason(step: Step, facts: Mapping[str, CommuniqueFacts]) -> str:
    """Why the script stops after this step, or "" when it goes on."""
    if step.post_failed:
        for ident, found in facts.items():
            if found.channel in POST_CHANNELS and found.failed:
                what = next((s for s in (REJECTED, IN_DOUBT, DEFERRED) if found.counts.get(s)), "failed")
                return f"the {found.channel} post {ident} failed ({what.replace('_', ' ')})"
    if step.failed_over is not None:
        total = sum(f.expected for f in facts.values())
        failed = sum(f.failed for f in facts.values())
        if total and failed * 100 > step.failed_over * total:
            return (f"{failed} of {total} deliveries failed ({failed * 100 / total:.0f}%, "
                    f"more than {step.failed_over}%)")
    return ""


def _latest(by_step: dict, step_id: str, wanted: str, other: str) -> bool:
    """True when the latest of `wanted`/`other` events of the step is `wanted` (an override after the halt)."""
    kinds = by_step.get(step_id, {})
    mine, theirs = kinds.get(wanted, []), kinds.get(other, [])
    if not mine:
        return False
    return not theirs or max(e.at for e in mine) >= max(e.at for e in theirs)


def _done_text(own: Sequence[CommuniqueFacts]) -> str:
    total = sum(f.expected for f in own)
    failed = sum(f.failed for f in own)
    if not own:
        return ""
    return f"{total - failed}/{total} delivered" + (f", {failed} failed" if failed else "")


def not_before_of(step: Step, anchor: dt.datetime) -> dt.datetime | None:
    """The step's `not_before` as a time: as written, or its time of day on the anchor's day (in its zone)."""
    if step.not_before is not None:
        return step.not_before
    daily = step.not_before_daily
    if daily is None or daily.tzinfo is None:
        return None
    day = anchor.astimezone(daily.tzinfo).date()  # type: ignore[arg-type]
    return dt.datetime.combine(day, daily.replace(tzinfo=None), tzinfo=daily.tzinfo)


def countdown(until: dt.datetime | None, now: dt.datetime) -> str:
    """"12:05" (minutes:seconds), "1:02:03" past an hour; "" without a time."""
    if until is None:
        return ""
    seconds = max(0, int((until - now).total_seconds() + 0.999))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
