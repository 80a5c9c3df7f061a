"""A small, careful SMTP client on asyncio streams, with RFC 2920 PIPELINING.

Why not aiosmtplib for the transaction: it reads exactly one reply per command written,
so MAIL+RCPT+DATA cannot go out in one write; over a 20 ms link that is the difference
between two and four round trips per message. This client does only what the send engine
needs: connect (implicit TLS or STARTTLS, certificates verified), EHLO, AUTH PLAIN/LOGIN,
one transaction per message (pipelined when the server advertises it), RSET, QUIT.

A server may echo what it was sent (`535 ... 'AUTH PLAIN <token>'`, the same at MAIL, RCPT or
DATA, in a later greeting or EHLO): every line a server sends is cleaned of the connection's
secrets (`secrets`, and the AUTH tokens built from them) the moment it is read, before it can
become a `Reply`, an error message, a ledger row or a line on screen
(`relcomm_tui.common.secret_text.hide_secrets`).

What matters for exactly-once is *where* a transaction stopped. `Transaction.end_sent` says
whether the final "." of the message reached the socket: a connection lost before it can
be retried safely (the server cannot have accepted a message it never saw end); after it,
the message may have been accepted and the delivery is in doubt.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from dataclasses import dataclass, field

from ..common.secret_text import SecretHider

_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_LINE_LIMIT = 2 ** 16  # asyncio's default StreamReader limit, which this client keeps
# A message text longer than this is written and handed to the operating system before its
# final "." (see `send_text`); a shorter one rides in one write with the "." (and the next
# envelope), which the kernel takes at once: a drop during it could not be told apart anyway.
FLUSH_TEXT_FIRST = 16 * 1024
_LEADING_DOT = re.compile(rb"(?m)^\.")


class SmtpError(Exception):
    """Base: something went wrong talking to the server."""


class SmtpConnectError(SmtpError):
    """The server cannot be reached (refused, unknown host, timed out)."""


class SmtpTlsError(SmtpError):
    """TLS is required but not offered, or the certificate does not verify."""


class SmtpCertificateError(SmtpTlsError):
    """The server's certificate does not verify (untrusted issuer, wrong name, expired)."""


class SmtpAuthError(SmtpError):
    """The server refused the credentials, or needs some we do not have."""

    def __init__(self, message: str, reply: "Reply | None" = None) -> None:
        super().__init__(message)
        self.reply = reply


class SmtpDisconnected(SmtpError):
    """The connection was lost or timed out while waiting for the server, or the server
    sent something that is not an SMTP reply (the connection is then closed)."""


class SmtpClosed(SmtpDisconnected):
    """The connection was closed or reset (as opposed to a timeout or a reply that is not SMTP):
    on a reused connection before anything was answered, the server merely closed it while idle."""


class SmtpBusy(SmtpDisconnected):
    """The server greeted with a 4xx (typically 421): busy now, worth trying again later."""

    def __init__(self, message: str, reply: "Reply") -> None:
        super().__init__(message)
        self.reply = reply


@dataclass(frozen=True)
class Reply:
    code: int
    text: str  # the reply's lines joined with "\n", without the codes

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.text.split())}".strip()


@dataclass
class Transaction:
    """How far one message got: the replies seen and whether its end was sent."""

    mail: Reply | None = None
    rcpt: Reply | None = None
    data: Reply | None = None
    end: Reply | None = None       # the reply to the final "."
    end_sent: bool = False         # the final "." was handed to the socket
    error: str | None = None       # set when the connection failed mid-transaction
    closed: bool = False           # ...because it was closed or reset (not a timeout, not garbage)

    @property
    def accepted(self) -> bool:
        return self.end is not None and 200 <= self.end.code < 300

    @property
    def failed_reply(self) -> Reply | None:
        """The first non-success reply, the one that says why."""
        for reply, ok in ((self.mail, 250), (self.rcpt, 250), (self.data, 354), (self.end, 250)):
            if reply is not None and not (reply.code == ok or (ok == 250 and 200 <= reply.code < 300)):
                return reply
        return None


