"""Which send screen keys apply (send_keys.offered, issue 12): asked without an app."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from relcomm_tui.script.scheduler import DONE, WAITING, ScriptState, StepView
from relcomm_tui.store.ledger import ACCEPTED, AWAITING, DEFERRED, IN_DOUBT, QUEUED
from relcomm_tui.tui.screens.send_keys import KEY_ACTIONS, KeyState, offered


def row(state: str, channel: str = "email") -> SimpleNamespace:
    return SimpleNamespace(state=state, channel=channel)


def test_before_compose_every_key_is_hidden():
    now = KeyState(composed=False)
    assert {action: offered(action, now) for action in KEY_ACTIONS + ("receipts",)} == dict.fromkeys(
        KEY_ACTIONS + ("receipts",), False)


def test_space_sends_what_is_left_only_when_idle_with_a_ledger():
    left = Counter({QUEUED: 3})
    assert offered("continue", KeyState(counts=left)) is True
    assert offered("continue", KeyState(counts=left, running=True)) is False
    assert offered("continue", KeyState(counts=left, ledger_open=False)) is False
    assert offered("continue", KeyState(counts=Counter({ACCEPTED: 3}))) is False
    assert offered("pause", KeyState(running=True)) is True
    assert offered("resume", KeyState(running=True)) is False
    assert offered("pause", KeyState(running=True, cancelling=True)) is False


def test_mark_is_greyed_on_a_row_not_in_doubt_and_hidden_with_none_in_doubt():
    in_doubt = Counter({IN_DOUBT: 1, DEFERRED: 1})
    assert offered("mark_delivered", KeyState(counts=in_doubt, highlighted=row(IN_DOUBT))) is True
    assert offered("mark_delivered", KeyState(counts=in_doubt, highlighted=row(DEFERRED))) is None
    assert offered("mark_delivered", KeyState(counts=Counter({DEFERRED: 1}), highlighted=row(DEFERRED))) is False


def test_enter_ticks_an_open_manual_step_but_not_while_filtering():
    manual = KeyState(highlighted=row(AWAITING, "manual"), open_manual_steps=1)
    assert offered("tick_manual", manual) is True
    assert offered("tick_manual", KeyState(highlighted=row(ACCEPTED), open_manual_steps=1)) is None
    assert offered("tick_manual", KeyState(highlighted=row(AWAITING, "manual"), open_manual_steps=1,
                                           filtering=True)) is False
    assert offered("tick_manual", KeyState(highlighted=row(AWAITING, "manual"))) is False


def test_script_keys_need_a_script_and_leave_once_it_is_complete():
    waiting = ScriptState(steps=(StepView(None, WAITING, "in 5m", wait_open=True),))
    done = ScriptState(steps=(StepView(None, DONE, ""),))
    assert offered("skip_wait", KeyState(scripted=True, script=waiting)) is True
    assert offered("release_checkpoint", KeyState(scripted=True, script=waiting)) is None
    assert offered("skip_wait", KeyState(scripted=True, script=done)) is False
    assert offered("skip_wait", KeyState(script=waiting)) is False
    assert offered("skip_wait", KeyState(composed=False, scripted=True, script=waiting)) is True
