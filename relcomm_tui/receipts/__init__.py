"""Receipts: parse inbound reports (DSN, MDN, auto-reply, ARF, replies, MTA bounces)
and read them incrementally from Maildir, mbox or IMAP sources. Headless: no UI imports."""

from .parse import RecipientOutcome, Report, parse_message, report_to_json
from .sources import ImapSource, InboundMessage, MaildirSource, MboxSource  # noqa: E402

__all__ = [
    "RecipientOutcome",
    "Report",
    "parse_message",
    "report_to_json",
    "InboundMessage",
    "MaildirSource",
    "MboxSource",
    "ImapSource",
]
