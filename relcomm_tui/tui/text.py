"""Text from plans, servers and reports as the app shows it.

Everything the app shows that came from outside relcomm's own code (group and recipient names,
the release name, subjects, finding messages, server replies, report reasons, paths) goes through
`relcomm_tui.common.terminal_text.visible`, the same function the headless commands use, so a control
character (ESC, CR, C1, bidi override, zero-width) is shown, never acted on by the terminal.
Textual passes ESC through to the terminal as it is, so this matters here as much as on stdout.

And it is never markup: a group called `[@click=app.quit]x` is shown as written. `plain()` gives
a Content (which Static, Label, OptionList and DataTable take as literal text); Content.assemble
parts built from `visible()` strings are literal too. Notifications are made safe in one place,
`RelcommApp.notify`.
"""

from __future__ import annotations

from textual.content import Content

from ..common.terminal_text import visible, visible_lines

__all__ = ["plain", "plain_lines", "visible", "visible_lines"]


def plain(text: object) -> Content:
    """One line of outside text, as literal Content with control characters made visible."""
    return Content(visible(text))


def plain_lines(text: object) -> Content:
    """Multi-line outside text (a plan error, a reply kept whole): line breaks and tabs kept."""
    return Content(visible_lines(text))
