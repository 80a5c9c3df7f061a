"""The script's state as the ledger holds it, and the engineer's decisions written into it.

`script_state(plan, ledger, now)` gathers the facts (deliveries per communique, confirmations and
bounces from the reports read so far) and the recorded events, and asks the scheduler. The
engineer's decisions (release a checkpoint, skip a wait, go on after a halt) are checked against
that state first, so a release meant for a step that is not there yet is refused with the reason,
never recorded by mistake. The app, `relcomm release`, `relcomm status` and the runner all use these.
"""

from __future__ import annotations

import datetime as dt
from typing import Mapping

from ..delivery.engine import delivery_audience
from ..common.errors import UserError
from ..store.ledger import Ledger, who_am_i
from ..plan.model import Plan
from .scheduler import (
    CHECKPOINT, DONE, EV_OVERRIDDEN, EV_RELEASED, EV_WAIT_SKIPPED, HALTED, CommuniqueFacts, ScriptEvent,
    ScriptState, evaluate,
)


class ScriptError(UserError):
    """A decision about the script that cannot be taken now; `hint` says what to do."""


def expected_deliveries(plan: Plan) -> dict[str, int]:
    """Deliveries each scripted communique has: one per person (email, manual) or one post."""
    wanted = {c for step in plan.steps for c in step.send}
    return {c.id: len(delivery_audience(plan, c)) for c in plan.communiques if c.id in wanted}


def needs_fates(plan: Plan) -> bool:
    """Confirmations and bounces come from the reports: read them only when a step asks."""
    return any(step.confirmed or step.failed_over is not None for step in plan.steps)


class FactsCache:
    """The facts of the last look, kept while the ledger does not change: confirmations and bounces
    take seconds to work out for 10,000 people, and a waiting runner looks every second."""

    def __init__(self) -> None:
        self.mark: tuple | None = None
        self.facts: dict[str, CommuniqueFacts] = {}


def _fate_counts(plan: Plan, ledger: Ledger) -> tuple[dict[str, int], dict[str, int]]:
    # here, not at the top: only plans that wait on receipts need the receipt parsers (`relcomm checkpoint`)
    from ..receipts.status import BOUNCED, CONFIRMED, build_status

    confirmed: dict[str, int] = {}
    bounced: dict[str, int] = {}
    for row in build_status(plan, ledger).rows:
        standing = row.standing
        if standing == CONFIRMED:
            confirmed[row.communique_id] = confirmed.get(row.communique_id, 0) + 1
        elif standing == BOUNCED and row.state in ("accepted", "marked delivered"):
            bounced[row.communique_id] = bounced.get(row.communique_id, 0) + 1
    return confirmed, bounced


def gather_facts(plan: Plan, ledger: Ledger, expected: Mapping[str, int] | None = None,
                 cache: FactsCache | None = None) -> dict[str, CommuniqueFacts]:
    mark = ledger.activity_mark(plan.release.version) if cache is not None else None
    if cache is not None and mark == cache.mark:
        return cache.facts
    expected = expected if expected is not None else expected_deliveries(plan)
    release = plan.release.version
    confirmed, bounced = _fate_counts(plan, ledger) if needs_fates(plan) else ({}, {})
    facts = {}
    for ident, count in expected.items():
        communique = plan.communique(ident)
        assert communique is not None
        facts[ident] = CommuniqueFacts(communique.channel, count, ledger.counts(release, ident),
                                       confirmed.get(ident, 0), bounced.get(ident, 0))
    if cache is not None:
        cache.mark, cache.facts = mark, facts
    return facts


def parse_time(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def load_events(plan: Plan, ledger: Ledger) -> list[ScriptEvent]:
    return [ScriptEvent(step, kind, parse_time(at), who, detail)
            for step, kind, at, who, detail in ledger.script_events(plan.release.version)]


def record(plan: Plan, ledger: Ledger, events: list[tuple[str, str, str]], now: dt.datetime, who: str = "") -> None:
    who = who or who_am_i()[0]
    stamp = now.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")
    ledger.add_script_events(plan.release.version, [(step, kind, stamp, who, detail) for step, kind, detail in events])


def script_state(plan: Plan, ledger: Ledger, now: dt.datetime, *, scale: float = 1.0,
                 expected: Mapping[str, int] | None = None, cache: FactsCache | None = None) -> ScriptState:
    """Where the script stands now (nothing recorded: the runner records `state.record`)."""
    return evaluate(plan.steps, gather_facts(plan, ledger, expected, cache), load_events(plan, ledger), now,
                    scale=scale)


# -- the engineer's decisions ------------------------------------------------------------------


def _step_or_refuse(plan: Plan, step_id: str):
    step = plan.step(step_id)
    if step is None:
        known = ", ".join(s.id for s in plan.steps) or "(the plan has no steps)"
        raise ScriptError(f"no step {step_id!r} in the plan's script", f"the steps are: {known}")
    return step


def release_checkpoint(plan: Plan, ledger: Ledger, step_id: str, now: dt.datetime, *, who: str = "",
                       note: str = "", scale: float = 1.0) -> str:
    """Release a step's checkpoint, or go on after a halt at it. Returns what was done, in words."""
    step = _step_or_refuse(plan, step_id)
    view = script_state(plan, ledger, now, scale=scale).view(step_id)
    assert view is not None
    if view.status == HALTED:
        record(plan, ledger, [(step_id, EV_OVERRIDDEN, note)], now, who)
        return f"the script goes on after {step_id} despite: {view.reason}"
    if not step.checkpoint:
        raise ScriptError(f"step {step_id} has no checkpoint to release",
                          f"it is {view.label}" + (f": {view.reason}" if view.reason else ""))
    if view.status == DONE or not view.checkpoint_open and view.status != CHECKPOINT:
        if any(e.step_id == step_id and e.kind == EV_RELEASED for e in load_events(plan, ledger)):
            raise ScriptError(f"the checkpoint of {step_id} was already released", f"{step_id} is {view.label}")
        raise ScriptError(f"step {step_id} is not at its checkpoint yet: {view.reason or view.label}",
                          "a checkpoint is released once the steps before it are done")
    record(plan, ledger, [(step_id, EV_RELEASED, note)], now, who)
    return f"checkpoint of {step_id} released" + (f" (its {view.reason.split(' · ')[0]} still runs)" if view.wait_open else "")


def skip_wait(plan: Plan, ledger: Ledger, step_id: str, now: dt.datetime, *, who: str = "", scale: float = 1.0) -> str:
    """End a step's wait and `not_before` now (the engineer's explicit choice, recorded)."""
    _step_or_refuse(plan, step_id)
    view = script_state(plan, ledger, now, scale=scale).view(step_id)
    assert view is not None
    if not view.wait_open:
        raise ScriptError(f"step {step_id} is not waiting for a time", f"it is {view.label}"
                          + (f": {view.reason}" if view.reason else ""))
    record(plan, ledger, [(step_id, EV_WAIT_SKIPPED, view.reason)], now, who)
    return f"wait of {step_id} skipped ({view.reason.split(' · ')[0]})"
