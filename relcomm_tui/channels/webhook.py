"""The webhook channel: post a rendered communique to a chat service or any HTTP endpoint.

One POST (or PUT) per delivery, shaped by the communique's `preset`; the HTTP exchange and what
its answer means are `relcomm_tui.transport.http`'s, the retries the engine's (`[channels.webhook]`
sets concurrency, rate, max_attempts and timeout). A request that got no answer after it was sent
is `in doubt`: most chat services ignore `Idempotency-Key` (every request carries one), so it is
not re-posted unless the engineer asks ("resend in doubt").

Exactly-once: `intent.commit()` (the ledger says `sending`) is awaited right before the request;
a process that dies after it leaves the delivery `in doubt`, never re-posted silently.

Webhook URLs are secrets (a Slack URL carries its token), so the URL itself is never put in a
reply, a detail, the ledger or a dry-run file: only its scheme and host.

The pager channel (`channels.pager`) is this channel with another request and receipt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from ..transport.http import (
    HttpAnswer, HttpRequest, HttpResult, HttpSession, HttpTimeouts, SecretCache, check_url, redact,
)
from .base import (
    ChannelSettings, DeliveryJob, Intent, Outcome, Rehearsal, RenderJob, post_render, render_error_text, settings_from,
)
from ..plan.secrets import is_reference
from .presets import Message, Payload, PresetError, webhook_payload

if TYPE_CHECKING:
    from ..compose import Rendered
    from ..plan.model import Plan


def body_for_outbox(payload: Payload) -> object:
    if payload.content_type.startswith("application/json"):
        try:
            return json.loads(payload.body)
        except ValueError:
            pass
    return payload.body.decode("utf-8", "replace")


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

    def __init__(self, plan: "Plan", *, render: RenderJob | None = None, timeouts: HttpTimeouts | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, **_engine_options: object) -> None:
        self.plan = plan
        table = getattr(plan.channels, self.name)  # [channels.webhook] or [channels.pager]
        self.settings: ChannelSettings = settings_from(table)
        self._render = render or post_render(plan)
        self.http = HttpSession(timeouts or HttpTimeouts(total=float(table.timeout)), follow_redirects=False,
                                transport=transport)
        self.secrets = SecretCache()

    async def open(self) -> None:
        await self.http.open()

    async def close(self) -> None:
        await self.http.close()

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

    async def deliver(self, job: DeliveryJob, intent: Intent) -> Outcome:
        try:
            prepared = await self.prepare(job)
        except Exception as error:  # RenderError, PresetError: this communique cannot go out as written
            return Outcome("rejected", detail=f"not sent: {render_error_text(error)}")
        await intent.commit()  # the ledger says `sending` before the request leaves
        result = await self.http.send(prepared.request)
        return self.outcome(self.hidden(result, prepared))

    async def rehearse(self, job: DeliveryJob) -> Rehearsal:
        """The request as a JSON document: method, the URL's scheme and host only, headers with
        secret values masked, the body as it would be posted."""
        prepared = await self.prepare(job)
        secret = {name for name, value in job.communique.spec.headers.items() if is_reference(value)}
        headers = {k: ("(secret)" if k in secret else v) for k, v in prepared.request.headers.items()}
        document = {"channel": self.name, "communique": job.communique.id, "delivery": job.delivery_id,
                    "method": prepared.request.method, "url": prepared.shown_url, "headers": headers,
                    "body": self.shown_body(prepared.payload)}
        return Rehearsal("json", json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8") + b"\n")

    def hidden(self, result: HttpResult, prepared: Prepared) -> HttpResult:
        return self.secrets.hidden(result, prepared.request.url)

    def outcome(self, result: HttpResult) -> Outcome:
        answer = result.answer
        if result.state == "accepted":
            return Outcome("accepted", reply=self.receipt(answer), detail=result.detail)
        if result.state in ("rejected", "in_doubt"):
            return Outcome(result.state, reply=answer.words, detail=result.detail)
        detail = result.detail
        if answer.status is None and answer.may_have_arrived:
            detail = "; ".join(p for p in (detail, "the receiver may have it: a retry carries the same Idempotency-Key") if p)
        return Outcome("transient", reply=answer.words, detail=detail, retry_after=answer.retry_after)
