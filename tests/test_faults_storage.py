"""Storage faults (issue 6): the ledger's disk full, the ledger read-only, the ledger locked by
another process. Each time `relcomm send` (a real subprocess, against the loopback server):
* stops before any message it could not record: every copy at the server belongs to a delivery
  the ledger shows as accepted or in doubt, never to one it shows as not sent;
* says what happened and how to fix it on stderr, with no traceback;
* loses nothing: once the problem is fixed, the same command finishes the send, exactly once.

As root with CAP_SYS_ADMIN the faults are real: a small tmpfs filled up (ENOSPC) and a tmpfs
remounted read-only. Where mount is not allowed (some CI machines) the same faults come from
the kernel another way: a file-size limit on the sender (writes past it fail like a full disk)
and `chattr +i` (an immutable ledger that even root cannot write).
"""

from __future__ import annotations

import collections
import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import campaign
from relcomm_tui.store import ledger as L
from relcomm_tui.store.ledger import LEDGER_NAME, Ledger
from faulty_mailserver import FaultyMailServer, TempFail

from send_helpers import write_plan

RECIPIENTS = campaign.scale("STORAGE_RECIPIENTS", 300)
ROOM = 400_000 * RECIPIENTS // 300  # free bytes left for the ledger: its queue fits, the send does not


def send(plan_file: Path, state: Path, *, env_extra: dict | None = None, limit_file_size: int | None = None,
         wait: bool = True):
    env = dict(os.environ, **(env_extra or {}))

    def limits() -> None:  # runs in the child before exec
        if limit_file_size is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    process = subprocess.Popen([sys.executable, "-m", "relcomm_tui.commands.main", "send", str(plan_file), "--yes",
                                "--state", str(state)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True, env=env, preexec_fn=limits)
    if not wait:
        return process
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def try_mount(*args: str) -> bool:
    if os.environ.get("RELCOMM_CAMPAIGN_NO_MOUNT"):  # to run the fallbacks where mount works
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    """A real small filesystem at `folder`, or False where mount is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = try_mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder))
    try:
        yield mounted
    finally:
        if mounted:
            try_mount("-o", "remount,rw", str(folder))
            if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def copies(server) -> dict[str, int]:
    found: dict[str, int] = collections.Counter()
    for message in server.messages:
        for rcpt in message.rcpt_tos:
            found[rcpt.lower()] += 1
    return found


def unaccounted(server, state: Path) -> list[str]:
    """Copies at the server that the ledger does not account for (or duplicates)."""
    got = copies(server)
    with Ledger.open(state) as ledger:  # a stopped sender's `sending` rows become in doubt
        records = {r.recipient_key: r for r in ledger.deliveries("4.2.0", "news")}
    problems = [f"{key}: {n} copies" for key, n in got.items() if n > 1]
    for key in got:
        record = records.get(key)
        if record is None or record.state not in (L.ACCEPTED, L.IN_DOUBT):
            problems.append(f"{key}: at the server, ledger says {record.state_label if record else 'nothing'}")
    for record in records.values():
        if record.state == L.ACCEPTED and got.get(record.recipient_key) != 1:
            problems.append(f"{record.recipient_key}: accepted, {got.get(record.recipient_key, 0)} copies")
    return problems


def clear_message(err: str, *words: str) -> list[str]:
    """What is wrong with the user's message on stderr (empty when it is clear)."""
    problems = []
    if "Traceback" in err:
        problems.append("a traceback")
    for word in words:
        if word not in err:
            problems.append(f"does not say {word!r}")
    if "hint:" not in err:
        problems.append("no hint")
    return problems


def finish(server, plan_file: Path, state: Path) -> tuple[int, int, int, list[str]]:
    """The run after the fix: (exit code, duplicates, losses, problems)."""
    code, out, err = send(plan_file, state)
    problems = unaccounted(server, state) + (["a traceback"] if "Traceback" in err else [])
    got = copies(server)
    with Ledger.open(state) as ledger:
        records = ledger.deliveries("4.2.0", "news")
    in_doubt = sum(1 for r in records if r.state == L.IN_DOUBT)
    duplicates = sum(1 for n in got.values() if n > 1)
    losses = sum(1 for r in records if r.state != L.IN_DOUBT and got.get(r.recipient_key, 0) != 1)
    losses += RECIPIENTS - len(records)
    if code != (1 if in_doubt else 0):
        problems.append(f"final run exit {code}: {out[-400:]} {err[-400:]}")
    return code, duplicates, losses, problems


@pytest.fixture
def server():
    with FaultyMailServer(maildir=None) as running:
        yield running


@pytest.mark.campaign
def test_disk_full_stops_before_anything_unrecorded_and_a_later_run_finishes(tmp_path, server):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=RECIPIENTS, concurrency=4)
    state = tmp_path / "state"
    # Room for the finished ledger and its WAL (which grows to ~4 MB before a checkpoint) once the
    # ballast is gone, whatever the campaign size.
    with tmpfs(state, f"{8 + RECIPIENTS // 100}m") as mounted:
        if mounted:
            # Leave room for the ledger and its deliveries, not for the whole send.
            stat = os.statvfs(state)
            (state / "ballast").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - ROOM))
            code, out, err = send(plan_file, state)
            how = "tmpfs full (ENOSPC)"
        else:
            code, out, err = send(plan_file, state, limit_file_size=ROOM)
            how = "file-size limit (EFBIG)"
        sent_before_fix = server.messages_accepted
        problems = clear_message(err, "ledger", "full" if mounted else "ledger")
        if code != 2:
            problems.append(f"exit {code}, not 2 (stopped)")
        if not 0 < sent_before_fix < RECIPIENTS:
            problems.append(f"the disk filled at no point mid-send ({sent_before_fix} sent)")
        if mounted:
            (state / "ballast").unlink()  # the fix: free space
        problems += unaccounted(server, state)
        _, duplicates, losses, more = finish(server, plan_file, state)
        problems += more
    print(f"\ndisk full ({how}): stopped after {sent_before_fix} of {RECIPIENTS}; stderr: {err.strip()}")
    campaign.record("fault", f"storage: ledger disk full ({how})", tried=1, held=int(not problems),
                    duplicates=duplicates, losses=losses)
    assert not problems, problems
    assert duplicates == 0 and losses == 0


