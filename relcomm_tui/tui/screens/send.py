"""The send screen: per-recipient progress of a send, and the keys to steer it.

One row per delivery (row key = the delivery's stable id), added once and then updated in place,
so the cursor and scroll survive 10,000 recipients. The table is filled from the ledger when the
screen opens, so reopening after a quit or a crash shows exactly where things stand, in-doubt
rows included. The engine runs in an async worker (group "send"); its events land in a dict of
latest state per delivery and are applied together on a 100 ms timer, so a burst of events costs
one repaint, not one per event.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, ProgressBar, Static
from textual.worker import Worker, WorkerState

from ...delivery.engine import (
    CommuniqueSkipped, DeliveryChanged, delivery_audience, Progress, RunStopped, RunSummary, SendEngine, SendError, SendStopped,
    select_communiques, send_test_message, sender_domain,
)
from ...store.ledger import (
    ACCEPTED, AWAITING, DEFERRED, FINAL_STATES, IN_DOUBT, MARKED_DELIVERED, QUEUED, REJECTED, SENDING, STATE_LABELS,
    DeliveryIntent, Ledger, delivery_id, who_am_i,
)
from ...plan.model import Communique, Plan
from ..dialogs.ask import AskDialog
from ..dialogs.confirm_quit import ConfirmQuitDialog
from ..dialogs.confirm_send import ConfirmSendDialog
from ..dialogs.manual_done import ManualDoneDialog
from ..dialogs.password import PasswordDialog
from ..text import plain, visible
from ...common.text import plural

FLUSH_SECONDS = 0.1
COLUMNS = (("state", "State", 9), ("communique", "Communique", 16), ("recipient", "Recipient", 24),
           ("tries", "#", 2), ("reply", "Problem", 70))
# Finished for this run: nothing more happens to these without the user asking.
DONE_STATES = frozenset({ACCEPTED, MARKED_DELIVERED, REJECTED, IN_DOUBT})
FAILED_STATES = frozenset({DEFERRED, REJECTED})
# Theme variable per state: the table's state column and the counts line share them.
STATE_COLOURS = {QUEUED: "foreground-muted", SENDING: "accent", ACCEPTED: "success", DEFERRED: "warning",
                 REJECTED: "error", IN_DOUBT: "warning", MARKED_DELIVERED: "success", AWAITING: "primary"}
SHORT_LABELS = {MARKED_DELIVERED: "marked ✓", AWAITING: "to do"}
COUNT_ORDER = (ACCEPTED, MARKED_DELIVERED, REJECTED, IN_DOUBT, DEFERRED, AWAITING, SENDING, QUEUED)
KEY_ACTIONS = ("pause", "resume", "continue", "cancel", "retry_failed", "resend_in_doubt", "mark_delivered",
               "tick_manual", "test_send")
IN_DOUBT_EXPLAINED = ("in doubt: the connection ended after the whole message was sent, before the server "
                      "answered, so it may have arrived")


@dataclass
class Row:
    """What the table shows for one delivery, kept so counts and the detail pane need no query."""

    communique_id: str
    channel: str
    recipient: str
    state: str
    reply: str
    attempts: int


def deliveries(count: int, adjective: str = "") -> str:
    return f"{count} {adjective + ' ' if adjective else ''}{'delivery' if count == 1 else 'deliveries'}"


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def audience_size(plan: Plan, communiques: list[Communique]) -> int:
    """How many different people a send reaches (the confirmation's "to N recipients")."""
    people: set[str] = set()
    for communique in communiques:
        people.update(recipient.key for _, recipient in plan.audience(communique))
    return len(people)


def confirm_send_dialog(plan: Plan, only: list[str] | None = None, deliveries_left: int | None = None) -> ConfirmSendDialog:
    communiques = select_communiques(plan, only)
    return ConfirmSendDialog(plan.release.name, plan.release.version, audience_size(plan, communiques),
                             len(communiques), deliveries_left=deliveries_left)


def has_history(ledger: Ledger | None, plan: Plan) -> bool:
    """True when this release was sent before: the send screen then opens on where things stand."""
    return ledger is not None and any(ledger.counts(plan.release.version).values())


class SendScreen(Screen):
    """Send the plan's communiques and watch every delivery; pause, cancel, retry, resend."""

    CSS_PATH = "send.tcss"
    HELP_TITLE = "Send"
    AUTO_FOCUS = "#deliveries"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("space", "pause", "Pause", id="pause", tooltip="Start no new message until resumed"),
        Binding("space", "resume", "Resume", id="resume", tooltip="Carry on sending"),
        Binding("space", "continue", "Send", id="continue", tooltip="Send what is not sent yet (asks first)"),
        Binding("x", "cancel", "Cancel", id="cancel", tooltip="Stop the send (asks first); nothing is lost"),
        Binding("f", "retry_failed", "Retry", id="retry-failed", tooltip="Send the deferred and rejected again"),
        Binding("d", "resend_in_doubt", "Resend", id="resend-in-doubt",
                tooltip="Resend in-doubt deliveries with the same Message-ID (asks first)"),
        Binding("m", "mark_delivered", "Mark", id="mark-delivered",
                tooltip="Mark the highlighted in-doubt delivery as delivered (never sent again)"),
        Binding("t", "test_send", "Test", id="test-send",
                tooltip="Send the highlighted communique to your own address, [TEST] in the subject"),
        Binding("enter,o", "tick_manual", "Done", id="tick-manual", tooltip="Tick the highlighted manual step done"),
        Binding("escape", "back", "Back", id="back", show=False, tooltip="Back to the checklist"),
    ]

    running: reactive[bool] = reactive(False, bindings=True)
    paused: reactive[bool] = reactive(False, bindings=True)

    class RunEnded(Message):
        """The engine's run is over: finished, cancelled, stopped, or refused to start."""

        def __init__(self, summary: RunSummary | None, stopped: tuple[str, str] | None) -> None:
            super().__init__()
            self.summary, self.stopped = summary, stopped

    class PasswordAnswer(Message):
        """The plan's password reference resolved (`password`) or not (`why`)."""

        def __init__(self, password: str | None, why: str) -> None:
            super().__init__()
            self.password, self.why = password, why

    def __init__(self, *, start: bool = False, only: list[str] | None = None, show_rate: bool = True) -> None:
        super().__init__()
        self.start_on_mount = start
        self.only = list(only or [])
        # Snapshot tests turn this off: rate and ETA come from the wall clock.
        self.show_rate = show_rate
        self.rows: dict[str, Row] = {}
        self.counts: Counter[str] = Counter()
        self.per_communique: dict[str, Counter[str]] = {}
        self.skipped: dict[str, str] = {}
        self.engine: SendEngine | None = None
        self.progress: Progress | None = None
        self.stopped: tuple[str, str] | None = None
        self.last_summary: RunSummary | None = None
        self._pending: dict[str, DeliveryChanged] = {}
        self._password: str | None = None   # memory only, for this screen's runs
        self._run_flags: dict[str, bool] = {}
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

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="send-head")
        yield Static(id="banner", markup=False)
        with Horizontal(id="overall"):
            yield Label("All", classes="bar-name")
            yield ProgressBar(total=1, show_eta=False, show_percentage=False, id="overall-bar")
            yield Label("", id="overall-count", classes="bar-count")
        with VerticalScroll(id="communiques"):
            for communique in self.communiques:
                with Horizontal(classes="communique", id=f"c-{communique.id}"):
                    yield Label(visible(communique.id), classes="bar-name", markup=False)
                    yield ProgressBar(total=1, show_eta=False, show_percentage=False)
                    yield Label("", classes="bar-count", markup=False)
        yield Static(id="counts")
        table: DataTable = DataTable(id="deliveries", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static(id="detail")
        yield Static(id="send-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#deliveries", DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        self.query_one("#communiques").border_title = "Communiques"
        self.fill_from_ledger()
        self._flush_timer = self.set_interval(FLUSH_SECONDS, self.flush, pause=True)
        if self.ledger is None:
            self.show_banner(self.app.ledger_problem or "The ledger cannot be opened, so nothing can be sent.", "error")
        elif self.start_on_mount:
            self.begin_run()

    # -- filling the table ----------------------------------------------------------------

    def fill_from_ledger(self) -> None:
        """Every delivery of this send, in plan order: as the ledger has it, else `queued`."""
        plan = self.plan
        release = plan.release.version
        records = {r.id: r for r in self.ledger.deliveries(release)} if self.ledger else {}
        wanted = {c.id for c in self.communiques}
        rows: list[tuple[str, Row]] = []
        for communique in self.communiques:
            self.per_communique[communique.id] = Counter()
            # One row per person (email, manual), one per post (webhook, publish, pager): the engine's ids.
            for _group, recipient in delivery_audience(plan, communique):
                ident = delivery_id(release, communique.id, recipient.key)
                record = records.pop(ident, None)
                if record is None:
                    rows.append((ident, Row(communique.id, communique.channel, recipient.display, QUEUED, "", 0)))
                else:
                    rows.append((ident, Row(communique.id, record.channel, record.recipient_display, record.state,
                                            record.reply or "", record.attempts)))
        for record in records.values():  # history: people no longer in the plan
            if record.communique_id in wanted:
                rows.append((record.id, Row(record.communique_id, record.channel, record.recipient_display,
                                            record.state, record.reply or "", record.attempts)))
        table = self.query_one("#deliveries", DataTable)
        for ident, row in rows:
            self._add_row(table, ident, row)
        self.refresh_summary()
        if self.counts[IN_DOUBT]:
            first = next(ident for ident, row in self.rows.items() if row.state == IN_DOUBT)
            table.move_cursor(row=table.get_row_index(first))
            self.show_banner(
                f"{deliveries(self.counts[IN_DOUBT])} in doubt: an earlier send stopped before the server's reply was recorded, so they may have "
                "arrived. d resends them with the same Message-ID; m marks the highlighted one delivered.",
                "warning")
        self.update_detail()

    def _add_row(self, table: DataTable, ident: str, row: Row) -> None:
        self.rows[ident] = row
        self.counts[row.state] += 1
        self.per_communique.setdefault(row.communique_id, Counter())[row.state] += 1
        table.add_row(*self._cells(row), key=ident)

    def _cells(self, row: Row) -> tuple[Text, Text, Text, Text, Text]:
        return (self._state_cell(row.state), Text(visible(row.communique_id)), Text(visible(row.recipient)),
                Text(str(row.attempts) if row.attempts else "", justify="right"), self._reply_cell(row))

    @staticmethod
    def _reply_cell(row: Row) -> Text:
        # Only what went wrong belongs in the table; an accepted row's reply is in the detail pane.
        return Text("" if row.state in FINAL_STATES else one_line(row.reply))

    def _state_cell(self, state: str) -> Text:
        colour = self.app.theme_variables.get(STATE_COLOURS.get(state, "foreground"), "")
        style = f"bold {colour}" if state in (REJECTED, IN_DOUBT) else colour
        if state == IN_DOUBT:
            style += " reverse"
        return Text(SHORT_LABELS.get(state, STATE_LABELS.get(state, state)), style=style.strip())

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

    def flush(self) -> None:
        """Apply every delivery's latest state at once."""
        pending, self._pending = self._pending, {}
        if pending:
            table = self.query_one("#deliveries", DataTable)
            for ident, event in pending.items():
                row = self.rows.get(ident)
                if row is None:
                    channel = self.plan.communique(event.communique_id)
                    row = Row(event.communique_id, channel.channel if channel else "", event.recipient,
                              event.state, event.detail, 1 if event.state == SENDING else 0)
                    self._add_row(table, ident, row)
                    continue
                self._set_row(table, ident, row, event.state, event.detail or row.reply)
            highlighted = self.highlighted_id()
            if highlighted in pending:
                self.update_detail()
            self.refresh_keys()
        self.refresh_summary()

    def refresh_keys(self) -> None:
        """Refresh the footer only when a key's availability changed: the footer rebuilds itself
        on every refresh, which at ten flushes a second would eat the send's time."""
        signature = tuple(self.check_action(action, ()) for action in KEY_ACTIONS)
        if signature != getattr(self, "_keys_signature", None):
            self._keys_signature = signature
            self.refresh_bindings()

    def _set_row(self, table: DataTable, ident: str, row: Row, state: str, reply: str) -> None:
        if state != row.state:
            self.counts[row.state] -= 1
            self.counts[state] += 1
            per = self.per_communique.setdefault(row.communique_id, Counter())
            per[row.state] -= 1
            per[state] += 1
            row.state = state
            table.update_cell(ident, "state", self._state_cell(state))
        if state == SENDING:
            reply = ""  # a new attempt: the previous attempt's words no longer apply
        if reply != row.reply or state in FINAL_STATES:
            row.reply = reply
            table.update_cell(ident, "reply", self._reply_cell(row))
        table.update_cell(ident, "tries", Text(str(row.attempts) if row.attempts else "", justify="right"))

    # -- summary: head line, bars, counts, status ----------------------------------------

    def refresh_summary(self) -> None:
        total = len(self.rows)
        done = sum(self.counts[s] for s in DONE_STATES)
        release = self.plan.release
        head = [(visible(f"{release.name} {release.version}"), "bold"), "  ",
                (self.phase(), "bold $accent"), f"  {done}/{total} done"]
        if self.show_rate and self.running and self.progress is not None:
            head.append(f"  {self.progress.rate:.1f} msg/s  ETA {clock(self.progress.eta_seconds)}")
        self.query_one("#send-head", Static).update(Content.assemble(*head))
        self.query_one("#overall-bar", ProgressBar).update(total=max(total, 1), progress=done)
        self.query_one("#overall-count", Label).update(f"{done}/{total}")
        for communique in self.communiques:
            box = self.query_one(f"#c-{communique.id}")
            per = self.per_communique.get(communique.id, Counter())
            size = sum(per.values())
            finished = sum(per[s] for s in DONE_STATES)
            bar = box.query_one(ProgressBar)
            count = box.query_one(".bar-count", Label)
            if communique.id in self.skipped and size == 0:
                bar.display = False
                count.update(plain(self.skipped[communique.id]))
                continue
            bar.display = True
            bar.update(total=max(size, 1), progress=finished)
            trouble = [f"{per[s]} {STATE_LABELS[s]}" for s in (REJECTED, IN_DOUBT, DEFERRED) if per[s]]
            count.update(f"{finished}/{size}" + (f" ({', '.join(trouble)})" if trouble else ""))
        parts: list[Content] = []
        for state in COUNT_ORDER:
            if self.counts[state] or state in (ACCEPTED, REJECTED, IN_DOUBT):
                parts.append(Content.styled(f"{self.counts[state]} {STATE_LABELS[state]}",
                                            f"${STATE_COLOURS[state]}"))
        self.query_one("#counts", Static).update(Content(" · ").join(parts))
        self.update_status()

    def phase(self) -> str:
        if self.running:
            if self._cancelling:
                return "cancelling"
            return "paused" if self.paused else "sending"
        if self.stopped:
            return "stopped"
        if self.last_summary is not None:
            return "cancelled" if self.last_summary.cancelled else "finished"
        return "not sending"

    def status_text(self) -> str:
        failed = self.counts[DEFERRED] + self.counts[REJECTED]
        left = self.counts[QUEUED] + self.counts[DEFERRED]
        if self.running and self._cancelling:
            text = "Cancelling: waiting for the replies of messages already sent…"
        elif self.running and self.paused:
            text = "Paused: messages already talking to the server finish. space resumes."
        elif self.running:
            text = "Sending. space pauses · x cancels"
        elif self.stopped:
            text = f"Stopped: {self.stopped[0]}"
        elif self.counts[IN_DOUBT]:
            text = f"{deliveries(self.counts[IN_DOUBT])} in doubt: d resends, m marks delivered."
        elif failed:
            text = f"{deliveries(failed)} not delivered: f retries them."
        elif left:
            text = f"{deliveries(left)} not sent yet: space sends them."
        elif self.counts[AWAITING]:
            text = f"{plural(self.counts[AWAITING], 'manual step')} to do: enter ticks the highlighted one done."
        elif self.rows:
            text = "Every delivery is done."
        else:
            text = "Nothing to send."
        return text

    def update_status(self) -> None:
        status = self.query_one("#send-status", Static)
        status.update(plain(self.status_text()))
        failed = self.counts[DEFERRED] + self.counts[REJECTED]
        status.set_class(bool(self.stopped) and not self.running, "-error")
        status.set_class(not self.stopped and not self.running and (failed or self.counts[IN_DOUBT]) > 0, "-warning")

    def show_banner(self, text: str, severity: str = "error") -> None:
        banner = self.query_one("#banner", Static)
        banner.update(plain(text))
        banner.display = bool(text)
        for kind in ("error", "warning", "information"):
            banner.set_class(kind == severity, f"-{kind}")

    # -- the highlighted row --------------------------------------------------------------

    def highlighted_id(self) -> str | None:
        table = self.query_one("#deliveries", DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:
            return None
        return key.value

    def highlighted_row(self) -> Row | None:
        ident = self.highlighted_id()
        return self.rows.get(ident) if ident else None

    @on(DataTable.RowHighlighted, "#deliveries")
    def row_highlighted(self) -> None:
        self.update_detail()
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#deliveries")
    def row_selected(self) -> None:
        # The table takes enter for itself; on an open manual step it means "done".
        if self.check_action("tick_manual", ()):
            self.action_tick_manual()

    def update_detail(self) -> None:
        detail = self.query_one("#detail", Static)
        ident = self.highlighted_id()
        row = self.rows.get(ident) if ident else None
        if row is None:
            detail.update("")
            return
        record = self.ledger.delivery(ident) if self.ledger else None
        label = STATE_LABELS.get(row.state, row.state)
        lines = [Content.assemble((visible(row.recipient), "bold"), visible(f"  {row.communique_id} ({row.channel})  "),
                                  (label, f"bold ${STATE_COLOURS.get(row.state, 'foreground')}"),
                                  f"  {plural(row.attempts, 'attempt')}")]
        if row.state == IN_DOUBT:
            lines.append(Content.styled(IN_DOUBT_EXPLAINED + ". d resends (same Message-ID), m marks it delivered.",
                                        "$warning"))
        if row.channel == "manual" and row.state not in FINAL_STATES:
            communique = self.plan.communique(row.communique_id)
            steps = communique.spec.instructions if communique else ""
            lines.append(Content(f"Manual step: {one_line(steps or '')}  (enter ticks it done)"))
        if row.reply:
            lines.append(Content.assemble(("Reply: ", "bold"), one_line(row.reply)))
        if record is not None and record.message_id and row.channel == "email":
            lines.append(Content.assemble(("Message-ID: ", "bold"), visible(record.message_id)))
        detail.update(Content("\n").join(lines))

    # -- keys -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "pause":
            return self.running and not self.paused and not self._cancelling
        if action == "resume":
            return self.running and self.paused and not self._cancelling
        if action == "continue":
            if self.running:
                return False
            return True if self.ledger is not None and self.counts[QUEUED] + self.counts[DEFERRED] else None
        if action == "cancel":
            return True if self.running and not self._cancelling else None
        if action == "retry_failed":
            return True if not self.running and self.counts[DEFERRED] + self.counts[REJECTED] else None
        if action == "resend_in_doubt":
            return True if not self.running and self.counts[IN_DOUBT] else None
        if action == "mark_delivered":
            row = self.highlighted_row()
            return True if row is not None and row.state == IN_DOUBT else None
        if action == "tick_manual":
            if not any(c.channel == "manual" for c in self.communiques):
                return False
            row = self.highlighted_row()
            return True if row is not None and row.channel == "manual" and row.state not in FINAL_STATES else None
        if action == "test_send":
            emails = any(c.channel == "email" for c in self.plan.communiques)
            return True if emails and not self.running and self.ledger is not None else None
        return True

    def disabled_reason(self, action: str) -> str:
        """Why a key is greyed out (the command palette shows this)."""
        return {
            "continue": "nothing left to send", "cancel": "no send is running",
            "retry_failed": "nothing deferred or rejected, or a send is running",
            "resend_in_doubt": "nothing in doubt, or a send is running",
            "mark_delivered": "the highlighted delivery is not in doubt",
            "tick_manual": "the highlighted delivery is not an open manual step",
            "test_send": "a send is running",
        }.get(action, "")

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

        def answered(yes: bool | None) -> None:
            if yes:
                self.begin_run()

        self.app.push_screen(confirm_send_dialog(self.plan, self.only, deliveries_left=left), answered)

    def action_cancel(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel_run()

        self.app.push_screen(AskDialog(
            "Cancel the send?",
            "No new message is started; those already talking to the server get their replies recorded. "
            "What is not sent stays queued: space sends it later.",
            yes="Cancel the send", no="Keep sending", title="Cancel"), answered)

    def action_retry_failed(self) -> None:
        self.begin_run(retry_failed=True)

    def action_resend_in_doubt(self) -> None:
        count = self.counts[IN_DOUBT]

        def answered(yes: bool | None) -> None:
            if yes:
                self.begin_run(resend_in_doubt=True)

        self.app.push_screen(AskDialog(
            f"Resend {deliveries(count, 'in-doubt')}?",
            "These may already have arrived; resend with the same Message-ID? Mail clients that got the "
            "first copy can then drop the second. If you know one arrived, mark it delivered (m) instead.",
            yes="Resend", no="Not now", title="Resend in doubt"), answered)

    def action_mark_delivered(self) -> None:
        ident, row = self.highlighted_id(), self.highlighted_row()
        if ident is None or row is None or row.state != IN_DOUBT:
            return

        def answered(note: str | None) -> None:
            if note is None or self.ledger is None:
                return
            who = self.app.reviewer
            self.ledger.mark_delivered(ident, who, note)
            self.apply_record(ident)
            self.notify(f"{row.recipient}: marked delivered", title="Marked delivered")

        self.app.push_screen(ManualDoneDialog(
            f"{row.recipient}: {row.communique_id}",
            "Only if you know it arrived (the recipient confirmed, or the server's log shows it). "
            "It will never be sent again.", title="Mark delivered"), answered)

    def action_tick_manual(self) -> None:
        ident, row = self.highlighted_id(), self.highlighted_row()
        if ident is None or row is None or row.channel != "manual" or row.state in FINAL_STATES:
            return
        communique = self.plan.communique(row.communique_id)
        instructions = one_line(communique.spec.instructions or "") if communique else ""

        def answered(note: str | None) -> None:
            if note is None or self.ledger is None:
                return
            self.record_manual(ident, row, note)

        self.app.push_screen(ManualDoneDialog(f"{row.communique_id}: {row.recipient}", instructions,
                                              title="Manual step done"), answered)

    def record_manual(self, ident: str, row: Row, note: str) -> None:
        assert self.ledger is not None
        who = self.app.reviewer
        if self.ledger.delivery(ident) is None:
            # The engine creates deliveries when it runs; a step ticked before that is recorded now.
            communique = self.plan.communique(row.communique_id)
            recipient = next((r for _, r in self.plan.audience(communique)
                              if delivery_id(self.plan.release.version, row.communique_id, r.key) == ident), None) \
                if communique else None
            if recipient is not None:
                self.ledger.ensure_deliveries(self.plan.release.version, [DeliveryIntent(
                    row.communique_id, recipient.key, recipient.display, recipient.group_id, "manual")],
                    domain=sender_domain(self.plan))
        from ...channels.manual import ManualError, confirm_manual

        try:
            confirm_manual(self.ledger, ident, who, note)
        except ManualError as error:
            self.notify(error.hint or "", title=error.message, severity="warning")
        self.apply_record(ident)
        self.notify(f"{row.recipient}: done", title="Manual step")

    def apply_record(self, ident: str) -> None:
        """Show a delivery as the ledger has it now (after a change made from this screen)."""
        record = self.ledger.delivery(ident) if self.ledger else None
        row = self.rows.get(ident)
        if record is None or row is None:
            return
        row.attempts = record.attempts
        self._set_row(self.query_one("#deliveries", DataTable), ident, row, record.state, record.reply or "")
        self.refresh_summary()
        self.update_detail()
        self.refresh_bindings()

    def action_test_send(self) -> None:
        row = self.highlighted_row()
        communique = self.plan.communique(row.communique_id) if row else None
        chosen = communique.id if communique is not None and communique.channel == "email" else None
        self.with_password(lambda: self.run_test_send(chosen))

    def action_back(self) -> None:
        if not self.confirm_leave(self.dismiss_screen, leaving="go back"):
            self.dismiss_screen()

    def dismiss_screen(self) -> None:
        if self.app.screen is self:
            self.app.pop_screen()

    # -- leaving while a send runs --------------------------------------------------------

    def confirm_leave(self, then: Callable[[], object], *, leaving: str = "quit") -> bool:
        """If a send runs, ask first; on yes, cancel it, wait for the engine, then `then()`.

        Returns False when nothing runs (the caller goes ahead at once).
        """
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

    def needs_password(self) -> bool:
        smtp = self.plan.smtp
        return bool(smtp.username) and self._password is None

    def with_password(self, then: Callable[[], object]) -> None:
        """Run `then` once a password is known (resolved from the plan's reference, or asked for)."""
        if not self.needs_password():
            then()
            return
        self._after_password = then
        self.resolve_password()

    @work(thread=True, group="send-secret", exclusive=True, exit_on_error=False)
    def resolve_password(self) -> None:
        from ...plan.secrets import SecretError, describe, is_reference, resolve

        reference = self.plan.smtp.password
        if reference is None or not is_reference(reference):
            self.post_message(self.PasswordAnswer(None, "The plan names no password reference for the SMTP login."))
            return
        try:
            password = resolve(reference, 10.0)  # keyring and commands block: this is a thread
        except SecretError as error:
            why = f"The password could not be read from {describe(reference)}: {error.message}."
            self.post_message(self.PasswordAnswer(None, why + (f" ({error.hint})" if error.hint else "")))
            return
        self.post_message(self.PasswordAnswer(password, ""))

    @on(PasswordAnswer)
    def password_answer(self, message: PasswordAnswer) -> None:
        then = getattr(self, "_after_password", None)
        if message.password is not None:
            self._password = message.password
            if then:
                then()
            return
        smtp = self.plan.smtp

        def typed(password: str | None) -> None:
            if password is None:
                self.notify("Nothing was sent: no password given.", title="Send", severity="warning")
                return
            self._password = password
            if then:
                then()

        self.app.push_screen(PasswordDialog(f"{smtp.username} at {smtp.host}:{smtp.port}", message.why), typed)

    def begin_run(self, *, retry_failed: bool = False, resend_in_doubt: bool = False) -> None:
        if self.running or self.ledger is None:
            return
        needs_email = any(c.channel == "email" for c in self.communiques)
        start = lambda: self.start_engine(retry_failed=retry_failed, resend_in_doubt=resend_in_doubt)  # noqa: E731
        if needs_email:
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
        self.stopped = None
        self.progress = None
        self._cancelling = False
        self.paused = False
        self.running = True
        self.show_banner("")
        self._flush_timer.resume()
        self.refresh_summary()
        self.run_worker(self.run_engine(self.engine), group="send", exclusive=True, exit_on_error=False,
                        name="send")

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
        self.running = False
        self.paused = False
        self._cancelling = False
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
        elif event.worker.group == "send-test" and event.state == WorkerState.ERROR:
            self.notify(str(event.worker.error), title="Test send failed", severity="error")

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


def one_line(text: str) -> str:
    """Outside text (a reply, instructions) on one line, control characters made visible."""
    return visible(" ".join(text.split()))
