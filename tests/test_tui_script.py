"""The send screen follows the plan's script (issue 14): the timeline shows each step; `r` releases a
checkpoint, `w` skips a wait (each asks first), `x` stops; a manual tick lets a waiting step go.
Real app (Pilot), real loopback SMTP server and webhook receiver, a manual clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from relcomm_tui.demo.mailserver import LoopbackMailServer
from relcomm_tui.demo.webhook_receiver import WebhookReceiver
from relcomm_tui.plan import load_plan
from relcomm_tui.script.clock import ManualClock
from relcomm_tui.script.progress import load_events
from relcomm_tui.store.ledger import AWAITING, MARKED_DELIVERED
from relcomm_tui.tui.app import RelcommApp
from relcomm_tui.tui.dialogs.ask import AskDialog
from relcomm_tui.tui.screens.send import SendScreen

from script_helpers import write_script_plan
from tui_helpers import settle, text_of, user_config  # noqa: F401

T0 = dt.datetime(2026, 11, 26, 16, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def server(tmp_path: Path):
    with LoopbackMailServer(maildir=tmp_path / "maildir") as running:
        yield running


@pytest.fixture
def hooks():
    with WebhookReceiver() as running:
        yield running


def scripted_app(tmp_path: Path, server, hooks, **kwargs) -> tuple[RelcommApp, ManualClock]:
    plan = load_plan(write_script_plan(tmp_path / "plan", server.port, hooks.url("/chat"), ops=2, customers=3, **kwargs))
    app = RelcommApp(plan, state_dir=tmp_path / "state", allow_commands=True)
    clock = ManualClock(T0)
    app.script_clock = clock
    return app, clock


def timeline(app) -> str:
    return text_of(app.screen.query_one("#timeline"))


async def until(pilot, condition, rounds: int = 500) -> None:
    for _ in range(rounds):
        if condition():
            return
        await pilot.pause(0.02)
    assert condition(), "not reached"


async def send_until_checkpoint(app, pilot, *, show_rate: bool = False) -> SendScreen:
    """Open the send screen on a started script and wait until it stops at the `briefed` checkpoint."""
    await settle(pilot)
    app.push_screen(SendScreen(start=True, show_rate=show_rate))
    await until(pilot, lambda: app.screen.script is not None
                and app.screen.script.view("briefed").status == "checkpoint")
    return app.screen


async def test_checkpoint_release_wait_skip_and_tick_in_the_app(tmp_path, server, hooks, user_config):
    app, clock = scripted_app(tmp_path, server, hooks)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await send_until_checkpoint(app, pilot)
        assert len(server.messages) == 2 and "⏸ briefed" in timeline(app) and "at checkpoint" in timeline(app)
        assert "At checkpoint briefed: r releases it" in text_of(screen.query_one("#send-status"))
        assert "Support confirmed the briefing" in timeline(app)
        assert screen.check_action("skip_wait", ()) is None  # nothing waits for time yet

        await pilot.press("r")
        dialog = app.screen
        assert isinstance(dialog, AskDialog) and "Release the checkpoint of briefed?" in dialog.question
        assert "Done so far: heads-up (3/3 delivered)" in dialog.detail
        await pilot.press("y")
        await until(pilot, lambda: screen.script.view("customers").status == "waiting"
                    and screen.script.view("customers").until is not None)
        assert "wait 30m" in timeline(screen.app) and "30:00" in timeline(app)
        assert len(server.messages) == 2
        await clock.advance(10 * 60)
        screen.query_one("#timeline").redraw()
        assert "20:00" in timeline(app)

        await pilot.press("w")
        assert isinstance(app.screen, AskDialog) and "Start customers now?" in app.screen.question
        await pilot.press("n")  # the safe answer: nothing changes
        await pilot.pause()
        assert len(server.messages) == 2 and screen.script.view("customers").status == "waiting"
        await pilot.press("w")
        await pilot.press("y")
        await until(pilot, lambda: screen.script is not None and screen.script.view("calls").to_tick == 1)
        assert len(server.messages) == 5
        await until(pilot, lambda: not screen.running)

        # The last step is a manual call: ticking it on its row finishes the script.
        call = next(ident for ident, row in screen.rows.items() if row.channel == "manual")
        table = screen.query_one("#deliveries")
        table.move_cursor(row=table.get_row_index(call))
        await pilot.press("enter")
        await pilot.press("enter")  # the dialog's note is optional
        await until(pilot, lambda: app.ledger.counts("4.2.0", "call")[MARKED_DELIVERED] == 1)
        await until(pilot, lambda: screen.script.complete)
        assert "✓ calls" in timeline(app)
        kinds = [(e.step_id, e.kind) for e in load_events(app.plan, app.ledger)]
        assert ("briefed", "released") in kinds and ("customers", "wait skipped") in kinds
        assert ("calls", "finished") in kinds  # ticked in the app: the ledger says the script is done


async def test_stop_during_a_wait_then_reopen_shows_the_same_wait(tmp_path, server, hooks, user_config):
    app, clock = scripted_app(tmp_path, server, hooks, steps="""
