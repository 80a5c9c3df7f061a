"""The demo's loopback HTTP receiver: a local stand-in for the chat webhook (Slack and the like).

`relcomm demo` points the sample plan's webhook at it, so the whole journey runs with nothing
external. It accepts every request with 200 "ok" and keeps what arrived. Stdlib only, so it runs
anywhere relcomm does: a `ThreadingHTTPServer` in a daemon thread, bound to 127.0.0.1 on a free port.

    with WebhookReceiver() as receiver:
        ... post to receiver.url("/hooks/eng-chat") ...
        receiver.requests   # what arrived, in order

Scripted answers (429, 500, hangs), PUT/GET storage and the PagerDuty/ntfy replies are test
support: tests/http_receiver.py extends this class through :meth:`WebhookReceiver.reply_for`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Union
from urllib.parse import urlsplit


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as it arrived."""

    method: str
    path: str            # without the query string
    query: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float            # time.monotonic() when the body had been read

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> object:
        return json.loads(self.body)


Body = Union[bytes, str, dict, list, Callable[[ReceivedRequest], Union[bytes, str, dict, list]]]


@dataclass(frozen=True)
class Reply:
    """How to answer one request; a callable body is called with the request."""

    status: int = 200
    body: Body = b"ok"
    headers: dict[str, str] = field(default_factory=dict)

    def render(self, request: ReceivedRequest) -> tuple[bytes, str]:
        body = self.body(request) if callable(self.body) else self.body
        if isinstance(body, (dict, list)):
            return json.dumps(body).encode(), "application/json"
        if isinstance(body, str):
            return body.encode("utf-8"), "text/plain; charset=utf-8"
        return body, "text/plain; charset=utf-8"


class WebhookReceiver:
    """The server. Thread-safe; start/stop or use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Condition()  # guards _requests; notified on each arrival
        self._requests: list[ReceivedRequest] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One write per response and no Nagle: else delayed ACKs add ~40 ms to every request.
            wbufsize = 64 * 1024
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:  # keep the terminal clean
                pass

            def _handle(self) -> None:
                receiver._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def start(self) -> "WebhookReceiver":
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="webhook-receiver",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what arrived ------------------------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    # -- serving -----------------------------------------------------------------------

    def reply_for(self, request: ReceivedRequest) -> Reply:
        """How to answer `request` (runs in the request's thread, after it was recorded)."""
        return Reply(200, b"ok")

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = ReceivedRequest(handler.command, parts.path, parts.query,
                                  {k.lower(): v for k, v in handler.headers.items()}, body, time.monotonic())
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()
        reply = self.reply_for(request)
        payload, content_type = reply.render(request)
        try:
            handler.send_response(reply.status)
            headers = {"Content-Type": content_type} | reply.headers
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(payload)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting; nothing to tell it
