"""One delivery's whole story: where it stands, every report received for it (when, from where,
what it said), and the message as sent. The receipts screen's detail view shows it; a command can
print the same.

The message is rendered again from the plan, with the delivery's own Message-ID: relcomm keeps no
copy of what it sent. When the plan changed since the send, the story says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..compose import RenderError, render
from ..compose.shown import person_of
from ..store.ledger import DeliveryRecord, Ledger
from ..plan.model import Plan
from .status import RecipientReceipt, build_status


@dataclass(frozen=True)
class Report:
    """One report received for the delivery."""

    at: str               # ledger UTC ISO text
    kind: str             # dsn, mdn, reply, webhook, manual...
    action: str           # delivered, failed, displayed...
    status: str           # 5.1.1, 2.0.0
    words: str            # the server's or the reader's words
    source: str           # where it was read: "receipts/1796.M1.vm", "imap", "ticked here"
    subject: str = ""
    sender: str = ""
    matched_by: str = ""  # how it was tied to this delivery (envelope-id, message-id, ledger)
    note: str = ""


@dataclass
class DeliveryStory:
    record: DeliveryRecord
    receipt: RecipientReceipt | None
    reports: list[Report] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)  # the message's headers, in order
    text: str = ""         # what the recipient reads (the Markdown text, the instructions, the post)
    raw: str = ""          # the message as it went on the wire (MIME, or the body posted)
    message_note: str = ""  # why the message shown may differ from what went out


def source_of(source_key: str, root: Path) -> str:
    """`maildir:/abs/receipts|1796.M1.vm|0` -> `receipts/1796.M1.vm` (plan-relative where it can)."""
    kind, _, rest = source_key.partition(":")
    parts = rest.split("|")
    if kind == "maildir" and len(parts) >= 2:
        folder = Path(parts[0])
        try:
            folder = folder.resolve().relative_to(root.resolve())
        except (ValueError, OSError):
            pass
        return f"{folder}/{parts[1]}"
    return {"manual": "ticked by hand"}.get(kind, source_key if len(source_key) < 80 else source_key[:77] + "...")


def _report(row: dict, root: Path) -> Report:
    try:
        summary = json.loads(row.get("raw_summary") or "{}")
    except ValueError:
        summary = {}
    if not isinstance(summary, dict):
        summary = {}
    return Report(at=row.get("at") or "", kind=row.get("kind") or "", action=row.get("action") or "",
                  status=row.get("status") or "", words=row.get("diagnostic") or "",
                  source=source_of(row.get("source_key") or "", root), subject=str(summary.get("subject") or ""),
                  sender=str(summary.get("from") or ""), matched_by=row.get("matched_by") or "",
                  note=row.get("note") or "")


def delivery_story(plan: Plan, ledger: Ledger, delivery_id: str) -> DeliveryStory | None:
    record = ledger.delivery(delivery_id)
    if record is None:
        return None
    status = build_status(plan, ledger)
    story = DeliveryStory(record, status.row(delivery_id),
                          [_report(row, plan.root) for row in ledger.receipts(delivery_id)])
    _add_message(story, plan, ledger)
    return story


def _add_message(story: DeliveryStory, plan: Plan, ledger: Ledger) -> None:
    record = story.record
    communique = plan.communique(record.communique_id)
    if communique is None:
        story.message_note = f"the plan no longer has the communique {record.communique_id}"
        return
    group, recipient = person_of(plan, communique, record.person)
    if communique.per_recipient and recipient is None:
        story.message_note = "this person is no longer in the plan: the message cannot be shown again"
        return
    if recipient is not None and record.recipient_key != recipient.key:  # a follow-up to a corrected address
        recipient = replace(recipient, email=record.recipient_key)
    if not communique.per_recipient:
        group = plan.group(communique.to[0]) if communique.to else None
    try:
        rendered = render(plan, communique, group, recipient, message_id=record.message_id)
    except RenderError as error:
        story.message_note = f"the message cannot be rendered from the plan now: {error.message}"
        return
    # The Date header is stamped when a message goes out and is not kept: say when it went out instead.
    story.headers = [(name, f"{record.sent_at or '(not sent)'} (when it went out; the header itself is not kept)"
                      if name == "Date" else value) for name, value in rendered.headers.items()]
    story.text = rendered.text
    if rendered.message is not None:
        story.raw = rendered.message.as_string()
    elif rendered.payload is not None:
        story.raw = rendered.payload.decode("utf-8", errors="replace")
    else:
        story.raw = rendered.text
    run = next((r for r in ledger.runs(plan.release.version) if r.id == record.run_id), None)
    if run is not None and run.plan_digest != plan.digest:
        story.message_note = ("rendered from the plan as it is now; the plan has changed since this was sent, "
                              "so the words may differ")
    elif record.channel == "email":
        story.message_note = "rendered again from the plan it was sent from (same Message-ID; Date as sent is not kept)"
