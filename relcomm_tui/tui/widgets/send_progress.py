"""The send screen's progress: the overall bar, one bar per communique, the counts line and the
status sentence. Compose helpers and pure text functions, so the screen only says when to refresh.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.dom import DOMNode
from textual.widgets import Label, ProgressBar

from ...app.board import DONE_STATES, deliveries
from ...common.text import plural
from ...store.ledger import (
    ACCEPTED, AWAITING, DEFERRED, IN_DOUBT, MARKED_DELIVERED, QUEUED, REJECTED, SENDING, STATE_LABELS,
)
from ..text import plain, visible
from .delivery_table import STATE_COLOURS
from .line import Line

COUNT_ORDER = (ACCEPTED, MARKED_DELIVERED, REJECTED, IN_DOUBT, DEFERRED, AWAITING, SENDING, QUEUED)


def compose_bars(communique_ids: Iterable[str]) -> ComposeResult:
    with Horizontal(id="overall"):
        yield Label("All", classes="bar-name")
        yield ProgressBar(total=1, show_eta=False, show_percentage=False, id="overall-bar")
        yield Line("", id="overall-count", classes="bar-count")
    with VerticalScroll(id="communiques"):
        for ident in communique_ids:
            with Horizontal(classes="communique", id=f"c-{ident}"):
                yield Label(visible(ident), classes="bar-name", markup=False)
                yield ProgressBar(total=1, show_eta=False, show_percentage=False)
                yield Line("", classes="bar-count", markup=False)


def update_bars(screen: DOMNode, counts: Counter[str], per_communique: Mapping[str, Counter[str]],
                skipped: Mapping[str, str]) -> None:
    total = sum(counts.values())
    done = sum(counts[s] for s in DONE_STATES)
    screen.query_one("#overall-bar", ProgressBar).update(total=max(total, 1), progress=done)
    screen.query_one("#overall-count", Line).update(f"{done}/{total}")
    for box in screen.query(".communique"):
        ident = (box.id or "").removeprefix("c-")
        per = per_communique.get(ident, Counter())
        size = sum(per.values())
        finished = sum(per[s] for s in DONE_STATES)
        bar = box.query_one(ProgressBar)
        count = box.query_one(".bar-count", Line)
        if ident in skipped and size == 0:
            bar.display = False
            count.update(plain(skipped[ident]))
            continue
        bar.display = True
        bar.update(total=max(size, 1), progress=finished)
        trouble = [f"{per[s]} {STATE_LABELS[s]}" for s in (REJECTED, IN_DOUBT, DEFERRED) if per[s]]
        count.update(f"{finished}/{size}" + (f" ({', '.join(trouble)})" if trouble else ""))


def counts_line(counts: Counter[str]) -> Content:
    parts = [Content.styled(f"{counts[state]} {STATE_LABELS[state]}", f"${STATE_COLOURS[state]}")
             for state in COUNT_ORDER if counts[state] or state in (ACCEPTED, REJECTED, IN_DOUBT)]
    return Content(" · ").join(parts)


def status_text(counts: Counter[str], *, running: bool, paused: bool, cancelling: bool,
                stopped: tuple[str, str] | None) -> str:
    """The status line: what is happening, or what the engineer can do next."""
    failed = counts[DEFERRED] + counts[REJECTED]
    left = counts[QUEUED] + counts[DEFERRED]
    if running and cancelling:
        return "Cancelling: waiting for the replies of messages already sent…"
    if running and paused:
        return "Paused: messages already talking to the server finish. space resumes."
    if running:
        return "Sending. space pauses · x cancels"
    if stopped:
        return f"Stopped: {stopped[0]}"
    if counts[IN_DOUBT]:
        return f"{deliveries(counts[IN_DOUBT])} in doubt: d resends, m marks delivered."
    if failed:
        return f"{deliveries(failed)} not delivered: f retries them."
    if left:
        return f"{deliveries(left)} not sent yet: space sends them."
    if counts[AWAITING]:
        return f"{plural(counts[AWAITING], 'manual step')} to do: enter ticks the highlighted one done."
    if sum(counts.values()):
        return "Every delivery is done."
    return "Nothing to send."


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"
