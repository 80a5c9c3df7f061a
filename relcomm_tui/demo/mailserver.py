"""Embedded loopback SMTP server for the demo and for tests.

:class:`LoopbackMailServer` wraps aiosmtpd and listens on 127.0.0.1 only.  On
top of stock aiosmtpd it

* advertises ``PIPELINING``, ``8BITMIME``, ``SIZE``, ``ENHANCEDSTATUSCODES``,
  ``DSN`` (and ``SMTPUTF8``), and adds RFC 3463 enhanced codes to every reply;
* accepts and validates the RFC 3461 DSN parameters (``RET``, ``ENVID`` on
  MAIL; ``NOTIFY``, ``ORCPT`` on RCPT), xtext-decodes them and records them
  per envelope (stock aiosmtpd answers 555 to them);
* accepts the null reverse path ``MAIL FROM:<>``;
* finishes pipelined commands that arrived before the client half-closed the
  connection (stock aiosmtpd drops them on EOF);
* offers optional AUTH PLAIN/LOGIN without TLS (loopback only);
* stores accepted messages in a Maildir and in :attr:`LoopbackMailServer.messages`;
* injects faults per recipient (:class:`TempFail`, :class:`PermFail`,
  :class:`DropConnection`, :class:`Delay`, :class:`Garbage`), per sender at
  MAIL (``at="mail"``, keyed by the MAIL FROM address), and per connection
  (:attr:`LoopbackMailServer.connection_faults`: a 421 greeting, a stall
  before the greeting, garbage instead of it, :class:`CloseAfter` N messages);
* records every command it received (:attr:`LoopbackMailServer.commands`),
  so a test can prove what a client did *not* send (no MAIL, no AUTH);
* offers real STARTTLS (``tls_context``) or implicit TLS (``ssl_context``);
* optionally writes DSNs and read receipts back into a receipts Maildir
  (see :mod:`relcomm_tui.demo.reports`).

Threaded use (the server gets its own loop, so a test's loop is free to run
the client)::

    with LoopbackMailServer(maildir=tmp_path / "mail") as server:
        await aiosmtplib.send(msg, hostname=server.host, port=server.port)

In-loop use (e.g. inside a Textual app)::

    server = LoopbackMailServer(maildir=path)
    await server.start_async()
    ...
    await server.stop_async()
"""

from __future__ import annotations

import asyncio
import collections
import email.parser
import email.policy
import functools
import hmac
import logging
import os
import re
import ssl
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, syntax

from relcomm_tui.demo.reports import (
    DEFAULT_BOUNCE_RULES,
    BounceRule,
    PendingReport,
    ReportGenerator,
    find_bounce_rule,
    open_maildir,
)

