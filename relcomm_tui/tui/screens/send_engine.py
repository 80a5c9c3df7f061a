"""The part of the send screen that drives a send: starting the engine under the rules, its events,
its end, leaving while it runs, and the ledger writes the screen's keys make.

`SendScreen` (send.py) is the screen; this base holds no layout. Starting a run asks
`app.readiness` (the checklist's rule, the one `relcomm send` applies) and `app.credentials`
(the password policy); ticking a manual step asks neither (it sends nothing) and writes the
ledger from a thread, as `relcomm confirm` does through the same `app.manual.tick`.
"""

from __future__ import annotations

import asyncio
import gc
from typing import TYPE_CHECKING, Callable

from textual import on, work
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from ...app import credentials, manual
from ...app.board import DONE_STATES, Board
from ...common.errors import UserError
from ...delivery.engine import (
    CommuniqueSkipped,
    DeliveryChanged,
    Progress,
    RunStopped,
    RunSummary,
    SendEngine,
    SendError,
    SendStopped,
    select_communiques,
    send_test_message,
)
from ...plan.model import Communique, Plan
from ...store.ledger import ACCEPTED, DEFERRED, IN_DOUBT, MARKED_DELIVERED, QUEUED, REJECTED, SENDING, Ledger, who_am_i
from ..dialogs.confirm_quit import ConfirmQuitDialog
from ..dialogs.password import PasswordDialog

if TYPE_CHECKING:
    from ...script.runner import ScriptRunner

FLUSH_SECONDS = 0.2


def spare_the_rows(*, young_first: bool = True) -> None:
    """Keep the collector's full passes short while a send runs: what has lived through a young
    collection (the plan, the 10,000 rows, the table as it fills) is frozen out of its sight
    until the screen closes. Called when a run starts and at every table update: a full pass over
    the rows stalled the UI 50-190 ms at a time mid-send (bench/send_screen.py). Young garbage is
    collected first, so what gets frozen is live; memory stays as without freezing (measured).
    Not at the start: the young generation then holds the 10,000 rows just made, a 70 ms pass."""
    if young_first:
        gc.collect(1)
    gc.freeze()


