"""Issue 13: addresses at special-use names (corp.local, .test, ...) are refused unless the plan
allows them, then each allowed domain is one warning naming it, and mail really goes there."""

from __future__ import annotations

from pathlib import Path

import pytest
from plan_helpers import base_plan, check, ids, only

from relcomm_tui.commands.main import main
from relcomm_tui.demo.mailserver import LoopbackMailServer
from relcomm_tui.plan import PlanError, load_plan
from relcomm_tui.plan.addresses import combine, valid_address
from send_helpers import write_plan as write_send_plan


def internal_plan(allow_sender=None, allow_group=None) -> dict:
    data = base_plan()
    data["stakeholders"][1]["members"] = ["Noor Haddad <noor@corp.local>", "Sam <sam@ops.corp.local>",
                                          "Typo <typo@acme.test>"]
    if allow_sender is not None:
        data["sender"]["allow_special_domains"] = allow_sender
    if allow_group is not None:
        data["stakeholders"][1]["allow_special_domains"] = allow_group
    return data


def test_without_the_setting_each_is_an_error_saying_why_and_how_to_allow_it(tmp_path: Path) -> None:
    _, findings = check(tmp_path, internal_plan(), secrets=False)
    invalid = [f for f in findings if f.id == "address-invalid"]
    assert len(invalid) == 3
    noor = next(f for f in invalid if "noor@corp.local" in f.message)
    assert "corp.local is under .local, a special-use name" in noor.message
    assert 'allow_special_domains = ["corp.local"]' in noor.hint
    assert "address-special-domain" not in ids(findings)


def test_a_listed_domain_is_a_warning_naming_it_and_other_special_names_stay_errors(tmp_path: Path) -> None:
    _, findings = check(tmp_path, internal_plan(allow_sender=["corp.local"]), secrets=False)
    warnings = [f for f in findings if f.id == "address-special-domain"]
    assert {f.severity for f in warnings} == {"warning"}
    assert [w.message.split(" is at ")[1].split(",")[0] for w in warnings] == ["corp.local", "ops.corp.local"]
    assert all("sender.allow_special_domains" in w.message and w.group_id == "ops" for w in warnings)
    # acme.test is not covered by ["corp.local"]: a typo in a list is still caught.
    assert "typo@acme.test" in only(findings, "address-invalid").message


def test_true_on_the_group_allows_every_special_name_in_that_group_only(tmp_path: Path) -> None:
    data = internal_plan(allow_group=True)
    data["stakeholders"][0]["members"] = ["Ada <ada@corp.local>"]
    _, findings = check(tmp_path, data, secrets=False)
    assert len([f for f in findings if f.id == "address-special-domain" and f.group_id == "ops"]) == 3
    assert all("stakeholders[1].allow_special_domains" in f.message for f in findings if f.id == "address-special-domain")
    assert "ada@corp.local" in only(findings, "address-invalid").message  # customers did not allow it


def test_an_allowed_special_domain_still_gets_the_rest_of_the_address_checked(tmp_path: Path) -> None:
    data = internal_plan(allow_sender=True)
    data["stakeholders"][1]["members"] = ["Bad <bad..dots@corp.local>"]
    _, findings = check(tmp_path, data, secrets=False)
    assert "bad..dots@corp.local" in only(findings, "address-invalid").message
    assert valid_address("noor@corp.local") is None
    assert valid_address("Noor@Corp.Local", allowance=["corp.local"]) == "Noor@corp.local"
    assert valid_address("noor@acme.test", allowance=["corp.local"]) is None
    # A group's list and the sender's true together allow what either allows.
    assert combine(("corp.local",), True) is True and combine(("corp.local",), ["lab.test"]) == ("corp.local", "lab.test")
    assert valid_address("noor@acme.test", allowance=combine(("corp.local",), True)) == "noor@acme.test"


def test_sender_addresses_follow_the_sender_setting(tmp_path: Path) -> None:
    data = base_plan()
    data["sender"]["from"] = "Releases <releases@corp.local>"
    _, findings = check(tmp_path, data, secrets=False)
    assert 'allow_special_domains = ["corp.local"]' in only(findings, "sender-address-invalid").hint
    data["sender"]["allow_special_domains"] = True
    _, findings = check(tmp_path / "allowed", data, secrets=False)
    assert "sender-address-invalid" not in ids(findings)
    assert "releases@corp.local" in only(findings, "address-special-domain").message


def test_a_wrong_value_is_a_load_error_with_the_key(tmp_path: Path) -> None:
    from plan_helpers import write_plan

    data = base_plan()
    data["sender"]["allow_special_domains"] = "yes"
    with pytest.raises(PlanError) as caught:
        load_plan(write_plan(tmp_path, data))
    assert caught.value.location.keypath == "sender.allow_special_domains"
    assert '["corp.local"]' in caught.value.hint


def test_allowed_internal_addresses_are_sent_to_over_a_real_smtp_server(tmp_path: Path, capsys) -> None:
    with LoopbackMailServer(maildir=tmp_path / "server-mail") as server:
        plan_file = write_send_plan(tmp_path / "plan", server.port, recipients=2)
        csv = plan_file.parent / "customers.csv"
        csv.write_text(csv.read_text().replace("@example.com", "@corp.local"))
        assert main(["send", str(plan_file), "--yes"]) == 2  # refused: the addresses are errors
        assert server.messages == []
        capsys.readouterr()
        text = plan_file.read_text().replace('test_to = "me@orion.example.com"',
                                             'test_to = "me@orion.example.com"\nallow_special_domains = ["corp.local"]')
        plan_file.write_text(text)
        assert main(["send", str(plan_file), "--yes"]) == 0
        assert sorted(r for m in server.messages for r in m.rcpt_tos) == ["customer0@corp.local", "customer1@corp.local"]
