"""The pager channel: a notification to an on-call service through its events API.

The webhook channel with another request and receipt (`[channels.pager]` sets its pace). Presets:

* pagerduty: Events API v2 (`url` defaults to PagerDuty's enqueue endpoint). The body carries
  the `routing_key` (a secret reference), `event_action = "trigger"` and the delivery id as
  `dedup_key`, so resending an in-doubt delivery updates the same alert instead of paging again.
  Receipt: the `dedup_key` and `message` PagerDuty answers.
* ntfy: the text is POSTed to a topic URL with `Title` and `Priority` headers.
  Receipt: the message `id` ntfy answers.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..transport.http import HttpAnswer
from .base import DeliveryJob
from .presets import PAGER_PRESETS, PAGERDUTY_EVENTS_URL, Message, Payload, PresetError, webhook_payload
from .webhook import WebhookChannel, body_for_outbox

if TYPE_CHECKING:
    from ..compose import Rendered


def pager_preset(job: DeliveryJob) -> str:
    spec = job.communique.spec
    if spec.preset in PAGER_PRESETS:
        return spec.preset
    if spec.preset is None and spec.routing_key is not None:
        return "pagerduty"
    raise PresetError(f"the pager channel needs preset = \"pagerduty\" or \"ntfy\", not {spec.preset!r}",
                      "pagerduty needs routing_key; ntfy needs the topic url")


class PagerChannel(WebhookChannel):
    name = "pager"

    async def url(self, job: DeliveryJob) -> str:
        spec = job.communique.spec
        if spec.url is None and pager_preset(job) == "pagerduty":
            return PAGERDUTY_EVENTS_URL
        return await self.secrets.value(spec.url, "pager url")

    def payload(self, job: DeliveryJob, rendered: "Rendered", message: Message) -> Payload:
        return webhook_payload(pager_preset(job), message)

    async def complete(self, job: DeliveryJob, message: Message) -> Message:
        if pager_preset(job) != "pagerduty":
            return message
        # The routing key may sit in the keyring; it only ever goes in the body.
        key = await self.secrets.value(job.communique.spec.routing_key, "routing_key")
        return replace(message, routing_key=key)

    def receipt(self, answer: HttpAnswer) -> str:
        document = answer.json()
        if isinstance(document, dict):
            if "dedup_key" in document or ("message" in document and "status" in document):
                parts = [f"dedup_key {document.get('dedup_key')}" if document.get("dedup_key") else "",
                         str(document.get("message") or document.get("status") or "")]
                return f"{answer.status_line}: " + "; ".join(p for p in parts if p)
            if "id" in document:
                return f"{answer.status_line}: id {document['id']}"
        return f"{answer.words} (no acknowledgement id in the answer)"

    def shown_body(self, payload: Payload) -> object:
        body = body_for_outbox(payload)
        if isinstance(body, dict) and "routing_key" in body:
            body["routing_key"] = "(secret)"
        return body
