"""The receipts screen's header, filters and coverage line: what is shown and why.

A part of ReceiptsScreen (receipts.py).
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from ...common.times import short_time
from ...receipts.status import (
    coverage,
)
from ..text import plain, plain_lines, visible
from ..widgets.filter_bar import FilterBar

# What fits 80 columns first (the fate's reason starts there and grows with the terminal); the
# rest is a scroll to the right, and enter opens the whole story of the highlighted row.


class Filters:
    """Header, filters and coverage of ReceiptsScreen (uses its status, reactive filters and widgets)."""

    def show_head(self) -> None:
        release = self.plan.release
        parts: list = [(visible(f"{release.name} {release.version}"), "bold")]
        if self._refreshing and self.last_refreshed is None:
            parts.append(f" · reading the receipt sources… {self.reading or ''}".rstrip())
        elif self.last_refreshed is not None:
            parts.append(f" · last refreshed {short_time(self.last_refreshed, now=self.clock(), tz=self.tz)}")
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
        parts.append(f"group (t): {self.group_filter or 'all'}")
        parts.append(f"communique (c): {self.communique_filter or 'all'}")
        if self.text_filter:
            parts.append(f"words (/): {self.text_filter}")
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

    def watch_text_filter(self) -> None:
        self._filters_changed()

    def on_filter_bar_narrowed(self, message: FilterBar.Narrowed) -> None:
        self.text_filter = message.text

    def action_find(self) -> None:
        self.query_one("#receipts-find", FilterBar).open()

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
        self.query_one("#receipts-find", FilterBar).action_clear()


def _next(ids: list[str], current: str | None) -> str | None:
    """all -> first -> ... -> last -> all."""
    if not ids:
        return None
    if current not in ids:
        return ids[0]
    index = ids.index(current) + 1
    return ids[index] if index < len(ids) else None
