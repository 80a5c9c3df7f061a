"""How the email channel sends: per connection, one driver task that chains queued messages
(RFC 2920 PIPELINING), and where each message's intent is committed.

Each connection has one driver task that takes queued messages and, when the server
advertises PIPELINING, chains them: the end of one message's text goes out in the same write
as the next message's MAIL, RCPT and DATA (the exchange shown in RFC 2920 section 4), so a
message costs one round trip instead of two (or four without pipelining).

Exactly-once: a message's intent is committed as its envelope goes out and awaited before its
text: a message still waiting for a connection (or its setup) has no `sending` row, so a crash
leaves in doubt only messages whose text may have gone out. If the connection is lost after the
write that carries one message's end and the next one's envelope, the first is in doubt and the
second is merely retried (its text never left).

`PipelinedSender` is the email channel's sending half; the channel provides `_connect()`,
`envelope()`, `_outcome()`, `_hidden_stop()`, `return_path` and `_hider`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from ..transport.smtp import FLUSH_TEXT_FIRST, SmtpClosed, SmtpConnection, SmtpDisconnected, Transaction, dot_stuff
from .base import ChannelStopped, DeliveryJob, Intent, Outcome


@dataclass
class Work:
    """One message waiting for, or on, a connection."""

    job: DeliveryJob
    recipient: str
    data: bytes
    smtputf8: bool
    future: asyncio.Future
    commit: Intent
    tx: Transaction = field(default_factory=Transaction)
    reconnected: bool = False
    driver: "asyncio.Task | None" = None
    intent: "asyncio.Task | None" = None  # commit.commit(), started as the envelope goes out

    __hash__ = object.__hash__



class PipelinedSender:
    """The queue of messages and the connection drivers that send them."""

    def _init_drivers(self) -> None:
        self._queue: asyncio.Queue[Work | None] = asyncio.Queue()
        self._drivers: set[asyncio.Task] = set()
        self._waiting_drivers = 0
        self._active: set[Work] = set()
        self._stopped: ChannelStopped | None = None

    def _spawn(self, connection: SmtpConnection | None) -> None:
        task = asyncio.get_running_loop().create_task(self._drive(connection))
        self._drivers.add(task)
        task.add_done_callback(self._drivers.discard)

    async def _take(self) -> "Work | None":
        self._waiting_drivers += 1
        try:
            return self._held(await self._queue.get())
        finally:
            self._waiting_drivers -= 1

    def _take_now(self) -> "Work | None":
        try:
            return self._held(self._queue.get_nowait())
        except asyncio.QueueEmpty:
            return None

    def _held(self, work: "Work | None") -> "Work | None":
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
                            self._resolve(work, Outcome("transient", detail=str(error)))
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

    async def _chain(self, connection: SmtpConnection, work: "Work") -> "tuple[SmtpConnection | None, Work | None]":
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
                    self._resolve(following, Outcome("rejected", detail=str(error)))
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

    async def _after_refusal(self, connection: SmtpConnection, work: "Work") -> SmtpConnection | None:
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

    def _envelope_bytes(self, connection: SmtpConnection, work: "Work") -> bytes:
        mail_params, rcpt_params = self.envelope(connection, work.job, work.recipient, work.data, work.smtputf8)
        return connection.envelope(self.return_path, mail_params, work.recipient, rcpt_params)

    @staticmethod
    async def _read_envelope(connection: SmtpConnection, work: "Work") -> None:
        work.tx.mail = await connection.reply()
        work.tx.rcpt = await connection.reply()
        work.tx.data = await connection.reply()

    @staticmethod
    def _stale(work: "Work") -> bool:
        """A reused connection the server closed while idle: nothing was said; once, try anew.
        (A timeout or a garbled reply is not that: it is reported and retried with backoff.)"""
        tx = work.tx
        if tx.error and tx.closed and not tx.end_sent and tx.mail is None and not work.reconnected:
            work.reconnected = True
            work.tx = Transaction()
            return True
        return False

    @staticmethod
    def _begin_intent(work: "Work") -> None:
        if work.intent is None:  # once: a message started again on a new connection keeps its intent
            work.intent = asyncio.ensure_future(work.commit.commit())

    @staticmethod
    async def _intent_ready(connection: SmtpConnection | None, work: "Work") -> bool:
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
    async def _settle_intent(work: "Work") -> None:
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

    def _finish(self, work: "Work") -> None:
        try:
            outcome = self._outcome(work.tx)
        except ChannelStopped as error:
            self._stop(error, work)
            return
        self._resolve(work, outcome)

    def _resolve(self, work: "Work", outcome: Outcome) -> None:
        if not work.future.done():
            hide = self._hider.hide
            work.future.set_result(replace(outcome, reply=hide(outcome.reply), detail=hide(outcome.detail)))

    def _stop(self, error: ChannelStopped, work: "Work") -> None:
        """One failure for all: this message and every one queued behind it get the same error."""
        error = self._hidden_stop(error)
        self._stopped = error
        for waiting in [work, *iter(self._take_now, None)]:
            if not waiting.future.done():
                waiting.future.set_exception(error)
