"""The webhook channel: post a rendered communique to a chat service or any HTTP endpoint.

Also the HTTP machinery the pager and publish channels share: bounded timeouts (connect 5 s,
the whole exchange 15 s), classification of answers, Retry-After, backoff, and dry-run files.

How an HTTP exchange maps onto an outcome:
* 2xx                                   -> accepted; the receipt is the status and a body excerpt
* 429, 5xx                              -> transient: retried after Retry-After or backoff; a
                                           Retry-After over RETRY_AFTER_MAX (60 s) is not waited
                                           for: the delivery is deferred to the next run
* other 4xx, 3xx                        -> rejected, with the response text
* connection refused / DNS / connect timeout -> transient (nothing reached the receiver)
* timeout or lost connection after the request was sent
                                        -> in doubt: the receiver may have it, and most chat services
                                           ignore `Idempotency-Key` (every request carries one), so it
                                           is not re-posted unless the engineer asks ("resend in
                                           doubt"). Idempotent requests (publish's PUT and GET) retry.

Exactly-once: `job.commit_intent()` (the ledger says `sending`) is awaited before the first
request; a process that dies after it leaves the delivery `in doubt`, never re-posted silently.

Webhook URLs are secrets (a Slack URL carries its token), so the URL itself is never put in a
reply, a detail, the ledger or a dry-run file: only its scheme and host.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Mapping
from urllib.parse import urlsplit

import httpx

from . import RETRY_AFTER_MAX, DeliveryJob, Outcome
from .presets import Message, Payload, PresetError, webhook_payload

if TYPE_CHECKING:  # compose and the plan are imported lazily
    from ..compose import Rendered
    from ..plan.model import Plan

USER_AGENT = "relcomm (release communications)"
EXCERPT = 200
MAX_BODY = 8 * 1024 * 1024  # kept from a response: enough for a published page, bounded for a hostile one


# -- policy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait and how often to try. Tests shrink every number."""

    max_attempts: int = 1          # per deliver(); the send engine retries transient outcomes itself
    connect_timeout: float = 5.0
    total_timeout: float = 15.0    # the whole exchange: connect, send, wait, read
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    retry_after_cap: float = RETRY_AFTER_MAX  # a receiver asking for longer is deferred instead of waited for

    def backoff(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.total_timeout, connect=self.connect_timeout)


RETRY_AFTER_LONGEST = 10.0 ** 9  # what any longer ask (400 digits, a date in 3000) reads as: ~31 years


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent/unreadable.
    Never more than RETRY_AFTER_LONGEST: a receiver's number is data, not a float to overflow
    (400 digits made `inf`) or Unicode digits to crash on (`float("²")`)."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]+", value):
        digits = value.lstrip("0") or "0"
        return float(digits) if len(digits) <= 9 else RETRY_AFTER_LONGEST
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    try:
        delta = when.timestamp() - (time.time() if now is None else now)
    except (OverflowError, ValueError, OSError):
        return RETRY_AFTER_LONGEST
    return min(RETRY_AFTER_LONGEST, max(0.0, delta))


# -- one exchange ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class HttpAnswer:
    """One attempt: either a response (status set) or a failure (error set)."""

    status: int | None = None
    reason: str = ""
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    error: str = ""
    may_have_arrived: bool = False   # the request left us; the receiver may have acted on it
    retry_after: float | None = None

    @property
    def excerpt(self) -> str:
        return excerpt(self.body)

    @property
    def status_line(self) -> str:
        return f"HTTP {self.status} {self.reason}".rstrip() if self.status is not None else ""

    @property
    def words(self) -> str:
        """What to show a person: the status line and the body excerpt, or the error."""
        if self.status is None:
            return self.error
        return f"{self.status_line}: {self.excerpt}" if self.excerpt else self.status_line

    @property
    def kind(self) -> str:
        """accepted | transient | rejected."""
        if self.status is None:
            return "transient"
        if 200 <= self.status < 300:
            return "accepted"
        if self.status == 429 or self.status >= 500 or self.status == 408:
            return "transient"
        return "rejected"

    def json(self) -> object:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def retry_after_refused(asked: float, cap: float) -> str:
    """Why a Retry-After is not waited for."""
    shown = f"more than {RETRY_AFTER_LONGEST:.0f} s" if asked >= RETRY_AFTER_LONGEST else f"{asked:.0f} s"
    return (f"the receiver asks to wait {shown}, longer than relcomm waits within a run ({cap:g} s): "
            "deferred; the next `relcomm send` tries again")


