"""Compose: render communiques (Jinja2, sandboxed, strict) and build the messages that are sent.

(Contract stub: implemented by the compose work.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage

from ..plan.model import Communique, Plan, Recipient, StakeholderGroup


class RenderError(Exception):
    """A template that cannot be rendered: syntax error, undefined variable, bad header value."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.file, self.line, self.hint = message, file, line, hint


@dataclass(frozen=True)
class Rendered:
    """One communique rendered for one recipient, exactly as it will be sent."""

    communique_id: str
    channel: str
    subject: str
    text: str                      # Markdown source after templating (the text/plain part)
    html: str | None               # HTML alternative (email, publish)
    headers: dict[str, str] = field(default_factory=dict)  # the headers as sent (email)
    message: EmailMessage | None = None  # the full MIME message (email only)
    payload: bytes | None = None   # body posted (webhook/pager) or file written (publish)


def render(plan: Plan, communique: Communique, group: StakeholderGroup | None, recipient: Recipient | None,
           *, message_id: str | None = None) -> Rendered:
    """Render one communique for one recipient. Raises RenderError."""
    raise NotImplementedError
