"""Fixtures for tests that need a real HTTP receiver on loopback, and a small plan with other channels.

    from http_receiver import receiver, Reply, hang, channel_plan, job_for, fake_render  # noqa: F401

`ScriptedReceiver` is the demo's `relcomm_tui.demo.webhook_receiver.WebhookReceiver` plus what only
tests need: fault injection (200, 429 with Retry-After, 500, 400, or a hang, scripted per path),
PUT/GET storage and served folders (for publish), and waiting for requests.

    with ScriptedReceiver() as receiver:
        receiver.script("/hook", Reply(429, headers={"Retry-After": "1"}), Reply(200, "ok"))
        ... post to receiver.url("/hook") ...
        receiver.requests_for("/hook")   # what arrived, in order

A path answers its scripted replies in order, then its default (`receiver.answer(path, reply)`),
else: a PUT is stored and answered 201; a GET returns what was PUT there (or a file under a served
directory) with 200, or 404; anything else gets 200 "ok".
"""

from __future__ import annotations

import textwrap
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

import pytest

from relcomm_tui.channels import DeliveryJob, Intent, Outbox
from relcomm_tui.compose import Rendered
from relcomm_tui.store.ledger import delivery_id, new_envelope_id
from relcomm_tui.plan.loader import load_plan
from relcomm_tui.demo import webhook_receiver as demo
from relcomm_tui.demo.webhook_receiver import ReceivedRequest


@dataclass(frozen=True)
class Reply(demo.Reply):
    """How to answer one request. `hang` seconds of silence first (None: answer at once);
    a hang longer than the client's timeout looks like a dead receiver."""

    hang: float | None = None


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


class ScriptedReceiver(demo.WebhookReceiver):
    """The demo's receiver with scripted answers, storage and waiting (see the module doc)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._scripts: dict[str, deque[demo.Reply]] = defaultdict(deque)
        self._defaults: dict[str, demo.Reply] = {}
        self._stored: dict[str, bytes] = {}
        self._served: list[tuple[str, Path]] = []
        self._released = threading.Event()  # set on stop: hanging handlers give up

    def stop(self) -> None:
        self._released.set()
        super().stop()

    # -- behaviour ---------------------------------------------------------------------

    def script(self, path: str, *replies: demo.Reply) -> None:
        """Answer the next requests to `path` with these replies, in order."""
        with self._lock:
            self._scripts[path].extend(replies)

    def answer(self, path: str, reply: demo.Reply) -> None:
        """Answer every request to `path` (after its script) with `reply`."""
        with self._lock:
            self._defaults[path] = reply

    def serve_directory(self, prefix: str, directory: Path) -> None:
        """GET <prefix>/<name> returns the file <directory>/<name> (for publish's public_url)."""
        with self._lock:
            self._served.append((prefix.rstrip("/") + "/", Path(directory)))

    # -- what arrived ------------------------------------------------------------------

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

    def reply_for(self, request: ReceivedRequest) -> demo.Reply:
        with self._lock:
            script = self._scripts.get(request.path)
            reply = script.popleft() if script else self._defaults.get(request.path)
            if reply is None:
                reply = self._builtin(request)
        if getattr(reply, "hang", None) is not None:
            self._released.wait(reply.hang)
        return reply

    def _builtin(self, request: ReceivedRequest) -> demo.Reply:
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


@pytest.fixture
def receiver():
    with ScriptedReceiver() as server:
        yield server


PLAN_HEAD = """\
format = 1

[release]
name = "Orion"
version = "4.2.0"
date = 2026-11-26

[sender]
from = "Release Engineering <release@example.com>"

[[stakeholders]]
id = "engineering"
name = "Engineering"
members = ["Engineering list <eng@example.com>"]

[[stakeholders]]
id = "exec"
name = "Executive staff"
members = [
  { name = "Dana Chief", email = "dana@example.com", phone = "+1 555 0100", role = "CEO" },
  { name = "Sam Okafor", phone = "+1 555 0101", role = "CTO" },
]
"""


def channel_plan(folder: Path, communiques: str):
    """Load a plan made of PLAN_HEAD and the given [[communiques]] tables."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "plan.toml"
    path.write_text(PLAN_HEAD + "\n" + textwrap.dedent(communiques), encoding="utf-8")
    return load_plan(path)


def job_for(plan, communique_id: str, member: int = 0) -> DeliveryJob:
    """The job the engine would hand a channel for one member of the communique's audience."""
    communique = plan.communique(communique_id)
    group, recipient = plan.audience(communique)[member]
    ident = delivery_id(plan.release.version, communique.id, recipient.key)
    envelope = new_envelope_id()  # random, as the ledger makes it: what goes out is never computable
    return DeliveryJob(ident, communique, group, recipient, f"<{envelope}@example.com>", envelope)


def fake_render(subject: str = "Orion 4.2.0 is live", text: str = "**Orion 4.2.0** is live. [Notes](https://x.example/4.2.0)",
                html: str | None = None):
    """A stand-in for compose.render at the channel layer: the channel's job is what happens after."""

    def render(job: DeliveryJob) -> Rendered:
        return Rendered(job.communique.id, job.communique.channel, subject, text, html)

    return render


class IntentLog:
    """Stands in for the engine's intent (the `sending` row) and remembers what the world looked
    like when it was committed: how many requests the receiver had, and `observe()`'s answer."""

    def __init__(self, receiver: ScriptedReceiver | None = None, observe=None) -> None:
        self.calls = 0
        self.requests_before: list[int] = []
        self.observed: list[object] = []
        self.receiver = receiver
        self.observe = observe

    def intent(self) -> Intent:
        async def commit() -> None:
            self.calls += 1
            self.requests_before.append(len(self.receiver.requests) if self.receiver else 0)
            if self.observe is not None:
                self.observed.append(self.observe())

        return Intent(commit)


async def rehearse(channel, job: DeliveryJob, outbox: Path) -> Path:
    """The dry run of one delivery, as the engine's dry run does it: the channel's rehearsal, written by Outbox."""
    return Outbox(outbox).write(job, await channel.rehearse(job))