def excerpt(body: bytes, limit: int = EXCERPT) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact(url: str) -> str:
    """scheme://host[:port] of a URL, safe to show and store (no path, query or credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…" if parts.path not in ("", "/") or parts.query else f"{parts.scheme}://{host}{port}"


def check_url(url: str) -> str | None:
    """Why a URL cannot be posted to, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"the URL's scheme is {parts.scheme or 'missing'}; only http and https are supported"
    if not parts.hostname:
        return "the URL has no host"
    return None


async def exchange(client: httpx.AsyncClient, request: HttpRequest, policy: RetryPolicy) -> HttpAnswer:
    """One request with a bound on the whole exchange. Never raises for network trouble."""
    try:
        async with asyncio.timeout(policy.total_timeout):
            outgoing = client.build_request(request.method, request.url, headers=dict(request.headers),
                                            content=request.body, timeout=policy.timeout())
            response = await client.send(outgoing, stream=True)
            try:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= MAX_BODY:
                        break
            finally:
                await response.aclose()
            body = b"".join(chunks)
    except (httpx.ConnectError, httpx.ConnectTimeout) as error:
        return HttpAnswer(error=f"cannot connect to {redact(request.url)}: {_why(error)}")
    except (TimeoutError, httpx.TimeoutException):
        return HttpAnswer(error=f"{redact(request.url)} did not answer within {policy.total_timeout:g} s",
                          may_have_arrived=True)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
        return HttpAnswer(status=None, error=f"bad URL: {error}")
    except httpx.HTTPError as error:  # the connection dropped mid-exchange
        return HttpAnswer(error=f"connection to {redact(request.url)} lost: {_why(error)}", may_have_arrived=True)
    return HttpAnswer(response.status_code, response.reason_phrase, body[:MAX_BODY], dict(response.headers),
                      may_have_arrived=True, retry_after=parse_retry_after(response.headers.get("retry-after")))


def _why(error: Exception) -> str:
    text = str(error) or type(error).__name__
    # httpx repeats the URL in some messages; never show it.
    return text.split(" for url ")[0][:200]


Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class HttpResult:
    """The outcome of up to `max_attempts` exchanges."""

    answer: HttpAnswer
    attempts: int
    waited: float
    state: str          # accepted | rejected | transient | in_doubt
    detail: str = ""


async def send_with_retries(client: httpx.AsyncClient, request: HttpRequest, policy: RetryPolicy,
                            sleep: Sleep = asyncio.sleep, also_retry: frozenset[int] = frozenset(),
                            idempotent: bool = False) -> HttpResult:
    """Try up to `policy.max_attempts` times; wait Retry-After (capped) or backoff between tries.
    `also_retry`: statuses worth another try here (a page just written may 404 until the site syncs).
    `idempotent`: repeating the request is harmless, so a request that may have arrived is retried;
    otherwise it stops there, in doubt."""
    waited = 0.0
    attempt = 0
    while True:
        attempt += 1
        answer = await exchange(client, request, policy)
        if answer.status is None and answer.error.startswith("bad URL"):
            return HttpResult(answer, attempt, waited, "rejected", answer.error)
        kind = "transient" if answer.status in also_retry else answer.kind
        if kind != "transient":
            return HttpResult(answer, attempt, waited, kind)
        if answer.status is None and answer.may_have_arrived and not idempotent:
            return HttpResult(answer, attempt, waited, "in_doubt",
                              "no answer after the request was sent: the receiver may have it; "
                              "resend in doubt if it did not arrive")
        if answer.retry_after is not None and answer.retry_after > policy.retry_after_cap:
            return HttpResult(answer, attempt, waited, "transient", retry_after_refused(answer.retry_after,
                                                                                       policy.retry_after_cap))
        if attempt >= policy.max_attempts:
            detail = f"gave up after {attempt} attempt(s)" if attempt > 1 else ""
            return HttpResult(answer, attempt, waited, "transient", detail)
        delay = answer.retry_after if answer.retry_after is not None else policy.backoff(attempt)
        await sleep(delay)
        waited += delay


# -- dry run ---------------------------------------------------------------------------------


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a file so a reader sees the old content or the new, never half: temp file in the
    same folder, fsync, rename over, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{random.getrandbits(32):08x}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    try:
        folder = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(folder)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename is still atomic
    finally:
        os.close(folder)


def outbox_file(outbox: Path, job: DeliveryJob, suffix: str) -> Path:
    """`<outbox>/<communique>/<delivery>.<suffix>`: where a dry run puts what would go out."""
    return Path(outbox) / job.communique.id / f"{job.delivery_id}.{suffix}"


