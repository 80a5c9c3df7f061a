"""Commands in a plan run only with consent (issue 6): the release gate and { command = ... } secrets.

Each command the tests use touches a marker file, so "it did not run" is checked on disk, not
inferred from the output.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import campaign
import pytest
from plan_helpers import base_plan, write_plan

from relcomm_tui import consent
from relcomm_tui.mailserver import LoopbackMailServer
from relcomm_tui.plan import load_plan

pytestmark = pytest.mark.campaign


def relcomm(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relcomm_tui.cli", *args], capture_output=True, text=True,
                          timeout=60, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)


def refused(case: str, did_not_run: bool) -> bool:
    """Record one attempt to make relcomm run a command without consent; True when it held."""
    campaign.record("input", f"plans: commands without consent ({case})", tried=1, held=int(did_not_run))
    return did_not_run


def plan_with_gate(folder: Path, gate: str, **smtp) -> Path:
    data = base_plan()
    data["release"]["gate"] = gate
    data["transport"]["smtp"].update(smtp)
    return write_plan(folder, data)


def test_the_plan_commands_are_listed_and_keyed_by_text_and_folder(tmp_path: Path) -> None:
    path = plan_with_gate(tmp_path / "a", "scripts/ok.sh", username="relcomm",
                          password={"command": "pass show smtp"})
    plan = load_plan(path)
    assert [(c.keypath, c.command) for c in consent.plan_commands(plan)] == [
        ("release.gate", "scripts/ok.sh"), ("transport.smtp.password", "pass show smtp")]
    same_elsewhere = load_plan(plan_with_gate(tmp_path / "b", "scripts/ok.sh", username="relcomm",
                                              password={"command": "pass show smtp"}))
    changed = load_plan(plan_with_gate(tmp_path / "a", "scripts/ok.sh --force", username="relcomm",
                                       password={"command": "pass show smtp"}))
    # The gate runs from the plan's folder: the same text elsewhere is other code.
    assert len({consent.digest(plan), consent.digest(same_elsewhere), consent.digest(changed)}) == 3


def test_validate_does_not_run_an_unallowed_gate_and_says_how_to_allow_it(tmp_path: Path) -> None:
    marker = tmp_path / "gate-ran"
    path = plan_with_gate(tmp_path, f"touch {marker}")
    done = relcomm("validate", str(path))
    assert done.returncode == 0, done.stderr  # a warning, not an error: the plan itself is fine
    assert "warning[gate-not-allowed]" in done.stdout and "relcomm allow PLAN" in done.stdout
    assert refused("validate, gate", not marker.exists())
    assert "Traceback" not in done.stdout + done.stderr


def test_allow_prints_the_commands_records_consent_privately_and_a_changed_command_asks_again(tmp_path: Path) -> None:
    marker = tmp_path / "gate-ran"
    path = plan_with_gate(tmp_path, f"touch {marker}")
    allowed = relcomm("allow", str(path))
    assert allowed.returncode == 0, allowed.stderr
    assert f"touch {marker}" in allowed.stdout and "release gate (release.gate)" in allowed.stdout
    record = Path(os.environ["RELCOMM_CONFIG_DIR"]) / "allowed" / consent.digest(load_plan(path))
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert stat.S_IMODE(record.parent.stat().st_mode) == 0o700
    assert "already allowed" in relcomm("allow", str(path)).stdout

    assert relcomm("validate", str(path)).returncode == 0
    assert marker.exists()  # allowed: the gate ran

    other = tmp_path / "other-ran"
    plan_with_gate(tmp_path, f"touch {other}")  # someone edits the command
    done = relcomm("validate", str(path))
    assert "warning[gate-not-allowed]" in done.stdout
    assert refused("gate changed after consent", not other.exists())

    revoked = relcomm("allow", "--revoke", str(path))
    assert "nothing to forget" in revoked.stdout  # the new command was never allowed


def test_allow_commands_runs_them_this_once_without_recording(tmp_path: Path) -> None:
    marker = tmp_path / "gate-ran"
    path = plan_with_gate(tmp_path, f"touch {marker}")
    assert relcomm("validate", "--allow-commands", str(path)).returncode == 0
    assert marker.exists()
    assert not (Path(os.environ["RELCOMM_CONFIG_DIR"]) / "allowed").exists()


def test_a_password_command_does_not_run_without_consent(tmp_path: Path) -> None:
    marker = tmp_path / "password-ran"
    path = plan_with_gate(tmp_path, "true", username="relcomm",
                          password={"command": f"sh -c 'touch {marker}; echo s3cret'"})
    done = relcomm("validate", str(path))
    assert "warning[secret-not-allowed]" in done.stdout and "relcomm allow PLAN" in done.stdout
    assert refused("validate, password command", not marker.exists())
    assert relcomm("validate", "--allow-commands", str(path)).returncode == 0
    assert marker.exists()


def test_send_refuses_without_consent_and_nothing_reaches_the_server(tmp_path: Path) -> None:
    marker = tmp_path / "gate-ran"
    with LoopbackMailServer() as server:
        path = plan_with_gate(tmp_path, f"touch {marker}", port=server.port)
        attempt = relcomm("send", "--yes", str(path))
        assert attempt.returncode == 2
        assert "[gate-not-allowed]" in attempt.stderr and "relcomm allow PLAN" in attempt.stderr
        assert refused("send", server.messages == [] and not marker.exists())
        assert "Traceback" not in attempt.stderr

        sent = relcomm("send", "--yes", "--allow-commands", str(path))
        assert sent.returncode == 0, sent.stderr
        assert marker.exists() and len(server.messages) == 3


async def test_the_app_asks_before_running_a_plans_commands(tmp_path: Path) -> None:
    from relcomm_tui.tui.app import build_app
    from relcomm_tui.tui.dialogs.consent import ConsentDialog
    from tui_helpers import settle, text_of, wait_until

    marker = tmp_path / "gate-ran"
    path = plan_with_gate(tmp_path, f"touch {marker}")
    app = build_app(path)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConsentDialog))
        assert f"touch {marker}" in text_of(app.screen.query_one("#ask-detail"))
        await pilot.press("enter")  # the focused answer is the safe one: "Not now"
        await settle(pilot)
        checklist = app.screen
        assert await wait_until(pilot, lambda: checklist.findings is not None)
        assert refused("app, answered not now", not marker.exists())
        assert "commands are not allowed" in (checklist.send_lock or "")
        assert "gate not run" in text_of(checklist.query_one("#release"))

        await pilot.press("a")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConsentDialog))
        await pilot.press("y")
        assert await wait_until(pilot, lambda: checklist.findings is not None and checklist.gate is not None
                                and checklist.gate.allowed)
        assert marker.exists() and checklist.gate.ok
        assert not consent.needs_consent(load_plan(path))  # remembered for next time


@pytest.mark.parametrize("allow_first", [True, False])
async def test_the_app_does_not_ask_when_consent_is_recorded_or_given(tmp_path: Path, allow_first: bool) -> None:
    from relcomm_tui.tui.app import build_app
    from relcomm_tui.tui.dialogs.consent import ConsentDialog
    from tui_helpers import wait_until

    marker = tmp_path / "gate-ran"
    path = plan_with_gate(tmp_path, f"touch {marker}")
    if allow_first:
        consent.allow(load_plan(path))
    app = build_app(path, allow_commands=not allow_first)
    async with app.run_test(size=(80, 24)) as pilot:
        checklist = app.screen
        assert await wait_until(pilot, lambda: checklist.findings is not None)
        assert not isinstance(app.screen, ConsentDialog) and marker.exists()
