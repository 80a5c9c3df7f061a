"""The demo's loopback SMTP server: what `relcomm demo` sends to on 127.0.0.1.

:class:`LoopbackMailServer` wraps aiosmtpd (the conversation is in
:mod:`.session`, the ESMTP details in :mod:`.esmtp`), stores accepted mail in a
Maildir and in :attr:`~LoopbackMailServer.messages` (:mod:`.store`), and can
write DSNs and read receipts back into a receipts Maildir, later, as a real
relay and the recipients' mail clients would (:mod:`.reports`). It also offers
AUTH PLAIN/LOGIN (without TLS: loopback only) and real STARTTLS or implicit
TLS, so a client's settings can be tried against it.

It injects no faults: the tests' server (``tests/faulty_mailserver.py``) extends
this one through :attr:`~LoopbackMailServer.session_class`,
:attr:`~LoopbackMailServer.handler_class` and the hooks in :mod:`.session`.

Threaded use (the server gets its own loop, so the caller's loop is free to
run the client)::

    with LoopbackMailServer(maildir=path) as server:
        await aiosmtplib.send(msg, hostname=server.host, port=server.port)

In-loop use (e.g. inside a Textual app)::

    server = LoopbackMailServer(maildir=path)
    await server.start_async()
    ...
    await server.stop_async()
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import ssl
import threading
import weakref
from typing import Any, Optional, Sequence, Union

from aiosmtpd.smtp import AuthResult

from .esmtp import xtext_decode
from .reports import DEFAULT_BOUNCE_RULES, BounceRule, PendingReport, ReportGenerator
from .session import DsnEnvelope, SmtpSession, StoreHandler
from .store import AcceptedMessage, open_maildir, store_message

__all__ = [
    "AcceptedMessage",
    "BounceRule",
    "DEFAULT_BOUNCE_RULES",
    "LoopbackMailServer",
    "xtext_decode",
]

log = logging.getLogger(__name__)


class LoopbackMailServer:
    """SMTP server on 127.0.0.1 for the demo.

    :param maildir: Maildir that receives every accepted message
        (created if missing; ``None`` keeps messages in memory only).
    :param port: TCP port; ``0`` picks a free one (see :attr:`port`).
    :param hostname: name used in the greeting, EHLO and reports.
    :param auth: ``(username, password)`` to enable and require AUTH
        PLAIN/LOGIN (allowed without TLS: loopback only).
    :param max_size: SIZE limit in bytes.
    :param smtputf8: advertise and accept SMTPUTF8.
    :param bounce_rules: recipients that bounce (:class:`BounceRule`): they
        are accepted and a failure DSN follows later (needs ``write_reports_to``).
    :param write_reports_to: receipts Maildir for DSNs and read receipts;
        ``None`` disables reports.
    :param report_delay: ``(min, max)`` seconds before a report is written.
    :param mdn_fraction: share of delivered recipients that send a read
        receipt when the message asks for one.
    :param seed: seed for report delays and read-receipt choice.
    :param tls_context: server-side SSL context: offer a real STARTTLS.
    :param ssl_context: server-side SSL context: implicit TLS (port-465 style).
    """

    host = "127.0.0.1"
    #: the aiosmtpd session and handler classes (a subclass may extend them)
    session_class: type[SmtpSession] = SmtpSession
    handler_class: type[StoreHandler] = StoreHandler

    def __init__(
        self,
        maildir: Union[str, os.PathLike[str], None] = None,
        *,
        port: int = 0,
        hostname: str = "localhost",
        auth: Optional[tuple[str, str]] = None,
        max_size: int = 10 * 1024 * 1024,
        smtputf8: bool = True,
        bounce_rules: Sequence[BounceRule] = DEFAULT_BOUNCE_RULES,
        write_reports_to: Union[str, os.PathLike[str], None] = None,
        report_delay: tuple[float, float] = (1.0, 5.0),
        mdn_fraction: float = 0.3,
        seed: Optional[int] = None,
        tls_context: Optional["ssl.SSLContext"] = None,
        ssl_context: Optional["ssl.SSLContext"] = None,
    ) -> None:
        self.port = port
        self.hostname = hostname
        self.auth = auth
        self.max_size = max_size
        self.smtputf8 = smtputf8
        self.tls_context = tls_context
        self.ssl_context = ssl_context
        self.bounce_rules = tuple(bounce_rules)
        self.maildir = open_maildir(maildir) if maildir is not None else None
        self.reports: Optional[ReportGenerator] = None
        if write_reports_to is not None:
            self.reports = ReportGenerator(
                write_reports_to,
                delay=report_delay,
                seed=seed,
                mdn_fraction=mdn_fraction,
                bounce_rules=self.bounce_rules,
                reporting_mta=hostname,
            )
        self._messages: list[AcceptedMessage] = []
        self._lock = threading.Lock()
        self._pending: dict[int, PendingReport] = {}
        self._written: list[tuple[PendingReport, str]] = []
        self._next_report = 0
        self._timers: list[asyncio.TimerHandle] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._server: Optional[asyncio.base_events.Server] = None
        self._sessions: weakref.WeakSet[SmtpSession] = weakref.WeakSet()
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

    def clear(self) -> None:
        """Forget accepted messages (the Maildirs are kept); a long benchmark's memory stays flat."""
        with self._lock:
            self._messages.clear()

    def accept(self, envelope: DsnEnvelope) -> AcceptedMessage:
        """Store the message in ``envelope`` and schedule its reports; raises OSError."""
        accepted = store_message(
            self.maildir,
            mail_from=envelope.mail_from,
            mail_params=envelope.mail_params,
            rcpt_tos=envelope.rcpt_tos,
            rcpt_params=envelope.rcpt_params,
            data=envelope.original_content or b"",
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

    def _factory(self) -> SmtpSession:
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
        session = self.session_class(self.handler_class(self), auth_enabled=self.auth is not None, **kwargs)
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