__all__ = [
    "AcceptedMessage",
    "BounceRule",
    "CloseAfter",
    "DEFAULT_BOUNCE_RULES",
    "Delay",
    "DropConnection",
    "FaultTable",
    "Garbage",
    "LoopbackMailServer",
    "PermFail",
    "TempFail",
    "xtext_decode",
    "xtext_encode",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------
# records


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


# --------------------------------------------------------------------------
# xtext (RFC 3461 section 4)

_XTEXT = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*")
_HEXCHAR = re.compile(r"\+([0-9A-F]{2})")


def xtext_encode(text: str) -> str:
    """Encode ``text`` (UTF-8) as RFC 3461 xtext."""
    return "".join(
        chr(b) if 33 <= b <= 126 and b not in (0x2B, 0x3D) else f"+{b:02X}" for b in text.encode("utf-8")
    )


def xtext_decode(value: str) -> str:
    """Decode RFC 3461 xtext; raises ``ValueError`` if ``value`` is not xtext.

    Hex escapes must use upper-case digits, as the RFC requires.
    """
    if not _XTEXT.fullmatch(value):
        raise ValueError(f"not valid xtext: {value!r}")
    out = bytearray()
    pos = 0
    for m in _HEXCHAR.finditer(value):
        out += value[pos : m.start()].encode("ascii")
        out.append(int(m.group(1), 16))
        pos = m.end()
    out += value[pos:].encode("ascii")
    return out.decode("utf-8", "replace")


# --------------------------------------------------------------------------
# fault rules


@dataclass
class _Rule:
    """Base for fault rules: fires ``times`` times (``None`` = always)."""

    fired: int = field(default=0, init=False, compare=False)

    def _consume(self) -> bool:
        times = getattr(self, "times", None)
        if times is not None and self.fired >= times:
            return False
        self.fired += 1
        return True


# Where a rule acts.  Per-recipient rules (in :attr:`LoopbackMailServer.faults`):
# "rcpt", "data" (the reply to the end of the message) and "content" (while the
# message text arrives).  Rules keyed by the *sender* address act at "mail".
# Connection rules (in :attr:`LoopbackMailServer.connection_faults`) act at
# "greeting" or, for :class:`CloseAfter`, after a number of messages.


@dataclass
class TempFail(_Rule):
    """Answer ``code msg`` (4xx) at RCPT (``at="rcpt"``), at MAIL
    (``at="mail"``, keyed by sender), at the end of DATA (``at="data"``) or
    instead of the greeting (``at="greeting"``, then close: use 421)
    ``times`` times, then accept."""

    times: Optional[int] = 1
    code: int = 451
    msg: str = "4.3.0 Temporary failure, please try again later"
    at: str = "rcpt"


@dataclass
class PermFail(_Rule):
    """Answer ``code msg`` (5xx) at RCPT (``at="rcpt"``), MAIL (``at="mail"``),
    the end of DATA (``at="data"``) or the greeting (``at="greeting"``);
    every time unless ``times`` is set."""

    code: int = 550
    msg: str = "5.1.1 User unknown"
    at: str = "rcpt"
    times: Optional[int] = None


@dataclass
class DropConnection(_Rule):
    """Close the TCP connection without replying, ``times`` times.

    ``at="data"`` (default): after the message content was received, before
    the reply - the "in doubt" case.  With ``deliver=True`` the message is
    stored before the drop (the client cannot know it was delivered).
    ``at="content"``: after ``after_bytes`` bytes of the message text, while
    the client is still sending it (reset, nothing stored).
    ``at="rcpt"`` / ``at="mail"``: instead of answering RCPT / MAIL.
    ``at="greeting"`` (a connection rule): accept TCP, close at once.
    """

    at: str = "data"
    times: Optional[int] = 1
    deliver: bool = False
    after_bytes: int = 0


@dataclass
class Delay(_Rule):
    """Wait ``seconds`` before replying to the end of DATA (``at="data"``),
    to RCPT (``at="rcpt"``), to MAIL (``at="mail"``) or before the greeting
    (``at="greeting"``); every time unless ``times`` is set.  A long delay is
    a server that stalls."""

    seconds: float = 1.0
    at: str = "data"
    times: Optional[int] = None


@dataclass
class Garbage(_Rule):
    """Send ``payload`` (raw bytes, not an SMTP reply) instead of the reply
    at ``at`` ("greeting", "mail", "rcpt" or "data"), ``times`` times; with
    ``close=True`` close the connection right after.  At "data" the message
    is not stored."""

    payload: bytes = b"\x00\xffthis is not SMTP\r\n"
    at: str = "rcpt"
    times: Optional[int] = 1
    close: bool = False


@dataclass
class CloseAfter(_Rule):
    """A connection rule: answer the ``messages``-th message of a connection
    (250, stored), then close that connection; for ``times`` connections."""

    messages: int = 1
    times: Optional[int] = 1
    at: str = "session"


FaultRule = Union[TempFail, PermFail, DropConnection, Delay, Garbage, CloseAfter]


class FaultTable(dict):
    """``{recipient address: rule or list of rules}``, keys case-insensitive.

    ``server.faults["bob@example.com"] = TempFail(times=1)``
    """

    def __setitem__(self, key: str, value: Union[FaultRule, Sequence[FaultRule]]) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str):
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key.lower())

    def get(self, key: str, default=None):
        return super().get(key.lower(), default)

    def update(self, *args, **kwargs) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def rules(self, address: str, at: str) -> list[FaultRule]:
        """The rules for ``address`` that act at stage ``at``."""
        value = self.get(address)
        if value is None:
            return []
        rules = list(value) if isinstance(value, (list, tuple)) else [value]
        return [r for r in rules if r.at == at]


