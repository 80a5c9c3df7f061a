"""Receipts: per recipient, what came back for each communique; coverage per group and communique;
and the follow-up of those not yet confirmed (or bounced, at a corrected address).

The sources are read in a worker (files, IMAP) on open, every `[receipts] refresh` seconds and on
`r`; rows are added once with the delivery id as key and then changed with `update_cell`, so the
cursor and scroll stay where the engineer left them. The clock is injected so tests and snapshots
show a fixed "last refreshed" time.
"""

from __future__ import annotations

import asyncio
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

from ...app import credentials
from ...plan import Plan, addresses
from ...receipts.followup import FollowUpError, follow_up, prepare_follow_up, reminder_of
from ...receipts.refresh import RefreshResult, refresh
from ...receipts.status import (
    BOUNCED, CONFIRMED, REACHED, ReceiptStatus, RecipientReceipt, build_status, coverage, fate_of,
)
from ..dialogs.confirm_follow_up import ConfirmFollowUpDialog
from ..dialogs.correct_address import CorrectAddressDialog
from ..dialogs.password import PasswordDialog
from ..text import plain, plain_lines, visible

# (key, label, width): what fits 80 columns first, the rest a scroll to the right.
COLUMNS = (
    ("sel", " ", 1), ("communique", "Communique", 12), ("recipient", "Recipient", 18), ("sent", "Sent", 5),
    ("delivered", "Deliv", 5), ("displayed", "Read", 5), ("acknowledged", "Ack", 5), ("outcome", "Outcome", 10),
    ("group", "Group", 10), ("channel", "Channel", 7), ("accepted", "Accepted", 5), ("reason", "Fate", 48),
    ("complained", "Complaint", 11), ("auto_replied", "Auto-reply", 11), ("last_update", "Updated", 11),
)
STANDING_STYLE = {CONFIRMED: "bold $success", REACHED: "$success", BOUNCED: "bold $error", "unknown": "dim"}
STANDING_FILTERS = ("all", "unconfirmed", "bounced")


