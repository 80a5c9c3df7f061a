"""Header injection (issue 6): CR, LF, NUL, other control characters, RFC 2047 encoded words that
decode to a line break, and overlong values, through every place a header value comes from (member
names and addresses from CSV and inline lists, CSV columns used in the subject, sender addresses,
List-Id, the release name and version, the subject, custom headers, reply_to).

For each: the plan gets a finding (or a load error) at the place the value was written, and no
message relcomm builds carries an extra header: every built message is serialised as it would be
sent, parsed back with the email package, and its header set compared with what relcomm sets."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import campaign
import pytest
from plan_helpers import FILES, base_plan, write_plan

from relcomm_tui.checks.rules import run_checks
from relcomm_tui.compose import RenderError, render
from relcomm_tui.plan import load_plan
from relcomm_tui.plan.loader import PlanError
from relcomm_tui.plan.locate import find_line

EVIL = "evil@attacker.example"
PAYLOADS = {
    "CRLF": f"\r\nBcc: {EVIL}",
    "LF": f"\nBcc: {EVIL}",
    "CR": f"\rBcc: {EVIL}",
    "NUL": "\x00",
    "VT": f"\x0bBcc: {EVIL}",
    "FF": f"\x0cBcc: {EVIL}",
    "FS": f"\x1cBcc: {EVIL}",
    "ESC": "\x1b[2J",
    "DEL": "\x7f",
    "NEL": f"\x85Bcc: {EVIL}",
    "U+2028": f"\u2028Bcc: {EVIL}",
    "encoded word q": f" =?utf-8?q?x=0D=0ABcc:_{EVIL}?=",
    "encoded word b": " =?utf-8?b?eA0KQmNjOiBldmlsQGF0dGFja2VyLmV4YW1wbGU=?=",
    "encoded word LF only": f" =?us-ascii?q?x=0ABcc:_{EVIL}?=",
    "overlong": " " + "x" * 1200,
}
INJECTION_RULES = {"header-injection", "header-invalid", "address-invalid", "sender-address-invalid"}
# What relcomm may set; anything else in a parsed-back message is injected.
ALLOWED = {"message-id", "date", "from", "to", "subject", "reply-to", "list-id", "x-relcomm-communique",
           "x-relcomm-release", "disposition-notification-to", "mime-version", "content-type",
           "content-transfer-encoding", "x-team"}


def csv_with(name: str = "Ada Lovelace", address: str = "ada@acme.example.com", company: str = "Acme") -> str:
    def quote(value: str) -> str:
        return '"' + value.replace('"', '""') + '"'

    return f"name,email,company\n{quote(name)},{quote(address)},{quote(company)}\nGrace Hopper,grace@globex.example.com,Globex\n"


# place -> (change the plan for payload p, (file name, key path to locate) of where the finding must be)
def _set(*path):
    def change(data, files, value):
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value(node.get(path[-1])) if callable(value) else value
    return change


PLACES = {
    "members CSV: name": (lambda d, f, p: f.update({"customers.csv": csv_with(name="Ada" + p)}), ("customers.csv", 2)),
    "members CSV: email": (lambda d, f, p: f.update({"customers.csv": csv_with(address="ada@acme.example.com" + p)}),
                           ("customers.csv", 2)),
    "members CSV: column used in the subject": (
        lambda d, f, p: (f.update({"customers.csv": csv_with(company="Acme" + p)}),
                         _set("communiques", 0, "subject")(d, f, "News for {{ recipient.company }}")),
        ("plan.toml", ("communiques", 0, "subject"))),
    "inline member string": (lambda d, f, p: _set("stakeholders", 1, "members")(d, f, [f"Noor{p} <noor@vega.example.com>"]),
                             ("plan.toml", ("stakeholders", 1, "members"))),
    "inline member table": (lambda d, f, p: _set("stakeholders", 1, "members")(
        d, f, [{"name": "Noor" + p, "email": "noor@vega.example.com"}]), ("plan.toml", ("stakeholders", 1, "members"))),
    "sender from": (lambda d, f, p: _set("sender", "from")(d, f, f"Vega{p} <releases@vega.example.com>"),
                    ("plan.toml", ("sender", "from"))),
    "sender reply_to": (lambda d, f, p: _set("sender", "reply_to")(d, f, f"Team{p} <team@vega.example.com>"),
                        ("plan.toml", ("sender", "reply_to"))),
    "sender receipts_to (read receipts)": (
        lambda d, f, p: (_set("sender", "receipts_to")(d, f, f"R{p} <receipts@vega.example.com>"),
                         d.setdefault("receipts", {}).update(read_receipts=True)),
        ("plan.toml", ("sender", "receipts_to"))),
    "sender list_id": (lambda d, f, p: _set("sender", "list_id")(d, f, "releases.vega.example.com" + p),
                       ("plan.toml", ("sender", "list_id"))),
    "release name (in List-Id)": (lambda d, f, p: _set("release", "name")(d, f, "Vega" + p), ("plan.toml", ("release", "name"))),
    "release version": (lambda d, f, p: _set("release", "version")(d, f, "2.0.0" + p), ("plan.toml", ("release", "version"))),
    "subject": (lambda d, f, p: _set("communiques", 0, "subject")(d, f, "Vega 2.0" + p), ("plan.toml", ("communiques", 0, "subject"))),
    "custom header": (lambda d, f, p: _set("communiques", 0, "headers")(d, f, {"X-Team": "release" + p}),
                      ("plan.toml", ("communiques", 0, "headers"))),
    "communique reply_to": (lambda d, f, p: _set("communiques", 0, "reply_to")(d, f, f"Desk{p} <desk@vega.example.com>"),
                            ("plan.toml", ("communiques", 0, "reply_to"))),
}


def where_expected(folder: Path, source: str, place: tuple) -> tuple[Path, int | None]:
    name, at = place
    if isinstance(at, int):
        return folder / name, at
    return folder / name, find_line(source, at)


def injected_headers(plan) -> list[str]:
    """Build every email of the plan; the headers no message should have (and lines over 998 characters)."""
    bad = []
    for communique in plan.communiques:
        if communique.channel != "email":
            continue
        for group, recipient in plan.audience(communique):
            try:
                message = render(plan, communique, group, recipient).message
            except RenderError:
                continue  # refused: nothing is sent
            raw = message.as_bytes(policy=email.policy.SMTP)
            back = email.message_from_bytes(raw, policy=email.policy.default)
            bad += [name for name in back.keys() if name.lower() not in ALLOWED]
            bad += [f"{name} twice" for name in set(back.keys()) if len(back.get_all(name)) > 1]
            bad += [f"line of {len(line)}" for line in raw.split(b"\r\n") if len(line) > 998]
            for part in back.walk():
                if part is not back and set(k.lower() for k in part.keys()) - {"content-type", "content-transfer-encoding", "mime-version"}:
                    bad.append(f"part headers {part.keys()}")
    return bad


def judge(folder: Path, change, place) -> str:
    """"" when the payload is refused at its place and nothing injected is built, else why not."""
    data, files = base_plan(), dict(FILES)
    change(data, files, PAYLOAD[0])
    plan_file = write_plan(folder, data, files)
    try:
        plan = load_plan(plan_file)
    except PlanError as error:
        file, line = where_expected(folder, plan_file.read_text(encoding="utf-8"), place)
        if error.location.file == file and error.location.line in (line, None) and error.hint:
            return ""
        return f"load error at the wrong place: {error}"
    findings = run_checks(plan, gate=False, secrets=False)
    bad = injected_headers(plan)
    if bad:
        return f"built a message with {bad}"
    file, line = where_expected(folder, plan.source, place)
    mine = [f for f in findings if f.id in INJECTION_RULES and f.location.file == file and f.location.line == line]
    if not mine:
        return f"no finding at {file.name}:{line}: {[(f.id, str(f.location), f.message[:90]) for f in findings]}"
    if not all(f.hint for f in mine):
        return "a finding without a hint"
    return ""


PAYLOAD = [""]


@pytest.mark.campaign
def test_injection_through_every_header_source_is_refused_where_it_was_written(tmp_path: Path) -> None:
    failures = []
    tried = 0
    for place_name, (change, place) in PLACES.items():
        for payload_name, payload in PAYLOADS.items():
            tried += 1
            PAYLOAD[0] = payload
            why = judge(tmp_path / f"case{tried}", change, place)
            if why:
                failures.append(f"{place_name} / {payload_name}: {why}")
    campaign.record("input", "headers: injection by place and payload", tried=tried, held=tried - len(failures))
    assert failures == []


def test_a_clean_plan_builds_only_the_headers_relcomm_sets(tmp_path: Path) -> None:
    """The oracle itself: a plan with nothing hostile in it passes, with the headers it should have."""
    plan = load_plan(write_plan(tmp_path))
    assert injected_headers(plan) == []
    communique = plan.communique("announce")
    message = render(plan, communique, *plan.audience(communique)[0]).message
    back = email.message_from_bytes(message.as_bytes(policy=email.policy.SMTP), policy=email.policy.default)
    assert {"From", "To", "Subject", "List-Id", "X-Relcomm-Release"} <= set(back.keys())
    assert not [f for f in run_checks(plan, gate=False, secrets=False) if f.id in INJECTION_RULES]


def test_an_encoded_word_that_decodes_to_plain_text_is_still_allowed(tmp_path: Path) -> None:
    """Refusing what is harmless would be a regression: =?utf-8?q?Caf=C3=A9?= is just "Café"."""
    data = base_plan()
    data["communiques"][0]["subject"] = "News from the =?utf-8?q?Caf=C3=A9?="
    plan = load_plan(write_plan(tmp_path, data))
    communique = plan.communique("announce")
    message = render(plan, communique, *plan.audience(communique)[0]).message
    assert str(message["Subject"]) == "News from the Café"


def test_a_control_character_as_written_is_named_as_written_even_beside_an_encoded_word():
    from relcomm_tui.compose.mime import header_injection

    assert header_injection("a\r\nb =?utf-8?q?x?=") == "a line break (CR)"
    assert header_injection("=?utf-8?q?a=0D=0ABcc:x?=") == "an encoded word that decodes to a line break (CR)"
    assert header_injection("=?utf-8?q?plain?=") == ""


def test_a_header_may_be_exactly_the_longest_line_smtp_allows():
    from relcomm_tui.compose.mime import MAX_HEADER, header_too_long

    assert MAX_HEADER == 998  # RFC 5322 2.1.1
    assert header_too_long("x" * MAX_HEADER) == ""
    assert header_too_long("x" * (MAX_HEADER + 1)) == "999 characters (at most 998)"
