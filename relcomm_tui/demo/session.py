"""One SMTP conversation with the demo server: aiosmtpd plus what a real relay offers.

:class:`SmtpSession` adds to stock aiosmtpd: ``PIPELINING`` (and finishing
pipelined commands that arrived before the client half-closed, which stock
aiosmtpd drops), RFC 3461 ``DSN`` parameters, RFC 3463 enhanced status codes,
the null reverse path ``MAIL FROM:<>``, and AUTH only when the server has
credentials. :class:`StoreHandler` stores each accepted message.

Hooks for subclasses (the tests' fault-injecting server extends these; the
demo needs none of it): :meth:`SmtpSession.before_command` sees every command
first and may answer it itself, :meth:`SmtpSession.extensions` lists what EHLO
advertises, and a handler may add aiosmtpd's ``handle_MAIL``/``handle_RCPT``
hooks or wrap :meth:`StoreHandler.handle_DATA`.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from typing import Any, Optional, Protocol

from aiosmtpd.smtp import MISSING, SMTP, Envelope, syntax

from .esmtp import ParamError, enhance, parse_mail_params, parse_rcpt_params
from .store import AcceptedMessage

log = logging.getLogger(__name__)


class _PipelineSafeReader(asyncio.StreamReader):
    """Stream reader that turns "EOF after the last buffered line" into
    cancellation, the same path aiosmtpd takes when a client goes away."""

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        try:
            return await super().readuntil(separator)
        except asyncio.IncompleteReadError:
            raise asyncio.CancelledError from None


class DsnEnvelope(Envelope):
    """aiosmtpd's envelope plus the decoded MAIL and per-RCPT parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.mail_params: dict[str, Any] = {}
        self.rcpt_params: list[dict[str, Any]] = []


class Server(Protocol):
    """What a session and its handler need of the server (it is
    :class:`relcomm_tui.demo.mailserver.LoopbackMailServer`; a Protocol keeps
    the import one way)."""

    @property
    def messages_accepted(self) -> int: ...

    def accept(self, envelope: "DsnEnvelope") -> AcceptedMessage: ...


