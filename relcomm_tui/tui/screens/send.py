"""The send screen: per-recipient progress of a send, and the keys to steer it.

Its rows are `app.board`'s (the rows `relcomm status` prints), shown by `widgets.DeliveryTable`,
so reopening after a quit or a crash shows exactly where things stand, in-doubt rows included.
The engine runs in an async worker (group "send"); its events land in a dict of latest state per
delivery and are applied together on a 100 ms timer, so a burst of events costs one repaint.
Driving the engine (the rules a run starts under, its events, leaving while it runs) is the base
class's, in send_engine.py; the script's part is send_script.py; which keys apply now is decided in
send_keys.py (no Textual). This module is what the screen shows and what its keys do.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import Footer, Static

from ...app.board import DONE_STATES, Board, board, deliveries, follow_up_note
from ...plan.model import Plan
from ...store.ledger import DEFERRED, FINAL_STATES, IN_DOUBT, QUEUED, REJECTED, STATE_LABELS
from ..dialogs.ask import AskDialog
from ..dialogs.confirm_send import ConfirmSendDialog
from ..dialogs.manual_done import ManualDoneDialog
from ..text import plain, visible
from ..widgets.line import Line
from ..widgets.delivery_table import DeliveryTable, Row, one_line
from ..widgets.detail_pane import DetailPane
from ..widgets.filter_bar import FilterBar
from ..widgets.send_progress import clock, compose_bars, counts_line, status_text, update_bars
from .send_engine import FLUSH_SECONDS, SendEngineScreen
from .send_keys import GREYED_BECAUSE, KEY_ACTIONS, KeyState, offered
from .send_script import SCRIPT_BINDINGS, ScriptControls

FAILED_STATES = frozenset({DEFERRED, REJECTED})
__all__ = ["SendScreen", "confirm_send_dialog", "one_line"]


def confirm_send_dialog(plan: Plan, where: Board, deliveries_left: int | None = None,
                        warnings: tuple[str, ...] = ()) -> ConfirmSendDialog:
    """The typed confirmation, counted by the board as the send screen counts (deliveries)."""
    release = plan.release
    question = None if deliveries_left is not None else where.send_question(release.name, release.version)
    return ConfirmSendDialog(release.name, release.version, deliveries_left=deliveries_left, question=question,
                             notes=(*warnings, follow_up_note(plan, where.send_ids)))


class SendScreen(ScriptControls, SendEngineScreen):
    """Send the plan's communiques and watch every delivery; pause, cancel, retry, resend."""

    CSS_PATH = "send.tcss"
    HELP_TITLE = "Send"
    AUTO_FOCUS = "#deliveries"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    _table: DeliveryTable | None = None
    BINDINGS = [
        Binding("space", "pause", "Pause", id="pause", tooltip="Start no new message until resumed"),
        Binding("space", "resume", "Resume", id="resume", tooltip="Carry on sending"),
        Binding("space", "continue", "Send", id="continue", tooltip="Send what is not sent yet (asks first)"),
        Binding("x", "cancel", "Cancel", id="cancel", tooltip="Stop the send (asks first); nothing is lost"),
        *SCRIPT_BINDINGS,  # hidden for a plan without a script
        Binding("f", "retry_failed", "Retry", id="retry-failed", tooltip="Send the deferred and rejected again"),
        Binding("d", "resend_in_doubt", "Resend", id="resend-in-doubt",
                tooltip="Resend in-doubt deliveries with the same Message-ID (asks first)"),
        Binding("m", "mark_delivered", "Mark", id="mark-delivered",
                tooltip="Mark the highlighted in-doubt delivery as delivered (never sent again)"),
        Binding("t", "test_send", "Test", id="test-send", show=False,
                tooltip="Send the highlighted communique to your own address, [TEST] in the subject"),
        # enter is the table's too: priority, so the footer, the help and the status line all say enter.
        Binding("enter", "tick_manual", "Done", id="tick-manual", priority=True,
                tooltip="Tick the highlighted manual step done"),
        Binding("o", "tick_manual", "Done", id="tick-manual-o", show=False, tooltip="Tick the highlighted manual step done"),
        Binding("c", "receipts", "Receipts", id="send-receipts",
                tooltip="Who received each communique: receipts, coverage, follow-up"),
        Binding("slash", "find", "Filter", id="send-find", show=False,
                tooltip="Show only deliveries with these words (a name, a state, a reply); escape clears"),
        Binding("escape", "back", "Back", id="back", show=False, tooltip="Back to the checklist"),
    ]

    @property
    def table(self) -> DeliveryTable:
        # Kept from compose, not queried: the footer asks check_action for every key on every
        # refresh, also while the screen is being taken down and its widgets are already gone.
        assert self._table is not None, "the send screen's table is made in compose"
        return self._table

    @property
    def rows(self) -> dict[str, Row]:
        return self.table.deliveries

    @property
    def counts(self):
        return self.table.counts

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        self.board = board(self.plan, self.ledger, self.only or None)
        self._table = DeliveryTable(id="deliveries")
        yield Line(id="send-head")
        yield Static(id="banner", markup=False)
        if self.scripted:
            yield self.compose_timeline()  # the script's steps stand in for the per-communique bars
        yield from compose_bars(self.board.communique_ids)
        yield Line(id="counts")
        yield FilterBar(id="deliveries-find", target="#deliveries")
        yield self._table
        yield DetailPane(id="detail")
        yield Line(id="send-status")
        yield Footer(compact=True, show_command_palette=False)  # ctrl+p is in the help: keys fit 80 columns

    def on_mount(self) -> None:
        self.query_one("#communiques").border_title = "Communiques"
        self.query_one("#communiques").display = not self.scripted
        table = self.table
        table.load(self.board.rows if self.board else ())
        self.refresh_summary()
        if self.counts[IN_DOUBT]:
            table.move_to(table.first(IN_DOUBT))
            self.show_banner(
                f"{deliveries(self.counts[IN_DOUBT])} in doubt: an earlier send stopped before the server's reply "
                "was recorded, so they may have arrived. d resends them with the same Message-ID; m marks the "
                "highlighted one delivered.", "warning")
        self.update_detail()
        self._flush_timer = self.set_interval(FLUSH_SECONDS, self.tick, pause=True)
        self.refresh_script()
        if self.ledger is None:
            self.show_banner(self.app.ledger_problem or "The ledger cannot be opened, so nothing can be sent.", "error")
        elif self.start_on_mount:
            self.begin_run()

    def flush(self) -> None:
        """Apply every delivery's latest state at once."""
        pending, self._pending = self._pending, {}
        if pending:
            self.table.apply(pending, self.plan)
            if self.highlighted_id() in pending:
                self.update_detail()
            self.refresh_keys()
        self.refresh_summary()

    def refresh_keys(self) -> None:
        """Refresh the footer only when a key's availability changed: the footer rebuilds itself
        on every refresh, which at ten flushes a second would eat the send's time."""
        now = self.key_state()
        signature = tuple(offered(action, now) for action in KEY_ACTIONS)
        if signature != getattr(self, "_keys_signature", None):
            self._keys_signature = signature
            self.refresh_bindings()

    # -- summary: head line, bars, counts, status ----------------------------------------

    def refresh_summary(self) -> None:
        counts = self.counts
        done = sum(counts[s] for s in DONE_STATES)
        release = self.plan.release
        phase = self.phase()
        head = [(visible(f"{release.name} {release.version}"), "bold"), "  ",
                (phase, "bold $accent"), f"  {done}/{len(self.rows)} done"]
        # Rate and ETA only while messages go out: at a script's wait or checkpoint they are stale
        # ("ETA 0:00" while the script waits an hour reads as "almost done").
        if self.show_rate and self.running and self.progress is not None and phase == "sending":
            head.append(f"  {self.progress.rate:.1f} msg/s  ETA {clock(self.progress.eta_seconds)}")
        self.query_one("#send-head", Line).update(Content.assemble(*head))
        update_bars(self, counts, self.table.per_communique, self.skipped)
        self.query_one("#counts", Line).update(counts_line(counts))
        if self.scripted:
            self.live_counts()
        self.update_status()

    def phase(self) -> str:
        if self.scripted and (scripted := self.script_phase()):
            return scripted
        if self.running:
            return "cancelling" if self._cancelling else "paused" if self.paused else "sending"
        if self.stopped:
            return "stopped"
        if self.last_summary is not None:
            return "cancelled" if self.last_summary.cancelled else "finished"
        return "not sending"

    def status_text(self) -> str:
        if self.scripted and (scripted := self.script_status()) and not (self.running and self._cancelling):
            return scripted
        return status_text(self.counts, running=self.running, paused=self.paused, cancelling=self._cancelling,
                           stopped=self.stopped)

    def update_status(self) -> None:
        status = self.query_one("#send-status", Line)
        status.update(plain(self.status_text()))
        trouble = self.counts[DEFERRED] + self.counts[REJECTED] + self.counts[IN_DOUBT]
        status.set_class(bool(self.stopped) and not self.running, "-error")
        status.set_class(not self.stopped and not self.running and trouble > 0, "-warning")

    def show_banner(self, text: str, severity: str = "error") -> None:
        banner = self.query_one("#banner", Static)
        banner.update(plain(text))
        banner.display = bool(text)
        for kind in ("error", "warning", "information"):
            banner.set_class(kind == severity, f"-{kind}")

    # -- the highlighted row --------------------------------------------------------------

    def highlighted_id(self) -> str | None:
        return self.table.highlighted_id()

    def highlighted_row(self) -> Row | None:
        return self.table.highlighted()

    @on(DeliveryTable.RowHighlighted, "#deliveries")
    def row_highlighted(self) -> None:
        self.update_detail()
        self.refresh_bindings()

    @on(DeliveryTable.RowSelected, "#deliveries")
    def row_selected(self) -> None:
        # The table takes enter for itself; on an open manual step it means "done".
        if self.check_action("tick_manual", ()):
            self.action_tick_manual()

    def update_detail(self) -> None:
        ident, row = self.highlighted_id(), self.highlighted_row()
        record = self.ledger.delivery(ident) if self.ledger and ident is not None and row is not None else None
        self.detail.show(self.plan, row, record.message_id if record is not None else None)

    @property
    def detail(self) -> DetailPane:
        return self.query_one("#detail", DetailPane)

    # -- keys -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return offered(action, self.key_state())  # send_keys.py: which keys apply, and why not

    def key_state(self) -> KeyState:
        """What the keys depend on, read off the screen now."""
        table, ledger_open = self._table, self.ledger is not None
        if table is None:  # not composed yet: no row to act on
            return KeyState(composed=False, ledger_open=ledger_open, scripted=self.scripted, script=self.script)
        manual = [c.id for c in self.communiques if c.channel == "manual"]
        per = table.per_communique
        open_steps = sum(n for ident in manual for state, n in per.get(ident, {}).items() if state not in FINAL_STATES)
        return KeyState(running=self.running, paused=self.paused, cancelling=self._cancelling, ledger_open=ledger_open,
                        counts=table.counts, highlighted=table.highlighted(), open_manual_steps=open_steps,
                        filtering=isinstance(self.focused, FilterBar),  # enter while filtering is the filter's
                        emails=any(c.channel == "email" for c in self.plan.communiques),
                        scripted=self.scripted, script=self.script)

    def disabled_reason(self, action: str) -> str:
        """Why a key is greyed out (the command palette shows this)."""
        return GREYED_BECAUSE.get(action, "")

    def action_pause(self) -> None:
        if self.engine is not None and self.running:
            self.engine.pause()
            self.paused = True
            self.refresh_summary()

    def action_resume(self) -> None:
        if self.engine is not None and self.running:
            self.engine.resume()
            self.paused = False
            self.refresh_summary()

    def action_continue(self) -> None:
        left = self.counts[QUEUED] + self.counts[DEFERRED]
        where = self.board or board(self.plan, self.ledger, self.only or None)
        self.app.push_screen(confirm_send_dialog(self.plan, where, deliveries_left=left),
                             lambda yes: self.begin_run() if yes else None)

    def action_cancel(self) -> None:
        self.app.push_screen(AskDialog(
            "Cancel the send?",
            "No new message is started; those already talking to the server get their replies recorded. "
            "What is not sent stays queued: space sends it later.",
            yes="Cancel the send", no="Keep sending", title="Cancel"), lambda yes: self.cancel_run() if yes else None)

    def action_retry_failed(self) -> None:
        self.begin_run(retry_failed=True)

    def action_resend_in_doubt(self) -> None:
        self.app.push_screen(AskDialog(
            f"Resend {deliveries(self.counts[IN_DOUBT], 'in-doubt')}?",
            "These may already have arrived; resend with the same Message-ID? Mail clients that got the "
            "first copy can then drop the second. If you know one arrived, mark it delivered (m) instead.",
            yes="Resend", no="Not now", title="Resend in doubt"),
            lambda yes: self.begin_run(resend_in_doubt=True) if yes else None)

    def action_mark_delivered(self) -> None:
        ident, row = self.highlighted_id(), self.highlighted_row()
        if ident is None or row is None or row.state != IN_DOUBT:
            return
        self.app.push_screen(ManualDoneDialog(
            f"{row.recipient}: {row.communique_id}",
            "Only if you know it arrived (the recipient confirmed, or the server's log shows it). "
            "It will never be sent again.", title="Mark delivered"),
            lambda note: self.record(ident, f"{row.recipient}: marked delivered", note, tick=False)
            if note is not None else None)

    def action_tick_manual(self) -> None:
        ident, row = self.highlighted_id(), self.highlighted_row()
        if ident is None or row is None or row.channel != "manual" or row.state in FINAL_STATES:
            return
        instructions = self.detail.instructions(self.plan, row)
        self.app.push_screen(ManualDoneDialog(f"{row.communique_id}: {row.recipient}", instructions,
                                              title="Manual step done"),
                             lambda note: self.record(ident, f"{row.recipient}: done", note)
                             if note is not None else None)

    def action_test_send(self) -> None:
        row = self.highlighted_row()
        communique = self.plan.communique(row.communique_id) if row else None
        chosen = communique.id if communique is not None and communique.channel == "email" else None
        self.with_password(lambda: self.run_test_send(chosen))

    def action_receipts(self) -> None:
        self.app.action_open_receipts()

    def action_find(self) -> None:
        self.query_one("#deliveries-find", FilterBar).open()

    def on_filter_bar_narrowed(self, message: FilterBar.Narrowed) -> None:
        # Typing into 10,000 rows: narrow once the keys pause, not on every key.
        timer = getattr(self, "_find_timer", None)
        if timer is not None:
            timer.stop()
        self._find_timer = self.set_timer(0.15, self.apply_find)

    def apply_find(self) -> None:
        bar = self.query_one("#deliveries-find", FilterBar)
        matches = (lambda row: bar.matches(row.recipient, row.communique_id, row.channel,
                                           STATE_LABELS.get(row.state, row.state), row.reply)) if bar.words() else None
        self.table.narrow(matches)
        self.update_detail()
        self.refresh_bindings()

    def action_back(self) -> None:
        if self.query_one("#deliveries-find", FilterBar).clear_if_kept():
            return  # escape first undoes the filter the table shows, as in lazygit
        if not self.confirm_leave(self.dismiss_screen, leaving="go back"):
            self.dismiss_screen()

    def dismiss_screen(self) -> None:
        if self.app.screen is self:
            self.app.pop_screen()
