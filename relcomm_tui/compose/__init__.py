"""Compose: render communiques (Jinja2, sandboxed, strict) and build the messages that are sent.

`render(plan, communique, group, recipient)` gives one communique exactly as it will be sent:
the subject and Markdown text from the templates, the HTML made from the Markdown, and for email
the complete MIME message. Every problem a user can cause is a `RenderError` with file, line, hint.

Rules that keep what was validated what is sent:
- templates and notes come from the plan's snapshot (read once at load), never from the disk;
- every render gets a fresh context; the caches here hold only immutable values (frozen Sources,
  tuples, line numbers, read-only Namespaces), so no render can leave anything for the next one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parseaddr
from types import MappingProxyType
from typing import Any, Mapping

from ..plan.locate import find_line
from ..plan.model import Communique, Plan, Recipient, StakeholderGroup
from . import mime
from .markdown import html_document
from .notes import notes_section
from .templates import Namespace, Source, TemplateProblem, render_source


class RenderError(Exception):
    """A template that cannot be rendered: syntax error, undefined variable, bad header value."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, hint: str = "",
                 kind: str = "error") -> None:
        super().__init__(message)
        self.message, self.file, self.line, self.hint = message, file, line, hint
        # "syntax", "undefined", "template-missing", "security", "error", "header-injection",
        # "header-invalid", "address" (sender addresses), "recipient" (the member's name or address),
        # "limit" (a template over a render limit), "path" (a publish path that may not be written):
        # the checks map it to a rule id
        self.kind = kind

    def __str__(self) -> str:
        where = f"{self.file}{f':{self.line}' if self.line else ''}: " if self.file else ""
        return f"{where}{self.message}"


@dataclass(frozen=True)
class Rendered:
    """One communique rendered for one recipient, exactly as it will be sent."""

    communique_id: str
    channel: str
    subject: str
    text: str                      # Markdown source after templating (the text/plain part)
    html: str | None               # HTML alternative (email, publish)
    headers: dict[str, str] = field(default_factory=dict)  # the headers as sent (email)
    message: EmailMessage | None = None  # the full MIME message (email only)
    payload: bytes | None = None   # body posted (webhook/pager) or file written (publish)
    invitation: tuple[str, ...] = ()  # the calendar invitation it carries, as the preview shows it


__all__ = ["Rendered", "RenderError", "TextRenderer", "render", "render_text", "render_path", "template_context"]


def render(plan: Plan, communique: Communique, group: StakeholderGroup | None, recipient: Recipient | None,
           *, message_id: str | None = None) -> Rendered:
    """Render one communique for one recipient. Raises RenderError."""
    stamp = None
    if communique.spec.invitation is not None or communique.id in plan.invitations:
        # only then: icalendar is slow to import (and may be on the UI thread); and compose.invited imports compose
        from . import invited

        stamp = invited.stamp_for(plan, communique)
    if stamp is not None and stamp.method == "CANCEL":
        return invited.cancel(plan, communique, recipient, stamp, message_id)
    # An update's deliveries (`presentation#2`) say what the plan's communique says.
    source = (plan.communique(stamp.parent) or communique) if stamp is not None and stamp.parent else communique
    context = template_context(plan, source, group, recipient)
    subject, text = _render_parts(plan, source, context)
    channel = communique.channel
    if channel == "email":
        if stamp is not None:  # `invited` was imported above
            return invited.with_invitation(plan, communique, source, recipient, subject, text, message_id, stamp,
                                           context)
        return _email(plan, communique, recipient, subject, text, message_id)
    if channel == "publish":
        page = html_document(text, subject or f"{plan.release.name} {plan.release.version}")
        return Rendered(communique.id, channel, subject, text, page, payload=page.encode("utf-8"))
    if channel in ("webhook", "pager"):
        return Rendered(communique.id, channel, subject, text, None, payload=text.encode("utf-8"))
    return Rendered(communique.id, channel, subject, text, None)


