"""Every validation rule, on small plans written to tmp_path: id, severity, place, message, hint."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from plan_helpers import base_plan, check, ids, only, write_plan

from relcomm_tui.plan import consent
from relcomm_tui.checks.rules import run_checks
from relcomm_tui.checks.findings import RULES
from relcomm_tui.checks.gate import GateResult, run_gate
from relcomm_tui.plan import load_plan

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plan-format.md"


def line_of(path: Path, line: int | None) -> str:
    assert line is not None
    return path.read_text(encoding="utf-8").splitlines()[line - 1]


def test_the_base_plan_is_clean(tmp_path: Path) -> None:
    _, findings = check(tmp_path, gate=True)
    assert findings == []


def test_required_group_reached_by_nothing(tmp_path: Path) -> None:
    data = base_plan()
    data["stakeholders"].append({"id": "exec", "name": "Executives", "required": True, "members": ["Dana <dana@vega.example.com>"]})
    plan, findings = check(tmp_path, data)
    finding = only(findings, "group-unreached")
    assert finding.severity == "error" and finding.group_id == "exec"
    assert finding.location.keypath == "stakeholders[2]" and line_of(plan.path, finding.location.line) == "[[stakeholders]]"
    assert '"exec"' in finding.hint


def test_optional_group_reached_by_nothing_is_a_warning(tmp_path: Path) -> None:
    data = base_plan()
    data["stakeholders"].append({"id": "fans", "members": ["Fan <fan@vega.example.com>"]})
    _, findings = check(tmp_path, data)
    assert only(findings, "group-unused").severity == "warning"


def test_unknown_group_suggests_the_close_one(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][0]["to"] = ["customer"]
    plan, findings = check(tmp_path, data)
    finding = only(findings, "group-unknown")
    assert finding.communique_id == "announce" and "did you mean 'customers'?" in finding.hint
    assert line_of(plan.path, finding.location.line).startswith("to = [")
    assert "group-unreached" in ids(findings)  # customers is now reached by nothing


def test_empty_group(tmp_path: Path) -> None:
    data = base_plan()
    data["stakeholders"][1]["members"] = []
    _, findings = check(tmp_path, data)
    finding = only(findings, "group-empty")
    assert finding.group_id == "ops" and finding.communique_id == "ops-notice" and finding.severity == "error"


def test_reminder_for_unknown_communique(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][1]["reminder_for"] = "anounce"
    _, findings = check(tmp_path, data)
    assert "did you mean 'announce'?" in only(findings, "reminder-unknown").hint


def test_template_file_missing(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][0]["template"] = "nowhere.md.j2"
    plan, findings = check(tmp_path, data)
    finding = only(findings, "template-missing")
    assert "template file not found" in finding.message
    assert line_of(plan.path, finding.location.line) == 'template = "nowhere.md.j2"'
    assert "(for" not in finding.message  # said once, not per recipient


def test_template_syntax_error_points_at_the_template_line(tmp_path: Path) -> None:
    _, findings = check(tmp_path, files={"announce.md.j2": "Hello\n{{ recipient.name }\n"})
    finding = only(findings, "template-syntax")
    assert finding.location.file == tmp_path / "announce.md.j2" and finding.location.line == 2
    assert finding.communique_id == "announce"


def test_undefined_variable_reported_once_with_a_count(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][0]["to"] = ["customers", "ops"]  # ops members have no `company` column
    data["communiques"][0]["template"] = "announce.md.j2"
    csv_text = "name,email,company\n" + "".join(f"P{i},p{i}@acme.example.com,Acme\n" for i in range(3))
    _, findings = check(tmp_path, data, {"customers.csv": csv_text})
    finding = only(findings, "template-undefined")
    assert "`recipient.company` is undefined" in finding.message
    assert "(for noor@vega.example.com)" in finding.message
    assert finding.location.file == tmp_path / "announce.md.j2" and finding.location.line == 3


def test_undefined_for_many_recipients_counts_them(tmp_path: Path) -> None:
    _, findings = check(tmp_path, files={"announce.md.j2": "{{ recipient.team }}\n"})
    finding = only(findings, "template-undefined")
    assert finding.message.endswith("(for 2 recipients, e.g. ada@acme.example.com)")


def test_sandbox_refusal_is_a_template_error(tmp_path: Path) -> None:
    _, findings = check(tmp_path, files={"announce.md.j2": "{{ release.name.__class__.__subclasses__() }}"})
    assert {f.id for f in findings} & {"template-error", "template-undefined"}
    assert all(f.severity == "error" for f in findings)


@pytest.mark.parametrize("text, found", [
    ("Dear {{ recipient.name }}, TODO: write this", "TODO"),
    ("Release date: TBD", "TBD"),
    ("Lorem ipsum dolor sit amet", "Lorem ipsum"),
    ("Use {{ '{{' }} name }} here", "{{"),
    ("FIXME later", "FIXME"),
])
def test_leftover_placeholders(tmp_path: Path, text: str, found: str) -> None:
    _, findings = check(tmp_path, files={"announce.md.j2": "Hello\n" + text + "\n"})
    finding = only(findings, "placeholder-left")
    assert f"still contains {found!r}" in finding.message
    assert finding.location.file == tmp_path / "announce.md.j2"
    if found != "{{":
        assert finding.location.line == 2


def test_placeholder_in_subject_and_lowercase_todo_is_fine(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][0]["subject"] = "XXX {{ release.version }}"
    _, findings = check(tmp_path, data, {"announce.md.j2": "Our todo list got shorter, {{ recipient.name }}.\n"})
    finding = only(findings, "placeholder-left")
    assert "rendered subject" in finding.message and "(for 2 recipients" in finding.message


def test_header_injection_from_a_csv_name_and_a_subject(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][0]["subject"] = "For {{ recipient.company }}"
    csv_text = ('name,email,company\n"Ada\r\nBcc: x@evil.example",ada@acme.example.com,Acme\n'
                'Grace,grace@globex.example.com,"Globex\nBcc: y@evil.example"\n')
    _, findings = check(tmp_path, data, {"customers.csv": csv_text})
    injected = [f for f in findings if f.id == "header-injection"]
    assert len(injected) == 2
    by_member = next(f for f in injected if "name of a member" in f.message)
    assert by_member.location.file == tmp_path / "customers.csv" and by_member.location.line == 2
    assert any("rendered subject contains a line break" in f.message for f in injected)


def test_invalid_missing_and_duplicate_addresses(tmp_path: Path) -> None:
    csv_text = ("name,email,company\nAda,ada@acme.example.com,Acme\nBad,not-an-address,Acme\n"
                "Nomail,,Acme\nAda again,ADA@acme.example.com,Acme\n")
    _, findings = check(tmp_path, files={"customers.csv": csv_text})
    invalid = only(findings, "address-invalid")
    assert invalid.location.line == 3 and invalid.group_id == "customers" and "'not-an-address'" in invalid.message
    missing = only(findings, "address-missing")
    assert missing.location.line == 4 and "Nomail" in missing.message
    duplicate = only(findings, "address-duplicate")
    assert duplicate.severity == "warning" and duplicate.location.line == 5 and "also line 2" in duplicate.message


def test_addresses_in_groups_not_reached_by_email_are_not_checked(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][1] = {"id": "call", "to": ["ops"], "channel": "manual", "instructions": "Call {{ recipient.name }}"}
    data["stakeholders"][1]["members"] = ["Noor Haddad"]
    _, findings = check(tmp_path, data)
    assert findings == []


def test_many_invalid_addresses_are_capped(tmp_path: Path) -> None:
    csv_text = "name,email,company\n" + "".join(f"P{i},bad{i}@,Acme\n" for i in range(25))
    _, findings = check(tmp_path, files={"customers.csv": csv_text})
    invalid = [f for f in findings if f.id == "address-invalid"]
    assert len(invalid) == 21
    assert [f.message for f in invalid].count("... and 5 more like this in group customers") == 1


@pytest.mark.parametrize("key, value", [("from", "Vega <releases@>"), ("reply_to", "team at vega"),
                                        ("receipts_to", "receipts@@vega.example.com")])
def test_invalid_sender_addresses(tmp_path: Path, key: str, value: str) -> None:
    data = base_plan()
    data["sender"][key] = value
    plan, findings = check(tmp_path, data)
    finding = [f for f in findings if f.id == "sender-address-invalid"][0]
    assert finding.location.keypath == f"sender.{key}"
    assert line_of(plan.path, finding.location.line).startswith(f"{key} = ")


def test_missing_subject_and_body(tmp_path: Path) -> None:
    data = base_plan()
    del data["communiques"][1]["subject"]
    del data["communiques"][1]["body"]
    _, findings = check(tmp_path, data)
    assert only(findings, "subject-missing").communique_id == "ops-notice"
    assert only(findings, "body-missing").communique_id == "ops-notice"


def with_communique(**communique) -> dict:
    data = base_plan()
    data["communiques"].append({"id": "extra", "to": ["ops"], **communique})
    return data


def test_channel_settings_missing(tmp_path: Path) -> None:
    data = with_communique(channel="webhook", body="hi")
    data["communiques"].append({"id": "page", "to": ["ops"], "channel": "publish", "subject": "s", "body": "b"})
    data["communiques"].append({"id": "page2", "to": ["ops"], "channel": "pager", "preset": "pagerduty",
                                "url": "https://events.pagerduty.com/v2/enqueue", "body": "b"})
    data["communiques"].append({"id": "todo", "to": ["ops"], "channel": "manual"})
    _, findings = check(tmp_path, data)
    missing = {(f.communique_id, f.message.split(" has no ")[-1]) for f in findings if f.id == "channel-setting-missing"}
    assert missing == {("extra", "url"), ("page", "path"), ("page2", "routing_key")}
    assert only(findings, "body-missing").communique_id == "todo"


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/x", "hooks.example.com/x", "https:///path-only"])
def test_webhook_url_must_be_http_with_a_host(tmp_path: Path, url: str) -> None:
    plan, findings = check(tmp_path, with_communique(channel="webhook", url=url, body="hi"))
    finding = only(findings, "url-invalid")
    assert line_of(plan.path, finding.location.line).startswith("url = ")


def test_unknown_preset_suggests_one(tmp_path: Path) -> None:
    _, findings = check(tmp_path, with_communique(channel="webhook", url="https://chat.example.com/h",
                                                  preset="slak", body="hi"))
    assert "did you mean 'slack'?" in only(findings, "preset-unknown").hint
    _, findings = check(tmp_path, with_communique(channel="pager", url="https://ntfy.example.com/x",
                                                  preset="slack", body="hi"))
    assert "pagerduty, ntfy" in only(findings, "preset-unknown").hint


@pytest.mark.parametrize("url", ["https://hooks.slack.com/services/T000/B000/XXXXSECRET",
                                 "https://acme.webhook.office.com/webhookb2/abc", "https://chat.example.com/h?token=abc"])
def test_literal_url_with_a_token_is_a_warning(tmp_path: Path, url: str) -> None:
    _, findings = check(tmp_path, with_communique(channel="webhook", url=url, body="hi"))
    finding = only(findings, "url-literal-token")
    assert finding.severity == "warning" and "secret reference" in finding.hint


def test_unresolvable_secret_is_an_error_and_never_shows_a_value(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("VEGA_HOOK_UNSET", raising=False)
    _, findings = check(tmp_path, with_communique(channel="webhook", url={"env": "VEGA_HOOK_UNSET"}, body="hi"))
    finding = only(findings, "secret-unresolved")
    assert "VEGA_HOOK_UNSET" in finding.message and "export VEGA_HOOK_UNSET" in finding.hint
    monkeypatch.setenv("VEGA_HOOK_UNSET", "not-a-url-s3cr3t")
    _, findings = check(tmp_path, with_communique(channel="webhook", url={"env": "VEGA_HOOK_UNSET"}, body="hi"))
    finding = only(findings, "url-invalid")
    assert "s3cr3t" not in finding.message + finding.hint and "from environment variable VEGA_HOOK_UNSET" in finding.message
    _, findings = check(tmp_path, with_communique(channel="webhook", url={"env": "VEGA_HOOK_UNSET"}, body="hi"),
                        secrets=False)
    assert findings == []


def test_failing_password_command(tmp_path: Path) -> None:
    data = base_plan()
    data["transport"]["smtp"]["password"] = {"command": f"{sys.executable} -c 'import sys; sys.exit(3)'"}
    _, findings = check(tmp_path, data)
    # A warning, not a lock: the app and `relcomm send` ask for the password instead (app.credentials).
    finding = only(findings, "smtp-password-unresolved")
    assert finding.severity == "warning" and not finding.blocks_sending
    assert "SMTP password" in finding.message and "exit 3" in finding.message
    assert finding.location.keypath == "transport.smtp.password"


def test_smtp_without_tls_to_a_remote_host(tmp_path: Path) -> None:
    data = base_plan()
    data["transport"]["smtp"]["host"] = "smtp.vega.example.com"
    plan, findings = check(tmp_path, data)
    finding = only(findings, "smtp-insecure")
    assert line_of(plan.path, finding.location.line) == 'security = "none"'
    data["transport"]["smtp"]["host"] = "::1"
    _, findings = check(tmp_path, data)
    assert "smtp-insecure" not in ids(findings)


def test_release_notes_missing_or_without_this_version(tmp_path: Path) -> None:
    data = base_plan()
    data["release"]["notes"] = "NEWS.md"
    plan, findings = check(tmp_path, data)
    finding = only(findings, "notes-missing")
    assert finding.severity == "warning" and line_of(plan.path, finding.location.line) == 'notes = "NEWS.md"'
    _, findings = check(tmp_path, files={"CHANGELOG.md": "# Changelog\n\n## 1.0.0\n"})
    finding = only(findings, "notes-section-missing")
    assert finding.severity == "warning" and "## 2.0.0" in finding.hint


def gate_plan(tmp_path: Path, gate: str | None, timeout: int = 30):
    data = base_plan()
    if gate is None:
        del data["release"]["gate"]
    else:
        data["release"]["gate"] = gate
    data["release"]["gate_timeout"] = timeout
    plan = load_plan(write_plan(tmp_path, data))
    consent.grant(plan)
    return plan


def test_gate_that_fails_reports_its_last_line(tmp_path: Path) -> None:
    plan = gate_plan(tmp_path, "echo checking canary; echo 'canary unhealthy: 12% errors'; exit 4")
    result = run_gate(plan)
    assert result == GateResult(False, "checking canary\ncanary unhealthy: 12% errors", True, 4, False, False)
    finding = only(run_checks(plan), "gate-failed")
    assert finding.message == "the release gate failed (exit 4): canary unhealthy: 12% errors"
    assert finding.location.keypath == "release.gate"


def test_gate_runs_from_the_plan_folder(tmp_path: Path) -> None:
    (tmp_path / "ok.sh").write_text("#!/bin/sh\necho fine\n", encoding="utf-8")
    (tmp_path / "ok.sh").chmod(0o755)
    result = run_gate(gate_plan(tmp_path, "./ok.sh"))
    assert result.ok and result.configured and result.output == "fine"


def test_gate_command_not_found(tmp_path: Path) -> None:
    plan = gate_plan(tmp_path, "scripts/no-such-gate.sh")
    assert run_gate(plan).missing
    assert "not found" in only(run_checks(plan), "gate-not-found").message


def test_gate_timeout_kills_it(tmp_path: Path) -> None:
    plan = gate_plan(tmp_path, "sleep 30 & sleep 30", timeout=1)
    result = run_gate(plan)
    assert result.timed_out and not result.ok
    assert "within 1 s" in only(run_checks(plan), "gate-failed").message


def test_no_gate_is_a_warning(tmp_path: Path) -> None:
    plan = gate_plan(tmp_path, None)
    assert run_gate(plan) == GateResult(False, "", False)
    finding = only(run_checks(plan), "gate-none")
    assert finding.severity == "warning" and "nothing declares the release a success" in finding.message
    assert "gate-none" not in ids(run_checks(plan, gate=False))


def test_findings_are_sorted_errors_first_then_by_place(tmp_path: Path) -> None:
    data = base_plan()
    del data["release"]["gate"]
    data["stakeholders"].append({"id": "fans", "members": ["Fan <fan@vega.example.com>"]})
    data["communiques"][1]["to"] = ["opz"]
    _, findings = check(tmp_path, data, gate=True)
    severities = [f.severity for f in findings]
    assert severities == sorted(severities, key=lambda s: s != "error") and "warning" in severities
    errors = [f for f in findings if f.severity == "error"]
    assert [(str(f.location.file), f.location.line or 0) for f in errors] == sorted(
        (str(f.location.file), f.location.line or 0) for f in errors)


def test_the_samples_are_clean(tmp_path: Path) -> None:
    plan = load_plan(Path(__file__).resolve().parent.parent / "sample_plans" / "orion" / "plan.toml")
    consent.grant(plan)
    assert run_checks(plan) == []


def test_every_rule_is_documented() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| `([a-z-]+)` \| (error|warning) \|", docs, flags=re.M))
    assert table == {rule: severity for rule, (severity, _) in RULES.items()}


def test_custom_header_that_overrides_relcomms_own(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][0]["headers"] = {"Subject": "sneaky", "X-Fine": "ok"}
    _, findings = check(tmp_path, data)
    finding = only(findings, "header-invalid")
    assert "Subject is set by relcomm" in finding.message and finding.communique_id == "announce"
    data["communiques"][0]["headers"] = {"Bad Name": "x"}
    _, findings = check(tmp_path, data)
    assert "'Bad Name' is not a valid header name" in only(findings, "header-invalid").message


def test_an_invalid_first_address_does_not_hide_message_problems(tmp_path: Path) -> None:
    data = base_plan()
    data["communiques"][0]["headers"] = {"To": "x@example.com"}
    csv_text = "name,email,company\nBad,not-an-address,Acme\nAda,ada@acme.example.com,Acme\n"
    _, findings = check(tmp_path, data, {"customers.csv": csv_text})
    assert sorted(ids(findings)) == ["address-invalid", "header-invalid"]


def test_json_webhook_body_may_end_objects_with_double_braces(tmp_path: Path) -> None:
    body = '{"text": "{{ release.name }} is out", "meta": {"version": "{{ release.version }}"}}'
    _, findings = check(tmp_path, with_communique(channel="webhook", url="https://chat.example.com/h", body=body))
    assert findings == []
    _, findings = check(tmp_path, with_communique(channel="webhook", url="https://chat.example.com/h",
                                                  body="{{ '{{' }} release.name }}"))
    assert "'{{'" in only(findings, "placeholder-left").message


def test_a_misspelt_variable_suggests_the_column_meant(tmp_path: Path) -> None:
    _, findings = check(tmp_path, files={"announce.md.j2": "{{ recipient.nmae }}\n"})
    finding = only(findings, "template-undefined")
    assert "did you mean `recipient.name`?" in finding.message
