"""Receipts: per recipient, what came back for each communique; coverage per group and communique;
and the follow-up of those not yet confirmed (or bounced, at a corrected address).

The sources are read in a worker (files, IMAP) on open, every `[receipts] refresh` seconds and on
`r`; rows are added once with the delivery id as key and then changed with `update_cell`, so the
cursor and scroll stay where the engineer left them. The clock is injected so tests and snapshots
show a fixed "last refreshed" time.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from ...common.times import short_time
from ...plan import Plan
from ...receipts.refresh import RefreshResult, refresh
from ...receipts.status import (
    BOUNCED,
    CONFIRMED,
    REACHED,
    ReceiptStatus,
    RecipientReceipt,
    build_status,
    fate_of,
)
from ..text import plain, plain_lines, visible
from ..widgets.filter_bar import FilterBar
from ..widgets.tables import Fit, ListTable, add_fit_columns, apply_widths
from .delivery_detail import DeliveryDetailScreen
from .receipts_filters import Filters
from .receipts_follow_up import FollowUp

# What fits 80 columns first: who, the outcome and its detail (the reason of a bounce, when it was
# read), which grows with the terminal; then the report times. The rest is a scroll to the right,
# and enter opens the whole story of the highlighted row.
COLUMNS = [
    Fit("sel", " ", 1), Fit("communique", "Communique", 12, weight=2), Fit("recipient", "Recipient", 18, weight=3),
    Fit("outcome", "Outcome", 10), Fit("reason", "Detail", 16, flex=True),
    Fit("delivered", "Deliv", 5), Fit("displayed", "Read", 5), Fit("acknowledged", "Ack", 5),
    Fit("sent", "Sent", 5, extra=True), Fit("group", "Group", 10, extra=True), Fit("channel", "Channel", 7, extra=True),
    Fit("accepted", "Accepted", 8, extra=True), Fit("complained", "Complaint", 11, extra=True),
    Fit("auto_replied", "Auto-reply", 11, extra=True), Fit("last_update", "Updated", 11, extra=True),
]
STANDING_STYLE = {CONFIRMED: "bold $success", REACHED: "$success", BOUNCED: "bold $error", "unknown": "dim"}
STANDING_FILTERS = ("all", "unconfirmed", "bounced")


class ReceiptsScreen(FollowUp, Filters, Screen):
    """Who received each communique, refreshed from the confirmations that come back."""

    CSS_PATH = "receipts.tcss"
    HELP_TITLE = "Receipts"
    AUTO_FOCUS = "#receipts"
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="receipts-refresh", show=False,
                tooltip="Read new reports from the receipt sources now (they are read every few seconds)"),
        Binding("u", "filter_standing('unconfirmed')", "Unconfirmed", id="receipts-unconfirmed", show=False,
                tooltip="Show only recipients not yet confirmed (again: show all)"),
        Binding("b", "filter_standing('bounced')", "Bounced", id="receipts-bounced", show=False,
                tooltip="Show only bounced recipients (again: show all)"),
        Binding("t", "cycle_group", "Group", id="receipts-group", show=False,
                tooltip="Show one stakeholder group, then the next"),
        Binding("c", "cycle_communique", "Communique", id="receipts-communique", show=False,
                tooltip="Show one communique, then the next"),
        Binding("a", "clear_filters", "All", id="receipts-all", show=False, tooltip="Show every recipient"),
        Binding("enter", "open_detail", "Open", id="receipts-open", priority=True,
                tooltip="The whole story of the highlighted delivery: reason, every report, the message as sent"),
        Binding("slash", "find", "Filter", id="receipts-find", tooltip="Show only rows with these words (escape clears)"),
        Binding("space", "toggle_selected", "Select", id="receipts-select",
                tooltip="Select the highlighted recipient for a follow-up"),
        Binding("f", "follow_up", "Follow up", id="receipts-follow-up",
                tooltip="Send the reminder to the selected (or every unconfirmed one shown)"),
        Binding("escape", "back", "Back", id="receipts-back", tooltip="Back to the previous screen"),
    ]

    standing_filter: reactive[str] = reactive("all")
    group_filter: reactive[str | None] = reactive(None)
    communique_filter: reactive[str | None] = reactive(None)
    text_filter: reactive[str] = reactive("")

    class Refreshed(Message):
        """A refresh (or a plain reload from the ledger) finished."""

        def __init__(self, status: ReceiptStatus, result: RefreshResult | None, at: dt.datetime | None) -> None:
            super().__init__()
            self.status, self.result, self.at = status, result, at

    def __init__(self, *, clock: Callable[[], dt.datetime] | None = None, tz: dt.tzinfo | None = None,
                 send_options: dict | None = None, auto_poll: bool = True,
                 refresh_every: float | None = None) -> None:
        super().__init__()
        self.clock = clock or (lambda: dt.datetime.now().astimezone())
        self.tz = tz  # None: the machine's local time
        self.send_options = dict(send_options or {})  # extra keywords for follow_up (tests: render, channels)
        self.auto_poll = auto_poll
        self.refresh_every = refresh_every  # seconds; None: the plan's [receipts] refresh
        self.status: ReceiptStatus | None = None
        self.last_result: RefreshResult | None = None
        self.last_refreshed: dt.datetime | None = None
        self.selected: set[str] = set()
        self.rebuilds = 0  # full table rebuilds (filter changes); refreshes update cells in place
        self.refreshes = 0
        self._cells: dict[str, list] = {}
        self._refreshing = False
        self.reading = 0  # messages read so far by the running refresh

    @property
    def plan(self) -> Plan:
        return self.app.plan

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="receipts-head")
        yield Static(id="receipts-filter")
        yield Static(id="receipts-problem")
        table: DataTable = ListTable(id="receipts", cursor_type="row", zebra_stripes=True)
        table.border_title = "Receipts per recipient"
        yield FilterBar(id="receipts-find", target="#receipts")
        yield table
        yield Static(id="receipts-detail")
        with VerticalScroll(id="receipts-summary") as box:
            box.border_title = "Coverage"
            yield Static(id="receipts-coverage")
        yield Footer(show_command_palette=False)  # ctrl+p is in the help: the screen's keys fit 80 columns

    def on_mount(self) -> None:
        add_fit_columns(self.query_one("#receipts", DataTable), COLUMNS)
        self.query_one("#receipts-problem").display = False
        self.show_head()
        self.show_filter()
        if self.app.ledger is None:
            self.show_problem(self.app.ledger_problem or "The ledger cannot be opened: no receipts to show.")
            return
        self.start_refresh()
        if self.auto_poll:
            self.set_interval(self.refresh_every or self.plan.receipts.refresh, self.start_refresh,
                              name="receipts-auto-refresh")

    # -- refresh ----------------------------------------------------------------------------

    def start_refresh(self) -> None:
        if self._refreshing or self.app.ledger is None:
            return  # the running refresh will bring whatever arrived meanwhile
        self._refreshing = True
        self.show_head()
        self.refresh_worker(self.plan)

    @work(thread=True, exclusive=True, exit_on_error=False, group="receipts-refresh")
    def refresh_worker(self, plan: Plan) -> None:
        ledger = self.app.ledger
        if self.status is None:
            # What the ledger already knows shows at once; a first read of a big mailbox takes a while.
            self.post_message(self.Refreshed(build_status(plan, ledger), None, None))
        result = None
        if plan.receipts.sources:
            result = refresh(plan, ledger, on_progress=lambda partial: self.post_message(self.Reading(partial.read)))
        self.post_message(self.Refreshed(build_status(plan, ledger), result, self.clock()))

    class Reading(Message):
        """Messages read so far by the running refresh (every few hundred)."""

        def __init__(self, read: int) -> None:
            super().__init__()
            self.read = read

    def on_receipts_screen_reading(self, message: Reading) -> None:
        self.reading = message.read
        self.show_head()

    def on_receipts_screen_refreshed(self, message: Refreshed) -> None:
        self.status = message.status
        if message.at is not None:  # None: the ledger's view before the sources were read
            self._refreshing = False
            self.refreshes += 1
            self.last_refreshed = message.at
            self.reading = 0
        if message.result is not None:
            self.last_result = message.result
            problems = [f"{p.message}" + (f" ({p.hint})" if p.hint else "") for p in message.result.problems]
            self.show_problem("\n".join(problems) if problems else None)
        self.fill_table()
        self.show_head()
        self.show_coverage()
        self.show_detail()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        text = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
        if event.worker.group == "receipts-refresh":
            self._refreshing = False
            self.show_problem(f"Refresh failed: {text}")
            self.show_head()
        elif event.worker.group == "receipts-follow-up":
            self.notify(f"Follow-up failed: {text}", title="Follow up", severity="error", timeout=10)

    def action_refresh(self) -> None:
        self.start_refresh()

    # -- the table --------------------------------------------------------------------------

    def visible_rows(self) -> list[RecipientReceipt]:
        if self.status is None:
            return []
        rows = self.status.rows
        if self.standing_filter == "unconfirmed":
            rows = [r for r in rows if r.standing != CONFIRMED]
        elif self.standing_filter == "bounced":
            rows = [r for r in rows if r.standing == BOUNCED]
        if self.group_filter:
            rows = [r for r in rows if r.group_id == self.group_filter]
        if self.communique_filter:
            rows = [r for r in rows if r.communique_id == self.communique_filter]
        if self.text_filter:
            bar = self.query_one("#receipts-find", FilterBar)
            rows = [r for r in rows if bar.matches(r.recipient, r.communique_id, r.group_id, r.channel,
                                                   r.fate.outcome, r.fate.describe())]
        return rows

    def fill_table(self, *, rebuild: bool = False) -> None:
        """Add rows not shown yet and update the cells that changed. A filter change rebuilds;
        a refresh never does, so a row that stops matching the filter stays until the next one."""
        table = self.query_one("#receipts", DataTable)
        if rebuild:
            keep = self.highlighted_id()
            table.clear()
            self._cells.clear()
            self.rebuilds += 1
        rows = self.visible_rows() if rebuild or not self._cells else [
            r for r in (self.status.rows if self.status else []) if r.delivery_id in self._cells
        ] + [r for r in self.visible_rows() if r.delivery_id not in self._cells]
        for row in rows:
            cells = self.cells(row)
            before = self._cells.get(row.delivery_id)
            if before is None:
                table.add_row(*cells, key=row.delivery_id)
            else:
                for column, old, new in zip(COLUMNS, before, cells):
                    if old != new:
                        table.update_cell(row.delivery_id, column.key, new)
            self._cells[row.delivery_id] = cells
        if rebuild and keep in self._cells:
            table.move_cursor(row=table.get_row_index(keep))
        table.border_subtitle = f"{len(self._cells)} of {len(self.status.rows) if self.status else 0}"
        self.fit_columns()

    def fit_columns(self) -> None:
        """Columns as wide as their longest cell needs, as far as the terminal allows."""
        wants: dict[str, int] = {}
        for cells in self._cells.values():
            for column, cell in zip(COLUMNS, cells):
                size = len(getattr(cell, "plain", cell))
                if size > wants.get(column.key, 0):
                    wants[column.key] = size
        self._wants = wants
        apply_widths(self.query_one("#receipts", DataTable), COLUMNS, wants)

    def on_resize(self) -> None:
        # Read the wants when it runs: a refresh may have filled the table meanwhile.
        self.call_after_refresh(lambda: apply_widths(self.query_one("#receipts", DataTable), COLUMNS,
                                                     getattr(self, "_wants", {})))

    def cells(self, row: RecipientReceipt) -> list:
        fate = fate_of(row, self.when)  # the one fate every view shows (receipts.status)
        outcome = Content.styled(visible(fate.outcome), STANDING_STYLE.get(fate.standing, ""))
        mark = Content.styled("●", "bold $accent") if row.delivery_id in self.selected else " "
        return [mark, plain(row.communique_id), plain(row.recipient), outcome, plain(fate.detail()),
                self.when(row.delivered), self.when(row.displayed), self.when(row.acknowledged), self.when(row.sent),
                plain(row.group_id), plain(row.channel), self.when(row.accepted), self.when(row.complained, long=True),
                self.when(row.auto_replied, long=True), self.when(row.last_update, long=True)]

    def when(self, stamp: str | None, *, long: bool = False) -> str:
        """Ledger UTC text as every view shows it: "HH:MM" today, "MM-DD HH:MM" another day."""
        return visible(short_time(stamp, now=self.clock(), tz=self.tz))

    def highlighted_id(self) -> str | None:
        table = self.query_one("#receipts", DataTable)
        if not table.row_count:
            return None
        try:
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except Exception:  # no row under the cursor
            return None

    @on(DataTable.RowHighlighted, "#receipts")
    def show_detail(self) -> None:
        detail = self.query_one("#receipts-detail", Static)
        ident = self.highlighted_id()
        row = self.status.row(ident) if self.status and ident else None
        if row is None:
            detail.update("")
            return
        fate = fate_of(row, lambda stamp: self.when(stamp, long=True))
        first = f"{row.recipient} · {row.communique_id} by {row.channel} · {row.group_id} · {row.state}"
        notes = [fate.text]
        for label, stamp in (("auto-reply", row.auto_replied), ("complaint", row.complained)):
            if stamp and label.replace("-", "") not in fate.outcome.replace("-", ""):
                notes.append(f"{label} {self.when(stamp, long=True)}")
        if fate.unverified and fate.outcome != "unverified":
            notes.append(f"unverified report: {fate.unverified}")
        detail.update(plain_lines(visible(first) + "\n" + visible(" · ".join(notes))))

    # -- header, filters, coverage ------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open_detail":  # enter is the filter's too while typing there
            return isinstance(self.focused, DataTable)
        return True

    def action_open_detail(self) -> None:
        ident = self.highlighted_id()
        if ident is not None:
            self.app.push_screen(DeliveryDetailScreen(ident, clock=self.clock, tz=self.tz))

    def action_back(self) -> None:
        if self.query_one("#receipts-find", FilterBar).clear_if_kept():
            return  # escape first undoes the filter the table shows, as in lazygit
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    # -- follow-up ------------------------------------------------------------------------------

