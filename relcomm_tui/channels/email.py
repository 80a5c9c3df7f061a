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
* AUTH refused, TLS missing/unverified, connection refused, MAIL FROM refused with 5xx
                                                   -> ChannelStopped: the run stops once
"""

from __future__ import annotations

import asyncio
import email.policy
import ipaddress
import socket
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Callable

from ..plan.model import Plan
from . import ChannelStopped, DeliveryJob, DeliveryWithdrawn, Outcome
from .smtpclient import (
    Reply, SmtpAuthError, SmtpConnectError, SmtpConnection, SmtpDisconnected, SmtpTlsError, Transaction, xtext,
)

AUTH_CODES = {530, 534, 535, 538}

RenderMessage = Callable[[DeliveryJob], EmailMessage]


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        self._slots = asyncio.Semaphore(self.concurrency)
        self._idle: list[SmtpConnection] = []
        self._all: list[SmtpConnection] = []
        self.return_path = address_of(plan.sender.receipts_to) or address_of(plan.sender.from_)
        self.read_receipt_to = plan.sender.receipts_to or plan.sender.from_
        self._local_hostname = socket.getfqdn() or "localhost"
        self._connect_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        if self.smtp.security == "none" and not is_loopback(self.smtp.host):
            raise ChannelStopped(
                f'security = "none" sends mail unencrypted to {self.smtp.host}; relcomm allows that only on loopback',
                'use security = "starttls" (port 587) or "tls" (port 465)',
            )
        if self.smtp.username and self._password is None:
            self._password = await self._resolve_password()
        self._idle.append(await self._connect())

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
        connection = SmtpConnection(self.smtp.host, self.smtp.port, self.smtp.security, self.timeout, self._local_hostname)
        try:
            await connection.connect()
            if self.smtp.username:
                await connection.login(self.smtp.username, self._password or "")
        except SmtpAuthError as error:
            connection.abort()
            raise ChannelStopped(str(error), "check the username and the password reference in [transport.smtp]") from None
        except SmtpTlsError as error:
            connection.abort()
            raise ChannelStopped(str(error), 'check host, port and security ("tls" is usually port 465, "starttls" 587)') from None
        except SmtpConnectError as error:
            connection.abort()
            raise ChannelStopped(str(error), "check [transport.smtp] host and port, and that the server is running") from None
        self._all.append(connection)
        return connection

    async def close(self) -> None:
        connections, self._all, self._idle = self._all, [], []
        await asyncio.gather(*(c.quit() for c in connections), return_exceptions=True)

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
            mail_params += ["RET=HDRS", f"ENVID={xtext(job.envelope_id)}"]
            rcpt_params += ["NOTIFY=SUCCESS,FAILURE,DELAY", f"ORCPT=rfc822;{xtext(recipient)}"]
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
        if smtputf8 and not self._all[0].supports("smtputf8"):
            return Outcome("rejected", detail=f"{recipient} or the message needs SMTPUTF8, which the server does not offer")
        # The intent is committed before waiting for a connection, so the ledger's fsync overlaps
        # with other messages on the wire; the engine runs 2 x concurrency workers, so at most
        # that many deliveries are ever `sending` (the in-doubt bound after a crash).
        await job.commit_intent()
        async with self._slots:
            connection = self._idle.pop() if self._idle else None
            fresh = connection is None or not connection.connected
            if fresh:
                try:
                    connection = await self._connect()
                except ChannelStopped:
                    raise
                except SmtpDisconnected as error:  # 421 greeting: busy, try later
                    return Outcome("transient", detail=str(error), intent_committed=True)
            assert connection is not None
            mail_params, rcpt_params = self.envelope(connection, job, recipient, data, smtputf8)
            result = await connection.transaction(self.return_path, mail_params, recipient, rcpt_params, data)
            if result.error and not result.end_sent and not fresh and result.mail is None:
                # A reused connection the server had already closed: nothing was said, try a new one now.
                try:
                    connection = await self._connect()
                except SmtpDisconnected as error:
                    return Outcome("transient", detail=str(error), intent_committed=True)
                mail_params, rcpt_params = self.envelope(connection, job, recipient, data, smtputf8)
                result = await connection.transaction(self.return_path, mail_params, recipient, rcpt_params, data)
            if connection.connected:
                self._idle.append(connection)
            else:
                self._forget(connection)
        return self._outcome(result)

    def _forget(self, connection: SmtpConnection) -> None:
        # Keep its round-trip count for the bench, but never hand it out again.
        if connection in self._idle:
            self._idle.remove(connection)

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
