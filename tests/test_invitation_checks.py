"""Validation of `[communiques.invitation]`: every problem a located finding with a hint, or, for a value
of the wrong shape, one load error naming the key; and the keys belong to email communiques only."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from relcomm_tui.plan import PlanError, load_plan
from relcomm_tui.plan.invitation import parse_duration, when_of
from relcomm_tui.plan.schema import InvitationTable

from plan_helpers import base_plan, check, ids, only, write_plan

GOOD = {"start": dt.datetime(2031, 3, 4, 16, 0), "time_zone": "Europe/Berlin", "duration": "45m",
        "location": "Auditorium B", "url": "https://meet.example.com/vega"}


def with_invitation(**changes) -> dict:
    data = base_plan()
    invitation = {**GOOD, **changes}
    data["communiques"][1]["invitation"] = {k: v for k, v in invitation.items() if v is not None}
    return data


def line_of(plan_file: Path, text: str) -> int:
    return next(n for n, line in enumerate(plan_file.read_text().splitlines(), 1) if line.startswith(text))


def test_a_complete_invitation_is_clean(tmp_path: Path):
    _, findings = check(tmp_path, with_invitation())
    assert not [f for f in findings if f.id.startswith("invitation") or f.id == "url-invalid"]


def test_missing_duration_and_start_point_at_the_invitation(tmp_path: Path):
    plan, findings = check(tmp_path, with_invitation(duration=None, start=None))
    problems = [f for f in findings if f.id == "invitation-incomplete"]
    assert sorted(f.message for f in problems) == ["ops-notice: the invitation has no `duration`",
                                                   "ops-notice: the invitation has no `start`"]
    header = line_of(plan.path, "[communiques.invitation]")
    assert {f.location.line for f in problems} == {header}
    assert all(f.location.keypath == "communiques[1].invitation" and f.communique_id == "ops-notice" for f in problems)
    assert any('duration = "45m"' in f.hint for f in problems)


def test_unknown_time_zone_suggests_the_close_one(tmp_path: Path):
    plan, findings = check(tmp_path, with_invitation(time_zone="Europe/Berln"))
    found = only(findings, "invitation-time-zone")
    assert found.message == "ops-notice: unknown time zone 'Europe/Berln'"
    assert found.hint == 'did you mean "Europe/Berlin"?'
    assert found.location.line == line_of(plan.path, "time_zone =")
    assert found.location.keypath == "communiques[1].invitation.time_zone"


def test_a_local_start_needs_a_zone_and_an_offset_must_agree_with_it(tmp_path: Path):
    _, findings = check(tmp_path / "a", with_invitation(time_zone=None))
    assert "has no time zone" in only(findings, "invitation-time-zone").message
    plus_two = dt.datetime(2031, 3, 4, 16, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))  # Berlin is +01:00 in March
    _, findings = check(tmp_path / "b", with_invitation(start=plus_two))
    found = only(findings, "invitation-time-zone")
    assert "UTC+02:00 but Europe/Berlin is UTC+01:00 on 2031-03-04" in found.message
    # An offset alone is fine (sent as UTC); the same offset as the zone's is fine too.
    utc = dt.datetime(2031, 3, 4, 15, 0, tzinfo=dt.timezone.utc)
    _, findings = check(tmp_path / "c", with_invitation(start=utc, time_zone=None))
    assert "invitation-time-zone" not in ids(findings)


def test_a_start_in_the_past_is_a_warning(tmp_path: Path):
    plan, findings = check(tmp_path, with_invitation(start=dt.datetime(2020, 1, 6, 9, 0)))
    found = only(findings, "invitation-past")
    assert found.severity == "warning" and not found.blocks_sending and "starts in the past (Mon 6 Jan 2020 09:00-09:45 Europe/Berlin" in found.message
    assert found.location.line == line_of(plan.path, "start =")


def test_neither_location_nor_url_and_a_bad_url(tmp_path: Path):
    _, findings = check(tmp_path / "a", with_invitation(location=None, url=None))
    assert "neither where" in only(findings, "invitation-incomplete").message
    _, findings = check(tmp_path / "b", with_invitation(url="meet.example.com/vega"))
    assert "meeting url" in only(findings, "url-invalid").message


@pytest.mark.parametrize("key, value, message, hint", [
    ("duration", "forty minutes", "should match pattern", 'write a duration like "45m"'),
    ("start", "2031-03-04 16:00", "valid datetime", "write a TOML date-time without quotes"),
    ("when", "2031-03-04", "unknown key `when`", "did you mean `start`?"),
    ("timezone", "UTC", "unknown key `timezone`", "did you mean `time_zone`?"),
])
def test_a_value_of_the_wrong_shape_is_a_load_error_naming_the_key(tmp_path: Path, key, value, message, hint):
    data = with_invitation()
    data["communiques"][1]["invitation"][key] = value
    with pytest.raises(PlanError) as raised:
        load_plan(write_plan(tmp_path, data))
    assert message in raised.value.message and hint in raised.value.hint
    assert raised.value.location.line is not None


def test_an_invitation_belongs_to_email_only(tmp_path: Path):
    data = base_plan()
    data["communiques"].append({"id": "brief", "to": ["ops"], "channel": "manual", "instructions": "Call them",
                                "invitation": dict(GOOD)})
    with pytest.raises(PlanError) as raised:
        load_plan(write_plan(tmp_path, data))
    assert "`invitation` does not apply to a manual communique" in raised.value.message


def test_durations_and_when():
    assert [parse_duration(t) for t in ("45m", "1h", "1h30m", "90 min", "2h 5m", "", "h", "1.5h")] == [
        dt.timedelta(minutes=45), dt.timedelta(hours=1), dt.timedelta(minutes=90), dt.timedelta(minutes=90),
        dt.timedelta(minutes=125), None, None, None]
    when, problems = when_of(InvitationTable(**GOOD))
    assert problems == [] and when.start.isoformat() == "2031-03-04T16:00:00+01:00" and when.zone == "Europe/Berlin"
    # DST: the same wall time in July is +02:00
    when, _ = when_of(InvitationTable(**{**GOOD, "start": dt.datetime(2031, 7, 4, 16, 0)}))
    assert when.start.utcoffset() == dt.timedelta(hours=2)


def test_a_title_template_error_points_at_the_title(tmp_path: Path):
    plan, findings = check(tmp_path, with_invitation(title="{{ recipient.nickname }} at the presentation"))
    found = only(findings, "template-undefined")
    assert "nickname" in found.message and found.location.line == line_of(plan.path, "title =")
