"""The checklist (home screen): the release, its stakeholder groups, every finding, and the send lock.

Sending stays locked until `app.readiness` says the plan may be sent (the rule `relcomm send`
applies too): no errors, every required group reviewed, the release gate passed when the plan
names one. Review marks are stored in the ledger together with the plan's digest, so a plan edited
after review must be reviewed again. Once anything was sent, the status line is the send's summary
(`app.board`) and `s` opens the send screen whatever the lock: seeing where things stand and
ticking manual steps send nothing.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, OptionList, Static
from textual.worker import Worker, WorkerState

from ...app.board import Board
from ...app.readiness import GATE_NOT_ALLOWED, READY, GateStatus, Readiness, Reviews, assess, reviews  # noqa: F401
from ...checks.findings import Finding
from ...checks.rules import run_checks
from ...plan import Plan, PlanError, consent
from ..text import plain, plain_lines, visible
from ..widgets.findings_box import FindingsBox, place
from ..widgets.tables import Fit, ListTable, add_fit_columns, apply_widths
from .checklist_lock import SendLock
from .checklist_review import Review
from .preview import POLL_SECONDS, file_state, watched_files

COLUMNS = [Fit("reviewed", "✓", 1), Fit("group", "Group", 20, weight=1), Fit("required", "Req", 3),
           Fit("members", "Members", 7), Fit("communiques", "Communiques", 11), Fit("channels", "Channels", 16, flex=True)]


class ChecklistScreen(SendLock, Review, Screen):
    """Home: review every stakeholder group and clear every error before sending."""

    CSS_PATH = "checklist.tcss"
    HELP_TITLE = "Checklist"
    AUTO_FOCUS = "#groups"
    BINDINGS = [
        Binding("space", "mark_reviewed", "Reviewed", id="mark-reviewed",
                tooltip="Mark the highlighted stakeholder group reviewed and go to the next"),
        Binding("u", "unmark_reviewed", "Unreview", id="unmark-reviewed", show=False,
                tooltip="Take the review mark off the highlighted group"),
        Binding("p", "preview", "Preview", id="preview", tooltip="See each communique exactly as it will be sent"),
        Binding("s", "send", "Send", id="send", tooltip="Send the communiques (locked until all is clear)"),
        Binding("c", "receipts", "Receipts", id="receipts",
                tooltip="Who received each communique: receipts, coverage per group, follow-up"),
        Binding("r", "reload", "Reload", id="reload", show=False,
                tooltip="Load the plan again and re-run the checks (files are watched: rarely needed)"),
        Binding("a", "allow_commands", "Allow", id="allow-commands",
                tooltip="Review the commands this plan runs (release gate, password commands) and allow them"),
        Binding("f", "focus_findings", "Findings", id="findings",
                tooltip="Go to the list of findings (again: back to the groups)"),
    ]

    send_lock: reactive[str | None] = reactive("Send locked: checking the plan…", bindings=True)

    class ChecksDone(Message):
        """The checks worker finished for the plan with this digest."""

        def __init__(self, digest: str, findings: list[Finding], gate: GateStatus) -> None:
            super().__init__()
            self.digest, self.findings, self.gate = digest, findings, gate

    def __init__(self) -> None:
        super().__init__()
        self.findings: list[Finding] | None = None
        self.gate: GateStatus | None = None
        self.checks_error: str | None = None
        self.reviewed: set[str] = set()
        self.stale_review = False
        self.board: Board | None = None
        self.shown_digest: str | None = None
        self.load_error: PlanError | None = None
        self.rechecked = False  # checked again once after consent was found changed at run time

    @property
    def plan(self) -> Plan:
        return self.app.plan

    def compose(self) -> ComposeResult:
        yield Static(id="release")
        yield Static(id="review-note")
        yield Static(id="problem")
        table: DataTable = ListTable(id="groups", cursor_type="row", zebra_stripes=True)
        table.border_title = "Stakeholder groups"
        yield table
        yield Static(id="group-detail")
        yield FindingsBox(id="findings-box")
        yield Static(id="below-findings")
        yield Static(id="send-status")
        yield Footer(show_command_palette=False)  # ctrl+p is in the help: the screen's keys fit 80 columns

    def on_mount(self) -> None:
        table = self.query_one("#groups", DataTable)
        add_fit_columns(table, COLUMNS)
        box = self.query_one("#findings-box")
        box.border_title = "Findings"
        box.border_subtitle = "f: go here · enter: jump to its place"
        if self.app.ledger_problem:
            self.show_problem(self.app.ledger_problem)
        self.show_plan()
        # Watch the plan and every file it reads, as the preview does: a fixed template unlocks
        # sending without pressing r.
        self._files = file_state(watched_files(self.plan))
        self.set_interval(POLL_SECONDS, self.check_files, name="checklist-watch")

    def check_files(self) -> None:
        if self.app.screen is not self:
            return  # the preview watches while it is open; resuming looks at the plan it left
        state = file_state(list(self._files) or watched_files(self.plan))
        if state != self._files:
            self.action_reload(said="The plan changed on disk; checking again.")

    def on_screen_resume(self) -> None:
        # The preview may have reloaded the plan; review state belongs to the new digest.
        if self.plan.digest != self.shown_digest:
            self.show_plan()
        else:
            self.refresh_board()  # back from sending: the summary shows where things stand now
            self.update_lock()
        self._files = file_state(watched_files(self.plan))

    # -- plan, groups and review state ----------------------------------------------------

    def show_plan(self) -> None:
        plan = self.plan
        self.shown_digest = plan.digest
        self.rechecked = False
        self.findings, self.gate, self.checks_error = None, None, None
        self.reviewed = self.load_reviews(plan)
        self.board = None
        self.refresh_board()
        self.fill_groups(plan)
        self.show_release()
        self.show_findings()
        self.update_lock()
        if consent.apply(plan, allow_commands=self.app.allow_commands) or consent.digest(plan) in self.app.consent_declined:
            self.start_checks(plan)
        else:
            self.action_allow_commands()

    def fill_groups(self, plan: Plan) -> None:
        table = self.query_one("#groups", DataTable)
        wanted = [group.id for group in plan.groups]
        current = [str(row.value) for row in table.rows]
        if current != wanted:
            # Groups were added, removed or reordered: rebuild, keeping the cursor on the same group.
            keep = self.highlighted_group_id()
            table.clear()
            for group in plan.groups:
                table.add_row(*self.group_cells(plan, group.id), key=group.id)
            if keep in wanted:
                table.move_cursor(row=wanted.index(keep))
        else:
            for group in plan.groups:
                for column, value in zip(COLUMNS, self.group_cells(plan, group.id)):
                    table.update_cell(group.id, column.key, value)
        self.fit_columns()
        self.show_group_detail()

    def group_cells(self, plan: Plan, group_id: str) -> list:
        group = plan.group(group_id)
        assert group is not None
        reaching = plan.communiques_for(group.id)
        channels = sorted({c.channel for c in reaching})
        mark = Content.styled("✓", "bold $success") if group.id in self.reviewed else Content.styled("·", "dim")
        return [mark, plain(group.name), "yes" if group.required else "", str(len(group.members)),
                str(len(reaching)) if reaching else Content.styled("none", "bold $error"),
                plain(", ".join(channels) or "—")]

    def fit_columns(self) -> None:
        wants = {"group": max((len(visible(g.name)) for g in self.plan.groups), default=0)}
        apply_widths(self.query_one("#groups", DataTable), COLUMNS, wants)

    def on_resize(self) -> None:
        self.call_after_refresh(self.fit_columns)
        self.call_after_refresh(self.fit_findings)

    def fit_findings(self) -> None:
        """The findings box takes what it needs, at most the rows the rest of the screen leaves."""
        box = self.query_one("#findings-box")
        used = sum(w.outer_size.height for w in self.children if w.id not in ("findings-box", "below-findings")
                   and w.display)
        left = max(3, self.size.height - used - 1)  # a 1fr spacer never gets less than one row
        if box.styles.max_height is None or box.styles.max_height.value != left:
            box.styles.max_height = left

    def highlighted_group_id(self) -> str | None:
        table = self.query_one("#groups", DataTable)
        if not table.row_count:
            return None
        try:
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except Exception:  # cursor outside the table while it is being rebuilt
            return None

    @on(DataTable.RowHighlighted, "#groups")
    def show_group_detail(self) -> None:
        detail = self.query_one("#group-detail", Static)
        group = self.plan.group(self.highlighted_group_id() or "")
        if group is None:
            detail.update("")
            return
        reaching = self.plan.communiques_for(group.id)
        via = ", ".join(f"{c.id} ({c.channel})" for c in reaching) or "no communique reaches this group"
        state = "reviewed" if group.id in self.reviewed else "not reviewed"
        detail.update(Content.assemble((visible(group.name), "bold"), f" · {state} · ", visible(via)))

    # -- checks ---------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="checks")
    def start_checks(self, plan: Plan) -> None:
        findings = run_checks(plan)
        self.post_message(self.ChecksDone(plan.digest, findings, GateStatus.from_findings(findings)))

    def on_checklist_screen_checks_done(self, message: ChecksDone) -> None:
        if message.digest != self.plan.digest:
            return  # results for a plan that has since been reloaded
        self.findings, self.gate, self.checks_error = message.findings, message.gate, None
        self.show_release()
        self.show_findings()
        self.update_lock()
        if any(f.id in (GATE_NOT_ALLOWED, "secret-not-allowed") for f in message.findings):
            self.consent_changed()

    def consent_changed(self) -> None:
        """A command was refused at the moment it would run although consent was looked up before.

        A file it names changed in between (a `git pull` while the app is open). If consent is recorded
        for what is there now (allowed in another terminal, or --allow-commands), check once more;
        otherwise ask again about what is there now, unless the user already said "not now" to it.
        """
        plan = self.plan
        if consent.apply(plan, allow_commands=self.app.allow_commands):
            if not self.rechecked:  # once per plan shown: a file that changes on every run must not loop
                self.rechecked = True
                self.start_checks(plan)
        elif consent.digest(plan) not in self.app.consent_declined:
            self.action_allow_commands()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "checks" or event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        self.checks_error = visible(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
        self.show_findings()
        self.update_lock()

    def show_findings(self) -> None:
        if self.query_one("#findings-box", FindingsBox).show(self.findings, self.checks_error, self.plan.root):
            self.call_after_refresh(self.fit_findings)

    @on(OptionList.OptionSelected, "#findings")
    def jump_to_finding(self, event: OptionList.OptionSelected) -> None:
        option_id = event.option.id or ""
        if not option_id.startswith("finding-") or self.findings is None:
            return
        finding = self.findings[int(option_id.removeprefix("finding-"))]
        about_group = finding.id.startswith("group-") or not finding.communique_id
        if finding.group_id and self.plan.group(finding.group_id) and about_group:
            self.select_group(finding.group_id)
        elif finding.communique_id and self.plan.communique(finding.communique_id):
            # Show the communique as rendered for someone in the group the finding names.
            self.app.action_open_preview(finding.communique_id, finding.group_id)
        else:
            self.notify(f"{place(finding.location, self.plan.root)}: edit the plan there, then press r",
                        title=finding.id)

    def select_group(self, group_id: str) -> None:
        table = self.query_one("#groups", DataTable)
        table.move_cursor(row=table.get_row_index(group_id))
        table.focus()

    # -- the send lock ---------------------------------------------------------------------

    class BoardRead(Message):
        def __init__(self, digest: str, where: Board) -> None:
            super().__init__()
            self.digest, self.where = digest, where

    # -- other keys -------------------------------------------------------------------------

    def action_preview(self) -> None:
        self.app.action_open_preview()

    def action_receipts(self) -> None:
        self.app.action_open_receipts()

    def action_reload(self, said: str = "Plan reloaded; checking again.") -> None:
        result = self.app.reload_plan()
        # Watch what the plan reads now (a new template), from what is on disk now.
        self._files = file_state(watched_files(self.plan))
        if isinstance(result, PlanError):
            self.load_error = result
            self.show_problem(f"The plan on disk does not load; still showing the last good one.\n{result}")
            self.update_lock()
            return
        self.load_error = None
        self.show_problem(self.app.ledger_problem)
        self.show_plan()
        self.notify(said, timeout=2)

    def show_problem(self, text: str | None) -> None:
        problem = self.query_one("#problem", Static)
        problem.update(plain_lines(text or ""))
        problem.display = bool(text)

    def action_focus_findings(self) -> None:
        findings = self.query_one("#findings", OptionList)
        if findings.has_focus:
            self.action_focus_groups()
        else:
            findings.focus()

    def action_focus_groups(self) -> None:
        self.query_one("#groups", DataTable).focus()
