"""Shared by the receipts tests: a plan whose receipts come back into a Maildir, and a render
function that builds messages without the compose layer."""

from __future__ import annotations

import mailbox
from email.message import EmailMessage
from pathlib import Path

from relcomm_tui.channels import DeliveryJob

CUSTOMERS = [
    ("Alice Adams", "alice@example.com"),
    ("Bob Unknown", "bob.unknown@example.com"),  # the loopback server bounces "unknown" with 5.1.1
    ("Carol Chen", "Carol@Example.com"),
]
OPS = [("Dave Ops", "dave@example.com")]


def write_plan(folder: Path, port: int, *, receipts: str = "receipts", refresh: int = 30) -> Path:
    """Two email communiques: `news` asks for read receipts, `ops-notice` does not; plus
    `news-reminder` (reminder_for = news). Receipts come back into `<folder>/<receipts>`."""
    folder.mkdir(parents=True, exist_ok=True)
    customers = ",\n  ".join(f'"{name} <{email}>"' for name, email in CUSTOMERS)
    ops = ",\n  ".join(f'"{name} <{email}>"' for name, email in OPS)
    text = f"""format = 1
[release]
name = "Orion"
version = "4.2.0"

[sender]
from = "Release Engineering <release@orion.example.com>"
receipts_to = "receipts@orion.example.com"

[transport.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
concurrency = 2
timeout = 5

[receipts]
sources = [{{ maildir = "{receipts}" }}]
dsn = true
read_receipts = false
refresh = {refresh}

[[stakeholders]]
id = "customers"
name = "Customers"
members = [
  {customers}
]

[[stakeholders]]
id = "operations"
name = "Operations"
members = [
  {ops}
]

[[communiques]]
id = "news"
description = "What's new"
to = ["customers"]
channel = "email"
subject = "Orion 4.2.0 is out"
body = "Hello {{{{ recipient.name }}}}"
read_receipt = true

[[communiques]]
id = "ops-notice"
to = ["operations"]
channel = "email"
subject = "Orion 4.2.0 deployed"
body = "Deployed."

[[communiques]]
id = "news-reminder"
reminder_for = "news"
to = ["customers"]
channel = "email"
subject = "Reminder: Orion 4.2.0 is out"
body = "Hello again"
"""
    (folder / "plan.toml").write_text(text, encoding="utf-8")
    return folder / "plan.toml"


def render(job: DeliveryJob) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Release Engineering <release@orion.example.com>"
    message["To"] = job.recipient.display
    message["Subject"] = job.communique.subject or job.communique.id
    message["Message-ID"] = job.message_id
    message.set_content(f"Hello {job.recipient.name}\n")
    return message


def add_to_maildir(folder: Path, raw: bytes) -> str:
    return mailbox.Maildir(folder, create=True).add(raw)


def reply_from(address: str, in_reply_to: str, subject: str = "Re: Orion 4.2.0 is out", *,
               date: str | None = None) -> bytes:
    """A human reply; dated now unless `date` (RFC 5322) is given: a report dated before the
    delivery was sent is never credited."""
    from email.utils import formatdate

    return (f"From: {address}\r\nTo: release@orion.example.com\r\nSubject: {subject}\r\n"
            f"Date: {date or formatdate()}\r\nMessage-ID: <reply.{address}>\r\n"
            f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n\r\nThanks, got it.\r\n").encode()


FOREIGN_DSN = b"""From: MAILER-DAEMON@mx.other.example
To: receipts@orion.example.com
Subject: Undelivered Mail Returned to Sender
Date: Fri, 27 Nov 2026 09:00:00 +0000
Message-ID: <foreign-dsn@mx.other.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.other.example
Original-Envelope-Id: not-one-of-ours

Final-Recipient: rfc822; stranger@elsewhere.example
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--B--
"""


CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "bounces" / "emails"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpora/bounces/emails")


def invoke(module, argv: list[str]) -> int:
    """Run one `relcomm` subcommand module as the CLI would (its own parser, then run)."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"relcomm {module.__name__.rsplit('.', 1)[-1]}")
    module.add_arguments(parser)
    normalize = getattr(module, "normalize_argv", None)
    return module.run(parser.parse_args(normalize(argv) if normalize else argv))


async def send_and_report(tmp_path: Path, *, mdn_fraction: float = 1.0):
    """Send the test plan to a loopback server that writes its reports into the plan's receipts
    Maildir, and flush them. Returns (plan path, state dir). The server is stopped afterwards."""
    from relcomm_tui.delivery.engine import SendEngine
    from relcomm_tui.store.ledger import Ledger
    from relcomm_tui.demo.mailserver import LoopbackMailServer
    from relcomm_tui.plan.loader import load_plan

    receipts = tmp_path / "plan" / "receipts"
    server = LoopbackMailServer(maildir=tmp_path / "mail", write_reports_to=receipts, report_delay=(0.0, 0.0),
                                mdn_fraction=mdn_fraction, seed=7)
    with server:
        path = write_plan(tmp_path / "plan", server.port)
        with Ledger.open(tmp_path / "state") as ledger:
            await SendEngine(load_plan(path), ledger, render=render).run()
        server.flush_reports()
    return path, tmp_path / "state"
