"""The checklist (home screen): the release, its stakeholder groups, every finding, and the send lock.

Sending stays locked until `app.readiness` says the plan may be sent (the rule `relcomm send`
applies too): no errors, every required group reviewed, the release gate passed when the plan
names one. Review marks are stored in the ledger together with the plan's digest, so a plan edited
after review must be reviewed again. Once anything was sent, the status line is the send's summary
(`app.board`) and `s` opens the send screen whatever the lock: seeing where things stand and
ticking manual steps send nothing.
"""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from ...plan import consent
from ...app.board import Board, board
from ...app.readiness import GATE_NOT_ALLOWED, READY, GateStatus, Readiness, Reviews, assess, reviews  # noqa: F401
from ...app.review import set_reviewed
from ...checks.findings import Finding
from ...checks.rules import run_checks
from ...plan import Plan, PlanError
from ...plan.model import Location
from ..dialogs.consent import ConsentDialog
from ..text import plain, plain_lines, visible
from ...common.text import plural

COLUMNS = (("reviewed", "✓", 3), ("group", "Group", 23), ("required", "Req", 4), ("members", "Members", 8),
           ("communiques", "Communiques", 12), ("channels", "Channels", 17))


def place(location: Location, root: Path) -> str:
    """A location relative to the plan folder: short, and the same on every machine."""
    try:
        file = location.file.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        file = Path(location.file.name)
    text = str(file)
    if location.line is not None:
        text += f":{location.line}"
    if location.keypath:
        text += f" {location.keypath}"
    return text


