"""SIGKILL mid-send, then resume: every recipient ends with exactly one accepted copy at the
server, except deliveries the ledger reports as in doubt (0 or 1 copy, never silently more).

The sender is the real `relcomm send` in a subprocess; the server runs in this process and
waits 50 ms before answering each message's end, so the kill lands with messages in flight:
the server stores them, the killed client never learns it, and the ledger must say "in doubt".
"""

from __future__ import annotations

import collections
import email
import os
import signal
import subprocess
import sys
import time

from relcomm_tui.store import ledger as L
from relcomm_tui.channels.email import WORKERS_PER_CONNECTION
from relcomm_tui.store.ledger import Ledger
from faulty_mailserver import FaultyMailServer

from send_helpers import load, write_plan

RECIPIENTS = 40


def relcomm(*args: str, wait: bool = True, env=None):
    command = [sys.executable, "-m", "relcomm_tui.commands.main", *args]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True, env=env)
    return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, env=env)


def copies_by_recipient(server) -> dict[str, list[str]]:
    copies: dict[str, list[str]] = collections.defaultdict(list)
    for message in server.messages:
        for rcpt in message.rcpt_tos:
            copies[rcpt].append(email.message_from_bytes(message.data)["Message-ID"])
    return copies


def test_sigkill_mid_send_then_resume_sends_nothing_twice(tmp_path):
    with FaultyMailServer(maildir=tmp_path / "server-mail", data_delay=0.05) as server:
        plan_file = write_plan(tmp_path / "plan", server.port, recipients=RECIPIENTS, concurrency=4)
        sender = relcomm("send", str(plan_file), "--yes", wait=False)
        deadline = time.monotonic() + 30
        while server.messages_accepted < 10:
            assert sender.poll() is None, sender.communicate()
            assert time.monotonic() < deadline, "the send never got going"
            time.sleep(0.005)
        os.kill(sender.pid, signal.SIGKILL)
        sender.wait()
        assert sender.returncode == -signal.SIGKILL
        time.sleep(0.2)  # let the server finish the messages it was given before the kill

        plan = load(plan_file)
        ledger = Ledger.open(plan.state_dir)  # the dead sender's `sending` rows become in doubt
        after_kill = ledger.counts("4.2.0")
        assert after_kill[L.SENDING] == 0
        assert 0 < after_kill[L.ACCEPTED] < RECIPIENTS and after_kill[L.QUEUED] > 0
        assert after_kill[L.IN_DOUBT] <= WORKERS_PER_CONNECTION * 4  # at most one intent per engine worker
        ledger.close()

        resumed = relcomm("send", str(plan_file), "--yes")
        ledger = Ledger.open(plan.state_dir)
        records = ledger.deliveries("4.2.0")
        in_doubt = {r.recipient_key for r in records if r.state == L.IN_DOUBT}
        assert resumed.returncode == (1 if in_doubt else 0), resumed.stdout + resumed.stderr
        assert {r.state for r in records} <= {L.ACCEPTED, L.IN_DOUBT}
        copies = copies_by_recipient(server)
        for record in records:
            got = copies.get(record.recipient_key, [])
            if record.state == L.ACCEPTED:
                assert got == [record.message_id], record.recipient_key
            else:
                assert got in ([], [record.message_id]), record.recipient_key
        assert len(records) == RECIPIENTS
        if in_doubt:
            assert f"{len(in_doubt)} in doubt" in resumed.stdout

        # Resending what is in doubt is an explicit choice, and reuses the Message-ID.
        final = relcomm("send", str(plan_file), "--yes", "--resend-in-doubt")
        assert final.returncode == 0, final.stdout + final.stderr
        copies = copies_by_recipient(server)
        for record in ledger.deliveries("4.2.0"):
            assert record.state == L.ACCEPTED
            expected = 1 if record.recipient_key not in in_doubt else (1, 2)
            assert set(copies[record.recipient_key]) == {record.message_id}
            assert len(copies[record.recipient_key]) in ((expected,) if isinstance(expected, int) else expected)
        runs = ledger.runs("4.2.0")
        assert [r.finished is None for r in runs] == [True, False, False]  # the killed run never finished
        ledger.close()
