"""Validation of the plan's script (`[[steps]]`, issue 14): every bad script gives a located finding
with a hint; a good one gives none; a plan without steps is untouched."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from relcomm_tui.plan import PlanError, load_plan
from relcomm_tui.checks.script import script_findings

from plan_helpers import base_plan, check, ids, only, write_plan

FUTURE = dt.datetime(2099, 1, 1, 17, 0, tzinfo=dt.timezone.utc)


def with_steps(*steps: dict, communiques: list[dict] | None = None) -> dict:
    data = base_plan()
    data["communiques"] += communiques or [
        {"id": "chat", "to": ["ops"], "channel": "manual", "instructions": "Post in #releases"}]
    data["steps"] = list(steps)
    return data


def script_ids(findings) -> list[str]:
    return [i for i in ids(findings) if i.startswith("script-")]


def test_a_good_script_has_no_findings(tmp_path: Path) -> None:
    _, findings = check(tmp_path, with_steps(
        {"id": "first", "send": ["chat", "ops-notice"]},
        {"id": "briefed", "checkpoint": "Support read the briefing"},
        {"id": "customers", "send": ["announce"], "wait": "30m", "not_before": FUTURE,
         "halt_if": {"failed_over": 5}},
    ))
    assert script_ids(findings) == []


def test_a_plan_without_steps_has_no_script_findings(tmp_path: Path) -> None:
    plan, findings = check(tmp_path)
    assert plan.steps == () and script_ids(findings) == []


def test_unknown_ids_in_send_and_after(tmp_path: Path) -> None:
    plan, findings = check(tmp_path, with_steps(
        {"id": "first", "send": ["chat", "ops-notice", "anounce"]},
        {"id": "second", "send": ["announce"], "after": ["frist"]},
    ))
    sent = [f for f in findings if f.id == "script-unknown" and "sends" in f.message][0]
    assert "'anounce'" in sent.message and "did you mean 'announce'" in sent.hint
    assert sent.location.keypath == "steps[0].send" and sent.location.line is not None
    after = [f for f in findings if f.id == "script-unknown" and "comes after" in f.message][0]
    assert "did you mean 'first'" in after.hint and after.location.keypath == "steps[1].after"
    assert plan.source.splitlines()[after.location.line - 1].startswith("after")


def test_a_cycle_is_found_and_its_followers_are_unreachable(tmp_path: Path) -> None:
    _, findings = check(tmp_path, with_steps(
        {"id": "a", "send": ["chat"], "after": ["c"]},
        {"id": "b", "send": ["ops-notice"]},              # after a (the step before it)
        {"id": "c", "checkpoint": "ok?"},                   # after b
        {"id": "d", "send": ["announce"]},                  # after c: never starts
    ))
    cycle = only(findings, "script-cycle")
    assert "a -> b -> c -> a" in cycle.message and cycle.severity == "error"
    assert cycle.location.keypath == "steps[0].after"
    unreachable = only(findings, "script-unreachable")
    assert "step d can never start" in unreachable.message and "c" in unreachable.message
    assert unreachable.location.keypath == "steps[3]"


def test_after_a_communique_no_step_sends_is_unreachable(tmp_path: Path) -> None:
    data = with_steps({"id": "a", "send": ["chat", "announce"]}, {"id": "b", "send": ["ops-notice"], "after": ["reminder"]})
    data["communiques"].append({"id": "reminder", "reminder_for": "announce", "to": ["customers"],
                                "subject": "Reminder", "body": "Hello again"})
    _, findings = check(tmp_path, data)
    finding = only(findings, "script-unreachable")
    assert "communique reminder, which no step sends" in finding.message


def test_a_communique_in_two_steps_or_in_none(tmp_path: Path) -> None:
    _, findings = check(tmp_path, with_steps({"id": "a", "send": ["chat", "announce"]}, {"id": "b", "send": ["announce"]}))
    assert "by step a and by step b" in only(findings, "script-duplicate").message
    unscheduled = only(findings, "script-unscheduled")
    assert unscheduled.communique_id == "ops-notice" and "never be sent" in unscheduled.message
    assert unscheduled.location.keypath == "communiques[1].id"


def test_confirmed_with_nobody_to_confirm(tmp_path: Path) -> None:
    data = with_steps({"id": "a", "send": ["chat", "ops-notice", "page"]}, {"id": "b", "send": ["announce"],
                      "after": ["page"], "confirmed": 50},
                      communiques=[{"id": "chat", "to": ["ops"], "channel": "manual", "instructions": "x"},
                                   {"id": "page", "to": ["ops"], "channel": "webhook", "preset": "text",
                                    "url": "http://127.0.0.1:9/hook", "body": "{{ release.version }} is out"}])
    _, findings = check(tmp_path, data)
    finding = only(findings, "script-unconfirmable")
    assert "reach no person" in finding.message and finding.location.keypath == "steps[1].confirmed"


def test_not_before_in_the_past_is_a_warning(tmp_path: Path) -> None:
    past = dt.datetime(2020, 5, 1, 9, 0, tzinfo=dt.timezone.utc)
    _, findings = check(tmp_path, with_steps({"id": "a", "send": ["chat", "ops-notice", "announce"], "not_before": past}))
    finding = only(findings, "script-time-past")
    assert finding.severity == "warning" and "2020-05-01 09:00 UTC is already past" in finding.message
    assert finding.location.keypath == "steps[0].not_before" and not finding.blocks_sending


def test_waits_that_push_a_step_past_its_not_before(tmp_path: Path) -> None:
    _, findings = check(tmp_path, with_steps(
        {"id": "a", "send": ["chat"], "not_before": FUTURE},
        {"id": "b", "send": ["ops-notice"], "wait": "30m"},
        {"id": "c", "send": ["announce"], "wait": "1h", "not_before": FUTURE + dt.timedelta(minutes=45)},
    ))
    finding = only(findings, "script-time-pushed")
    assert finding.location.keypath == "steps[2].not_before"
    assert "a not before 2099-01-01 17:00 UTC, then b waits 30m, then c waits 1h" in finding.message
    assert "2099-01-01 18:30 UTC at the earliest" in finding.message


def test_the_time_checks_use_the_time_given(tmp_path: Path) -> None:
    when = dt.datetime(2026, 11, 26, 17, 0, tzinfo=dt.timezone.utc)
    plan = load_plan(write_plan(tmp_path, with_steps({"id": "a", "send": ["chat", "ops-notice", "announce"],
                                                      "not_before": when})))
    assert script_ids(script_findings(plan, when - dt.timedelta(minutes=1))) == []
    assert script_ids(script_findings(plan, when + dt.timedelta(minutes=1))) == ["script-time-past"]


@pytest.mark.parametrize("value, words", [
    ("tomorrow", "time of day with its time zone"),
    ("17:00", "time of day with its time zone"),
    ("25:00 UTC", "not a time of day"),
    ("17:00 Mars/Olympus", "unknown time zone"),
])
def test_bad_not_before_is_a_load_error_at_its_key(tmp_path: Path, value: str, words: str) -> None:
    plan_file = write_plan(tmp_path, with_steps({"id": "a", "send": ["chat", "ops-notice", "announce"], "not_before": value}))
    with pytest.raises(PlanError) as caught:
        load_plan(plan_file)
    assert words in caught.value.message and caught.value.location.keypath == "steps[0].not_before"


def test_a_time_without_zone_is_a_load_error(tmp_path: Path) -> None:
    plan_file = write_plan(tmp_path, with_steps({"id": "a", "send": ["chat", "ops-notice", "announce"]}))
    text = plan_file.read_text().replace('id = "a"\n', 'id = "a"\nnot_before = 2026-11-26T17:00:00\n')
    plan_file.write_text(text)
    with pytest.raises(PlanError) as caught:
        load_plan(plan_file)
    assert "no time zone" in caught.value.message and caught.value.location.line is not None


def test_bad_wait_and_duplicate_step_ids_are_load_errors(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as caught:
        load_plan(write_plan(tmp_path / "a", with_steps({"id": "a", "send": ["chat"], "wait": "half an hour"})))
    assert caught.value.location.keypath == "steps[0].wait" and "30m" in caught.value.hint
    for huge in ("31d", "1" * 5000 + "s"):  # a typo, or a hostile plan: a clear error, never a traceback
        with pytest.raises(PlanError) as caught:
            load_plan(write_plan(tmp_path / "c", with_steps({"id": "a", "send": ["chat"], "wait": huge})))
        assert "at most 30 days" in caught.value.message and caught.value.location.keypath == "steps[0].wait"
    with pytest.raises(PlanError) as caught:
        load_plan(write_plan(tmp_path / "b", with_steps({"id": "a", "send": ["chat"]}, {"id": "a", "send": ["announce"]})))
    assert "used twice" in caught.value.message and caught.value.location.keypath == "steps[1].id"


def test_time_of_day_and_durations_are_read() -> None:
    from relcomm_tui.plan.schema import duration_seconds, time_of_day

    assert duration_seconds("30m") == 1800 and duration_seconds("1h30m") == 5400 and duration_seconds("2d") == 172800
    assert time_of_day("17:00 UTC").tzinfo == dt.timezone.utc
    assert time_of_day("18:00+01:00").utcoffset() == dt.timedelta(hours=1)
    assert time_of_day("09:30 Europe/Berlin").tzinfo.key == "Europe/Berlin"


def test_a_not_before_at_the_end_of_time_is_no_traceback(tmp_path: Path) -> None:
    end = dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone.utc)
    _, findings = check(tmp_path, with_steps({"id": "a", "send": ["chat"], "not_before": end},
                                             {"id": "b", "send": ["ops-notice", "announce"], "wait": "30d",
                                              "not_before": FUTURE}))
    assert "script-time-pushed" in script_ids(findings)