@pytest.mark.campaign
def test_read_only_ledger_refuses_to_send_and_a_later_run_finishes(tmp_path, server):
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=RECIPIENTS, concurrency=4, max_attempts=1)
    state = tmp_path / "state"
    # A first send leaves history: some recipients deferred (the server said "try later").
    for i in range(0, RECIPIENTS, 10):
        server.faults[f"customer{i}@example.com"] = TempFail(times=1)
    with tmpfs(state, "16m") as mounted:
        code, out, err = send(plan_file, state)
        assert code == 1 and "deferred" in out, out + err
        sent_first = server.messages_accepted
        ledger_file = state / LEDGER_NAME
        if mounted:
            assert try_mount("-o", "remount,ro", str(state))
            how = "remounted read-only"
        elif os.geteuid() != 0:  # an ordinary user: file modes are enough
            os.chmod(ledger_file, 0o400)
            os.chmod(state, 0o500)
            how = "chmod read-only"
        else:  # root ignores modes, but not the immutable flag
            subprocess.run(["chattr", "+i", str(ledger_file)], check=True)
            how = "chattr +i"
        try:
            code, out, err = send(plan_file, state)
            problems = clear_message(err, "read-only" if mounted else "ledger", "writable")
            if code != 2:
                problems.append(f"exit {code}, not 2")
            if server.messages_accepted != sent_first:
                problems.append(f"{server.messages_accepted - sent_first} sent while the ledger was read-only")
        finally:  # the fix: writable again
            if mounted:
                try_mount("-o", "remount,rw", str(state))
            elif how == "chmod read-only":
                os.chmod(state, 0o700)
                os.chmod(ledger_file, 0o600)
            else:
                subprocess.run(["chattr", "-i", str(ledger_file)], check=True)
        problems += unaccounted(server, state)
        _, duplicates, losses, more = finish(server, plan_file, state)
        problems += more
    print(f"\nread-only ledger ({how}): stderr: {err.strip()}")
    campaign.record("fault", f"storage: ledger read-only ({how})", tried=1, held=int(not problems),
                    duplicates=duplicates, losses=losses)
    assert not problems, problems
    assert duplicates == 0 and losses == 0


LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN IMMEDIATE")  # another process's write transaction: the write lock
db.execute("UPDATE runs SET outcome = outcome WHERE 0")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def lock_ledger(state: Path, seconds: float) -> subprocess.Popen:
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(state / LEDGER_NAME), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"
    return locker


@pytest.mark.campaign
def test_ledger_locked_by_another_process(tmp_path, server):
    """Locked past the wait before the send, locked past the wait mid-send, locked briefly mid-send."""
    plan_file = write_plan(tmp_path / "plan", server.port, recipients=RECIPIENTS, concurrency=4)
    state = tmp_path / "state"
    wait = {"RELCOMM_LEDGER_BUSY_TIMEOUT": "1.5"}
    Ledger.open(state).close()
    problems: list[str] = []
    tried = 0

    # 1. Locked before the send, longer than a writer waits: refuses, sends nothing.
    locker = lock_ledger(state, 4)
    code, out, err = send(plan_file, state, env_extra=wait)
    locker.wait()
    tried += 1
    problems += [f"locked at start: {p}" for p in clear_message(err, "locked", "another process")]
    if code != 2 or server.messages_accepted:
        problems.append(f"locked at start: exit {code}, {server.messages_accepted} sent")
    first_err = err

    # 2. Locked mid-send, longer than a writer waits: stops, nothing unrecorded.
    sender = send(plan_file, state, env_extra=wait, wait=False)
    deadline = time.monotonic() + 30
    while server.messages_accepted < 20 and sender.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    locker = lock_ledger(state, 4)
    out, err = sender.communicate(timeout=60)
    locker.wait()
    tried += 1
    stopped_at = server.messages_accepted
    problems += [f"locked mid-send: {p}" for p in clear_message(err, "locked", "another process")]
    if sender.returncode != 2 or not 20 <= stopped_at < RECIPIENTS:
        problems.append(f"locked mid-send: exit {sender.returncode}, {stopped_at} sent")
    problems += [f"locked mid-send: {p}" for p in unaccounted(server, state)]
    second_err = err

    # 3. Locked mid-send for less than a writer waits: the send waits, then goes on.
    sender = send(plan_file, state, env_extra={"RELCOMM_LEDGER_BUSY_TIMEOUT": "20"}, wait=False)
    while server.messages_accepted < stopped_at + 20 and sender.poll() is None and time.monotonic() < deadline + 30:
        time.sleep(0.001)
    locker = lock_ledger(state, 0.5)
    out, err = sender.communicate(timeout=60)
    locker.wait()
    tried += 1
    if "Traceback" in err or "locked" in err:
        problems.append(f"brief lock: {err[-400:]}")

    code, duplicates, losses, more = finish(server, plan_file, state)
    problems += more
    print(f"\nledger locked: at start -> {first_err.strip()}\n  mid-send (stopped after {stopped_at}) -> "
          f"{second_err.strip()}\n  brief lock mid-send -> waited and went on")
    campaign.record("fault", "storage: ledger locked by another process", tried=tried,
                    held=tried if not problems else 0, duplicates=duplicates, losses=losses)
    assert not problems, problems
    assert duplicates == 0 and losses == 0
