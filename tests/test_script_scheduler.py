"""The scheduler alone (issue 14): plan steps + ledger facts + events + a time given by the test
-> what every step is doing and what to do now. No ledger, no clock, no sleeping."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from relcomm_tui.plan import load_plan
from relcomm_tui.script.scheduler import (
    CHECKPOINT, DONE, EV_FINISHED, EV_HALTED, EV_OVERRIDDEN, EV_READY, EV_RELEASED, EV_STARTED, EV_WAIT_SKIPPED,
    HALTED, READY, RUNNING, WAITING, CommuniqueFacts, ScriptEvent, countdown, evaluate,
)

from plan_helpers import base_plan, write_plan

T0 = dt.datetime(2026, 11, 26, 15, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def plan(tmp_path: Path):
    data = base_plan()
    data["communiques"] += [
        {"id": "chat", "to": ["ops"], "channel": "webhook", "preset": "text", "url": "http://127.0.0.1:9/h", "body": "out"},
        {"id": "call", "to": ["ops"], "channel": "manual", "instructions": "Call them"},
    ]
    data["steps"] = [
        {"id": "first", "send": ["chat", "ops-notice"], "halt_if": {"post_failed": True}},
        {"id": "briefed", "checkpoint": "Support confirmed the briefing"},
        {"id": "customers", "send": ["announce"], "wait": "30m", "not_before": "16:00 UTC",
         "halt_if": {"failed_over": 10}},
        {"id": "call-execs", "send": ["call"]},
    ]
    return load_plan(write_plan(tmp_path, data))


def facts(**sent: dict) -> dict[str, CommuniqueFacts]:
    """Nothing sent, except the communiques given as {state: n}."""
    expected = {"chat": ("webhook", 1), "ops-notice": ("email", 1), "announce": ("email", 2), "call": ("manual", 1)}
    return {c: CommuniqueFacts(channel, n, sent.get(c.replace("-", "_"), {})) for c, (channel, n) in expected.items()}


def ev(step: str, kind: str, minutes: float = 0, detail: str = "") -> ScriptEvent:
    return ScriptEvent(step, kind, T0 + dt.timedelta(minutes=minutes), "eng", detail)


def statuses(state) -> dict[str, str]:
    return {v.id: v.status for v in state.steps}


def test_nothing_sent_yet_only_the_first_step_starts(plan) -> None:
    state = evaluate(plan.steps, facts(), [], T0)
    assert statuses(state) == {"first": READY, "briefed": WAITING, "customers": WAITING, "call-execs": WAITING}
    assert state.start == ("first",)
    assert (("first", EV_READY, "")) in state.record
    assert state.view("customers").reason == "after briefed"


def test_a_started_step_not_all_sent_is_running_and_resumed(plan) -> None:
    state = evaluate(plan.steps, facts(chat={"accepted": 1}, ops_notice={"queued": 1}),
                     [ev("first", EV_READY), ev("first", EV_STARTED)], T0)
    view = state.view("first")
    assert view.status == RUNNING and view.reason == "1/2 sent" and state.start == ("first",)


def test_a_checkpoint_waits_for_its_release(plan) -> None:
    events = [ev("first", EV_READY), ev("first", EV_STARTED), ev("first", EV_FINISHED, 1)]
    done = facts(chat={"accepted": 1}, ops_notice={"accepted": 1})
    state = evaluate(plan.steps, done, events, T0 + dt.timedelta(minutes=2))
    assert statuses(state)["first"] == DONE
    view = state.view("briefed")
    assert view.status == CHECKPOINT and view.reason == "Support confirmed the briefing" and view.checkpoint_open
    assert state.start == ()
    state = evaluate(plan.steps, done, events + [ev("briefed", EV_READY, 2), ev("briefed", EV_RELEASED, 5)],
                     T0 + dt.timedelta(minutes=5))
    assert state.view("briefed").status == READY and state.start == ("briefed",)


def test_wait_counts_from_ready_and_not_before_holds(plan) -> None:
    events = [ev("first", EV_STARTED), ev("briefed", EV_STARTED, 1), ev("customers", EV_READY, 1)]
    done = facts(chat={"accepted": 1}, ops_notice={"accepted": 1})
    # 15:01 ready; the wait ends 15:31, the not_before (16:00 on the script's first day) later.
    state = evaluate(plan.steps, done, events, T0 + dt.timedelta(minutes=20))
    view = state.view("customers")
    assert view.status == WAITING and view.reason == "not before 2026-11-26 16:00 UTC"
    assert view.until == T0 + dt.timedelta(hours=1) and state.next_change == view.until and view.wait_open
    assert countdown(view.until, T0 + dt.timedelta(minutes=20)) == "40:00"
    # Without the not_before, the wait: 30 minutes from ready, not from now.
    events.append(ev("customers", EV_WAIT_SKIPPED, 21))
    assert evaluate(plan.steps, done, events, T0 + dt.timedelta(minutes=21)).start == ("customers",)


def test_the_wait_is_never_shorter_than_written(plan) -> None:
    events = [ev("first", EV_STARTED), ev("briefed", EV_STARTED), ev("customers", EV_READY, 60)]
    done = facts(chat={"accepted": 1}, ops_notice={"accepted": 1})
    before = evaluate(plan.steps, done, events, T0 + dt.timedelta(minutes=89, seconds=59))
    assert before.view("customers").status == WAITING and before.view("customers").reason == "wait 30m"
    assert evaluate(plan.steps, done, events, T0 + dt.timedelta(minutes=90)).start == ("customers",)
    # Compressed (the demo): 30 minutes at 60x are 30 seconds.
    assert evaluate(plan.steps, done, events, T0 + dt.timedelta(minutes=60, seconds=30), scale=60).start == ("customers",)


def test_a_failed_post_halts_before_the_next_step(plan) -> None:
    events = [ev("first", EV_STARTED)]
    state = evaluate(plan.steps, facts(chat={"rejected": 1}, ops_notice={"accepted": 1}), events, T0)
    assert state.halted is not None and state.halted.id == "first"
    assert state.halted.reason == "the webhook post chat failed (rejected)"
    assert ("first", EV_HALTED, state.halted.reason) in state.record and state.start == ()
    # Overridden by the engineer: the script goes on (to the checkpoint).
    state = evaluate(plan.steps, facts(chat={"rejected": 1}, ops_notice={"accepted": 1}),
                     events + [ev("first", EV_HALTED, 1), ev("first", EV_OVERRIDDEN, 2)], T0 + dt.timedelta(minutes=2))
    assert state.halted is None and state.view("briefed").status == CHECKPOINT


def test_failed_over_counts_bounces_and_holds_later_steps(plan) -> None:
    events = [ev("first", EV_STARTED), ev("briefed", EV_STARTED), ev("briefed", EV_RELEASED),
              ev("customers", EV_STARTED, 90)]
    sent = facts(chat={"accepted": 1}, ops_notice={"accepted": 1}, announce={"accepted": 2})
    sent["announce"] = CommuniqueFacts("email", 2, {"accepted": 2}, bounced=1)
    state = evaluate(plan.steps, sent, events, T0 + dt.timedelta(minutes=95))
    assert state.view("customers").status == HALTED
    assert state.view("customers").reason == "1 of 2 deliveries failed (50%, more than 10%)"
    assert state.view("call-execs").status == WAITING and "halted at customers" in state.view("call-execs").reason
    assert state.start == ()


def test_manual_tasks_to_tick_then_done(plan) -> None:
    events = [ev("first", EV_STARTED), ev("briefed", EV_STARTED), ev("customers", EV_STARTED), ev("call-execs", EV_STARTED)]
    base = dict(chat={"accepted": 1}, ops_notice={"accepted": 1}, announce={"accepted": 2})
    state = evaluate(plan.steps, facts(**base, call={"awaiting": 1}), events, T0)
    view = state.view("call-execs")
    assert view.status == WAITING and view.to_tick == 1 and state.sending_over and not state.complete
    state = evaluate(plan.steps, facts(**base, call={"marked_delivered": 1}), events, T0)
    assert state.complete and ("call-execs", EV_FINISHED, "") in state.record


def test_after_with_confirmations(tmp_path: Path) -> None:
    data = base_plan()
    data["steps"] = [{"id": "ops", "send": ["ops-notice"]},
                     {"id": "customers", "send": ["announce"], "confirmed": 50}]
    plan = load_plan(write_plan(tmp_path, data))
    events = [ev("ops", EV_STARTED)]
    few = {"ops-notice": CommuniqueFacts("email", 4, {"accepted": 4}, confirmed=1),
           "announce": CommuniqueFacts("email", 2)}
    view = evaluate(plan.steps, few, events, T0).view("customers")
    assert view.status == WAITING and view.reason == "confirmations: 1 of 4 (needs 50%)"
    few["ops-notice"] = CommuniqueFacts("email", 4, {"accepted": 4}, confirmed=2)
    assert evaluate(plan.steps, few, events, T0).start == ("customers",)


def test_a_step_sent_outside_the_script_is_done_not_sent_again(plan) -> None:
    state = evaluate(plan.steps, facts(chat={"accepted": 1}, ops_notice={"accepted": 1}), [], T0)
    assert state.view("first").status == DONE and "first" not in state.start