[[steps]]
id = "heads-up"
send = ["ops-notice", "chat"]

[[steps]]
id = "customers"
send = ["announce", "call"]
wait = "30m"
""")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.push_screen(SendScreen(start=True, show_rate=False))
        await until(pilot, lambda: app.screen.script is not None and app.screen.script.view("customers").wait_open)
        screen = app.screen
        await clock.advance(5 * 60)
        await pilot.press("x")
        await pilot.press("y")
        await until(pilot, lambda: not screen.running)
        assert len(server.messages) == 2
        await pilot.press("escape")
        await settle(pilot)
        app.push_screen(SendScreen(show_rate=False))  # reopened: where things stand, from the ledger
        await settle(pilot)
        view = app.screen.script.view("customers")
        assert view.status == "waiting" and view.until == T0 + dt.timedelta(minutes=30)
        assert "25:00" in timeline(app)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_timeline_snapshot(snap_compare, tmp_path, server, hooks, user_config, monkeypatch, size):
    """The send screen of a script waiting for its next step: the timeline with a countdown."""
    import itertools
    import secrets

    counter = itertools.count(1)
    monkeypatch.setattr(secrets, "token_hex", lambda n=None: f"{next(counter):0{2 * (n or 4)}x}")
    app, clock = scripted_app(tmp_path, server, hooks, not_before=T0 + dt.timedelta(minutes=45))

    async def waiting(pilot):
        await send_until_checkpoint(app, pilot)
        app.screen.runner.release("briefed")
        await until(pilot, lambda: app.screen.script.view("customers").until is not None)
        await clock.advance(12 * 60 + 34)
        screen = app.screen
        table = screen.query_one("#deliveries")
        first_customer = next(i for i, row in screen.rows.items() if row.communique_id == "announce")
        table.move_cursor(row=table.get_row_index(first_customer))
        screen.query_one("#timeline").redraw()
        screen.update_status()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=waiting)


async def test_compressed_time_is_said_on_the_timeline(tmp_path, server, hooks, user_config):
    """`relcomm demo` runs minutes in seconds: the timeline says so, and a 30-minute wait counts 30 s."""
    plan = load_plan(write_script_plan(tmp_path / "plan", server.port, hooks.url("/chat"), ops=1, customers=1))
    app = RelcommApp(plan, state_dir=tmp_path / "state", allow_commands=True)
    app.script_clock = ManualClock(T0, scale=60)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.push_screen(SendScreen(start=True, show_rate=False))
        await until(pilot, lambda: app.screen.script is not None and app.screen.script.view("briefed").checkpoint_open)
        app.screen.runner.release("briefed")
        await until(pilot, lambda: app.screen.script.view("customers").until is not None)
        assert app.screen.script.view("customers").until == T0 + dt.timedelta(seconds=30)
        assert "time compressed 60x (demo): a wait of minutes runs in seconds" in timeline(app)
        app.screen.cancel_run()
        await until(pilot, lambda: not app.screen.running)


async def test_rate_and_eta_are_shown_only_while_messages_go_out(tmp_path, server, hooks, user_config):
    """At a checkpoint (or a wait) the last rate and an "ETA 0:00" would say "almost done" while the
    script may wait an hour: the head line leaves them out then."""
    app, clock = scripted_app(tmp_path, server, hooks)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await send_until_checkpoint(app, pilot, show_rate=True)
        assert screen.progress is not None and screen.running  # the rate is known; the script runs on
        screen.refresh_summary()
        head = text_of(screen.query_one("#send-head"))
        assert "at checkpoint" in head and "msg/s" not in head and "ETA" not in head
