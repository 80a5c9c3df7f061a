"""HTTP for the channels that post (webhook, pager, publish): one bounded exchange, what its
answer means, and keeping the secrets a request carries out of everything kept or shown.

One exchange, never retried here (the send engine retries transient outcomes, with the
channel's `RetryPolicy`):
* 2xx                                   -> accepted
* 408, 429, 5xx                         -> transient (the answer's Retry-After goes to the engine)
* other 4xx, 3xx                        -> rejected, with the response text
* connection refused / DNS / connect timeout -> transient (nothing reached the receiver)
* timeout or lost connection after the request was sent
                                        -> in doubt, unless the request is idempotent (PUT, GET),
                                           when it is transient: repeating it is harmless

Bounded: connecting 5 s at most, the whole exchange `HttpTimeouts.total` (15 s unless the plan's
`[channels.NAME] timeout` says otherwise), at most MAX_BODY bytes of an answer kept.

Secrets: a webhook URL is one (a Slack URL carries its token), so only `redact(url)` (scheme and
host) is ever put in a reply, a detail, the ledger or the outbox. `SecretCache` resolves the
plan's secret references once per run and hides every resolved value from what a receiver
answers (a careless one echoes the request back).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from dataclasses import dataclass, field, replace
from typing import Mapping
from urllib.parse import urlsplit

import httpx

from ..common.errors import UserError
from ..plan.secrets import SecretError, is_reference, resolve
from ..common.secret_text import hide_secrets
from .retry import RETRY_AFTER_LONGEST

USER_AGENT = "relcomm (release communications)"
EXCERPT = 200
MAX_BODY = 8 * 1024 * 1024  # kept from a response: enough for a published page, bounded for a hostile one


@dataclass(frozen=True)
class HttpTimeouts:
    connect: float = 5.0
    total: float = 15.0    # the whole exchange: connect, send, wait, read

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(self.total, connect=min(self.connect, self.total))


class HttpSession:
    """One channel's HTTP client for a run: opened by the channel's open(), closed by its close()."""

    def __init__(self, timeouts: HttpTimeouts, *, follow_redirects: bool,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.timeouts = timeouts
        self._follow = follow_redirects
        self._transport = transport  # tests put a fault-injecting transport here
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeouts.httpx(), follow_redirects=self._follow,
                                             headers={"User-Agent": USER_AGENT}, transport=self._transport)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def send(self, request: "HttpRequest", also_retry: frozenset[int] = frozenset(),
                   idempotent: bool = False) -> "HttpResult":
        if self._client is None:
            raise RuntimeError("open() the channel before delivering")
        return await send(self._client, request, self.timeouts, also_retry, idempotent)


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


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class HttpAnswer:
    """One exchange: either a response (status set) or a failure (error set)."""

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


async def exchange(client: httpx.AsyncClient, request: HttpRequest, timeouts: HttpTimeouts) -> HttpAnswer:
    """One request with a bound on the whole exchange. Never raises for network trouble."""
    try:
        async with asyncio.timeout(timeouts.total):
            outgoing = client.build_request(request.method, request.url, headers=dict(request.headers),
                                            content=request.body, timeout=timeouts.httpx())
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
        return HttpAnswer(error=f"{redact(request.url)} did not answer within {timeouts.total:g} s",
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


@dataclass(frozen=True)
class HttpResult:
    """One exchange and what it means: accepted | rejected | transient | in_doubt."""

    answer: HttpAnswer
    state: str
    detail: str = ""


async def send(client: httpx.AsyncClient, request: HttpRequest, timeouts: HttpTimeouts,
               also_retry: frozenset[int] = frozenset(), idempotent: bool = False) -> HttpResult:
    """One exchange, classified. `also_retry`: statuses worth another try later (a page just
    written may 404 until the site syncs). `idempotent`: repeating the request is harmless, so
    a request that may have arrived is transient rather than in doubt."""
    answer = await exchange(client, request, timeouts)
    if answer.status is None and answer.error.startswith("bad URL"):
        return HttpResult(answer, "rejected", answer.error)
    kind = "transient" if answer.status in also_retry else answer.kind
    if kind == "transient" and answer.status is None and answer.may_have_arrived and not idempotent:
        return HttpResult(answer, "in_doubt", "no answer after the request was sent: the receiver may have it; "
                                              "resend in doubt if it did not arrive")
    return HttpResult(answer, kind)


# -- secrets ---------------------------------------------------------------------------------


class SecretMissing(UserError):
    """A secret a request needs cannot be had (unset variable, no keyring entry, failing command)."""


class SecretCache:
    """Resolves secret references once per run, off the event loop (keyring and commands block)."""

    def __init__(self) -> None:
        self._values: dict[int, str] = {}

    async def value(self, reference: object, what: str) -> str:
        """The plain value; raises SecretMissing naming `what` when it cannot be had."""
        if reference is None:
            raise SecretMissing(f"no {what} is set", f"set {what} in the communique")
        if not is_reference(reference):
            return str(reference)
        key = id(reference)
        if key not in self._values:
            try:
                self._values[key] = await asyncio.to_thread(resolve, reference, 10.0)
            except SecretError as error:
                raise SecretMissing(f"cannot get the {what}: {error.message}", error.hint) from None
        return self._values[key]

    def hide(self, text: str, *also: str) -> str:
        """`text` with every resolved secret (and `also`) replaced by "(secret)": a careless receiver
        echoes the request back (Express's default 404 says "Cannot POST /services/T0/B0/<token>"),
        and its answer becomes the reply relcomm keeps and prints. See `relcomm_tui.common.secret_text`."""
        return hide_secrets(text, (*self._values.values(), *also))

    def hidden(self, result: HttpResult, url: str) -> HttpResult:
        """The result with the secrets the request carried (and the URL, secret or not) hidden from
        what the receiver answered, before any of it is kept or shown."""
        answer = result.answer
        hide = self.hide
        # decoded whole, so an excerpt cut later can never keep half a token
        body = hide(answer.body.decode("utf-8", "replace"), url).encode("utf-8") if answer.body else b""
        answer = replace(answer, body=body, reason=hide(answer.reason, url), error=hide(answer.error, url))
        return replace(result, answer=answer, detail=hide(result.detail, url))
