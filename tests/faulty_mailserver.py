"""The tests' SMTP server: the demo's loopback server, plus faults on demand and a command log.

:class:`FaultyMailServer` extends :class:`relcomm_tui.demo.mailserver.LoopbackMailServer`
(same arguments, same Maildir, reports, AUTH and TLS) through its session and
handler hooks with what only tests need:

* fault rules (tests/smtp_faults.py) per recipient, per sender and per
  connection: :attr:`FaultyMailServer.faults`, :attr:`FaultyMailServer.connection_faults`;
* a fixed wait before every RCPT / end-of-DATA reply (``rcpt_delay``, ``data_delay``);
* every command received (:attr:`FaultyMailServer.commands`), so a test can
  prove what a client did *not* send (no MAIL, no AUTH);
* waiting for and finding messages (``wait_for_messages``, ``messages_for``)
  and counting connections (``connections_opened``, ``connections_dropped``);
* ``advertise_starttls``: offer STARTTLS without having it (it then answers
  454), to test client fallbacks;
* ``bounce_mode="smtp"``: refuse bouncing recipients at RCPT instead of
  sending a failure DSN later.

    with FaultyMailServer(maildir=tmp_path / "mail") as server:
        server.faults["bob@example.com"] = TempFail(times=1)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Optional, Sequence

from aiosmtpd.smtp import MISSING

from relcomm_tui.demo.mailserver import LoopbackMailServer
from relcomm_tui.demo.reports import BounceRule, find_bounce_rule  # noqa: F401  (re-exported for tests)
from relcomm_tui.demo.session import DsnEnvelope, SmtpSession, StoreHandler
from relcomm_tui.demo.store import AcceptedMessage
from smtp_faults import (  # noqa: F401  (re-exported: tests import rules and server from here)
    CloseAfter,
    Delay,
    DropConnection,
    FaultRule,
    FaultTable,
    Garbage,
    PermFail,
    TempFail,
)

Command = tuple[int, str, Optional[str]]  # (connection number, verb, argument)


class FaultySession(SmtpSession):
    """A session that logs every command and obeys the server's fault rules."""

    server: "FaultyMailServer"

    def __init__(self, handler: StoreHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.server.connections_opened += 1
        #: this connection's number (1 = the first), as in ``server.commands``
        self.connection_no = self.server.connections_opened
        self.accepted_here = 0  # messages stored from this connection (for CloseAfter)
        self._close_after_push = False  # CloseAfter: close once this reply is out
        self._swallow_push = False  # Garbage: it replaced the reply

    # -- hooks of SmtpSession ----------------------------------------------

    async def before_command(self, verb: str, arg: Optional[str]) -> bool:
        # AUTH's argument may carry credentials: keep only the mechanism.
        logged = (arg or "").split(" ")[0] if verb == "AUTH" else arg
        self.server._record_command(self.connection_no, verb, logged)
        return verb == "DATA" and await self._content_fault()

    def extensions(self) -> list[str]:
        lines = super().extensions()
        if self.server.advertise_starttls and not self.tls_context:
            lines.insert(lines.index("ENHANCEDSTATUSCODES"), "STARTTLS")
        return lines

    async def push(self, status):
        if self._swallow_push:
            self._swallow_push = False
            return
        await super().push(status)
        if self._close_after_push:
            self._close_after_push = False
            await self.drop_connection()

    # -- faults ------------------------------------------------------------

    async def _handle_client(self) -> None:
        for rule in list(self.server.connection_faults):
            if rule.at != "greeting" or not rule._consume():
                continue
            if isinstance(rule, Delay):
                await asyncio.sleep(rule.seconds)
            elif isinstance(rule, DropConnection):
                self.server.connections_dropped += 1
                assert self.transport is not None
                self.transport.close()
                return
            elif isinstance(rule, Garbage):
                await self.send_garbage(rule)
            elif isinstance(rule, (TempFail, PermFail)):
                await SmtpSession.push(self, f"{rule.code} {rule.msg}")
                assert self.transport is not None
                self.transport.close()
                return
        await super()._handle_client()

    async def send_garbage(self, rule: Garbage) -> None:
        """Write ``rule.payload`` in place of the next reply (or close)."""
        self._writer.write(rule.payload)
        await self._writer.drain()
        if rule.close:
            await self.drop_connection()
        self._swallow_push = True

    async def _content_fault(self) -> bool:
        """DropConnection(at="content"): answer 354, read part of the text, reset."""
        envelope = self.envelope
        if envelope is None or envelope.mail_from is None or not envelope.rcpt_tos:
            return False
        rules = [r for rcpt in envelope.rcpt_tos for r in self.server.faults.rules(rcpt, "content")]
        rule = next((r for r in rules if isinstance(r, DropConnection) and r._consume()), None)
        if rule is None:
            return False
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        received = 0
        while received < rule.after_bytes:
            line = await self._reader.readuntil(b"\n")
            received += len(line)
            if line == b".\r\n":
                break
        self.server.connections_dropped += 1
        assert self.transport is not None
        self.transport.abort()  # a reset: what a crashed or killed server looks like
        await asyncio.Event().wait()
        return True  # pragma: no cover - the session is cancelled above

    async def drop_connection(self) -> None:
        """Close the connection without a reply; ends this session."""
        assert self.transport is not None
        self.transport.close()
        # connection_lost() cancels the session task, which is awaiting here.
        await asyncio.Event().wait()


class FaultyHandler(StoreHandler):
    """Applies the rules at MAIL, RCPT and the end of DATA, then stores as the demo does."""

    server: "FaultyMailServer"

    async def _inject(self, smtp: FaultySession, rules: list) -> Any:
        """Apply the fault rules for one MAIL or RCPT: the reply to give, or MISSING to go on."""
        for rule in rules:
            if not rule._consume():
                continue
            if isinstance(rule, Delay):
                await asyncio.sleep(rule.seconds)
            elif isinstance(rule, DropConnection):
                self.server.connections_dropped += 1
                await smtp.drop_connection()
            elif isinstance(rule, Garbage):
                await smtp.send_garbage(rule)
                return "451 4.3.0 (not sent: garbage instead)"
            else:
                return f"{rule.code} {rule.msg}"
        return MISSING

    async def handle_MAIL(self, smtp: FaultySession, session, envelope, address: str, options) -> Any:
        return await self._inject(smtp, self.server.faults.rules(address or "", "mail"))

    async def handle_RCPT(self, smtp: FaultySession, session, envelope, address: str, options) -> Any:
        server = self.server
        if server.rcpt_delay:
            await asyncio.sleep(server.rcpt_delay)
        injected = await self._inject(smtp, server.faults.rules(address, "rcpt"))
        if injected is not MISSING:
            return injected
        if server.bounce_mode == "smtp":
            rule = find_bounce_rule(server.bounce_rules, address)
            if rule is not None:
                return rule.reply_for(address)
        return MISSING

    async def handle_DATA(self, smtp: FaultySession, session, envelope: DsnEnvelope) -> str:
        server = self.server
        if server.data_delay:
            await asyncio.sleep(server.data_delay)
        rules = [r for rcpt in envelope.rcpt_tos for r in server.faults.rules(rcpt, "data")]
        for rule in rules:
            if isinstance(rule, Delay) and rule._consume():
                await asyncio.sleep(rule.seconds)
        for rule in rules:
            if isinstance(rule, DropConnection) and rule._consume():
                if rule.deliver:
                    server.accept(envelope)
                server.connections_dropped += 1
                await smtp.drop_connection()
        for rule in rules:
            if isinstance(rule, Garbage) and rule._consume():
                await smtp.send_garbage(rule)
                return "451 4.3.0 (not sent: garbage instead)"
        for rule in rules:
            if isinstance(rule, (TempFail, PermFail)) and rule._consume():
                return f"{rule.code} {rule.msg}"
        reply = await super().handle_DATA(smtp, session, envelope)
        if not reply.startswith("250"):
            return reply
        smtp.accepted_here += 1
        for rule in server.connection_faults:
            if isinstance(rule, CloseAfter) and smtp.accepted_here == rule.messages and rule._consume():
                server.connections_dropped += 1
                smtp._close_after_push = True
                break
        return reply


class FaultyMailServer(LoopbackMailServer):
    """:class:`LoopbackMailServer` plus faults, delays and a command log (see the module doc).

    :param faults: initial ``{address: rule or [rules]}``; see :attr:`faults`.
    :param connection_faults: rules that act per connection, not per address:
        ``TempFail(at="greeting", code=421)``, ``Delay(at="greeting")`` (a stall),
        ``Garbage(at="greeting")``, ``DropConnection(at="greeting")``, :class:`CloseAfter`.
    :param rcpt_delay: seconds to wait before every RCPT reply.
    :param data_delay: seconds to wait before every end-of-DATA reply.
    :param advertise_starttls: advertise STARTTLS although it is not available.
    :param bounce_mode: ``"dsn"`` (the demo's way: accept, send a failure DSN
        later) or ``"smtp"`` (reject bouncing recipients at RCPT, no DSN).
    """

    session_class = FaultySession
    handler_class = FaultyHandler

    def __init__(
        self,
        maildir=None,
        *,
        faults: Optional[dict[str, Any]] = None,
        connection_faults: Sequence[FaultRule] = (),
        rcpt_delay: float = 0.0,
        data_delay: float = 0.0,
        advertise_starttls: bool = False,
        bounce_mode: str = "dsn",
        **kwargs: Any,
    ) -> None:
        if bounce_mode not in ("dsn", "smtp"):
            raise ValueError("bounce_mode must be 'dsn' or 'smtp'")
        super().__init__(maildir, **kwargs)
        #: ``{recipient: rule or [rules]}``; see :class:`FaultTable`
        self.faults = FaultTable()
        self.faults.update(faults or {})
        #: rules acting per connection (greeting faults, :class:`CloseAfter`)
        self.connection_faults: list[FaultRule] = list(connection_faults)
        self.rcpt_delay = rcpt_delay
        self.data_delay = data_delay
        self.advertise_starttls = advertise_starttls
        self.bounce_mode = bounce_mode
        if bounce_mode == "smtp" and self.reports is not None:
            self.reports.bounce_rules = ()  # refused at RCPT: nothing to report later
        #: number of TCP connections accepted so far
        self.connections_opened = 0
        #: number of connections closed by a fault (DropConnection, CloseAfter)
        self.connections_dropped = 0
        self._commands: list[Command] = []

    @property
    def commands(self) -> list[Command]:
        """Snapshot of the commands received: ``(connection, verb, argument)``
        (AUTH: the mechanism only), oldest first."""
        with self._lock:
            return list(self._commands)

    def commands_named(self, verb: str) -> list[Command]:
        """The received commands with verb ``verb`` (e.g. "MAIL", "AUTH")."""
        return [c for c in self.commands if c[1] == verb.upper()]

    def _record_command(self, connection: int, verb: str, arg: Optional[str]) -> None:
        with self._lock:
            self._commands.append((connection, verb, arg))

    def messages_for(self, address: str) -> list[AcceptedMessage]:
        """Accepted messages that had ``address`` among their recipients."""
        address = address.lower()
        return [m for m in self.messages if address in (r.lower() for r in m.rcpt_tos)]

    async def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[AcceptedMessage]:
        """Wait (asynchronously) until ``count`` messages were accepted."""
        deadline = time.monotonic() + timeout
        while self.messages_accepted < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.messages_accepted} of {count} messages after {timeout}s")
            await asyncio.sleep(0.01)
        return self.messages

    def clear(self) -> None:
        """Forget accepted messages, commands and faults (the Maildirs are kept)."""
        super().clear()
        with self._lock:
            self._commands.clear()
        self.faults.clear()
        self.connection_faults.clear()