# --------------------------------------------------------------------------
# SMTP protocol


class _PipelineSafeReader(asyncio.StreamReader):
    """Stream reader that turns "EOF after the last buffered line" into
    cancellation, the same path aiosmtpd takes when a client goes away."""

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        try:
            return await super().readuntil(separator)
        except asyncio.IncompleteReadError:
            raise asyncio.CancelledError from None


class _Envelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.mail_params: dict[str, Any] = {}
        self.rcpt_params: list[dict[str, Any]] = []


class _ParamError(Exception):
    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_ESMTP_VALUE = re.compile(r"[!-<>-~\x80-\U0010ffff]+")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_NOTIFY_VALUES = {"SUCCESS", "FAILURE", "DELAY"}

# Default RFC 3463 codes added to replies that lack one.
_ENHANCED_BY_CODE = {
    "211": "2.0.0", "214": "2.0.0", "221": "2.0.0", "235": "2.7.0", "250": "2.0.0", "252": "2.0.0",
    "421": "4.3.0", "432": "4.7.12", "450": "4.2.0", "451": "4.3.0", "452": "4.3.1", "454": "4.7.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4", "530": "5.7.0",
    "534": "5.7.9", "535": "5.7.8", "538": "5.7.11", "550": "5.0.0", "552": "5.3.4", "553": "5.1.3",
    "554": "5.3.0", "555": "5.5.4",
}
_ENHANCED_BY_COMMAND = {("MAIL", "250"): "2.1.0", ("RCPT", "250"): "2.1.5"}
_REPLY = re.compile(r"([245])(\d\d)([ -])(.*)", re.S)
_HAS_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?: |$)")


