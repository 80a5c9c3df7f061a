"""The relcomm app: wires the screens, themes, help and command palette together.

Screens live in `screens/`, dialogs in `dialogs/`; this module only holds what every screen
shares: the loaded plan, the ledger, the theme and the app-wide keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from ..app.board import board
from ..common.config import load_config, remember_theme
from ..store.ledger import Ledger, LedgerError, LedgerRefused, who_am_i
from ..plan import Plan, PlanError, load_plan
from ..common.terminal_text import visible, visible_lines
from .dialogs.help import HelpDialog
from .screens.checklist import ChecklistScreen
from .screens.preview import PreviewScreen
from .themes import DEFAULT_THEME, load_themes, resolve_theme_name


class RelcommApp(App[int]):
    """Review, send and confirm one plan's release communications."""

    CSS_PATH = "app.tcss"
    TITLE = "relcomm"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="help", tooltip="List every key on this screen"),
        Binding("q", "quit", "Quit", id="quit", tooltip="Leave relcomm (nothing is sent)"),
    ]

    def __init__(self, plan: Plan, *, theme: str | None = None, state_dir: Path | None = None,
                 allow_commands: bool = False) -> None:
        super().__init__()
        self.plan = plan
        self.allow_commands = allow_commands  # --allow-commands: consent given on the command line
        self.consent_declined: set[str] = set()  # command digests the user said "not now" to
        self.plan_path = plan.path
        self.state_dir = Path(state_dir) if state_dir else plan.state_dir
        self.ledger: Ledger | None = None
        self.ledger_problem: str | None = None
        self.startup_notes: list[tuple[str, str]] = []  # (message, severity) shown once mounted
        self._setup_themes(theme)

    # -- themes ---------------------------------------------------------------------------

    def _setup_themes(self, requested: str | None) -> None:
        themes, problems = load_themes()
        for theme in themes:
            self.register_theme(theme)
        for problem in problems:
            self.startup_notes.append((f"Theme file skipped: {problem}", "warning"))
        config, config_problem = load_config()
        if config_problem:
            self.startup_notes.append((f"Settings not read: {config_problem}", "warning"))
        available = set(self.available_themes)
        default = DEFAULT_THEME if DEFAULT_THEME in available else "textual-dark"
        chosen = default
        self._remember_on_mount: str | None = None
        for source, name in (("--theme", requested), ("saved theme", config.theme)):
            if not name:
                continue
            resolved = resolve_theme_name(name, available)
            if resolved:
                chosen = resolved
                if source == "--theme":
                    self._remember_on_mount = resolved
                break
            choices = ", ".join(name.removeprefix("relcomm-") for name in self.relcomm_theme_names())
            self.startup_notes.append((f"Unknown theme {name!r} ({source}); using {default}. Try: {choices}", "warning"))
            if source == "--theme":
                break  # an explicit wrong choice wins over the saved one: say so, use the default
        self.theme = chosen

    def relcomm_theme_names(self) -> list[str]:
        return sorted(name for name in self.available_themes if name.startswith("relcomm-"))

    def watch_theme(self, name: str) -> None:
        if not self.is_running:
            return
        problem = remember_theme(name)
        if problem:
            self.notify(str(problem), title="Theme not remembered", severity="warning")

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Every toast, from any screen: its words often quote a plan, a server or a report, so
        control characters are made visible and nothing is read as markup (see tui/text.py)."""
        super().notify(visible_lines(message), title=visible(title), severity=severity, timeout=timeout, markup=False)

    # -- lifecycle ------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._open_ledger()
        if self._remember_on_mount:
            remember_theme(self._remember_on_mount)
        for message, severity in self.startup_notes:
            self.notify(message, severity=severity, timeout=8)
        self.push_screen(ChecklistScreen())

    def _open_ledger(self) -> None:
        try:
            self.ledger = Ledger.open(self.state_dir)
        except LedgerRefused as error:  # a link, another owner, a ledger that came with the plan
            self.ledger_problem = (f"Nothing is sent and no review is read from this state folder: {error.message}\n"
                                   f"hint: {error.hint}")
        except (LedgerError, OSError) as error:
            hint = getattr(error, "hint", "") or "check that the folder beside the plan is writable"
            self.ledger_problem = f"Review state cannot be saved ({error}); {hint}"

    def on_unmount(self) -> None:
        if self.ledger is not None:
            self.ledger.close()

    @property
    def reviewer(self) -> str:
        login, host = who_am_i()
        return f"{login}@{host}"

    def reload_plan(self) -> Plan | PlanError:
        """Load the plan again from disk; on error the last good plan stays in use."""
        try:
            plan = load_plan(self.plan_path)
        except PlanError as error:
            return error
        self.plan = plan
        return plan

    # -- actions every screen shares ------------------------------------------------------

    def action_help(self) -> None:
        if isinstance(self.screen, HelpDialog):
            return
        self.push_screen(HelpDialog(self.screen))

    def action_open_preview(self, communique_id: str | None = None, group_id: str | None = None) -> None:
        if isinstance(self.screen, PreviewScreen):
            if communique_id:
                self.screen.select_communique(communique_id, group_id)
            return
        self.push_screen(PreviewScreen(communique_id, group_id))

    def action_open_send(self) -> None:
        # The checklist calls this when the plan may be sent, or when something was sent before:
        # then the send screen opens on where things stand (continuing asks for the version
        # there, under the same rule); a first send asks for it now.
        from .screens.send import SendScreen, confirm_send_dialog  # loaded when first opened (app start-up time)

        where = board(self.plan, self.ledger)
        if where.started:
            self.push_screen(SendScreen())
            return
        answer = self.readiness()
        warnings = tuple(f"Note: {w.text}." for w in answer.warnings) if answer is not None else ()
        self.push_screen(confirm_send_dialog(self.plan, where, warnings=warnings),
                         lambda yes: self.push_screen(SendScreen(start=True)) if yes else None)

    def readiness(self, **flags):
        """The send rule as the checklist (home, always at the bottom of the stack) knows it now."""
        for screen in self.screen_stack:
            if isinstance(screen, ChecklistScreen):
                return screen.readiness(**flags)
        return None

    def action_open_receipts(self) -> None:
        from .screens.receipts import ReceiptsScreen  # loaded when first opened (app start-up time)

        if not isinstance(self.screen, ReceiptsScreen):
            self.push_screen(ReceiptsScreen())

    async def action_quit(self) -> None:
        # A running send asks first and stops cleanly before the app exits. (Not imported at the top:
        # the send screen is loaded when first opened, and if it never was, none is running.)
        from .screens.send import SendScreen

        for screen in self.screen_stack:
            if isinstance(screen, SendScreen) and screen.confirm_leave(self.exit):
                return
        self.exit()

    # -- command palette: the current screen's actions plus relcomm's themes --------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for name in self.relcomm_theme_names():
            yield SystemCommand(f"Theme: {name.removeprefix('relcomm-')}", f"Switch to the {name} theme",
                                lambda name=name: setattr(self, "theme", name))
        if type(screen).__name__ != "ReceiptsScreen" and "receipts" not in {
                a.binding.action for a in screen.active_bindings.values()}:
            yield SystemCommand("Receipts", "Who received each communique, refreshed from the reports that "
                                "come back; follow up the unconfirmed", self.action_open_receipts)
        seen: set[str] = set()
        for active in screen.active_bindings.values():
            binding = active.binding
            if not binding.description or binding.action in seen or binding.action in ("quit", "command_palette"):
                continue
            if binding.id is None or (active.node is not screen and binding.action != "help"):
                continue  # widget and built-in keys (cursor moves, focus, copy) are not this screen's actions
            seen.add(binding.action)
            help_text = binding.tooltip or binding.description
            if not active.enabled:
                reason = getattr(screen, "disabled_reason", lambda action: "")(binding.action)
                help_text = f"{help_text} (unavailable: {reason})" if reason else f"{help_text} (unavailable)"
            yield SystemCommand(f"{binding.description} ({self.get_key_display(binding)})", help_text,
                                lambda node=active.node, action=binding.action: self.call_later(node.run_action, action))


def build_app(plan_path: str | Path, *, theme: str | None = None, state_dir: str | Path | None = None,
              allow_commands: bool = False) -> RelcommApp:
    """The app for a plan on disk. Raises PlanError when the plan cannot be loaded."""
    plan = load_plan(plan_path)
    return RelcommApp(plan, theme=theme, state_dir=Path(state_dir) if state_dir else None,
                      allow_commands=allow_commands)
