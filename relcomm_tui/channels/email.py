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

How messages share a connection (PIPELINING, and where each one's intent is committed) is
`channels.email_pipeline`. The server's words never carry the password: each connection cleans
every line it reads of the password and the AUTH tokens (see transport/smtp.py), and this channel cleans every outcome and stop
message once more before the engine keeps or shows it (`relcomm_tui.common.secret_text`).
"""

from __future__ import annotations

import asyncio
import email.policy
import socket
from dataclasses import replace
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Callable

from ..common.net import is_loopback
from ..plan.model import Plan
from ..plan.secrets import SecretError, login_password
from ..common.secret_text import SecretHider
from .base import ChannelSettings, ChannelStopped, DeliveryJob, Intent, Outcome, Rehearsal, settings_from
from ..transport import xtext
from ..transport.smtp import (
    Reply, SmtpAuthError, SmtpBusy, SmtpCertificateError, SmtpConnectError, SmtpConnection, SmtpDisconnected,
    SmtpTlsError, Transaction, login_secrets,
)
from .email_pipeline import PipelinedSender, Work

AUTH_CODES = {530, 534, 535, 538}

# Deliveries the engine hands this channel per SMTP connection: one message on the wire, one
# queued to chain behind it (pipelining), one being rendered. The intent is committed only for
# the message whose text is next on a live connection (and the one chained behind it), so after
# a crash at most about 2 x concurrency deliveries are in doubt, each with its envelope at the server.
WORKERS_PER_CONNECTION = 3

RenderMessage = Callable[[DeliveryJob], EmailMessage]


def address_of(text: str | None) -> str:
    return parseaddr(text or "")[1]


def default_render(plan: Plan) -> RenderMessage:
    """Messages from the compose layer, carrying the delivery's Message-ID."""
    # here, not at the top: compose loads Jinja2 and Markdown, which `relcomm status` (engine, channels) never needs
    from ..compose import render

    def build(job: DeliveryJob) -> EmailMessage:
        rendered = render(plan, job.communique, job.group, job.recipient, message_id=job.message_id)
        if rendered.message is None:
            raise ValueError(f"communique {job.communique.id} rendered no email message")
        return rendered.message

    return build


class EmailChannel(PipelinedSender):
    name = "email"

    def __init__(self, plan: Plan, *, password: str | None = None, render: RenderMessage | None = None,
                 concurrency: int | None = None, timeout: float | None = None) -> None:
        self.plan = plan
        self.smtp = plan.smtp
        self._password = password
        self._render = render or default_render(plan)
        self.concurrency = concurrency or self.smtp.concurrency
        # [transport.smtp] concurrency counts connections; the engine hands each a few deliveries.
        self.settings: ChannelSettings = replace(settings_from(self.smtp, WORKERS_PER_CONNECTION),
                                                 in_flight=WORKERS_PER_CONNECTION * self.concurrency)
        self.timeout = float(timeout or self.smtp.timeout)
        self._init_drivers()
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
        try:
            # keyring and password commands block; keep the event loop free.
            return await asyncio.to_thread(login_password, self.smtp, 10.0)
        except SecretError as error:
            message = error.message if self.smtp.password is None else f"cannot get the SMTP password: {error.message}"
            raise ChannelStopped(message, error.hint) from None

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

    async def rehearse(self, job: DeliveryJob) -> Rehearsal:
        """The message as it would be sent, for the outbox's Maildir, with the envelope noted in a header."""
        message = self._render(job)
        if message["Message-ID"] != job.message_id:
            del message["Message-ID"]
            message["Message-ID"] = job.message_id
        del message["X-Relcomm-Dry-Run"]
        recipient = job.recipient.email if job.recipient else ""
        message["X-Relcomm-Dry-Run"] = f"envelope to {recipient}; delivery {job.delivery_id}"
        return Rehearsal("eml", message.as_bytes())

    async def deliver(self, job: DeliveryJob, intent: Intent) -> Outcome:
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
        work = Work(job, recipient, data, smtputf8, asyncio.get_running_loop().create_future(), intent)
        if self._stopped is not None:
            raise self._stopped
        self._queue.put_nowait(work)
        if self._waiting_drivers == 0 and len(self._drivers) < self.concurrency:
            self._spawn(self._idle.pop() if self._idle else None)
        try:
            return await work.future
        finally:
            await self._settle_intent(work)

    def _hidden_stop(self, error: ChannelStopped) -> ChannelStopped:
        return ChannelStopped(self._hider.hide(error.message), self._hider.hide(error.hint))

    def _outcome(self, result: Transaction) -> Outcome:
        if result.accepted:
            return Outcome("accepted", reply=str(result.end))
        if result.error is not None:
            if result.end_sent:
                return Outcome("in_doubt", detail=f"{result.error} after the whole message was sent; "
                               "the server may have accepted it")
            return Outcome("transient", detail=f"{result.error} before the message was complete")
        reply = result.failed_reply or Reply(0, "no reply")
        if result.mail is not None and result.mail.code in AUTH_CODES:
            raise ChannelStopped(f"the server wants a login before sending: {result.mail}",
                                 "set username and password in [transport.smtp]")
        if result.mail is not None and result.mail.permanent:
            raise ChannelStopped(f"the server refused the sender {self.return_path}: {result.mail}",
                                 "check [sender] from / receipts_to: the relay must accept them as senders")
        if reply.transient or reply.code == 0:
            return Outcome("transient", reply=str(reply))
        return Outcome("rejected", reply=str(reply))
