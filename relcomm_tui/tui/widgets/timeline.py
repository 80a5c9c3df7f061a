"""The script as a timeline: one line per step, in plan order (issue 14).

    ✓ heads-up       done           4/4  4/4 delivered
    ⏸ support-ready  at checkpoint       The support lead confirms the team has read the briefing
    … customers      waiting       0/24  not before 2026-12-02 17:00 UTC  12:04

Done, sending, waiting (for what, with a countdown), at a checkpoint, halted (and why). The widget
only draws a `ScriptState` (relcomm_tui.script.scheduler, which `relcomm status` uses too); it
redraws its countdowns every second from the clock it is given, so a compressed demo clock counts
down compressed.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

from textual.content import Content
from textual.widgets import Static

from ...common.terminal_text import visible
from ...script.scheduler import CHECKPOINT, DONE, HALTED, READY, RUNNING, WAITING, ScriptState, countdown

MARKS = {DONE: "✓", RUNNING: "▶", READY: "▶", WAITING: "…", CHECKPOINT: "⏸", HALTED: "✗"}
# Theme variable per step status (as the send screen colours delivery states).
COLOURS = {DONE: "success", RUNNING: "accent", READY: "accent", WAITING: "foreground-muted",
           CHECKPOINT: "warning", HALTED: "error"}


class ScriptTimeline(Static):
    """Where every step of the plan's script stands."""

    DEFAULT_CSS = """
    ScriptTimeline {
        height: auto;
        max-height: 8;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, now: Callable[[], dt.datetime], **kwargs) -> None:
        super().__init__("", markup=False, **kwargs)
        self.now = now
        self.state: ScriptState | None = None
        self.note = ""  # e.g. "time compressed 60x (demo)"
        self.live: dict[str, int] = {}  # step id -> deliveries with an outcome, from the send's events

    def on_mount(self) -> None:
        self.set_interval(1.0, self.redraw)

    def show(self, state: ScriptState) -> None:
        self.state = state
        self.redraw()

    def redraw(self) -> None:
        state = self.state
        if state is None:
            self.update("")
            return
        now = self.now()
        width = min(18, max((len(v.id) for v in state.steps), default=4))
        lines: list[Content] = []
        for view in state.steps:
            colour = f"${COLOURS.get(view.status, 'foreground')}"
            name = visible(view.id)
            name = name if len(name) <= width else name[: width - 1] + "…"
            done = max(view.sent, self.live.get(view.id, 0)) if view.status in (RUNNING, READY) else view.sent
            sent = f"{min(done, view.total)}/{view.total}" if view.total else ""
            left = countdown(view.until, now)
            reason = visible(" ".join(view.reason.split()))
            style = f"bold {colour}" if view.status in (CHECKPOINT, HALTED, RUNNING) else colour
            lines.append(Content.assemble(
                (f"{MARKS.get(view.status, ' ')} ", style), (f"{name:<{width}} ", "bold" if view.status != DONE else ""),
                (f"{view.label:<13}", style), f"{sent:>6}  ",
                (f"{left} ", "bold $warning") if left else "", reason))
        if self.note:
            lines.append(Content.styled(self.note, "$text-muted italic"))
        self.update(Content("\n").join(lines))
