"""The email channel: one message per recipient over a small pool of reused SMTP connections.

Connections are opened up to `concurrency` and reused; the first one is opened by `open()`
so a wrong password, a missing STARTTLS or an unreachable server stops the run before any
delivery is marked `sending`. DSNs (RFC 3461) are requested when the server advertises DSN
and the plan asks for them; the return path is the plan's `receipts_to`.

How an SMTP exchange maps onto an outcome:
* 2xx after the final "."                         -> accepted
* 4xx anywhere, or the connection lost before "." -> transient (retried, then deferred)
* 5xx at RCPT or after the data                   -> rejected, with the server's words
* the connection lost or timed out after "."      -> in doubt (never retried by itself:
  the server may have accepted the message; a resend reuses its Message-ID)
* AUTH refused, TLS missing/unverified, connection refused, MAIL FROM refused with 5xx,
  no SMTP greeting at all (silence, or bytes that are not SMTP)
                                                   -> ChannelStopped: the run stops once
* a 4xx greeting (421 busy)                        -> not a stop: each delivery that meets it
  is transient (retried with backoff, then deferred with the server's words)

The server's words never carry the password: each connection cleans every line it reads of the
password and the AUTH tokens (see smtpclient), and this channel cleans every outcome and stop
message once more before the engine keeps or shows it (`relcomm_tui.common.secret_text`).
"""

from __future__ import annotations

import asyncio
import email.policy
import socket
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Callable

from ..common.net import is_loopback
from ..plan.model import Plan
from ..common.secret_text import SecretHider
from . import ChannelStopped, DeliveryJob, Outcome
from ..transport import xtext
from ..transport.smtp import (
    FLUSH_TEXT_FIRST, Reply, SmtpAuthError, SmtpBusy, SmtpCertificateError, SmtpClosed, SmtpConnectError,
    SmtpConnection, SmtpDisconnected, SmtpTlsError, Transaction, dot_stuff, login_secrets,
)

AUTH_CODES = {530, 534, 535, 538}

RenderMessage = Callable[[DeliveryJob], EmailMessage]


@dataclass
class _Work:
    """One message waiting for, or on, a connection."""

    job: DeliveryJob
    recipient: str
    data: bytes
    smtputf8: bool
    future: asyncio.Future
    tx: Transaction = field(default_factory=Transaction)
    reconnected: bool = False
    driver: "asyncio.Task | None" = None
    intent: "asyncio.Task | None" = None  # job.commit_intent(), started as the envelope goes out

    __hash__ = object.__hash__


def address_of(text: str | None) -> str:
    return parseaddr(text or "")[1]


def default_render(plan: Plan) -> RenderMessage:
    """Messages from the compose layer, carrying the delivery's Message-ID."""
    from ..compose import render

    def build(job: DeliveryJob) -> EmailMessage:
        rendered = render(plan, job.communique, job.group, job.recipient, message_id=job.message_id)
        if rendered.message is None:
            raise ValueError(f"communique {job.communique.id} rendered no email message")
        return rendered.message

    return build


