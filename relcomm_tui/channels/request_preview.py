"""The exact HTTP request a webhook or pager communique will make, for the preview's raw view:
method, URL, headers and body as the channel builds them (the same code path as a send).

Secrets stay hidden as in a dry run: a URL that comes from a secret reference is shown as
scheme://host/… with where it comes from, and a header whose value is a secret shows "(secret)".
The Idempotency-Key and the delivery id are assigned at send time, so they show a placeholder.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..compose import RenderError, render
from ..plan.model import Communique, Plan
from ..plan.secrets import describe, is_reference
from . import DeliveryJob
from .pager import PagerChannel
from ..transport.http import USER_AGENT
from .webhook import WebhookChannel

ASSIGNED_WHEN_SENT = "(assigned when sent)"


@dataclass(frozen=True)
class RequestPreview:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: str       # the bytes as posted, decoded (never re-formatted)

    def as_text(self) -> str:
        lines = [f"{self.method} {self.url}"] + [f"{name}: {value}" for name, value in self.headers]
        return "\n".join(lines) + "\n\n" + self.body


def request_preview(plan: Plan, communique: Communique) -> RequestPreview:
    """Raises RenderError (or the channel's PresetError, a UserError) when it cannot be built."""
    kind = PagerChannel if communique.channel == "pager" else WebhookChannel
    group = plan.group(communique.to[0]) if communique.to else None

    def build(job: DeliveryJob):
        return render(plan, job.communique, job.group, job.recipient)

    channel = kind(plan, render=build)
    job = DeliveryJob(delivery_id=ASSIGNED_WHEN_SENT, communique=communique, group=group, recipient=None,
                      message_id=ASSIGNED_WHEN_SENT, envelope_id=ASSIGNED_WHEN_SENT)
    prepared = asyncio.run(channel.prepare(job))  # resolves the URL's secret like a send would
    spec = communique.spec
    url = prepared.request.url
    if is_reference(spec.url):
        url = f"{prepared.shown_url}  (from {describe(spec.url)}, hidden)"
    headers = [(name, "(secret)" if is_reference(spec.headers.get(name)) else value)
               for name, value in prepared.request.headers.items()]
    headers.insert(0, ("User-Agent", USER_AGENT))  # the client adds it to every request
    body = prepared.request.body.decode("utf-8", errors="replace")
    return RequestPreview(prepared.request.method, url, headers, body)


__all__ = ["ASSIGNED_WHEN_SENT", "RequestPreview", "RenderError", "request_preview"]
