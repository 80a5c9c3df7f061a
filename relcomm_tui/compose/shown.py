"""Plan text as a person reads it: templated values rendered, never `{{ ... }}` source.

A screen or command that quotes a plan value written as a template (a manual step's instructions,
a reminder's subject, a publish path) asks here. A value that cannot be rendered says so in words
(the checks report the cause); the template source is never shown in its place.
"""

from __future__ import annotations

from ..plan.model import Communique, Plan, Recipient, StakeholderGroup
from . import RenderError, _plan_source, _run, render_path, render_text, template_context


def _unrenderable(error: RenderError) -> str:
    return f"(cannot be rendered: {error.message}; see the checklist's findings)"


def person_of(plan: Plan, communique: Communique, recipient_key: str | None
              ) -> tuple[StakeholderGroup | None, Recipient | None]:
    """The member (and the group that reaches them) a delivery of `communique` is for."""
    if not recipient_key:
        return None, None
    key = recipient_key.strip().lower()
    for group, recipient in plan.audience(communique):
        if recipient.key == key:
            return group, recipient
    return None, None


def text_for(plan: Plan, communique: Communique, recipient_key: str | None = None) -> str:
    """The communique's text (a manual step's instructions) as rendered for this person."""
    group, recipient = person_of(plan, communique, recipient_key)
    if recipient is None and communique.per_recipient:
        people = plan.audience(communique)
        if not people:
            return "(nobody in its groups)"
        group, recipient = people[0]
    try:
        return render_text(plan, communique, group, recipient)[1].strip()
    except RenderError as error:
        return _unrenderable(error)


def subject_for(plan: Plan, communique: Communique, recipient: Recipient | None = None,
                group: StakeholderGroup | None = None) -> str:
    """The subject as rendered (for `recipient`, else for the first person it reaches)."""
    if not communique.spec.subject:
        return ""
    if recipient is None and communique.per_recipient:
        people = plan.audience(communique)
        if people:
            group, recipient = people[0]
    try:
        source = _plan_source(plan, communique, "subject", communique.spec.subject)
        return _run(source, template_context(plan, communique, group, recipient)).strip()
    except RenderError as error:
        return _unrenderable(error)


def path_for(plan: Plan, communique: Communique) -> str:
    """Where a publish communique writes, as rendered (`releases/4.2.0.html`)."""
    if not communique.spec.path:
        return "(no path)"
    try:
        return render_path(plan, communique)
    except RenderError as error:
        return _unrenderable(error)
