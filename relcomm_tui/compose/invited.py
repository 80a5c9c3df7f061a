"""An email communique's calendar invitation, added to the message `compose.render` builds.

Which invitation a message carries is its `Stamp` (UID, SEQUENCE, method): a send gets the
ledger's (plan.invitations, set by invitations.send), the preview and test sends a stand-in
(`PREVIEW`). An update (`presentation#2`) is the plan's communique again with "Updated: " and a
line saying what changed; a cancel is built from the event as the ledger recorded it, so it
needs no template (the communique may be gone from the plan).
"""

from __future__ import annotations

import dataclasses
import secrets
from email.utils import parseaddr
from typing import Any

from ..plan.invitation import describe, duration_text, when_of
from ..plan.locate import find_line
from ..plan.model import Communique, Plan, Recipient
from . import RenderError, _email, _plan_source, _run, template_context  # compose imports this module only lazily
from .invitation import PREVIEW, Event, Stamp, attach, calendar_text, cancel_text, description_for, summary_lines, update_note
from .templates import Namespace, Source, TemplateProblem, render_source


def stamp_for(plan: Plan, communique: Communique) -> Stamp | None:
    """The invitation a message of this communique carries, or None (no invitation)."""
    stamp = plan.invitations.get(communique.id)
    if isinstance(stamp, Stamp):
        return stamp
    if communique.channel == "email" and communique.spec.invitation is not None:
        return PREVIEW
    return None


def invitation_namespace(communique: Communique) -> Namespace:
    """`invitation` for templates: start ("Fri 4 Dec 2026 16:00-16:45 Europe/Berlin (15:00 UTC)"),
    duration, time_zone, location, url, title (as written)."""
    table = communique.spec.invitation
    assert table is not None
    when, _ = when_of(table)
    values = {
        "title": table.title or "", "location": table.location, "url": table.url,
        "time_zone": when.zone if when else (table.time_zone or ""),
        "start": describe(when) if when else "", "duration": duration_text(when.duration) if when else "",
    }
    return Namespace("invitation", values, values["start"])


def event_for(plan: Plan, communique: Communique, subject: str, context: dict[str, Any] | None) -> Event:
    """The event a communique invites to, its title rendered (for a recipient when `context` has one).
    Raises RenderError (kind "invitation": the invitation rules report it) when the plan's time is unusable."""
    table = communique.spec.invitation
    if table is None:
        raise RenderError(f"communique {communique.id} has no invitation", file=str(plan.path), kind="invitation")
    when, problems = when_of(table)
    if when is None:
        first = problems[0]
        raise RenderError(f"{communique.id}: {first.message}", file=str(plan.path), line=communique.location.line,
                          hint=first.hint, kind="invitation")
    title = _render_title(plan, communique, context) if table.title is not None else subject
    return Event(title or communique.id, when, table.location, table.url)


def _render_title(plan: Plan, communique: Communique, context: dict[str, Any] | None) -> str:
    """`invitation.title` rendered (errors point at its line in plan.toml). Raises RenderError."""
    table = communique.spec.invitation
    assert table is not None and table.title is not None
    index = plan.communiques.index(communique) if communique in plan.communiques else -1
    line = find_line(plan.source, ("communiques", index, "invitation", "title")) if index >= 0 else None
    source = Source(table.title, str(plan.path), fixed_line=line, label=f"`invitation.title` of {communique.id}")
    try:
        return render_source(source, dict(context or {})).strip()
    except TemplateProblem as problem:
        raise RenderError(problem.message, file=problem.file, line=problem.line, hint=problem.hint,
                          kind=problem.kind) from None


def plan_event(plan: Plan, communique: Communique) -> Event | None:
    """The event for the ledger's record, for nobody in particular: None when the plan's time is
    unusable. A title that names a recipient gives way to the subject, then to release and id (a
    cancel must not carry one person's name, nor a template)."""
    table = communique.spec.invitation
    when, _ = when_of(table) if table is not None else (None, [])
    if table is None or when is None:
        return None
    context = template_context(plan, communique, None, None)
    title = ""
    try:
        if table.title is not None:
            title = _render_title(plan, communique, context)
    except RenderError:
        title = ""
    if not title and communique.spec.subject:
        try:
            title = _run(_plan_source(plan, communique, "subject", communique.spec.subject), context).strip()
        except RenderError:
            title = ""
    return Event(title or f"{plan.release.name} {plan.release.version}: {communique.id}", when, table.location,
                 table.url)


def with_invitation(plan: Plan, communique: Communique, source: Communique, recipient: Recipient | None, subject: str,
                    text: str, message_id: str | None, stamp: Stamp, context: dict[str, Any]):
    """The communique's email with its invitation (an update's with "Updated: " and what changed)."""

    event = event_for(plan, source, subject, context)
    if stamp.parent:
        subject = f"Updated: {subject}"
        text = f"{update_note(event, stamp.previous)}\n\n{text}"
    return _finish(plan, communique, recipient, subject, text, message_id, stamp, event)


def cancel(plan: Plan, communique: Communique, recipient: Recipient | None, stamp: Stamp, message_id: str | None):
    """METHOD:CANCEL for one person, from the event as the ledger recorded it."""
    if stamp.event is None:
        raise RenderError(f"no record of the invitation {communique.id} to cancel", file=str(plan.path),
                          kind="invitation")
    event = stamp.event
    return _finish(plan, communique, recipient, f"Cancelled: {event.title}", cancel_text(event), message_id, stamp, event)


def _finish(plan: Plan, communique: Communique, recipient: Recipient | None, subject: str, text: str,
            message_id: str | None, stamp: Stamp, event: Event):
    rendered = _email(plan, communique, recipient, subject, text, message_id)
    assert rendered.message is not None and recipient is not None and recipient.email
    sent = stamp
    if stamp.preview:  # a test send lands in a real calendar: never under a UID a send could use
        domain = parseaddr(plan.sender.from_)[1].rpartition("@")[2] or "relcomm.invalid"
        sent = dataclasses.replace(stamp, uid=f"preview.{secrets.token_hex(8)}@{domain}")
    ics = calendar_text(event, sent, organizer=plan.sender.from_, attendee=(recipient.name, recipient.email),
                        description=description_for(text, event))
    attach(rendered.message, ics, sent.method)
    return dataclasses.replace(rendered, invitation=tuple(summary_lines(event, stamp)))
