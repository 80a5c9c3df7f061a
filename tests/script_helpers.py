"""A scripted plan aimed at this test's loopback SMTP server and webhook receiver (issue 14 tests)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path


def write_script_plan(folder: Path, smtp_port: int, hook_url: str, *, ops: int = 6, customers: int = 12,
                      concurrency: int = 4, steps: str | None = None, not_before: dt.datetime | None = None,
                      wait: str = "30m", receipts: bool = False) -> Path:
    """ops -> (checkpoint) -> customers (wait, not_before, halt over 10%) -> calls (manual)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("ops", ops), ("customers", customers)):
        with open(folder / f"{name}.csv", "w", encoding="utf-8") as handle:
            handle.write("name,email\n")
            for i in range(count):
                handle.write(f"{name.title()} {i},{name}{i}@example.com\n")
    when = f"not_before = {not_before.isoformat().replace('+00:00', 'Z')}" if not_before else ""
    script = steps if steps is not None else f"""
[[steps]]
id = "heads-up"
send = ["ops-notice", "chat"]
halt_if = {{ post_failed = true }}

[[steps]]
id = "briefed"
checkpoint = "Support confirmed the briefing"

[[steps]]
id = "customers"
send = ["announce"]
wait = "{wait}"
{when}
halt_if = {{ failed_over = 10 }}

[[steps]]
id = "calls"
send = ["call"]
"""
    reading = """receipts_to = "receipts@orion.example.com"

[receipts]
sources = [{ maildir = "reports" }]
read_receipts = true
refresh = 5
""" if receipts else ""
    text = f"""format = 1
[release]
name = "Orion"
version = "4.2.0"

[sender]
from = "Release Engineering <release@orion.example.com>"
{reading}
[transport.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
concurrency = {concurrency}
max_attempts = 2
timeout = 5

[[stakeholders]]
id = "ops"
members = "ops.csv"

[[stakeholders]]
id = "customers"
members = "customers.csv"

[[stakeholders]]
id = "exec"
members = [{{ name = "Dana Chief", email = "dana@example.com", phone = "+1 555 0100" }}]

[[communiques]]
id = "ops-notice"
to = ["ops"]
subject = "Orion 4.2.0 deploys now"
body = "Hello {{{{ recipient.name }}}}"

[[communiques]]
id = "chat"
to = ["ops"]
channel = "webhook"
preset = "text"
url = "{hook_url}"
body = "Orion 4.2.0 is live"

[[communiques]]
id = "announce"
to = ["customers"]
subject = "Orion 4.2.0 is out"
body = "Hello {{{{ recipient.name }}}}"

[[communiques]]
id = "call"
to = ["exec"]
channel = "manual"
instructions = "Call {{{{ recipient.name }}}}"
{script}
"""
    (folder / "plan.toml").write_text(text, encoding="utf-8")
    return folder / "plan.toml"


def subjects_in_order(server) -> list[str]:
    import email

    return [email.message_from_bytes(m.data)["Subject"] for m in server.messages]
