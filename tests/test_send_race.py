"""Two `relcomm send PLAN --yes` at once (issue 10, item 9): never two copies, and the loser says why.

Pairs of real `relcomm send` processes are started together on the same plan (a fresh plan each
pair, so they also race to create the state folder, the ledger and, for half of them, the
user's ledger key) against a real loopback SMTP server. Half of the pairs are "held": the server
holds its reply to the first message until one process has exited, so the two certainly overlap
and the one that exits must be the loser, saying that another process is sending. The other
half run free, as a user would start them. In every pair each recipient gets exactly one copy.
The subprocesses inherit this test's environment (its own RELCOMM_CONFIG_DIR, from conftest).
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import campaign
from faulty_mailserver import Delay, FaultyMailServer

from send_helpers import write_plan

PAIRS = campaign.scale("LOCK_PAIRS", 20)
RECIPIENTS = 5
LOSER_SAYS = "another relcomm process is sending this plan"


@dataclass
class Hold(Delay):
    """The server's reply to the end of one message waits until `release` is set. It blocks the
    server's own loop (its thread), so nothing more is answered meanwhile: the sender holding the
    lock is certainly still sending when the other process tries."""

    release: threading.Event = field(default_factory=threading.Event)

    def _consume(self) -> bool:
        self.release.wait(timeout=180)
        return super()._consume()


def start(plan_file: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "relcomm_tui.commands.main", "send", str(plan_file), "--yes"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env=env)


def copies(server: FaultyMailServer) -> collections.Counter:
    return collections.Counter(rcpt.lower() for message in server.messages for rcpt in message.rcpt_tos)


def first_to_exit(processes: list[subprocess.Popen], seconds: float) -> subprocess.Popen:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                return process
        time.sleep(0.01)
    raise AssertionError("neither sender finished")


@pytest.mark.slow
@pytest.mark.campaign
@pytest.mark.timeout(900)  # 40 processes; slow on a loaded machine (the deadlines inside are per pair)
def test_pairs_of_simultaneous_senders_never_send_twice(tmp_path):
    wanted = {f"customer{i}@example.com" for i in range(RECIPIENTS)}
    problems: list[str] = []
    duplicates = losses = overlapped = 0
    for pair in range(PAIRS):
        held = pair % 2 == 0
        env = dict(os.environ)  # the test's own settings folder (conftest) is inherited...
        if pair % 4 < 2:
            env["RELCOMM_CONFIG_DIR"] = str(tmp_path / f"config-{pair}")  # ...or a new one: both race to make the key
        hold = Hold(seconds=0, at="data", times=1)
        with FaultyMailServer(maildir=tmp_path / f"server-{pair}", data_delay=0 if held else 0.2) as server:
            if held:
                server.faults["customer0@example.com"] = hold
            plan_file = write_plan(tmp_path / f"pair-{pair}", server.port, recipients=RECIPIENTS, concurrency=1,
                                   timeout=180)
            processes = [start(plan_file, env), start(plan_file, env)]
            try:
                if held:
                    loser = first_to_exit(processes, 180)
                    winner = processes[1 - processes.index(loser)]
                    _, loser_err = loser.communicate()
                    still_sending = winner.poll() is None
                    hold.release.set()
                    winner_out, winner_err = winner.communicate(timeout=180)
                    if loser.returncode != 2 or LOSER_SAYS not in loser_err or "hint:" not in loser_err:
                        problems.append(f"pair {pair}: the loser (exit {loser.returncode}) said {loser_err!r}")
                    if not still_sending or winner.returncode != 0:
                        problems.append(f"pair {pair}: the winner (exit {winner.returncode}) {winner_out!r} {winner_err!r}")
                    overlapped += 1
                else:
                    results = [(p.communicate(timeout=180), p.returncode) for p in processes]
                    refused = [r for r in results if r[1] == 2 and LOSER_SAYS in r[0][1]]
                    overlapped += len(refused)
                    senders = [r for r in results if r[1] == 0]
                    # Either one was refused, or the second started after the first had sent everything.
                    if len(refused) + len(senders) != 2 or not senders or len(refused) > 1:
                        problems.append(f"pair {pair}: {results!r}")
            finally:
                hold.release.set()
                for process in processes:
                    if process.poll() is None:
                        process.kill()
                        process.wait()
            got = copies(server)
        duplicates += sum(1 for n in got.values() if n > 1)
        losses += len(wanted - set(got))
        if set(got) - wanted:
            problems.append(f"pair {pair}: mail to {sorted(set(got) - wanted)}")
    campaign.record("fault", "send: two `relcomm send` at once (pairs)", tried=PAIRS,
                    held=PAIRS - len(problems), duplicates=duplicates, losses=losses)
    print(f"{PAIRS} pairs, {overlapped} with a sender refused by the lock")
    for problem in problems:
        print(problem)
    assert problems == [] and duplicates == 0 and losses == 0
    assert overlapped >= PAIRS // 2  # every held pair at least
