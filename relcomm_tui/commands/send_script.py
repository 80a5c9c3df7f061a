"""`relcomm send PLAN --yes` on a plan with a script (`[[steps]]`): follow it in the foreground.

The runner (relcomm_tui.script.runner) starts each step when it is due and asks the engine for that
step's communiques; this module only shows it: on a terminal one rewritten progress line (the
current step, what it waits for, a countdown, or the engine's progress while a step sends); without
a terminal one line per change; with `--json` one JSON object per line (events for CI).

Exit 0 when every step is done and every delivery accepted (manual tasks left to tick are said),
1 when the script halted, was stopped, or a delivery failed, 2 for plan or configuration errors.
Ctrl-C stops cleanly: what is in flight finishes, waits keep counting in the ledger, and the next
`relcomm send PLAN --yes` resumes at the same point.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TextIO

from . import fail, stop_on_signals
from ..common.terminal_text import visible
from ..script.clock import Clock
from ..store.ledger import ACCEPTED, DEFERRED, IN_DOUBT, MARKED_DELIVERED, REJECTED, STATE_LABELS

OUTCOMES = (ACCEPTED, REJECTED, IN_DOUBT, DEFERRED, MARKED_DELIVERED, "awaiting")


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError, AttributeError):
        return False


class ScriptPrinter:
    """Script states and engine events -> the progress line, plain lines, or JSON lines."""

    def __init__(self, plan, clock, stream: TextIO, *, as_json: bool = False) -> None:
        self.plan, self.clock, self.stream = plan, clock, stream
        self.json = as_json
        self.tty = _isatty(stream) and not as_json
        self._line = 0
        self._seen: dict[str, tuple] = {}
        self._state = None
        self._progress = None

    # -- output helpers --

    def _emit(self, data: dict) -> None:
        print(json.dumps(data, ensure_ascii=False), file=self.stream, flush=True)

    def _say(self, text: str) -> None:
        self._clear()
        print(visible(text), file=self.stream, flush=True)

    def _clear(self) -> None:
        if self.tty and self._line:
            self.stream.write("\r" + " " * self._line + "\r")
            self._line = 0

    def _rewrite(self, text: str) -> None:
        text = visible(text)
        width = 200
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns - 1
        except (OSError, ValueError, AttributeError):
            pass
        text = text if len(text) <= width else text[: max(0, width - 1)] + "…"
        self._clear()
        self.stream.write(text)
        self.stream.flush()
        self._line = len(text)

    def done(self) -> None:
        if self.tty and self._line:
            self.stream.write("\n")
            self._line = 0

    # -- script states --

    def on_state(self, state) -> None:
        from ..script.scheduler import countdown  # heavy: loaded only when needed (start-up time, see commands/__init__)

        self._state = state
        now = self.clock.now()
        for view in state.steps:
            key = (view.status, view.reason if view.until is None else view.reason.split(" · ")[0])
            if self._seen.get(view.id) == key:
                continue
            self._seen[view.id] = key
            if self.json:
                self._emit({"event": "step", "at": now.isoformat(), **view.as_dict(now)})
            elif view.status != "ready":
                self._say(f"step {view.id}: {view.label}" + (f": {view.reason}" if view.reason else "")
                          + (f" (until {view.until:%H:%M:%S %Z})" if view.until else ""))
                for hint in self.hints(view):
                    self._say(f"  {hint}")
        if self.tty:
            line = f"[{state.summary}]"
            waiting = [v for v in state.steps if v.until is not None]
            if waiting:
                line += f" {countdown(waiting[0].until, now)} left"
            if any(v.checkpoint_open and v.status == "checkpoint" for v in state.steps):
                step = next(v for v in state.steps if v.status == "checkpoint")
                line += f" · release: relcomm checkpoint {self.plan.path} {step.id}"
            self._rewrite(line + self._scale_note())

    def hints(self, view) -> list[str]:
        """What the engineer can do about a step that waits for them, as commands to type."""
        plan = self.plan.path
        if view.status == "checkpoint":
            return [f"release it (another terminal): relcomm checkpoint {plan} {view.id}"]
        if view.to_tick:
            open_ones = [c for c in view.step.send if (com := self.plan.communique(c)) and com.channel == "manual"]
            return [f"when done: relcomm confirm {plan} {c} RECIPIENT --note TEXT   (or enter on its rows in the app)"
                    for c in open_ones]
        if view.status == "halted":
            return [f"go on anyway: relcomm checkpoint {plan} {view.id} --despite-halt"]
        return []

    def _scale_note(self) -> str:
        return f" (time compressed {self.clock.scale:g}x)" if self.clock.scale != 1 else ""

    # -- engine events --

    def on_event(self, event) -> None:
        from ..delivery.engine import CommuniqueSkipped, DeliveryChanged, Progress  # heavy: loaded only when needed (start-up time, see commands/__init__)

        if isinstance(event, DeliveryChanged):
            if event.state not in OUTCOMES:
                return
            if self.json:
                self._emit({"event": "delivery", "communique": event.communique_id, "recipient": event.recipient,
                            "state": event.state, "detail": event.detail})
            elif not self.tty:
                label = STATE_LABELS.get(event.state, event.state)
                self._say(f"{label:<9} {event.communique_id}  {event.recipient}  {event.detail}".rstrip())
            elif event.state in (REJECTED, IN_DOUBT):
                self._say(f"{STATE_LABELS[event.state]}: {event.communique_id} {event.recipient}: {event.detail}")
        elif isinstance(event, Progress) and self.tty:
            step = self._state.summary if self._state is not None else ""
            self._rewrite(f"[{step}] {event.done}/{event.total} done · {event.counts.get(ACCEPTED, 0)} accepted · "
                          f"{event.counts.get(REJECTED, 0)} rejected · {event.rate:.1f} msg/s" + self._scale_note())
        elif isinstance(event, CommuniqueSkipped):
            if self.json:
                self._emit({"event": "skipped", "communique": event.communique_id, "reason": event.reason})
            else:
                self._say(f"skipped   {event.communique_id}: {event.reason}")


async def send_scripted(plan, ledger, args, password, login, host) -> int:
    # heavy: loaded only when needed (start-up time, see commands/__init__)
    from ..delivery.engine import SendError, SendStopped
    from ..script.runner import COMPLETE, HALTED, SENDING_OVER, ScriptRunner

    clock = Clock(getattr(args, "time_scale", 1.0) or 1.0)
    as_json = bool(getattr(args, "json", False))
    printer = ScriptPrinter(plan, clock, sys.stdout, as_json=as_json)
    runner = ScriptRunner(plan, ledger, clock=clock, on_event=printer.on_event, on_state=printer.on_state,
                          poll=1.0, who=login, host=host, password=password,
                          resend_in_doubt=args.resend_in_doubt, retry_failed=args.retry_failed)
    if clock.scale != 1 and not as_json:
        printer._say(f"time compressed {clock.scale:g}x: a wait of {clock.scale:g} seconds takes one second")
    stop_on_signals(runner.cancel, "messages in flight finish; waits keep counting")
    try:
        result = await runner.run()
    except SendStopped as error:
        printer.done()
        return _fail(f"stopped: {error.message}", error.hint, as_json)
    except SendError as error:
        printer.done()
        return _fail(error.message, error.hint, as_json)
    printer.done()
    state = result.state
    counts = _counts(plan, ledger, state)
    # As a send without a script: 1 while any delivery is refused, deferred or in doubt.
    code = result.exit_code or (1 if any(counts.get(s) for s in (REJECTED, DEFERRED, IN_DOUBT)) else 0)
    if as_json:
        printer._emit({"event": "script", "ending": result.ending, "summary": state.summary, "counts": counts,
                       "exit": code, "steps": [v.as_dict(clock.now()) for v in state.steps]})
        return code
    parts = ", ".join(f"{n} {STATE_LABELS.get(s, s)}" for s, n in counts.items() if n)
    print(visible(f"{plan.release.name} {plan.release.version}: {state.summary}" + (f"; {parts}" if parts else "")))
    if result.ending == HALTED and state.halted is not None:
        step = state.halted.id
        print(visible(f"  halted at {step}: {state.halted.reason}. Nothing after it was sent."))
        print(visible(f"  fix it (relcomm status {plan.path}; relcomm send {plan.path} --yes --retry-failed), "
                      f"or go on anyway: relcomm checkpoint {plan.path} {step} --despite-halt"))
    elif result.ending == SENDING_OVER:
        ticks = sum(v.to_tick for v in state.steps)
        print(visible(f"  everything is sent; {ticks} manual task(s) to mark done in the app: relcomm {plan.path}"))
    elif result.ending not in (COMPLETE,):
        print(visible(f"  stopped; relcomm send {plan.path} --yes resumes at the same point (waits keep counting)"))
    if counts.get(IN_DOUBT):
        print(f"  {counts[IN_DOUBT]} in doubt: the server may have them; --resend-in-doubt sends them again "
              "(same Message-ID)")
    return code


def _counts(plan, ledger, state) -> dict[str, int]:
    total: dict[str, int] = {}
    for view in state.steps:
        for communique in view.step.send:
            for key, n in ledger.counts(plan.release.version, communique).items():
                total[key] = total.get(key, 0) + n
    return total


def _fail(message: str, hint: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"event": "error", "message": message, "hint": hint}, ensure_ascii=False), flush=True)
    return fail("relcomm send", message, hint)
