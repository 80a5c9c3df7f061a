"""The one readiness rule (relcomm_tui/app/readiness.py), as a pure function: each reason alone,
compared whole (issue 15). test_guard_send_lock_reasons.py checks the same reasons through the app."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_helpers import SAMPLE

from relcomm_tui.app.readiness import (
    DONE, LOCKED, READY, GateStatus, Reason, Readiness, Reviews, assess, unreviewed,
)
from relcomm_tui.checks.findings import Finding
from relcomm_tui.plan import load_plan
from relcomm_tui.plan.model import Location

REQUIRED = ["customers", "support", "sales", "operations", "exec"]
ALL = frozenset(REQUIRED + ["engineering"])


@pytest.fixture(scope="module")
def plan():
    return load_plan(SAMPLE / "plan.toml")


def finding(ident: str, severity: str = "error", message: str = "m") -> Finding:
    return Finding(ident, severity, message, "h", Location(Path("plan.toml")))


def reviewed(groups=ALL, stale: bool = False) -> Reviews:
    return Reviews(frozenset(groups), stale)


def test_nothing_in_the_way_is_ready(plan):
    ready = assess(plan, findings=[], reviewed=reviewed(), left=36)
    assert ready == Readiness(READY, (), (), 36)
    assert ready.may_send and ready.codes() == []


def test_nothing_left_to_send_is_done_unless_the_ledger_is_broken(plan):
    assert assess(plan, findings=[], reviewed=reviewed(), left=0) == Readiness(DONE, left=0)
    assert not Readiness(DONE, left=0).may_send
    assert assess(plan, findings=[], reviewed=reviewed(), left=0, ledger_ok=False).verdict == LOCKED


@pytest.mark.parametrize(("change", "code", "text"), [
    (dict(findings=[finding("address-invalid")]), "errors", "1 error"),
    (dict(findings=[finding("address-invalid"), finding("subject-missing")]), "errors", "2 errors"),
    (dict(findings=[finding("secret-not-allowed", "warning")]), "commands-not-allowed",
     "the plan's commands are not allowed (a: review them)"),
    (dict(findings=[finding("gate-failed", "warning", "exit 1")]), "gate-failed", "gate not passed"),
    (dict(findings=[finding("gate-not-found", "warning")]), "gate-failed", "gate not passed"),
    (dict(findings=None), "checking", "checking the plan…"),
    (dict(checks_error="boom"), "checks-failed", "the checks could not run (r tries again)"),
    (dict(plan_loads=False), "plan-unloadable", "the plan on disk does not load (r reloads)"),
    (dict(ledger_ok=False), "ledger", "the ledger cannot be used"),
    (dict(reviewed=reviewed(ALL - {"exec"})), "not-reviewed", "1 required group not reviewed"),
    (dict(reviewed=reviewed(ALL - {"exec", "sales"}, stale=True)), "not-reviewed",
     "2 required groups not reviewed (the plan changed since it was reviewed)"),
])
def test_each_reason_alone_locks(plan, change, code, text):
    options = dict(findings=[], reviewed=reviewed(), left=36) | change
    result = assess(plan, **options)
    assert result.verdict == LOCKED and not result.may_send
    assert result.codes() == [code]
    assert result.locked_text() == f"Send locked: {text}"
    assert result.warnings == ()


def test_an_optional_group_does_not_lock_and_a_gate_not_allowed_locks_once(plan):
    assert assess(plan, findings=[], reviewed=reviewed(REQUIRED), left=1).verdict == READY
    result = assess(plan, findings=[finding("gate-not-allowed", "warning")], reviewed=reviewed(), left=1)
    assert result.codes() == ["commands-not-allowed"]  # not also "gate not passed": it did not run


def test_no_gate_warns_and_does_not_lock(plan):
    result = assess(plan, findings=[finding("gate-none", "warning", "no gate")], reviewed=reviewed(), left=3)
    assert result.verdict == READY and result.reasons == ()
    assert [w.code for w in result.warnings] == ["no-gate"]
    assert result.as_dict()["warnings"][0]["text"] == "no release gate: confirming declares the release a success"


def test_reasons_come_in_a_fixed_order_with_their_hints(plan):
    result = assess(plan, findings=[finding("address-invalid"), finding("gate-failed", "error", "canary down")],
                    reviewed=reviewed(set()), plan_loads=False, ledger_ok=False, left=5)
    assert result.codes() == ["ledger", "plan-unloadable", "errors", "not-reviewed", "gate-failed"]
    assert result.locked_text() == ("Send locked: the ledger cannot be used · the plan on disk does not load (r reloads)"
                                    " · 2 errors · 5 required groups not reviewed · gate not passed")
    data = result.as_dict()
    assert data["verdict"] == LOCKED and data["left"] == 5
    assert data["reasons"][-1] == {"code": "gate-failed", "text": "gate not passed", "hint": "canary down"}
    assert "sign off customers, support, sales, operations, exec" in data["reasons"][3]["hint"]


def test_gate_status_from_findings():
    assert GateStatus.from_findings([]) == GateStatus(True, True, "")
    assert GateStatus.from_findings([finding("gate-none", "warning", "x")]) == GateStatus(False, False, "x")
    assert GateStatus.from_findings([finding("gate-not-allowed", "warning", "y")]) == GateStatus(False, True, "y", False)
    assert GateStatus.from_findings([finding("gate-failed", "error", "z")]) == GateStatus(False, True, "z")
    assert GateStatus.from_findings([finding("gate-not-found", "error", "w")]) == GateStatus(False, True, "w")


def test_unreviewed_lists_required_groups_in_plan_order(plan):
    assert unreviewed(plan, set()) == REQUIRED
    assert unreviewed(plan, {"sales", "engineering"}) == ["customers", "support", "operations", "exec"]
    assert Reason("x", "t", key="k").in_app() == "t (k)" and Reason("x", "t").in_app() == "t"


@pytest.mark.parametrize(("change", "expected"), [
    (dict(ledger_ok=False), {"code": "ledger", "text": "the ledger cannot be used", "hint": "see the message above"}),
    (dict(plan_loads=False), {"code": "plan-unloadable", "text": "the plan on disk does not load",
                              "hint": "relcomm validate PLAN says where"}),
    (dict(findings=[finding("address-invalid")]), {"code": "errors", "text": "1 error",
                                                    "hint": "relcomm validate PLAN lists them"}),
    (dict(findings=[finding("secret-not-allowed", "warning")]), {
        "code": "commands-not-allowed", "text": "the plan's commands are not allowed",
        "hint": "relcomm allow PLAN shows them and asks; or --allow-commands for one run"}),
])
def test_each_reason_says_how_to_fix_it(plan, change, expected):
    """The headless commands print a reason's hint as the way out: each is the command to run."""
    options = dict(findings=[], reviewed=reviewed(), left=36) | change
    assert assess(plan, **options).as_dict()["reasons"] == [expected]


