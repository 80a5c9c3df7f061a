"""The checks of each communique: its channel settings and URLs, then every rendering of it for
every recipient of its audience (each distinct problem once, with how many it affects).

A part of the checker (checks/rules.py), which holds the findings and the plan.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from ..compose import RenderError, TextRenderer, render
from ..compose.mime import header_injection, header_problem
from ..compose.pages import page_target
from ..plan.invitation import when_of
from ..plan.locate import close_match, find_line, keypath_text, shown
from ..plan.model import Communique, Location, Plan, Recipient, StakeholderGroup


class CommuniqueChecks:
    """Per-communique checks: a part of _Checker, using its `plan`, `add()` and `at()`."""

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

    def invitation(self, index: int, communique: Communique) -> None:
        """A calendar invitation's time, duration and place (plan/invitation.py says what is wrong)."""
        table = communique.spec.invitation
        if table is None:
            return
        _, problems = when_of(table, now=dt.datetime.now(dt.timezone.utc))
        for problem in problems:
            where = self.at("communiques", index, "invitation", *((problem.key,) if problem.key else ()))
            self.add(problem.rule, f"{communique.id}: {problem.message}", problem.hint, where, communique=communique.id)

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

        # With an unknown group in `to`, `groups` is short of it (`groups[0]` is undefined): group-unknown
        # is the one root cause, so undefined names wait until `to` is fixed and the plan checked again.
        unknown_group = any(plan.group(group_id) is None for group_id in communique.to)

        def from_error(error: RenderError, who: str, group: str | None) -> str:
            if error.kind in ("address", "recipient"):
                return "address"  # the address rules report it, with the member's or sender's line
            if error.kind == "invitation":
                return "invitation"  # the invitation rules report it, at the invitation's keys
            if error.kind == "undefined" and unknown_group:
                return "template-undefined"
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


WEBHOOK_PRESETS = ("slack", "teams", "mattermost", "googlechat", "json", "text")


PAGER_PRESETS = ("pagerduty", "ntfy")


PLACEHOLDER = re.compile(r"\b(TODO|TBD|XXX|FIXME)\b|(lorem ipsum)|(\{\{|\{%|%\}|\}\})", re.IGNORECASE)


_UPPER_ONLY = ("TODO", "TBD", "XXX", "FIXME")


TOKEN_URL = re.compile(r"hooks\.slack\.com/services/|webhook\.office\.com|/api/webhooks/|chat\.googleapis\.com/.*[?&]key=",
                       re.IGNORECASE)


TOKEN_PARAMS = {"token", "access_token", "api_key", "apikey", "key", "secret", "sig", "signature", "password"}


@dataclass
class _Problem:
    """One distinct rendering problem and how many recipients hit it."""

    finding_args: dict
    count: int = 0
    example: str = ""


_MARKERS = ("TODO", "TBD", "XXX", "FIXME", "{{", "{%", "%}", "}}")


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
