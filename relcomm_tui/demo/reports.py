"""Realistic delivery reports for the embedded demo mail server.

After :class:`relcomm_tui.demo.mailserver.LoopbackMailServer` accepts a message it
can hand it to a :class:`ReportGenerator`, which decides - like a relay and the
recipients' mail clients would - which reports come back to the sender:

* an RFC 3464 *success* DSN for every delivered recipient whose RCPT carried
  ``NOTIFY=...SUCCESS...``;
* an RFC 3464 *failure* DSN for recipients matching a :class:`BounceRule`
  (unless ``NOTIFY`` excludes ``FAILURE``);
* an RFC 8098 read receipt (MDN) for a seeded-random fraction of delivered
  recipients when the message carries ``Disposition-Notification-To``.

The builders (:func:`build_dsn`, :func:`build_mdn`) are pure functions that
return the report as bytes; the generator only adds randomness and timing.
The server schedules the reports and writes them into a receipts Maildir.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import os
import random
from dataclasses import dataclass
from email.message import Message
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Iterable, Optional, Sequence

from .rsvp import build_rsvp
from .store import AcceptedMessage, open_maildir

__all__ = [
    "BounceRule",
    "DEFAULT_BOUNCE_RULES",
    "PendingReport",
    "ReportGenerator",
    "build_dsn",
    "build_mdn",
    "find_bounce_rule",
]


@dataclass(frozen=True)
class BounceRule:
    """Recipients whose local part contains ``match`` (case-insensitive) bounce.

    ``status`` is the RFC 3463 status (``"5.1.1"``); ``reply`` is the SMTP
    reply used as ``Diagnostic-Code`` in the failure DSN and, with
    ``bounce_mode="smtp"``, as the reply to RCPT.  ``{rcpt}`` in ``reply`` is
    replaced by the recipient address.
    """

    match: str
    status: str
    reply: str

    def matches(self, address: str) -> bool:
        local = address.rpartition("@")[0] or address
        return self.match.lower() in local.lower()

    def reply_for(self, address: str) -> str:
        return self.reply.format(rcpt=address)


DEFAULT_BOUNCE_RULES: tuple[BounceRule, ...] = (
    BounceRule("unknown", "5.1.1", "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"),
    BounceRule("full", "5.2.2", "552 5.2.2 <{rcpt}>: Mailbox full"),
)


def find_bounce_rule(rules: Iterable[BounceRule], address: str) -> Optional[BounceRule]:
    """Return the first rule matching ``address``, or ``None``."""
    for rule in rules:
        if rule.matches(address):
            return rule
    return None


@dataclass(frozen=True)
class PendingReport:
    """A report waiting to be written: ``kind`` is ``"dsn-success"``,
    ``"dsn-failure"``, ``"mdn"`` or ``"rsvp"`` (an answer to an invitation); ``delay`` is seconds
    after acceptance."""

    kind: str
    recipient: str
    delay: float
    data: bytes


# --------------------------------------------------------------------------
# builders


def _header_block(original: bytes) -> str:
    """The header section of ``original`` (for text/rfc822-headers)."""
    text = original.replace(b"\r\n", b"\n")
    head, _, _ = text.partition(b"\n\n")
    return head.decode("ascii", "replace") + "\n"


def _fields(pairs: Sequence[tuple[str, Optional[str]]]) -> Message:
    """A header-only Message used as one block of a report body."""
    block = Message()
    for name, value in pairs:
        if value is not None:
            block[name] = value
    return block


def _envelope(report: MIMEMultipart, *, from_: str, to: str, subject: str, domain: str) -> None:
    report["From"] = from_
    report["To"] = to
    report["Subject"] = subject
    report["Date"] = email.utils.formatdate(localtime=True)
    report["Message-ID"] = email.utils.make_msgid(domain=domain)


def build_dsn(
    *,
    original: bytes,
    mail_from: str,
    recipient: str,
    action: str,
    status: str,
    envid: Optional[str] = None,
    orcpt: Optional[str] = None,
    diagnostic: Optional[str] = None,
    ret: Optional[str] = None,
    reporting_mta: str = "localhost",
    arrival_date: Optional[str] = None,
) -> bytes:
    """Build an RFC 3464 delivery status notification for one recipient.

    ``action`` is ``"delivered"`` or ``"failed"``; ``status`` an RFC 3463
    code; ``orcpt`` the xtext-decoded ORCPT value (``"rfc822;addr"``);
    ``diagnostic`` an SMTP reply (``"550 5.1.1 ..."``).  A failed DSN with
    ``ret="FULL"`` returns the whole original as message/rfc822, otherwise
    the original's headers are returned as text/rfc822-headers.
    """
    original_msg = email.message_from_bytes(original)
    delivered = action == "delivered"
    report = MIMEMultipart("report", report_type="delivery-status")
    _envelope(
        report,
        from_=f"Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        to=mail_from,
        subject=(
            "Successful Mail Delivery Report" if delivered else "Undelivered Mail Returned to Sender"
        ),
        domain=reporting_mta,
    )
    report["Auto-Submitted"] = "auto-replied"

    if delivered:
        human = (
            f"This is the mail system at host {reporting_mta}.\n\n"
            f"Your message was successfully delivered to the destination(s)\n"
            f"listed below.\n\n<{recipient}>: delivery via local: delivered to mailbox\n"
        )
    else:
        human = (
            f"This is the mail system at host {reporting_mta}.\n\n"
            f"I'm sorry to have to inform you that your message could not\n"
            f"be delivered to one or more recipients.\n\n<{recipient}>: {diagnostic or status}\n"
        )
    report.attach(MIMEText(human, "plain", "us-ascii"))

    per_message = _fields(
        [
            ("Reporting-MTA", f"dns; {reporting_mta}"),
            ("Original-Envelope-Id", envid),
            ("Arrival-Date", arrival_date or email.utils.formatdate(localtime=True)),
        ]
    )
    per_recipient = _fields(
        [
            ("Original-Recipient", orcpt),
            ("Final-Recipient", f"rfc822; {recipient}"),
            ("Action", action),
            ("Status", status),
            ("Remote-MTA", f"dns; {reporting_mta}"),
            ("Diagnostic-Code", f"smtp; {diagnostic}" if diagnostic else None),
            ("Last-Attempt-Date", email.utils.formatdate(localtime=True)),
        ]
    )
    status_part = Message()
    status_part["Content-Type"] = "message/delivery-status"
    status_part.set_payload([per_message, per_recipient])
    report.attach(status_part)

    if not delivered and (ret or "").upper() == "FULL":
        report.attach(MIMEMessage(original_msg))
    else:
        report.attach(MIMEText(_header_block(original), "rfc822-headers", "us-ascii"))
    return report.as_bytes()


def build_mdn(
    *,
    original: bytes,
    recipient: str,
    orcpt: Optional[str] = None,
    reporting_ua: str = "localhost",
) -> Optional[bytes]:
    """Build an RFC 8098 "displayed" read receipt from ``recipient``.

    Returns ``None`` when the original has no ``Disposition-Notification-To``.
    """
    original_msg = email.message_from_bytes(original)
    notify_to = original_msg.get("Disposition-Notification-To")
    if not notify_to:
        return None
    message_id = original_msg.get("Message-ID")
    subject = original_msg.get("Subject", "")

    report = MIMEMultipart("report", report_type="disposition-notification")
    _envelope(report, from_=recipient, to=str(notify_to), subject=f"Read: {subject}", domain=reporting_ua)
    if message_id:
        report["In-Reply-To"] = message_id
        report["References"] = message_id
    report.attach(
        MIMEText(
            f"The message sent to {recipient} with subject \"{subject}\"\n"
            f"has been displayed. This is no guarantee that the message has\n"
            f"been read or understood.\n",
            "plain",
            "utf-8",
        )
    )
    fields = _fields(
        [
            ("Reporting-UA", f"{reporting_ua}; relcomm demo mail client"),
            ("Original-Recipient", orcpt),
            ("Final-Recipient", f"rfc822; {recipient}"),
            ("Original-Message-ID", message_id),
            ("Disposition", "manual-action/MDN-sent-manually; displayed"),
        ]
    )
    notification = MIMEMessage(fields, "disposition-notification")
    # MIMEMessage adds MIME-Version to the wrapper only; the field block must
    # stay a bare list of fields.
    report.attach(notification)
    report.attach(MIMEText(_header_block(original), "rfc822-headers", "us-ascii"))
    return report.as_bytes()


# --------------------------------------------------------------------------
# generator


class ReportGenerator:
    """Decide which reports an accepted message produces and write them.

    :param maildir: receipts Maildir path (created if missing).
    :param delay: ``(min, max)`` seconds between acceptance and a DSN; a read
        receipt comes a further ``(min, max)`` seconds after that.
    :param seed: seed for the random delays and the read-receipt choice.
    :param mdn_fraction: share of delivered recipients that send a read
        receipt when one was requested.
    :param bounce_rules: recipients matching one of these get a failure DSN.
    :param reporting_mta: host name used in Reporting-MTA and report ids.
    """

    def __init__(
        self,
        maildir: str | os.PathLike[str],
        *,
        delay: tuple[float, float] = (1.0, 5.0),
        seed: Optional[int] = None,
        mdn_fraction: float = 0.3,
        bounce_rules: Sequence[BounceRule] = DEFAULT_BOUNCE_RULES,
        reporting_mta: str = "localhost",
    ) -> None:
        self.maildir = open_maildir(maildir)
        self.delay = delay
        self.mdn_fraction = mdn_fraction
        self.bounce_rules = tuple(bounce_rules)
        self.reporting_mta = reporting_mta
        self._random = random.Random(seed)

    def _delay(self) -> float:
        low, high = self.delay
        return self._random.uniform(low, high)

    def reports_for(self, accepted: AcceptedMessage) -> list[PendingReport]:
        """The reports ``accepted`` will produce (not yet written)."""
        reports: list[PendingReport] = []
        arrival = email.utils.formatdate(localtime=True)
        envid = accepted.mail_options.get("ENVID")
        ret = accepted.mail_options.get("RET")
        for rcpt, options in zip(accepted.rcpt_tos, accepted.rcpt_options):
            notify = options.get("NOTIFY") or []
            orcpt = options.get("ORCPT")
            rule = find_bounce_rule(self.bounce_rules, rcpt)
            common = dict(
                original=accepted.data,
                mail_from=accepted.mail_from,
                recipient=rcpt,
                envid=envid,
                orcpt=orcpt,
                ret=ret,
                reporting_mta=self.reporting_mta,
                arrival_date=arrival,
            )
            dsn_delay = self._delay()
            if rule is not None:
                # RFC 3461 4.1: without NOTIFY the MTA reports failures.
                if accepted.mail_from and (not notify or "FAILURE" in notify):
                    data = build_dsn(
                        action="failed", status=rule.status, diagnostic=rule.reply_for(rcpt), **common
                    )
                    reports.append(PendingReport("dsn-failure", rcpt, dsn_delay, data))
                continue
            if accepted.mail_from and "SUCCESS" in notify:
                data = build_dsn(action="delivered", status="2.0.0", **common)
                reports.append(PendingReport("dsn-success", rcpt, dsn_delay, data))
            wants_mdn = self._random.random() < self.mdn_fraction
            if wants_mdn:
                mdn = build_mdn(
                    original=accepted.data, recipient=rcpt, orcpt=orcpt, reporting_ua=self.reporting_mta
                )
                if mdn is not None:
                    reports.append(PendingReport("mdn", rcpt, dsn_delay + self._delay(), mdn))
            if b"method=REQUEST" in accepted.data or b'method="REQUEST"' in accepted.data:
                # a calendar invitation: most invitees answer it (demo/rsvp.py)
                roll = self._random.random()
                answer = "ACCEPTED" if roll < 0.5 else "TENTATIVE" if roll < 0.65 else "DECLINED" if roll < 0.8 else ""
                reply = build_rsvp(accepted.data, rcpt, answer) if answer else None
                if reply is not None:
                    reports.append(PendingReport("rsvp", rcpt, dsn_delay + self._delay(), reply))
        return reports

    def write(self, report: PendingReport) -> str:
        """Store ``report`` in the receipts Maildir; returns the Maildir key."""
        data = b"Return-Path: <>\n" + report.data.replace(b"\r\n", b"\n")
        return self.maildir.add(data)
