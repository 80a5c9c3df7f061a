"""SIGKILL the real `relcomm send` while it follows a script, then send again (issue 14): during a
wait, at a checkpoint, and mid-step. It resumes at the same point: nothing finished is sent again,
and a wait that has not elapsed is not skipped (its start is in the ledger).

The sender runs in a subprocess with `--time-scale` (a 10-minute wait lasts 5 s: 120x); the SMTP
server runs here, so every message that reached it is counted, whatever happened to the sender."""

from __future__ import annotations

import collections
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faulty_mailserver import FaultyMailServer
from http_receiver import ScriptedReceiver
from relcomm_tui.plan import load_plan
from relcomm_tui.store import ledger as L
from relcomm_tui.store.ledger import Ledger

from script_helpers import write_script_plan

SCALE = "120"


def relcomm(*args: str, wait: bool = True):
    command = [sys.executable, "-m", "relcomm_tui.commands.main", *args]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True)
    return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=90)


def events(plan) -> list[tuple[str, str, str]]:
    with Ledger.open(plan.state_dir, recover=False) as ledger:
        return [(step, kind, at) for step, kind, at, _who, _detail in ledger.script_events("4.2.0")]


def until(condition, process, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "never got there"
        time.sleep(0.02)


def kill(process) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def copies(server) -> collections.Counter:
    return collections.Counter(rcpt for message in server.messages for rcpt in message.rcpt_tos)


@pytest.fixture
def hooks():
    with ScriptedReceiver() as running:
        yield running


STEPS_WAIT = """
[[steps]]
id = "heads-up"
send = ["ops-notice", "chat"]

[[steps]]
id = "customers"
send = ["announce"]
wait = "10m"

[[steps]]
id = "calls"
send = ["call"]
"""


def test_sigkill_during_a_wait_resumes_the_same_wait(tmp_path: Path, hooks) -> None:
    with FaultyMailServer(maildir=tmp_path / "mail") as server:
        plan_file = write_script_plan(tmp_path / "plan", server.port, hooks.url("/chat"), ops=3, customers=4,
                                      steps=STEPS_WAIT)
        plan = load_plan(plan_file)
        sender = relcomm("send", str(plan_file), "--yes", "--time-scale", SCALE, wait=False)
        until(lambda: ("customers", "ready") in {(s, k) for s, k, _ in events(plan)}, sender)
        kill(sender)
        ready_at = dt.datetime.fromisoformat(next(at for s, k, at in events(plan) if (s, k) == ("customers", "ready")))
        assert len(server.messages) == 3  # heads-up only: the wait holds the customers

        resumed = relcomm("send", str(plan_file), "--yes", "--time-scale", SCALE)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "everything is sent; 1 manual task(s) to mark done" in resumed.stdout
        counts = copies(server)
        assert all(n == 1 for n in counts.values()) and len(counts) == 7  # nothing twice
        first_customer = min(m.received_at for m in server.messages if m.rcpt_tos[0].startswith("customers"))
        # The wait (10 minutes at 120x: 5 s) counted from the recorded ready time, not from the restart.
        assert first_customer >= ready_at.timestamp() + 5.0
        kinds = [(s, k) for s, k, _ in events(plan)]
        assert kinds.count(("customers", "ready")) == 1 and kinds.count(("heads-up", "started")) == 1
        assert len(hooks.requests_for("/chat")) == 1


STEPS_CHECKPOINT = """
[[steps]]
id = "heads-up"
send = ["ops-notice", "chat"]

[[steps]]
id = "briefed"
checkpoint = "Support confirmed the briefing"

[[steps]]
id = "customers"
send = ["announce", "call"]
"""


def test_sigkill_at_a_checkpoint_then_release_it_headless(tmp_path: Path, hooks) -> None:
    with FaultyMailServer(maildir=tmp_path / "mail") as server:
        plan_file = write_script_plan(tmp_path / "plan", server.port, hooks.url("/chat"), ops=3, customers=4,
                                      steps=STEPS_CHECKPOINT)
        plan = load_plan(plan_file)
        sender = relcomm("send", str(plan_file), "--yes", wait=False)
        until(lambda: ("briefed", "ready") in {(s, k) for s, k, _ in events(plan)}, sender)
        kill(sender)
        assert len(server.messages) == 3

        # Reopened: still at the checkpoint, nothing more goes out until it is released.
        again = relcomm("send", str(plan_file), "--yes", wait=False)
        seen = []
        for line in again.stdout:
            seen.append(line)
            if line.startswith("step briefed: at checkpoint"):
                break
        assert "Support confirmed the briefing" in seen[-1]
        status = relcomm("status", str(plan_file))
        assert "briefed" in status.stdout and "at checkpoint" in status.stdout and len(server.messages) == 3
        released = relcomm("checkpoint", str(plan_file), "briefed", "--yes", "--note", "Mia said so")
        assert released.returncode == 0 and "checkpoint of briefed released" in released.stdout, released.stderr
        out, _ = again.communicate(timeout=60)
        assert again.returncode == 0, "".join(seen) + out
        counts = copies(server)
        assert all(n == 1 for n in counts.values()) and len(counts) == 7
        assert [(s, k) for s, k, _ in events(plan)].count(("briefed", "released")) == 1


STEPS_BIG = """
[[steps]]
id = "heads-up"
send = ["ops-notice", "chat"]

[[steps]]
id = "customers"
send = ["announce"]

[[steps]]
id = "calls"
send = ["call"]
"""


def test_sigkill_mid_step_resumes_that_step_and_never_resends(tmp_path: Path, hooks) -> None:
    with FaultyMailServer(maildir=tmp_path / "mail", data_delay=0.05) as server:
        plan_file = write_script_plan(tmp_path / "plan", server.port, hooks.url("/chat"), ops=3, customers=40,
                                      steps=STEPS_BIG)
        plan = load_plan(plan_file)
        sender = relcomm("send", str(plan_file), "--yes", wait=False)
        until(lambda: sum(1 for m in server.messages if m.rcpt_tos[0].startswith("customers")) >= 8, sender)
        kill(sender)
        time.sleep(0.2)  # the server finishes what it was given before the kill

        resumed = relcomm("send", str(plan_file), "--yes")
        with Ledger.open(plan.state_dir) as ledger:
            records = ledger.deliveries("4.2.0", "announce")
            in_doubt = {r.recipient_key for r in records if r.state == L.IN_DOUBT}
            assert resumed.returncode == (1 if in_doubt else 0), resumed.stdout + resumed.stderr
            assert {r.state for r in records} <= {L.ACCEPTED, L.IN_DOUBT} and len(records) == 40
            assert ledger.counts("4.2.0", "call")[L.AWAITING] == 1  # the step after it went on
        counts = copies(server)
        for address, n in counts.items():
            assert n == 1 or (address in in_doubt and n <= 1), address
        assert sum(1 for a in counts if a.startswith("ops")) == 3 and len(hooks.requests_for("/chat")) == 1
        kinds = [(s, k) for s, k, _ in events(plan)]
        assert kinds.count(("customers", "started")) == 1  # resumed, not started again
