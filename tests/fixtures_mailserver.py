"""Reusable fixtures and helpers for tests that need a real SMTP server.

Import the fixtures into a test module (``tests/`` is on ``sys.path``)::

    from fixtures_mailserver import mailserver, async_mailserver, make_message  # noqa: F401

``mailserver`` runs in a background thread (its own event loop), so the
test's loop is free to drive an aiosmtplib client.  ``async_mailserver``
runs inside the test's own loop.  Both store mail in ``tmp_path/"maildir"``.
Both are the tests' :class:`FaultyMailServer` (the demo server plus faults
and a command log), with no faults set.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Optional

import pytest

from faulty_mailserver import FaultyMailServer


@pytest.fixture
def mailserver(tmp_path):
    """A started threaded :class:`FaultyMailServer` (no reports)."""
    server = FaultyMailServer(maildir=tmp_path / "maildir")
    with server:
        yield server


@pytest.fixture
async def async_mailserver(tmp_path):
    """A :class:`FaultyMailServer` running in the test's event loop."""
    server = FaultyMailServer(maildir=tmp_path / "maildir")
    await server.start_async()
    try:
        yield server
    finally:
        await server.stop_async()


def make_message(
    to: str = "bob@example.com",
    *,
    sender: str = "releases@example.org",
    subject: str = "Release 1.2.3",
    body: str = "Release 1.2.3 is out.\n",
    message_id: Optional[str] = "<rel-1.2.3.bob@example.org>",
    read_receipt_to: Optional[str] = None,
) -> EmailMessage:
    """A small message; ``read_receipt_to`` sets Disposition-Notification-To."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    if message_id:
        msg["Message-ID"] = message_id
    if read_receipt_to:
        msg["Disposition-Notification-To"] = read_receipt_to
    msg.set_content(body)
    return msg
