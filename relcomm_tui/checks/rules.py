"""Validation: every problem in a plan as a Finding (checks/findings.py) with a stable id.

Every communique is rendered for every recipient of its audience, and each distinct problem
is reported once with how many recipients it affects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import parseaddr

from email_validator import EmailNotValidError, validate_email

from ..common.net import is_loopback
from ..compose.mime import header_injection, header_too_long
from ..compose.notes import notes_section
from ..plan import addresses, consent
from ..plan.locate import close_match, find_line, keypath_text, shown
from ..plan.model import Location, Plan, Recipient, StakeholderGroup
from ..plan.secrets import CommandNotAllowed, SecretError, describe, resolve, secret_uses
from .communiques import CommuniqueChecks
from .findings import RULES, Finding, sort_findings
from .gate import GateResult, run_gate
from .script import script_findings

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
        checker.invitation(index, communique)
        checker.rendering(index, communique)
    checker.members()
    checker.findings.extend(script_findings(plan))
    if secrets:
        checker.secrets()
    if gate:
        checker.gate(run_gate(plan))
    return sort_findings(checker.findings)


# -- the checker -------------------------------------------------------------------------------


@dataclass
class _Checker(CommuniqueChecks):
    plan: Plan
    findings: list[Finding] = field(default_factory=list)
    _valid: dict[str, str | None] = field(default_factory=dict)

    # -- helpers --

    def add(self, rule: str, message: str, hint: str, location: Location, *, group: str | None = None,
            communique: str | None = None) -> None:
        self.findings.append(Finding(rule, RULES[rule][0], message, hint, location, group, communique))

    def at(self, *parts: str | int) -> Location:
        return Location(self.plan.path, find_line(self.plan.source, parts), None, keypath_text(parts))

    def address_problem(self, address: str, *, allow_special: bool = False) -> str | None:
        """Why an address is invalid (email-validator, no DNS), or None. Cached: groups overlap."""
        if allow_special:
            local, _, domain = address.rpartition("@")
            # As below: a plain local part needs only its domain checked, once per domain.
            plain = _PLAIN_LOCAL.match(local) and len(local) <= 64 and len(address) <= 254
            key = "special:" + ("x@" + domain if plain else address)
            if key not in self._valid:
                self._valid[key] = addresses.address_problem(key[len("special:"):], allow_special=True)
            return self._valid[key]
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
        hint = 'write "Name <user@example.com>" or "user@example.com"'
        if address and addresses.special_suffix(address):
            if addresses.allows(self.plan.sender.allow_special_domains, address):
                problem = self.address_problem(address, allow_special=True)
                if not problem:
                    self.add("address-special-domain",
                             f"{what} {address} is at {addresses.domain_of(address)}, {self._special_words(address)}",
                             "make sure your mail servers deliver there", where, communique=communique)
            else:
                problem = addresses.special_problem(address)
                hint = addresses.SPECIAL_HINT.format(domain=addresses.domain_of(address)).replace(
                    " or to this group", "")
        else:
            problem = self.address_problem(address) if address else "there is no address in it"
        if problem:
            self.add("sender-address-invalid", f"{what} {value!r} is not a valid address: {problem}",
                     hint, where, communique=communique)

    def _special_words(self, address: str) -> str:
        suffix = addresses.special_suffix(address) or ""
        return (f"a special-use name (.{suffix}: {addresses.SPECIAL_USE.get(suffix, 'reserved')}) that only your own "
                "mail servers can deliver to; allowed by allow_special_domains")

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

    # -- rendering, for every recipient --

    # -- members --

    def members(self) -> None:
        plan = self.plan
        emailed: dict[str, str] = {}
        for communique in plan.communiques:
            if communique.channel == "email":
                for group_id in communique.to:
                    emailed.setdefault(group_id, communique.id)
        for group_index, group in enumerate(plan.groups):
            counts: dict[str, int] = {}
            seen: dict[str, Recipient] = {}
            special: dict[str, list[str]] = {}  # allowed special-use domain -> its addresses in this group
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
                hint = "fix the address in the members list"
                if addresses.special_suffix(member.email):
                    if addresses.allows(group.allow_special_domains, member.email) or \
                            addresses.allows(plan.sender.allow_special_domains, member.email):
                        problem = self.address_problem(member.email, allow_special=True)
                        if not problem:
                            special.setdefault(addresses.domain_of(member.email), []).append(member.email)
                    else:
                        problem = addresses.special_problem(member.email)
                        hint = addresses.SPECIAL_HINT.format(domain=addresses.domain_of(member.email))
                else:
                    problem = self.address_problem(member.email)
                if problem:
                    self._capped(counts, "address-invalid", group,
                                 f"{member.email!r} in group {group.id} is not a valid address: {problem}",
                                 hint, member.location)
            for domain, found in special.items():
                by = (f"stakeholders[{group_index}].allow_special_domains"
                      if addresses.allows(group.allow_special_domains, found[0]) else "sender.allow_special_domains")
                people = f"{len(found)} addresses" if len(found) > 1 else found[0]
                self.add("address-special-domain",
                         f"{people} in group {group.id} {'are' if len(found) > 1 else 'is'} at {domain}, "
                         + self._special_words(found[0]).replace("allow_special_domains", by),
                         "make sure your relay delivers there; remove the setting to have such addresses refused again",
                         group.location, group=group.id)
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
            elif isinstance(value, SecretError) and what == "SMTP password":
                # Not a lock: app.credentials asks for it (masked) when sending, or refuses headless with a hint.
                self.add("smtp-password-unresolved", f"the {what} ({key}) cannot be looked up here: {value.message}; "
                         "relcomm will ask for it when sending", value.hint, where, communique=cid)
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


# RFC 5322 dot-atom of ASCII atext: what email-validator accepts as an unquoted local part.
_PLAIN_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


def _validate(address: str) -> str | None:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        return str(error)
    return None


