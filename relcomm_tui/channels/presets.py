"""Payload presets: the body shapes that chat and paging services expect from an incoming webhook.

A preset turns one rendered communique (subject + Markdown text) into (body bytes, content type).
Chat services each speak their own dialect of Markdown, so the text is adapted lightly (bold,
links, headings) rather than sent as raw CommonMark that would show asterisks and brackets.

    slack       {"text": mrkdwn}                                  (Slack incoming webhook)
    teams       Adaptive Card message {"type": "message", ...}     (Microsoft Teams Workflows webhook)
    mattermost  {"text": Markdown}                                (Mattermost incoming webhook)
    googlechat  {"text": Chat's *bold* dialect}                   (Google Chat space webhook)
    json        {"release", "version", "subject", "text", ...}    (anything of your own)
    text        the text itself, text/plain
    pagerduty   Events API v2 trigger                             (pager channel)
    ntfy        the text, with Title / Priority headers           (pager channel)
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field

from ..common.errors import UserError

WEBHOOK_PRESETS = ("slack", "teams", "mattermost", "googlechat", "json", "text")
PAGER_PRESETS = ("pagerduty", "ntfy")
PRESETS = WEBHOOK_PRESETS + PAGER_PRESETS

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


class PresetError(UserError):
    """A body that cannot be built: unknown preset, or a template that is not the JSON it claims."""


@dataclass(frozen=True)
class Message:
    """What a preset needs to know about one rendered communique."""

    release: str            # the release's name
    version: str
    subject: str
    text: str               # Markdown
    html: str | None = None
    delivery_id: str = ""
    severity: str = "info"
    routing_key: str | None = None
    source: str = "relcomm"


@dataclass(frozen=True)
class Payload:
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def _json(value: object) -> Payload:
    return Payload(json.dumps(value, ensure_ascii=False).encode("utf-8"), JSON)


_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def to_mrkdwn(text: str) -> str:
    """CommonMark to Slack mrkdwn: *bold*, <url|label>, headings as bold lines."""
    text = _HEADING.sub(lambda m: f"*{m.group(1)}*", text)
    text = _BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", text)
    return _LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", text)


def to_google_chat(text: str) -> str:
    """Google Chat's text formatting: *bold*, <url|label> links, headings as bold lines."""
    return to_mrkdwn(text)


def _with_title(subject: str, text: str, bold: str) -> str:
    if not subject or text.lstrip().startswith(("#", bold + subject)) or subject in text.split("\n", 1)[0]:
        return text
    return f"{bold}{subject}{bold}\n\n{text}"


def webhook_payload(preset: str | None, message: Message, *, rendered_body: str | None = None,
                    format: str | None = None) -> Payload:
    """The body of a webhook post. Without a preset the rendered template is the body itself:
    JSON when `format = "json"` (checked to parse), else text."""
    text = message.text.strip()
    if preset is None:
        body = rendered_body if rendered_body is not None else message.text
        if format == "json":
            try:
                json.loads(body)
            except ValueError as error:
                raise PresetError(f"the template did not render valid JSON: {error}",
                                  'fix the template, or drop format = "json" to post it as text') from None
            return Payload(body.encode("utf-8"), JSON)
        return Payload(body.encode("utf-8"), TEXT)
    if preset == "slack":
        return _json({"text": _with_title(message.subject, to_mrkdwn(text), "*")})
    if preset == "teams":
        return _json(teams_card(message.subject or f"{message.release} {message.version}", text))
    if preset == "mattermost":
        return _json({"text": _with_title(message.subject, text, "**")})
    if preset == "googlechat":
        return _json({"text": _with_title(message.subject, to_google_chat(text), "*")})
    if preset == "json":
        document = {"release": message.release, "version": message.version, "subject": message.subject,
                    "text": text}
        if message.html:
            document["html"] = message.html
        return _json(document)
    if preset == "text":
        return Payload(_with_title(message.subject, text, "").encode("utf-8"), TEXT)
    if preset == "pagerduty":
        return pagerduty_payload(message)
    if preset == "ntfy":
        return ntfy_payload(message)
    raise unknown_preset(preset)


def teams_card(title: str, text: str) -> dict:
    """An Adaptive Card in a message, as Teams' Workflows webhooks take it (the older Office 365
    connectors, which took MessageCards, are retired). TextBlocks render bold, lists and links."""
    return {
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": None,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": title, "size": "Large", "weight": "Bolder", "wrap": True},
                    {"type": "TextBlock", "text": text, "wrap": True},
                ],
            },
        }],
    }


def unknown_preset(preset: str) -> PresetError:
    return PresetError(f"unknown preset {preset!r}", "known presets: " + ", ".join(PRESETS))


def pagerduty_payload(message: Message) -> Payload:
    """A PagerDuty Events API v2 trigger; the delivery id is the dedup key, so a resend of an
    in-doubt delivery updates the same incident instead of paging twice."""
    if not message.routing_key:
        raise PresetError("the pagerduty preset needs a routing_key",
                          'add routing_key = { env = "PAGERDUTY_ROUTING_KEY" } to the communique')
    summary = message.subject or message.text.strip().split("\n", 1)[0]
    return _json({
        "routing_key": message.routing_key,
        "event_action": "trigger",
        "dedup_key": message.delivery_id,
        "payload": {
            "summary": summary[:1024],
            "source": message.source,
            "severity": message.severity,
            "custom_details": {"release": message.release, "version": message.version, "text": message.text.strip()},
        },
    })


NTFY_PRIORITY = {"critical": "5", "error": "4", "warning": "3", "info": "3"}


def header_text(value: str) -> str:
    """A header value any HTTP stack accepts: ASCII as is, else RFC 2047 (ntfy decodes it)."""
    value = " ".join(value.split())
    if value.isascii():
        return value
    return "=?UTF-8?B?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="


def ntfy_payload(message: Message) -> Payload:
    headers = {"Priority": NTFY_PRIORITY.get(message.severity, "3"), "Tags": "rocket"}
    if message.subject:
        headers["Title"] = header_text(message.subject)
    return Payload(message.text.strip().encode("utf-8"), TEXT, headers)