def _shown(raw: bytes, cleaned: str, limit: int = 80) -> str:
    """Bytes a server sent, shown safely (escaped, cut short); `cleaned` is them decoded and
    cleaned of secrets, shown instead when cleaning changed anything."""
    if cleaned != raw.decode("utf-8", "replace"):
        raw = cleaned.encode("utf-8")
    text = repr(raw[:limit])
    return text + (f" ... ({len(raw)} bytes)" if len(raw) > limit else "")


def login_secrets(username: str, password: str) -> tuple[str, str, str]:
    """The password and the AUTH tokens that carry it (LOGIN's, PLAIN's): what a server's
    words must never show, on this connection or on any later one."""
    return (password, base64.b64encode(password.encode("utf-8")).decode("ascii"),
            base64.b64encode(f"\0{username}\0{password}".encode("utf-8")).decode("ascii"))


def dot_stuff(message: bytes) -> bytes:
    """CRLF line ends, leading dots doubled, terminated by CRLF "." CRLF."""
    body = _LINE_ENDS.sub(b"\r\n", message)
    body = _LEADING_DOT.sub(b"..", body)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


@dataclass
class SmtpConnection:
    host: str
    port: int
    security: str = "starttls"         # "tls" | "starttls" | "none"
    timeout: float = 30.0
    local_hostname: str = "localhost"
    tls_context: ssl.SSLContext | None = None
    extensions: dict[str, str] = field(default_factory=dict)
    round_trips: int = 0               # replies awaited after a write: what latency costs
    messages: int = 0                  # transactions attempted on this connection
    secrets: tuple[str, ...] = field(default=(), repr=False)  # hidden from everything the server says

    def __post_init__(self) -> None:
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._hider = SecretHider(self.secrets)

    def keep_secret(self, *secrets: str) -> None:
        """Hide these too from now on (the AUTH tokens, the password typed at login)."""
        self.secrets = (*self.secrets, *secrets)
        self._hider = SecretHider(self.secrets)

    def hide(self, text: str) -> str:
        return self._hider.hide(text)

    # -- connection ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    @property
    def pipelining(self) -> bool:
        return "pipelining" in self.extensions

    def supports(self, extension: str) -> bool:
        return extension.lower() in self.extensions

    def _context(self) -> ssl.SSLContext:
        if self.tls_context is None:
            self.tls_context = ssl.create_default_context()
        return self.tls_context

    async def connect(self) -> Reply:
        """Connect, greet, EHLO and (when asked) STARTTLS. Raises SmtpConnectError / SmtpTlsError."""
        where = f"{self.host}:{self.port}"
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host, self.port,
                    ssl=self._context() if self.security == "tls" else None,
                    server_hostname=self.host if self.security == "tls" else None,
                ),
                self.timeout,
            )
        except ssl.SSLCertVerificationError as error:
            raise SmtpCertificateError(f"the TLS certificate of {where} does not verify: {error.verify_message}") from None
        except ssl.SSLError as error:
            raise SmtpTlsError(f"TLS with {where} failed: {error.reason or error}") from None
        except (asyncio.TimeoutError, TimeoutError):
            raise SmtpConnectError(f"no answer from {where} within {self.timeout:g} s") from None
        except ConnectionRefusedError:
            raise SmtpConnectError(f"{where} refused the connection") from None
        except OSError as error:
            raise SmtpConnectError(f"cannot connect to {where}: {error.strerror or error}") from None
        greeting = await self._read_reply()
        if greeting.code != 220:
            self.abort()
            if greeting.transient:
                raise SmtpBusy(f"{where} is busy: {greeting}", greeting)
            raise SmtpConnectError(f"{where} refused the session: {greeting}")
        await self._ehlo()
        if self.security == "starttls":
            if not self.supports("starttls"):
                self.abort()
                raise SmtpTlsError(f"{where} does not offer STARTTLS, and the plan requires it (security = \"starttls\")")
            reply = await self.command("STARTTLS")
            if reply.code != 220:
                self.abort()
                raise SmtpTlsError(f"{where} refused STARTTLS: {reply}")
            try:
                await asyncio.wait_for(self._writer.start_tls(self._context(), server_hostname=self.host), self.timeout)
            except ssl.SSLCertVerificationError as error:
                self.abort()
                raise SmtpCertificateError(f"the TLS certificate of {where} does not verify: {error.verify_message}") from None
            except (ssl.SSLError, OSError, asyncio.TimeoutError) as error:
                self.abort()
                raise SmtpTlsError(f"TLS with {where} failed: {error}") from None
            await self._ehlo()
        return greeting

    async def _ehlo(self) -> None:
        reply = await self.command(f"EHLO {self.local_hostname}")
        if reply.code != 250:
            self.abort()
            raise SmtpConnectError(f"{self.host}:{self.port} refused EHLO: {reply}")
        extensions: dict[str, str] = {}
        for line in reply.text.split("\n")[1:]:
            name, _, params = line.strip().partition(" ")
            if name:
                extensions[name.lower()] = params
        self.extensions = extensions

    async def login(self, username: str, password: str) -> None:
        """AUTH PLAIN (or LOGIN). Raises SmtpAuthError; never puts the password in a message."""
        methods = set(self.extensions.get("auth", "").upper().split())
        user_token = base64.b64encode(username.encode("utf-8")).decode("ascii")
        password_token, plain_token = login_secrets(username, password)[1:]
        self.keep_secret(password, password_token, plain_token)  # before a word of them is sent
        if not methods:
            raise SmtpAuthError(f"{self.host}:{self.port} does not offer authentication (no AUTH in EHLO)")
        if "PLAIN" in methods:
            reply = await self.command(f"AUTH PLAIN {plain_token}")
            if reply.code == 334:  # servers that want the token on its own line
                reply = await self.command(plain_token)
        elif "LOGIN" in methods:
            reply = await self.command("AUTH LOGIN")
            if reply.code == 334:
                reply = await self.command(user_token)
            if reply.code == 334:
                reply = await self.command(password_token)
        else:
            raise SmtpAuthError(f"{self.host}:{self.port} offers only AUTH {' '.join(sorted(methods))}; relcomm speaks PLAIN and LOGIN")
        if reply.code != 235:
            raise SmtpAuthError(f"{self.host}:{self.port} refused the login for {username!r}: {reply}", reply)

    async def quit(self) -> None:
        if not self.connected:
            return
        try:
            await asyncio.wait_for(self.command("QUIT"), min(self.timeout, 5))
        except (SmtpError, asyncio.TimeoutError, OSError):
            pass
        self.abort()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        self._reader = None

    # -- wire ------------------------------------------------------------------------

    async def _read_reply(self) -> Reply:
        if self._reader is None:
            raise SmtpDisconnected("not connected")
        code = 0
        lines: list[str] = []
        try:
            while True:
                raw = await asyncio.wait_for(self._reader.readline(), self.timeout)
                # Cleaned first: whatever the server echoes, no secret gets further than this line.
                cleaned = self.hide(raw.decode("utf-8", "replace"))
                if not raw.endswith(b"\n"):
                    if raw:
                        raise SmtpDisconnected("the server closed the connection in the middle of a reply: "
                                               f"{_shown(raw, cleaned)}")
                    raise SmtpClosed("the server closed the connection")
                line = cleaned.rstrip("\r\n")
                if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                    raise SmtpDisconnected("the server sent something that is not an SMTP reply: "
                                           f"{_shown(raw, cleaned)}")
                code = int(line[:3])
                lines.append(line[4:])
                if line[3:4] != "-":
                    return Reply(code, "\n".join(lines))
        except (asyncio.TimeoutError, TimeoutError):
            self.abort()
            raise SmtpDisconnected(f"no reply from the server within {self.timeout:g} s (the plan's timeout)") from None
        except ValueError:  # asyncio's line limit: no SMTP reply line is anywhere near 64 KiB
            self.abort()
            raise SmtpDisconnected(f"the server sent an over-long reply line (more than {_LINE_LIMIT // 1024} KiB "
                                   "without a line end): not an SMTP reply") from None
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as error:
            self.abort()
            raise SmtpClosed(f"the connection was lost: {error or type(error).__name__}") from None
        except SmtpDisconnected:
            self.abort()
            raise

    async def _write(self, data: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            raise SmtpClosed("the connection is closed")
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), self.timeout)
        except (asyncio.TimeoutError, TimeoutError):
            self.abort()
            raise SmtpDisconnected(f"the server did not take data within {self.timeout:g} s") from None
        except (ConnectionError, OSError) as error:
            self.abort()
            raise SmtpClosed(f"the connection was lost: {error}") from None

    async def send_text(self, text: bytes) -> None:
        """Write a message's text (without its final ".") and wait until the operating
        system has all of it. Then a failure here proves the final "." never left: a server
        that drops the line mid-text cannot have accepted the message, which is retried
        instead of left in doubt."""
        await self._write(text)
        if self._writer is None:
            raise SmtpDisconnected("the connection is closed")
        transport = self._writer.transport
        if transport.get_write_buffer_size():
            transport.set_write_buffer_limits(high=0, low=0)  # drain() now waits for an empty buffer
            try:
                await self._write(b"")
            finally:
                if not transport.is_closing():
                    transport.set_write_buffer_limits()
        if self._writer.transport.is_closing() or (self._reader is not None and (
                self._reader.at_eof() or self._reader.exception() is not None)):
            self.abort()
            raise SmtpDisconnected("the server closed the connection while the message was being sent")

    def envelope(self, mail_from: str, mail_params: list[str], rcpt_to: str, rcpt_params: list[str]) -> bytes:
        """MAIL, RCPT and DATA as one pipelined group (RFC 2920)."""
        mail = " ".join([f"MAIL FROM:<{mail_from}>", *mail_params])
        rcpt = " ".join([f"RCPT TO:<{rcpt_to}>", *rcpt_params])
        for line in (mail, rcpt):
            if "\r" in line or "\n" in line:
                raise ValueError("an address may not contain a line break")
        return f"{mail}\r\n{rcpt}\r\nDATA\r\n".encode("utf-8")

    async def send(self, data: bytes) -> None:
        """Write raw protocol bytes; the caller reads the replies (`reply`)."""
        await self._write(data)
        self.round_trips += 1

    async def reply(self) -> Reply:
        return await self._read_reply()

    async def command(self, line: str) -> Reply:
        if "\r" in line or "\n" in line:
            raise ValueError("an SMTP command may not contain a line break")
        await self._write(line.encode("utf-8") + b"\r\n")
        self.round_trips += 1
        return await self._read_reply()

    # -- one message -----------------------------------------------------------------

    async def transaction(self, mail_from: str, mail_params: list[str], rcpt_to: str, rcpt_params: list[str],
                          message: bytes) -> Transaction:
        """Send one message to one recipient. Never raises for what the server said;
        raises nothing for a lost connection either: see `Transaction.error`/`end_sent`."""
        self.messages += 1
        result = Transaction()
        mail = " ".join([f"MAIL FROM:<{mail_from}>", *mail_params])
        rcpt = " ".join([f"RCPT TO:<{rcpt_to}>", *rcpt_params])
        for line in (mail, rcpt):
            if "\r" in line or "\n" in line:
                raise ValueError("an address may not contain a line break")
        try:
            if self.pipelining:
                # RFC 2920: MAIL, RCPT and DATA in one write; DATA ends the group.
                await self._write(f"{mail}\r\n{rcpt}\r\nDATA\r\n".encode("utf-8"))
                self.round_trips += 1
                result.mail = await self._read_reply()
                result.rcpt = await self._read_reply()
                result.data = await self._read_reply()
            else:
                result.mail = await self.command(mail)
                if result.mail.code == 250:
                    result.rcpt = await self.command(rcpt)
                    if 200 <= result.rcpt.code < 300:
                        result.data = await self.command("DATA")
            if result.data is not None and result.data.code == 354:
                ok = result.mail.code == 250 and result.rcpt is not None and 200 <= result.rcpt.code < 300
                # A server that says 354 after refusing every recipient gets an empty message,
                # which it must refuse (RFC 2920 section 3.1); we never send the real one.
                text = dot_stuff(message)[:-3] if ok else b""
                if len(text) > FLUSH_TEXT_FIRST:
                    await self.send_text(text)
                    text = b""
                # Set before the final ".": if that write fails we cannot know what arrived.
                result.end_sent = ok
                await self._write(text + b".\r\n")
                self.round_trips += 1
                result.end = await self._read_reply()
                if not ok:
                    result.end = None
            if not result.accepted:
                await self._reset()
        except SmtpDisconnected as error:
            result.error = str(error)
            result.closed = isinstance(error, SmtpClosed)
        return result

    async def _reset(self) -> None:
        try:
            reply = await self.command("RSET")
        except SmtpDisconnected:
            return
        if reply.code != 250:
            self.abort()
