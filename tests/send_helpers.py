"""Shared by the send tests and benches: a plan on disk aimed at a loopback server, and messages
built without the compose layer (so the engine is tested on its own)."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

from relcomm_tui.channels import DeliveryJob
from relcomm_tui.store.ledger import Ledger, LedgerError
from relcomm_tui.plan.loader import load_plan
from relcomm_tui.plan.model import Plan


def write_plan(folder: Path, port: int, recipients: int = 5, *, security: str = "none", concurrency: int = 4,
               rate: str | None = None, max_attempts: int = 3, timeout: int = 5, username: str | None = None,
               password_env: str | None = None, dsn: bool = True, read_receipts: bool = False,
               extra_communiques: str = "", host: str = "127.0.0.1") -> Path:
    """A plan with one email communique (`news`) to `recipients` customers, and a follow-up (`reminder`)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "customers.csv", "w", encoding="utf-8") as handle:
        handle.write("name,email\n")
        for i in range(recipients):
            handle.write(f"Customer {i},customer{i}@example.com\n")
    smtp = [f'host = "{host}"', f"port = {port}", f'security = "{security}"', f"concurrency = {concurrency}",
            f"max_attempts = {max_attempts}", f"timeout = {timeout}"]
    if rate:
        smtp.append(f'rate = "{rate}"')
    if username:
        smtp.append(f'username = "{username}"')
    if password_env:
        smtp.append(f'password = {{ env = "{password_env}" }}')
    text = f"""format = 1
[release]
name = "Orion"
version = "4.2.0"

[sender]
from = "Release Engineering <release@orion.example.com>"
receipts_to = "receipts@orion.example.com"
test_to = "me@orion.example.com"

[transport.smtp]
{chr(10).join(smtp)}

[receipts]
dsn = {str(dsn).lower()}
read_receipts = {str(read_receipts).lower()}

[[stakeholders]]
id = "customers"
name = "Customers"
members = "customers.csv"

[[stakeholders]]
id = "engineering"
members = ["Eng <eng@orion.example.com>"]

[[communiques]]
id = "news"
to = ["customers"]
channel = "email"
subject = "Orion 4.2.0 is out"
body = "Hello {{{{ recipient.name }}}}"

[[communiques]]
id = "reminder"
reminder_for = "news"
to = ["customers"]
channel = "email"
subject = "Reminder: Orion 4.2.0"
body = "Hello again"
{extra_communiques}
"""
    (folder / "plan.toml").write_text(text, encoding="utf-8")
    return folder / "plan.toml"


def simple_render(job: DeliveryJob) -> EmailMessage:
    """What compose would build, minimally: enough for the server and the assertions."""
    message = EmailMessage()
    message["From"] = "Release Engineering <release@orion.example.com>"
    message["To"] = job.recipient.display
    message["Subject"] = job.communique.subject or job.communique.id
    message["Message-ID"] = job.message_id
    message.set_content(f"Hello {job.recipient.name}\n.leading dot line\n")
    return message


def load(path: Path) -> Plan:
    return load_plan(path)


def open_ledger(folder: Path) -> Ledger:
    """Ledger.open for helpers and benches: a refused state folder (a link, another owner, a ledger
    not written for this user) stops with its message and hint, not a traceback."""
    try:
        return Ledger.open(folder)
    except LedgerError as error:
        raise SystemExit(f"cannot use the ledger: {error.message}\n  hint: {error.hint}") from None