class ChecklistScreen(Screen):
    """Home: review every stakeholder group and clear every error before sending."""

    CSS_PATH = "checklist.tcss"
    HELP_TITLE = "Checklist"
    AUTO_FOCUS = "#groups"
    BINDINGS = [
        Binding("space", "toggle_reviewed", "Review", id="toggle-reviewed",
                tooltip="Mark the highlighted stakeholder group reviewed (or not)"),
        Binding("p", "preview", "Preview", id="preview", tooltip="See each communique exactly as it will be sent"),
        Binding("s", "send", "Send", id="send", tooltip="Send the communiques (locked until all is clear)"),
        Binding("r", "reload", "Reload", id="reload", tooltip="Load the plan again and re-run the checks"),
        Binding("a", "allow_commands", "Allow commands", id="allow-commands",
                tooltip="Review the commands this plan runs (release gate, password commands) and allow them"),
        Binding("c", "receipts", "Receipts", id="receipts", show=False,
                tooltip="Who received each communique: receipts, coverage per group, follow-up"),
        Binding("f", "focus_findings", "Findings", id="findings", show=False, tooltip="Go to the list of findings"),
        Binding("g", "focus_groups", "Groups", id="groups", show=False, tooltip="Go to the stakeholder groups"),
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
        table: DataTable = DataTable(id="groups", cursor_type="row", zebra_stripes=True)
        table.border_title = "Stakeholder groups"
        yield table
        yield Static(id="group-detail")
        with Vertical(id="findings-box"):
            yield OptionList(id="findings")
        yield Static(id="send-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#groups", DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        box = self.query_one("#findings-box")
        box.border_title = "Findings"
        box.border_subtitle = "f: go here · enter: jump to its place"
        if self.app.ledger_problem:
            self.show_problem(self.app.ledger_problem)
        self.show_plan()

    def on_screen_resume(self) -> None:
        # The preview may have reloaded the plan; review state belongs to the new digest.
        if self.plan.digest != self.shown_digest:
            self.show_plan()
        else:
            self.refresh_board()  # back from sending: the summary shows where things stand now
            self.update_lock()

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

    def action_allow_commands(self) -> None:
        plan = self.plan
        if isinstance(self.app.screen, ConsentDialog):
            return  # already asking
        dialog = ConsentDialog(plan)
        shown = dialog.review  # what the engineer sees is what is recorded, even if a file changes meanwhile

        def answered(allowed: bool | None) -> None:
            if allowed:
                try:
                    consent.allow(shown)
                except OSError as error:
                    consent.grant(shown)  # the user said yes: run them now, even if it cannot be remembered
                    self.notify(f"Consent not remembered ({error.strerror}); you will be asked again next time.",
                                severity="warning")
                self.app.consent_declined.discard(shown.digest)
            else:
                self.app.consent_declined.add(shown.digest)
            self.refresh_bindings()
            if plan is self.plan:
                self.findings, self.gate = None, None
                self.show_release()
                self.update_lock()
                self.start_checks(plan)

        self.app.push_screen(dialog, answered)

    def load_reviews(self, plan: Plan) -> set[str]:
        note = self.query_one("#review-note", Static)
        found = reviews(self.app.ledger, plan)
        self.stale_review = found.stale
        note.update("The plan changed since it was reviewed: review every group again.")
        note.display = found.stale
        return set(found.reviewed)

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
                for (key, _, _), value in zip(COLUMNS, self.group_cells(plan, group.id)):
                    table.update_cell(group.id, key, value)
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

    def action_toggle_reviewed(self) -> None:
        group_id = self.highlighted_group_id()
        ledger = self.app.ledger
        if group_id is None:
            return
        if ledger is None:
            self.notify(self.app.ledger_problem or "Review state cannot be saved", severity="error")
            return
        reviewed = group_id not in self.reviewed
        plan = self.plan
        set_reviewed(ledger, plan, group_id, reviewed, self.app.reviewer)
        (self.reviewed.add if reviewed else self.reviewed.discard)(group_id)
        table = self.query_one("#groups", DataTable)
        table.update_cell(group_id, "reviewed", self.group_cells(plan, group_id)[0])
        self.show_group_detail()
        self.update_lock()
        if reviewed and table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)  # review top to bottom without extra keys

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

    def show_release(self) -> None:
        release = self.plan.release
        parts: list = [(visible(f"{release.name} {release.version}"), "bold")]
        if release.date:
            parts.append(f" · {release.date.isoformat()}")
        parts.append(f" · {visible(self.plan.path.name)} · ")
        gate = self.gate
        if gate is None:
            parts.append(("gate: checking…", "dim"))
        elif not gate.configured:
            parts.append(("gate: none (confirming declares success)", "bold $warning"))
        elif not gate.allowed:
            parts.append(("gate not run: press a", "bold $warning"))
        elif gate.ok:
            parts.append(("gate ✓ passed", "bold $success"))
        else:
            parts.append(("gate ✗ not passed", "bold $error"))
        line = Content.assemble(*parts)
        widget = self.query_one("#release", Static)
        widget.update(line)
        widget.set_class(gate is not None and gate.configured and gate.ok, "-gate-ok")
        widget.set_class(gate is not None and gate.configured and not gate.ok, "-gate-bad")
        widget.tooltip = plain_lines(gate.output) if gate and gate.output else None

    def show_findings(self) -> None:
        options = self.query_one("#findings", OptionList)
        box = self.query_one("#findings-box")
        highlighted = options.highlighted
        options.clear_options()
        if self.checks_error:
            box.border_title = "Findings: the checks could not run"
            options.add_option(Option(Content.assemble(("✗ ", "bold $error"), self.checks_error,
                                                        "\n  press r to try again"),
                                      id="checks-error", disabled=True))
            return
        if self.findings is None:
            box.border_title = "Findings: checking…"
            return
        errors = sum(f.severity == "error" for f in self.findings)
        warnings = len(self.findings) - errors
        box.border_title = f"Findings: {plural(errors, 'error')}, {plural(warnings, 'warning')}"
        if not self.findings:
            options.add_option(Option("No problems found.", id="clean", disabled=True))
            return
        for index, finding in enumerate(self.findings):
            options.add_option(Option(self.finding_text(finding), id=f"finding-{index}"))
        options.highlighted = min(highlighted or 0, options.option_count - 1)

    def finding_text(self, finding: Finding) -> Content:
        error = finding.severity == "error"
        mark = ("✗ error  ", "bold $error") if error else ("! warning", "bold $warning")
        parts: list = [mark, " ", (visible(finding.id), "bold"), " ", visible(finding.message),
                       (f"\n  {visible(place(finding.location, self.plan.root))}", "$text-muted")]
        if finding.hint:
            parts.append((f"\n  hint: {visible(finding.hint)}", "italic"))
        return Content.assemble(*parts)

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

    def readiness(self, *, retry_failed: bool = False, resend_in_doubt: bool = False,
                  left: int | None = None) -> Readiness:
        """The one rule (app.readiness) on what this screen knows; the send screen asks it too,
        with `left` from its own rows (fresher than this screen's board during a send)."""
        if left is None and self.board is not None:
            left = self.board.left(retry_failed=retry_failed, resend_in_doubt=resend_in_doubt)
        return assess(self.plan, findings=self.findings, reviewed=Reviews(frozenset(self.reviewed), self.stale_review),
                      ledger_ok=self.app.ledger is not None, plan_loads=self.load_error is None,
                      checks_error=self.checks_error, left=left)

    def lock_reasons(self) -> list[str]:
        answer = self.readiness()
        return [reason.in_app() for reason in answer.reasons]

    @work(thread=True, exclusive=True, exit_on_error=False, group="board")
    def refresh_board(self) -> None:
        """Where the send stands (app.board): read when the plan is shown and on coming back, not on
        every key, and in a thread (10,000 deliveries take a moment to read)."""
        plan, ledger = self.plan, self.app.ledger
        if ledger is not None:
            self.post_message(self.BoardRead(plan.digest, board(plan, ledger)))

    class BoardRead(Message):
        def __init__(self, digest: str, where: Board) -> None:
            super().__init__()
            self.digest, self.where = digest, where

    def on_checklist_screen_board_read(self, message: BoardRead) -> None:
        if message.digest == self.plan.digest:
            self.board = message.where
            self.update_lock()

    def update_lock(self) -> None:
        answer = self.readiness()
        self.send_lock = answer.locked_text() if answer.reasons else None
        self.show_send_status(answer)

    def show_send_status(self, answer: Readiness) -> None:
        status = self.query_one("#send-status", Static)
        where = self.board
        if where is not None and where.started:
            # After a send (here or headless): where it stands, not "ready to send".
            text = where.summary() + " · c receipts"
            if answer.verdict == READY:
                text += " · s continues"
            elif answer.reasons:
                text += f" · s shows it (sending more is locked: {' · '.join(r.in_app() for r in answer.reasons)})"
            else:
                text += " · s shows it"
        elif answer.reasons:
            text = answer.locked_text()
        elif answer.warnings:
            text = f"Ready to send: every group reviewed, no errors; {answer.warnings[0].text}. Press s."
        else:
            text = "Ready to send: every group reviewed, no errors, gate passed. Press s."
        status.update(plain(text))
        status.set_class(answer.verdict == READY or (where is not None and where.started), "-ready")

    def watch_send_lock(self, lock: str | None) -> None:
        self.refresh_bindings()

    @property
    def sent_before(self) -> bool:
        return self.board is not None and self.board.started

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "send" and self.send_lock is not None and not self.sent_before:
            return None  # shown greyed in the Footer; the status line says why
        if action == "allow_commands":
            # Only offered while consent is missing: not granted, or refused when a command was to run
            # (a file it names changed). Reads no file: this is asked on every refresh of the footer.
            refused = any(f.id in (GATE_NOT_ALLOWED, "secret-not-allowed") for f in self.findings or ())
            return refused or not consent.has_grant(self.plan)
        return True

    def disabled_reason(self, action: str) -> str:
        return self.send_lock or "" if action == "send" else ""

    def action_send(self) -> None:
        if self.send_lock is None or self.sent_before:
            self.app.action_open_send()

    # -- other keys -------------------------------------------------------------------------

    def action_preview(self) -> None:
        self.app.action_open_preview()

    def action_receipts(self) -> None:
        self.app.action_open_receipts()

    def action_reload(self) -> None:
        result = self.app.reload_plan()
        if isinstance(result, PlanError):
            self.load_error = result
            self.show_problem(f"The plan on disk does not load; still showing the last good one.\n{result}")
            self.update_lock()
            return
        self.load_error = None
        self.show_problem(self.app.ledger_problem)
        self.show_plan()
        self.notify("Plan reloaded; checking again.", timeout=2)

    def show_problem(self, text: str | None) -> None:
        problem = self.query_one("#problem", Static)
        problem.update(plain_lines(text or ""))
        problem.display = bool(text)

    def action_focus_findings(self) -> None:
        self.query_one("#findings", OptionList).focus()

    def action_focus_groups(self) -> None:
        self.query_one("#groups", DataTable).focus()
