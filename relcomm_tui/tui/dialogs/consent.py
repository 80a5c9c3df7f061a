"""Asked before a plan's commands (release gate, password commands) first run on this host.

What is shown is what is allowed: the dialog takes one look at the commands and the files they
name (`consent.Review`), shows every command whole (long ones wrap, many scroll), and the caller
records exactly that review. The buttons stay on screen however long the list, down to 80x24.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Static

from ...plan import consent
from ...plan import Plan
from .ask import AskDialog


class ConsentDialog(AskDialog):
    """True: record consent for `review` and run them. False: check the plan without running them."""

    DEFAULT_CSS = """
    ConsentDialog > #ask-box {
        width: 100;
        height: auto;
        max-height: 100%;
    }
    ConsentDialog #consent-commands {
        height: auto;
        max-height: 8;  /* until fit_commands() measures the screen */
        scrollbar-gutter: stable;
    }
    ConsentDialog .consent-command {
        padding-left: 4;
        color: $text;
        text-style: bold;
    }
    ConsentDialog .consent-file, ConsentDialog .consent-changes {
        padding-left: 6;
        color: $text-muted;
    }
    ConsentDialog #consent-note {
        color: $text-muted;
        margin-top: 1;
    }
    ConsentDialog #ask-buttons {
        margin-top: 1;
    }
    """
    BINDINGS = [
        Binding("down,j", "scroll('down')", "Scroll", show=False),
        Binding("up,k", "scroll('up')", "Scroll", show=False),
        Binding("pagedown", "scroll('page_down')", "Page", show=False),
        Binding("pageup", "scroll('page_up')", "Page", show=False),
        Binding("home", "scroll('home')", "Top", show=False),
        Binding("end", "scroll('end')", "End", show=False),
    ]

    def __init__(self, plan: Plan) -> None:
        self.review = consent.review(plan)
        count = len(self.review.commands)
        super().__init__(
            f"This plan wants to run {count} command{'s' if count != 1 else ''} on this host, as you, "
            f"from {plan.root}:", consent.describe(self.review),
            yes="Allow and run", no="Not now", title="Allow the plan's commands?",
        )

    def compose(self) -> ComposeResult:
        with Vertical(id="ask-box") as box:
            box.border_title = self.title_text
            box.border_subtitle = "y allow · n / escape not now · ↑↓ pgup pgdn scroll"
            yield Static(self.question, id="ask-question", markup=False)
            with VerticalScroll(id="consent-commands") as scroll:
                scroll.can_focus = False  # the keys scroll it from anywhere; "Not now" keeps the focus
                for command in self.review.commands:
                    yield Static(f"{command.what} ({command.keypath}):", classes="consent-what", markup=False)
                    yield Static(command.command, classes="consent-command", markup=False)
                    for file in command.files:
                        yield Static(consent.covers(file), classes="consent-file", markup=False)
                changes = consent.changed_since_allowed(self.review)
                if changes:
                    yield Static("Since you last allowed them:\n" + "\n".join(changes), classes="consent-changes",
                                 markup=False)
            yield Static("Allow them only if you trust whoever wrote the plan. Until then the gate is not run "
                         "and sending stays locked.", id="consent-note", markup=False)
            with Horizontal(id="ask-buttons"):
                yield Button(self.yes_label, id="yes", variant="error")
                yield Button(self.no_label, id="no", variant="primary")

    def on_mount(self) -> None:
        super().on_mount()
        self.call_after_refresh(self.fit_commands)

    def on_resize(self) -> None:
        self.call_after_refresh(self.fit_commands)

    def fit_commands(self) -> None:
        """Give the commands every row the question, the note and the buttons leave, and no more."""
        box = self.query_one("#ask-box", Vertical)
        fixed = box.styles.border.spacing.height + box.styles.padding.height
        for selector in ("#ask-question", "#consent-note", "#ask-buttons"):
            widget = self.query_one(selector)
            fixed += widget.outer_size.height + widget.styles.margin.height
        rows = max(3, self.size.height - fixed)
        if self.query_one("#consent-commands").styles.max_height != rows:
            self.query_one("#consent-commands").styles.max_height = rows

    def action_scroll(self, how: str) -> None:
        scroll = self.query_one("#consent-commands", VerticalScroll)
        {"down": scroll.scroll_down, "up": scroll.scroll_up, "page_down": scroll.scroll_page_down,
         "page_up": scroll.scroll_page_up, "home": scroll.scroll_home, "end": scroll.scroll_end}[how](animate=False)