class ReceiptsScreen(Screen):
    """Who received each communique, refreshed from the confirmations that come back."""

    CSS_PATH = "receipts.tcss"
    HELP_TITLE = "Receipts"
    AUTO_FOCUS = "#receipts"
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="receipts-refresh", tooltip="Read new reports from the receipt sources now"),
        Binding("u", "filter_standing('unconfirmed')", "Unconfirmed", id="receipts-unconfirmed", show=False,
                tooltip="Show only recipients not yet confirmed (again: show all)"),
        Binding("b", "filter_standing('bounced')", "Bounced", id="receipts-bounced", show=False,
                tooltip="Show only bounced recipients (again: show all)"),
        Binding("g", "cycle_group", "Group", id="receipts-group", show=False,
                tooltip="Show one stakeholder group, then the next"),
        Binding("c", "cycle_communique", "Communique", id="receipts-communique", show=False,
                tooltip="Show one communique, then the next"),
        Binding("a", "clear_filters", "All", id="receipts-all", show=False, tooltip="Show every recipient"),
        Binding("space", "toggle_selected", "Select", id="receipts-select",
                tooltip="Select the highlighted recipient for a follow-up"),
        Binding("f", "follow_up", "Follow up", id="receipts-follow-up",
                tooltip="Send the reminder to the selected (or every unconfirmed one shown)"),
        Binding("escape", "back", "Back", id="receipts-back", show=False, tooltip="Back to the checklist"),
    ]

    standing_filter: reactive[str] = reactive("all")
    group_filter: reactive[str | None] = reactive(None)
    communique_filter: reactive[str | None] = reactive(None)

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
        table: DataTable = DataTable(id="receipts", cursor_type="row", zebra_stripes=True)
        table.border_title = "Receipts per recipient"
        yield table
        yield Static(id="receipts-detail")
        with VerticalScroll(id="receipts-summary") as box:
            box.border_title = "Coverage"
            yield Static(id="receipts-coverage")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#receipts", DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
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
                for (key, _, _), old, new in zip(COLUMNS, before, cells):
                    if old != new:
                        table.update_cell(row.delivery_id, key, new)
            self._cells[row.delivery_id] = cells
        if rebuild and keep in self._cells:
            table.move_cursor(row=table.get_row_index(keep))
        table.border_subtitle = f"{len(self._cells)} of {len(self.status.rows) if self.status else 0}"

    def cells(self, row: RecipientReceipt) -> list:
        fate = fate_of(row, self.when)  # the one fate every view shows (receipts.status)
        outcome = Content.styled(visible(fate.outcome), STANDING_STYLE.get(fate.standing, ""))
        mark = Content.styled("●", "bold $accent") if row.delivery_id in self.selected else " "
        return [mark, plain(row.communique_id), plain(row.recipient), self.when(row.sent), self.when(row.delivered),
                self.when(row.displayed), self.when(row.acknowledged), outcome, plain(row.group_id), plain(row.channel),
                self.when(row.accepted), plain(fate.describe()), self.when(row.complained, long=True),
                self.when(row.auto_replied, long=True), self.when(row.last_update, long=True)]

    def when(self, stamp: str | None, *, long: bool = False) -> str:
        """Ledger UTC text as "HH:MM" today, "MM-DD" before (long: "MM-DD HH:MM")."""
        if not stamp:
            return ""
        try:
            moment = dt.datetime.fromisoformat(stamp).astimezone(self.tz)
        except ValueError:
            return visible(stamp[:5])
        if long:
            return moment.strftime("%m-%d %H:%M")
        today = self.clock().astimezone(self.tz).date()
        return moment.strftime("%H:%M") if moment.date() == today else moment.strftime("%m-%d")

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

    def show_head(self) -> None:
        release = self.plan.release
        parts: list = [(visible(f"{release.name} {release.version}"), "bold")]
        if self._refreshing and self.last_refreshed is None:
            parts.append(f" · reading the receipt sources… {self.reading or ''}".rstrip())
        elif self.last_refreshed is not None:
            parts.append(f" · last refreshed {self.last_refreshed.astimezone(self.tz).strftime('%H:%M:%S')}")
            if self._refreshing:
                parts.append(" (refreshing…)")
        if not self.plan.receipts.sources:
            parts.append((" · no receipt sources in the plan", "$warning"))
        if self.status is not None and self.status.other_send:
            count = self.status.other_send
            parts.append((f" · {count} report{'s' if count != 1 else ''} for another send", "$warning"))
        if self.status is not None and self.status.unmatched:
            count = self.status.unmatched
            parts.append((f" · {count} report{'s' if count != 1 else ''} matched no delivery", "$warning"))
        self.query_one("#receipts-head", Static).update(Content.assemble(*parts))

    def show_filter(self) -> None:
        parts = [f"showing (u/b): {self.standing_filter}"]
        parts.append(f"group (g): {self.group_filter or 'all'}")
        parts.append(f"communique (c): {self.communique_filter or 'all'}")
        if self.selected:
            parts.append(f"{len(self.selected)} selected")
        self.query_one("#receipts-filter", Static).update(plain(" · ".join(parts)))

    def show_problem(self, text: str | None) -> None:
        problem = self.query_one("#receipts-problem", Static)
        problem.update(plain_lines(text or ""))
        problem.display = bool(text)

    def show_coverage(self) -> None:
        status = self.status
        if status is None:
            return
        lines = []
        if not status.rows:
            lines.append("Nothing sent yet for this release.")
        else:
            lines.append(self.coverage_line(status.overall, "all"))
            shown = self.visible_rows()
            if (self.group_filter or self.communique_filter or self.standing_filter != "all") and shown:
                lines.append(self.coverage_line(coverage("shown", "shown", shown), "shown"))
            for c in status.by_group:
                lines.append(self.coverage_line(c, f"group {c.id}"))
            for c in status.by_communique:
                lines.append(self.coverage_line(c, c.id))
        self.query_one("#receipts-coverage", Static).update(plain_lines("\n".join(visible(line) for line in lines)))

    @staticmethod
    def coverage_line(c, label: str) -> str:
        # Groups count people, communiques deliveries (receipts.status).
        return (f"{label[:16]:<16} {c.total:>4} reached {c.reached} {c.percent(c.reached):.0f}%"
                f" confirmed {c.confirmed} {c.percent(c.confirmed):.0f}% bounced {c.bounced} unknown {c.unknown}")

    def _filters_changed(self) -> None:
        if not self.is_mounted:
            return
        self.show_filter()
        if self.status is not None:
            self.fill_table(rebuild=True)
            self.show_coverage()
            self.show_detail()

    def watch_standing_filter(self) -> None:
        self._filters_changed()

    def watch_group_filter(self) -> None:
        self._filters_changed()

    def watch_communique_filter(self) -> None:
        self._filters_changed()

    def action_filter_standing(self, which: str) -> None:
        self.standing_filter = "all" if self.standing_filter == which else which

    def action_cycle_group(self) -> None:
        ids = [g.id for g in (self.status.by_group if self.status else [])]
        self.group_filter = _next(ids, self.group_filter)

    def action_cycle_communique(self) -> None:
        ids = [c.id for c in (self.status.by_communique if self.status else [])]
        self.communique_filter = _next(ids, self.communique_filter)

    def action_clear_filters(self) -> None:
        self.standing_filter, self.group_filter, self.communique_filter = "all", None, None

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    # -- follow-up ------------------------------------------------------------------------------

    def action_toggle_selected(self) -> None:
        ident = self.highlighted_id()
        if ident is None or self.status is None:
            return
        (self.selected.discard if ident in self.selected else self.selected.add)(ident)
        row = self.status.row(ident)
        if row is not None:
            self.fill_table()
        self.show_filter()
        table = self.query_one("#receipts", DataTable)
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def follow_up_rows(self) -> list[RecipientReceipt]:
        """The selected rows, or, with nothing selected, every unconfirmed row shown."""
        if self.status is None:
            return []
        if self.selected:
            return [r for r in self.status.rows if r.delivery_id in self.selected]
        return [r for r in self.visible_rows() if r.standing != CONFIRMED]

    def action_follow_up(self) -> None:
        rows = self.follow_up_rows()
        if not rows:
            self.notify("Select recipients first (space), or show some unconfirmed ones.", title="Follow up",
                        severity="warning")
            return
        communiques = sorted({r.communique_id for r in rows})
        if len(communiques) > 1:
            self.notify(f"The rows are of {len(communiques)} communiques ({', '.join(communiques)}); "
                        "follow up one at a time: press c to show one communique.", title="Follow up",
                        severity="warning", timeout=8)
            return
        # A bounced person never got the communique: it goes to them again, at a corrected address
        # (receipts/corrections.py). The others, who got it, get the plan's reminder, if it has one.
        bounced = [r for r in rows if r.standing == BOUNCED and r.channel == "email"]
        others = [r for r in rows if r not in bounced]
        if others and reminder_of(self.plan, communiques[0]) is None:
            if not bounced:
                self.notify(f'The plan has no reminder for {communiques[0]}: add a communique with '
                            f'reminder_for = "{communiques[0]}".', title="Follow up", severity="warning", timeout=8)
                return
            self.notify(f"Only the {len(bounced)} bounced are sent {communiques[0]} again; the plan has no reminder "
                        "for the others.", title="Follow up", timeout=8)
            others = []
        self.follow_up_flow(communiques[0], bounced, others)

    async def _send_options(self) -> dict | None:
        """Keywords for a send from this screen (the SMTP password resolved), or None when it cannot be had."""
        options = dict(self.send_options)
        if "password" not in options and credentials.needs_password(self.plan):
            # The same policy as the send screen: the plan's reference, else ask (masked).
            async def ask(question: credentials.Ask) -> str | None:
                return await self.app.push_screen_wait(PasswordDialog(question.account, question.why))

            try:
                options["password"] = await credentials.smtp_password_async(self.plan, ask)
            except credentials.NoPassword as error:
                self.notify(f"{error.message}. {error.hint}", title="SMTP password", severity="warning", timeout=10)
                return None
        return options

    @work(exclusive=True, exit_on_error=False, group="receipts-follow-up")
    async def follow_up_flow(self, communique_id: str, bounced: list[RecipientReceipt],
                             others: list[RecipientReceipt]) -> None:
        sent = False
        if bounced:
            sent = await self.resend_corrected_flow(communique_id, bounced)
        if others:
            sent = await self.reminder_flow(communique_id, others) or sent
        if sent:
            self.selected.clear()
            self.show_filter()
            self.start_refresh()

    async def resend_corrected_flow(self, communique_id: str, rows: list[RecipientReceipt]) -> bool:
        """Ask each bounced row's corrected address, confirm, send the same communique there once."""
        from ...receipts.corrections import CorrectionError, prepare_corrections, resend_corrected
        from ...delivery.engine import SendError

        corrections: dict[str, str] = {}
        for row in rows:
            group = self.plan.group(row.group_id)
            allowance = addresses.combine(group.allow_special_domains if group is not None else False,
                                          self.plan.sender.allow_special_domains)
            address = await self.app.push_screen_wait(
                CorrectAddressDialog(row.recipient, row.recipient_key, row.reason, allowance=allowance))
            if address is not None:
                corrections[row.recipient_key] = address
        if not corrections:
            self.notify("Nobody left to send again.", title="Follow up")
            return False
        try:
            batch = await asyncio.to_thread(prepare_corrections, self.plan, self.app.ledger, communique_id,
                                            corrections)
        except CorrectionError as error:
            self.notify(f"{error.message}. {error.hint}", title="Corrected address", severity="error", timeout=10)
            return False
        people = [f"{c.recipient.display} (bounced at {c.old_address})" for c in batch.to_send]
        already = [f"{c.new_address}: already sent there, not again" for c in batch.already_sent]
        if not people:
            self.notify("; ".join(already), title="Follow up")
            return False
        first = batch.to_send[0]
        subject = self.subject_of(batch.communique, first.group, first.recipient)
        if not await self.app.push_screen_wait(ConfirmFollowUpDialog(batch.communique.id, subject, people, already)):
            return False
        options = await self._send_options()
        if options is None:
            return False
        try:
            summary = await resend_corrected(batch, self.app.ledger, who=getattr(self.app, "reviewer", None),
                                             **options)
        except SendError as error:
            self.notify(f"{error.message}. {error.hint}", title="Not sent", severity="error", timeout=10)
            return False
        per = summary.per_communique.get(batch.communique.id, {}) if summary is not None else {}
        self.notify(f"{batch.communique.id} sent again to {len(batch.to_send)} corrected address(es); "
                    f"{per.get('rejected', 0)} refused, {per.get('deferred', 0)} deferred in all",
                    title="Sent at corrected addresses")
        return True

    def subject_of(self, communique, group=None, recipient=None) -> str:
        """The subject as rendered for a recipient (never template source); "" when it cannot be rendered."""
        from ...compose import RenderError, render_text

        try:
            return render_text(self.plan, communique, group, recipient)[0]
        except RenderError:
            return ""

    async def reminder_flow(self, communique_id: str, rows: list[RecipientReceipt]) -> bool:
        keys = [row.recipient_key for row in rows]
        try:
            prepared = prepare_follow_up(self.plan, communique_id, keys)
        except FollowUpError as error:
            self.notify(f"{error.message}. {error.hint}", title="Follow up", severity="error", timeout=10)
            return False
        people = [r.display for _, r in prepared.people]
        if not await self.app.push_screen_wait(ConfirmFollowUpDialog(
                prepared.reminder.id, self.subject_of(prepared.reminder, *prepared.people[0]), people,
                list(prepared.left_out))):
            return False
        options = await self._send_options()
        if options is None:
            return False
        from ...delivery.engine import SendError

        try:
            summary = await follow_up(self.plan, self.app.ledger, communique_id, keys,
                                      who=getattr(self.app, "reviewer", None), **options)
        except SendError as error:
            self.notify(f"{error.message}. {error.hint}", title="Follow up not sent", severity="error", timeout=10)
            return False
        per = summary.per_communique.get(prepared.reminder.id, {})
        self.notify(f"{prepared.reminder.id}: {per.get('accepted', 0)} accepted, {per.get('rejected', 0)} refused, "
                    f"{per.get('deferred', 0)} deferred", title="Follow-up sent")
        return True


def _next(ids: list[str], current: str | None) -> str | None:
    """all -> first -> ... -> last -> all."""
    if not ids:
        return None
    if current not in ids:
        return ids[0]
    index = ids.index(current) + 1
    return ids[index] if index < len(ids) else None
