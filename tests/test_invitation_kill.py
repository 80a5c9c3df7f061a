"""SIGKILL in the middle of sending an update (SEQUENCE 1), then resume: every person invited ends
with exactly one update at the server, except those the ledger says are in doubt (0 or 1, never 2),
and nobody gets the first sequence again. The sender is the real `relcomm send` in a subprocess;
the server waits 50 ms before answering each message's end so the kill lands mid-flight."""

from __future__ import annotations

import collections
import os
import signal
import time

from faulty_mailserver import FaultyMailServer
from relcomm_tui.store import ledger as L
from relcomm_tui.store.ledger import Ledger

from test_invitation_send import write
from test_kill_resume import relcomm

PEOPLE = [f'"Person {i}" <person{i}@vega.example.com>' for i in range(30)]


def sequences(server) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = collections.defaultdict(list)
    for message in server.messages:
        data = message.data.replace(b"\r\n ", b"")
        number = data.split(b"SEQUENCE:", 1)[1][:1]
        found[message.rcpt_tos[0]].append(number)
    return found


def test_sigkill_mid_update_then_resume_never_doubles_a_sequence(tmp_path):
    with FaultyMailServer(maildir=tmp_path / "server-mail", data_delay=0.05) as server:
        plan_file = write(tmp_path / "plan", server.port, people=PEOPLE)
        first = relcomm("send", str(plan_file), "--yes")
        assert first.returncode == 0, first.stdout + first.stderr
        assert len(server.messages) == len(PEOPLE)
        write(tmp_path / "plan", server.port, people=PEOPLE, start="2031-03-05T10:30:00")
        sender = relcomm("send", str(plan_file), "--yes", wait=False)
        deadline = time.monotonic() + 60
        while server.messages_accepted < len(PEOPLE) + 8:
            assert sender.poll() is None, sender.communicate()
            assert time.monotonic() < deadline, "the update never got going"
            time.sleep(0.005)
        os.kill(sender.pid, signal.SIGKILL)
        sender.wait()
        time.sleep(0.2)
        ledger = Ledger.open(tmp_path / "plan" / ".relcomm")
        counts = ledger.counts("2.0.0", "presentation#1")
        assert 0 < counts[L.ACCEPTED] < len(PEOPLE) and counts[L.SENDING] == 0
        ledger.close()

        resumed = relcomm("send", str(plan_file), "--yes")
        ledger = Ledger.open(tmp_path / "plan" / ".relcomm")
        updates = {d.recipient_key: d.state for d in ledger.deliveries("2.0.0", "presentation#1")}
        assert resumed.returncode == (1 if L.IN_DOUBT in updates.values() else 0), resumed.stdout + resumed.stderr
        assert len(updates) == len(PEOPLE) and set(updates.values()) <= {L.ACCEPTED, L.IN_DOUBT}
        for person, got in sequences(server).items():
            assert got[0] == b"0" and got.count(b"0") == 1, person  # the first invitation, once
            if updates[person] == L.ACCEPTED:
                assert got.count(b"1") == 1, person
            else:
                assert got.count(b"1") in (0, 1), person
        # and a third send sends nothing at all
        before = len(server.messages)
        assert relcomm("send", str(plan_file), "--yes").returncode in (0, 1)
        assert len(server.messages) == before
