"""How the preview shows one rendering: the headers or channel settings, the text as read, the raw
form (the MIME message, or a webhook's exact request), or the error that stopped it.

A part of PreviewScreen (preview.py).
"""

from __future__ import annotations

from pathlib import Path

from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Markdown, Static

from ...channels.request_preview import RequestPreview
from ...compose import Rendered, RenderError
from ...compose.shown import path_for
from ...plan.model import Communique
from ...plan.secrets import describe, is_reference
from ..text import plain_lines, visible, visible_lines


class Shown:
    """What PreviewScreen shows of a rendering (uses its widgets and the raw toggle)."""

    def show_error(self, error: RenderError) -> None:
        self.rendered, self.render_error = None, error
        where = visible(f"{Path(error.file).name if error.file else ''}{f':{error.line}' if error.line else ''}")
        parts: list = [("Cannot render this communique\n", "bold $error"), visible_lines(error.message)]
        if where:
            parts.append((f"\n  at {where}", "bold"))
        if error.hint:
            parts.append((f"\n  hint: {visible(error.hint)}", "italic"))
        widget = self.query_one("#render-error", Static)
        widget.update(Content.assemble(*parts))
        widget.display = True
        for name in ("#headers", "#text-part", "#raw", "#post-text"):
            self.query_one(name).display = False

    async def show_rendered(self, rendered: Rendered) -> None:
        self.rendered, self.render_error = rendered, None
        scroll = self.query_one("#preview", VerticalScroll)
        keep_y = scroll.scroll_y
        self.query_one("#render-error").display = False
        self.query_one("#headers", Static).update(self.headers_content(rendered))
        raw = self.query_one("#raw", Static)
        markdown = self.query_one("#text-part", Markdown)
        post = self.query_one("#post-text", Static)
        posted = rendered.channel in ("webhook", "pager")
        if self.raw:
            raw.update(plain_lines(self.raw_text(rendered)))
        elif posted:
            # A chat post is not Markdown to lay out (and a code block would cut its links): its words, wrapped.
            body = rendered.payload.decode("utf-8", errors="replace") if rendered.payload is not None else rendered.text
            post.update(Content.assemble(("What will be posted (m: the exact request)\n\n", "bold"), visible_lines(body)))
        else:
            readable = visible_lines(self.readable_text(rendered))
            if readable != self._shown_markdown:
                # Rebuilding the Markdown blocks is the slow part; a change elsewhere needs none.
                self._shown_markdown = readable
                await markdown.update(readable)
        self.query_one("#headers").display = not self.raw
        markdown.display = not self.raw and not posted
        post.display = not self.raw and posted
        raw.display = self.raw
        scroll.set_class(self.raw, "-raw")
        # A re-render after a file change must not throw the reader back to the top.
        self.call_after_refresh(scroll.scroll_to, y=keep_y, animate=False)

    def headers_content(self, rendered: Rendered) -> Content:
        communique = self.plan.communique(rendered.communique_id)
        rows: list[tuple[str, str]] = []
        headers = dict(rendered.headers)
        for name in HEADER_ORDER:
            if name in headers:
                rows.append((name, SET_WHEN_SENT.get(name, headers.pop(name))))
        rows += [(name, SET_WHEN_SENT.get(name, value)) for name, value in headers.items()]
        if rendered.channel != "email":
            rows.insert(0, ("Channel", rendered.channel))
            if rendered.subject and not any(name == "Subject" for name, _ in rows):
                rows.append(("Subject", rendered.subject))
            rows += self.channel_rows(communique)
        # Align values after the common headers; rare long ones (Disposition-Notification-To) just follow.
        width = max((len(name) for name, _ in rows if len(name) <= 11), default=0) + 1
        lines = [Content.assemble((f"{visible(name)}:".ljust(width), "bold $accent"), " ", visible(value))
                 for name, value in rows]
        if rendered.invitation:
            # The calendar invitation as the recipient's calendar shows it (rendered: never the plan's text).
            lines.append(Content(""))
            lines.append(Content.assemble((visible(rendered.invitation[0]), "bold $accent")))
            lines += [Content(visible(line)) for line in rendered.invitation[1:]]
        return Content("\n").join(lines)

    def channel_rows(self, communique: Communique | None) -> list[tuple[str, str]]:
        if communique is None:
            return []
        spec = communique.spec

        def shown(value) -> str:
            return describe(value) if is_reference(value) else str(value)

        if communique.channel in ("webhook", "pager") and spec.url is not None:
            return [(spec.method, shown(spec.url)), ("Format", spec.preset or spec.format or "json")]
        if communique.channel == "publish":
            rows = [("Writes", path_for(self.plan, communique))]
            if spec.public_url:
                rows.append(("Public URL", spec.public_url))
            return rows
        if communique.channel == "manual":
            return [("Action", "done by hand; you confirm it in relcomm afterwards")]
        return []

    def readable_text(self, rendered: Rendered) -> str:
        return rendered.text

    def raw_text(self, rendered: Rendered) -> str:
        """What goes on the wire: the MIME message, the HTTP request, the page written."""
        if rendered.message is not None:
            return rendered.message.as_string()
        if isinstance(self.request, RequestPreview):
            return self.request.as_text()
        if isinstance(self.request, str):
            return self.request
        if rendered.payload is not None:
            return rendered.payload.decode("utf-8", errors="replace")
        return rendered.html or rendered.text

    async def action_toggle_raw(self) -> None:
        self.raw = not self.raw
        posted = self.rendered is not None and self.rendered.channel in ("webhook", "pager")
        raw_title = "The exact request (tab, then ← → to scroll)" if posted else "Raw message (tab, then ← → to scroll)"
        self.query_one("#preview").border_title = raw_title if self.raw else "Preview"
        if self.rendered is not None:
            await self.show_rendered(self.rendered)


HEADER_ORDER = ("From", "To", "Subject", "Reply-To", "Date", "Message-ID")



# Set by the send engine for each delivery, so the preview cannot know them yet.
SET_WHEN_SENT = {"Date": "(stamped when sent)", "Message-ID": "(assigned when sent)"}
