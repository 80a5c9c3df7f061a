"""The headless script commands (issue 14), as a user types them: `relcomm send --json` events,
`relcomm checkpoint`, `relcomm confirm` (a manual step), `relcomm status` with a script, the large sample's hint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from faulty_mailserver import FaultyMailServer, PermFail
from relcomm_tui.demo.webhook_receiver import WebhookReceiver
from relcomm_tui.plan import load_plan
from relcomm_tui.store.ledger import Ledger

from script_helpers import write_script_plan

ROOT = Path(__file__).resolve().parent.parent

STEPS = """
[[steps]]
id = "heads-up"
send = ["ops-notice", "chat"]

[[steps]]
id = "calls"
send = ["call"]

[[steps]]
id = "briefed"
checkpoint = "Support confirmed the briefing"

[[steps]]
id = "customers"
send = ["announce"]
halt_if = { failed_over = 10 }
"""


def relcomm(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relcomm_tui.commands.main", *args], capture_output=True, text=True,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL, timeout=90)


@pytest.fixture
def hooks():
    with WebhookReceiver() as running:
        yield running


def test_json_events_checkpoint_done_and_status(tmp_path: Path, hooks) -> None:
    with FaultyMailServer(maildir=tmp_path / "mail") as server:
        server.faults["customers0@example.com"] = PermFail(msg="5.1.1 no such user")
        plan_file = write_script_plan(tmp_path / "plan", server.port, hooks.url("/chat"), ops=2, customers=4,
                                      steps=STEPS)
        # A checkpoint cannot be released before the script gets there.
        early = relcomm("checkpoint", str(plan_file), "briefed", "--yes")
        assert early.returncode == 2 and "briefed is not at its checkpoint yet: after calls" in early.stderr

        first = subprocess.Popen([sys.executable, "-m", "relcomm_tui.commands.main", "send", str(plan_file), "--yes",
                                  "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 stdin=subprocess.DEVNULL)
        events = []
        for line in first.stdout:
            events.append(json.loads(line))
            if events[-1].get("event") == "step" and events[-1]["step"] == "calls" and events[-1]["status"] == "waiting" \
                    and "manual task" in events[-1]["reason"]:
                break
        assert {"event": "delivery", "communique": "chat", "recipient": "ops", "state": "accepted",
                "detail": next(e["detail"] for e in events if e.get("communique") == "chat")} in events
        # The call to the executives is a manual task: the script waits for it (headless: relcomm confirm).
        status = relcomm("status", str(plan_file))
        assert "calls" in status.stdout and "1 manual task to mark done (call)" in status.stdout
        ticked = relcomm("confirm", str(plan_file), "call", "--note", "spoke at 17:40")
        assert ticked.returncode == 0, ticked.stdout + ticked.stderr
        for line in first.stdout:
            events.append(json.loads(line))
            if events[-1].get("status") == "checkpoint":
                break
        assert events[-1]["step"] == "briefed" and events[-1]["reason"] == "Support confirmed the briefing"

        listing = relcomm("checkpoint", str(plan_file))
        assert "⏸ briefed" in listing.stdout and f"relcomm checkpoint {plan_file} briefed" in listing.stdout
        assert relcomm("checkpoint", str(plan_file), "briefed").returncode == 2  # no terminal: --yes needed
        released = relcomm("checkpoint", str(plan_file), "briefed", "--yes")
        assert released.returncode == 0, released.stderr
        rest, _ = first.communicate(timeout=60)
        events += [json.loads(line) for line in rest.splitlines()]
        end = events[-1]
        assert end["event"] == "script" and end["ending"] == "halted" and end["exit"] == 1 and first.returncode == 1
        halted = next(s for s in end["steps"] if s["step"] == "customers")
        assert halted["status"] == "halted" and halted["reason"] == "1 of 4 deliveries failed (25%, more than 10%)"

        # A halt is not released by mistake: it needs --despite-halt, and the reason is said.
        again = relcomm("checkpoint", str(plan_file), "customers", "--yes")
        assert again.returncode == 2 and "customers is halted: 1 of 4" in again.stderr and "--despite-halt" in again.stderr
        status = relcomm("status", str(plan_file), "--json")
        script = json.loads(status.stdout)["script"]
        assert script["summary"].startswith("halted at customers") and script["steps"][0]["status"] == "done"
        going = relcomm("checkpoint", str(plan_file), "customers", "--despite-halt", "--yes")
        assert going.returncode == 0 and "goes on after customers despite" in going.stdout
        final = relcomm("send", str(plan_file), "--yes")  # the halt was at the last step: nothing is left
        assert "nothing left to send" in final.stdout, final.stdout + final.stderr
        assert final.returncode == 1  # one delivery was refused: not every delivery is accepted
        status = relcomm("status", str(plan_file), "--json")
        assert json.loads(status.stdout)["script"]["summary"] == "script done: 4 of 4 steps"
        assert len(server.messages) == 5  # 2 ops + 3 customers (one refused at RCPT): nothing twice
        # The audit record says what the script did and who decided.
        report = relcomm("report", str(plan_file)).stdout
        assert "## Script" in report and "briefed: released by" in report
        assert "customers: halted: 1 of 4 deliveries failed" in report and "customers: halt overridden by" in report


def test_plain_output_names_the_command_for_a_checkpoint(tmp_path: Path, hooks) -> None:
    with FaultyMailServer(maildir=tmp_path / "mail") as server:
        steps = STEPS.replace('send = ["call"]', 'send = []')
        plan_file = write_script_plan(tmp_path / "plan", server.port, hooks.url("/chat"), ops=1, customers=1,
                                      steps=steps + '\n[[steps]]\nid = "last"\nsend = ["call"]\n')
        sender = subprocess.Popen([sys.executable, "-m", "relcomm_tui.commands.main", "send", str(plan_file), "--yes"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
        lines = []
        for line in sender.stdout:
            lines.append(line)
            if "relcomm checkpoint" in line:
                break
        assert lines[-2].startswith("step briefed: at checkpoint: Support confirmed the briefing")
        assert lines[-1].strip() == f"release it (another terminal): relcomm checkpoint {plan_file} briefed"
        sender.kill()
        sender.wait()


def test_a_plan_without_steps_has_no_checkpoints(tmp_path: Path) -> None:
    from send_helpers import write_plan

    plan_file = write_plan(tmp_path / "plain", 2525)
    done = relcomm("checkpoint", str(plan_file))
    assert done.returncode == 2 and "no script" in done.stderr
    status = relcomm("status", str(plan_file), "--json")
    assert json.loads(status.stdout)["script"] is None


def test_the_large_sample_says_which_command_writes_its_members(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "large"
    shutil.copytree(ROOT / "sample_plans" / "large", folder, ignore=shutil.ignore_patterns(".relcomm", "stakeholders"))
    done = relcomm("validate", str(folder / "plan.toml"))
    assert done.returncode == 2
    command = f"python3 {folder / 'make_members.py'}"
    assert f"run `{command}`" in done.stderr
    made = subprocess.run(command.split(), capture_output=True, text=True, timeout=60)
    assert made.returncode == 0
    assert relcomm("validate", "--no-gate", str(folder / "plan.toml")).returncode == 0
