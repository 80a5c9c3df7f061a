"""One delivery, whole: where it stands and why (the reason never cut), every report received for
it with its time and source, and the message as sent. Opened with enter on a receipts row."""

from __future__ import annotations

import datetime as dt
from typing import Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ScrollableContainer, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from ...common.times import short_time
from ...plan import Plan
from ...receipts.status import fate_of
from ...receipts.story import DeliveryStory, delivery_story
from ..text import plain, visible, visible_lines


class DeliveryDetailScreen(Screen):
    """The story of one delivery."""

    HELP_TITLE = "Delivery"
    AUTO_FOCUS = "#story"
    DEFAULT_CSS = """
    DeliveryDetailScreen { layout: vertical; }
    DeliveryDetailScreen #story-head { height: 1; padding: 0 1; background: $panel; }
    DeliveryDetailScreen #story { height: 1fr; padding: 0 1; }
    DeliveryDetailScreen .story-title { margin-top: 1; text-style: bold; color: $accent; }
    DeliveryDetailScreen #story-raw { height: auto; max-height: 100%; overflow-x: auto; overflow-y: hidden; }
    DeliveryDetailScreen #story-raw Static { width: auto; text-wrap: nowrap; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back", id="story-back", tooltip="Back to the receipts"),
        Binding("m", "toggle_raw", "Raw", id="story-raw",
                tooltip="The message as it went on the wire (MIME or the request), or the readable view"),
    ]

    class Loaded(Message):
        def __init__(self, story: DeliveryStory | None) -> None:
            super().__init__()
            self.story = story

    def __init__(self, delivery_id: str, *, clock: Callable[[], dt.datetime] | None = None,
                 tz: dt.tzinfo | None = None) -> None:
        super().__init__()
        self.delivery_id = delivery_id
        self.clock = clock or (lambda: dt.datetime.now().astimezone())
        self.tz = tz
        self.story: DeliveryStory | None = None
        self.raw = False

    @property
    def plan(self) -> Plan:
        return self.app.plan

    def compose(self) -> ComposeResult:
        yield Static(id="story-head")
        with VerticalScroll(id="story"):
            yield Static(id="story-standing")
            yield Static("Reports received", classes="story-title", id="story-reports-title")
            yield Static(id="story-reports")
            yield Static("The message as sent", classes="story-title", id="story-message-title")
            yield Static(id="story-message")
            with ScrollableContainer(id="story-raw"):
                yield Static(id="story-raw-text", markup=False)
        yield Footer(show_command_palette=False)  # ctrl+p is in the help: the screen's keys fit 80 columns

    def on_mount(self) -> None:
        self.query_one("#story-head", Static).update("Reading the ledger…")
        self.query_one("#story-raw").display = False
        self.load(self.plan)

    @work(thread=True, exclusive=True, exit_on_error=False, group="story")
    def load(self, plan: Plan) -> None:
        self.post_message(self.Loaded(delivery_story(plan, self.app.ledger, self.delivery_id)))

    def when(self, stamp: str | None) -> str:
        return short_time(stamp, now=self.clock(), tz=self.tz)

    def on_delivery_detail_screen_loaded(self, message: Loaded) -> None:
        self.story = story = message.story
        head = self.query_one("#story-head", Static)
        if story is None:
            head.update(plain("This delivery is not in the ledger."))
            return
        record = story.record
        head.update(Content.assemble((visible(record.recipient_display), "bold"),
                                     visible(f" · {record.communique_id} ({record.channel}) · {record.group_id or ''}")))
        self.show_standing(story)
        self.show_reports(story)
        self.show_message()

    def show_standing(self, story: DeliveryStory) -> None:
        record, row = story.record, story.receipt
        lines: list[Content] = []
        if row is not None:
            fate = fate_of(row, self.when)
            lines.append(Content.assemble(("Fate: ", "bold"), visible(fate.text)))
            if row.reason:
                lines.append(Content.assemble(("Reason: ", "bold"), visible_lines(row.reason)))
            if fate.unverified:
                lines.append(Content.assemble(("Unverified: ", "bold"), visible(fate.unverified)))
        attempts = f"{record.attempts} attempt{'' if record.attempts == 1 else 's'}"
        sent = f" · first sent {self.when(record.sent_at)}" if record.sent_at else ""
        accepted = f" · accepted {self.when(record.accepted_at)}" if record.accepted_at else ""
        lines.append(Content.assemble(("Send: ", "bold"), visible(f"{record.state_label} · {attempts}{sent}{accepted}")))
        if record.reply:
            lines.append(Content.assemble(("Server's reply: ", "bold"), visible_lines(record.reply)))
        if record.message_id:
            lines.append(Content.assemble(("Message-ID: ", "bold"), visible(record.message_id)))
        self.query_one("#story-standing", Static).update(Content("\n").join(lines))

    def show_reports(self, story: DeliveryStory) -> None:
        self.query_one("#story-reports-title", Static).update(f"Reports received ({len(story.reports)})")
        if not story.reports:
            self.query_one("#story-reports", Static).update(Content.styled("None yet.", "dim"))
            return
        lines: list[Content] = []
        for report in story.reports:
            what = " ".join(part for part in (report.kind, report.action, report.status) if part)
            lines.append(Content.assemble((self.when(report.at).rjust(11), "bold"), "  ", (visible(what), "bold"),
                                          "  ", visible_lines(report.words)))
            source = [f"from {report.source}"]
            if report.sender:
                source.append(f"sent by {report.sender}")
            if report.subject:
                source.append(f"“{report.subject}”")
            if report.matched_by:
                source.append(f"matched by {report.matched_by}")
            if report.note:
                source.append(f"note: {report.note}")
            lines.append(Content.styled(" " * 13 + visible(" · ".join(source)), "$text-muted"))
        self.query_one("#story-reports", Static).update(Content("\n").join(lines))

    def show_message(self) -> None:
        story = self.story
        if story is None:
            return
        title = "The message as sent" + (" (raw)" if self.raw else "")
        self.query_one("#story-message-title", Static).update(title)
        parts: list[Content] = []
        if story.message_note:
            parts.append(Content.styled(visible(story.message_note), "italic $text-muted"))
        if not self.raw:
            for name, value in story.headers:
                parts.append(Content.assemble((f"{visible(name)}: ", "bold $accent"), visible(value)))
            if story.text:
                parts.append(Content(""))
                parts.append(Content(visible_lines(story.text)))
        self.query_one("#story-message", Static).update(Content("\n").join(parts))
        self.query_one("#story-raw-text", Static).update(plain_raw(story.raw))
        self.query_one("#story-raw").display = self.raw

    def action_toggle_raw(self) -> None:
        self.raw = not self.raw
        self.show_message()

    def action_back(self) -> None:
        self.app.pop_screen()


def plain_raw(text: str) -> Content:
    """Raw text, line for line: never wrapped (a wrapped header looks like real folding)."""
    return Content(visible_lines(text.replace("\r\n", "\n")))