class _LoopbackSMTP(SMTP):
    """aiosmtpd SMTP with DSN, PIPELINING and ENHANCEDSTATUSCODES support."""

    def __init__(self, handler: "_Handler", *, auth_enabled: bool, advertise_starttls: bool, **kwargs: Any):
        super().__init__(handler, **kwargs)
        # Finish pipelined commands before acting on EOF (see eof_received).
        # aiosmtpd creates its StreamReader itself, so swap in the subclass.
        reader = self._stream_reader
        if reader is not None:
            reader.__class__ = _PipelineSafeReader
        self._auth_enabled = auth_enabled
        self._auth_required = auth_enabled
        self._advertise_starttls = advertise_starttls
        # aiosmtpd keeps these limits on the class and grows them per EHLO.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        # The command being answered, to pick enhanced status codes.
        self._command: Optional[str] = None
        self._smtp_methods = {name: self._tracked(name, method) for name, method in self._smtp_methods.items()}
        handler.server.connections_opened += 1
        self._server = handler.server
        #: this connection's number (1 = the first), as in ``server.commands``
        self.connection_no = handler.server.connections_opened
        self.accepted_here = 0  # messages stored from this connection
        self._close_after_push = False  # CloseAfter: close once this reply is out
        self._swallow_push = False  # Garbage: it replaced the reply

    def _create_envelope(self) -> _Envelope:
        return _Envelope()

    def _tracked(self, name: str, method):
        @functools.wraps(method)
        async def run(arg):
            self._command = name
            # AUTH's argument may carry credentials: keep only the mechanism.
            logged = (arg or "").split(" ")[0] if name == "AUTH" else arg
            self._server._record_command(self.connection_no, name, logged)
            if name == "DATA" and await self._content_fault():
                return None
            return await method(arg)

        return run

    # -- faults ------------------------------------------------------------

    async def _handle_client(self) -> None:
        for rule in list(self._server.connection_faults):
            if rule.at != "greeting" or not rule._consume():
                continue
            if isinstance(rule, Delay):
                await asyncio.sleep(rule.seconds)
            elif isinstance(rule, DropConnection):
                self._server.connections_dropped += 1
                assert self.transport is not None
                self.transport.close()
                return
            elif isinstance(rule, Garbage):
                await self.send_garbage(rule)
            elif isinstance(rule, (TempFail, PermFail)):
                await super().push(f"{rule.code} {rule.msg}")
                assert self.transport is not None
                self.transport.close()
                return
        await super()._handle_client()

    async def send_garbage(self, rule: "Garbage") -> None:
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
        rules = [r for rcpt in envelope.rcpt_tos for r in self._server.faults.rules(rcpt, "content")]
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
        self._server.connections_dropped += 1
        assert self.transport is not None
        self.transport.abort()  # a reset: what a crashed or killed server looks like
        await asyncio.Event().wait()
        return True  # pragma: no cover - the session is cancelled above

    # -- replies -----------------------------------------------------------

    def _enhance(self, status: str) -> str:
        m = _REPLY.fullmatch(status)
        if m is None or self._command is None:  # intermediate reply or greeting
            return status
        code = m.group(1) + m.group(2)
        if self._command in ("EHLO", "HELO") and code == "250":
            return status
        if _HAS_ENHANCED.match(m.group(4)):
            return status
        enhanced = _ENHANCED_BY_COMMAND.get((self._command, code)) or _ENHANCED_BY_CODE.get(
            code, f"{m.group(1)}.0.0"
        )
        return f"{code}{m.group(3)}{enhanced} {m.group(4)}"

    async def push(self, status):
        if self._swallow_push:
            self._swallow_push = False
            return
        if isinstance(status, str):
            status = self._enhance(status)
        await super().push(status)
        if self._close_after_push:
            self._close_after_push = False
            await self.drop_connection()

    # -- pipelining --------------------------------------------------------

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
        lines = [self.hostname, "PIPELINING"]
        if self.data_size_limit:
            lines.append(f"SIZE {self.data_size_limit}")
        lines.append("8BITMIME")
        if self.enable_SMTPUTF8:
            lines.append("SMTPUTF8")
        if (self.tls_context and not self._tls_protocol) or (self._advertise_starttls and not self.tls_context):
            lines.append("STARTTLS")
        if self._auth_enabled:
            lines.append("AUTH " + " ".join(sorted(self._auth_methods)))
        lines += ["ENHANCEDSTATUSCODES", "DSN", "HELP"]
        for line in lines[:-1]:
            await self.push("250-" + line)
        await self.push("250 " + lines[-1])

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        if not self._auth_enabled:
            await self.push("502 5.5.1 AUTH not available")
            return
        await super().smtp_AUTH(arg)

    def _split_params(self, rest: str) -> dict[str, Optional[str]]:
        """Split ``rest`` into {KEYWORD: value or None}; 501 on bad syntax."""
        params: dict[str, Optional[str]] = {}
        for item in rest.split():
            keyword, eq, value = item.partition("=")
            if not _ESMTP_KEYWORD.fullmatch(keyword) or (eq and not _ESMTP_VALUE.fullmatch(value)):
                raise _ParamError(f"501 5.5.4 Syntax error in parameter {item!r}")
            keyword = keyword.upper()
            if keyword in params:
                raise _ParamError(f"501 5.5.4 Duplicate parameter {keyword}")
            params[keyword] = value if eq else None
        return params

    def _parse_mail_params(self, rest: str) -> dict[str, Any]:
        raw = self._split_params(rest)
        result: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "SIZE":
                if value is None or not value.isdigit():
                    raise _ParamError("501 5.5.4 Syntax: SIZE=<number>")
                if self.data_size_limit and int(value) > self.data_size_limit:
                    raise _ParamError("552 5.3.4 Message size exceeds fixed maximum message size")
                result[key] = int(value)
            elif key == "BODY":
                if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                    raise _ParamError("501 5.5.4 BODY can only be one of 7BIT, 8BITMIME")
                result[key] = value.upper()
            elif key == "SMTPUTF8":
                if value is not None:
                    raise _ParamError("501 5.5.4 SMTPUTF8 takes no arguments")
                if not self.enable_SMTPUTF8:
                    raise _ParamError("555 5.5.4 SMTPUTF8 disabled")
                result[key] = True
            elif key == "RET":
                if value is None or value.upper() not in ("FULL", "HDRS"):
                    raise _ParamError("501 5.5.4 Syntax: RET=FULL|HDRS")
                result[key] = value.upper()
            elif key == "ENVID":
                result[key] = self._xtext(key, value, max_len=100)
            elif key == "AUTH" and self._auth_enabled:  # RFC 4954 section 5
                result[key] = value if value == "<>" else self._xtext(key, value, max_len=500)
            else:
                raise _ParamError(f"555 5.5.4 MAIL FROM parameter {key} not recognized")
        return result

    def _parse_rcpt_params(self, rest: str) -> dict[str, Any]:
        raw = self._split_params(rest)
        result: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "NOTIFY":
                items = (value or "").upper().split(",")
                if items != ["NEVER"] and (
                    not all(i in _NOTIFY_VALUES for i in items) or len(set(items)) != len(items)
                ):
                    raise _ParamError("501 5.5.4 Syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY")
                result[key] = items
            elif key == "ORCPT":
                addr_type, semi, xtext = (value or "").partition(";")
                if not semi or not _ADDR_TYPE.fullmatch(addr_type) or not xtext:
                    raise _ParamError("501 5.5.4 Syntax: ORCPT=<addr-type>;<xtext>")
                result[key] = f"{addr_type};{self._xtext(key, xtext, max_len=500)}"
            else:
                raise _ParamError(f"555 5.5.4 RCPT TO parameter {key} not recognized")
        return result

    @staticmethod
    def _xtext(key: str, value: Optional[str], *, max_len: int) -> str:
        if not value or len(value) > max_len:
            raise _ParamError(f"501 5.5.4 Syntax: {key}=<xtext> of at most {max_len} characters")
        try:
            return xtext_decode(value)
        except ValueError:
            raise _ParamError(f"501 5.5.4 {key} is not valid xtext") from None

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
            raise _ParamError("553 5.1.3 Error: malformed address")
        return address, rest or ""

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: Optional[str]) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("MAIL"):
            return
        assert self.session is not None and self.envelope is not None
        try:
            address, rest = self._address_and_rest(arg, "FROM:")
            if address is None:
                raise _ParamError("501 5.5.4 Syntax: MAIL FROM:<address> [SP <mail-parameters>]")
            if rest and not self.session.extended_smtp:
                raise _ParamError("501 5.5.4 Syntax: MAIL FROM:<address>")
            if self.envelope.mail_from is not None:
                raise _ParamError("503 5.5.1 Error: nested MAIL command")
            params = self._parse_mail_params(rest)
        except _ParamError as error:
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
                raise _ParamError("503 5.5.1 Error: need MAIL command")
            address, rest = self._address_and_rest(arg, "TO:")
            if not address:
                raise _ParamError("501 5.5.4 Syntax: RCPT TO:<address> [SP <rcpt-parameters>]")
            if rest and not self.session.extended_smtp:
                raise _ParamError("501 5.5.4 Syntax: RCPT TO:<address>")
            params = self._parse_rcpt_params(rest)
        except _ParamError as error:
            await self.push(error.reply)
            return
        status = await self._call_handler_hook("RCPT", address, rest.split())
        if status is MISSING or status.startswith("2"):
            self.envelope.rcpt_tos.append(address)
            self.envelope.rcpt_options.extend(rest.split())
            self.envelope.rcpt_params.append(params)
        await self.push("250 OK" if status is MISSING else status)

    async def drop_connection(self) -> None:
        """Close the connection without a reply; ends this session."""
        assert self.transport is not None
        self.transport.close()
        # connection_lost() cancels the session task, which is awaiting here.
        await asyncio.Event().wait()