class EmailChannel:
    name = "email"

    def __init__(self, plan: Plan, *, password: str | None = None, render: RenderMessage | None = None,
                 concurrency: int | None = None, timeout: float | None = None) -> None:
        self.plan = plan
        self.smtp = plan.smtp
        self._password = password
        self._render = render or default_render(plan)
        self.concurrency = concurrency or self.smtp.concurrency
        self.timeout = float(timeout or self.smtp.timeout)
        self._queue: asyncio.Queue[_Work | None] = asyncio.Queue()
        self._drivers: set[asyncio.Task] = set()
        self._waiting_drivers = 0
        self._active: set[_Work] = set()
        self._stopped: ChannelStopped | None = None
        self._idle: list[SmtpConnection] = []
        self._all: list[SmtpConnection] = []
        self.return_path = address_of(plan.sender.receipts_to) or address_of(plan.sender.from_)
        self.read_receipt_to = plan.sender.receipts_to or plan.sender.from_
        self._local_hostname = socket.getfqdn() or "localhost"
        self._connect_lock = asyncio.Lock()
        self._hider = SecretHider(self._secrets())

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        try:
            await self._open()
        except ChannelStopped as error:
            raise self._hidden_stop(error) from None

    async def _open(self) -> None:
        if self.smtp.security == "none" and not is_loopback(self.smtp.host):
            raise ChannelStopped(
                f'security = "none" sends mail unencrypted to {self.smtp.host}; relcomm allows that only on loopback',
                'use security = "starttls" (port 587) or "tls" (port 465)',
            )
        if self.smtp.username and self._password is None:
            self._password = await self._resolve_password()
            self._hider = SecretHider(self._secrets())
        try:
            self._idle.append(await self._connect())
        except SmtpBusy:
            # 421 at the greeting: busy, not misconfigured. Deliveries connect on their own
            # and each one that meets the 421 is retried with backoff, then deferred.
            pass
        except SmtpDisconnected as error:
            where = f"{self.smtp.host}:{self.smtp.port}"
            raise ChannelStopped(
                f"{where} did not greet as an SMTP server: {error}",
                f"check [transport.smtp] host and port (is {where} an SMTP server? \"tls\" is usually port 465, "
                "\"starttls\" 587); if the server is just slow, raise timeout in [transport.smtp]",
            ) from None

    def _secrets(self) -> tuple[str, ...]:
        """The password and the AUTH tokens made of it: hidden from every word a server says."""
        return login_secrets(self.smtp.username or "", self._password) if self._password else ()

    async def _resolve_password(self) -> str:
        from ..plan.secrets import SecretError, is_reference, resolve

        reference = self.smtp.password
        if reference is None or not is_reference(reference):
            raise ChannelStopped(
                f"the SMTP login {self.smtp.username!r} needs a password and the plan names none",
                'add password = { env = "RELCOMM_SMTP_PASSWORD" } to [transport.smtp], or give it when asked',
            )
        try:
            # keyring and password commands block; keep the event loop free.
            return await asyncio.to_thread(resolve, reference, 10.0)
        except SecretError as error:
            raise ChannelStopped(f"cannot get the SMTP password: {error.message}", error.hint) from None

    async def _connect(self) -> SmtpConnection:
        connection = SmtpConnection(self.smtp.host, self.smtp.port, self.smtp.security, self.timeout,
                                    self._local_hostname, secrets=self._secrets())
        try:
            await connection.connect()
            if self.smtp.username:
                await connection.login(self.smtp.username, self._password or "")
        except SmtpAuthError as error:
            connection.abort()
            raise ChannelStopped(str(error), "check the username and the password reference in [transport.smtp]") from None
        except SmtpCertificateError as error:
            connection.abort()
            raise ChannelStopped(
                f"{error}; nothing was sent, no password was sent",
                "if the server uses a private or company CA, point SSL_CERT_FILE at that CA's certificate "
                "(or install it in the system's trust store); if the name does not match, set host in "
                "[transport.smtp] to the name on the certificate",
            ) from None
        except SmtpTlsError as error:
            connection.abort()
            raise ChannelStopped(str(error), 'check host, port and security ("tls" is usually port 465, "starttls" 587)') from None
        except SmtpConnectError as error:
            connection.abort()
            raise ChannelStopped(str(error), "check [transport.smtp] host and port, and that the server is running") from None
        self._all.append(connection)
        return connection

    async def close(self) -> None:
        drivers = list(self._drivers)
        for _ in drivers:
            self._queue.put_nowait(None)
        if drivers:
            await asyncio.gather(*drivers, return_exceptions=True)
        await asyncio.gather(*(c.quit() for c in self._idle), return_exceptions=True)
        self._idle = []

    @property
    def round_trips(self) -> int:
        return sum(c.round_trips for c in self._all)

    # -- one delivery ----------------------------------------------------------------

    def envelope(self, connection: SmtpConnection, job: DeliveryJob, recipient: str, data: bytes,
                 smtputf8: bool) -> tuple[list[str], list[str]]:
        mail_params: list[str] = []
        rcpt_params: list[str] = []
        if connection.supports("size"):
            mail_params.append(f"SIZE={len(data)}")
        if connection.supports("8bitmime") and any(b > 127 for b in data):
            mail_params.append("BODY=8BITMIME")
        if smtputf8:
            mail_params.append("SMTPUTF8")
        if self.plan.receipts.dsn and connection.supports("dsn"):
            mail_params += ["RET=HDRS", f"ENVID={xtext.encode(job.envelope_id)}"]
            rcpt_params += ["NOTIFY=SUCCESS,FAILURE,DELAY", f"ORCPT=rfc822;{xtext.encode(recipient)}"]
        return mail_params, rcpt_params

    def message_bytes(self, job: DeliveryJob) -> tuple[bytes, bool]:
        message = self._render(job)
        if message["Message-ID"] != job.message_id:  # the ledger's id is the one a resend must reuse
            del message["Message-ID"]
            message["Message-ID"] = job.message_id
        wants_mdn = job.communique.spec.read_receipt
        if wants_mdn is None:
            wants_mdn = self.plan.receipts.read_receipts
        if wants_mdn and "Disposition-Notification-To" not in message:
            message["Disposition-Notification-To"] = self.read_receipt_to
        try:
            return message.as_bytes(policy=email.policy.SMTP), False
        except UnicodeEncodeError:
            return message.as_bytes(policy=email.policy.SMTPUTF8), True

    async def deliver(self, job: DeliveryJob) -> Outcome:
        recipient = address_of(job.recipient.email if job.recipient else "")
        if not recipient:
            return Outcome("rejected", detail="the recipient has no email address")
        try:
            data, smtputf8 = self.message_bytes(job)
        except Exception as error:  # a template that renders for the checks but not here is a bug worth naming
            return Outcome("rejected", detail=f"could not build the message: {getattr(error, 'message', None) or error}")
        smtputf8 = smtputf8 or not recipient.isascii() or not self.return_path.isascii()
        if smtputf8 and self._all and not self._all[0].supports("smtputf8"):
            return Outcome("rejected", detail=f"{recipient} or the message needs SMTPUTF8, which the server does not offer")
        # The intent is committed on the connection, as the envelope goes out, and awaited before
        # the message's text: a message still waiting for a connection (or its setup) has no
        # `sending` row, so a crash leaves in doubt only messages whose text may have gone out.
        work = _Work(job, recipient, data, smtputf8, asyncio.get_running_loop().create_future())
        if self._stopped is not None:
            raise self._stopped
        self._queue.put_nowait(work)
        if self._waiting_drivers == 0 and len(self._drivers) < self.concurrency:
            self._spawn(self._idle.pop() if self._idle else None)
        try:
            return await work.future
        finally:
            await self._settle_intent(work)

    # -- connection drivers ----------------------------------------------------------
    #
    # Each connection has one driver task that takes queued messages and, when the server
    # advertises PIPELINING, chains them: the end of one message's text goes out in the same
    # write as the next message's MAIL, RCPT and DATA (the exchange shown in RFC 2920 section
    # 4), so a message costs one round trip instead of two (or four without pipelining). The
    # next message's intent is already committed, so the before-first-byte rule holds; if the
    # connection is lost after that write, the first message is in doubt and the second is
    # merely retried (its text never left).

    def _spawn(self, connection: SmtpConnection | None) -> None:
        task = asyncio.get_running_loop().create_task(self._drive(connection))
        self._drivers.add(task)
        task.add_done_callback(self._drivers.discard)

    async def _take(self) -> "_Work | None":
        self._waiting_drivers += 1
        try:
            return self._held(await self._queue.get())
        finally:
            self._waiting_drivers -= 1

    def _take_now(self) -> "_Work | None":
        try:
            return self._held(self._queue.get_nowait())
        except asyncio.QueueEmpty:
            return None

    def _held(self, work: "_Work | None") -> "_Work | None":
        if work is not None:
            work.driver = asyncio.current_task()
            self._active.add(work)
            work.future.add_done_callback(lambda _: self._active.discard(work))
        return work

    async def _drive(self, connection: SmtpConnection | None) -> None:
        try:
            while True:
                work = await self._take()
                if work is None:
                    return
                while work is not None:
                    if connection is None or not connection.connected:
                        try:
                            connection = await self._connect()
                        except ChannelStopped as error:
                            self._stop(error, work)
                            return
                        except SmtpDisconnected as error:  # 421 greeting: busy, try later
                            self._resolve(work, Outcome("transient", detail=str(error), intent_committed=True))
                            connection = None
                            break
                    connection, work = await self._chain(connection, work)
        except Exception as error:
            # A bug, not a server's answer: fail this driver's messages loudly (the engine
            # records them in doubt and stops) rather than leave them waiting forever.
            me = asyncio.current_task()
            for held in [w for w in self._active if w.driver is me]:
                if not held.future.done():
                    held.future.set_exception(error)
            raise
        finally:
            if connection is not None:
                await connection.quit()

    async def _chain(self, connection: SmtpConnection, work: "_Work") -> "tuple[SmtpConnection | None, _Work | None]":
        """Send `work` and whatever queues up behind it on this connection.

        Returns the connection (None if lost) and a message to start again on a new
        connection (a reused connection the server had closed before we spoke), or None."""
        if not connection.pipelining:
            mail_params, rcpt_params = self.envelope(connection, work.job, work.recipient, work.data, work.smtputf8)
            self._begin_intent(work)  # one call sends envelope and text: commit before either
            if not await self._intent_ready(None, work):
                return connection, None
            work.tx = await connection.transaction(self.return_path, mail_params, work.recipient, rcpt_params, work.data)
            if self._stale(work):
                return None, work
            self._finish(work)
            return (connection if connection.connected else None), None
        current = work
        try:
            await connection.send(self._envelope_bytes(connection, current))
            self._begin_intent(current)
            await self._read_envelope(connection, current)
        except SmtpDisconnected as error:
            current.tx.error = str(error)
            current.tx.closed = isinstance(error, SmtpClosed)
            if self._stale(current):
                return None, current
            self._finish(current)
            return None, None
        while True:
            tx = current.tx
            ready = tx.data is not None and tx.data.code == 354
            envelope_ok = tx.mail is not None and tx.mail.code == 250 and tx.rcpt is not None and 200 <= tx.rcpt.code < 300
            if not (ready and envelope_ok):
                return await self._after_refusal(connection, current), None
            if not await self._intent_ready(connection, current):
                return None, None
            text = dot_stuff(current.data)[:-3]
            if len(text) > FLUSH_TEXT_FIRST:
                # A long text first, all of it handed to the operating system: a connection
                # lost during it proves the final "." never left (retried, not in doubt).
                try:
                    await connection.send_text(text)
                except SmtpDisconnected as error:
                    tx.error = str(error)
                    self._finish(current)
                    return None, None
                text = b""
            following = self._take_now()
            payload = text + b".\r\n"
            if following is not None:
                try:
                    payload += self._envelope_bytes(connection, following)
                except Exception as error:  # an address the envelope cannot carry
                    self._resolve(following, Outcome("rejected", detail=str(error), intent_committed=True))
                    following = None
            tx.end_sent = True  # from here on, the server may have the whole message
            try:
                await connection.send(payload)
                if following is not None:
                    self._begin_intent(following)
                tx.end = await connection.reply()
            except SmtpDisconnected as error:
                tx.error = str(error)
                self._finish(current)
                if following is not None:
                    following.tx.error = str(error)
                    self._finish(following)  # its text never left: retried, never in doubt
                return None, None
            self._finish(current)
            if following is None:
                return connection, None
            current = following
            try:
                await self._read_envelope(connection, current)
            except SmtpDisconnected as error:
                current.tx.error = str(error)
                self._finish(current)
                return None, None

    async def _after_refusal(self, connection: SmtpConnection, work: "_Work") -> SmtpConnection | None:
        tx = work.tx
        try:
            if tx.data is not None and tx.data.code == 354:
                # 354 although the envelope failed: end an empty message, which the server must refuse.
                await connection.send(b".\r\n")
                await connection.reply()
            self._finish(work)
            reply = await connection.command("RSET")
            if reply.code != 250:
                connection.abort()
        except SmtpDisconnected:
            if not work.future.done():
                self._finish(work)
        return connection if connection.connected else None

    def _envelope_bytes(self, connection: SmtpConnection, work: "_Work") -> bytes:
        mail_params, rcpt_params = self.envelope(connection, work.job, work.recipient, work.data, work.smtputf8)
        return connection.envelope(self.return_path, mail_params, work.recipient, rcpt_params)

    @staticmethod
    async def _read_envelope(connection: SmtpConnection, work: "_Work") -> None:
        work.tx.mail = await connection.reply()
        work.tx.rcpt = await connection.reply()
        work.tx.data = await connection.reply()

    @staticmethod
    def _stale(work: "_Work") -> bool:
        """A reused connection the server closed while idle: nothing was said; once, try anew.
        (A timeout or a garbled reply is not that: it is reported and retried with backoff.)"""
        tx = work.tx
        if tx.error and tx.closed and not tx.end_sent and tx.mail is None and not work.reconnected:
            work.reconnected = True
            work.tx = Transaction()
            return True
        return False

    @staticmethod
    def _begin_intent(work: "_Work") -> None:
        if work.intent is None:  # once: a message started again on a new connection keeps its intent
            work.intent = asyncio.ensure_future(work.job.commit_intent())

    @staticmethod
    async def _intent_ready(connection: SmtpConnection | None, work: "_Work") -> bool:
        """Wait for the `sending` row before the text goes out. If it cannot be written (a
        cancel, a full disk, a delivery marked meanwhile), the text must not go: after 354 only
        closing the connection stops the server from taking what comes next as the message."""
        assert work.intent is not None
        try:
            await work.intent
            return True
        except BaseException as error:
            if connection is not None:
                connection.abort()
            if not work.future.done():
                work.future.set_exception(error)
            if isinstance(error, asyncio.CancelledError) and asyncio.current_task().cancelling():
                raise
            return False

    @staticmethod
    async def _settle_intent(work: "_Work") -> None:
        """A message settled without its text going out (refused, connection lost before it):
        an intent still waiting (e.g. on a pause) must not write `sending` after the outcome,
        and one already on its way must land before the engine records the outcome."""
        intent = work.intent
        if intent is None:
            return
        if not intent.done():
            intent.cancel()
            await asyncio.wait([intent])
        if not intent.cancelled():
            intent.exception()  # retrieved: no "never retrieved" warning

    def _finish(self, work: "_Work") -> None:
        try:
            outcome = self._outcome(work.tx)
        except ChannelStopped as error:
            self._stop(error, work)
            return
        self._resolve(work, outcome)

    def _resolve(self, work: "_Work", outcome: Outcome) -> None:
        if not work.future.done():
            hide = self._hider.hide
            work.future.set_result(replace(outcome, reply=hide(outcome.reply), detail=hide(outcome.detail)))

    def _hidden_stop(self, error: ChannelStopped) -> ChannelStopped:
        return ChannelStopped(self._hider.hide(error.message), self._hider.hide(error.hint))

    def _stop(self, error: ChannelStopped, work: "_Work") -> None:
        """One failure for all: this message and every one queued behind it get the same error."""
        error = self._hidden_stop(error)
        self._stopped = error
        for waiting in [work, *iter(self._take_now, None)]:
            if not waiting.future.done():
                waiting.future.set_exception(error)

    def _outcome(self, result: Transaction) -> Outcome:
        if result.accepted:
            return Outcome("accepted", reply=str(result.end), intent_committed=True)
        if result.error is not None:
            if result.end_sent:
                return Outcome("in_doubt", detail=f"{result.error} after the whole message was sent; "
                               "the server may have accepted it", intent_committed=True)
            return Outcome("transient", detail=f"{result.error} before the message was complete", intent_committed=True)
        reply = result.failed_reply or Reply(0, "no reply")
        if result.mail is not None and result.mail.code in AUTH_CODES:
            raise ChannelStopped(f"the server wants a login before sending: {result.mail}",
                                 "set username and password in [transport.smtp]")
        if result.mail is not None and result.mail.permanent:
            raise ChannelStopped(f"the server refused the sender {self.return_path}: {result.mail}",
                                 "check [sender] from / receipts_to: the relay must accept them as senders")
        if reply.transient or reply.code == 0:
            return Outcome("transient", reply=str(reply), intent_committed=True)
        return Outcome("rejected", reply=str(reply), intent_committed=True)
