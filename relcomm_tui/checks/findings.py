"""What validation reports: a Finding (stable rule id, severity, place, hint) and the list of rules.

Errors block sending; warnings do not, except the few in BLOCKING_WARNINGS. The rules are listed,
with their ids, in docs/plan-format.md ("Validation rules"); RULES is the same list in code (a
test keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

from ..plan.model import Location

Severity = Literal["error", "warning"]



@dataclass(frozen=True)
class Finding:
    id: str                      # stable rule id, e.g. "group-unreached", "template-undefined"
    severity: Severity
    message: str                 # one line, in the user's words
    hint: str                    # how to fix it
    location: Location           # file, line where known, key path
    group_id: str | None = None       # the stakeholder group it concerns, if any (checklist jumps there)
    communique_id: str | None = None  # the communique it concerns, if any (preview jumps there)

    @property
    def blocks_sending(self) -> bool:
        return self.severity == "error" or self.id in BLOCKING_WARNINGS

    def as_dict(self) -> dict:
        return {
            "id": self.id, "severity": self.severity, "message": self.message, "hint": self.hint,
            "file": str(self.location.file), "line": self.location.line, "column": self.location.column,
            "keypath": self.location.keypath, "group": self.group_id, "communique": self.communique_id,
        }



# id -> (severity, what it means). The docs' rules table is checked against this by a test.
RULES: dict[str, tuple[Severity, str]] = {
    "group-unreached": ("error", "a required stakeholder group is reached by no communique"),
    "group-unused": ("warning", "a stakeholder group that is not required is reached by no communique"),
    "group-unknown": ("error", "a communique names a stakeholder group that does not exist"),
    "group-empty": ("error", "a communique goes to a stakeholder group with no members"),
    "reminder-unknown": ("error", "`reminder_for` names a communique that does not exist"),
    "template-missing": ("error", "the template file is missing or unreadable"),
    "template-syntax": ("error", "a template (file, inline body, subject or path) has a Jinja2 syntax error"),
    "template-undefined": ("error", "a template uses a variable that is undefined for some recipients"),
    "template-error": ("error", "a template fails while rendering (sandbox refusal, bad expression)"),
    "template-limit": ("error", "a template goes over a render limit (loop iterations, output size, nesting depth, time)"),
    "placeholder-left": ("error", "the rendered subject or text still holds TODO/TBD/XXX/FIXME, lorem ipsum or {{ }}"),
    "header-injection": ("error", "a header value (name, address, subject, custom header) contains a line break or control character"),
    "header-invalid": ("error", "a custom header has an invalid name or overrides one relcomm sets, or a header value is too long"),
    "address-invalid": ("error", "a member of a group reached by email has an invalid address"),
    "address-missing": ("error", "a member of a group reached by email has no email address"),
    "address-duplicate": ("warning", "the same address appears twice in one group"),
    "address-special-domain": ("warning", "addresses at a special-use domain (corp.local, .test, ...) that the plan allows"),
    "sender-address-invalid": ("error", "sender from, reply_to, receipts_to, test_to or a communique's reply_to is invalid"),
    "subject-missing": ("error", "an email or publish communique has no subject"),
    "body-missing": ("error", "a communique has no template, body or instructions"),
    "path-unsafe": ("error", "a publish `path` uses `..`, leaves the plan's folder, is made absolute by a template value, is not .html, or would replace a file relcomm did not write"),
    "channel-setting-missing": ("error", "a channel setting is missing: webhook/pager url, publish path, pagerduty routing_key"),
    "url-invalid": ("error", "a webhook/pager/publish URL is not an http(s) URL with a host"),
    "preset-unknown": ("error", "a webhook or pager preset is not one relcomm knows"),
    "url-literal-token": ("warning", "a URL written in the plan looks like it contains a token"),
    "secret-unresolved": ("error", "a secret reference cannot be resolved (keyring, environment, command)"),
    "smtp-password-unresolved": ("warning", "the SMTP password cannot be looked up here: relcomm asks for it when sending"),
    "smtp-insecure": ("error", 'SMTP security "none" to a host that is not loopback'),
    "notes-missing": ("warning", "the release notes file is missing or unreadable"),
    "notes-section-missing": ("warning", "the release notes have no section for this version"),
    "gate-failed": ("error", "the release gate exited non-zero or timed out"),
    "gate-not-found": ("error", "the release gate command does not exist"),
    "gate-none": ("warning", "no release gate is configured: nothing declares the release a success"),
    "gate-not-allowed": ("warning", "the release gate was not run: the plan's commands are not allowed on this host yet"),
    "secret-not-allowed": ("warning", "a { command = ... } secret was not run: the plan's commands are not allowed yet"),
    "invitation-incomplete": ("error", "a calendar invitation has no start or duration, or neither a location nor a url"),
    "invitation-time-zone": ("error", "an invitation's time zone is unknown, missing (start without an offset), or disagrees with start's offset"),
    "invitation-past": ("warning", "a calendar invitation starts in the past: a send skips it (nothing is sent for a past event)"),
}



# Warnings (the plan is fine as written) that still keep sending locked until dealt with.
BLOCKING_WARNINGS = {"gate-not-allowed", "secret-not-allowed"}



def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.severity != "error", str(f.location.file), f.location.line or 0, f.id))