# --------------------------------------------------------------------------
# handler: faults and storage


class _Handler:
    def __init__(self, server: "LoopbackMailServer") -> None:
        self.server = server

    async def _inject(self, smtp: _LoopbackSMTP, rules: list) -> Any:
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

    async def handle_MAIL(self, smtp: _LoopbackSMTP, session, envelope, address: str, options) -> Any:
        return await self._inject(smtp, self.server.faults.rules(address or "", "mail"))

    async def handle_RCPT(self, smtp: _LoopbackSMTP, session, envelope, address: str, options) -> Any:
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

    async def handle_DATA(self, smtp: _LoopbackSMTP, session, envelope: _Envelope) -> str:
        server = self.server
        if server.data_delay:
            await asyncio.sleep(server.data_delay)
        rules = [(rcpt, r) for rcpt in envelope.rcpt_tos for r in server.faults.rules(rcpt, "data")]
        for _, rule in rules:
            if isinstance(rule, Delay) and rule._consume():
                await asyncio.sleep(rule.seconds)
        for _, rule in rules:
            if isinstance(rule, DropConnection) and rule._consume():
                if rule.deliver:
                    server._accept(envelope)
                server.connections_dropped += 1
                await smtp.drop_connection()
        for _, rule in rules:
            if isinstance(rule, Garbage) and rule._consume():
                await smtp.send_garbage(rule)
                return "451 4.3.0 (not sent: garbage instead)"
        for _, rule in rules:
            if isinstance(rule, (TempFail, PermFail)) and rule._consume():
                return f"{rule.code} {rule.msg}"
        try:
            accepted = server._accept(envelope)
        except OSError:
            log.exception("could not store message")
            return "451 4.3.0 Local error in processing: could not store the message"
        smtp.accepted_here += 1
        for rule in server.connection_faults:
            if isinstance(rule, CloseAfter) and smtp.accepted_here == rule.messages and rule._consume():
                server.connections_dropped += 1
                smtp._close_after_push = True
                break
        queue_id = accepted.maildir_key or f"mem{server.messages_accepted}"
        return f"250 2.0.0 OK: queued as {queue_id}"


