"""Validation: every problem in a plan as a Finding (checks/findings.py) with a stable id.

Every communique is rendered for every recipient of its audience, and each distinct problem
is reported once with how many recipients it affects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from email_validator import EmailNotValidError, validate_email

from ..common.net import is_loopback
from ..compose import RenderError, TextRenderer, render
from ..compose.mime import header_injection, header_problem, header_too_long
from ..compose.notes import notes_section
from ..compose.pages import page_target
from ..plan import consent
from ..plan.locate import close_match, find_line, keypath_text, shown
from ..plan.model import Communique, Location, Plan, Recipient, StakeholderGroup
from ..plan.secrets import CommandNotAllowed, SecretError, describe, resolve, secret_uses
from .findings import RULES, Finding, sort_findings
from .gate import GateResult, run_gate

WEBHOOK_PRESETS = ("slack", "teams", "mattermost", "googlechat", "json", "text")
PAGER_PRESETS = ("pagerduty", "ntfy")
PLACEHOLDER = re.compile(r"\b(TODO|TBD|XXX|FIXME)\b|(lorem ipsum)|(\{\{|\{%|%\}|\}\})", re.IGNORECASE)
_UPPER_ONLY = ("TODO", "TBD", "XXX", "FIXME")
TOKEN_URL = re.compile(r"hooks\.slack\.com/services/|webhook\.office\.com|/api/webhooks/|chat\.googleapis\.com/.*[?&]key=",
                       re.IGNORECASE)
TOKEN_PARAMS = {"token", "access_token", "api_key", "apikey", "key", "secret", "sig", "signature", "password"}
SECRET_TIMEOUT = 5.0
MAX_PER_GROUP = 20  # findings per rule and group before one "and N more" finding


def run_checks(plan: Plan, *, gate: bool = True, secrets: bool = True) -> list[Finding]:
    """Every finding for the plan, errors first. `gate`/`secrets` off skip the slow external checks."""
    checker = _Checker(plan)
    checker.coverage()
    checker.sender()
    checker.transport()
    checker.notes()
    for index, communique in enumerate(plan.communiques):
        checker.communique_settings(index, communique)
        checker.rendering(index, communique)
    checker.members()
    if secrets:
        checker.secrets()
    if gate:
        checker.gate(run_gate(plan))
    return sort_findings(checker.findings)


# -- the checker -------------------------------------------------------------------------------


@dataclass
class _Problem:
    """One distinct rendering problem and how many recipients hit it."""

    finding_args: dict
    count: int = 0
    example: str = ""


@dataclass
class _Checker:
    plan: Plan
    findings: list[Finding] = field(default_factory=list)
    _valid: dict[str, str | None] = field(default_factory=dict)

    # -- helpers --

    def add(self, rule: str, message: str, hint: str, location: Location, *, group: str | None = None,
            communique: str | None = None) -> None:
        self.findings.append(Finding(rule, RULES[rule][0], message, hint, location, group, communique))

    def at(self, *parts: str | int) -> Location:
        return Location(self.plan.path, find_line(self.plan.source, parts), None, keypath_text(parts))

    def address_problem(self, address: str) -> str | None:
        """Why an address is invalid (email-validator, no DNS), or None. Cached: groups overlap."""
        if address in self._valid:
            return self._valid[address]
        local, at, domain = address.rpartition("@")
        if at and _PLAIN_LOCAL.match(local) and len(local) <= 64 and len(address) <= 254:
            # A plain ASCII local part is valid as it is; only the domain needs email-validator,
            # once per domain (10,000 customers share a few thousand domains).
            key = "x@" + domain
            problem = self._valid[key] if key in self._valid else _validate(key)
            self._valid[key] = problem
        else:
            problem = _validate(address)
        self._valid[address] = problem
        return problem

    # -- coverage: who is told --

    def coverage(self) -> None:
        plan = self.plan
        known = [g.id for g in plan.groups]
        for index, communique in enumerate(plan.communiques):
            for group_id in communique.to:
                group = plan.group(group_id)
                where = self.at("communiques", index, "to")
                if group is None:
                    close = close_match(group_id, known, cutoff=0.5)
                    hint = (f"did you mean {close!r}?" if close else "") + f" known groups: {', '.join(known)}"
                    self.add("group-unknown", f"communique {communique.id} goes to {shown(group_id)}, which is no stakeholder group",
                             hint.strip(), where, communique=communique.id)
                elif not group.members:
                    self.add("group-empty", f"communique {communique.id} goes to {group_id}, which has no members",
                             "add members to the group, or remove it from `to`", where,
                             group=group_id, communique=communique.id)
            if communique.spec.reminder_for and plan.communique(communique.spec.reminder_for) is None:
                ids = [c.id for c in plan.communiques]
                close = close_match(communique.spec.reminder_for, ids)
                self.add("reminder-unknown", f"communique {communique.id} is a reminder for "
                         f"{shown(communique.spec.reminder_for)}, which is no communique",
                         f"did you mean {close!r}?" if close else "name the id of the communique it follows up",
                         self.at("communiques", index, "reminder_for"), communique=communique.id)
        for group in plan.groups:
            if plan.communiques_for(group.id):
                continue
            if group.required:
                self.add("group-unreached", f"required group {group.id} ({group.name}) is reached by no communique",
                         f'add "{group.id}" to the `to` of a communique, or write one for it',
                         group.location, group=group.id)
            else:
                self.add("group-unused", f"group {group.id} ({group.name}) is reached by no communique",
                         "reach it with a communique, or remove it from the plan", group.location, group=group.id)

    # -- sender, transport, notes --

    def sender(self) -> None:
        sender = self.plan.sender
        for key, value in (("from", sender.from_), ("reply_to", sender.reply_to),
                           ("receipts_to", sender.receipts_to), ("test_to", sender.test_to)):
            if value is not None:
                self.check_sender_address(value, f"sender {key}", self.at("sender", key))
        # Values relcomm puts into headers of every message (List-Id, X-Relcomm-Release).
        release = self.plan.release
        if sender.list_id is not None:
            self.header_value(sender.list_id, "sender list_id", self.at("sender", "list_id"))
            self.header_value(release.name, "the release name (in List-Id)", self.at("release", "name"))
        self.header_value(release.version, "the release version (in X-Relcomm-Release)", self.at("release", "version"))

    def header_value(self, value: str, what: str, where: Location, communique: str | None = None) -> bool:
        """Report a value that cannot go into a header as it is; True when it was reported."""
        unsafe = header_injection(value)
        if unsafe:
            self.add("header-injection", f"{what} contains {unsafe}",
                     "write it on one line, without control characters or encoded line breaks", where,
                     communique=communique)
            return True
        too_long = header_too_long(value)
        if too_long:
            self.add("header-invalid", f"{what} is too long for a header: {too_long}",
                     "shorten it; a header line holds at most 998 characters", where, communique=communique)
        return bool(too_long)

    def check_sender_address(self, value: str, what: str, where: Location, communique: str | None = None) -> None:
        if self.header_value(value, what, where, communique):
            return
        name, address = parseaddr(value)
        problem = self.address_problem(address) if address else "there is no address in it"
        if problem:
            self.add("sender-address-invalid", f"{what} {value!r} is not a valid address: {problem}",
                     'write "Name <user@example.com>" or "user@example.com"', where, communique=communique)

    def transport(self) -> None:
        smtp = self.plan.smtp
        if smtp.security == "none" and not is_loopback(smtp.host) and self._uses("email"):
            self.add("smtp-insecure", f'SMTP security "none" to {smtp.host}: mail and password would cross the network in clear',
                     'use security = "starttls" (port 587) or "tls" (port 465); "none" is only for 127.0.0.1',
                     self.at("transport", "smtp", "security"))

    def _uses(self, channel: str) -> bool:
        return any(c.channel == channel for c in self.plan.communiques)

    def notes(self) -> None:
        release = self.plan.release
        if release.notes_file is None:
            return
        section = notes_section(self.plan.file(release.notes_file), release.version)
        where = self.at("release", "notes")
        if section.found:
            return
        if "no section" in section.problem:
            self.add("notes-section-missing", f"the release notes have no section for {release.version}",
                     f"add a heading such as `## {release.version} - {release.date or 'YYYY-MM-DD'}` to "
                     f"{release.notes_file.name}; templates get an empty `notes` until then",
                     Location(release.notes_file, None, None, "release.notes"))
        else:
            self.add("notes-missing", section.problem, "fix `notes` under [release]; paths are relative to the plan",
                     where)

    # -- one communique's settings --

    def communique_settings(self, index: int, communique: Communique) -> None:
        spec, cid, channel = communique.spec, communique.id, communique.channel
        at = lambda key: self.at("communiques", index, key)  # noqa: E731
        if channel in ("email", "publish") and not (spec.subject or "").strip():
            self.add("subject-missing", f"{channel} communique {cid} has no subject",
                     'add subject = "{{ release.name }} {{ release.version }} ..."', communique.location, communique=cid)
        has_body = communique.template_file is not None or spec.body is not None
        if channel == "manual":
            if not (has_body or spec.instructions):
                self.add("body-missing", f"manual communique {cid} says nothing to do",
                         'add instructions = "..." (or a template/body)', communique.location, communique=cid)
        elif not has_body and not (channel in ("webhook", "pager") and spec.subject):
            self.add("body-missing", f"{channel} communique {cid} has no template or body",
                     'add template = "templates/....md.j2" or body = """..."""', communique.location, communique=cid)
        if channel in ("webhook", "pager"):
            presets = WEBHOOK_PRESETS if channel == "webhook" else PAGER_PRESETS
            if spec.preset is not None and spec.preset not in presets:
                close = close_match(spec.preset.lower(), presets)
                self.add("preset-unknown", f"{channel} preset {shown(spec.preset)} is unknown",
                         (f"did you mean {close!r}? " if close else "") + f"known: {', '.join(presets)}",
                         at("preset"), communique=cid)
            if spec.url is None:
                self.add("channel-setting-missing", f"{channel} communique {cid} has no url",
                         'add url = { env = "RELCOMM_CHAT_WEBHOOK" } (or a literal https:// URL)',
                         communique.location, communique=cid)
            elif isinstance(spec.url, str):
                self.check_url(spec.url, cid, at("url"))
            if channel == "pager" and spec.preset == "pagerduty" and spec.routing_key is None:
                self.add("channel-setting-missing", f"pagerduty communique {cid} has no routing_key",
                         'add routing_key = { env = "PAGERDUTY_ROUTING_KEY" }', communique.location, communique=cid)
        if channel == "publish":
            if not spec.path and spec.put_url is None:
                self.add("channel-setting-missing", f"publish communique {cid} has no path",
                         'add path = "/srv/www/releases/{{ release.version }}.html" (or put_url)',
                         communique.location, communique=cid)
            if isinstance(spec.put_url, str):
                self.check_url(spec.put_url, cid, at("put_url"))
        if spec.reply_to is not None:
            self.check_sender_address(spec.reply_to, f"reply_to of {cid}", at("reply_to"), communique=cid)
        for name, value in spec.headers.items():
            unsafe = header_problem(value) if isinstance(value, str) else ""
            if unsafe:
                self.add("header-injection", f"header {name} of {cid} contains {unsafe}",
                         "write header values on one line, without control characters", at("headers"), communique=cid)

    def check_url(self, url: str, cid: str, where: Location, *, shown: str | None = None) -> None:
        """`shown` replaces the URL in messages when it came from a secret (its value is never printed)."""
        text = shown if shown is not None else repr(url)
        try:
            parts = urlsplit(url.strip())
            host = parts.hostname
        except ValueError:
            parts, host = None, None
        if parts is None or parts.scheme not in ("http", "https") or not host:
            self.add("url-invalid", f"the URL of {cid} ({text}) is not an http(s) URL with a host",
                     "write a full URL such as https://hooks.example.com/...", where, communique=cid)
            return
        if shown is None and (TOKEN_URL.search(url) or any(k.lower() in TOKEN_PARAMS for k, _ in parse_qsl(parts.query))):
            self.add("url-literal-token", f"the URL of {cid} looks like it contains a token",
                     'keep webhook URLs in a secret reference: url = { env = "RELCOMM_CHAT_WEBHOOK" }',
                     where, communique=cid)

    # -- rendering, for every recipient --

    def rendering(self, index: int, communique: Communique) -> None:
        plan = self.plan
        problems: dict[tuple, _Problem] = {}
        cid = communique.id

        def note(rule: str, message: str, hint: str, where: Location, who: str, group: str | None = None) -> None:
            key = (rule, message, str(where.file), where.line)
            problem = problems.get(key)
            if problem is None:
                problem = problems[key] = _Problem(dict(rule=rule, message=message, hint=hint, location=where,
                                                        group=group, communique=cid), example=who)
            problem.count += 1

        def from_error(error: RenderError, who: str, group: str | None) -> str:
            if error.kind in ("address", "recipient"):
                return "address"  # the address rules report it, with the member's or sender's line
            rule = {"syntax": "template-syntax", "undefined": "template-undefined", "template-missing": "template-missing",
                    "header-injection": "header-injection", "header-invalid": "header-invalid",
                    "limit": "template-limit", "path": "path-unsafe"}.get(error.kind, "template-error")
            file = Path(error.file) if error.file else plan.path
            where = Location(file, error.line, None, keypath_text(("communiques", index)))
            note(rule, f"{cid}: {error.message}", error.hint, where, who, group)
            return rule

        if communique.per_recipient:
            targets: list[tuple[StakeholderGroup | None, Recipient | None]] = list(plan.audience(communique))
        else:
            targets = [(None, None)]
        if not targets:
            return  # group-empty / group-unknown already say why
        full_done = False
        renderer = TextRenderer(plan, communique)
        for group, recipient in targets:
            who = (recipient.email or recipient.name) if recipient is not None else ""
            gid = group.id if group is not None else None
            try:
                subject, text = renderer.render_text(group, recipient)
            except RenderError as error:
                if from_error(error, who, gid) in ("template-syntax", "template-missing", "template-limit"):
                    break  # the same for everyone (a template over a limit is not rendered 10,000 times)
                continue
            unsafe = header_injection(subject) if communique.channel == "email" else ""
            if unsafe:
                note("header-injection", f"{cid}: header injection: the rendered subject contains {unsafe}",
                     "remove line breaks and control characters from the subject template and from the data it uses",
                     self.at("communiques", index, "subject"), who, gid)
                continue
            for part, value in (("subject", subject), ("text", text)):
                found = _placeholder(value, json_like=communique.channel in ("webhook", "pager"))
                if found:
                    note("placeholder-left", f"{cid}: the rendered {part} still contains {found!r}",
                         "finish the text: replace the placeholder in the template (or the data)",
                         self.at("communiques", index, "subject") if part == "subject" else _body_location(plan, communique, index, value, found),
                         who, gid)
            if not full_done and (recipient is None or recipient.email or communique.channel != "email"):
                # The whole message once (MIME, headers): its problems do not vary by recipient.
                try:
                    render(plan, communique, group, recipient)
                    full_done = True
                except RenderError as error:
                    full_done = from_error(error, who, gid) != "address"  # else try the next recipient
        if communique.channel == "publish" and communique.spec.path:
            try:
                page_target(plan, communique)  # renders the path and refuses one that leaves where it may go
            except RenderError as error:
                from_error(error, "", None)
        many = len(targets) > 1 or targets[0][1] is not None
        for problem in problems.values():
            args = problem.finding_args
            message = args["message"]
            if many and problem.example and args["rule"] not in ("template-missing", "template-syntax"):
                message += (f" (for {problem.count} recipients, e.g. {problem.example})" if problem.count > 1
                            else f" (for {problem.example})")
            self.add(args["rule"], message, args["hint"], args["location"], group=args["group"], communique=cid)

    # -- members --

    def members(self) -> None:
        plan = self.plan
        emailed: dict[str, str] = {}
        for communique in plan.communiques:
            if communique.channel == "email":
                for group_id in communique.to:
                    emailed.setdefault(group_id, communique.id)
        for group in plan.groups:
            counts: dict[str, int] = {}
            seen: dict[str, Recipient] = {}
            for member in group.members:
                if member.email and member.email.strip().lower() in seen:
                    first = seen[member.email.strip().lower()]
                    self._capped(counts, "address-duplicate", group,
                                 f"{member.email} is listed twice in group {group.id}"
                                 + (f" (also line {first.location.line})" if first.location.line else ""),
                                 "remove one of them; each person is sent one message anyway", member.location)
                elif member.email:
                    seen[member.email.strip().lower()] = member
                for value, what in ((member.name, "name"), (member.email or "", "address")):
                    unsafe = header_injection(value)
                    if unsafe:
                        self._capped(counts, "header-injection", group,
                                     f"the {what} of a member of {group.id} contains {unsafe} ({value[:40]!r})",
                                     "a name or address must be on one line, without control characters; "
                                     "fix the members list", member.location)
                    elif what == "name" and group.id in emailed and header_too_long(value):
                        self._capped(counts, "header-invalid", group,
                                     f"the name of a member of {group.id} is too long for a header: "
                                     f"{header_too_long(value)}", "shorten it in the members list", member.location)
                if group.id not in emailed:
                    continue
                if not member.email:
                    self._capped(counts, "address-missing", group,
                                 f"{member.name or 'a member'} in group {group.id} has no email address, "
                                 f"but communique {emailed[group.id]} goes by email",
                                 "add the address, or reach this group by another channel", member.location)
                    continue
                problem = self.address_problem(member.email)
                if problem:
                    self._capped(counts, "address-invalid", group,
                                 f"{member.email!r} in group {group.id} is not a valid address: {problem}",
                                 "fix the address in the members list", member.location)
            for rule, count in counts.items():
                if count > MAX_PER_GROUP:
                    self.add(rule, f"... and {count - MAX_PER_GROUP} more like this in group {group.id}",
                             "fix the ones above, then validate again", group.location, group=group.id)

    def _capped(self, counts: dict[str, int], rule: str, group: StakeholderGroup, message: str, hint: str,
                where: Location) -> None:
        counts[rule] = counts.get(rule, 0) + 1
        if counts[rule] <= MAX_PER_GROUP:
            self.add(rule, message, hint, where, group=group.id)

    # -- secrets --

    def secrets(self) -> None:
        resolved: dict[str, str | Exception] = {}
        for use in secret_uses(self.plan):
            ref, where, cid, what = use.ref, self.at(*use.parts), use.communique, use.what
            key = describe(ref)
            if key not in resolved:
                try:
                    resolved[key] = resolve(ref, timeout=SECRET_TIMEOUT)  # type: ignore[arg-type]
                except SecretError as error:
                    resolved[key] = error
            value = resolved[key]
            if isinstance(value, CommandNotAllowed):
                self.add("secret-not-allowed", f"the {what} ({key}) was not resolved: {value.message}",
                         value.hint, where, communique=cid)
            elif isinstance(value, SecretError):
                self.add("secret-unresolved", f"the {what} ({key}) cannot be resolved: {value.message}",
                         value.hint, where, communique=cid)
            elif isinstance(value, str) and what.startswith(("url of", "put_url of")):
                # Check the URL it holds, without ever printing it.
                self.check_url(value, cid or "", where, shown=f"from {key}")

    # -- gate --

    def gate(self, result: GateResult) -> None:
        where = self.at("release", "gate")
        if not result.configured:
            self.add("gate-none", "no release gate: nothing declares the release a success",
                     'add gate = "scripts/release-ok.sh" under [release]: a command that exits 0 once the release succeeded',
                     self.plan.release.location)
            return
        if result.ok:
            return
        if result.not_allowed:
            self.add("gate-not-allowed", "the release gate was not run: this plan's commands are not allowed on this host yet",
                     consent.ALLOW_HINT, where)
            return
        last = (result.output.strip().splitlines() or [""])[-1][:200]
        if result.missing:
            self.add("gate-not-found", f"the release gate cannot run: {last or self.plan.release.gate}",
                     "check the command; it runs with sh from the plan's folder (is the script executable?)", where)
        elif result.timed_out:
            self.add("gate-failed", f"the release gate did not finish within {self.plan.release.gate_timeout} s",
                     "raise gate_timeout under [release], or make the gate faster", where)
        else:
            self.add("gate-failed", f"the release gate failed (exit {result.returncode})" + (f": {last}" if last else ""),
                     "the release is not declared a success yet; run the gate by hand to see why", where)


_MARKERS = ("TODO", "TBD", "XXX", "FIXME", "{{", "{%", "%}", "}}")


# RFC 5322 dot-atom of ASCII atext: what email-validator accepts as an unquoted local part.
_PLAIN_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


def _validate(address: str) -> str | None:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        return str(error)
    return None


def _placeholder(text: str, *, json_like: bool = False) -> str:
    # Most texts hold none of the markers: plain substring tests skip the regex for them.
    if not any(marker in text for marker in _MARKERS) and "lorem" not in text.lower():
        return ""
    for match in PLACEHOLDER.finditer(text):
        word = match.group(0)
        if match.group(1) and word not in _UPPER_ONLY:
            continue  # "todo" in running text is fine; the marker is written in capitals
        if json_like and word in ("}}", "%}"):
            continue  # nested JSON objects end in "}}"; an unrendered tag would show "{{" or "{%" too
        return word
    return ""


def _body_location(plan: Plan, communique: Communique, index: int, text: str, found: str) -> Location:
    """Where a placeholder is: the template file's line that holds it, when it is literally there."""
    if communique.template_file is not None:
        snapshot = plan.file(communique.template_file)
        source = (snapshot.text if snapshot is not None else None) or ""
        for number, line in enumerate(source.splitlines(), start=1):
            if found in line:
                return Location(communique.template_file, number, None, keypath_text(("communiques", index)))
        return Location(communique.template_file, None, None, keypath_text(("communiques", index)))
    key = "body" if communique.spec.body is not None else "instructions"
    return Location(plan.path, find_line(plan.source, ("communiques", index, key)), None,
                    keypath_text(("communiques", index, key)))
