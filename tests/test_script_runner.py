"""The runner over the real engine (issue 14): a real loopback SMTP server and webhook receiver, a
real ledger, and a manual clock so 30-minute waits take no time. The order holds under concurrency,
waits and not_before are honoured to the second, checkpoints and halts stop what follows."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from faulty_mailserver import FaultyMailServer, PermFail
from http_receiver import Reply, ScriptedReceiver
from relcomm_tui.plan import load_plan
from relcomm_tui.script.clock import ManualClock
from relcomm_tui.script.progress import ScriptError, load_events, release_checkpoint, script_state
from relcomm_tui.script.runner import HALTED, SENDING_OVER, ScriptRunner
from relcomm_tui.script.scheduler import CHECKPOINT, DONE, EV_STARTED, HALTED as STEP_HALTED, WAITING
from relcomm_tui.store.ledger import AWAITING, Ledger

from script_helpers import subjects_in_order, write_script_plan

T0 = dt.datetime(2026, 11, 26, 16, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def server(tmp_path: Path):
    with FaultyMailServer(maildir=tmp_path / "maildir", data_delay=0.01) as running:
        yield running


@pytest.fixture
def hooks():
    with ScriptedReceiver() as running:
        yield running


def setup(tmp_path, server, hooks, **kwargs):
    plan = load_plan(write_script_plan(tmp_path / "plan", server.port, hooks.url("/chat"), **kwargs))
    return plan, Ledger.open(plan.state_dir)


def started_at(plan, ledger, step: str) -> dt.datetime:
    return next(e.at for e in load_events(plan, ledger) if e.step_id == step and e.kind == EV_STARTED)


async def test_order_waits_and_not_before_with_an_injected_clock(tmp_path, server, hooks):
    plan, ledger = setup(tmp_path, server, hooks, ops=10, customers=12, concurrency=4,
                         not_before=T0 + dt.timedelta(minutes=45))
    clock = ManualClock(T0)
    runner = ScriptRunner(plan, ledger, clock=clock, poll=1.0)
    task = asyncio.create_task(runner.run())
    await clock.until_waiting()
    # Step 1 sent (10 people over 4 connections), then the checkpoint holds everything after it.
    assert subjects_in_order(server) == ["Orion 4.2.0 deploys now"] * 10 and len(hooks.requests_for("/chat")) == 1
    assert runner.state.view("briefed").status == CHECKPOINT
    assert runner.state.view("customers").status == WAITING and runner.state.view("customers").reason == "after briefed"

    runner.release("briefed")
    await clock.until_waiting(after=clock.sleeps)
    view = runner.state.view("customers")
    # Ready at 16:00; the 30-minute wait ends 16:30, the not_before 16:45 wins.
    assert view.status == WAITING and view.until == T0 + dt.timedelta(minutes=45)
    await clock.advance_and_settle(44 * 60 + 59)
    assert runner.state.view("customers").status == WAITING and len(server.messages) == 10
    await clock.advance(1)
    result = await asyncio.wait_for(task, 30)

    assert result.ending == SENDING_OVER  # only the manual call is left to tick
    assert subjects_in_order(server) == ["Orion 4.2.0 deploys now"] * 10 + ["Orion 4.2.0 is out"] * 12
    assert started_at(plan, ledger, "customers") == T0 + dt.timedelta(minutes=45)
    assert ledger.counts("4.2.0", "call")[AWAITING] == 1
    state = script_state(plan, ledger, clock.now())
    assert [v.status for v in state.steps] == [DONE, DONE, DONE, WAITING] and state.sending_over
    ledger.close()


async def test_the_wait_counts_from_when_the_step_became_ready(tmp_path, server, hooks):
    plan, ledger = setup(tmp_path, server, hooks, ops=2, customers=3)
    clock = ManualClock(T0)
    runner = ScriptRunner(plan, ledger, clock=clock, poll=60.0)
    task = asyncio.create_task(runner.run())
    await clock.until_waiting()
    await clock.advance(20 * 60)   # the engineer takes 20 minutes to release the checkpoint
    await clock.until_waiting(after=clock.sleeps - 1)
    runner.release("briefed")
    await clock.until_waiting(after=clock.sleeps)
    assert runner.state.view("customers").until == T0 + dt.timedelta(minutes=50)
    await clock.advance_and_settle(29 * 60)
    assert len(server.messages) == 2
    await clock.advance(60)
    await asyncio.wait_for(task, 30)
    assert started_at(plan, ledger, "customers") == T0 + dt.timedelta(minutes=50)
    ledger.close()


async def test_a_release_from_another_process_is_seen_and_a_wait_can_be_skipped(tmp_path, server, hooks):
    plan, ledger = setup(tmp_path, server, hooks, ops=2, customers=3)
    clock = ManualClock(T0)
    runner = ScriptRunner(plan, ledger, clock=clock, poll=1.0)
    task = asyncio.create_task(runner.run())
    await clock.until_waiting()
    other = Ledger.open(plan.state_dir)  # `relcomm checkpoint` in another terminal
    with pytest.raises(ScriptError, match="customers has no checkpoint"):
        release_checkpoint(plan, other, "customers", clock.now())
    release_checkpoint(plan, other, "briefed", clock.now(), who="support-lead")
    other.close()
    await clock.advance_and_settle(1)   # the runner looks at the ledger every `poll`
    await clock.advance_and_settle(1)
    assert runner.state.view("customers").reason == "wait 30m"
    runner.skip_wait("customers")
    result = await asyncio.wait_for(task, 30)
    assert result.ending == SENDING_OVER and len(server.messages) == 5
    assert started_at(plan, ledger, "customers") < T0 + dt.timedelta(minutes=30)
    ledger.close()


async def test_too_many_failures_halt_before_the_next_step(tmp_path, server, hooks):
    for i in (0, 1):
        server.faults[f"customers{i}@example.com"] = PermFail(msg="5.1.1 no such user")
    plan, ledger = setup(tmp_path, server, hooks, ops=2, customers=10, wait="1m")
    clock = ManualClock(T0)
    runner = ScriptRunner(plan, ledger, clock=clock, poll=1.0)
    task = asyncio.create_task(runner.run())
    await clock.until_waiting()
    runner.release("briefed")
    await clock.until_waiting(after=clock.sleeps)
    await clock.advance(60)
    result = await asyncio.wait_for(task, 30)
    assert result.ending == HALTED and result.exit_code == 1
    assert result.state.halted.id == "customers"
    assert result.state.halted.reason == "2 of 10 deliveries failed (20%, more than 10%)"
    assert ledger.counts("4.2.0", "call")[AWAITING] == 0  # the next step never started
    view = result.state.view("calls")
    assert view.status == WAITING and "halted at customers" in view.reason

    # The engineer goes on anyway: recorded, and the next run hands out the calls.
    said = release_checkpoint(plan, ledger, "customers", clock.now(), who="eng", note="bounces are old accounts")
    assert "despite: 2 of 10" in said
    result = await asyncio.wait_for(ScriptRunner(plan, ledger, clock=clock, poll=1.0).run(), 30)
    assert result.ending == SENDING_OVER and ledger.counts("4.2.0", "call")[AWAITING] == 1
    ledger.close()


async def test_a_failed_webhook_halts_right_after_the_first_step(tmp_path, server, hooks):
    hooks.script("/chat", *[Reply(status=500, body=b"down")] * 20)  # more than any retry policy tries
    plan, ledger = setup(tmp_path, server, hooks, ops=2, customers=3)
    clock = ManualClock(T0)
    result = await asyncio.wait_for(ScriptRunner(plan, ledger, clock=clock, poll=1.0,
                                                 engine_options={"backoff_base": 0.01, "backoff_max": 0.02}).run(), 30)
    assert result.ending == HALTED and result.state.halted.id == "heads-up"
    assert result.state.halted.reason.startswith("the webhook post chat failed")
    assert result.state.view("heads-up").status == STEP_HALTED and len(server.messages) == 2
    ledger.close()


async def test_retrying_the_failures_clears_the_halt_and_the_script_goes_on(tmp_path, server, hooks):
    for i in (0, 1):  # refused once: a retry is accepted
        server.faults[f"customers{i}@example.com"] = PermFail(msg="4.2.2 mailbox busy, come back", times=1)
    plan, ledger = setup(tmp_path, server, hooks, ops=1, customers=4, wait="1m")
    clock = ManualClock(T0)
    runner = ScriptRunner(plan, ledger, clock=clock, poll=1.0)
    task = asyncio.create_task(runner.run())
    await clock.until_waiting()
    runner.release("briefed")
    await clock.until_waiting(after=clock.sleeps)
    await clock.advance(60)
    result = await asyncio.wait_for(task, 30)
    assert result.ending == HALTED and result.state.halted.reason.startswith("2 of 4 deliveries failed")
    retried = await asyncio.wait_for(ScriptRunner(plan, ledger, clock=clock, poll=1.0, retry_failed=True).run(), 30)
    assert retried.ending == SENDING_OVER and retried.state.halted is None
    assert ledger.counts("4.2.0", "announce")["accepted"] == 4 and ledger.counts("4.2.0", "call")[AWAITING] == 1
    assert sum(1 for m in server.messages if m.rcpt_tos[0].startswith("customers")) == 4
    ledger.close()


async def test_pause_holds_the_next_step(tmp_path, server, hooks):
    plan, ledger = setup(tmp_path, server, hooks, ops=1, customers=2, wait="1m")
    clock = ManualClock(T0)
    runner = ScriptRunner(plan, ledger, clock=clock, poll=1.0)
    task = asyncio.create_task(runner.run())
    await clock.until_waiting()
    runner.release("briefed")
    await clock.until_waiting(after=clock.sleeps)
    runner.pause()
    await clock.advance_and_settle(120)   # the wait is over, but the script is paused
    assert runner.state.start == ("customers",) and len(server.messages) == 1
    runner.resume()
    result = await asyncio.wait_for(task, 30)
    assert result.ending == SENDING_OVER and len(server.messages) == 3
    ledger.close()


async def test_a_step_waits_for_confirmations_read_from_the_reports(tmp_path):
    """`confirmed = 50`: the customers go once half the people of the step before read it; the runner
    reads the plan's receipts Maildir while it waits (read receipts written by the loopback server)."""
    from relcomm_tui.store.ledger import ACCEPTED

    steps = """
[[steps]]
id = "heads-up"
send = ["ops-notice", "chat"]

[[steps]]
id = "customers"
send = ["announce", "call"]
confirmed = 50
"""
    folder = tmp_path / "plan"
    with FaultyMailServer(maildir=tmp_path / "mail", write_reports_to=folder / "reports", report_delay=(30.0, 30.0),
                            mdn_fraction=1.0, seed=7) as server, ScriptedReceiver() as hooks:
        plan = load_plan(write_script_plan(folder, server.port, hooks.url("/chat"), ops=4, customers=2, steps=steps,
                                           receipts=True))
        ledger = Ledger.open(plan.state_dir)
        clock = ManualClock(T0)
        runner = ScriptRunner(plan, ledger, clock=clock, poll=1.0)
        task = asyncio.create_task(runner.run())
        await clock.until_waiting()
        view = runner.state.view("customers")
        assert view.status == WAITING and view.reason == "confirmations: 0 of 4 (needs 50%)"
        assert ledger.counts("4.2.0", "ops-notice")[ACCEPTED] == 4 and len(server.messages) == 4
        server.flush_reports()          # the read receipts arrive in the Maildir...
        await clock.advance_and_settle(1)   # ...but the runner reads it every `refresh` (5 s)
        assert runner.state.view("customers").status == WAITING
        await clock.advance(5)
        result = await asyncio.wait_for(task, 30)
        assert result.ending == SENDING_OVER and len(server.messages) == 6
        ledger.close()