def render_text(plan: Plan, communique: Communique, group: StakeholderGroup | None,
                recipient: Recipient | None) -> tuple[str, str]:
    """Only the templated subject and text (no Markdown -> HTML, no MIME)."""
    return _render_parts(plan, communique, template_context(plan, communique, group, recipient))


class TextRenderer:
    """Subject and text of one communique for many recipients: sources and shared context prepared once.

    What the checks use to render every recipient quickly; it gives exactly what `render` gives
    (the same snapshot, a fresh context per recipient). `render_text` raises RenderError (also for
    a missing template).
    """

    def __init__(self, plan: Plan, communique: Communique) -> None:
        self.plan, self.communique = plan, communique
        self._base: Mapping[str, Any] = MappingProxyType(_base_context(plan, communique))
        spec = communique.spec
        self._subject = _plan_source(plan, communique, "subject", spec.subject) if spec.subject else None
        self._body: Source | RenderError
        try:
            self._body = _body_source(plan, communique)
        except RenderError as error:
            self._body = error

    def render_text(self, group: StakeholderGroup | None, recipient: Recipient | None) -> tuple[str, str]:
        context = dict(self._base)
        _add_people(context, group, recipient)
        subject = ""
        if self._subject is not None:
            subject = _run(self._subject, context).strip()
            context["communique"] = _communique_namespace(self.communique, subject)
        if isinstance(self._body, RenderError):
            raise self._body
        return subject, _run(self._body, context)


def render_path(plan: Plan, communique: Communique) -> str:
    """A publish communique's `path`, templated (e.g. /srv/www/releases/{{ release.version }}.html)."""
    if not communique.spec.path:
        raise RenderError(f"communique {communique.id} has no `path`", file=str(plan.path),
                          line=communique.location.line, hint="add path = \"...\"", kind="error")
    source = _plan_source(plan, communique, "path", communique.spec.path)
    return _run(source, template_context(plan, communique, None, None)).strip()


def template_context(plan: Plan, communique: Communique, group: StakeholderGroup | None,
                     recipient: Recipient | None) -> dict[str, Any]:
    """What templates see. `group`/`recipient` exist only when given (posts to a channel have neither)."""
    context = dict(_base_context(plan, communique))
    _add_people(context, group, recipient)
    return context


def _add_people(context: dict[str, Any], group: StakeholderGroup | None, recipient: Recipient | None) -> None:
    if group is not None:
        context["group"] = Namespace("group", {"id": group.id, "name": group.name, "description": group.description,
                                               "required": group.required}, group.name)
    if recipient is not None:
        values: dict[str, Any] = dict(recipient.fields)
        values.update(name=recipient.name, email=recipient.email, phone=recipient.phone, role=recipient.role)
        context["recipient"] = Namespace("recipient", values, lambda: recipient.display)


# -- internals -----------------------------------------------------------------------------------


def _base_context(plan: Plan, communique: Communique) -> dict[str, Any]:
    """A new context: read-only Namespaces and tuples, nothing a template could change for the next render."""
    notes = notes_section(plan.file(plan.release.notes_file), plan.release.version)
    release = plan.release
    sender_name, sender_address = parseaddr(plan.sender.from_)
    return {
        "release": Namespace("release", {"name": release.name, "version": release.version, "date": release.date},
                             f"{release.name} {release.version}"),
        "sender": Namespace("sender", {"name": sender_name, "address": sender_address, "from": plan.sender.from_,
                                       "reply_to": plan.sender.reply_to}, plan.sender.from_),
        "communique": _communique_namespace(communique, ""),
        "groups": tuple(Namespace("group", {"id": g.id, "name": g.name, "description": g.description,
                                            "required": g.required}, g.name)
                        for g in (plan.group(gid) for gid in communique.to) if g is not None),
        "notes": notes.text,
        **_invitation_value(communique),
    }


