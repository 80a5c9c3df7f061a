"""The send screen's script part (issue 14): the timeline, the runner, and the keys that steer it.

A mixin of `SendScreen`, kept apart so the screen's per-delivery part stays readable. With a plan
that has `[[steps]]`, starting a send starts a `ScriptRunner` (relcomm_tui.script.runner) instead
of one engine run: it calls the engine step by step, and the screen's engine events, pause and
cancel go to the step sending now. `r` releases the checkpoint the script is at (or goes on after a
halt), `w` skips the running wait, `x` stops; each asks first and shows what happened so far.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.message import Message

from ...script.clock import Clock
from ...delivery.engine import SendError, SendStopped
from ...script.progress import ScriptError, record, release_checkpoint, script_state, skip_wait
from ...script.runner import COMPLETE, HALTED, SENDING_OVER, ScriptRunner
from ...script.scheduler import CHECKPOINT, DONE, OUTCOME_STATES, ScriptState, countdown
from ...script.scheduler import HALTED as STEP_HALTED
from ...store.ledger import who_am_i
from ..dialogs.ask import AskDialog
from ..widgets.timeline import ScriptTimeline
from .send_engine import spare_the_rows

# To the type checker this part is what it is at run time, a part of the send screen: it sees the
# engine half as its base and SendScreen's own members declared in the class.
if TYPE_CHECKING:
    from textual.timer import Timer

    from ..widgets.delivery_table import DeliveryTable
    from .send_engine import SendEngineScreen as SendScreenBase
else:
    SendScreenBase = object  # at run time a plain mixin: SendScreen(ScriptControls, SendEngineScreen)

SCRIPT_BINDINGS = [
    Binding("r", "release_checkpoint", "Release", id="release-checkpoint",
            tooltip="Release the checkpoint the script is at, or go on after a halt (asks first)"),
    Binding("w", "skip_wait", "Skip wait", id="skip-wait", tooltip="Start the waiting step now (asks first)"),
]


class ScriptControls(SendScreenBase):
    """Mixed into SendScreen: everything about the plan's script on the send screen."""

    if TYPE_CHECKING:  # what it uses of SendScreen (send.py); declared only, so it hides nothing at run time
        _flush_timer: Timer

        @property
        def table(self) -> DeliveryTable: ...
        def refresh_keys(self) -> None: ...
        def refresh_summary(self) -> None: ...
        def update_status(self) -> None: ...
        def show_banner(self, text: str, severity: str = "error") -> None: ...

    runner: ScriptRunner | None = None
    script: ScriptState | None = None
    script_ending: str | None = None

    class ScriptChanged(Message):
        def __init__(self, state: ScriptState) -> None:
            super().__init__()
            self.state = state

    class ScriptEnded(Message):
        def __init__(self, ending: str | None, stopped: tuple[str, str] | None) -> None:
            super().__init__()
            self.ending, self.stopped = ending, stopped

    # -- set up --

    @property
    def scripted(self) -> bool:
        return bool(self.plan.steps) and not self.only

    @property
    def clock(self) -> Clock:
        clock = getattr(self.app, "script_clock", None)
        return clock if clock is not None else Clock()

    def compose_timeline(self):
        timeline = ScriptTimeline(self.clock.now, id="timeline")
        if self.clock.scale != 1:
            timeline.note = f"time compressed {self.clock.scale:g}x (demo): a wait of minutes runs in seconds"
        return timeline

    def refresh_script(self) -> None:
        """The script as the ledger has it now (no runner: on opening, after a run, after a tick)."""
        if not self.scripted or self.ledger is None:
            return
        if self.runner is not None:
            self.runner.wake()
            return

        plan, ledger, now = self.plan, self.ledger, self.clock.now()
        state = script_state(plan, ledger, now, scale=self.clock.scale)
        if state.record:  # e.g. the last manual task ticked here: the step is finished, say so in the ledger
            record(plan, ledger, list(state.record), now, self.app.reviewer)
            state = script_state(plan, ledger, now, scale=self.clock.scale)
        self.show_script(state)

    def show_script(self, state: ScriptState) -> None:
        self.script = state
        self.query_one("#timeline", ScriptTimeline).show(state)
        self.refresh_keys()
        self.update_status()

    def live_counts(self) -> None:
        """While a step sends, its count on the timeline follows the send's events (every flush)."""
        if self.script is None or not self.running:
            return

        timeline = self.query_one("#timeline", ScriptTimeline)
        per = self.table.per_communique
        timeline.live = {v.id: sum(per.get(c, {}).get(s, 0) for c in v.step.send for s in OUTCOME_STATES)
                         for v in self.script.steps}
        timeline.redraw()

    def after_recorded(self) -> None:
        self.refresh_script()  # a step may have been waiting for this tick

    # -- the run --

    def start_engine(self, *, retry_failed: bool = False, resend_in_doubt: bool = False) -> None:
        """A plan with a script runs it (the runner calls the engine step by step); others as before."""
        if not self.scripted:
            super().start_engine(retry_failed=retry_failed, resend_in_doubt=resend_in_doubt)
            return
        if self.running or self.ledger is None:
            return
        self.stopped, self.progress, self._cancelling = None, None, False
        self.paused, self.running = False, True
        spare_the_rows(young_first=False)
        self.show_banner("")
        self._flush_timer.resume()
        self.refresh_summary()
        self.start_script(retry_failed=retry_failed, resend_in_doubt=resend_in_doubt)

    def start_script(self, *, retry_failed: bool = False, resend_in_doubt: bool = False) -> None:
        login, host = who_am_i()
        self.runner = ScriptRunner(
            self.plan, self.ledger, clock=self.clock, on_event=self.on_engine_event,
            on_state=lambda state: self.post_message(self.ScriptChanged(state)),
            stop_when_halted=False, poll=1.0, who=login, host=host, password=self._password,
            retry_failed=retry_failed, resend_in_doubt=resend_in_doubt,
            engine_options={"progress_interval": 0.1})
        self.engine = self.runner  # pause, resume and cancel reach the step sending now
        self.script_ending = None
        self.run_worker(self.run_script(self.runner), group="send", exclusive=True, exit_on_error=False,
                        name="send")

    async def run_script(self, runner: ScriptRunner) -> None:

        try:
            result = await runner.run()
        except SendStopped as error:
            self.post_message(self.ScriptEnded(None, (error.message, error.hint)))
        except SendError as error:
            self.post_message(self.ScriptEnded(None, (error.message, error.hint)))
        else:
            self.post_message(self.ScriptEnded(result.ending, None))

    # Handlers by name (a mixin gets no @on): Textual finds them through the screen's classes.
    def on_script_controls_script_changed(self, message: "ScriptControls.ScriptChanged") -> None:
        self.show_script(message.state)

    def on_script_controls_script_ended(self, message: "ScriptControls.ScriptEnded") -> None:
        self.runner = None
        self.script_ending = message.ending
        self.post_message(self.RunEnded(None, message.stopped))
        self.refresh_script()

    # -- what the head and the status line say --

    def script_phase(self) -> str | None:
        state = self.script
        if state is None or not self.running:
            if self.script_ending == COMPLETE:
                return "script done"
            return None
        if state.halted is not None:
            return "halted"
        if any(v.status == CHECKPOINT for v in state.steps):
            return "at checkpoint"
        if self.runner is not None and self.runner.engine is None:
            return "waiting"
        return None

    def script_status(self) -> str | None:
        """The status line while the script waits for time or for the engineer."""
        state = self.script
        if state is None or self.paused:
            return None  # "Paused: ... space resumes" says it
        if state.halted is not None:
            return f"Halted after {state.halted.id}: {state.halted.reason}. f retries failed · r goes on anyway"
        at = next((v for v in state.steps if v.status == CHECKPOINT), None)
        if at is not None:
            return f"At checkpoint {at.id}: r releases it once it is true (the line above says what)"
        if not self.running:
            return None
        idle = self.runner is not None and self.runner.engine is None
        ticking = next((v for v in state.steps if v.to_tick), None)
        if ticking is not None and idle and not any(v.wait_open for v in state.steps):
            tasks = f"{ticking.to_tick} manual task{'s' if ticking.to_tick != 1 else ''}"
            return f"Waiting for {tasks} of {ticking.id}: enter on its row ticks it done"
        timed = next((v for v in state.steps if v.wait_open), None)
        if timed is not None and self.runner is not None and self.runner.engine is None:
            left = countdown(timed.until, self.clock.now())
            return f"Waiting: {timed.id} in {left}. w starts it now · x stops"
        return None

    # -- keys (which apply: send_keys.script_key) --

    def _done_so_far(self) -> str:
        state = self.script
        if state is None:
            return ""
        done = [f"{v.id} ({v.reason})" if v.reason else v.id for v in state.steps if v.status == DONE]
        return "Done so far: " + (", ".join(done) if done else "nothing") + "."

    def action_release_checkpoint(self) -> None:
        state = self.script
        if state is None:
            return
        if state.halted is not None:
            view = state.halted
            question = f"Go on after {view.id} despite the halt?"
            detail = f"{view.reason}. The next steps will send. {self._done_so_far()}"
            yes = "Go on anyway"
        else:
            view = next((v for v in state.steps if v.status == CHECKPOINT), None) or \
                next((v for v in state.steps if v.checkpoint_open and v.status != DONE), None)
            if view is None:
                return
            question = f"Release the checkpoint of {view.id}?"
            detail = f"{' '.join((view.step.checkpoint or '').split())}. {self._done_so_far()}"
            if view.wait_open:
                detail += f" It still waits: {view.reason.split(' · ')[0]}."
            yes = "Release"

        def answered(ok: bool | None) -> None:
            if ok:
                self._decide(lambda: self._release(view.id))

        self.app.push_screen(AskDialog(question, detail, yes=yes, no="Not yet", title="Checkpoint"), answered)

    def action_skip_wait(self) -> None:
        state = self.script
        view = next((v for v in state.steps if v.wait_open), None) if state else None
        if view is None:
            return

        def answered(ok: bool | None) -> None:
            if ok:
                self._decide(lambda: self._skip(view.id))

        what = view.reason.split(" · ")[0]
        self.app.push_screen(AskDialog(
            f"Start {view.id} now?", f"It is waiting: {what}. Skipping ends the wait (recorded in the ledger); "
            f"{'its checkpoint still asks first. ' if view.checkpoint_open else ''}{self._done_so_far()}",
            yes="Skip the wait", no="Keep waiting", title="Skip wait"), answered)

    def _release(self, step_id: str) -> str:

        if self.runner is not None:
            return self.runner.release(step_id)
        return release_checkpoint(self.plan, self.ledger, step_id, self.clock.now(),
                                  who=self.app.reviewer, scale=self.clock.scale)

    def _skip(self, step_id: str) -> str:

        if self.runner is not None:
            return self.runner.skip_wait(step_id)
        return skip_wait(self.plan, self.ledger, step_id, self.clock.now(), who=self.app.reviewer,
                         scale=self.clock.scale)

    def _decide(self, decide) -> None:
        try:
            said = decide()
        except ScriptError as error:
            self.notify(error.hint or "", title=error.message, severity="warning")
            return
        self.notify(said, title="Script")
        self.refresh_script()


__all__ = ["ScriptControls", "SCRIPT_BINDINGS", "HALTED", "SENDING_OVER", "STEP_HALTED"]