class StoreHandler:
    """The aiosmtpd handler: stores what the session accepted."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def handle_DATA(self, smtp: "SmtpSession", session, envelope: DsnEnvelope) -> str:
        try:
            accepted = self.server.accept(envelope)
        except OSError:
            log.exception("could not store message")
            return "451 4.3.0 Local error in processing: could not store the message"
        queue_id = accepted.maildir_key or f"mem{self.server.messages_accepted}"
        return f"250 2.0.0 OK: queued as {queue_id}"


class SmtpSession(SMTP):
    """aiosmtpd SMTP with DSN, PIPELINING and ENHANCEDSTATUSCODES support."""

    def __init__(self, handler: StoreHandler, *, auth_enabled: bool, **kwargs: Any):
        super().__init__(handler, **kwargs)
        # Finish pipelined commands before acting on EOF (see eof_received).
        # aiosmtpd creates its StreamReader itself, so swap in the subclass.
        reader = self._stream_reader
        if reader is not None:
            reader.__class__ = _PipelineSafeReader
        self._auth_enabled = auth_enabled
        self._auth_required = auth_enabled
        # aiosmtpd keeps these limits on the class and grows them per EHLO.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        # The command being answered, to pick enhanced status codes.
        self._command: Optional[str] = None
        self._smtp_methods = {name: self._tracked(name, method) for name, method in self._smtp_methods.items()}
        self.server = handler.server

    def _create_envelope(self) -> DsnEnvelope:
        return DsnEnvelope()

    def _tracked(self, name: str, method):
        @functools.wraps(method)
        async def run(arg):
            self._command = name
            if await self.before_command(name, arg):
                return None
            return await method(arg)

        return run

    # -- hooks -------------------------------------------------------------

    async def before_command(self, verb: str, arg: Optional[str]) -> bool:
        """Called before each command runs; return True if it was answered here."""
        return False

    def extensions(self) -> list[str]:
        """The EHLO keywords offered, in order."""
        lines = ["PIPELINING"]
        if self.data_size_limit:
            lines.append(f"SIZE {self.data_size_limit}")
        lines.append("8BITMIME")
        if self.enable_SMTPUTF8:
            lines.append("SMTPUTF8")
        if self.tls_context and not self._tls_protocol:
            lines.append("STARTTLS")
        if self._auth_enabled:
            lines.append("AUTH " + " ".join(sorted(self._auth_methods)))
        return lines + ["ENHANCEDSTATUSCODES", "DSN", "HELP"]

    # -- replies -----------------------------------------------------------

    async def push(self, status):
        if isinstance(status, str):
            status = enhance(self._command, status)
        await super().push(status)

    def eof_received(self) -> Optional[bool]:
        # RFC 2920: a client may pipeline commands and half-close.  Stock
        # aiosmtpd cancels the session at once, losing buffered commands.
        # Feed EOF to the reader instead; the session ends when it has read
        # everything (see _PipelineSafeReader).
        if self.session is not None and self.session.ssl is not None:
            return super().eof_received()
        asyncio.StreamReaderProtocol.eof_received(self)
        return True

    # -- commands ----------------------------------------------------------

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str):
        if not hostname:
            await self.push("501 Syntax: EHLO hostname")
            return
        self._set_rset_state()
        assert self.session is not None
        self.session.extended_smtp = True
        self.session.host_name = hostname
        self.command_size_limits["MAIL"] = self.command_size_limits["RCPT"] = 1000
        lines = [self.hostname, *self.extensions()]
        for line in lines[:-1]:
            await self.push("250-" + line)
        await self.push("250 " + lines[-1])

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        if not self._auth_enabled:
            await self.push("502 5.5.1 AUTH not available")
            return
        await super().smtp_AUTH(arg)

    def _address_and_rest(self, arg: Optional[str], keyword: str) -> tuple[Optional[str], str]:
        """Parse ``FROM:<addr> params``; returns (address or None, rest)."""
        if arg is None:
            return None, ""
        arg = self._strip_command_keyword(keyword, arg)
        if arg is None:
            return None, ""
        if arg.replace(" ", "").startswith("<>"):
            return "", arg.lstrip()[1:].lstrip()[1:]
        address, rest = self._getaddr(arg)
        if address is None:
            raise ParamError("553 5.1.3 Error: malformed address")
        return address, rest or ""

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: Optional[str]) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("MAIL"):
            return
        assert self.session is not None and self.envelope is not None
        try:
            address, rest = self._address_and_rest(arg, "FROM:")
            if address is None:
                raise ParamError("501 5.5.4 Syntax: MAIL FROM:<address> [SP <mail-parameters>]")
            if rest and not self.session.extended_smtp:
                raise ParamError("501 5.5.4 Syntax: MAIL FROM:<address>")
            if self.envelope.mail_from is not None:
                raise ParamError("503 5.5.1 Error: nested MAIL command")
            params = parse_mail_params(
                rest, size_limit=self.data_size_limit, smtputf8=self.enable_SMTPUTF8, auth=self._auth_enabled
            )
        except ParamError as error:
            await self.push(error.reply)
            return
        status = await self._call_handler_hook("MAIL", address, rest.split())
        if status is MISSING or status.startswith("2"):
            self.envelope.mail_from = address
            self.envelope.mail_options.extend(rest.split())
            self.envelope.mail_params = params
            self.envelope.smtp_utf8 = bool(params.get("SMTPUTF8"))
        await self.push("250 OK" if status is MISSING else status)

    @syntax("RCPT TO: <address>", extended=" [SP <rcpt-parameters>]")
    async def smtp_RCPT(self, arg: Optional[str]) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("RCPT"):
            return
        assert self.session is not None and self.envelope is not None
        try:
            if self.envelope.mail_from is None:
                raise ParamError("503 5.5.1 Error: need MAIL command")
            address, rest = self._address_and_rest(arg, "TO:")
            if not address:
                raise ParamError("501 5.5.4 Syntax: RCPT TO:<address> [SP <rcpt-parameters>]")
            if rest and not self.session.extended_smtp:
                raise ParamError("501 5.5.4 Syntax: RCPT TO:<address>")
            params = parse_rcpt_params(rest)
        except ParamError as error:
            await self.push(error.reply)
            return
        status = await self._call_handler_hook("RCPT", address, rest.split())
        if status is MISSING or status.startswith("2"):
            self.envelope.rcpt_tos.append(address)
            self.envelope.rcpt_options.extend(rest.split())
            self.envelope.rcpt_params.append(params)
        await self.push("250 OK" if status is MISSING else status)
