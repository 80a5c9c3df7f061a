"""Where the demo mail server keeps what it accepted: a record per message, and a Maildir.

:class:`AcceptedMessage` is what the server hands to the report generator
(:mod:`relcomm_tui.demo.reports`) and to whoever inspects the server; it lives
here, below both, so the server and the reports do not import each other.
"""

from __future__ import annotations

import email.parser
import email.policy
import mailbox
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence


@dataclass(frozen=True)
class AcceptedMessage:
    """One message accepted by the server.

    ``mail_options`` holds the decoded MAIL parameters, e.g.
    ``{"SIZE": 1234, "BODY": "8BITMIME", "RET": "HDRS", "ENVID": "rel-42"}``;
    ``rcpt_options[i]`` those of ``rcpt_tos[i]``, e.g.
    ``{"NOTIFY": ["SUCCESS", "FAILURE"], "ORCPT": "rfc822;bob@example.com"}``.
    ``data`` is the message exactly as received (CRLF line ends).
    """

    mail_from: str
    mail_options: dict[str, Any]
    rcpt_tos: list[str]
    rcpt_options: list[dict[str, Any]]
    data: bytes
    message_id: Optional[str]
    maildir_key: Optional[str] = None
    received_at: float = field(default_factory=time.time)

    @property
    def envid(self) -> Optional[str]:
        """The decoded ENVID, if the client gave one."""
        return self.mail_options.get("ENVID")


def open_maildir(path: str | os.PathLike[str]) -> mailbox.Maildir:
    """Open (creating if needed) a Maildir, also inside an existing empty
    directory, which ``mailbox.Maildir(create=True)`` leaves incomplete."""
    path = os.fspath(path)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    return mailbox.Maildir(path, create=False)


def store_message(
    maildir: Optional[mailbox.Maildir],
    *,
    mail_from: Optional[str],
    mail_params: dict[str, Any],
    rcpt_tos: Sequence[str],
    rcpt_params: Sequence[dict[str, Any]],
    data: bytes,
) -> AcceptedMessage:
    """Deliver one message into ``maildir`` (if any), as a local delivery agent
    would (Return-Path and Delivered-To on top, LF line ends), and describe it.

    Raises ``OSError`` when the Maildir cannot be written.
    """
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
    message_id = headers.get("Message-ID")
    key = None
    if maildir is not None:
        trace = f"Return-Path: <{mail_from}>\nDelivered-To: {', '.join(rcpt_tos)}\n"
        key = maildir.add(trace.encode("utf-8") + data.replace(b"\r\n", b"\n"))
    return AcceptedMessage(
        mail_from=mail_from or "",
        mail_options=dict(mail_params),
        rcpt_tos=list(rcpt_tos),
        rcpt_options=[dict(p) for p in rcpt_params],
        data=data,
        message_id=message_id.strip() if message_id else None,
        maildir_key=key,
    )