def _invitation_value(communique: Communique) -> dict[str, Any]:
    """`invitation` in templates, for a communique that carries one: when, where, how to join."""
    if communique.spec.invitation is None:
        return {}
    from .invited import invitation_namespace  # only then, as in render(): icalendar is slow to import

    return {"invitation": invitation_namespace(communique)}


def _communique_namespace(communique: Communique, subject: str) -> Namespace:
    return Namespace("communique", {"id": communique.id, "channel": communique.channel, "subject": subject,
                                    "description": communique.spec.description}, communique.id)


def _render_parts(plan: Plan, communique: Communique, context: dict[str, Any]) -> tuple[str, str]:
    spec = communique.spec
    subject = ""
    if spec.subject:
        subject = _run(_plan_source(plan, communique, "subject", spec.subject), context).strip()
        # The body sees the subject as rendered (a template printing the raw one would leak "{{").
        context["communique"] = _communique_namespace(communique, subject)
    return subject, _run(_body_source(plan, communique), context)


def _run(source: Source, context: dict[str, Any]) -> str:
    try:
        return render_source(source, context)
    except TemplateProblem as problem:
        raise RenderError(problem.message, file=problem.file, line=problem.line, hint=problem.hint,
                          kind=problem.kind) from None


_TEMPLATE_PROBLEMS = {
    # snapshot problem -> (message, hint, point at the plan's `template` key rather than the file)
    "missing": ("template file not found: {path}", "paths in a plan are relative to the plan file's folder", True),
    "folder": ("template is a folder, not a file: {path}", "name the file inside it", True),
    "special": ("template is not a regular file (a FIFO or a device): {path}", "name a text file", True),
    "too-large": ("template file is too large ({detail}): {path}", "a template is a text file of a few pages", True),
    "moved": ("template changed while it was read ({detail}): {path}",
              "check who else writes to the plan's folder, then load the plan again", True),
    "encoding": ("template file is not UTF-8 text (at {detail})", "save the file as UTF-8", False),
    "unreadable": ("cannot read template file {path}: {detail}", "check its permissions", False),
}


def _body_source(plan: Plan, communique: Communique) -> Source:
    spec = communique.spec
    if communique.template_file is not None:
        path = communique.template_file
        snapshot = plan.file(path)
        if snapshot is not None and snapshot.text is not None:
            return Source(snapshot.text, str(path))
        problem, detail = (snapshot.problem, snapshot.detail) if snapshot is not None else ("missing", "")
        message, hint, at_key = _TEMPLATE_PROBLEMS.get(problem, _TEMPLATE_PROBLEMS["unreadable"])
        if problem == "encoding":
            line, column, byte = detail.split(":")
            detail = f"line {line}, column {column}: byte {byte}"
        text = message.format(path=path, detail=detail)
        if at_key:
            raise RenderError(text, file=str(plan.path), line=_key_line(plan, communique, "template"), hint=hint,
                              kind="template-missing")
        raise RenderError(text, file=str(path), hint=hint, kind="template-missing")
    for key in ("body", "instructions"):
        value = getattr(spec, key, None)
        if value is not None:
            return _plan_source(plan, communique, key, value)
    return Source("", str(plan.path))


_LINES: dict[tuple, int] = {}


def _key_line(plan: Plan, communique: Communique, key: str) -> int | None:
    cache_key = (plan.digest, communique.id, key)
    if cache_key not in _LINES:
        if len(_LINES) > 1024:
            _LINES.clear()
        index = plan.communiques.index(communique)
        _LINES[cache_key] = find_line(plan.source, ("communiques", index, key))
    return _LINES[cache_key]


_SOURCES: dict[tuple, Source] = {}


