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

from relcomm_tui.plan import consent
from relcomm_tui.demo.mailserver import LoopbackMailServer
from relcomm_tui.plan import load_plan

pytestmark = pytest.mark.campaign


def relcomm(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relcomm_tui.commands.main", *args], capture_output=True, text=True,
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
    path = plan_with_gate(tmp_path / "plan", f"touch {marker}")
    allowed = relcomm("allow", "--yes", str(path))
    assert allowed.returncode == 0, allowed.stderr
    assert f"touch {marker}" in allowed.stdout and "release gate (release.gate)" in allowed.stdout
    record = Path(os.environ["RELCOMM_CONFIG_DIR"]) / "allowed" / consent.digest(load_plan(path))
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert stat.S_IMODE(record.parent.stat().st_mode) == 0o700
    assert "already allowed" in relcomm("allow", "--yes", str(path)).stdout

    assert relcomm("validate", str(path)).returncode == 0
    assert marker.exists()  # allowed: the gate ran

    other = tmp_path / "other-ran"
    plan_with_gate(tmp_path / "plan", f"touch {other}")  # someone edits the command
    done = relcomm("validate", str(path))
    assert "warning[gate-not-allowed]" in done.stdout
    assert refused("gate changed after consent", not other.exists())

    # The new command was never allowed, but the old one was: --revoke forgets every record for the
    # folder, so going back to the old command does not bring consent back.
    revoked = relcomm("allow", "--revoke", str(path))
    assert "consent forgotten" in revoked.stdout and not record.exists()
    marker.unlink()
    plan_with_gate(tmp_path / "plan", f"touch {marker}")
    assert "warning[gate-not-allowed]" in relcomm("validate", str(path)).stdout
    assert not marker.exists()


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

        assert relcomm("review", str(path)).returncode == 0  # the sign-off the same rule needs (app.readiness)
        sent = relcomm("send", "--yes", "--allow-commands", str(path))
        assert sent.returncode == 0, sent.stderr
        assert marker.exists() and len(server.messages) == 3


async def test_the_app_asks_before_running_a_plans_commands(tmp_path: Path) -> None:
    from relcomm_tui.tui.app import build_app
    from relcomm_tui.tui.dialogs.consent import ConsentDialog
    from tui_helpers import settle, text_of, wait_until

    marker = tmp_path / "gate-ran"  # outside the plan folder: a file the gate creates inside it is one it names
    path = plan_with_gate(tmp_path / "plan", f"touch {marker}")
    app = build_app(path)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConsentDialog))
        assert f"touch {marker}" in [text_of(w) for w in app.screen.query(".consent-command")]
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


# -- consent covers the code that runs (issue 10, item 1) ------------------------------------------