def write_outbox_json(outbox: Path, job: DeliveryJob, document: dict) -> Path:
    path = outbox_file(outbox, job, "json")
    atomic_write(path, json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8") + b"\n", 0o600)
    return path


def body_for_outbox(payload: Payload) -> object:
    if payload.content_type.startswith("application/json"):
        try:
            return json.loads(payload.body)
        except ValueError:
            pass
    return payload.body.decode("utf-8", "replace")


# -- rendering -------------------------------------------------------------------------------

RenderJob = Callable[[DeliveryJob], "Rendered"]


def default_render(plan: "Plan") -> RenderJob:
    from ..compose import render

    def build(job: DeliveryJob) -> "Rendered":
        # A post goes to groups, not to a person: render it as the preview does, without `recipient`.
        recipient = job.recipient if job.communique.per_recipient else None
        return render(plan, job.communique, job.group, recipient, message_id=job.message_id)

    return build


def render_error_text(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    hint = getattr(error, "hint", "")
    return f"{message} ({hint})" if hint else message


class SecretCache:
    """Resolves secret references once per run, off the event loop (keyring and commands block)."""

    def __init__(self) -> None:
        self._values: dict[int, str] = {}

    async def value(self, reference: object, what: str) -> str:
        """The plain value; raises PresetError naming `what` when it cannot be had."""
        from ..plan.secrets import SecretError, is_reference, resolve

        if reference is None:
            raise PresetError(f"no {what} is set", f"set {what} in the communique")
        if not is_reference(reference):
            return str(reference)
        key = id(reference)
        if key not in self._values:
            try:
                self._values[key] = await asyncio.to_thread(resolve, reference, 10.0)
            except SecretError as error:
                raise PresetError(f"cannot get the {what}: {error.message}", error.hint) from None
        return self._values[key]

    def hide(self, text: str, *also: str) -> str:
        """`text` with every resolved secret (and `also`) replaced by "(secret)": a careless receiver
        echoes the request back (Express's default 404 says "Cannot POST /services/T0/B0/<token>"),
        and its answer becomes the reply relcomm keeps and prints. See `relcomm_tui.common.secret_text`."""
        from ..common.secret_text import hide_secrets as hide_text

        return hide_text(text, (*self._values.values(), *also))


def hidden_result(result: HttpResult, secrets: SecretCache, url: str) -> HttpResult:
    """The result with the secrets the request carried (and the URL, secret or not) hidden from
    what the receiver answered, before any of it is kept or shown."""
    answer = result.answer
    hide = secrets.hide
    # decoded whole, so an excerpt cut later can never keep half a token
    body = hide(answer.body.decode("utf-8", "replace"), url).encode("utf-8") if answer.body else b""
    answer = replace(answer, body=body, reason=hide(answer.reason, url), error=hide(answer.error, url))
    return replace(result, answer=answer, detail=hide(result.detail, url))


# -- the channel -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """A delivery ready to go out: the request, and what to write in a dry run."""

    request: HttpRequest
    payload: Payload
    shown_url: str


class WebhookChannel:
    """POST (or PUT) the rendered communique to the communique's `url`, shaped by its `preset`."""

    name = "webhook"

    def __init__(self, plan: "Plan", *, render: RenderJob | None = None, policy: RetryPolicy | None = None,
                 outbox: Path | None = None, sleep: Sleep = asyncio.sleep,
                 transport: httpx.AsyncBaseTransport | None = None, **_engine_options: object) -> None:
        self.plan = plan
        self._render = render or default_render(plan)
        self.policy = policy or RetryPolicy()
        self.outbox = Path(outbox) if outbox is not None else None
        self._sleep = sleep
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self.secrets = SecretCache()

    async def open(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.policy.timeout(), follow_redirects=False,
                                             headers={"User-Agent": USER_AGENT}, transport=self._transport)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("open() the channel before delivering")
        return self._client

    # -- building the request ----------------------------------------------------------

    def message(self, job: DeliveryJob, rendered: "Rendered") -> Message:
        release = self.plan.release
        spec = job.communique.spec
        return Message(release=release.name, version=release.version,
                       subject=(rendered.subject or "").strip(), text=rendered.text or "", html=rendered.html,
                       delivery_id=job.envelope_id, severity=spec.severity,  # random, stored: never computable from the plan
                       source=f"relcomm {release.name} {release.version}")

    async def complete(self, job: DeliveryJob, message: Message) -> Message:
        """Add what needs a secret resolved (the pager's routing key); per call, so concurrent
        deliveries of different communiques never see each other's."""
        return message

    def shown_body(self, payload: Payload) -> object:
        """The body as a dry-run file shows it (secrets masked)."""
        return body_for_outbox(payload)

    def payload(self, job: DeliveryJob, rendered: "Rendered", message: Message) -> Payload:
        spec = job.communique.spec
        body = rendered.payload.decode("utf-8") if rendered.payload is not None else rendered.text
        fmt = spec.format
        if fmt is None and spec.preset is None and job.communique.template_file is not None:
            if ".json" in job.communique.template_file.name:
                fmt = "json"
        return webhook_payload(spec.preset, message, rendered_body=body, format=fmt)

    async def url(self, job: DeliveryJob) -> str:
        return await self.secrets.value(job.communique.spec.url, "webhook url")

    async def headers(self, job: DeliveryJob, payload: Payload) -> dict[str, str]:
        headers = {"Content-Type": payload.content_type, "Idempotency-Key": job.envelope_id}
        headers.update(payload.headers)
        for name, value in job.communique.spec.headers.items():
            headers[name] = await self.secrets.value(value, f"header {name}")
        return headers

    async def prepare(self, job: DeliveryJob) -> Prepared:
        """Render and build the request; raises PresetError (or RenderError) for a bad communique."""
        rendered = self._render(job)
        message = await self.complete(job, self.message(job, rendered))
        payload = self.payload(job, rendered, message)
        url = await self.url(job)
        problem = check_url(url)
        if problem:
            raise PresetError(f"cannot post to {redact(url)}: {problem}", "fix url in the communique")
        request = HttpRequest(job.communique.spec.method, url, await self.headers(job, payload), payload.body)
        return Prepared(request, payload, redact(url))

    def receipt(self, answer: HttpAnswer) -> str:
        """The words kept as the receipt of an accepted post."""
        return answer.words

    # -- one delivery ------------------------------------------------------------------

    async def deliver(self, job: DeliveryJob) -> Outcome:
        try:
            prepared = await self.prepare(job)
        except Exception as error:  # RenderError, PresetError: this communique cannot go out as written
            return Outcome("rejected", detail=f"not sent: {render_error_text(error)}")
        if self.outbox is not None:
            path = self.write_dry_run(job, prepared)
            return Outcome("accepted", reply=f"dry run: written to {path}")
        if job.commit_intent is not None:
            await job.commit_intent()
        result = await send_with_retries(self.client, prepared.request, self.policy, self._sleep)
        return self.outcome(self.hidden(result, prepared))

    def hidden(self, result: HttpResult, prepared: Prepared) -> HttpResult:
        return hidden_result(result, self.secrets, prepared.request.url)

    def outcome(self, result: HttpResult) -> Outcome:
        answer = result.answer
        if result.state == "accepted":
            return Outcome("accepted", reply=self.receipt(answer), detail=result.detail, intent_committed=True)
        if result.state in ("rejected", "in_doubt"):
            return Outcome(result.state, reply=answer.words, detail=result.detail, intent_committed=True)
        detail = result.detail
        if answer.status is None and answer.may_have_arrived:
            detail = "; ".join(p for p in (detail, "the receiver may have it: a retry carries the same Idempotency-Key") if p)
        return Outcome("transient", reply=answer.words, detail=detail, intent_committed=True,
                       **_retry_after(answer))

    def write_dry_run(self, job: DeliveryJob, prepared: Prepared) -> Path:
        assert self.outbox is not None
        headers = {k: ("(secret)" if _is_secret_header(job, k) else v) for k, v in prepared.request.headers.items()}
        return write_outbox_json(self.outbox, job, {
            "channel": self.name, "communique": job.communique.id, "delivery": job.delivery_id,
            "method": prepared.request.method, "url": prepared.shown_url, "headers": headers,
            "body": self.shown_body(prepared.payload),
        })


def _is_secret_header(job: DeliveryJob, name: str) -> bool:
    from ..plan.secrets import is_reference

    return is_reference(job.communique.spec.headers.get(name))


def _retry_after(answer: HttpAnswer) -> dict:
    """Pass the receiver's Retry-After to the engine when the Outcome can carry it."""
    if answer.retry_after is not None and "retry_after" in Outcome.__dataclass_fields__:
        return {"retry_after": answer.retry_after}
    return {}


# -- dry run of any non-email channel ----------------------------------------------------------


def dry_run_deliveries(plan: "Plan", channel_name: str, jobs: list[DeliveryJob], outbox: Path,
                       **options: object) -> list[Outcome]:
    """Run the channel with `outbox` set: each job writes what would be posted or published to
    `<outbox>/<communique>/<delivery>.json|.html|.txt` and nothing leaves the machine.

    Synchronous, for the engine's dry run; the channel runs on its own event loop in a helper
    thread, so this works whether or not the caller's thread already runs a loop.
    """
    import concurrent.futures

    from . import channel_factory

    factory = channel_factory(channel_name)
    if factory is None:
        raise ValueError(f"channel {channel_name} is not available")

    async def run() -> list[Outcome]:
        channel = factory(plan, outbox=outbox, **options)
        await channel.open()
        try:
            return [await channel.deliver(job) for job in jobs]
        finally:
            await channel.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run()).result()