def _plan_source(plan: Plan, communique: Communique, key: str, text: str) -> Source:
    """An inline template written in plan.toml; its line numbers count from the key's line."""
    # The path too: a copy of the plan in another folder has the same digest, and its errors must name its own file.
    cache_key = (plan.digest, str(plan.path), communique.id, key, text)
    cached = _SOURCES.get(cache_key)
    if cached is not None:
        return cached
    line = _key_line(plan, communique, key)
    offset, fixed = 0, None
    if line is not None:
        lines = plan.source.splitlines()
        written = lines[line - 1] if line <= len(lines) else ""
        value = written.split("=", 1)[1].lstrip() if "=" in written else ""
        if value.startswith(('"""', "'''")):
            offset = line - 1
            # TOML drops the newline right after an opening """: the text's line 1 is the next line.
            if value.rstrip() in ('"""', "'''"):
                offset += 1
        else:
            fixed = line  # a one-line string: "\n" escapes do not move it in the file
    source = Source(text, str(plan.path), line_offset=offset, fixed_line=fixed, label=f"`{key}` of {communique.id}")
    if len(_SOURCES) > 512:
        _SOURCES.clear()
    _SOURCES[cache_key] = source
    return source


_FIXED: dict[tuple, tuple[tuple, str]] = {}


def _fixed_headers(plan: Plan, communique: Communique) -> tuple[tuple, str]:
    """Headers shared by every message of the communique, and the sender's domain. Raises HeaderProblem."""
    key = (plan.digest, communique.id)
    cached = _FIXED.get(key)
    if cached is not None:
        return cached
    spec = communique.spec
    from_ = mime.mailbox("sender `from`", plan.sender.from_)
    reply_text = spec.reply_to or plan.sender.reply_to
    reply_to = mime.mailbox("reply_to", reply_text) if reply_text else None
    wants_receipt = spec.read_receipt if spec.read_receipt is not None else plan.receipts.read_receipts
    notify = None
    if wants_receipt:
        notify = mime.mailbox("receipts_to", plan.sender.receipts_to or plan.sender.reply_to or plan.sender.from_)
    fixed = mime.fixed_headers(
        from_=from_, reply_to=reply_to, list_id=plan.sender.list_id, list_name=plan.release.name,
        communique_id=communique.id, release_version=plan.release.version, notification_to=notify,
        extra_headers={name: value for name, value in spec.headers.items() if isinstance(value, str)},
    )
    if len(_FIXED) > 256:
        _FIXED.clear()
    _FIXED[key] = (tuple(fixed), from_.domain)
    return _FIXED[key]


def _email(plan: Plan, communique: Communique, recipient: Recipient | None, subject: str, text: str,
           message_id: str | None) -> Rendered:
    try:
        if recipient is None or not recipient.email:
            where = recipient.location if recipient is not None else communique.location
            raise RenderError(f"{recipient.display if recipient else 'nobody'} has no email address",
                              file=str(where.file), line=where.line,
                              hint="add an email for this member, or reach them by another channel", kind="recipient")
        try:
            to = mime.address("recipient", recipient.name, recipient.email)
        except mime.HeaderProblem as problem:
            # The member's own data: point at its line in the members list.
            raise RenderError(problem.message, file=str(recipient.location.file), line=recipient.location.line,
                              hint=problem.hint, kind="recipient") from None
        fixed, domain = _fixed_headers(plan, communique)
        html_text = mime.html_for(subject, text)
        message = mime.build_email(subject=subject, text=text, html=html_text, to=to, message_id=message_id,
                                   domain=domain, fixed=fixed)
    except mime.HeaderProblem as problem:
        file, line = plan.path, communique.location.line
        if problem.kind in ("injection", "header") and "subject" in problem.message:
            line = _key_line(plan, communique, "subject") or line
        kind = {"injection": "header-injection", "header": "header-invalid"}.get(problem.kind, "address")
        raise RenderError(problem.message, file=str(file), line=line, hint=problem.hint, kind=kind) from None
    except ValueError as error:  # the stdlib refuses something we did not foresee: still a value, not a crash
        raise RenderError(f"cannot build the email: {error}", file=str(plan.path), line=communique.location.line,
                          hint="check the names and addresses of this communique", kind="address") from None
    return Rendered(communique.id, "email", subject, text, html_text, headers=mime.headers_as_sent(message),
                    message=message)
