"""A loopback HTTP receiver that records what webhook, pager and publish channels send.

Used by the tests (fault injection: 200, 429 with Retry-After, 500, 400, or a hang, scripted per
path) and by the demo (a local stand-in for Slack, PagerDuty, ntfy and the release web site).
Stdlib only, so it runs anywhere relcomm does: a `ThreadingHTTPServer` in a daemon thread,
bound to 127.0.0.1 on a free port.

    with WebhookReceiver() as receiver:
        receiver.script("/hook", Reply(429, headers={"Retry-After": "1"}), Reply(200, "ok"))
        ... post to receiver.url("/hook") ...
        receiver.requests_for("/hook")   # what arrived, in order

A path answers its scripted replies in order, then its default (`receiver.answer(path, reply)`),
else: a PUT is stored and answered 201; a GET returns what was PUT there (or a file under a served
directory) with 200, or 404; anything else gets 200 "ok".
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
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
    """How to answer one request. `hang` seconds of silence first (None: answer at once);
    a hang longer than the client's timeout looks like a dead receiver."""

    status: int = 200
    body: Body = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    hang: float | None = None

    def render(self, request: ReceivedRequest) -> tuple[bytes, str]:
        body = self.body(request) if callable(self.body) else self.body
        if isinstance(body, (dict, list)):
            return json.dumps(body).encode(), "application/json"
        if isinstance(body, str):
            return body.encode("utf-8"), "text/plain; charset=utf-8"
        return body, "text/plain; charset=utf-8"


def hang(seconds: float = 30.0) -> Reply:
    """A receiver that accepts the request and never answers (within `seconds`)."""
    return Reply(200, b"too late", hang=seconds)


def pagerduty_reply(request: ReceivedRequest) -> dict:
    """What PagerDuty's Events API v2 answers to an accepted event."""
    try:
        dedup = request.json().get("dedup_key")  # type: ignore[union-attr]
    except (ValueError, AttributeError):
        dedup = None
    return {"status": "success", "message": "Event processed", "dedup_key": dedup or "generated-key"}


def ntfy_reply(request: ReceivedRequest) -> dict:
    """What an ntfy server answers to a published message."""
    return {"id": f"msg{int(request.at * 1000) % 10**9:09d}", "time": int(time.time()),
            "event": "message", "topic": request.path.strip("/"), "message": request.text[:200]}


class WebhookReceiver:
    """The server. Thread-safe; start/stop or use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Condition()
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._defaults: dict[str, Reply] = {}
        self._stored: dict[str, bytes] = {}
        self._served: list[tuple[str, Path]] = []
        self._requests: list[ReceivedRequest] = []
        self._released = threading.Event()  # set on stop: hanging handlers give up
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One write per response and no Nagle: else delayed ACKs add ~40 ms to every request.
            wbufsize = 64 * 1024
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:  # keep test output clean
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
        self._released.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour ---------------------------------------------------------------------

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to `path` with these replies, in order."""
        with self._lock:
            self._scripts[path].extend(replies)

    def answer(self, path: str, reply: Reply) -> None:
        """Answer every request to `path` (after its script) with `reply`."""
        with self._lock:
            self._defaults[path] = reply

    def serve_directory(self, prefix: str, directory: Path) -> None:
        """GET <prefix>/<name> returns the file <directory>/<name> (for publish's public_url)."""
        with self._lock:
            self._served.append((prefix.rstrip("/") + "/", Path(directory)))

    # -- what arrived ------------------------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str, method: str | None = None) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Block until `count` requests (to `path`) have arrived; raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                seen = [r for r in self._requests if path is None or r.path == path]
                if len(seen) >= count:
                    return seen
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(seen)} of {count} requests arrived within {timeout:g} s")
                self._lock.wait(left)

    def stored(self, path: str) -> bytes | None:
        with self._lock:
            return self._stored.get(path)

    # -- serving -----------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = ReceivedRequest(handler.command, parts.path, parts.query,
                                  {k.lower(): v for k, v in handler.headers.items()}, body, time.monotonic())
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()
            script = self._scripts.get(request.path)
            reply = script.popleft() if script else self._defaults.get(request.path)
            if reply is None:
                reply = self._builtin(request)
        if reply.hang is not None:
            self._released.wait(reply.hang)
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
            pass  # the client gave up waiting (a hang test); nothing to tell it

    def _builtin(self, request: ReceivedRequest) -> Reply:
        if request.method == "PUT":
            self._stored[request.path] = request.body
            return Reply(201, b"stored")
        if request.method == "GET":
            if request.path in self._stored:
                return Reply(200, self._stored[request.path], {"Content-Type": "text/html; charset=utf-8"})
            for prefix, directory in self._served:
                if request.path.startswith(prefix):
                    name = request.path[len(prefix):]
                    file = (directory / name).resolve()
                    if file.is_file() and directory.resolve() in file.parents:
                        return Reply(200, file.read_bytes(), {"Content-Type": "text/html; charset=utf-8"})
            return Reply(404, b"not found")
        return Reply(200, b"ok")