def script(folder: Path, name: str, marker: Path, *, prints: str = "") -> Path:
    """An executable sh script that touches `marker` (and prints `prints`): "it ran" is seen on disk."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\ntouch '{marker}'\n" + (f"echo '{prints}'\n" if prints else ""), encoding="utf-8")
    path.chmod(0o755)
    return path


def test_a_script_changed_after_consent_does_not_run_and_asks_again(tmp_path: Path) -> None:
    """`git pull` between `relcomm allow` and `relcomm validate`: same command text, other code."""
    old, new = tmp_path / "old-code-ran", tmp_path / "new-code-ran"
    folder = tmp_path / "plan"
    script(folder, "scripts/ok.sh", old)
    path = plan_with_gate(folder, "scripts/ok.sh")
    consent.allow(load_plan(path))
    assert "warning[gate-not-allowed]" not in relcomm("validate", str(path)).stdout and old.exists()

    script(folder, "scripts/ok.sh", new)  # the pull: same path, same command text, new content
    done = relcomm("validate", str(path))
    assert "warning[gate-not-allowed]" in done.stdout and "relcomm allow PLAN" in done.stdout
    assert refused("script content changed after consent (validate)", not new.exists())
    with LoopbackMailServer() as server:
        path = plan_with_gate(folder, "scripts/ok.sh", port=server.port)
        sent = relcomm("send", "--yes", str(path))
        assert sent.returncode == 2 and "[gate-not-allowed]" in sent.stderr
        assert refused("script content changed after consent (send)", server.messages == [] and not new.exists())
    shown = relcomm("allow", "--show", str(path))
    assert "scripts/ok.sh: changed since you allowed" in shown.stdout and "not allowed yet" in shown.stdout


def test_the_check_is_made_when_the_command_runs_not_when_the_plan_was_opened(tmp_path: Path) -> None:
    """The app opens the plan (consent found), the script changes, then the checks run: nothing runs."""
    from relcomm_tui.checks.rules import run_checks
    from relcomm_tui.checks.gate import run_gate
    from relcomm_tui.plan.secrets import CommandNotAllowed, resolve

    old, new, pw = tmp_path / "old-code-ran", tmp_path / "new-code-ran", tmp_path / "pw-ran"
    folder = tmp_path / "plan"
    script(folder, "scripts/ok.sh", old)
    script(folder, "scripts/pw.sh", pw, prints="s3cret")
    plan = load_plan(plan_with_gate(folder, "scripts/ok.sh", username="relcomm",
                                    password={"command": "scripts/pw.sh"}))
    consent.allow(plan)
    assert consent.apply(plan)  # what every command does when it loads a plan
    script(folder, "scripts/ok.sh", new)
    script(folder, "scripts/pw.sh", tmp_path / "new-pw-ran", prints="stolen")
    assert run_gate(plan).not_allowed
    with pytest.raises(CommandNotAllowed):
        resolve(plan.smtp.password)
    findings = {f.id for f in run_checks(plan)}
    assert {"gate-not-allowed", "secret-not-allowed"} <= findings
    assert refused("script changed between opening and running", not new.exists() and not (tmp_path / "new-pw-ran").exists())


def test_a_folder_deleted_and_recreated_does_not_inherit_consent(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "plan"
    script(folder, "scripts/ok.sh", tmp_path / "first-ran")
    path = plan_with_gate(folder, "scripts/ok.sh")
    consent.allow(load_plan(path))
    shutil.rmtree(folder)
    script(folder, "scripts/ok.sh", tmp_path / "second-ran")
    plan_with_gate(folder, "scripts/ok.sh")
    assert "warning[gate-not-allowed]" in relcomm("validate", str(path)).stdout
    assert refused("plan folder recreated with other scripts", not (tmp_path / "second-ran").exists())


@pytest.mark.parametrize("change", ["target content", "retarget", "replaced by a folder", "replaced by a FIFO",
                                    "removed", "made a symlink loop"])
def test_what_the_program_path_leads_to_is_covered(tmp_path: Path, change: str) -> None:
    """scripts/ok.sh is a symlink to a script outside the plan folder; whatever changes there asks again."""
    outside = tmp_path / "tools"
    script(outside, "real.sh", tmp_path / "real-ran")
    folder = tmp_path / "plan"
    (folder / "scripts").mkdir(parents=True)
    link = folder / "scripts" / "ok.sh"
    link.symlink_to(outside / "real.sh")
    path = plan_with_gate(folder, "scripts/ok.sh")
    plan = load_plan(path)
    consent.allow(plan)
    assert not consent.needs_consent(load_plan(path))
    changed = tmp_path / "changed-ran"
    if change == "target content":
        script(outside, "real.sh", changed)
    elif change == "retarget":
        script(outside, "other.sh", changed)
        link.unlink()
        link.symlink_to(outside / "other.sh")
    elif change == "replaced by a folder":
        link.unlink()
        link.mkdir()
    elif change == "replaced by a FIFO":
        link.unlink()
        os.mkfifo(link)
    elif change == "removed":
        link.unlink()
    else:
        link.unlink()
        link.symlink_to(link)
    done = relcomm("validate", str(path))  # must not hang on the FIFO nor trace back on the loop
    assert "Traceback" not in done.stdout + done.stderr
    assert "warning[gate-not-allowed]" in done.stdout
    assert refused(f"program path {change}", not changed.exists())


@pytest.mark.parametrize("gate, changed_file", [
    ("sh scripts/ok.sh", "scripts/ok.sh"),                                  # the script is an argument
    ("sh -c 'true && scripts/second.sh'", "scripts/second.sh"),             # a command inside a word
    ("true; scripts/second.sh", "scripts/second.sh"),                       # after an operator
    ("true&&scripts/second.sh", "scripts/second.sh"),                       # no spaces around it
    ("python3 -c pass --config=conf/gate.toml", "conf/gate.toml"),          # --opt=VALUE
    ("sh -c 'for f in hooks/*.sh; do sh \"$f\"; done'", "hooks/b.sh"),      # a glob
    ("scripts/run-all.sh hooks", "hooks/b.sh"),                             # a folder: its files one level down
    ("../shared/check.sh", "../shared/check.sh"),                           # relative, outside: moves with the plan
    ("sh -c '. /dev/fd/3' 3<>scripts/second.sh", "scripts/second.sh"),     # read through a read-write redirection
    ("x > gate.log; scripts/second.sh > scripts/second.sh", "scripts/second.sh"),  # written once, run once
])
def test_every_file_a_command_names_is_covered(tmp_path: Path, gate: str, changed_file: str) -> None:
    folder = tmp_path / "repo" / "plan"
    for name in ("scripts/ok.sh", "scripts/second.sh", "hooks/a.sh", "hooks/b.sh", "../shared/check.sh"):
        script(folder, name, tmp_path / "allowed-code-ran")
    (folder / "scripts" / "run-all.sh").write_text('#!/bin/sh\nfor f in "$1"/*; do sh "$f"; done\n', encoding="utf-8")
    (folder / "scripts" / "run-all.sh").chmod(0o755)
    (folder / "conf").mkdir()
    (folder / "conf" / "gate.toml").write_text("level = 1\n", encoding="utf-8")
    path = plan_with_gate(folder, gate)
    consent.allow(load_plan(path))
    assert not consent.needs_consent(load_plan(path))
    target = folder / changed_file
    if target.suffix == ".sh":
        script(folder, changed_file, tmp_path / "changed-code-ran")
    else:
        target.write_text("level = 2\n", encoding="utf-8")
    assert consent.needs_consent(load_plan(path))
    done = relcomm("validate", str(path))
    assert "warning[gate-not-allowed]" in done.stdout, done.stdout
    assert refused(f"named file changed: {gate}", not (tmp_path / "changed-code-ran").exists())


def test_a_new_file_in_a_named_folder_asks_again_but_an_output_file_does_not(tmp_path: Path) -> None:
    folder = tmp_path / "plan"
    script(folder, "hooks/a.sh", tmp_path / "a-ran")
    (folder / "run-all.sh").write_text('#!/bin/sh\nfor f in "$1"/*; do sh "$f"; done\n', encoding="utf-8")
    (folder / "run-all.sh").chmod(0o755)
    path = plan_with_gate(folder, "./run-all.sh hooks > gate.log 2>&1")
    consent.allow(load_plan(path))
    for _ in range(2):  # gate.log is written by every run: it is output, not code, and never asks again
        done = relcomm("validate", str(path))
        assert "gate-not-allowed" not in done.stdout and (folder / "gate.log").exists()
    script(folder, "hooks/z.sh", tmp_path / "z-ran")  # a new hook arrives with a pull
    assert "warning[gate-not-allowed]" in relcomm("validate", str(path)).stdout
    assert refused("new file in a folder the gate runs", not (tmp_path / "z-ran").exists())


def test_the_same_command_in_another_folder_is_not_granted_by_this_ones_consent(tmp_path: Path) -> None:
    """One process (the app opening two plans) must not carry a grant from one folder to the other."""
    from relcomm_tui.checks.gate import run_gate

    script(tmp_path / "a", "scripts/ok.sh", tmp_path / "a-ran")
    script(tmp_path / "b", "scripts/ok.sh", tmp_path / "b-ran")
    a = load_plan(plan_with_gate(tmp_path / "a", "scripts/ok.sh"))
    b = load_plan(plan_with_gate(tmp_path / "b", "scripts/ok.sh"))
    consent.allow(a)
    assert not consent.apply(b)
    assert run_gate(a).ok and run_gate(b).not_allowed
    assert refused("same command text, other folder, same process", not (tmp_path / "b-ran").exists())


def test_consent_given_to_what_was_shown_is_not_consent_to_what_changed_meanwhile(tmp_path: Path) -> None:
    folder = tmp_path / "plan"
    script(folder, "scripts/ok.sh", tmp_path / "shown-ran")
    plan = load_plan(plan_with_gate(folder, "scripts/ok.sh"))
    shown = consent.review(plan)  # the dialog (or `relcomm allow`) shows this
    script(folder, "scripts/ok.sh", tmp_path / "swapped-ran")  # while the engineer reads
    consent.allow(shown)
    assert consent.needs_consent(plan) and not consent.may_run(plan.root, "scripts/ok.sh")


# -- plan commands run from the plan's folder (item 2) ---------------------------------------------


@pytest.mark.parametrize("command", ["scripts/pw.sh", "./scripts/pw.sh", "sh scripts/pw.sh"])
def test_a_password_command_runs_the_plans_script_from_the_plans_folder(tmp_path: Path, command: str) -> None:
    """`cd other && relcomm validate ../plan/plan.toml` must run plan/scripts/pw.sh, never other/scripts/pw.sh."""
    markers = tmp_path / "markers"
    markers.mkdir()
    for name in ("plan", "other"):
        pw = tmp_path / name / "scripts" / "pw.sh"
        pw.parent.mkdir(parents=True)
        pw.write_text(f"#!/bin/sh\npwd > '{markers / name}'\necho s3cret\n", encoding="utf-8")
        pw.chmod(0o755)
    path = plan_with_gate(tmp_path / "plan", "scripts/pw.sh", username="relcomm", password={"command": command})
    consent.allow(load_plan(path))
    done = subprocess.run([sys.executable, "-m", "relcomm_tui.commands.main", "validate", "../plan/plan.toml"],
                          cwd=tmp_path / "other", capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert "not-allowed" not in done.stdout and "secret-unresolved" not in done.stdout, done.stdout
    assert not (markers / "other").exists(), "the script of the folder relcomm was started from ran"
    assert (markers / "plan").read_text(encoding="utf-8").strip() == str((tmp_path / "plan").resolve())
    campaign.record("input", f"plans: command runs from its plan's folder ({command})", tried=1,
                    held=int(not (markers / "other").exists()))


def test_a_password_command_that_cannot_run_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "plan"
    (folder / "scripts" / "pw.sh").mkdir(parents=True)  # a folder where the script should be
    path = plan_with_gate(folder, "true", username="relcomm", password={"command": "scripts/pw.sh"})
    done = relcomm("validate", "--allow-commands", str(path))
    assert "warning[smtp-password-unresolved]" in done.stdout and "cannot run" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


# -- what is shown is what runs (item 3) ------------------------------------------------------------

HIDDEN = {
    "line feed": "\n", "carriage return": "\r", "tab": "\t", "escape": "\x1b", "NUL": "\x00", "DEL": "\x7f",
    "C1 NEL": "\x85", "C1 CSI": "\x9b", "line separator": "\u2028", "paragraph separator": "\u2029",
    "RLO": "\u202e", "LRE": "\u202a", "RLI": "\u2067", "PDI": "\u2069", "zero-width space": "\u200b",
    "no-break space": "\u00a0", "RLM": "\u200f",
}


def plan_with_command_at(folder: Path, place: str, command: str) -> Path:
    data = base_plan()
    if place == "release.gate":
        data["release"]["gate"] = command
    elif place == "transport.smtp.password.command":
        data["transport"]["smtp"].update(username="relcomm", password={"command": command})
    elif place == "receipts.sources[0].password.command":
        data["receipts"] = {"sources": [{"imap": "imaps://relcomm@127.0.0.1/INBOX", "password": {"command": command}}]}
    elif place == "communiques[2].headers.X-Token.command":
        data["communiques"].append({"id": "chat", "to": ["ops"], "channel": "webhook", "body": "hi",
                                    "url": "https://chat.example.com/hook",
                                    "headers": {"X-Token": {"command": command}}})
    else:
        data["communiques"].append({"id": "page", "to": ["ops"], "channel": "pager", "body": "hi",
                                    "url": "https://events.example.com/v2", "routing_key": {"command": command}})
    return write_plan(folder, data)


PLACES = ["release.gate", "transport.smtp.password.command", "receipts.sources[0].password.command",
          "communiques[2].headers.X-Token.command", "communiques[2].routing_key.command"]


def test_a_command_with_a_hidden_character_is_refused_at_load(tmp_path: Path) -> None:
    """Every hidden character, in every place a plan names a command: a PlanError at that key, with a line."""
    from relcomm_tui.plan import PlanError

    wrong: list[str] = []
    for place in PLACES:
        for name, char in HIDDEN.items():
            path = plan_with_command_at(tmp_path / f"{PLACES.index(place)}-{name}", place, f"true{char}touch x")
            try:
                load_plan(path)
            except PlanError as error:
                if not (error.location.keypath == place and error.location.line is not None
                        and f"U+{ord(char):04X}" in error.message and "at character 5" in error.message
                        and "one line" in error.hint):
                    wrong.append(f"{place} {name}: {error}")
                continue
            wrong.append(f"{place} {name}: loaded")
    tried = len(PLACES) * len(HIDDEN)
    campaign.record("input", "plans: command with a hidden character (refused at load, located)", tried=tried,
                    held=tried - len(wrong))
    assert wrong == []


def test_validate_refuses_the_command_that_would_show_one_line_and_run_two(tmp_path: Path) -> None:
    marker = tmp_path / "hidden-ran"
    path = plan_with_gate(tmp_path / "plan", "scripts/ok.sh" + "\n" * 40 + f"touch {marker}")
    done = relcomm("validate", "--allow-commands", str(path))
    assert done.returncode == 2 and "release.gate" in done.stderr and "U+000A" in done.stderr
    assert "hint:" in done.stderr and "Traceback" not in done.stderr
    allow = relcomm("allow", "--yes", str(path))
    assert allow.returncode == 2 and "U+000A" in allow.stderr
    assert refused("command with 40 line breaks", not marker.exists())
    path = plan_with_gate(tmp_path / "plan", f"true\rtouch {marker}")
    assert relcomm("allow", "--yes", str(path)).returncode == 2
    assert refused("command with a carriage return", not marker.exists())


def test_unicode_letters_and_plain_spaces_stay_allowed(tmp_path: Path) -> None:
    plan = load_plan(plan_with_command_at(tmp_path, "release.gate", "echo 'Déploiement réussi ✓' && true"))
    assert plan.release.gate == "echo 'Déploiement réussi ✓' && true"


# -- relcomm allow: a review step ---------------------------------------------------------------------


def allow_on_a_terminal(path: Path, answer: str | None, before_answer=None) -> tuple[int, str]:
    """Run `relcomm allow PATH` on a real pseudo-terminal; type `answer` + Enter (None: end of input)."""
    import pty
    import select
    import time

    main, child = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "relcomm_tui.commands.main", "allow", str(path)],
                               stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    output = b""
    answered = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        if not answered and b"[y/N]" in output:
            if before_answer is not None:
                before_answer()
            os.write(main, (answer + "\n").encode() if answer is not None else b"\x04")
            answered = True
        if process.poll() is not None and not ready:
            break
    code = process.wait(timeout=60)
    os.close(main)
    return code, output.decode("utf-8", "replace")


@pytest.mark.parametrize("answer, allowed", [("", False), ("n", False), (None, False), ("yes", True), ("y", True)])
def test_allow_on_a_terminal_shows_the_commands_and_asks_no_by_default(tmp_path: Path, answer: str | None,
                                                                     allowed: bool) -> None:
    folder = tmp_path / "plan"
    script(folder, "scripts/ok.sh", tmp_path / "gate-ran")
    path = plan_with_gate(folder, "scripts/ok.sh --all")
    code, output = allow_on_a_terminal(path, answer)
    assert "scripts/ok.sh --all" in output and "covers scripts/ok.sh (sha256" in output and "[y/N]" in output
    assert code == (0 if allowed else 1), output
    assert consent.needs_consent(load_plan(path)) is not allowed
    if not allowed:
        assert "nothing recorded" in output


def test_allow_records_nothing_when_a_script_changes_while_the_question_is_open(tmp_path: Path) -> None:
    folder = tmp_path / "plan"
    script(folder, "scripts/ok.sh", tmp_path / "shown-ran")
    path = plan_with_gate(folder, "scripts/ok.sh")
    code, output = allow_on_a_terminal(path, "y", lambda: script(folder, "scripts/ok.sh", tmp_path / "swapped-ran"))
    assert code == 1 and "changed while you were deciding" in output and "nothing recorded" in output
    assert consent.needs_consent(load_plan(path))
    assert not (Path(os.environ["RELCOMM_CONFIG_DIR"]) / "allowed").exists()


def test_allow_without_a_terminal_needs_yes_and_show_only_shows(tmp_path: Path) -> None:
    folder = tmp_path / "plan"
    script(folder, "scripts/ok.sh", tmp_path / "gate-ran")
    path = plan_with_gate(folder, "scripts/ok.sh")
    records = Path(os.environ["RELCOMM_CONFIG_DIR"]) / "allowed"

    refused_ = relcomm("allow", str(path), stdin="y\n")  # a pipe is not a terminal: "y" on it is not an answer
    assert refused_.returncode == 2 and "no terminal" in refused_.stderr and "--yes" in refused_.stderr
    assert "scripts/ok.sh" in refused_.stdout and not records.exists()

    shown = relcomm("allow", "--show", str(path))
    assert shown.returncode == 0 and "scripts/ok.sh" in shown.stdout and "not allowed yet" in shown.stdout
    assert not records.exists() and consent.needs_consent(load_plan(path))

    allowed = relcomm("allow", "--yes", str(path))
    assert allowed.returncode == 0 and not consent.needs_consent(load_plan(path))
    assert "allowed: they run as shown" in relcomm("allow", "--show", str(path)).stdout
    assert "not allowed" not in relcomm("validate", str(path)).stdout and (tmp_path / "gate-ran").exists()


def test_revoke_removes_the_record_on_disk_and_the_commands_stop_running(tmp_path: Path) -> None:
    folder = tmp_path / "plan"
    script(folder, "scripts/ok.sh", tmp_path / "gate-ran")
    path = plan_with_gate(folder, "scripts/ok.sh")
    assert relcomm("allow", "--yes", str(path)).returncode == 0
    records = Path(os.environ["RELCOMM_CONFIG_DIR"]) / "allowed"
    written = list(records.iterdir())
    assert len(written) == 1 and json_of(written[0])["folder"] == str(folder.resolve())
    revoked = relcomm("allow", "--revoke", str(path))
    assert revoked.returncode == 0 and "consent forgotten" in revoked.stdout
    assert list(records.iterdir()) == []
    assert "warning[gate-not-allowed]" in relcomm("validate", str(path)).stdout
    assert "nothing to forget" in relcomm("allow", "--revoke", str(path)).stdout


def json_of(path: Path) -> dict:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


# -- the consent dialog shows every command whole (item 3) ------------------------------------------


def plan_with_many_commands(folder: Path, marker: Path) -> tuple[Path, list[str]]:
    data = base_plan()
    long_gate = "scripts/ok.sh " + " ".join(f"--check-{i}=canary-{i}" for i in range(40)) + f" && touch {marker}"
    data["release"]["gate"] = long_gate
    data["communiques"].append({"id": "chat", "to": ["ops"], "channel": "webhook", "body": "hi",
                                "url": {"command": "scripts/url.sh " + "u" * 150},
                                "headers": {f"X-Key-{i}": {"command": f"scripts/key.sh --name key-{i}"}
                                            for i in range(12)}})
    path = write_plan(folder, data)
    script(folder, "scripts/ok.sh", folder.parent / "ok-ran")
    return path, [long_gate, "scripts/url.sh " + "u" * 150] + [f"scripts/key.sh --name key-{i}" for i in range(12)]


async def test_the_consent_dialog_shows_every_command_whole_and_its_buttons_at_80x24(tmp_path: Path) -> None:
    from textual.geometry import Region
    from textual.widgets import Button

    from relcomm_tui.tui.app import build_app
    from relcomm_tui.tui.dialogs.consent import ConsentDialog
    from tui_helpers import settle, wait_until

    marker = tmp_path / "hidden-tail-ran"
    path, commands = plan_with_many_commands(tmp_path / "plan", marker)
    app = build_app(path)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConsentDialog))
        await settle(pilot)
        dialog = app.screen
        screen = Region(0, 0, 80, 24)
        for button in dialog.query(Button):  # on screen, not covered, whatever the list's length
            assert screen.contains_region(button.region), button.region
            x, y = button.region.center
            assert dialog.get_widget_at(x, y)[0] is button
        scroll = dialog.query_one("#consent-commands")
        assert scroll.max_scroll_y > 0  # the list is longer than the screen: it scrolls

        shown_whole: list[str] = []
        for widget in dialog.query(".consent-command"):
            # What the widget paints, wrapped at the dialog's width, every line of it.
            lines = widget.render_lines(Region(0, 0, widget.outer_size.width, widget.outer_size.height))
            painted = "".join(strip.text for strip in lines)
            shown_whole.append("".join(painted.split()))
        assert shown_whole == ["".join(c.split()) for c in commands]

        seen_on_screen = ""
        for _ in range(60):  # scroll with the keys (the focus stays on "Not now") and read the screen
            seen_on_screen += screen_text(app, scroll.content_region)
            await pilot.press("pagedown")
            await settle(pilot)
        assert scroll.scroll_y == scroll.max_scroll_y
        assert "".join(f"touch {marker}".split()) in "".join(seen_on_screen.split())
        assert "scripts/key.sh --name key-11" in seen_on_screen
        assert app.focused is dialog.query_one("#no", Button)

        await pilot.click("#yes")
        await settle(pilot)
        assert await wait_until(pilot, lambda: marker.exists())  # what was shown, all of it, ran


def screen_text(app, region=None) -> str:
    """The characters on the terminal right now, line by line (only those inside `region` if given)."""
    strips = app.screen._compositor.render_strips()
    if region is None:
        return "\n".join(strip.text for strip in strips)
    return "\n".join(strip.crop(region.x, region.right).text for strip in strips[region.y:region.bottom])


async def test_the_app_asks_again_when_a_script_changes_while_it_is_open(tmp_path: Path) -> None:
    from relcomm_tui.tui.app import build_app
    from relcomm_tui.tui.dialogs.consent import ConsentDialog
    from tui_helpers import settle, wait_until

    folder = tmp_path / "plan"
    script(folder, "scripts/ok.sh", tmp_path / "old-ran")
    path = plan_with_gate(folder, "scripts/ok.sh")
    consent.allow(load_plan(path))
    app = build_app(path)
    async with app.run_test(size=(80, 24)) as pilot:
        checklist = app.screen
        assert await wait_until(pilot, lambda: checklist.gate is not None and checklist.gate.ok)
        assert (tmp_path / "old-ran").exists()

        script(folder, "scripts/ok.sh", tmp_path / "new-ran")  # a pull while the app is open
        checklist.start_checks(checklist.plan)  # checks again without reloading the plan
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConsentDialog))
        assert "scripts/ok.sh: changed since you allowed" in screen_text(app)
        await pilot.press("n")
        await settle(pilot)
        assert await wait_until(pilot, lambda: checklist.gate is not None)
        assert not checklist.gate.allowed and checklist.send_lock
        assert refused("app: script changed while open", not (tmp_path / "new-ran").exists())
        assert checklist.check_action("allow_commands", ()) is True  # `a` is offered to allow it after all

        await pilot.press("r")  # reload: still the declined content, so not asked again
        await settle(pilot)
        assert not isinstance(app.screen, ConsentDialog)
        script(folder, "scripts/ok.sh", tmp_path / "newer-ran")
        await pilot.press("r")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConsentDialog))
        await pilot.press("y")
        assert await wait_until(pilot, lambda: (tmp_path / "newer-ran").exists())


def test_a_huge_file_named_by_a_command_is_not_read_whole_and_a_write_to_it_still_asks_again(tmp_path: Path) -> None:
    """A hostile plan naming a big file must not stall opening it; the file is covered all the same."""
    folder = tmp_path / "plan"
    big = folder / "data" / "big.bin"
    big.parent.mkdir(parents=True)
    with big.open("wb") as file:
        file.truncate(consent.HASH_LIMIT * 64)  # sparse: 512 MiB that reading would have to go through
    path = plan_with_gate(folder, "true data/big.bin")
    plan = load_plan(path)
    [command] = consent.plan_commands(plan)
    assert [f.sha256.startswith("stat:") for f in command.files] == [True]
    assert "by size and change time" in consent.describe(plan)
    consent.allow(plan)
    assert not consent.needs_consent(load_plan(path))
    # The kernel stamps files from a coarse clock: let it tick past the recorded change time, so the
    # write below gets a new one (a condition, not a fixed sleep).
    import time

    coarse = getattr(time, "CLOCK_REALTIME_COARSE", 5)  # Linux: 5
    while time.clock_gettime_ns(coarse) <= big.stat().st_ctime_ns:
        time.sleep(0.001)
    with big.open("r+b") as file:  # same size, one byte changed
        file.seek(12345)
        file.write(b"x")
    assert consent.needs_consent(load_plan(path))
