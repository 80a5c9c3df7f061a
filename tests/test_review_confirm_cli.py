"""`relcomm review` and `relcomm confirm`: the headless sign-off and manual tick, through main() and a
real subprocess, on real ledgers; the same ledger calls the app makes (app.review, app.manual)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from plan_helpers import base_plan, write_plan
from relcomm_tui.app.readiness import reviews
from relcomm_tui.commands.main import main
from relcomm_tui.demo.mailserver import LoopbackMailServer
from relcomm_tui.plan import load_plan
from relcomm_tui.store.ledger import AWAITING, MARKED_DELIVERED, Ledger


def plan_with_steps(folder: Path, port: int = 2525) -> Path:
    data = base_plan()
    data["transport"]["smtp"]["port"] = port
    data["stakeholders"].append({"id": "exec", "name": "Executive staff", "required": True, "members": [
        {"name": "Dana Chief", "email": "dana@vega.example.com", "phone": "+1 555 0100"},
        {"name": "Sam Okafor", "email": "sam@vega.example.com"}]})
    data["communiques"].append({"id": "exec-call", "to": ["exec"], "channel": "manual",
                                "instructions": "Call {{ recipient.name }}."})
    return write_plan(folder, data)


def test_review_signs_off_every_required_group_with_who_when_and_the_digest(tmp_path: Path, capsys):
    plan_file = plan_with_steps(tmp_path / "plan")
    assert main(["review", str(plan_file), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    plan = load_plan(plan_file)
    assert [s["group"] for s in answer["signed_off"]] == ["customers", "exec"]  # the required ones
    assert answer["required_not_reviewed"] == [] and answer["plan_digest"] == plan.digest
    assert all(s["who"] and s["at"] and s["plan_digest"] == plan.digest for s in answer["signed_off"])
    with Ledger.open(plan.state_dir) as ledger:
        assert reviews(ledger, plan).reviewed == {"customers", "exec"}
        assert {row["who"] for row in ledger.signoffs("2.0.0")} == {answer["signed_off"][0]["who"]}


def test_review_of_named_groups_only_and_the_rest_is_said(tmp_path: Path, capsys):
    plan_file = plan_with_steps(tmp_path / "plan")
    assert main(["review", str(plan_file), "ops", "exec"]) == 0
    out = capsys.readouterr().out
    assert "reviewed ops" in out and "reviewed exec" in out and "still not reviewed: customers" in out


def test_an_unknown_group_is_a_located_error_with_a_hint_and_records_nothing(tmp_path: Path):
    plan_file = plan_with_steps(tmp_path / "plan")
    done = subprocess.run([sys.executable, "-m", "relcomm_tui.commands.main", "review", str(plan_file), "custmers"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(plan_file) in done.stderr and "[[stakeholders]]" in done.stderr and "'custmers'" in done.stderr
    assert 'did you mean "customers"?' in done.stderr
    assert not (plan_file.parent / ".relcomm").exists()


def test_a_review_is_for_the_plan_as_it_was(tmp_path: Path, capsys):
    plan_file = plan_with_steps(tmp_path / "plan")
    assert main(["review", str(plan_file)]) == 0
    plan_file.write_text(plan_file.read_text(encoding="utf-8").replace("is live.", "is live now."), encoding="utf-8")
    plan = load_plan(plan_file)
    with Ledger.open(plan.state_dir) as ledger:
        found = reviews(ledger, plan)
    assert found.reviewed == frozenset() and found.stale


def test_confirm_ticks_a_manual_step_as_the_app_does(tmp_path: Path, capsys):
    with LoopbackMailServer() as server:
        plan_file = plan_with_steps(tmp_path / "plan", server.port)
        assert main(["review", str(plan_file)]) == 0
        assert main(["send", str(plan_file), "--yes", "--allow-commands"]) == 0
        capsys.readouterr()
        # Two steps wait: the person must be named.
        assert main(["confirm", str(plan_file), "exec-call"]) == 2
        assert "2 steps waiting: name the person" in capsys.readouterr().err
        assert main(["confirm", str(plan_file), "exec-call", "Dana Chief", "--note", "spoke at 17:40", "--json"]) == 0
        ticked = json.loads(capsys.readouterr().out)["delivery"]
        assert ticked["state"] == MARKED_DELIVERED and ticked["recipient_key"] == "dana@vega.example.com"
        # One left: no name needed; then none: a clear refusal, nothing changed.
        assert main(["confirm", str(plan_file), "exec-call"]) == 0
        assert main(["confirm", str(plan_file), "exec-call"]) == 2
        assert "already done" in capsys.readouterr().err
    plan = load_plan(plan_file)
    with Ledger.open(plan.state_dir) as ledger:
        steps = [d for d in ledger.deliveries("2.0.0") if d.channel == "manual"]
        assert {d.state for d in steps} == {MARKED_DELIVERED} and AWAITING not in {d.state for d in steps}
        receipt = [r for r in ledger.receipts() if r["kind"] == "manual"]
        assert len(receipt) == 2 and any(r["diagnostic"] == "spoke at 17:40" for r in receipt)


def test_confirm_refuses_what_is_not_a_manual_step_with_a_hint(tmp_path: Path, capsys):
    plan_file = plan_with_steps(tmp_path / "plan")
    assert main(["confirm", str(plan_file), "exec-cal"]) == 2
    err = capsys.readouterr().err
    assert "no communique 'exec-cal'" in err and 'did you mean "exec-call"?' in err
    assert main(["confirm", str(plan_file), "announce"]) == 2
    err = capsys.readouterr().err
    assert "goes by email, not by hand" in err and "exec-call" in err
    assert main(["confirm", str(plan_file), "exec-call", "nobody@example.com"]) == 2
    assert "no step for 'nobody@example.com'" in capsys.readouterr().err