def test_the_no_gate_warning_says_how_to_add_one(plan):
    result = assess(plan, findings=[finding("gate-none", "warning")], reviewed=reviewed(), left=3)
    assert result.as_dict()["warnings"] == [{
        "code": "no-gate", "text": "no release gate: confirming declares the release a success",
        "hint": 'add gate = "scripts/release-ok.sh" to [release] to have a script decide'}]


def test_reviews_are_this_plans_sign_offs_and_stale_only_for_an_earlier_reviewed_plan(plan, tmp_path):
    from dataclasses import replace

    from relcomm_tui.app.readiness import reviews
    from relcomm_tui.store.ledger import Ledger

    assert reviews(None, plan) == Reviews(frozenset(), False)  # no ledger: nothing reviewed, nothing stale
    version = plan.release.version
    with Ledger.open(tmp_path / "state") as ledger:
        assert reviews(ledger, plan) == Reviews(frozenset(), False)
        # A group reviewed, then taken back, for an earlier plan: not a stale review.
        ledger.set_reviewed(version, "earlier-digest", "sales", True, "ann")
        ledger.set_reviewed(version, "earlier-digest", "sales", False, "ann")
        assert reviews(ledger, plan) == Reviews(frozenset(), False)
        # Reviewed for this plan: counted, never stale.
        ledger.set_reviewed(version, plan.digest, "support", True, "ann")
        assert reviews(ledger, plan) == Reviews(frozenset({"support"}), False)
        # Reviewed for an earlier plan and not for this one: stale.
        ledger.set_reviewed(version, "earlier-digest", "exec", True, "ann")
        assert reviews(ledger, plan) == Reviews(frozenset({"support"}), True)
        # Reviewed again for this plan: no longer stale.
        ledger.set_reviewed(version, plan.digest, "exec", True, "ann")
        assert reviews(ledger, plan) == Reviews(frozenset({"support", "exec"}), False)
        assert reviews(ledger, replace(plan, digest="another")) == Reviews(frozenset(), True)