class SendEngineScreen(Screen):
    """Runs the engine for the send screen; the subclass shows rows, counts and status."""

    running: reactive[bool] = reactive(False, bindings=True)
    paused: reactive[bool] = reactive(False, bindings=True)

    class RunEnded(Message):
        """The engine's run is over: finished, cancelled, stopped, or refused to start."""

        def __init__(self, summary: RunSummary | None, stopped: tuple[str, str] | None) -> None:
            super().__init__()
            self.summary, self.stopped = summary, stopped

    class Recorded(Message):
        """A change made from this screen reached the ledger (or could not: `problem`)."""

        def __init__(self, ident: str, done: str, problem: tuple[str, str] | None = None) -> None:
            super().__init__()
            self.ident, self.done, self.problem = ident, done, problem

    def __init__(self, *, start: bool = False, only: list[str] | None = None, show_rate: bool = True) -> None:
        super().__init__()
        self.start_on_mount = start
        self.only = list(only or [])
        self.show_rate = show_rate  # snapshot tests turn this off: rate and ETA come from the wall clock
        self.board: Board | None = None
        self.skipped: dict[str, str] = {}
        self.engine: SendEngine | ScriptRunner | None = None  # with a script, its runner (send_script.py)
        self.progress: Progress | None = None
        self.stopped: tuple[str, str] | None = None
        self.last_summary: RunSummary | None = None
        self._pending: dict[str, DeliveryChanged] = {}
        self._password: str | None = None   # memory only, for this screen's runs
        self._after_run: Callable[[], object] | None = None
        self._asking_leave = False
        self._cancelling = False

    @property
    def plan(self) -> Plan:
        return self.app.plan

    @property
    def ledger(self) -> Ledger | None:
        return self.app.ledger

    @property
    def communiques(self) -> list[Communique]:
        return select_communiques(self.plan, self.only)

    # -- engine events --------------------------------------------------------------------

    def on_engine_event(self, event: object) -> None:
        """Called by the engine on this loop: only remember; `flush` shows it."""
        if isinstance(event, DeliveryChanged):
            self._pending[event.delivery_id] = event
            if event.state == SENDING or event.attempted:
                # Attempts are counted here: a coalesced batch may skip the `sending` event itself.
                row = self.rows.get(event.delivery_id)
                if row is not None:
                    row.attempts += 1
        elif isinstance(event, Progress):
            self.progress = event
        elif isinstance(event, CommuniqueSkipped):
            self.skipped[event.communique_id] = event.reason
        elif isinstance(event, RunStopped):
            self.stopped = (event.reason, event.hint)

    @work(thread=True, group="record", exit_on_error=False)
    def record(self, ident: str, done: str, note: str, *, tick: bool = True) -> None:
        """Tick a manual step (app.manual, as `relcomm confirm`) or mark delivered: the ledger
        syncs to disk, so off the event loop; the screen shows it when `Recorded` arrives."""
        if self.ledger is None:
            return
        try:
            if tick:
                manual.tick(self.plan, self.ledger, ident, self.app.reviewer, note)
            else:
                self.ledger.mark_delivered(ident, self.app.reviewer, note)
        except UserError as error:  # already done, not a manual delivery
            self.post_message(self.Recorded(ident, done, (error.message, error.hint or "")))
            return
        self.post_message(self.Recorded(ident, done))

    @on(Recorded)
    def recorded(self, message: Recorded) -> None:
        if message.problem:
            self.notify(message.problem[1], title=message.problem[0], severity="warning")
        else:
            self.notify(message.done, title="Recorded")
        record = self.ledger.delivery(message.ident) if self.ledger else None
        if record is not None and message.ident in self.rows:
            self.table.set(message.ident, record.state, record.reply or "", record.attempts)
        self.refresh_summary()
        self.update_detail()
        self.refresh_bindings()
        self.after_recorded()

    def after_recorded(self) -> None:
        """A tick or mark was written: the send screen's script part looks again (a step may wait for it)."""

    # -- leaving while a send runs --------------------------------------------------------

    def confirm_leave(self, then: Callable[[], object], *, leaving: str = "quit") -> bool:
        """If a send runs, ask first; on yes, cancel it, wait for the engine, then `then()`.
        Returns False when nothing runs (the caller goes ahead at once)."""
        if not self.running:
            return False
        if self._asking_leave:
            return True

        def answered(yes: bool | None) -> None:
            self._asking_leave = False
            if yes:
                self._after_run = then
                self.cancel_run()

        self._asking_leave = True
        done = sum(self.counts[s] for s in DONE_STATES)
        self.app.push_screen(ConfirmQuitDialog(done, len(self.rows), leaving=leaving), answered)
        return True

    def cancel_run(self) -> None:
        if self.engine is not None and self.running:
            self._cancelling = True
            self.engine.cancel()
            self.paused = False
            self.refresh_bindings()
            self.refresh_summary()

    # -- running the engine ---------------------------------------------------------------

    def with_password(self, then: Callable[[], object]) -> None:
        """Run `then` once the password policy (app.credentials) has one, or none is needed.

        A plain task, not a worker: it waits for the dialog, and a worker waiting on the user
        would hold up everything that waits for the app's workers."""
        if self._password is not None or not credentials.needs_password(self.plan):
            then()
            return

        async def ask(question: credentials.Ask) -> str | None:
            answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            self.app.push_screen(PasswordDialog(question.account, question.why),
                                 lambda typed: answer.done() or answer.set_result(typed))
            return await answer

        async def obtain() -> None:
            try:
                self._password = await credentials.smtp_password_async(self.plan, ask)
            except credentials.NoPassword:
                self.notify("Nothing was sent: no password given.", title="Send", severity="warning")
                return
            then()

        self._asking_password = asyncio.get_running_loop().create_task(obtain())

    def tick(self) -> None:
        """The table's update, every FLUSH_SECONDS while a run goes on. Only while messages go out:
        at a script's hour-long wait nothing new is frozen, and the collector keeps its usual pace."""
        busy = bool(self._pending)
        self.flush()
        if self.running and busy:
            spare_the_rows()

    def flush(self) -> None:
        """Show what the engine reported since the last one (the subclass draws it)."""

    def on_unmount(self) -> None:
        gc.unfreeze()
        task = getattr(self, "_asking_password", None)
        if task is not None:
            task.cancel()

    def begin_run(self, *, retry_failed: bool = False, resend_in_doubt: bool = False) -> None:
        if self.running or self.ledger is None:
            return
        counts = self.counts
        left = counts[QUEUED] + counts[DEFERRED] + (counts[REJECTED] if retry_failed else 0) \
            + (counts[IN_DOUBT] if resend_in_doubt else 0)
        answer = self.app.readiness(retry_failed=retry_failed, resend_in_doubt=resend_in_doubt, left=left)
        if answer is None or answer.reasons:
            why = answer.locked_text() if answer is not None else "the checklist's checks are not known"
            self.notify(f"{why}. Back on the checklist (escape) you can clear it.", title="Not sending",
                        severity="warning", timeout=10)
            return
        start = lambda: self.start_engine(retry_failed=retry_failed, resend_in_doubt=resend_in_doubt)  # noqa: E731
        if any(c.channel == "email" for c in self.communiques):
            self.with_password(start)
        else:
            start()

    def start_engine(self, *, retry_failed: bool = False, resend_in_doubt: bool = False) -> None:
        if self.running or self.ledger is None:
            return
        login, host = who_am_i()
        self.engine = SendEngine(
            self.plan, self.ledger, only=self.only or None, password=self._password,
            retry_failed=retry_failed, resend_in_doubt=resend_in_doubt, on_event=self.on_engine_event,
            who=login, host=host, progress_interval=FLUSH_SECONDS)
        self.stopped, self.progress, self._cancelling = None, None, False
        self.paused, self.running = False, True
        spare_the_rows(young_first=False)
        self.show_banner("")
        self._flush_timer.resume()
        self.refresh_summary()
        self.run_worker(self.run_engine(self.engine), group="send", exclusive=True, exit_on_error=False, name="send")

    async def run_engine(self, engine: SendEngine) -> None:
        try:
            summary = await engine.run()
        except SendStopped as error:
            self.post_message(self.RunEnded(error.summary, (error.message, error.hint)))
        except SendError as error:
            self.post_message(self.RunEnded(None, (error.message, error.hint)))
        else:
            self.post_message(self.RunEnded(summary, None))

    @on(RunEnded)
    def run_ended(self, message: RunEnded) -> None:
        self.flush()
        self._flush_timer.pause()
        self.running = self.paused = self._cancelling = False
        self.last_summary = message.summary
        # On this screen the banner and the status line say it; elsewhere a notification does.
        away = self.app.screen is not self
        if message.stopped:
            self.stopped = message.stopped
            reason, hint = message.stopped
            self.show_banner(f"Sending stopped: {reason}" + (f". {hint}" if hint else ""), "error")
            if away:
                self.notify(hint or "The ledger shows where things stand.", title=f"Sending stopped: {reason}",
                            severity="error", timeout=10)
        elif away:
            done = self.counts[ACCEPTED] + self.counts[MARKED_DELIVERED]
            self.notify(f"{done} of {len(self.rows)} delivered; {self.status_text()}", title="Send finished")
        self.refresh_summary()
        self.refresh_bindings()
        then, self._after_run = self._after_run, None
        if then is not None:
            then()

    @on(Worker.StateChanged)
    def worker_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "send" and event.state == WorkerState.ERROR and self.running:
            # A bug, not a user error: say so plainly; the ledger still says where things stand.
            self.post_message(self.RunEnded(None, (f"internal error: {event.worker.error}",
                                                   "please report this; the ledger says exactly where the send stands")))
        elif event.worker.group in ("send-test", "record") and event.state == WorkerState.ERROR:
            self.notify(str(event.worker.error), title="Test send failed" if event.worker.group == "send-test"
                        else "Not recorded", severity="error")

    @work(group="send-test", exclusive=True, exit_on_error=False)
    async def run_test_send(self, communique_id: str | None) -> None:
        assert self.ledger is not None
        self.notify("Sending a test message…", title="Test send", timeout=3)
        try:
            result = await send_test_message(self.plan, self.ledger, communique_id=communique_id,
                                             password=self._password, who=self.app.reviewer)
        except SendError as error:
            self.notify(error.hint or "Nothing was sent to the stakeholders.", title=f"Test send: {error.message}",
                        severity="error", timeout=10)
            return
        self.notify(f"{result.subject}\n{result.reply}", title=f"Test message sent to {result.to}", timeout=8)