# --------------------------------------------------------------------------
# server


class LoopbackMailServer:
    """SMTP server on 127.0.0.1 for the demo and for tests.

    :param maildir: Maildir that receives every accepted message
        (created if missing; ``None`` keeps messages in memory only).
    :param port: TCP port; ``0`` picks a free one (see :attr:`port`).
    :param hostname: name used in the greeting, EHLO and reports.
    :param auth: ``(username, password)`` to enable and require AUTH
        PLAIN/LOGIN (allowed without TLS: loopback only).
    :param advertise_starttls: advertise STARTTLS although it is not
        available (STARTTLS then answers 454), to test client fallbacks.
    :param max_size: SIZE limit in bytes.
    :param smtputf8: advertise and accept SMTPUTF8.
    :param faults: initial ``{address: rule}``; see :attr:`faults`.
    :param rcpt_delay: seconds to wait before every RCPT reply.
    :param data_delay: seconds to wait before every end-of-DATA reply.
    :param bounce_rules: recipients that bounce (:class:`BounceRule`).
    :param bounce_mode: ``"dsn"`` accepts them and sends a failure DSN later
        (needs ``write_reports_to``); ``"smtp"`` rejects them at RCPT.
    :param write_reports_to: receipts Maildir for DSNs and read receipts;
        ``None`` disables reports.
    :param report_delay: ``(min, max)`` seconds before a report is written.
    :param mdn_fraction: share of delivered recipients that send a read
        receipt when the message asks for one.
    :param seed: seed for report delays and read-receipt choice.
    :param connection_faults: rules that act per connection, not per
        address: ``TempFail(at="greeting", code=421)``, ``Delay(at="greeting")``
        (a stall), ``Garbage(at="greeting")``, ``DropConnection(at="greeting")``,
        :class:`CloseAfter`; see :attr:`connection_faults`.
    :param tls_context: server-side SSL context: offer a real STARTTLS.
    :param ssl_context: server-side SSL context: implicit TLS (port-465 style).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        maildir: Union[str, os.PathLike[str], None] = None,
        *,
        port: int = 0,
        hostname: str = "localhost",
        auth: Optional[tuple[str, str]] = None,
        advertise_starttls: bool = False,
        max_size: int = 10 * 1024 * 1024,
        smtputf8: bool = True,
        faults: Optional[dict[str, Any]] = None,
        rcpt_delay: float = 0.0,
        data_delay: float = 0.0,
        bounce_rules: Sequence[BounceRule] = DEFAULT_BOUNCE_RULES,
        bounce_mode: str = "dsn",
        write_reports_to: Union[str, os.PathLike[str], None] = None,
        report_delay: tuple[float, float] = (1.0, 5.0),
        mdn_fraction: float = 0.3,
        seed: Optional[int] = None,
        connection_faults: Sequence[FaultRule] = (),
        tls_context: Optional["ssl.SSLContext"] = None,
        ssl_context: Optional["ssl.SSLContext"] = None,
    ) -> None:
        if bounce_mode not in ("dsn", "smtp"):
            raise ValueError("bounce_mode must be 'dsn' or 'smtp'")
        self.port = port
        self.hostname = hostname
        self.auth = auth
        self.advertise_starttls = advertise_starttls
        self.max_size = max_size
        self.smtputf8 = smtputf8
        #: ``{recipient: rule or [rules]}``; see :class:`FaultTable`
        self.faults = FaultTable()
        self.faults.update(faults or {})
        #: rules acting per connection (greeting faults, :class:`CloseAfter`)
        self.connection_faults: list[FaultRule] = list(connection_faults)
        self.tls_context = tls_context
        self.ssl_context = ssl_context
        #: ``(connection number, command, argument)`` for every command
        #: received (AUTH: the mechanism only), oldest first
        self._commands: list[tuple[int, str, Optional[str]]] = []
        self.rcpt_delay = rcpt_delay
        self.data_delay = data_delay
        self.bounce_rules = tuple(bounce_rules)
        self.bounce_mode = bounce_mode
        self.maildir = open_maildir(maildir) if maildir is not None else None
        self.reports: Optional[ReportGenerator] = None
        if write_reports_to is not None:
            self.reports = ReportGenerator(
                write_reports_to,
                delay=report_delay,
                seed=seed,
                mdn_fraction=mdn_fraction,
                bounce_rules=self.bounce_rules if bounce_mode == "dsn" else (),
                reporting_mta=hostname,
            )
        #: number of TCP connections accepted so far
        self.connections_opened = 0
        #: number of connections closed by a fault (:class:`DropConnection`,
        #: :class:`CloseAfter`)
        self.connections_dropped = 0
        self._messages: list[AcceptedMessage] = []
        self._lock = threading.Lock()
        self._pending: dict[int, PendingReport] = {}
        self._written: list[tuple[PendingReport, str]] = []
        self._next_report = 0
        self._timers: list[asyncio.TimerHandle] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._server: Optional[asyncio.base_events.Server] = None
        self._sessions: weakref.WeakSet[_LoopbackSMTP] = weakref.WeakSet()
        self._thread: Optional[threading.Thread] = None

    # -- results -----------------------------------------------------------

    @property
    def messages(self) -> list[AcceptedMessage]:
        """Snapshot of the accepted messages, oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def messages_accepted(self) -> int:
        """Number of messages accepted so far."""
        with self._lock:
            return len(self._messages)

    @property
    def commands(self) -> list[tuple[int, str, Optional[str]]]:
        """Snapshot of the commands received: ``(connection, verb, argument)``."""
        with self._lock:
            return list(self._commands)

    def commands_named(self, verb: str) -> list[tuple[int, str, Optional[str]]]:
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
        with self._lock:
            self._messages.clear()
            self._commands.clear()
        self.faults.clear()
        self.connection_faults.clear()

    def _accept(self, envelope: _Envelope) -> AcceptedMessage:
        data: bytes = envelope.original_content or b""
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
        message_id = headers.get("Message-ID")
        key = None
        if self.maildir is not None:
            trace = f"Return-Path: <{envelope.mail_from}>\nDelivered-To: {', '.join(envelope.rcpt_tos)}\n"
            key = self.maildir.add(trace.encode("utf-8") + data.replace(b"\r\n", b"\n"))
        accepted = AcceptedMessage(
            mail_from=envelope.mail_from or "",
            mail_options=dict(envelope.mail_params),
            rcpt_tos=list(envelope.rcpt_tos),
            rcpt_options=[dict(p) for p in envelope.rcpt_params],
            data=data,
            message_id=message_id.strip() if message_id else None,
            maildir_key=key,
        )
        with self._lock:
            self._messages.append(accepted)
        if self.reports is not None:
            self._schedule_reports(accepted)
        return accepted

    # -- reports -----------------------------------------------------------

    def _schedule_reports(self, accepted: AcceptedMessage) -> None:
        loop = asyncio.get_running_loop()
        for report in self.reports.reports_for(accepted):  # type: ignore[union-attr]
            with self._lock:
                ident = self._next_report
                self._next_report += 1
                self._pending[ident] = report
            self._timers.append(loop.call_later(report.delay, self._write_report, ident))

    def _write_report(self, ident: int) -> None:
        with self._lock:
            report = self._pending.pop(ident, None)
        if report is not None and self.reports is not None:
            key = self.reports.write(report)
            with self._lock:
                self._written.append((report, key))

    @property
    def pending_reports(self) -> list[PendingReport]:
        """Reports scheduled but not written yet."""
        with self._lock:
            return list(self._pending.values())

    @property
    def written_reports(self) -> list[tuple[PendingReport, str]]:
        """``(report, maildir key)`` for every report written so far."""
        with self._lock:
            return list(self._written)

    def flush_reports(self) -> int:
        """Write every pending report now; returns how many were written.

        Safe to call from any thread, also after :meth:`stop`.
        """
        with self._lock:
            idents = sorted(self._pending)
        for ident in idents:
            self._write_report(ident)
        return len(idents)

    # -- lifecycle ---------------------------------------------------------

    def _factory(self) -> _LoopbackSMTP:
        kwargs: dict[str, Any] = dict(
            hostname=self.hostname,
            ident="relcomm loopback ESMTP",
            data_size_limit=self.max_size,
            enable_SMTPUTF8=self.smtputf8,
            loop=self._loop,
        )
        if self.auth is not None:
            kwargs.update(auth_require_tls=False, authenticator=self._authenticate)
        if self.tls_context is not None:
            kwargs.update(tls_context=self.tls_context)
        session = _LoopbackSMTP(
            _Handler(self), auth_enabled=self.auth is not None, advertise_starttls=self.advertise_starttls, **kwargs
        )
        self._sessions.add(session)
        return session

    def _authenticate(self, smtp, session, envelope, mechanism: str, auth_data) -> AuthResult:
        assert self.auth is not None
        username, password = (s.encode("utf-8") for s in self.auth)
        ok = hmac.compare_digest(auth_data.login, username) & hmac.compare_digest(auth_data.password, password)
        return AuthResult(success=bool(ok), handled=False, auth_data=auth_data)

    async def start_async(self) -> "LoopbackMailServer":
        """Start serving inside the running event loop."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(self._factory, self.host, self.port, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("loopback SMTP server on %s:%s", self.host, self.port)
        return self

    async def stop_async(self) -> None:
        """Stop serving and close open connections (pending reports are
        kept; see :meth:`flush_reports`)."""
        if self._server is None:
            return
        self._server.close()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        self._sessions.clear()
        await self._server.wait_closed()
        await asyncio.sleep(0)  # let connection_lost() run
        self._server = None

    def start(self, timeout: float = 5.0) -> "LoopbackMailServer":
        """Start serving in a background thread with its own event loop."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as error:  # pragma: no cover - e.g. port in use
                errors.append(error)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
                loop.run_until_complete(self.stop_async())
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.wait(tasks, timeout=timeout))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="loopback-smtp", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):  # pragma: no cover
            raise TimeoutError("mail server did not start")
        if errors:
            self._thread = None
            raise errors[0]
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread started by :meth:`start`."""
        if self._thread is None:
            return
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> "LoopbackMailServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> "LoopbackMailServer":
        return await self.start_async()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_async()
