"""The checklist's send lock and release banner: what app.readiness says, shown where the engineer
looks, and the `s` key that acts on it (locked: it says why).

A part of ChecklistScreen (checklist.py).
"""

from __future__ import annotations

from textual import work
from textual.content import Content
from textual.message import Message
from textual.widgets import Static

from ...app.board import board
from ...app.readiness import GATE_NOT_ALLOWED, READY, GateStatus, Readiness, Reviews, assess, reviews  # noqa: F401
from ...plan import consent
from ..text import plain, plain_lines, visible


class SendLock:
    """The send lock of ChecklistScreen (uses its plan, reviews, findings and board)."""

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

    def on_checklist_screen_board_read(self, message: Message) -> None:  # ChecklistScreen.BoardRead
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
            return
        # Locked: say why where the eyes are, not only in the status line.
        self.notify("\n".join(f"· {reason}" for reason in self.lock_reasons()), title="Sending is locked",
                    severity="warning", timeout=6)
